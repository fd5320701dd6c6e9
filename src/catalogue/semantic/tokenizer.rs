//! The byte-fallback BPE tokenizer the embedding model was trained with (LLaMA 2's
//! vocabulary, as WordLlama ships it in a Hugging Face `tokenizer.json`).
//!
//! It owns turning text into token ids and nothing else. It reproduces what the reference
//! `tokenizers` library does for this one configuration: the text gets a leading `▁` and
//! every space becomes `▁`; each character is a token if the vocabulary has it, else its
//! UTF-8 bytes are (`<0x..>`); then adjacent tokens are merged, always the pair whose merge
//! ranks first (leftmost among equals), until no pair can merge. The unit tests compare it
//! with ids the reference produced. One difference is deliberate: the reference reads
//! `<s>`, `</s>` and `<unk>` in the text as control tokens; here they are what a user typed.
//!
//! It reads the vocabulary and merges from the compact form `scripts/semantic-model.py`
//! writes (after checking the JSON's configuration is this one), not from the JSON: loading
//! then costs no parsing and no string building, which every daemon start pays.

use std::collections::HashMap;

/// What the normaliser puts in place of spaces and in front of the text.
const SPACE: char = '\u{2581}';
/// What `data/semantic/tokenizer.bin` starts with; then the token and merge counts (u32 LE).
const MAGIC: &[u8; 8] = b"MEMESTK1";

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Why a tokenizer file was refused.
#[derive(Debug, thiserror::Error)]
#[error("the tokenizer is not in memes' format: {0}")]
pub struct TokenizerError(&'static str);

/// A loaded tokenizer: the vocabulary and the merge ranks.
pub struct Tokenizer {
    vocab: FastMap<&'static str, u32>,
    /// (left id, right id) → (rank, merged id); a lower rank merges first.
    merges: FastMap<(u32, u32), (u32, u32)>,
    /// `<0x00>`..`<0xFF>`: the ids of single bytes, for characters the vocabulary lacks.
    bytes: [u32; 256],
}

/// Reads what `scripts/semantic-model.py` wrote, front to back.
struct Reader {
    rest: &'static [u8],
}

impl Reader {
    fn take(&mut self, n: usize) -> Result<&'static [u8], TokenizerError> {
        if self.rest.len() < n {
            return Err(TokenizerError("it ends early"));
        }
        let (taken, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(taken)
    }

    fn u16(&mut self) -> Result<u32, TokenizerError> {
        let b = self.take(2)?;
        Ok(u32::from(u16::from_le_bytes([b[0], b[1]])))
    }

    fn u32(&mut self) -> Result<usize, TokenizerError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

impl Tokenizer {
    /// Reads the tokenizer from the bytes `scripts/semantic-model.py` writes.
    pub fn from_bytes(bytes: &'static [u8]) -> Result<Tokenizer, TokenizerError> {
        let mut reader = Reader {
            rest: bytes
                .strip_prefix(MAGIC)
                .ok_or(TokenizerError("it does not start with MEMESTK1"))?,
        };
        let (tokens, merge_count) = (reader.u32()?, reader.u32()?);
        let mut vocab = FastMap::with_capacity_and_hasher(tokens, Default::default());
        for id in 0..tokens as u32 {
            let len = reader.u16()? as usize;
            let token = std::str::from_utf8(reader.take(len)?)
                .map_err(|_| TokenizerError("a token is not UTF-8"))?;
            vocab.insert(token, id);
        }
        let mut merges = FastMap::with_capacity_and_hasher(merge_count, Default::default());
        for rank in 0..merge_count as u32 {
            let (left, right, merged) = (reader.u16()?, reader.u16()?, reader.u16()?);
            if [left, right, merged]
                .iter()
                .any(|&id| id as usize >= tokens)
            {
                return Err(TokenizerError("a merge names a token it does not have"));
            }
            merges.insert((left, right), (rank, merged));
        }
        if !reader.rest.is_empty() {
            return Err(TokenizerError("it has bytes after the merges"));
        }
        let mut bytes = [0; 256];
        for (byte, slot) in bytes.iter_mut().enumerate() {
            *slot = *vocab
                .get(format!("<0x{byte:02X}>").as_str())
                .ok_or(TokenizerError("a byte has no token"))?;
        }
        Ok(Tokenizer {
            vocab,
            merges,
            bytes,
        })
    }

    /// The number of ids (the embedding table must have this many rows).
    pub fn vocab_len(&self) -> usize {
        self.vocab.len()
    }

    /// The token ids of `text`, without the `<s>` a language model would put first.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::new();
        if text.is_empty() {
            return ids;
        }
        let normalised: String = std::iter::once(SPACE)
            .chain(text.chars().map(|c| if c == ' ' { SPACE } else { c }))
            .collect();
        // No vocabulary token has a `▁` after another character, so no merge crosses the
        // start of a `▁` run: each word merges on its own, which keeps merging cheap.
        let mut start = 0;
        let mut previous = SPACE;
        for (at, c) in normalised.char_indices() {
            if c == SPACE && previous != SPACE {
                self.encode_word(&normalised[start..at], &mut ids);
                start = at;
            }
            previous = c;
        }
        self.encode_word(&normalised[start..], &mut ids);
        ids
    }

    fn encode_word(&self, word: &str, ids: &mut Vec<u32>) {
        let mut symbols: Vec<u32> = Vec::with_capacity(word.len());
        let mut buffer = [0; 4];
        for c in word.chars() {
            match self.vocab.get(c.encode_utf8(&mut buffer) as &str) {
                Some(&id) => symbols.push(id),
                None => symbols.extend(
                    c.encode_utf8(&mut buffer)
                        .bytes()
                        .map(|b| self.bytes[usize::from(b)]),
                ),
            }
        }
        // Words are short (a query is at most 256 characters), so a scan per merge is
        // cheaper than keeping a heap up to date.
        loop {
            let best = symbols
                .windows(2)
                .enumerate()
                .filter_map(|(at, pair)| {
                    self.merges
                        .get(&(pair[0], pair[1]))
                        .map(|&(rank, merged)| (rank, at, merged))
                })
                .min();
            let Some((_, at, merged)) = best else { break };
            symbols[at] = merged;
            symbols.remove(at + 1);
        }
        ids.extend(symbols);
    }
}

#[cfg(all(test, feature = "semantic"))]
mod tests {
    use super::*;

    /// Ids the reference `tokenizers` library gave (tests/generators/tokenizer_reference.py):
    /// tricky texts (spaces, accents, scripts, emoji, markers) and every catalogue text.
    const REFERENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tokenizer-reference.jsonl"
    ));

    #[derive(serde::Deserialize)]
    struct Case {
        text: String,
        ids: Vec<u32>,
    }

    fn tokenizer() -> Tokenizer {
        Tokenizer::from_bytes(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/semantic/tokenizer.bin"
        )))
        .unwrap()
    }

    #[test]
    fn ids_match_the_reference_tokenizer() {
        let tokenizer = tokenizer();
        let mut checked = 0;
        for line in REFERENCE.lines() {
            let case: Case = serde_json::from_str(line).unwrap();
            assert_eq!(tokenizer.encode(&case.text), case.ids, "{:?}", case.text);
            checked += 1;
        }
        assert!(checked > 1000, "{checked} cases");
    }

    #[test]
    fn other_files_are_refused_by_name() {
        let error = Tokenizer::from_bytes(b"{\"model\":{}}").err().unwrap();
        assert!(error.to_string().contains("MEMESTK1"), "{error}");
        let error = Tokenizer::from_bytes(b"MEMESTK1\x02\0\0\0\0\0\0\0\x01\0a")
            .err()
            .unwrap();
        assert!(error.to_string().contains("ends early"), "{error}");
    }
}
