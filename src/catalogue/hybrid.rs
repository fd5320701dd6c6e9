//! Hybrid ranking: one ordering from the keyword ranking (BM25F, [`super::search`]) and the
//! meaning ranking (cosines of sentence embeddings, [`super::semantic`]).
//!
//! A document's score is its cosine with the query plus a saturating share of its BM25F
//! score: `meaning + BM25_WEIGHT · bm25 / (bm25 + BM25_HALF)`. The cosine carries a
//! description in other words; the BM25F part, which grows with the words matched but never
//! beyond [`BM25_WEIGHT`], keeps a query that names a meme (its title, its tags, a typo of
//! them) on that meme. The constants were chosen on the tuning half of
//! `tests/fixtures/semantic-queries.tsv` together with every title as a query (see
//! BENCHMARKS.md); [`super::quality`] measures the held-out half.
//!
//! Which documents match at all: every keyword match, and the documents whose cosine
//! reaches [`MEANING_FLOOR`]. Gibberish reaches about 0.38 with every meme and so still
//! matches nothing, as it did before.
//!
//! Pure: no I/O, no knowledge of nsfw flags or regions (callers filter the result).

use super::search::Hit;

/// Cosine a document needs with the query to match by meaning alone.
pub const MEANING_FLOOR: f32 = 0.45;
/// The most the keyword score adds to the cosine.
const BM25_WEIGHT: f32 = 1.5;
/// The BM25F score that adds half of [`BM25_WEIGHT`].
const BM25_HALF: f32 = 8.0;

/// One ranked match and the scores it was ranked by.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Match {
    /// The document's index in catalogue order.
    pub doc: u32,
    /// What the matches are ordered by (the fused score, or BM25F alone without meaning).
    pub score: f32,
    /// The BM25F score (0 when no query word matched).
    pub bm25: f32,
    /// The cosine of the query's and the document's embeddings, -1..=1; `None` when there
    /// is no model or the query has no tokens.
    pub meaning: Option<f32>,
}

/// Fuses keyword hits with the query's cosine to every document (`cosines[doc]`), best
/// first (ties by document index); without cosines, the keyword hits as they are.
pub fn fuse(hits: &[Hit], cosines: Option<&[f32]>) -> Vec<Match> {
    let Some(cosines) = cosines else {
        return hits
            .iter()
            .map(|hit| Match {
                doc: hit.doc,
                score: hit.score,
                bm25: hit.score,
                meaning: None,
            })
            .collect();
    };
    let mut bm25 = vec![0f32; cosines.len()];
    for hit in hits {
        bm25[hit.doc as usize] = hit.score;
    }
    let mut matches: Vec<Match> = cosines
        .iter()
        .zip(&bm25)
        .enumerate()
        .filter(|&(_, (&cosine, &bm25))| bm25 > 0.0 || cosine >= MEANING_FLOOR)
        .map(|(doc, (&cosine, &bm25))| Match {
            doc: doc as u32,
            score: fused(bm25, cosine),
            bm25,
            meaning: Some(cosine),
        })
        .collect();
    matches.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.doc.cmp(&b.doc)));
    matches
}

fn fused(bm25: f32, cosine: f32) -> f32 {
    cosine + BM25_WEIGHT * bm25 / (bm25 + BM25_HALF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(doc: u32, score: f32) -> Hit {
        Hit { doc, score }
    }

    #[test]
    fn without_meaning_the_keyword_ranking_stands() {
        let matches = fuse(&[hit(3, 9.0), hit(1, 2.0)], None);
        assert_eq!(
            matches.iter().map(|m| (m.doc, m.score)).collect::<Vec<_>>(),
            [(3, 9.0), (1, 2.0)]
        );
        assert!(matches.iter().all(|m| m.meaning.is_none()));
    }

    #[test]
    fn meaning_alone_matches_above_the_floor_and_keywords_always_match() {
        let cosines = [0.9, 0.2, MEANING_FLOOR - 0.01, MEANING_FLOOR];
        let matches = fuse(&[hit(1, 0.5)], Some(&cosines));
        let docs: Vec<u32> = matches.iter().map(|m| m.doc).collect();
        assert_eq!(docs, [0, 3, 1], "{matches:?}");
        assert_eq!(matches[2].bm25, 0.5);
        assert_eq!(matches[0].bm25, 0.0);
        assert_eq!(matches[0].meaning, Some(0.9));
    }

    #[test]
    fn a_strong_keyword_match_outweighs_a_moderate_difference_in_meaning() {
        // Someone typing a title: the titled meme wins over a nearer description.
        let cosines = [0.55, 0.15];
        let matches = fuse(&[hit(1, 21.0), hit(0, 4.5)], Some(&cosines));
        assert_eq!(matches[0].doc, 1, "{matches:?}");
        // A weak keyword match does not outweigh a clearly nearer meaning.
        let cosines = [0.65, 0.30];
        let matches = fuse(&[hit(1, 1.0)], Some(&cosines));
        assert_eq!(matches[0].doc, 0, "{matches:?}");
    }

    #[test]
    fn nothing_matches_gibberish() {
        assert!(fuse(&[], Some(&[0.38, 0.30, -0.1])).is_empty());
    }
}
