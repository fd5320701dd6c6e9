//! The meme catalogue: loading and validating it, and what is derived from it once at load
//! (the search index, each meme's embedding, and each meme's reply JSON, serialised once
//! instead of per request).
//!
//! A catalogue is immutable once built; reloading builds a new one and swaps it in whole, so
//! a request always sees one consistent catalogue. Sub-modules: [`search`] ranks memes by
//! their words (BM25F), [`semantic`] embeds text for its meaning, [`hybrid`] fuses the two
//! rankings, [`select`] picks which memes a user gets, [`location`] says where a coordinate
//! is; [`quality`] (tests only) measures the ranking on described queries.

pub mod hybrid;
pub mod location;
#[cfg(all(test, feature = "semantic"))]
mod quality;
pub mod search;
pub mod select;
pub mod semantic;

use crate::protocol::MemeView;
use hybrid::Match;
use search::{Document, SearchIndex};
use semantic::{Model, Vectors};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The catalogue shipped with memes, used unless `--catalogue FILE` is given.
pub const EMBEDDED: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/catalogue.json"));

/// Ranked results kept per distinct query, so repeated queries skip the search.
const QUERY_CACHE_ENTRIES: usize = 4096;
/// At most this many ranked results are considered for a delivery.
const RANKED_LIMIT: usize = 64;

/// Ranked results by query (a bounded, concurrent cache).
type RankedCache = quick_cache::sync::Cache<String, Arc<Ranked>>;

/// Descriptions are one sentence: at most this many characters.
const MAX_DESCRIPTION_CHARS: usize = 500;

/// A ranked match is a "good" match if it scores at least this share of the best one (above
/// the score every match has).
const GOOD_SHARE: f32 = 0.5;

/// The ranked matches of one query, best first.
#[derive(Debug, Default)]
pub struct Ranked {
    pub hits: Vec<Match>,
    /// The first `good` hits score close enough to the best to count as good matches.
    pub good: usize,
}

/// One meme as the catalogue file describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meme {
    /// Stable identifier: lower-case letters, digits and dashes.
    pub id: String,
    pub title: String,
    /// One sentence saying what the meme shows and means, in plain words: what search by
    /// meaning compares a query with.
    #[serde(default)]
    pub description: String,
    /// Where the image lives (https URL).
    pub image: String,
    /// A page about the meme (https URL).
    pub source: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    /// Not safe for work: only delivered to requests that say `nsfw`.
    #[serde(default)]
    pub nsfw: bool,
    /// ISO 3166-1 country codes (or ISO 3166-2 subdivision codes) the meme belongs to.
    #[serde(default)]
    pub regions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    version: u32,
    memes: Vec<Meme>,
}

/// Why a catalogue was rejected. The message names the entry.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: not a catalogue")]
    Parse {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{origin}: entry {index} ({id:?}): {reason}")]
    Invalid {
        origin: String,
        index: usize,
        id: String,
        reason: String,
    },
    #[error("{origin}: {reason}")]
    Unusable { origin: String, reason: String },
}

/// A validated catalogue and everything derived from it.
pub struct Catalogue {
    memes: Vec<Meme>,
    /// Each meme's reply JSON (`{"id","title","image","source"}`), serialised once.
    views: Vec<Box<RawValue>>,
    by_id: HashMap<String, u32>,
    index: SearchIndex,
    /// Each meme's embedding, when this build has a model.
    meaning: Option<Meaning>,
    /// Indices of memes that are safe for work, for requests without a query.
    safe: Vec<u32>,
    /// Per meme, a hash of its id: how deliveries are remembered (it survives reloads).
    delivery_keys: Vec<u64>,
    /// "embedded" or the file it was loaded from.
    origin: String,
    /// Ranked results of recent queries, without and with nsfw memes.
    ranked_cache: [RankedCache; 2],
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalogue")
            .field("origin", &self.origin)
            .field("memes", &self.memes.len())
            .finish_non_exhaustive()
    }
}

impl Catalogue {
    /// The catalogue embedded in the binary.
    pub fn embedded() -> Result<Catalogue, CatalogueError> {
        Catalogue::from_json(EMBEDDED, "embedded catalogue")
    }

