//! The lookup stage: [`Geocoder::locate`] places a point, country first, then the nearest
//! place within it (preferring the point's own subdivision), then the at-sea rule.
//!
//! Owns the nearest-place k-d trees and the sphere geometry (unit vectors, great-circle
//! distances, destinations along a bearing, the Antarctica outline test). A lookup reads
//! only what the data stage loaded and never fails or panics, whatever the input.

use std::num::NonZeroUsize;

use country_boundaries::LatLon;
use kiddo::{ImmutableKdTree, SquaredEuclidean};

use super::{CountryCode, GeoError, Geocoder, Location, malformed};

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

/// The result of a nearest-place search: place index and great-circle distance.
#[derive(Debug, Clone, Copy)]
struct Nearest {
    place: usize,
    distance_km: f64,
}

impl Geocoder {
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
pub(super) struct PlacePoint {
    pub(super) position: [f32; 3],
    pub(super) place: u32,
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
pub(super) struct PlaceTree {
    tree: ImmutableKdTree<f32, 3>,
    /// Index in `Geocoder::places` of the run's first place.
    first: u32,
}

impl PlaceTree {
    /// `points` must be a contiguous run of places in order.
    pub(super) fn new(points: &[PlacePoint]) -> Result<PlaceTree, GeoError> {
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
pub(super) fn unit_vector(lat: f64, long: f64) -> [f32; 3] {
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
    use crate::catalogue::location::Place;
    use crate::catalogue::location::tests::{geocoder, pseudo_random_points};

    #[test]
    fn great_circle_distance_is_sane() {
        // Paris to London is about 344 km.
        let d = great_circle_km(48.8566, 2.3522, 51.5074, -0.1278);
        assert!((340.0..348.0).contains(&d), "{d}");
        assert!(great_circle_km(0.0, 179.9, 0.0, -179.9) < 23.0);
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
}
