//! Ranked full-text search over the meme catalogue.
//!
//! This module owns three things and nothing else:
//!
//! * **Normalisation** of document and query text: Unicode case and accent
//!   folding (via `deunicode`), splitting on non-alphanumerics, dropping
//!   apostrophes inside words, Snowball English stemming and stop words.
//! * **Ranking**: BM25F over title, tags and categories with per-field
//!   weights, a coordination factor so documents matching more query words
//!   rank higher, and a bonus for query words that are adjacent in a title.
//! * **Typo matching**: query words missing from the vocabulary are matched
//!   to vocabulary words one edit away through a symmetric-deletion index.
//!
//! It must stay a pure, in-memory function of the documents it was built
//! from: no I/O, no clocks, no randomness, and no knowledge of users,
//! balances, regions or nsfw flags. Those filters live with the callers,
//! which post-filter the [`Hit`]s returned here.

use std::cell::RefCell;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

/// BM25 term-frequency saturation.
const K1: f32 = 1.2;
/// BM25 length normalisation strength.
const B: f32 = 0.75;
/// Field weights, indexed by [`Field`]: a word in the title says more about
/// a meme than the same word in a tag, and categories are the broadest.
const FIELD_WEIGHTS: [f32; FIELD_COUNT] = [3.0, 2.0, 1.0];
/// Multiplier for postings reached through a typo correction, so that an
/// exact match always beats an otherwise identical corrected one.
const CORRECTION_PENALTY: f32 = 0.7;
/// Size of the title-adjacency bonus relative to the rarer word's idf.
const PHRASE_WEIGHT: f32 = 0.5;
/// Upper bound on the distinct terms a query contributes; keeps the cost of
/// pathological queries bounded.
const MAX_QUERY_TERMS: usize = 32;
// Per-document word markers and match counts are stored as u8.
const _: () = assert!(MAX_QUERY_TERMS < u8::MAX as usize);
/// Only this prefix of a query is looked at, bounding folding and splitting.
const MAX_QUERY_BYTES: usize = 1024;
/// Shorter words have too many one-edit neighbours for correction to guess
/// the user's intent.
const MIN_TYPO_LEN: usize = 5;
/// Deletion variants cost O(len²) to hash; nobody mistypes 40-letter words
/// in a way we could usefully repair.
const MAX_TYPO_LEN: usize = 32;
/// How many vocabulary terms a single misspelled word may expand to.
const MAX_CORRECTIONS: usize = 4;
/// Suffixes the English stemmer commonly strips, used to guess the spelling
/// a misspelled stem came from.
const REINFLECTIONS: [&str; 8] = ["e", "s", "es", "ed", "er", "ing", "ly", "y"];

const FIELD_COUNT: usize = 3;

/// The searchable fields of a document, in weight order.
#[derive(Clone, Copy)]
enum Field {
    Title = 0,
    Tags = 1,
    Categories = 2,
}

/// One searchable document: borrowed views of a catalogue entry.
#[derive(Debug, Clone, Copy)]
pub struct Document<'a> {
    /// The meme's display title; the most heavily weighted field.
    pub title: &'a str,
    /// Free-form tags; each may contain several words.
    pub tags: &'a [String],
    /// Catalogue categories; the least weighted field.
    pub categories: &'a [String],
}

/// One ranked match: `doc` is the index of the document in build order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Position of the matching document in the sequence given to
    /// [`SearchIndex::build`].
    pub doc: u32,
    /// Relevance; only meaningful relative to other hits of the same query.
    pub score: f32,
}

/// An immutable, thread-safe ranked index over a fixed set of documents.
///
/// Rebuild it when the catalogue changes: building one for 10,000 documents
/// takes about 20 ms and under 3 MiB.
pub struct SearchIndex {
    doc_count: u32,
    vocab: Vocabulary,
    postings: Postings,
    /// Adjacent title term pairs -> documents whose title contains them.
    phrases: MultiMap,
    typos: TypoIndex,
}

impl SearchIndex {
    /// Indexes `docs`; hits refer to documents by their position in this
    /// sequence.
    ///
    /// # Panics
    /// If given more than `u32::MAX` documents.
    #[must_use]
    pub fn build<'a>(docs: impl IntoIterator<Item = Document<'a>>) -> SearchIndex {
        let mut builder = IndexBuilder::default();
        for doc in docs {
            builder.add(&doc);
        }
        builder.finish()
    }

    /// Ranked matches, best first, at most `limit`. Deterministic: ties
    /// broken by doc index ascending. An empty/whitespace/punctuation-only
    /// query returns no hits.
    #[must_use]
    pub fn search(&self, query: &str, limit: usize) -> Vec<Hit> {
        if limit == 0 || self.doc_count == 0 {
            return Vec::new();
        }
        SCRATCH.with_borrow_mut(|scratch| self.search_with(query, limit, scratch))
    }

    /// Number of indexed documents.
    #[must_use]
    pub fn len(&self) -> usize {
        self.doc_count as usize
    }

    /// Whether the index holds no documents.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.doc_count == 0
    }

    fn search_with(&self, query: &str, limit: usize, scratch: &mut Scratch) -> Vec<Hit> {
        let Scratch {
            query: terms,
            alternatives,
            candidates,
            spelling,
            accumulator,
        } = scratch;
        terms.parse(query);
        if terms.is_empty() {
            return Vec::new();
        }
        self.resolve(terms, alternatives, candidates, spelling);
        if let Some(term) = alternatives.single_exact_term() {
            return self.single_term_hits(term, limit);
        }
        accumulator.start(self.doc_count as usize);
        self.accumulate(alternatives, accumulator);
        self.add_phrase_bonus(alternatives, accumulator);
        accumulator.top(limit, terms.len())
    }

    /// A one-word exact query needs no accumulation: postings are stored
    /// best first, so its hits are a prefix of the term's list. Scores are
    /// bit-identical to the general path (coordination is 1, no phrases).
    fn single_term_hits(&self, term: u32, limit: usize) -> Vec<Hit> {
        let (docs, impacts) = self.postings.get(term);
        let hits = docs.iter().zip(impacts).take(limit);
        hits.map(|(&doc, &score)| Hit { doc, score }).collect()
    }

    /// Maps every query term to the vocabulary terms it stands for: itself
    /// when known, otherwise its typo corrections (possibly none).
    fn resolve(
        &self,
        terms: &QueryTerms,
        out: &mut Alternatives,
        candidates: &mut Vec<u32>,
        spelling: &mut String,
    ) {
        out.clear();
        for stem in terms.iter() {
            if let Some(term) = self.vocab.lookup(stem) {
                out.push(term, 1.0);
            } else if is_correctable(stem) {
                self.corrections(stem, spelling, candidates);
                for &term in candidates.iter() {
                    out.push(term, CORRECTION_PENALTY);
                }
            }
            out.end_word();
        }
    }

    /// The most common vocabulary terms within one edit of the unknown stem
    /// `misspelled`, or of a spelling it was plausibly stemmed from.
    ///
    /// Stemming a misspelled word can strip a suffix the user typed
    /// ("boyfried" -> "boyfri", three edits from "boyfriend"), so the stem
    /// is also re-inflected with common suffixes and every spelling that
    /// stems back to it is matched against the raw document words. The
    /// spellings tried depend only on the stem, which keeps the hits a
    /// function of [`canonical_query`].
    fn corrections(&self, misspelled: &str, spelling: &mut String, out: &mut Vec<u32>) {
        out.clear();
        self.typos.corrections(misspelled, out);
        for suffix in REINFLECTIONS {
            spelling.clear();
            spelling.push_str(misspelled);
            spelling.push_str(suffix);
            if spelling.len() > MAX_TYPO_LEN {
                continue;
            }
            // Probe first: stemming costs more (and allocates), and most
            // spellings match nothing.
            let found_from = out.len();
            self.typos.corrections(spelling, out);
            if out.len() > found_from && stem(spelling) != misspelled {
                out.truncate(found_from);
            }
        }
        out.sort_unstable();
        out.dedup();
        out.sort_by_key(|&term| (std::cmp::Reverse(self.postings.df(term)), term));
        out.truncate(MAX_CORRECTIONS);
    }

    fn accumulate(&self, alternatives: &Alternatives, acc: &mut Accumulator) {
        for (word, alts) in alternatives.words().enumerate() {
            for &(term, weight) in alts {
                let (docs, impacts) = self.postings.get(term);
                for (&doc, &impact) in docs.iter().zip(impacts) {
                    acc.add(doc, word, impact * weight);
                }
            }
        }
    }

    /// Rewards documents whose title contains consecutive query words next
    /// to each other, so "distracted boyfriend" prefers that exact title
    /// over one merely containing both words.
    fn add_phrase_bonus(&self, alternatives: &Alternatives, acc: &mut Accumulator) {
        let lefts = alternatives.words();
        let rights = alternatives.words().skip(1);
        for (pair, (lefts, rights)) in lefts.zip(rights).enumerate() {
            for &(left, left_weight) in lefts {
                for &(right, right_weight) in rights {
                    let idf = self.vocab.idf[left as usize].min(self.vocab.idf[right as usize]);
                    let bonus = PHRASE_WEIGHT * idf * left_weight.min(right_weight);
                    for &doc in self.phrases.get(bigram_key(left, right)) {
                        acc.add_phrase(doc, pair, bonus);
                    }
                }
            }
        }
    }
}

