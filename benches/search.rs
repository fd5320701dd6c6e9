//! Search cost per request on a generated 10,000-entry catalogue (issue: selection must not
//! become the bottleneck). Prints build time and per-query cost (mean, p50, p99) for cold
//! searches (straight through the index) and for `get`'s path (the per-query cache plus
//! variety selection). Then, on the shipped catalogue, what search by meaning costs: loading
//! the model, embedding the catalogue, and a first-seen query ranked by words alone and by
//! words and meaning (embedding it included). Run: `cargo bench --bench search`.

use memes::catalogue::Catalogue;
use memes::catalogue::search::{Document, SearchIndex};
use memes::catalogue::select::{Deliveries, Wanted};
use memes::catalogue::semantic::Model;
use std::hint::black_box;
use std::time::Instant;

const WORDS: &[&str] = &[
    "cat",
    "dog",
    "boyfriend",
    "girlfriend",
    "distracted",
    "grumpy",
    "happy",
    "sad",
    "angry",
    "drake",
    "button",
    "choice",
    "brain",
    "galaxy",
    "fire",
    "fine",
    "office",
    "monday",
    "coffee",
    "meeting",
    "surprised",
    "pikachu",
    "spongebob",
    "mocking",
    "success",
    "kid",
    "luck",
    "brian",
    "simply",
    "aliens",
    "history",
    "fry",
    "futurama",
    "philosoraptor",
    "exit",
    "ramp",
    "plan",
    "gru",
    "trade",
    "offer",
    "handshake",
    "monkey",
    "puppet",
    "panik",
    "kalm",
    "doge",
    "cheems",
    "astronaut",
    "skeleton",
    "waiting",
    "pooh",
    "tuxedo",
    "pablo",
    "escobar",
    "harold",
    "pain",
    "disaster",
    "girl",
    "roll",
    "safe",
];

fn catalogue(n: usize) -> Catalogue {
    let mut memes = Vec::with_capacity(n);
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..n {
        let word = |r: u64| WORDS[r as usize % WORDS.len()];
        let title = format!("{} {} {}", word(next()), word(next()), i);
        let tags: Vec<String> = (0..5).map(|_| word(next()).to_string()).collect();
        memes.push(serde_json::json!({
            "id": format!("meme-{i}"), "title": title,
            "image": format!("https://example.org/{i}.jpg"), "source": format!("https://example.org/{i}"),
            "tags": tags, "categories": [word(next())], "nsfw": i % 50 == 0,
            "regions": if i % 20 == 0 { vec!["FR"] } else { vec![] },
        }));
    }
    let file = serde_json::json!({"version": 1, "memes": memes});
    Catalogue::from_json(file.to_string().as_bytes(), "generated").expect("valid catalogue")
}

fn report(label: &str, mut nanos: Vec<u64>) {
    nanos.sort_unstable();
    let q = |p: f64| nanos[((nanos.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    let mean = nanos.iter().sum::<u64>() as f64 / nanos.len() as f64 / 1000.0;
    println!(
        "{label:<40} mean {mean:>8.2} µs  p50 {:>8.2} µs  p99 {:>8.2} µs",
        q(0.5),
        q(0.99)
    );
}

fn main() {
    // First: the model is loaded once per process, and the generated catalogue would load it.
    meaning();
    let started = Instant::now();
    let catalogue = catalogue(10_000);
    println!(
        "catalogue of {} memes built in {:.1} ms",
        catalogue.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let queries = [
        ("one word", vec!["cat", "brain", "coffee", "drake"]),
        (
            "two words",
            vec![
                "distracted boyfriend",
                "grumpy cat",
                "monday meeting",
                "success kid",
            ],
        ),
        (
            "typo",
            vec![
                "distracted boyfirend",
                "spongebbob",
                "philosoraptr",
                "astronuat",
            ],
        ),
        ("no match", vec!["zzqqxx", "qwertyuiop"]),
    ];
    // Cold: the index itself, as `get` pays on the first request for a query (repeated
    // queries are then served from the per-query cache, measured below).
    let index = SearchIndex::build((0..catalogue.len() as u32).map(|i| {
        let meme = catalogue.meme(i);
        Document {
            title: &meme.title,
            tags: &meme.tags,
            categories: &meme.categories,
        }
    }));
    for (class, texts) in &queries {
        let mut cold = Vec::new();
        for _ in 0..5_000 {
            for text in texts {
                let t = Instant::now();
                black_box(index.search(black_box(text), 128));
                cold.push(t.elapsed().as_nanos() as u64);
            }
        }
        report(&format!("cold search, {class}"), cold);
    }
    let deliveries = Deliveries::default();
    let mut warm = Vec::new();
    for round in 0..50_000u32 {
        let (_, texts) = &queries[round as usize % 3];
        let query = texts[round as usize % texts.len()];
        let user = format!("user-{}", round % 5_000);
        let wanted = Wanted {
            query: Some(query),
            count: 1,
            nsfw: false,
            place: &["FR"],
        };
        let t = Instant::now();
        let picked = deliveries
            .choose(&catalogue, &user, &wanted)
            .expect("matches");
        deliveries.record(&user, std::iter::once(catalogue.delivery_key(picked[0])));
        warm.push(t.elapsed().as_nanos() as u64);
    }
    report("get's selection (cache + variety + place)", warm);
}

/// The cost of meaning on the shipped catalogue (357 memes with descriptions).
fn meaning() {
    let started = Instant::now();
    let Some(model) = Model::embedded() else {
        println!("built without the semantic feature: nothing more to measure");
        return;
    };
    println!(
        "model loaded (tokenizer maps built, table read in place) in {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    let started = Instant::now();
    let shipped = Catalogue::embedded().expect("the shipped catalogue");
    println!(
        "shipped catalogue of {} memes built (every description embedded) in {:.1} ms",
        shipped.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let described = [
        "dog sitting in a burning room saying everything is okay",
        "employee thrown out of the window for a sensible idea in a meeting",
        "grumpy cat",
        "distracted boyfirend",
    ];
    let mut embed = Vec::new();
    for _ in 0..5_000 {
        for text in described {
            let t = Instant::now();
            black_box(model.embed(black_box(text)));
            embed.push(t.elapsed().as_nanos() as u64);
        }
    }
    report("embedding a query", embed);
    let index = SearchIndex::build((0..shipped.len() as u32).map(|i| {
        let meme = shipped.meme(i);
        Document {
            title: &meme.title,
            tags: &meme.tags,
            categories: &meme.categories,
        }
    }));
    let mut words = Vec::new();
    let mut hybrid = Vec::new();
    for round in 0..5_000 {
        for text in described {
            // A query never seen before, as the per-query cache would otherwise answer.
            let query = format!("{text} {round}");
            let t = Instant::now();
            black_box(index.search(black_box(&query), 128));
            words.push(t.elapsed().as_nanos() as u64);
            let t = Instant::now();
            black_box(shipped.ranked(black_box(&query), false));
            hybrid.push(t.elapsed().as_nanos() as u64);
        }
    }
    report("first-seen query, words alone", words);
    report("first-seen query, words and meaning", hybrid);
    println!();
}
