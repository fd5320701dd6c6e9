//! Reverse-geocoding cost per lookup: `Geocoder::load` (parsing the places table and building
//! the nearest-place trees) and `locate` for points on land (country polygons, then the
//! nearest place in that country) and at sea (the nearest place on Earth, the tree over all
//! ~145,000 places). Points are spread over the globe by a fixed pseudo-random sequence, so
//! runs compare. Run: `cargo bench --bench location`.

use memes::catalogue::location::Geocoder;
use std::hint::black_box;
use std::time::Instant;

/// A fixed sequence of points (lat, long), uniform over the sphere's area.
fn points(count: usize) -> Vec<(f64, f64)> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..count)
        .map(|_| {
            let lat = (2.0 * next() - 1.0).asin().to_degrees();
            let long = 360.0 * next() - 180.0;
            (lat, long)
        })
        .collect()
}

/// Mean, p50 and p99 of per-call times in µs.
fn summary(mut micros: Vec<f64>) -> String {
    micros.sort_by(f64::total_cmp);
    let mean = micros.iter().sum::<f64>() / micros.len() as f64;
    let at = |q: f64| micros[((micros.len() - 1) as f64 * q) as usize];
    format!(
        "mean {mean:.2} µs  p50 {:.2}  p99 {:.2}  ({} lookups)",
        at(0.5),
        at(0.99),
        micros.len()
    )
}

fn main() {
    let started = Instant::now();
    let geocoder = Geocoder::load().expect("embedded data loads");
    println!("load: {:.0} ms", started.elapsed().as_secs_f64() * 1e3);

    let (mut land, mut sea) = (Vec::new(), Vec::new());
    // One pass to warm caches, then the measured pass.
    for round in 0..2 {
        for &(lat, long) in &points(200_000) {
            let started = Instant::now();
            let location = black_box(geocoder.locate(black_box(lat), black_box(long)));
            let micros = started.elapsed().as_secs_f64() * 1e6;
            if round == 1 {
                match location.at_sea {
                    true => sea.push(micros),
                    false => land.push(micros),
                }
            }
        }
    }
    println!("locate on land: {}", summary(land));
    println!("locate at sea:  {}", summary(sea));
}