impl fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SearchIndex")
            .field("docs", &self.doc_count)
            .field("terms", &self.vocab.len())
            .field("postings", &self.postings.docs.len())
            .finish_non_exhaustive()
    }
}

/// The query in the canonical form used for matching (folded, stemmed terms
/// joined by one space); two queries with the same canonical form give the
/// same hits. Used as a cache key.
///
/// Stop words are already removed (unless the query is made only of them),
/// duplicates dropped and the term cap applied, so e.g. `"The Cats!"` and
/// `"cat"` share the key `"cat"`.
#[must_use]
pub fn canonical_query(query: &str) -> String {
    let mut terms = QueryTerms::default();
    terms.parse(query);
    terms.text
}

// ---------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------

static STEMMER: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

fn stem(word: &str) -> std::borrow::Cow<'_, str> {
    STEMMER.stem(word)
}

/// Words so common that they only add noise to ranking. They are still
/// indexed, because a query made only of them ("this is") must still find
/// titles like "This Is Fine". Sorted, for binary search.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "with",
];

fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// Folded words of one or more texts, stored back to back so that splitting
/// allocates nothing once the buffers have grown.
#[derive(Default)]
struct Words {
    text: String,
    ends: Vec<u32>,
}

impl Words {
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.text[start as usize..end as usize])
    }

    /// Appends the folded words of `text`: lowercase ASCII alphanumeric runs
    /// after transliteration, with apostrophes between letters dropped so
    /// that "don't" and "dont" agree.
    fn split(&mut self, text: &str) {
        let mut apostrophe = false;
        let mut word_start = self.text.len();
        let mut feed = |words: &mut Words, byte: u8| {
            if byte.is_ascii_alphanumeric() {
                apostrophe = false;
                words.text.push(char::from(byte.to_ascii_lowercase()));
            } else if byte == b'\'' && !apostrophe && words.text.len() > word_start {
                apostrophe = true;
            } else {
                apostrophe = false;
                words.end_word(&mut word_start);
            }
        };
        for ch in text.chars() {
            if ch.is_ascii() {
                feed(self, ch as u8);
            } else {
                // Transliteration folds case and accents in one step
                // ("É" -> "E", "ß" -> "ss"); unknown characters separate words.
                let ascii = deunicode::deunicode_char(ch).unwrap_or(" ");
                for byte in ascii.bytes() {
                    feed(self, byte);
                }
            }
        }
        self.end_word(&mut word_start);
    }

    fn end_word(&mut self, word_start: &mut usize) {
        if self.text.len() > *word_start {
            self.ends.push(to_u32(self.text.len()));
            *word_start = self.text.len();
        }
    }
}

/// A parsed query: its distinct stemmed terms in order, space separated, so
/// the buffer doubles as the canonical form.
#[derive(Default)]
struct QueryTerms {
    words: Words,
    text: String,
    count: usize,
}

impl QueryTerms {
    fn parse(&mut self, query: &str) {
        self.words.clear();
        self.text.clear();
        self.count = 0;
        self.words
            .split(truncate_at_char_boundary(query, MAX_QUERY_BYTES));
        let only_stop_words = self.words.iter().all(is_stop_word);
        for word in self.words.iter() {
            if self.count == MAX_QUERY_TERMS {
                break;
            }
            if only_stop_words || !is_stop_word(word) {
                let stemmed = stem(word);
                if !stemmed.is_empty() && !self.iter().any(|seen| seen == stemmed) {
                    if self.count > 0 {
                        self.text.push(' ');
                    }
                    self.text.push_str(&stemmed);
                    self.count += 1;
                }
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.text.split(' ').filter(|term| !term.is_empty())
    }

    fn len(&self) -> usize {
        self.count
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }
}

fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Typo correction starts from stems, never from the raw query word, so that
/// the hits are a function of [`canonical_query`] alone. The length rule is
/// therefore applied to the stem: a stem is never longer than its word, so
/// words of four letters or fewer are never corrected. Digits are excluded
/// because "2019" -> "2018" is not a typo.
fn is_correctable(term: &str) -> bool {
    (MIN_TYPO_LEN..=MAX_TYPO_LEN).contains(&term.len())
        && term.bytes().all(|b| b.is_ascii_lowercase())
}

// ---------------------------------------------------------------------------
// Index structures
// ---------------------------------------------------------------------------

/// Multiplier of the polynomial string hash (odd, so multiplication by it
/// is invertible mod 2^64).
const HASH_BASE: u64 = 0x0000_0100_0000_01b3;

/// Polynomial hash of `bytes` mod 2^64. Hashes are only ever used as
/// lookup keys whose every hit is verified against the real string, so a
/// collision costs time, never correctness.
fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |hash, &byte| {
        hash.wrapping_mul(HASH_BASE).wrapping_add(u64::from(byte))
    })
}