    /// Loads and validates a catalogue file.
    pub fn from_file(path: &Path) -> Result<Catalogue, CatalogueError> {
        let bytes = std::fs::read(path).map_err(|source| CatalogueError::Read {
            path: path.into(),
            source,
        })?;
        Catalogue::from_json(&bytes, &path.display().to_string())
    }

    /// Parses and validates catalogue JSON; `origin` names it in messages.
    pub fn from_json(bytes: &[u8], origin: &str) -> Result<Catalogue, CatalogueError> {
        let file: CatalogueFile =
            serde_json::from_slice(bytes).map_err(|source| CatalogueError::Parse {
                origin: origin.into(),
                source,
            })?;
        if file.version != 1 {
            return Err(CatalogueError::Unusable {
                origin: origin.into(),
                reason: format!("unsupported catalogue version {}", file.version),
            });
        }
        if file.memes.is_empty() {
            return Err(CatalogueError::Unusable {
                origin: origin.into(),
                reason: "the catalogue has no memes".into(),
            });
        }
        let mut by_id = HashMap::with_capacity(file.memes.len());
        for (index, meme) in file.memes.iter().enumerate() {
            let invalid = |reason: String| CatalogueError::Invalid {
                origin: origin.into(),
                index,
                id: meme.id.clone(),
                reason,
            };
            validate_meme(meme).map_err(invalid)?;
            if by_id.insert(meme.id.clone(), index as u32).is_some() {
                return Err(invalid("the id is used by an earlier entry too".into()));
            }
        }
        let views = file
            .memes
            .iter()
            .map(|meme| {
                let view = MemeView {
                    id: meme.id.clone(),
                    title: meme.title.clone(),
                    image: meme.image.clone(),
                    source: meme.source.clone(),
                };
                serde_json::value::to_raw_value(&view).expect("meme view serialises")
            })
            .collect();
        let index = SearchIndex::build(file.memes.iter().map(|meme| Document {
            title: &meme.title,
            tags: &meme.tags,
            categories: &meme.categories,
        }));
        let started = std::time::Instant::now();
        let meaning = Model::embedded().map(|model| {
            let loaded = started.elapsed();
            let vectors = Vectors::build(model, file.memes.iter().map(embedding_text));
            tracing::debug!(
                "search by meaning: model ready after {loaded:?}, {} memes embedded in {:?}",
                file.memes.len(),
                started.elapsed() - loaded
            );
            Meaning { model, vectors }
        });
        let safe = (0..file.memes.len() as u32)
            .filter(|i| !file.memes[*i as usize].nsfw)
            .collect();
        let delivery_keys = file
            .memes
            .iter()
            .map(|meme| delivery_key(&meme.id))
            .collect();
        let cache = || RankedCache::new(QUERY_CACHE_ENTRIES);
        Ok(Catalogue {
            memes: file.memes,
            views,
            by_id,
            index,
            meaning,
            safe,
            delivery_keys,
            origin: origin.into(),
            ranked_cache: [cache(), cache()],
        })
    }

    pub fn len(&self) -> usize {
        self.memes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.memes.is_empty()
    }

