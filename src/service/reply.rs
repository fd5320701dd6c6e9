//! [`Reply`]: what a request gets when it succeeds, typed per operation (each op's request
//! type names its reply type: [`Handled`]). Each serialises to exactly the `data` object of
//! the protocol, once, whichever front sends it: the socket wraps it in a reply line, HTTP
//! sends it as the body.
//!
//! A reply replayed for an idempotency key is the stored one ([`Replayed`]): sent as the
//! stored bytes, with its data typed for fronts that answer in a shape of their own.
//!
//! Replies that carry catalogue memes keep the catalogue they were chosen from alive and
//! write each meme's pre-serialised view straight into the output, so a reply costs no copy
//! of the memes and survives a reload that happens while it waits for its commit.
//!
//! Why these types serialise here rather than at a front: the shape they write is the
//! protocol's (`GetData`, `SearchData`, `SimilarData`: each impl writes one of those, or a
//! borrowed mirror a test holds to the same bytes), and the service needs it itself: a keyed
//! `get` stores its reply ([`crate::store::StoredReply`], version 1 is the `data` bytes) when
//! the charge is written, before any front has seen it. Every front writes a reply by this
//! one impl, so a shape cannot differ between the socket and HTTP. What a front reshapes (the
//! original HTTP routes' bodies) it reads from the typed values and the catalogue's meme
//! views, not from this JSON.

use crate::catalogue::Catalogue;
use crate::catalogue::hybrid::Match;
use crate::protocol::{GetData, Location, MemeView, SearchData, SearchHit, SimilarData};
use crate::store::Replayed;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::sync::Arc;

/// An op's request type, as the service answers it: the type of its reply, which the op's
/// method returns (written beside that method, in `service/mod.rs`). [`Reply`] is made from
/// it, so an op added to the protocol needs nothing here.
pub trait Handled {
    /// What the op's method returns on success; it serialises to the op's `data`.
    type Reply: Serialize + std::fmt::Debug;

    /// The memes a reply handed to a user, if any (only `get` delivers memes).
    fn delivery(_reply: &Self::Reply) -> Option<&Delivery> {
        None
    }
}

/// Makes [`Reply`] from the protocol's list of ops.
macro_rules! replies {
    ($($name:literal => $variant:ident($body:ident) at $method:ident $path:literal for $callers:ident,)+) => {
        /// A successful reply, by operation: the op's [`Handled::Reply`].
        #[derive(Debug)]
        pub enum Reply {
            $($variant(<crate::protocol::$body as Handled>::Reply),)+
        }

        impl Serialize for Reply {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(Reply::$variant(data) => data.serialize(serializer),)+
                }
            }
        }

        impl Delivered for Reply {
            fn delivery(&self) -> Option<&Delivery> {
                match self {
                    $(Reply::$variant(reply) => {
                        <crate::protocol::$body as Handled>::delivery(reply)
                    })+
                }
            }
        }
    };
}
crate::protocol::for_each_op!(replies);

/// A reply that may have handed memes to a user: they are remembered (for variety) once the
/// charge is durable ([`super::Answer::settle`]).
pub trait Delivered {
    /// The memes delivered, if any.
    fn delivery(&self) -> Option<&Delivery>;
}

impl Delivered for GetReply {
    fn delivery(&self) -> Option<&Delivery> {
        match self {
            GetReply::Memes(delivery) => Some(delivery),
            _ => None,
        }
    }
}

impl<T> Delivered for Stored<T> {
    fn delivery(&self) -> Option<&Delivery> {
        None
    }
}

/// A reply that an idempotency key may have stored: made now, or the one stored with the
/// key, replayed as it was first sent (marked as a replay).
#[derive(Debug)]
pub enum Stored<T> {
    Fresh(T),
    Replayed(Replayed<T>),
}

impl<T> Stored<T> {
    /// True for a stored reply sent again.
    pub fn is_replay(&self) -> bool {
        matches!(self, Stored::Replayed(_))
    }
}

impl<T: Serialize> Serialize for Stored<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Stored::Fresh(data) => data.serialize(serializer),
            Stored::Replayed(replayed) => replayed.serialize(serializer),
        }
    }
}

