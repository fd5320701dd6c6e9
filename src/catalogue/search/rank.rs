//! Ranking: BM25F scores and the query-time accumulation that sums them.
//!
//! BM25F over title, tags and categories with per-field weights (computed
//! once per posting at build time, so a query only adds numbers), a
//! coordination factor so documents matching more query words rank higher,
//! a bonus for query words that are adjacent in a title, and the bounded
//! heap that keeps the best hits with deterministic tie-breaking.

use std::collections::BinaryHeap;

use super::index::bigram_key;
use super::normalise::MAX_QUERY_TERMS;
use super::{FIELD_COUNT, Hit, SearchIndex, to_u32};

/// BM25 term-frequency saturation.
const K1: f32 = 1.2;
/// BM25 length normalisation strength.
const B: f32 = 0.75;
/// Field weights, indexed by [`Field`](super::Field): a word in the title says more about
/// a meme than the same word in a tag, and categories are the broadest.
const FIELD_WEIGHTS: [f32; FIELD_COUNT] = [3.0, 2.0, 1.0];
/// Size of the title-adjacency bonus relative to the rarer word's idf.
const PHRASE_WEIGHT: f32 = 0.5;

impl SearchIndex {
    /// A one-word exact query needs no accumulation: postings are stored
    /// best first, so its hits are a prefix of the term's list. Scores are
    /// bit-identical to the general path (coordination is 1, no phrases).
    pub(super) fn single_term_hits(&self, term: u32, limit: usize) -> Vec<Hit> {
        let (docs, impacts) = self.postings.get(term);
        let hits = docs.iter().zip(impacts).take(limit);
        hits.map(|(&doc, &score)| Hit { doc, score }).collect()
    }

    pub(super) fn accumulate(&self, alternatives: &Alternatives, acc: &mut Accumulator) {
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
    pub(super) fn add_phrase_bonus(&self, alternatives: &Alternatives, acc: &mut Accumulator) {
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

pub(super) fn average_field_lengths(lens: &[[u32; FIELD_COUNT]]) -> [f32; FIELD_COUNT] {
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
pub(super) fn bm25_idf(doc_count: u32, df: u32) -> f32 {
    let (n, df) = (doc_count as f32, df as f32);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// BM25F: field-weighted, length-normalised term frequencies are summed
/// before saturation, so a word in both title and tags is not counted twice
/// at full strength.
pub(super) fn bm25f_impact(
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

/// For each query word, the vocabulary terms it matches and their weight.
#[derive(Default)]
pub(super) struct Alternatives {
    entries: Vec<(u32, f32)>,
    ends: Vec<u32>,
}

impl Alternatives {
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.ends.clear();
    }

    pub(super) fn push(&mut self, term: u32, weight: f32) {
        self.entries.push((term, weight));
    }

    pub(super) fn end_word(&mut self) {
        self.ends.push(to_u32(self.entries.len()));
    }

    /// The term of a query that is one word matched exactly.
    pub(super) fn single_exact_term(&self) -> Option<u32> {
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
pub(super) struct Accumulator {
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
    pub(super) fn start(&mut self, doc_count: usize) {
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
    pub(super) fn top(&mut self, limit: usize, query_words: usize) -> Vec<Hit> {
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
    use crate::catalogue::search::Scratch;
    use crate::catalogue::search::tests::sample;

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
}
