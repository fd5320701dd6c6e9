//! The data stage: the embedded tables (places, country names, the Antarctica outline), read
//! and checked once by [`Geocoder::load`], which also builds the nearest-place trees.
//!
//! A corrupt table is a [`GeoError`] naming the table and line, never a panic; nothing here
//! answers a lookup.

use std::io::Read;

use country_boundaries::{BOUNDARIES_ODBL_360X180, CountryBoundaries};

use super::lookup::{PlacePoint, PlaceTree, unit_vector};
use super::{CountryCode, GeoError, Geocoder, Place, malformed};

/// Populated places, see `data/geo/build_cities.py` for the format.
static PLACES_GZ: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/geo/cities.tsv.gz"
));
/// `code<TAB>English name` per line.
static COUNTRY_NAMES_TSV: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/geo/countries.tsv"
));
/// `latitude<TAB>longitude` per line, west to east.
static ANTARCTICA_TSV: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/geo/antarctica.tsv"
));

impl Geocoder {
    /// Loads the embedded data (no file or network access at run time).
    pub fn load() -> Result<Geocoder, GeoError> {
        let boundaries = CountryBoundaries::from_reader(BOUNDARIES_ODBL_360X180)?;
        let country_names = parse_country_names(COUNTRY_NAMES_TSV)?;
        let antarctica = parse_antarctica(ANTARCTICA_TSV)?;

        let table = parse_places(flate2::read::GzDecoder::new(PLACES_GZ))?;

        let points: Vec<PlacePoint> = table
            .places
            .iter()
            .zip(0u32..)
            .map(|(place, index)| PlacePoint {
                position: unit_vector(place.latitude(), place.longitude()),
                place: index,
            })
            .collect();
        let everywhere = PlaceTree::new(&points)?;
        let mut by_country: Vec<Option<PlaceTree>> = (0..26 * 26).map(|_| None).collect();
        // The data file is sorted by country, so each country's places are one contiguous run.
        for run in points.chunk_by(|a, b| {
            table.places[a.place as usize].country == table.places[b.place as usize].country
        }) {
            let country = table.places[run[0].place as usize].country;
            by_country[country.slot()] = Some(PlaceTree::new(run)?);
        }

        Ok(Geocoder {
            boundaries,
            places: table.places,
            names: table.names,
            labels: table.labels,
            country_names,
            by_country,
            everywhere,
            antarctica,
        })
    }
}

/// The parsed places table before indexing.
struct PlaceTable {
    places: Vec<Place>,
    names: String,
    labels: Vec<Box<str>>,
}

/// Interned labels; index 0 is the empty label. A few thousand distinct ones (regions and
/// islands), each repeated many times.
struct Labels {
    list: Vec<Box<str>>,
    index: std::collections::HashMap<Box<str>, u16>,
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            list: vec![Box::from("")],
            index: std::collections::HashMap::from([(Box::from(""), 0)]),
        }
    }
}

impl Labels {
    fn intern(&mut self, label: &str, line: usize) -> Result<u16, GeoError> {
        if let Some(&index) = self.index.get(label) {
            return Ok(index);
        }
        let index = u16::try_from(self.list.len())
            .map_err(|_| malformed("places", line, "more than 65535 distinct labels"))?;
        self.list.push(Box::from(label));
        self.index.insert(Box::from(label), index);
        Ok(index)
    }
}

/// Reads the places table: tab-separated, no quoting (names may hold a `"`), `#` comments.
fn parse_places(source: impl Read) -> Result<PlaceTable, GeoError> {
    const TABLE: &str = "places";
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b'\t')
        .has_headers(false)
        .quoting(false)
        .comment(Some(b'#'))
        // Field counts are checked below, with the line number.
        .flexible(true)
        .from_reader(source);
    let mut record = csv::StringRecord::new();
    let mut places = Vec::with_capacity(150_000);
    let mut names = String::with_capacity(2 << 20);
    // Regions and landmasses repeat thousands of times: intern them. Label 0 is "".
    let mut labels = Labels::default();
    let mut previous_country = None;
    while read_place(&mut reader, &mut record)? {
        let line_number = record.position().map_or(0, |at| at.line() as usize);
        let Some([latitude, longitude, name, region, country, landmass]) =
            (record.len() == 6).then(|| std::array::from_fn(|i| &record[i]))
        else {
            return Err(malformed(
                TABLE,
                line_number,
                "expected 6 tab-separated fields",
            ));
        };
        let coordinate = |field: &str, limit: i32| {
            field
                .parse::<i32>()
                .ok()
                .filter(|value| value.abs() <= limit)
                .ok_or_else(|| malformed(TABLE, line_number, format!("bad coordinate {field:?}")))
        };
        let country = CountryCode::parse(country).ok_or_else(|| {
            malformed(TABLE, line_number, format!("bad country code {country:?}"))
        })?;
        // The per-country indexes rely on each country's places being contiguous.
        if previous_country.is_some_and(|previous| previous > country) {
            return Err(malformed(
                TABLE,
                line_number,
                "places are not sorted by country",
            ));
        }
        previous_country = Some(country);
        let name_len = u16::try_from(name.len())
            .map_err(|_| malformed(TABLE, line_number, "name too long"))?;
        let name_start = u32::try_from(names.len())
            .map_err(|_| malformed(TABLE, line_number, "names too long"))?;
        names.push_str(name);
        places.push(Place {
            latitude_e5: coordinate(latitude, 90_00000)?,
            longitude_e5: coordinate(longitude, 180_00000)?,
            name_start,
            name_len,
            region: labels.intern(region, line_number)?,
            landmass: labels.intern(landmass, line_number)?,
            country,
        });
    }
    if places.is_empty() {
        return Err(malformed(TABLE, 0, "no places"));
    }
    names.shrink_to_fit();
    places.shrink_to_fit();
    Ok(PlaceTable {
        places,
        names,
        labels: labels.list,
    })
}