/// Calls `visit` with [`hash_bytes`] of `word` and of each of its
/// single-byte deletions, in O(len) rather than rehashing every variant:
/// deleting byte `i` leaves `prefix(i) * BASE^(len-1-i) + suffix(i+1)`.
fn for_each_deletion_hash(word: &[u8], mut visit: impl FnMut(u64)) {
    const MAX_LEN: usize = MAX_TYPO_LEN + 1;
    assert!(word.len() <= MAX_LEN, "typo forms are length-capped");
    let mut suffix = [0u64; MAX_LEN + 1];
    let mut power = [0u64; MAX_LEN];
    let mut base_power = 1u64;
    for i in (0..word.len()).rev() {
        power[i] = base_power;
        suffix[i] = u64::from(word[i])
            .wrapping_mul(base_power)
            .wrapping_add(suffix[i + 1]);
        base_power = base_power.wrapping_mul(HASH_BASE);
    }
    let mut prefix = 0u64;
    for i in 0..word.len() {
        visit(prefix.wrapping_mul(power[i]).wrapping_add(suffix[i + 1]));
        prefix = prefix
            .wrapping_mul(HASH_BASE)
            .wrapping_add(u64::from(word[i]));
    }
    visit(prefix);
}

fn hash_str(text: &str) -> u64 {
    hash_bytes(text.as_bytes())
}

fn bigram_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("search index exceeds u32 capacity")
}

/// A sorted, compact `u64 -> [u32]` multimap, deterministic and free of
/// per-entry allocations.
///
/// Keys are stored mixed and sorted; a directory indexed by their top bits
/// narrows each lookup to a bucket of a few keys, which matters because a
/// typo probe makes dozens of lookups.
#[derive(Default)]
struct MultiMap {
    keys: Vec<u64>,
    ends: Vec<u32>,
    values: Vec<u32>,
    /// `directory[b]..directory[b + 1]` is the range of keys in bucket `b`.
    directory: Vec<u32>,
    bucket_bits: u32,
}

/// Aim for about this many keys per directory bucket.
const KEYS_PER_BUCKET: usize = 4;

impl MultiMap {
    fn from_pairs(mut pairs: Vec<(u64, u32)>) -> MultiMap {
        for pair in &mut pairs {
            pair.0 = mix(pair.0);
        }
        pairs.sort_unstable();
        pairs.dedup();
        let mut map = MultiMap {
            values: Vec::with_capacity(pairs.len()),
            ..MultiMap::default()
        };
        for (key, value) in pairs {
            if map.keys.last() != Some(&key) {
                if !map.keys.is_empty() {
                    map.ends.push(to_u32(map.values.len()));
                }
                map.keys.push(key);
            }
            map.values.push(value);
        }
        if !map.keys.is_empty() {
            map.ends.push(to_u32(map.values.len()));
        }
        map.build_directory();
        map
    }

    fn build_directory(&mut self) {
        let buckets = (self.keys.len() / KEYS_PER_BUCKET)
            .max(1)
            .next_power_of_two();
        self.bucket_bits = buckets.trailing_zeros();
        self.directory = (0..=buckets)
            .map(|bucket| {
                let first = self.keys.partition_point(|&key| self.bucket(key) < bucket);
                to_u32(first)
            })
            .collect();
    }

    fn bucket(&self, mixed_key: u64) -> usize {
        // checked_shr: with a single bucket the shift would be 64.
        mixed_key.checked_shr(64 - self.bucket_bits).unwrap_or(0) as usize
    }

    fn get(&self, key: u64) -> &[u32] {
        let key = mix(key);
        let bucket = self.bucket(key);
        let (Some(&first), Some(&last)) =
            (self.directory.get(bucket), self.directory.get(bucket + 1))
        else {
            return &[];
        };
        let in_bucket = &self.keys[first as usize..last as usize];
        match in_bucket.iter().position(|&k| k == key) {
            Some(offset) => {
                let i = first as usize + offset;
                let start = if i == 0 { 0 } else { self.ends[i - 1] };
                &self.values[start as usize..self.ends[i] as usize]
            }
            None => &[],
        }
    }
}

/// A bijective 64-bit finaliser (MurmurHash3's fmix64): spreads bigram keys
/// and FNV hashes evenly over the directory without creating collisions.
fn mix(mut key: u64) -> u64 {
    key ^= key >> 33;
    key = key.wrapping_mul(0xff51_afd7_ed55_8ccd);
    key ^= key >> 33;
    key = key.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    key ^ (key >> 33)
}

/// Strings stored back to back, addressed by index.
#[derive(Default)]
struct StringTable {
    text: String,
    ends: Vec<u32>,
}

impl StringTable {
    fn push(&mut self, s: &str) -> u32 {
        self.text.push_str(s);
        self.ends.push(to_u32(self.text.len()));
        to_u32(self.ends.len() - 1)
    }