    /// "embedded catalogue" or the path it was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn meme(&self, index: u32) -> &Meme {
        &self.memes[index as usize]
    }

    /// The meme's reply JSON, serialised at load.
    pub fn view(&self, index: u32) -> &RawValue {
        &self.views[index as usize]
    }

    pub fn find(&self, id: &str) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Memes that are safe for work, in catalogue order.
    pub fn safe(&self) -> &[u32] {
        &self.safe
    }

    /// How deliveries of the meme at `index` are remembered.
    pub fn delivery_key(&self, index: u32) -> u64 {
        self.delivery_keys[index as usize]
    }

    /// Ranked matches for `query`, best first, nsfw memes left out unless `nsfw`.
    /// Cached per query: ranking is deterministic for a given catalogue.
    pub fn ranked(&self, query: &str, nsfw: bool) -> Arc<Ranked> {
        let cache = &self.ranked_cache[usize::from(nsfw)];
        if let Some(ranked) = cache.get(query) {
            return ranked;
        }
        let keyword = self.index.search(query, RANKED_LIMIT * 2);
        let cosines = self.meaning.as_ref().and_then(|meaning| {
            let query = meaning.model.embed(query)?;
            Some(meaning.vectors.cosines(&query))
        });
        let hits: Vec<Match> = hybrid::fuse(&keyword, cosines.as_deref())
            .into_iter()
            .filter(|hit| nsfw || !self.memes[hit.doc as usize].nsfw)
            .take(RANKED_LIMIT)
            .collect();
        // Share of the best score above what any match has: fused scores start at the
        // meaning floor, so half of the best would count every match by meaning as good, and
        // a regional or not-yet-seen one would be preferred to the meme a description names.
        let base = if cosines.is_some() {
            hybrid::MEANING_FLOOR
        } else {
            0.0
        };
        let best = hits.first().map_or(0.0, |hit| hit.score);
        let good = hits
            .iter()
            .take_while(|hit| hit.score - base >= (best - base) * GOOD_SHARE)
            .count();
        let ranked = Arc::new(Ranked { hits, good });
        cache.insert(query.to_string(), ranked.clone());
        ranked
    }

    /// Whether this catalogue ranks by meaning too (the build has the model).
    pub fn has_meaning(&self) -> bool {
        self.meaning.is_some()
    }

    /// The memes nearest in meaning to the meme at `index`, nearest first, without itself,
    /// nsfw memes left out unless `nsfw`; each [`Match`] has the cosine as its score. A build
    /// without the model has no meaning to compare: there, the memes whose words match the
    /// meme's title and tags best (BM25F).
    pub fn similar(&self, index: u32, limit: usize, nsfw: bool) -> Vec<Match> {
        let keep = |doc: u32| doc != index && (nsfw || !self.memes[doc as usize].nsfw);
        let Some(meaning) = &self.meaning else {
            let meme = &self.memes[index as usize];
            let words = format!("{} {}", meme.title, meme.tags.join(" "));
            let hits = self.index.search(&words, limit + RANKED_LIMIT);
            let mut nearest = hybrid::fuse(&hits, None);
            nearest.retain(|m| keep(m.doc));
            nearest.truncate(limit);
            return nearest;
        };
        let cosines = meaning.vectors.cosines(meaning.vectors.get(index));
        let mut nearest: Vec<Match> = cosines
            .into_iter()
            .enumerate()
            .map(|(doc, cosine)| Match {
                doc: doc as u32,
                score: cosine,
                bm25: 0.0,
                meaning: Some(cosine),
            })
            .filter(|m| keep(m.doc))
            .collect();
        nearest.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
        nearest.truncate(limit);
        nearest
    }
}

/// The embedding model and the catalogue's memes embedded with it.
struct Meaning {
    model: &'static Model,
    vectors: Vectors,
}

/// What a meme's embedding is made from: its description, or, for a catalogue written
/// without descriptions, its title and tags.
fn embedding_text(meme: &Meme) -> std::borrow::Cow<'_, str> {
    if meme.description.trim().is_empty() {
        format!("{}. {}", meme.title, meme.tags.join(", ")).into()
    } else {
        meme.description.as_str().into()
    }
}

/// A stable hash of a meme id.
fn delivery_key(id: &str) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(id, &mut hasher);
    std::hash::Hasher::finish(&hasher)
}

fn validate_meme(meme: &Meme) -> Result<(), String> {
    let id_ok = !meme.id.is_empty()
        && meme.id.len() <= 64
        && meme.id.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
    if !id_ok {
        return Err("the id must be 1 to 64 lower-case letters, digits and single dashes".into());
    }
    if meme.title.trim().is_empty() {
        return Err("the title is empty".into());
    }
    if meme.description.chars().count() > MAX_DESCRIPTION_CHARS
        || meme.description.chars().any(char::is_control)
    {
        return Err(format!(
            "the description must be at most {MAX_DESCRIPTION_CHARS} characters on one line"
        ));
    }
    for (field, url) in [("image", &meme.image), ("source", &meme.source)] {
        validate_url(url).map_err(|reason| format!("{field} {url:?}: {reason}"))?;
    }
    if let Some(tag) = meme
        .tags
        .iter()
        .chain(&meme.categories)
        .find(|t| t.trim().is_empty())
    {
        return Err(format!("empty tag or category {tag:?}"));
    }
    for region in &meme.regions {
        let (country, subdivision) = region.split_once('-').unwrap_or((region, ""));
        let country_ok = country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase());
        let subdivision_ok = subdivision.len() <= 3
            && subdivision
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && (subdivision.is_empty() || region.contains('-'));
        if !country_ok || !subdivision_ok || region.ends_with('-') {
            return Err(format!(
                "region {region:?} is not an ISO 3166 code like \"BR\" or \"US-NY\""
            ));
        }
    }
    Ok(())
}

