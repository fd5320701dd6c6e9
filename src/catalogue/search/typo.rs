//! Typo matching: query words missing from the vocabulary are matched to
//! vocabulary words one edit away through a symmetric-deletion index.
//!
//! Owns the typo index built from the vocabulary and the raw document words,
//! the distance check, and resolving each query term to the vocabulary terms
//! it stands for (itself, or its corrections at a penalty). Corrections
//! depend only on the query's stems, so hits stay a function of
//! [`canonical_query`](super::canonical_query).

use super::index::{HASH_BASE, MultiMap, StringTable};
use super::normalise::{QueryTerms, stem};
use super::rank::Alternatives;
use super::{SearchIndex, to_u32};

/// Multiplier for postings reached through a typo correction, so that an
/// exact match always beats an otherwise identical corrected one.
const CORRECTION_PENALTY: f32 = 0.7;
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

impl SearchIndex {
    /// Maps every query term to the vocabulary terms it stands for: itself
    /// when known, otherwise its typo corrections (possibly none).
    pub(super) fn resolve(
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
    /// function of [`canonical_query`](super::canonical_query).
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
}

/// Typo correction starts from stems, never from the raw query word, so that
/// the hits are a function of [`canonical_query`](super::canonical_query) alone. The length rule is
/// therefore applied to the stem: a stem is never longer than its word, so
/// words of four letters or fewer are never corrected. Digits are excluded
/// because "2019" -> "2018" is not a typo.
fn is_correctable(term: &str) -> bool {
    (MIN_TYPO_LEN..=MAX_TYPO_LEN).contains(&term.len())
        && term.bytes().all(|b| b.is_ascii_lowercase())
}

/// Calls `visit` with [`hash_bytes`](super::index::hash_bytes) of `word` and of each of its
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
pub(super) struct TypoIndex {
    forms: StringTable,
    form_terms: Vec<u32>,
    variants: MultiMap,
}

impl TypoIndex {
    pub(super) fn build(forms: StringTable, form_terms: Vec<u32>) -> TypoIndex {
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

/// Forms can be one letter shorter or longer than a correctable query term.
pub(super) fn is_correctable_form(form: &str) -> bool {
    (MIN_TYPO_LEN - 1..=MAX_TYPO_LEN + 1).contains(&form.len())
        && form.bytes().all(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::search::index::hash_bytes;

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
}