    fn get(&self, id: u32) -> &str {
        let id = id as usize;
        let start = if id == 0 { 0 } else { self.ends[id - 1] };
        &self.text[start as usize..self.ends[id] as usize]
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// The distinct stems of the catalogue, with their idf.
struct Vocabulary {
    terms: StringTable,
    by_hash: MultiMap,
    idf: Vec<f32>,
}

impl Vocabulary {
    fn lookup(&self, stem: &str) -> Option<u32> {
        let ids = self.by_hash.get(hash_str(stem));
        ids.iter().copied().find(|&id| self.terms.get(id) == stem)
    }

    fn len(&self) -> usize {
        self.terms.len()
    }
}

/// Per-term posting lists in one flat array. Each posting carries its
/// precomputed BM25F contribution, so a query only adds numbers, and each
/// list is ordered best first (impact descending, then doc ascending): the
/// dense accumulator does not care about order, and single-word queries can
/// stop after `limit` postings.
struct Postings {
    ends: Vec<u32>,
    docs: Vec<u32>,
    impacts: Vec<f32>,
}

impl Postings {
    fn range(&self, term: u32) -> std::ops::Range<usize> {
        let term = term as usize;
        let start = if term == 0 { 0 } else { self.ends[term - 1] };
        start as usize..self.ends[term] as usize
    }

    fn get(&self, term: u32) -> (&[u32], &[f32]) {
        let range = self.range(term);
        (&self.docs[range.clone()], &self.impacts[range])
    }

    fn df(&self, term: u32) -> usize {
        self.range(term).len()
    }
}

/// Symmetric-deletion index for Damerau–Levenshtein (optimal string
/// alignment) distance 1.
///
/// Two strings are within one edit only if they share a member of
/// {itself} ∪ {itself with one byte deleted}: a substitution or adjacent
/// transposition deletes to the same string on both sides, an insertion or
/// deletion leaves the shorter string itself. So every "form" is indexed
/// under the hashes of those variants, and a query probes its own variants
/// and verifies each candidate exactly.
///
/// Forms are the vocabulary stems plus the raw document words they came
/// from: matching the query stem "distractd" against the raw word
/// "distracted" as well as its stem "distract" catches more real typos,
/// while the outcome still depends only on the query's stems.
struct TypoIndex {
    forms: StringTable,
    form_terms: Vec<u32>,
    variants: MultiMap,
}

impl TypoIndex {
    fn build(forms: StringTable, form_terms: Vec<u32>) -> TypoIndex {
        let mut pairs = Vec::new();
        for form in 0..to_u32(forms.len()) {
            for_each_deletion_hash(forms.get(form).as_bytes(), |hash| pairs.push((hash, form)));
        }
        TypoIndex {
            forms,
            form_terms,
            variants: MultiMap::from_pairs(pairs),
        }
    }

    /// Appends the terms having a form within one edit of `word`; a term
    /// may appear more than once.
    fn corrections(&self, word: &str, out: &mut Vec<u32>) {
        let bytes = word.as_bytes();
        for_each_deletion_hash(bytes, |hash| {
            for &form in self.variants.get(hash) {
                if within_one_edit(self.forms.get(form).as_bytes(), bytes) {
                    out.push(self.form_terms[form as usize]);
                }
            }
        });
    }
}

/// Whether the optimal-string-alignment distance between `a` and `b` is at
/// most 1, in linear time.
fn within_one_edit(a: &[u8], b: &[u8]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    let mismatch = short
        .iter()
        .zip(long)
        .position(|(x, y)| x != y)
        .unwrap_or(short.len());
    match long.len() - short.len() {
        0 if mismatch == short.len() => true,
        0 => {
            let i = mismatch;
            let substituted = short[i + 1..] == long[i + 1..];
            let transposed = i + 1 < short.len()
                && short[i] == long[i + 1]
                && short[i + 1] == long[i]
                && short[i + 2..] == long[i + 2..];
            substituted || transposed
        }
        1 => short[mismatch..] == long[mismatch + 1..],
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Building
// ---------------------------------------------------------------------------

/// Per-document term statistics kept between the two build passes (BM25
/// needs corpus-wide averages before any contribution can be computed).
struct DocTerm {
    term: u32,
    tf: [u16; FIELD_COUNT],
}

#[derive(Default)]
struct IndexBuilder {
    stems: StringTable,
    stem_ids: HashMap<String, u32>,
    /// Raw folded word -> term; also caches stemming, which dominates
    /// build time otherwise.
    raw_ids: HashMap<String, u32>,
    /// Raw words in first-seen order, for a deterministic typo index.
    raw_words: Vec<(String, u32)>,
    doc_terms: Vec<DocTerm>,
    doc_ends: Vec<u32>,
    field_lens: Vec<[u32; FIELD_COUNT]>,
    bigrams: Vec<(u64, u32)>,
    // Reused per-document buffers.
    words: Words,
    occurrences: Vec<(u32, Field)>,
    title: Vec<(u32, bool)>,
}

impl IndexBuilder {
    fn add(&mut self, doc: &Document<'_>) {
        let doc_id = to_u32(self.field_lens.len());
        let mut lens = [0u32; FIELD_COUNT];
        self.occurrences.clear();
        self.title.clear();

        self.add_field(Field::Title, std::iter::once(doc.title), &mut lens);
        self.add_field(Field::Tags, doc.tags.iter().map(String::as_str), &mut lens);
        let categories = doc.categories.iter().map(String::as_str);
        self.add_field(Field::Categories, categories, &mut lens);

        self.record_doc_terms();
        self.record_title_bigrams(doc_id);
        self.field_lens.push(lens);
    }

    fn add_field<'t>(
        &mut self,
        field: Field,
        texts: impl Iterator<Item = &'t str>,
        lens: &mut [u32; FIELD_COUNT],
    ) {
        let mut words = std::mem::take(&mut self.words);
        for text in texts {
            words.clear();
            words.split(text);
            for word in words.iter() {
                let term = self.intern(word);
                self.occurrences.push((term, field));
                lens[field as usize] += 1;
                if matches!(field, Field::Title) {
                    self.title.push((term, is_stop_word(word)));
                }
            }
        }
        self.words = words;
    }

    fn intern(&mut self, word: &str) -> u32 {
        if let Some(&term) = self.raw_ids.get(word) {
            return term;
        }
        let stemmed = stem(word);
        let term = match self.stem_ids.get(stemmed.as_ref()) {
            Some(&term) => term,
            None => {
                let term = self.stems.push(&stemmed);
                self.stem_ids.insert(stemmed.to_string(), term);
                term
            }
        };
        self.raw_ids.insert(word.to_owned(), term);
        self.raw_words.push((word.to_owned(), term));
        term
    }

    fn record_doc_terms(&mut self) {
        self.occurrences
            .sort_unstable_by_key(|&(term, field)| (term, field as u8));
        let doc_start = self.doc_terms.len();
        for &(term, field) in &self.occurrences {
            let same_term = self.doc_terms.len() > doc_start
                && self.doc_terms.last().is_some_and(|last| last.term == term);
            if !same_term {
                self.doc_terms.push(DocTerm {
                    term,
                    tf: [0; FIELD_COUNT],
                });
            }
            let entry = self.doc_terms.last_mut().expect("pushed above");
            let tf = &mut entry.tf[field as usize];
            *tf = tf.saturating_add(1);
        }
        self.doc_ends.push(to_u32(self.doc_terms.len()));
    }

    /// Adjacent pairs of the title both with and without stop words, so
    /// "man of culture" and "man culture" both earn the phrase bonus.
    fn record_title_bigrams(&mut self, doc: u32) {
        for pair in self.title.windows(2) {
            self.bigrams.push((bigram_key(pair[0].0, pair[1].0), doc));
        }
        let mut content = self.title.iter().filter(|(_, stop)| !stop).map(|&(t, _)| t);
        if let Some(mut previous) = content.next() {
            for term in content {
                self.bigrams.push((bigram_key(previous, term), doc));
                previous = term;
            }
        }
    }

    fn finish(self) -> SearchIndex {
        let doc_count = to_u32(self.field_lens.len());
        let term_count = self.stems.len();

        let mut df = vec![0u32; term_count];
        for entry in &self.doc_terms {
            df[entry.term as usize] += 1;
        }
        let idf: Vec<f32> = df.iter().map(|&df| bm25_idf(doc_count, df)).collect();
        let postings = self.build_postings(&df, &idf);

        let by_hash = (0..to_u32(term_count))
            .map(|term| (hash_str(self.stems.get(term)), term))
            .collect();
        let typos = self.build_typo_index();
        SearchIndex {
            doc_count,
            postings,
            phrases: MultiMap::from_pairs(self.bigrams),
            typos,
            vocab: Vocabulary {
                terms: self.stems,
                by_hash: MultiMap::from_pairs(by_hash),
                idf,
            },
        }
    }

    fn build_postings(&self, df: &[u32], idf: &[f32]) -> Postings {
        let avg_lens = average_field_lengths(&self.field_lens);
        let mut ends = Vec::with_capacity(df.len());
        let mut total = 0u32;
        for &count in df {
            total += count;
            ends.push(total);
        }
        let mut cursor: Vec<u32> = ends.iter().zip(df).map(|(end, df)| end - df).collect();
        let mut docs = vec![0u32; total as usize];
        let mut impacts = vec![0f32; total as usize];
        let mut start = 0usize;
        for (doc, &end) in self.doc_ends.iter().enumerate() {
            let lens = &self.field_lens[doc];
            for entry in &self.doc_terms[start..end as usize] {
                let slot = &mut cursor[entry.term as usize];
                docs[*slot as usize] = to_u32(doc);
                impacts[*slot as usize] =
                    bm25f_impact(idf[entry.term as usize], &entry.tf, lens, &avg_lens);
                *slot += 1;
            }
            start = end as usize;
        }
        sort_by_impact(&ends, &mut docs, &mut impacts);
        Postings {
            ends,
            docs,
            impacts,
        }
    }

    fn build_typo_index(&self) -> TypoIndex {
        let mut forms = StringTable::default();
        let mut form_terms = Vec::new();
        for term in 0..to_u32(self.stems.len()) {
            let text = self.stems.get(term);
            if is_correctable_form(text) {
                forms.push(text);
                form_terms.push(term);
            }
        }
        for (word, term) in &self.raw_words {
            if is_correctable_form(word) && self.stems.get(*term) != word {
                forms.push(word);
                form_terms.push(*term);
            }
        }
        TypoIndex::build(forms, form_terms)
    }
}

/// Reorders every posting list in place to impact descending, doc ascending.
fn sort_by_impact(ends: &[u32], docs: &mut [u32], impacts: &mut [f32]) {
    let mut list: Vec<(f32, u32)> = Vec::new();
    let mut start = 0usize;
    for &end in ends {
        let range = start..end as usize;
        list.clear();
        list.extend(
            impacts[range.clone()]
                .iter()
                .copied()
                .zip(docs[range.clone()].iter().copied()),
        );
        list.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (i, (impact, doc)) in range.clone().zip(list.iter().copied()) {
            impacts[i] = impact;
            docs[i] = doc;
        }
        start = range.end;
    }
}

/// Forms can be one letter shorter or longer than a correctable query term.
fn is_correctable_form(form: &str) -> bool {
    (MIN_TYPO_LEN - 1..=MAX_TYPO_LEN + 1).contains(&form.len())
        && form.bytes().all(|b| b.is_ascii_lowercase())
}

fn average_field_lengths(lens: &[[u32; FIELD_COUNT]]) -> [f32; FIELD_COUNT] {
    let mut sums = [0f64; FIELD_COUNT];
    for doc in lens {
        for (sum, &len) in sums.iter_mut().zip(doc) {
            *sum += f64::from(len);
        }
    }
    let count = lens.len().max(1) as f64;
    sums.map(|sum| (sum / count) as f32)
}

/// The BM25 idf in its always-positive form, so even a word present in
/// every document still adds a little.
fn bm25_idf(doc_count: u32, df: u32) -> f32 {
    let (n, df) = (doc_count as f32, df as f32);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// BM25F: field-weighted, length-normalised term frequencies are summed
/// before saturation, so a word in both title and tags is not counted twice
/// at full strength.
fn bm25f_impact(
    idf: f32,
    tf: &[u16; FIELD_COUNT],
    lens: &[u32; FIELD_COUNT],
    avg_lens: &[f32; FIELD_COUNT],
) -> f32 {
    let mut weighted_tf = 0.0;
    for field in 0..FIELD_COUNT {
        if tf[field] == 0 {
            continue;
        }
        let relative_len = if avg_lens[field] > 0.0 {
            lens[field] as f32 / avg_lens[field]
        } else {
            1.0
        };
        let norm = 1.0 - B + B * relative_len;
        weighted_tf += FIELD_WEIGHTS[field] * f32::from(tf[field]) / norm;
    }
    idf * weighted_tf * (K1 + 1.0) / (weighted_tf + K1)
}

// ---------------------------------------------------------------------------
// Query-time scratch
// ---------------------------------------------------------------------------

thread_local! {
    /// Per-thread buffers reused across queries: once warmed up, a search
    /// allocates its result vector and little else (the stemmer returns
    /// owned strings for words it changes).
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

#[derive(Default)]
struct Scratch {
    query: QueryTerms,
    alternatives: Alternatives,
    candidates: Vec<u32>,
    spelling: String,
    accumulator: Accumulator,
}

/// For each query word, the vocabulary terms it matches and their weight.
#[derive(Default)]
struct Alternatives {
    entries: Vec<(u32, f32)>,
    ends: Vec<u32>,
}

impl Alternatives {
    fn clear(&mut self) {
        self.entries.clear();
        self.ends.clear();
    }

    fn push(&mut self, term: u32, weight: f32) {
        self.entries.push((term, weight));
    }

    fn end_word(&mut self) {
        self.ends.push(to_u32(self.entries.len()));
    }

    /// The term of a query that is one word matched exactly.
    fn single_exact_term(&self) -> Option<u32> {
        match self.entries.as_slice() {
            [(term, weight)] if self.ends.len() == 1 && *weight == 1.0 => Some(*term),
            _ => None,
        }
    }

    fn words(&self) -> impl Iterator<Item = &[(u32, f32)]> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.entries[start as usize..end as usize])
    }
}

/// Dense per-document score slots. A slot is live only if its epoch is the
/// current query's, which makes starting a query O(1) instead of clearing
/// the whole array.
#[derive(Default)]
struct Accumulator {
    slots: Vec<Slot>,
    epoch: u32,
    touched: Vec<u32>,
    best: BinaryHeap<RankedHit>,
}

#[derive(Default, Clone, Copy)]
struct Slot {
    epoch: u32,
    score: f32,
    /// Best contribution so far of the word being processed: several typo
    /// corrections of one word must not add up to more than the best one.
    word_best: f32,
    /// 1 + index of the last query word that reached this document.
    word: u8,
    /// Distinct query words that reached this document.
    matched: u8,
    /// 1 + index of the last word pair that earned a phrase bonus here.
    pair: u8,
}

impl Accumulator {
    fn start(&mut self, doc_count: usize) {
        if self.slots.len() < doc_count {
            self.slots.resize(doc_count, Slot::default());
        }
        if self.epoch == u32::MAX {
            self.slots.fill(Slot::default());
            self.epoch = 0;
        }
        self.epoch += 1;
        self.touched.clear();
    }

    #[inline]
    fn add(&mut self, doc: u32, word: usize, contribution: f32) {
        let slot = &mut self.slots[doc as usize];
        if slot.epoch != self.epoch {
            *slot = Slot {
                epoch: self.epoch,
                ..Slot::default()
            };
            self.touched.push(doc);
        }
        let marker = (word + 1) as u8;
        if slot.word != marker {
            slot.word = marker;
            slot.word_best = contribution;
            slot.score += contribution;
            slot.matched += 1;
        } else if contribution > slot.word_best {
            slot.score += contribution - slot.word_best;
            slot.word_best = contribution;
        }
    }

    fn add_phrase(&mut self, doc: u32, pair: usize, bonus: f32) {
        let slot = &mut self.slots[doc as usize];
        let marker = (pair + 1) as u8;
        // A bigram implies both words matched, so the slot is always live;
        // the epoch check only guards against a future change breaking that.
        if slot.epoch == self.epoch && slot.pair != marker {
            slot.pair = marker;
            slot.score += bonus;
        }
    }

    /// Final scores with the coordination factor (fraction of query words
    /// matched) applied, best first, ties by doc id.
    ///
    /// A bounded heap keeps the `limit` best: with thousands of candidates
    /// and a page-sized limit, almost every candidate is rejected by a
    /// single comparison against the current worst.
    fn top(&mut self, limit: usize, query_words: usize) -> Vec<Hit> {
        let coordination: [f32; MAX_QUERY_TERMS + 1] =
            std::array::from_fn(|matched| matched as f32 / query_words as f32);
        self.best.clear();
        for &doc in &self.touched {
            let slot = &self.slots[doc as usize];
            let hit = RankedHit(Hit {
                doc,
                score: slot.score * coordination[usize::from(slot.matched)],
            });
            if self.best.len() < limit {
                self.best.push(hit);
            } else if let Some(mut worst) = self.best.peek_mut()
                && hit < *worst
            {
                *worst = hit;
            }
        }
        let mut hits = Vec::with_capacity(self.best.len());
        while let Some(RankedHit(hit)) = self.best.pop() {
            hits.push(hit);
        }
        hits.reverse();
        hits
    }
}

/// Orders hits from best to worst: higher score first, then lower doc id.
/// In a max-heap the worst kept hit is therefore on top.
#[derive(Clone, Copy)]
struct RankedHit(Hit);

impl Ord for RankedHit {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (&self.0, &other.0);
        b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc))
    }
}