/// A `get` reply: memes from the catalogue, a generated image, or a replay (of either).
#[derive(Debug, Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "the common reply; moved once, into the connection's reply queue: boxing it would allocate per request"
)]
pub enum GetReply {
    Memes(Delivery),
    Generated(Box<GetData<()>>),
    Replayed(Box<Replayed<GetData<MemeView>>>),
}

impl Serialize for GetReply {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            GetReply::Memes(delivery) => delivery.serialize(serializer),
            GetReply::Generated(data) => data.serialize(serializer),
            GetReply::Replayed(replayed) => replayed.serialize(serializer),
        }
    }
}

impl GetReply {
    /// True for a stored reply sent again.
    pub fn is_replay(&self) -> bool {
        matches!(self, GetReply::Replayed(_))
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
        // The shape of `GetData`, borrowed (a test holds the two to the same bytes): the
        // most common reply should not copy its strings to be written.
        #[derive(Serialize)]
        struct Out<'a> {
            user_id: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            meme: Option<&'a RawValue>,
            #[serde(skip_serializing_if = "Option::is_none")]
            memes: Option<Vec<&'a RawValue>>,
            charged: u64,
            balance: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            location: Option<&'a Location>,
        }
        let view = |index: &u32| self.catalogue.view(*index);
        Out {
            user_id: &self.user_id,
            meme: (!self.listed).then(|| view(&self.picked[0])),
            memes: self.listed.then(|| self.picked.iter().map(view).collect()),
            charged: self.charged,
            balance: self.balance,
            location: self.location.as_ref(),
        }
        .serialize(serializer)
    }
}

/// Ranked search results.
#[derive(Debug)]
pub struct Found {
    pub catalogue: Arc<Catalogue>,
    pub query: String,
    /// Best first.
    pub hits: Vec<Match>,
}

impl Serialize for Found {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SearchData::<&RawValue> {
            query: self.query.clone(),
            hits: search_hits(&self.catalogue, &self.hits, true),
        }
        .serialize(serializer)
    }
}

/// The memes nearest in meaning to one meme.
#[derive(Debug)]
pub struct Nearest {
    pub catalogue: Arc<Catalogue>,
    pub meme_id: String,
    /// Nearest first.
    pub hits: Vec<Match>,
}

impl Serialize for Nearest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SimilarData::<&RawValue> {
            meme_id: self.meme_id.clone(),
            hits: search_hits(&self.catalogue, &self.hits, false),
        }
        .serialize(serializer)
    }
}

/// The hits' wire form. `bm25` is there when it is one part of two (a query's words beside
/// its meaning); alone, it is `score` itself, and `similar` has no words to score.
fn search_hits<'c>(
    catalogue: &'c Catalogue,
    hits: &[Match],
    words: bool,
) -> Vec<SearchHit<&'c RawValue>> {
    hits.iter()
        .map(|hit| SearchHit {
            score: hit.score,
            bm25: (words && hit.meaning.is_some()).then_some(hit.bm25),
            meaning: hit.meaning,
            meme: catalogue.view(hit.doc),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_writes_exactly_what_get_data_would() {
        let catalogue = Arc::new(Catalogue::embedded().unwrap());
        let location = Location {
            country_code: "FR".into(),
            country: "France".into(),
            city: "Paris".into(),
            region: "Île-de-France".into(),
            region_code: None,
            distance_km: 0.4,
            at_sea: false,
            landmass: None,
        };
        for (listed, location) in [(false, None), (true, Some(location))] {
            let delivery = Delivery {
                catalogue: catalogue.clone(),
                picked: vec![3, 1],
                listed,
                user_id: "u\"1".into(),
                charged: 2,
                balance: 7,
                location: location.clone(),
            };
            let view = |i: u32| catalogue.view(i);
            let data = GetData::<&RawValue> {
                user_id: "u\"1".into(),
                meme: (!listed).then(|| view(3)),
                memes: listed.then(|| vec![view(3), view(1)]),
                generated: None,
                charged: 2,
                balance: 7,
                location,
                replayed: false,
            };
            assert_eq!(
                serde_json::to_string(&delivery).unwrap(),
                serde_json::to_string(&data).unwrap()
            );
        }
    }
}
