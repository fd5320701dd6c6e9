//! Meaning: sentence embeddings from a small static model, and the memes nearest to one.
//!
//! The model is WordLlama's `l2_supercat` (MIT, shipped in the PyPI wheel `wordllama`): a
//! table with one vector per token. A text's embedding is the mean of its tokens' rows,
//! scaled to unit length, so two texts are compared by a dot product (their cosine). There is
//! no network in it: `data/semantic/` holds the first 64 of its 256 dimensions, quantised to
//! int8 with a scale per row (`scripts/semantic-model.py` makes it from the wheel), and the
//! tokenizer; both are compiled into the binary with the `semantic` feature (on by default).
//! Without that feature [`Model::embedded`] is `None` and search is BM25F alone.
//!
//! This module owns the model and vector arithmetic only. It knows nothing of queries'
//! other rules (typos, nsfw, regions): the catalogue fuses these scores with BM25F.

pub mod tokenizer;

use std::sync::LazyLock;

use tokenizer::Tokenizer;

/// A static token-embedding model: text in, unit vector out.
pub struct Model {
    tokenizer: Tokenizer,
    dims: usize,
    /// `rows × dims` int8 values (as stored: read in place, never copied); row `i` times
    /// `scales[i]` is token `i`'s vector.
    table: &'static [u8],
    scales: Vec<f32>,
}

/// Why the model files were refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error("the embedding table is not in memes' format: {0}")]
    Table(&'static str),
}

#[cfg(feature = "semantic")]
const EMBEDDINGS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/semantic/embeddings.bin"
));
#[cfg(feature = "semantic")]
const TOKENIZER: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/data/semantic/tokenizer.bin"
));

/// What `data/semantic/embeddings.bin` starts with: the format, then rows and dims (u32 LE).
const MAGIC: &[u8; 8] = b"MEMESEM1";

impl Model {
    /// The model compiled into this binary, loaded once per process (catalogue reloads
    /// share it). `None` when built without the `semantic` feature; a model that does not
    /// load is a build defect, which the unit tests catch, and is logged, not fatal.
    pub fn embedded() -> Option<&'static Model> {
        static MODEL: LazyLock<Option<Model>> = LazyLock::new(|| {
            #[cfg(feature = "semantic")]
            {
                match Model::from_parts(TOKENIZER, EMBEDDINGS) {
                    Ok(model) => return Some(model),
                    Err(e) => tracing::error!("the embedded semantic model is unusable: {e}"),
                }
            }
            None
        });
        MODEL.as_ref()
    }

    /// A model from a tokenizer and an embedding table in the forms
    /// `scripts/semantic-model.py` writes.
    pub fn from_parts(tokenizer: &'static [u8], table: &'static [u8]) -> Result<Model, ModelError> {
        let tokenizer = Tokenizer::from_bytes(tokenizer)?;
        let rest = table
            .strip_prefix(MAGIC)
            .ok_or(ModelError::Table("it does not start with MEMESEM1"))?;
        let word = |at: usize| -> Option<usize> {
            let bytes = rest.get(at..at + 4)?;
            Some(u32::from_le_bytes(bytes.try_into().ok()?) as usize)
        };
        let (Some(rows), Some(dims)) = (word(0), word(4)) else {
            return Err(ModelError::Table("it has no header"));
        };
        if rows != tokenizer.vocab_len() || dims == 0 {
            return Err(ModelError::Table("its rows do not match the vocabulary"));
        }
        let body = &rest[8..];
        if body.len() != rows * dims + rows * 4 {
            return Err(ModelError::Table("its length does not match its header"));
        }
        let (values, scales) = body.split_at(rows * dims);
        Ok(Model {
            tokenizer,
            dims,
            table: values,
            scales: scales
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
                .collect(),
        })
    }

    /// Dimensions of an embedding.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The unit-length embedding of `text`, or `None` if it has no tokens.
    pub fn embed(&self, text: &str) -> Option<Vec<f32>> {
        let ids = self.tokenizer.encode(text);
        if ids.is_empty() {
            return None;
        }
        let mut sum = vec![0f32; self.dims];
        for id in ids {
            let id = id as usize;
            let row = &self.table[id * self.dims..(id + 1) * self.dims];
            let scale = self.scales[id];
            for (total, &value) in sum.iter_mut().zip(row) {
                *total += f32::from(value as i8) * scale;
            }
        }
        // The mean's direction is the sum's: normalising makes dividing by the count moot.
        normalise(&mut sum).then_some(sum)
    }
}

/// Scales `vector` to unit length; false if it has none (all zeros).
fn normalise(vector: &mut [f32]) -> bool {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm <= f32::EPSILON || !norm.is_finite() {
        return false;
    }
    vector.iter_mut().for_each(|v| *v /= norm);
    true
}

/// The embeddings of a catalogue's memes, one unit vector per meme, in catalogue order.
pub struct Vectors {
    dims: usize,
    /// `len × dims`; a meme without text has a zero vector, which is near nothing.
    values: Vec<f32>,
}

impl Vectors {
    /// Embeds each text with `model`.
    pub fn build(model: &Model, texts: impl IntoIterator<Item = impl AsRef<str>>) -> Vectors {
        let dims = model.dims();
        let mut values = Vec::new();
        for text in texts {
            match model.embed(text.as_ref()) {
                Some(vector) => values.extend(vector),
                None => values.extend(std::iter::repeat_n(0.0, dims)),
            }
        }
        Vectors { dims, values }
    }

    /// Meme `index`'s vector.
    pub fn get(&self, index: u32) -> &[f32] {
        let start = index as usize * self.dims;
        &self.values[start..start + self.dims]
    }

    /// The cosine of every meme with `query` (a unit vector), in catalogue order.
    pub fn cosines(&self, query: &[f32]) -> Vec<f32> {
        self.values
            .chunks_exact(self.dims)
            .map(|row| row.iter().zip(query).map(|(a, b)| a * b).sum())
            .collect()
    }
}

#[cfg(all(test, feature = "semantic"))]
mod tests {
    use super::*;

    fn model() -> &'static Model {
        Model::embedded().expect("the embedded model loads")
    }

    #[test]
    fn the_embedded_model_loads_with_its_vocabulary() {
        assert_eq!(model().dims(), 64);
        assert_eq!(model().tokenizer.vocab_len(), 32000);
    }

    #[test]
    fn embeddings_are_unit_vectors_and_empty_text_has_none() {
        let vector = model().embed("a dog in a burning room").unwrap();
        let norm: f32 = vector.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert!(model().embed("").is_none());
    }

    #[test]
    fn related_texts_are_nearer_than_unrelated_ones() {
        let fire = model().embed("a house burning down in flames").unwrap();
        let blaze = model().embed("a building on fire").unwrap();
        let money = model()
            .embed("stock market profits and investments")
            .unwrap();
        let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!(
            cosine(&fire, &blaze) > cosine(&fire, &money) + 0.1,
            "fire~blaze {} fire~money {}",
            cosine(&fire, &blaze),
            cosine(&fire, &money)
        );
    }

    #[test]
    fn a_table_in_another_format_is_refused() {
        let error = Model::from_parts(TOKENIZER, b"NOTMEMES").err().unwrap();
        assert!(error.to_string().contains("MEMESEM1"), "{error}");
        let error = Model::from_parts(TOKENIZER, &EMBEDDINGS[..EMBEDDINGS.len() - 1])
            .err()
            .unwrap();
        assert!(error.to_string().contains("length"), "{error}");
    }
}