impl PartialOrd for RankedHit {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for RankedHit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for RankedHit {}

#[cfg(test)]
mod tests {
    use super::*;

    struct Catalogue {
        entries: Vec<(String, Vec<String>, Vec<String>)>,
    }

    impl Catalogue {
        fn new(entries: &[(&str, &[&str], &[&str])]) -> Catalogue {
            let owned = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
            Catalogue {
                entries: entries
                    .iter()
                    .map(|(title, tags, cats)| (title.to_string(), owned(tags), owned(cats)))
                    .collect(),
            }
        }

        fn titles(titles: &[&str]) -> Catalogue {
            let entries: Vec<(&str, &[&str], &[&str])> =
                titles.iter().map(|&t| (t, &[][..], &[][..])).collect();
            Catalogue::new(&entries)
        }

        fn index(&self) -> SearchIndex {
            SearchIndex::build(
                self.entries
                    .iter()
                    .map(|(title, tags, categories)| Document {
                        title,
                        tags,
                        categories,
                    }),
            )
        }
    }

    fn docs(index: &SearchIndex, query: &str) -> Vec<u32> {
        index.search(query, 100).iter().map(|hit| hit.doc).collect()
    }

    fn sample() -> SearchIndex {
        Catalogue::new(&[
            (
                "Distracted Boyfriend",
                &["jealous girlfriend", "cheating"],
                &["relationships"],
            ),
            ("This Is Fine", &["dog", "fire", "denial"], &["reaction"]),
            (
                "Surprised Pikachu",
                &["pokémon", "shock"],
                &["reaction", "anime"],
            ),
            (
                "Woman Yelling at Cat",
                &["cats", "dinner table"],
                &["animals"],
            ),
            ("Crying Cat", &["sad", "tears"], &["animals"]),
            ("Doge", &["shiba inu", "dogs", "wow"], &["animals"]),
            ("Boyfriend Material", &["romance"], &["relationships"]),
            ("Nazaré Confusa", &["math lady", "confused"], &["reaction"]),
            ("Don't Talk To Me", &["attitude"], &["reaction"]),
        ])
        .index()
    }

