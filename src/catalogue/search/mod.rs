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
//!
//! The code is split by stage:
//!
//! * `normalise`: text to terms, for documents and queries alike;
//! * `index`: the lookup tables and posting lists, and the builder behind
//!   [`SearchIndex::build`];
//! * `typo`: unknown query terms to their corrections;
//! * `rank`: BM25F impacts, accumulation, phrase bonus, the top hits.
//!
//! This file keeps the public surface ([`SearchIndex`], [`Document`],
//! [`Hit`], [`canonical_query`]) and the query pipeline behind
//! [`SearchIndex::search`], which runs normalise, typo and rank in turn on
//! per-thread scratch buffers.

mod index;
mod normalise;
mod rank;
mod typo;

use std::cell::RefCell;
use std::fmt;

use index::{IndexBuilder, MultiMap, Postings, Vocabulary};
use normalise::QueryTerms;
use rank::{Accumulator, Alternatives};
use typo::TypoIndex;

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

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("search index exceeds u32 capacity")
}

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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) struct Catalogue {
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

        pub(super) fn titles(titles: &[&str]) -> Catalogue {
            let entries: Vec<(&str, &[&str], &[&str])> =
                titles.iter().map(|&t| (t, &[][..], &[][..])).collect();
            Catalogue::new(&entries)
        }

        pub(super) fn index(&self) -> SearchIndex {
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

    pub(super) fn docs(index: &SearchIndex, query: &str) -> Vec<u32> {
        index.search(query, 100).iter().map(|hit| hit.doc).collect()
    }

    pub(super) fn sample() -> SearchIndex {
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