fn validate_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with https://")?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || !host.contains('.') {
        return Err("has no host name");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces or control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalogue(memes: &str) -> Result<Catalogue, CatalogueError> {
        Catalogue::from_json(
            format!(r#"{{"version":1,"memes":[{memes}]}}"#).as_bytes(),
            "test",
        )
    }

    const CAT: &str = r#"{"id":"grumpy-cat","title":"Grumpy Cat","image":"https://i.imgflip.com/8p0a.jpg","source":"https://knowyourmeme.com/memes/grumpy-cat","tags":["cat","grumpy"],"categories":["animal","cat"]}"#;

    #[test]
    fn the_embedded_catalogue_is_valid_and_large() {
        let catalogue = Catalogue::embedded().unwrap();
        assert!(catalogue.len() >= 300, "{} memes", catalogue.len());
        assert!(catalogue.find("distracted-boyfriend").is_some());
        assert!(
            catalogue.safe().len() < catalogue.len(),
            "some memes are flagged nsfw"
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let error = catalogue(&format!("{CAT},{CAT}"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("entry 1") && error.contains("grumpy-cat"),
            "{error}"
        );
        let error = catalogue(&CAT.replace("https://i.imgflip", "ftp://i.imgflip"))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("image"), "{error}");
        let error = catalogue(&CAT.replace("Grumpy Cat", " "))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("title"), "{error}");
        let error = catalogue(&CAT.replace("grumpy-cat\",\"title", "Grumpy_Cat\",\"title"))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("id"), "{error}");
        let error = catalogue(&CAT.replace(r#""tags""#, r#""regions":["usa"],"tags""#))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("region"), "{error}");
        assert!(catalogue("").is_err());
        assert!(Catalogue::from_json(b"{}", "test").is_err());
    }

    #[cfg(feature = "semantic")]
    #[test]
    fn a_description_has_few_good_matches_and_the_meme_it_describes_is_one() {
        // Good matches are preferred by region and rotated for variety: if every match by
        // meaning counted as good, a user abroad could be given a loosely related meme of
        // their country instead of the one they described.
        let catalogue = Catalogue::embedded().unwrap();
        for (query, id) in [
            (
                "little kid smiling in front of a house on fire",
                "disaster-girl",
            ),
            (
                "squinting cartoon guy unsure whether something is one thing or another",
                "futurama-fry",
            ),
            (
                "bones of someone on a bench who has been there forever",
                "waiting-skeleton",
            ),
            ("frowning kitty who hates everything", "grumpy-cat"),
        ] {
            let ranked = catalogue.ranked(query, false);
            let good = &ranked.hits[..ranked.good];
            assert!(
                good.iter().any(|hit| catalogue.meme(hit.doc).id == id),
                "{query:?}"
            );
            assert!(
                ranked.good <= 3 && ranked.hits.len() > 5,
                "{query:?}: {} good of {}",
                ranked.good,
                ranked.hits.len()
            );
        }
    }

    #[test]
    fn views_are_serialised_once_with_the_public_fields() {
        let catalogue = catalogue(CAT).unwrap();
        assert_eq!(
            catalogue.view(0).get(),
            r#"{"id":"grumpy-cat","title":"Grumpy Cat","image":"https://i.imgflip.com/8p0a.jpg","source":"https://knowyourmeme.com/memes/grumpy-cat"}"#
        );
    }
}