    #[test]
    fn folds_case_and_accents() {
        let index = sample();
        assert_eq!(docs(&index, "pokemon"), vec![2]);
        assert_eq!(docs(&index, "POKÉMON"), vec![2]);
        assert_eq!(docs(&index, "NAZARÉ"), vec![7]);
        assert_eq!(docs(&index, "nazare"), vec![7]);
        assert_eq!(canonical_query("Pokémon"), canonical_query("pokemon"));
    }

    #[test]
    fn splits_on_punctuation_and_drops_inner_apostrophes() {
        let mut words = Words::default();
        words.split("Don't   stop—believin’! rock 'n' roll, dogs' e\u{301}te");
        let split: Vec<&str> = words.iter().collect();
        assert_eq!(
            split,
            [
                "dont", "stop", "believin", "rock", "n", "roll", "dogs", "ete"
            ]
        );
        assert_eq!(docs(&sample(), "dont talk"), vec![8]);
    }

    #[test]
    fn plural_and_singular_match_both_ways() {
        let index = sample();
        // "cats" as a tag on doc 3, "cat" in titles of 3 and 4.
        let cats = docs(&index, "cats");
        assert!(cats.contains(&3) && cats.contains(&4), "{cats:?}");
        assert_eq!(docs(&index, "cat"), cats);
        let dog = docs(&index, "dog");
        assert!(dog.contains(&1) && dog.contains(&5), "{dog:?}");
        assert_eq!(docs(&index, "dogs"), dog);
    }

