//! Indexing: the immutable structures a [`SearchIndex`] is made of, and the
//! builder that fills them in one pass over the documents.
//!
//! Compact, allocation-free lookup tables (a hashed multimap, a string
//! table, the vocabulary, impact-ordered posting lists) and
//! [`IndexBuilder`], which interns words through normalisation, counts
//! term frequencies per field and hands the statistics to the ranking
//! formula once the corpus-wide averages are known. Nothing here runs a
//! query.

use std::collections::HashMap;

use super::normalise::{Words, is_stop_word, stem};
use super::rank::{average_field_lengths, bm25_idf, bm25f_impact};
use super::typo::{TypoIndex, is_correctable_form};
use super::{Document, FIELD_COUNT, Field, SearchIndex, to_u32};

/// Multiplier of the polynomial string hash (odd, so multiplication by it
/// is invertible mod 2^64).
pub(super) const HASH_BASE: u64 = 0x0000_0100_0000_01b3;

/// Polynomial hash of `bytes` mod 2^64. Hashes are only ever used as
/// lookup keys whose every hit is verified against the real string, so a
/// collision costs time, never correctness.
pub(super) fn hash_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |hash, &byte| {
        hash.wrapping_mul(HASH_BASE).wrapping_add(u64::from(byte))
    })
}

fn hash_str(text: &str) -> u64 {
    hash_bytes(text.as_bytes())
}

pub(super) fn bigram_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// A sorted, compact `u64 -> [u32]` multimap, deterministic and free of
/// per-entry allocations.
///
/// Keys are stored mixed and sorted; a directory indexed by their top bits
/// narrows each lookup to a bucket of a few keys, which matters because a
/// typo probe makes dozens of lookups.
#[derive(Default)]
pub(super) struct MultiMap {
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
    pub(super) fn from_pairs(mut pairs: Vec<(u64, u32)>) -> MultiMap {
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

    pub(super) fn get(&self, key: u64) -> &[u32] {
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
pub(super) struct StringTable {
    text: String,
    ends: Vec<u32>,
}

impl StringTable {
    pub(super) fn push(&mut self, s: &str) -> u32 {
        self.text.push_str(s);
        self.ends.push(to_u32(self.text.len()));
        to_u32(self.ends.len() - 1)
    }

    pub(super) fn get(&self, id: u32) -> &str {
        let id = id as usize;
        let start = if id == 0 { 0 } else { self.ends[id - 1] };
        &self.text[start as usize..self.ends[id] as usize]
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }
}

/// The distinct stems of the catalogue, with their idf.
pub(super) struct Vocabulary {
    terms: StringTable,
    by_hash: MultiMap,
    pub(super) idf: Vec<f32>,
}

impl Vocabulary {
    pub(super) fn lookup(&self, stem: &str) -> Option<u32> {
        let ids = self.by_hash.get(hash_str(stem));
        ids.iter().copied().find(|&id| self.terms.get(id) == stem)
    }

    pub(super) fn len(&self) -> usize {
        self.terms.len()
    }
}

/// Per-term posting lists in one flat array. Each posting carries its
/// precomputed BM25F contribution, so a query only adds numbers, and each
/// list is ordered best first (impact descending, then doc ascending): the
/// dense accumulator does not care about order, and single-word queries can
/// stop after `limit` postings.
pub(super) struct Postings {
    ends: Vec<u32>,
    pub(super) docs: Vec<u32>,
    impacts: Vec<f32>,
}

impl Postings {
    fn range(&self, term: u32) -> std::ops::Range<usize> {
        let term = term as usize;
        let start = if term == 0 { 0 } else { self.ends[term - 1] };
        start as usize..self.ends[term] as usize
    }

    pub(super) fn get(&self, term: u32) -> (&[u32], &[f32]) {
        let range = self.range(term);
        (&self.docs[range.clone()], &self.impacts[range])
    }

    pub(super) fn df(&self, term: u32) -> usize {
        self.range(term).len()
    }
}

/// Per-document term statistics kept between the two build passes (BM25
/// needs corpus-wide averages before any contribution can be computed).
struct DocTerm {
    term: u32,
    tf: [u16; FIELD_COUNT],
}

#[derive(Default)]
pub(super) struct IndexBuilder {
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
    pub(super) fn add(&mut self, doc: &Document<'_>) {
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

    pub(super) fn finish(self) -> SearchIndex {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