/// The next record of the places table; `false` at its end.
fn read_place(
    reader: &mut csv::Reader<impl Read>,
    record: &mut csv::StringRecord,
) -> Result<bool, GeoError> {
    reader.read_record(record).map_err(|error| {
        let line = error.position().map_or(0, |at| at.line() as usize);
        match error.into_kind() {
            csv::ErrorKind::Io(error) => GeoError::Decompress(error),
            csv::ErrorKind::Utf8 { .. } => malformed("places", line, "not UTF-8"),
            other => malformed("places", line, format!("{other:?}")),
        }
    })
}

fn parse_country_names(text: &'static str) -> Result<Vec<Option<&'static str>>, GeoError> {
    let mut names = vec![None; 26 * 26];
    for (number, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line
            .split_once('\t')
            .and_then(|(code, name)| Some((CountryCode::parse(code)?, name.trim())))
            .filter(|(_, name)| !name.is_empty());
        let Some((code, name)) = parsed else {
            return Err(malformed(
                "country names",
                number + 1,
                "expected CODE<TAB>Name",
            ));
        };
        names[code.slot()] = Some(name);
    }
    Ok(names)
}

fn parse_antarctica(text: &str) -> Result<Vec<(f64, f64)>, GeoError> {
    let mut outline = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let vertex = line
            .split_once('\t')
            .and_then(|(lat, long)| Some((lat.trim().parse().ok()?, long.trim().parse().ok()?)));
        let Some(vertex) = vertex else {
            return Err(malformed(
                "Antarctica outline",
                number + 1,
                "expected LAT<TAB>LONG",
            ));
        };
        outline.push(vertex);
    }
    if outline.len() < 3 {
        return Err(malformed("Antarctica outline", 0, "fewer than 3 vertices"));
    }
    // Close the polygon through the South Pole (see the file's header).
    outline.push((-90.0, 180.0));
    outline.push((-90.0, -180.0));
    Ok(outline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::location::tests::geocoder;

    #[test]
    fn every_country_code_in_the_data_has_a_name() {
        let geocoder = geocoder();
        for place in &geocoder.places {
            assert!(
                geocoder.country_names[place.country.slot()].is_some(),
                "{} has no name",
                place.country.as_str()
            );
        }
    }

    #[test]
    fn the_places_table_reads_comments_quotes_and_reports_lines() {
        let table = "# header\n\
                     4250779\t152109\tAndorra la Vella\tAndorra la Vella\tAD\t\n\
                     2314355\t5378810\tMuzayri\"\tAbu Dhabi\tAE\tSome Island\n";
        let parsed = parse_places(table.as_bytes()).unwrap();
        assert_eq!(parsed.places.len(), 2);
        assert_eq!(parsed.names, "Andorra la VellaMuzayri\"");
        let labels: Vec<&str> = parsed.labels.iter().map(|l| &**l).collect();
        assert_eq!(labels, ["", "Andorra la Vella", "Abu Dhabi", "Some Island"]);
        let short = "# header\n1\t2\tX\tY\tAD\t\n1\t2\tX\tAD\n";
        match parse_places(short.as_bytes()) {
            Err(GeoError::Malformed { line: 3, .. }) => {}
            other => panic!("{:?}", other.err()),
        }
        let unsorted = "1\t2\tX\tY\tFR\t\n1\t2\tX\tY\tAD\t\n";
        assert!(parse_places(unsorted.as_bytes()).is_err());
        assert!(parse_places(&b"\xff\t1\n"[..]).is_err());
    }
}