    #[test]
    fn stemming_matches_inflections() {
        let index = sample();
        assert_eq!(docs(&index, "cry"), vec![4]);
        assert_eq!(docs(&index, "cries"), vec![4]);
        assert_eq!(docs(&index, "yell"), vec![3]);
        assert_eq!(canonical_query("Crying  CATS"), "cri cat");
    }

    #[test]
    fn stop_words_are_dropped_unless_the_query_has_nothing_else() {
        let index = sample();
        assert_eq!(canonical_query("the cat of the"), "cat");
        assert_eq!(canonical_query("this is"), "this is");
        assert_eq!(docs(&index, "this is"), vec![1]);
        // Stop words do not dilute a real query: same hits as without them.
        assert_eq!(index.search("the cat", 10), index.search("cat", 10));
    }

    #[test]
    fn multiword_query_ranks_full_match_first_and_keeps_partial_matches() {
        let index = sample();
        let hits = docs(&index, "distracted boyfriend");
        assert_eq!(hits[0], 0);
        assert!(
            hits.contains(&6),
            "partial match must still be returned: {hits:?}"
        );
    }

    #[test]
    fn matching_more_query_words_ranks_higher() {
        let index = Catalogue::titles(&["cat", "cat dog", "dog bird"]).index();
        assert_eq!(docs(&index, "cat dog"), vec![1, 0, 2]);
        // The short title matches the rarer word more strongly, but the
        // document matching both words must still come first.
        let index = Catalogue::titles(&[
            "zebra",
            "lion zebra one two three four five",
            "lion",
            "lion",
            "lion",
        ])
        .index();
        assert_eq!(docs(&index, "zebra lion")[0], 1);
    }

    #[test]
    fn adjacent_title_words_earn_a_phrase_bonus() {
        let index = Catalogue::titles(&["boyfriend distracted", "distracted boyfriend"]).index();
        let hits = index.search("distracted boyfriend", 10);
        assert_eq!(hits[0].doc, 1);
        assert!(hits[0].score > hits[1].score);
    }

    #[test]
    fn phrase_bonus_ignores_stop_words_between_title_words() {
        let index = Catalogue::titles(&["culture man", "man of culture"]).index();
        assert_eq!(docs(&index, "man of culture"), vec![1, 0]);
        assert_eq!(docs(&index, "man culture"), vec![1, 0]);
    }

    #[test]
    fn typo_substitution() {
        assert_eq!(docs(&sample(), "pikachy"), vec![2]);
    }

    #[test]
    fn typo_transposition() {
        assert_eq!(docs(&sample(), "boyfirend"), docs(&sample(), "boyfriend"));
        assert_eq!(docs(&sample(), "distracted boyfirend")[0], 0);
    }

    #[test]
    fn typo_insertion() {
        assert_eq!(docs(&sample(), "pikachuu"), vec![2]);
    }

    #[test]
    fn typo_deletion() {
        // Matched against the raw word "distracted" as well as its stem.
        assert_eq!(docs(&sample(), "distractd"), vec![0]);
        assert_eq!(docs(&sample(), "pikchu"), vec![2]);
    }

    #[test]
    fn typo_inside_a_stripped_suffix() {
        // "boyfried" stems to "boyfri", three edits from "boyfriend"; its
        // spelling "boyfri"+"ed" is one deletion from the raw "boyfriend".
        let index = sample();
        assert_eq!(canonical_query("boyfried"), "boyfri");
        assert_eq!(docs(&index, "boyfried"), docs(&index, "boyfriend"));
        assert_eq!(docs(&index, "distracted boyfrined")[0], 0);
    }

    #[test]
    fn reinflected_spellings_must_stem_back_to_the_query() {
        // "happy" stems to "happi". "happi"+"ly" is the document's word, but
        // it stems to "happili", so no user typing a word with stem "happi"
        // spelled it that way: it is not a candidate for correction.
        let index = Catalogue::titles(&["happily ever after"]).index();
        assert_eq!(canonical_query("happy"), "happi");
        assert!(docs(&index, "happy").is_empty());
    }

    #[test]
    fn several_corrections_of_one_word_count_once_at_their_best() {
        // "crave" is one edit from both "brave" and "grave"; doc 0 has both,
        // and "brave" (rarer) is the stronger match there.
        let index = Catalogue::titles(&["brave grave", "grave", "brave", "grave"]).index();
        let exact = index.search("brave", 10);
        let corrected = index.search("crave", 10);
        let score_of = |hits: &[Hit], doc| hits.iter().find(|h| h.doc == doc).unwrap().score;
        let expected = score_of(&exact, 0) * 0.7;
        assert!((score_of(&corrected, 0) - expected).abs() < 1e-6);
    }

    #[test]
    fn short_words_are_not_corrected() {
        let index = Catalogue::titles(&["doge", "sad frog"]).index();
        assert_eq!(docs(&index, "doge"), vec![0]);
        assert!(docs(&index, "dogr").is_empty());
        assert!(docs(&index, "frg").is_empty());
        assert!(docs(&index, "frogs").contains(&1));
    }

    #[test]
    fn words_two_edits_away_are_not_corrected() {
        assert!(docs(&sample(), "pikaxhuu").is_empty());
    }

