//! Normalisation: the one way document and query text become terms.
//!
//! Unicode case and accent folding (via `deunicode`), splitting on
//! non-alphanumerics, dropping apostrophes inside words, Snowball English
//! stemming and stop words. Indexing and querying both go through here, so a
//! word and its query agree by construction; nothing here knows about the
//! index or scores.

use std::sync::LazyLock;

use rust_stemmers::{Algorithm, Stemmer};

use super::to_u32;

/// Upper bound on the distinct terms a query contributes; keeps the cost of
/// pathological queries bounded.
pub(super) const MAX_QUERY_TERMS: usize = 32;
// Per-document word markers and match counts are stored as u8.
const _: () = assert!(MAX_QUERY_TERMS < u8::MAX as usize);
/// Only this prefix of a query is looked at, bounding folding and splitting.
const MAX_QUERY_BYTES: usize = 1024;

static STEMMER: LazyLock<Stemmer> = LazyLock::new(|| Stemmer::create(Algorithm::English));

pub(super) fn stem(word: &str) -> std::borrow::Cow<'_, str> {
    STEMMER.stem(word)
}

/// Words so common that they only add noise to ranking. They are still
/// indexed, because a query made only of them ("this is") must still find
/// titles like "This Is Fine". Sorted, for binary search.
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is", "it",
    "its", "of", "on", "or", "that", "the", "this", "to", "was", "were", "with",
];

pub(super) fn is_stop_word(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// Folded words of one or more texts, stored back to back so that splitting
/// allocates nothing once the buffers have grown.
#[derive(Default)]
pub(super) struct Words {
    text: String,
    ends: Vec<u32>,
}

impl Words {
    pub(super) fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.text[start as usize..end as usize])
    }

    /// Appends the folded words of `text`: lowercase ASCII alphanumeric runs
    /// after transliteration, with apostrophes between letters dropped so
    /// that "don't" and "dont" agree.
    pub(super) fn split(&mut self, text: &str) {
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
pub(super) struct QueryTerms {
    words: Words,
    pub(super) text: String,
    count: usize,
}

impl QueryTerms {
    pub(super) fn parse(&mut self, query: &str) {
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

    pub(super) fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        self.text.split(' ').filter(|term| !term.is_empty())
    }

    pub(super) fn len(&self) -> usize {
        self.count
    }

    pub(super) fn is_empty(&self) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::search::canonical_query;
    use crate::catalogue::search::tests::{docs, sample};

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
    fn stop_word_table_is_sorted() {
        assert!(STOP_WORDS.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(is_stop_word("the") && is_stop_word("with") && !is_stop_word("cat"));
    }
}
