//! [`Reply`]: what a request gets when it succeeds, typed per operation. Each serialises to
//! exactly the `data` object of the protocol, once, whichever front sends it: the socket
//! wraps it in a reply line, HTTP sends it as the body.
//!
//! Replies that carry catalogue memes keep the catalogue they were chosen from alive and
//! write each meme's pre-serialised view straight into the output, so a reply costs no copy
//! of the memes and survives a reload that happens while it waits for its commit.

use crate::catalogue::Catalogue;
use crate::domain::AuditReport;
use crate::protocol::{
    BalanceData, EntitleData, GetData, HistoryData, Location, MemeView, ReloadData, SearchData,
    SearchHit, StatusData, TopupData,
};
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::sync::Arc;

/// A successful reply, by operation.
#[derive(Debug)]
pub enum Reply {
    Get(GetReply),
    Topup(Stored<TopupData>),
    Balance(BalanceData),
    History(HistoryData),
    Status(StatusData),
    Search(Found),
    Entitle(EntitleData),
    Audit(AuditReport),
    Reload(ReloadData),
}

impl Serialize for Reply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Reply::Get(data) => data.serialize(serializer),
            Reply::Topup(data) => data.serialize(serializer),
            Reply::Balance(data) => data.serialize(serializer),
            Reply::History(data) => data.serialize(serializer),
            Reply::Status(data) => data.serialize(serializer),
            Reply::Search(data) => data.serialize(serializer),
            Reply::Entitle(data) => data.serialize(serializer),
            Reply::Audit(data) => data.serialize(serializer),
            Reply::Reload(data) => data.serialize(serializer),
        }
    }
}

/// A reply that an idempotency key may have stored: made now, or the one stored with the
/// key, replayed exactly as it was first sent.
#[derive(Debug)]
pub enum Stored<T> {
    Fresh(T),
    Replayed(Box<RawValue>),
}

impl<T: Serialize> Serialize for Stored<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Stored::Fresh(data) => data.serialize(serializer),
            Stored::Replayed(raw) => raw.serialize(serializer),
        }
    }
}

/// A `get` reply: memes from the catalogue, a generated image, or a replay.
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "the common reply; moved once, into the connection's reply queue: boxing it would allocate per request"
)]
pub enum GetReply {
    Memes(Delivery),
    Generated(Box<GetData<()>>),
    Replayed(Box<RawValue>),
}

impl Serialize for GetReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GetReply::Memes(delivery) => delivery.serialize(serializer),
            GetReply::Generated(data) => data.serialize(serializer),
            GetReply::Replayed(raw) => raw.serialize(serializer),
        }
    }
}

impl GetReply {
    /// The reply as plain data, for fronts that reshape it (a replay is read back).
    pub fn to_data(&self) -> Result<GetData<MemeView>, serde_json::Error> {
        match self {
            GetReply::Replayed(raw) => serde_json::from_str(raw.get()),
            other => serde_json::to_value(other).and_then(serde_json::from_value),
        }
    }
}

/// Memes chosen from the catalogue and charged for.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub catalogue: Arc<Catalogue>,
    /// Catalogue indices, best first.
    pub picked: Vec<u32>,
    /// Asked for with `count`: the reply lists `memes`; otherwise it has one `meme`.
    pub listed: bool,
    pub user_id: String,
    /// Tokens.
    pub charged: u64,
    /// Tokens, after the charge.
    pub balance: u64,
    pub location: Option<Location>,
}

impl Serialize for Delivery {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let view = |index: &u32| self.catalogue.view(*index);
        GetData::<&RawValue> {
            user_id: self.user_id.clone(),
            meme: (!self.listed).then(|| view(&self.picked[0])),
            memes: self.listed.then(|| self.picked.iter().map(view).collect()),
            generated: None,
            charged: self.charged,
            balance: self.balance,
            location: self.location.clone(),
        }
        .serialize(serializer)
    }
}

/// Ranked search results.
#[derive(Debug)]
pub struct Found {
    pub catalogue: Arc<Catalogue>,
    pub query: String,
    /// (score, catalogue index), best first.
    pub hits: Vec<(f32, u32)>,
}

impl Serialize for Found {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SearchData::<&RawValue> {
            query: self.query.clone(),
            hits: self
                .hits
                .iter()
                .map(|(score, index)| SearchHit {
                    score: *score,
                    meme: self.catalogue.view(*index),
                })
                .collect(),
        }
        .serialize(serializer)
    }
}