    #[test]
    fn exact_match_outranks_corrected_match() {
        // Identical statistics, and the exact match has the higher doc id, so
        // only the penalty can put it first.
        let index = Catalogue::titles(&["bravo", "alpha"]).index();
        let hits = index.search("alpha bravvo", 10);
        assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), vec![1, 0]);
        let ratio = hits[1].score / hits[0].score;
        assert!((ratio - 0.7).abs() < 1e-4, "{ratio}");
    }

    #[test]
    fn single_word_fast_path_agrees_with_general_path() {
        let index = sample();
        for word in ["cat", "reaction", "animals", "boyfriend", "fine", "dog"] {
            // An extra word that matches nothing forces the general path and
            // halves every score exactly.
            let general = index.search(&format!("{word} qqqqzzzz"), 100);
            let fast = index.search(word, 100);
            assert!(!fast.is_empty());
            let halved: Vec<Hit> = fast
                .iter()
                .map(|hit| Hit {
                    doc: hit.doc,
                    score: hit.score * 0.5,
                })
                .collect();
            assert_eq!(general, halved, "{word}");
            assert_eq!(index.search(word, 2), fast[..2.min(fast.len())]);
        }
    }

    #[test]
    fn ties_are_broken_by_doc_index() {
        let index = Catalogue::titles(&["grumpy", "other", "grumpy", "grumpy"]).index();
        let hits = index.search("grumpy", 10);
        assert_eq!(
            hits.iter().map(|h| h.doc).collect::<Vec<_>>(),
            vec![0, 2, 3]
        );
        assert!(hits.windows(2).all(|w| w[0].score == w[1].score));
        assert_eq!(index.search("grumpy", 2), hits[..2]);
    }

    #[test]
    fn rebuilding_gives_identical_results() {
        let first = sample();
        let second = sample();
        for query in ["cat", "distracted boyfirend", "reaction", "this is"] {
            assert_eq!(first.search(query, 10), second.search(query, 10));
        }
    }

    #[test]
    fn empty_and_punctuation_only_queries_find_nothing() {
        let index = sample();
        for query in ["", "   \t\n", "?!...", "'''", "—–-"] {
            assert!(index.search(query, 10).is_empty(), "{query:?}");
            assert_eq!(canonical_query(query), "");
        }
        assert!(index.search("cat", 0).is_empty());
        assert!(SearchIndex::build([]).search("cat", 10).is_empty());
    }

    #[test]
    fn very_long_queries_are_capped() {
        let words: Vec<String> = (0..500).map(|i| format!("word{i}")).collect();
        let canonical = canonical_query(&words.join(" "));
        assert_eq!(canonical.split(' ').count(), MAX_QUERY_TERMS);
        let index = sample();
        let huge = "distracted ".repeat(10_000) + &"x".repeat(100_000);
        assert_eq!(docs(&index, &huge), vec![0]);
        // Past the byte cap nothing counts, so these share one cache key.
        let tail = format!("{} pikachu", "a ".repeat(MAX_QUERY_BYTES));
        assert_eq!(canonical_query(&tail), canonical_query("a"));
    }

    #[test]
    fn same_canonical_query_gives_same_hits() {
        let index = sample();
        let pairs = [
            ("Crying cats!", "cry the CAT"),
            ("boyfriends", "boyfriend"),
            ("distracted  boyfirend", "distract boyfirend"),
        ];
        for (a, b) in pairs {
            assert_eq!(canonical_query(a), canonical_query(b));
            assert_eq!(index.search(a, 10), index.search(b, 10));
        }
    }

    #[test]
    fn multimap_finds_every_key_and_only_those() {
        for size in [0u64, 1, 2, 5, 100, 1000] {
            let pairs: Vec<(u64, u32)> = (0..size).map(|k| (k << 32 | k, k as u32)).collect();
            let mut with_dupes = pairs.clone();
            with_dupes.push((0, 7));
            let map = MultiMap::from_pairs(with_dupes);
            for k in 0..size {
                let expected: &[u32] = if k == 0 { &[0, 7] } else { &[k as u32] };
                assert_eq!(map.get(k << 32 | k), expected, "size {size} key {k}");
            }
            assert!(map.get(u64::MAX).is_empty());
            assert!(map.get((size + 1) << 32 | (size + 1)).is_empty());
        }
    }

    #[test]
    fn deletion_hashes_match_hashes_of_deleted_strings() {
        for word in [
            "",
            "a",
            "ab",
            "boyfriend",
            "abcdefghijklmnopqrstuvwxyzabcdefg",
        ] {
            let bytes = word.as_bytes();
            let mut expected: Vec<u64> = (0..bytes.len())
                .map(|i| {
                    let mut deleted = bytes.to_vec();
                    deleted.remove(i);
                    hash_bytes(&deleted)
                })
                .collect();
            expected.push(hash_bytes(bytes));
            let mut got = Vec::new();
            for_each_deletion_hash(bytes, |hash| got.push(hash));
            assert_eq!(got, expected, "{word}");
        }
    }

    #[test]
    fn stop_word_table_is_sorted() {
        assert!(STOP_WORDS.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(is_stop_word("the") && is_stop_word("with") && !is_stop_word("cat"));
    }

    #[test]
    fn within_one_edit_is_osa_distance_one() {
        let yes = [
            ("abc", "abc"),
            ("abc", "abd"),
            ("abc", "bac"),
            ("abc", "acb"),
            ("abc", "ab"),
            ("abc", "bc"),
            ("abc", "abxc"),
            ("", "a"),
        ];
        for (a, b) in yes {
            assert!(within_one_edit(a.as_bytes(), b.as_bytes()), "{a} {b}");
            assert!(within_one_edit(b.as_bytes(), a.as_bytes()), "{b} {a}");
        }
        let no = [
            ("abc", "cba"),
            ("abc", "a"),
            ("abcd", "badc"),
            ("abc", "xyz"),
        ];
        for (a, b) in no {
            assert!(!within_one_edit(a.as_bytes(), b.as_bytes()), "{a} {b}");
        }
    }

    #[test]
    fn scratch_survives_epoch_wraparound() {
        let index = sample();
        let expected: Vec<Vec<Hit>> = ["cat", "distracted boyfriend", "reaction animals"]
            .iter()
            .map(|query| index.search(query, 10))
            .collect();
        let mut scratch = Scratch::default();
        scratch.accumulator.epoch = u32::MAX - 2;
        for _ in 0..3 {
            for (query, expected) in ["cat", "distracted boyfriend", "reaction animals"]
                .iter()
                .zip(&expected)
            {
                assert_eq!(&index.search_with(query, 10, &mut scratch), expected);
            }
        }
        assert!(scratch.accumulator.epoch < 10);
    }

    #[test]
    fn indexes_of_different_sizes_share_a_thread_safely() {
        let big = sample();
        let small = Catalogue::titles(&["cat", "dog"]).index();
        let expected_big = big.search("cat reaction", 10);
        let expected_small = small.search("cat dog", 10);
        for _ in 0..3 {
            assert_eq!(big.search("cat reaction", 10), expected_big);
            assert_eq!(small.search("cat dog", 10), expected_small);
        }
        assert_eq!(docs(&small, "cat dog"), vec![0, 1]);
    }

    #[test]
    fn index_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<SearchIndex>();
        let index = sample();
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| index.search("pikachu", 5));
            assert_eq!(handle.join().unwrap(), index.search("pikachu", 5));
        });
    }

    #[test]
    fn field_weights_favour_titles() {
        let index = Catalogue::new(&[
            ("x", &[], &["owl"]),
            ("y", &["owl"], &[]),
            ("owl", &[], &[]),
        ])
        .index();
        assert_eq!(docs(&index, "owl"), vec![2, 1, 0]);
    }
}
