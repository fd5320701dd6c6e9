//! [`StoredReply`]: the reply a keyed change keeps for its retries, and [`Replayed`]: that
//! reply sent again, typed.
//!
//! A stored reply is a versioned record. Version 1, the only one so far, is the reply's
//! `data` object exactly as the first answer sent it (an image asked for inline left out),
//! written bare, with no version tag, into the journal, checkpoints, exports and
//! PostgreSQL's `idempotency_keys.reply`. Every memesd so far reads and writes that form, so
//! an older memesd started again on the data directory (a rollback) or sharing the database
//! (a rolling upgrade) replays what this one stored. A later version must be a form that
//! version 1 readers can tell apart, or wait until none is left.
//!
//! A replay is sent from the stored bytes, never from a typed value serialised again:
//! serde_json (without `float_roundtrip`) may read a float back one unit off in the last
//! place, so `location.distance_km` could change between the answer and its retry. The typed
//! view that routes reshaping a reply need is read from the same bytes, once; a stored reply
//! that does not read back as its op's reply is the ledger's corruption, reported here.
//!
//! This module owns the encoding; it knows no op and decides nothing about keys.

use super::StoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

/// A reply stored under an idempotency key, as the stores keep it (version 1: the `data`
/// object's JSON, byte for byte).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredReply(Box<RawValue>);

impl StoredReply {
    /// Records reply data as it is answered: serialised once, and kept as those bytes.
    pub fn record<T: Serialize>(data: &T) -> StoredReply {
        StoredReply(serde_json::value::to_raw_value(data).expect("reply data serialises"))
    }

    /// A stored reply as a store reads it back from its own records.
    pub fn from_json(json: Box<RawValue>) -> StoredReply {
        StoredReply(json)
    }

    /// A stored reply from its text (a database column); a corrupt ledger if it is not JSON.
    pub fn parse(text: String) -> Result<StoredReply, StoreError> {
        RawValue::from_string(text)
            .map(StoredReply)
            .map_err(|e| corrupt("is not JSON", &e))
    }

    /// The stored JSON, as a store writes it.
    pub fn as_json(&self) -> &RawValue {
        &self.0
    }

    /// The stored JSON's text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The reply sent again: the stored bytes marked `"replayed": true`, and the typed view
    /// `T` read from them (its `replayed` is true). A stored reply that does not read as a
    /// `T` is a corrupt ledger.
    pub fn replay<T: DeserializeOwned>(&self) -> Result<Replayed<T>, StoreError> {
        let sent = self.marked();
        let data =
            serde_json::from_str(sent.get()).map_err(|e| corrupt("does not read back", &e))?;
        Ok(Replayed { data, sent })
    }

    /// The stored data, marked as a replay: `"replayed":true` added before the closing brace
    /// (stored replies are JSON objects, stored before they were ever replayed). Spliced in
    /// as text, so every other byte is the stored one.
    fn marked(&self) -> Box<RawValue> {
        let text = self.as_str().trim_end();
        match text.strip_suffix('}') {
            Some(body) if body.trim_end() != "{" => {
                RawValue::from_string(format!("{body},\"replayed\":true}}")).expect("valid JSON")
            }
            _ => self.0.clone(),
        }
    }
}

/// The error of a stored reply that cannot be what it must be: the ledger is damaged (or was
/// written by something other than memesd).
fn corrupt(what: &str, error: &serde_json::Error) -> StoreError {
    StoreError::Internal(format!(
        "a reply stored under an idempotency key {what} ({error})"
    ))
}

/// A stored reply sent again: the data read back as `T`, and the exact text it is sent as.
#[derive(Debug, Clone)]
pub struct Replayed<T> {
    data: T,
    sent: Box<RawValue>,
}

impl<T> Replayed<T> {
    /// The replayed data, typed, for a front that answers in a shape of its own.
    pub fn data(&self) -> &T {
        &self.data
    }

    pub fn into_data(self) -> T {
        self.data
    }
}

impl<T: Serialize> Replayed<T> {
    /// A replay whose data had to change since it was stored (a generated image now stored
    /// at this host's path): serialised again, so no longer the stored bytes.
    pub fn rewritten(data: T) -> Replayed<T> {
        let sent = serde_json::value::to_raw_value(&data).expect("reply data serialises");
        Replayed { data, sent }
    }
}

impl<T> Serialize for Replayed<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.sent.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{GetData, MemeView, TopupData};

    #[test]
    fn a_replay_is_the_stored_reply_marked_as_one() {
        let stored =
            StoredReply::parse(r#"{"user_id":"u","amount":5,"new_balance":5}"#.into()).unwrap();
        let replayed = stored.replay::<TopupData>().unwrap();
        assert_eq!(
            serde_json::to_string(&replayed).unwrap(),
            r#"{"user_id":"u","amount":5,"new_balance":5,"replayed":true}"#
        );
        assert!(replayed.data().replayed, "the typed view reads as a replay");
    }

    /// A `get` reply as memesd has always written it: sent again as stored, a float with all
    /// its digits included, whatever the typed view reads.
    #[test]
    fn a_replay_keeps_every_stored_byte() {
        let text = concat!(
            r#"{"user_id":"u1","meme":{"id":"m1","title":"T","image":"https://i/x.png","#,
            r#""source":"https://s","tags":["a"]},"charged":1,"balance":149,"#,
            r#""location":{"country_code":"FR","country":"France","city":"Paris","#,
            r#""region":"Île-de-France","distance_km":2.0000000000000004}}"#
        );
        let stored = StoredReply::parse(text.into()).unwrap();
        assert_eq!(stored.as_str(), text);
        let replayed = stored.replay::<GetData<MemeView>>().unwrap();
        let sent = serde_json::to_string(&replayed).unwrap();
        assert_eq!(
            sent,
            format!("{},\"replayed\":true}}", &text[..text.len() - 1])
        );
        assert_eq!(replayed.data().meme.as_ref().unwrap().id, "m1");
    }

    #[test]
    fn a_stored_reply_that_does_not_read_back_is_a_corrupt_ledger() {
        let stored = StoredReply::parse(r#"{"user_id":"u"}"#.into()).unwrap();
        let error = stored.replay::<TopupData>().unwrap_err();
        assert!(matches!(error, StoreError::Internal(_)), "{error:?}");
    }
}
