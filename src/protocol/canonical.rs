//! The canonical form of a keyed request, its fingerprint: what must match for a retry to be
//! a retry. Written once, here; the service makes fingerprints with it and the store's rules
//! read a recorded one with it ([`recorded`]).
//!
//! Fingerprints are stored with their keys (the file store's journal and checkpoints,
//! PostgreSQL's `idempotency_keys.fingerprint`) and compared as text, so this form is
//! frozen: the request as compact JSON, `"op"` first, then its fields in the order below, an
//! optional field left out when absent (`false` for a flag). A field added to a request later
//! must be left out when absent too, so that every request that does not use it keeps the
//! fingerprint already stored for it. The idempotency key itself, credentials and the reply's
//! presentation (`inline`) are not part of it: a retry may differ in them.

use super::{
    CaptureRequest, GetRequest, HoldRequest, Op, RefundRequest, TopupRequest, VoidRequest,
};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

impl GetRequest {
    /// This request's canonical form (see the module).
    pub fn fingerprint(&self) -> String {
        // Every field named, so that a field added to the request is placed here (or left
        // out, saying why) before it compiles.
        let GetRequest {
            user,
            lat,
            long,
            query,
            count,
            nsfw,
            generate,
            inline: _,
            token: _,
            idempotency_key: _,
        } = self;
        #[derive(Serialize)]
        struct Get<'a> {
            op: &'static str,
            user: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            lat: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            long: Option<f64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            query: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            count: Option<u32>,
            #[serde(skip_serializing_if = "super::is_false")]
            nsfw: bool,
            #[serde(skip_serializing_if = "super::is_false")]
            generate: bool,
        }
        canonical(&Get {
            op: Op::Get.as_str(),
            user,
            lat: *lat,
            long: *long,
            query: query.as_deref(),
            count: *count,
            nsfw: *nsfw,
            generate: *generate,
        })
    }
}

impl TopupRequest {
    /// This request's canonical form (see the module).
    pub fn fingerprint(&self) -> String {
        let TopupRequest {
            user,
            amount,
            idempotency_key: _,
            reason,
            expires_at,
            expires_in,
            priority,
            promo,
        } = self;
        // Lot terms are left out when absent, so the fingerprints of top-ups made before
        // lots (and of those asking for none) are what they always were.
        #[derive(Serialize)]
        struct Topup<'a> {
            op: &'static str,
            user: &'a str,
            amount: i64,
            #[serde(skip_serializing_if = "Option::is_none")]
            reason: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            expires_at: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            expires_in: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            priority: Option<u64>,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            promo: bool,
        }
        canonical(&Topup {
            op: Op::Topup.as_str(),
            user,
            amount: *amount,
            reason: reason.as_deref(),
            expires_at: expires_at.as_deref(),
            expires_in: expires_in.as_deref(),
            priority: *priority,
            promo: *promo,
        })
    }
}

impl HoldRequest {
    /// This request's canonical form (see the module).
    pub fn fingerprint(&self) -> String {
        let HoldRequest {
            user,
            amount,
            ttl,
            idempotency_key: _,
        } = self;
        #[derive(Serialize)]
        struct Hold<'a> {
            op: &'static str,
            user: &'a str,
            amount: u64,
            ttl: &'a str,
        }
        canonical(&Hold {
            op: Op::Hold.as_str(),
            user,
            amount: *amount,
            ttl,
        })
    }
}

/// A capture's or a void's canonical form: the hold, then what is optional.
#[derive(Serialize)]
struct EndHold<'a> {
    op: &'static str,
    hold: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amount: Option<u64>,
}

impl CaptureRequest {
    /// This request's canonical form (see the module).
    pub fn fingerprint(&self) -> String {
        let CaptureRequest {
            hold,
            amount,
            user,
            idempotency_key: _,
        } = self;
        canonical(&EndHold {
            op: Op::Capture.as_str(),
            hold: *hold,
            user: user.as_deref(),
            amount: *amount,
        })
    }
}

impl VoidRequest {
    /// This request's canonical form (see the module).
    pub fn fingerprint(&self) -> String {
        let VoidRequest {
            hold,
            user,
            idempotency_key: _,
        } = self;
        canonical(&EndHold {
            op: Op::Void.as_str(),
            hold: *hold,
            user: user.as_deref(),
            amount: None,
        })
    }
}

impl RefundRequest {
    /// This request's canonical form (see the module).
    pub fn fingerprint(&self) -> String {
        let RefundRequest {
            entry,
            amount,
            user,
            idempotency_key: _,
        } = self;
        #[derive(Serialize)]
        struct Refund<'a> {
            op: &'static str,
            entry: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            user: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            amount: Option<u64>,
        }
        canonical(&Refund {
            op: Op::Refund.as_str(),
            entry: *entry,
            user: user.as_deref(),
            amount: *amount,
        })
    }
}

fn canonical<T: Serialize>(form: &T) -> String {
    serde_json::to_string(form).expect("a canonical form serialises")
}

/// The op and the user a recorded fingerprint names; None for text that is no fingerprint.
pub fn recorded(fingerprint: &str) -> Option<(Op, Cow<'_, str>)> {
    #[derive(Deserialize)]
    struct Recorded<'a> {
        #[serde(borrow)]
        op: Cow<'a, str>,
        #[serde(borrow)]
        user: Cow<'a, str>,
    }
    let recorded: Recorded = serde_json::from_str(fingerprint).ok()?;
    Some((Op::from_name(&recorded.op)?, recorded.user))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Request;

    /// How fingerprints were made before this module (the service serialised a copy of the
    /// request without its key and credentials): every fingerprint in a ledger written then
    /// must come out the same.
    fn as_recorded_then(request: &Request) -> String {
        let canonical = match request {
            Request::Get(get) => Request::Get(GetRequest {
                idempotency_key: None,
                token: None,
                inline: false,
                ..get.clone()
            }),
            Request::Topup(topup) => Request::Topup(TopupRequest {
                idempotency_key: None,
                ..topup.clone()
            }),
            other => panic!("{} takes no idempotency key", other.op()),
        };
        serde_json::to_string(&canonical).unwrap()
    }

    fn fingerprint(request: &Request) -> String {
        match request {
            Request::Get(get) => get.fingerprint(),
            Request::Topup(topup) => topup.fingerprint(),
            other => panic!("{} takes no idempotency key", other.op()),
        }
    }

    /// Fingerprints as memesd recorded them in its ledgers (journal `fp`, PostgreSQL's
    /// `idempotency_keys.fingerprint`) before this module: they must still match.
    #[test]
    fn fingerprints_are_the_ones_ledgers_hold() {
        let get = GetRequest {
            user: "alice".into(),
            lat: Some(48.8566),
            long: Some(-2.5),
            query: Some("cats \"and\" dogs é".into()),
            count: Some(3),
            nsfw: true,
            generate: false,
            inline: true,
            token: Some("eyJ.x.y".into()),
            idempotency_key: Some("k1".into()),
        };
        let recorded = [
            (
                Request::Get(get.clone()),
                r#"{"op":"get","user":"alice","lat":48.8566,"long":-2.5,"query":"cats \"and\" dogs é","count":3,"nsfw":true}"#,
            ),
            (
                Request::Get(GetRequest {
                    user: "u1".into(),
                    idempotency_key: Some("k".into()),
                    ..GetRequest::default()
                }),
                r#"{"op":"get","user":"u1"}"#,
            ),
            (
                Request::Get(GetRequest {
                    user: "p".into(),
                    query: Some("this is fine".into()),
                    generate: true,
                    inline: true,
                    idempotency_key: Some("k".into()),
                    ..GetRequest::default()
                }),
                r#"{"op":"get","user":"p","query":"this is fine","generate":true}"#,
            ),
            (
                Request::Topup(TopupRequest {
                    user: "bob".into(),
                    amount: -20,
                    idempotency_key: Some("evt_1".into()),
                    reason: Some("refund\tof\\x".into()),
                    ..TopupRequest::default()
                }),
                r#"{"op":"topup","user":"bob","amount":-20,"reason":"refund\tof\\x"}"#,
            ),
            (
                Request::Topup(TopupRequest {
                    user: "bob".into(),
                    amount: 500,
                    idempotency_key: Some("k".into()),
                    reason: None,
                    ..TopupRequest::default()
                }),
                r#"{"op":"topup","user":"bob","amount":500}"#,
            ),
            // Lot terms only when asked for: the forms above are those of every top-up made
            // before lots.
            (
                Request::Topup(TopupRequest {
                    user: "bob".into(),
                    amount: 30,
                    idempotency_key: Some("k".into()),
                    expires_in: Some("30d".into()),
                    priority: Some(10),
                    promo: true,
                    ..TopupRequest::default()
                }),
                r#"{"op":"topup","user":"bob","amount":30,"expires_in":"30d","priority":10,"promo":true}"#,
            ),
        ];
        for (request, fingerprint_then) in &recorded {
            assert_eq!(as_recorded_then(request), *fingerprint_then, "{request:?}");
            assert_eq!(fingerprint(request), *fingerprint_then, "{request:?}");
        }
    }

    #[test]
    fn fingerprints_match_the_way_they_were_made_for_every_request() {
        let floats = [
            None,
            Some(0.0),
            Some(-0.0),
            Some(1e-7),
            Some(89.999_999_9),
            Some(0.1 + 0.2),
        ];
        let texts = [
            None,
            Some(""),
            Some("a\u{1}b"),
            Some("ü\"\\/\u{2028}"),
            Some("😀"),
        ];
        for (i, lat) in floats.iter().enumerate() {
            for (j, text) in texts.iter().enumerate() {
                let get = GetRequest {
                    user: format!("user{i}{}", text.unwrap_or_default()),
                    lat: *lat,
                    long: floats[(i + j) % floats.len()],
                    query: text.map(str::to_string),
                    count: (j % 2 == 0).then_some(j as u32),
                    nsfw: i % 2 == 0,
                    generate: j % 3 == 0,
                    inline: i % 3 == 0,
                    token: text.map(|t| format!("token{t}")),
                    idempotency_key: Some(format!("key{i}{j}")),
                };
                let request = Request::Get(get);
                assert_eq!(fingerprint(&request), as_recorded_then(&request));
                let topup = Request::Topup(TopupRequest {
                    user: format!("u{j}"),
                    amount: [i64::MIN, -1, 1, i64::MAX][(i + j) % 4],
                    idempotency_key: text.map(str::to_string),
                    reason: text.map(str::to_string),
                    ..TopupRequest::default()
                });
                assert_eq!(fingerprint(&topup), as_recorded_then(&topup));
            }
        }
    }

    #[test]
    fn a_recorded_fingerprint_names_its_op_and_user() {
        let get = GetRequest {
            user: "a\"b".into(),
            query: Some("cats".into()),
            ..GetRequest::default()
        };
        assert_eq!(
            recorded(&get.fingerprint()),
            Some((Op::Get, Cow::from("a\"b")))
        );
        let topup = TopupRequest {
            user: "c".into(),
            amount: 5,
            ..TopupRequest::default()
        };
        assert_eq!(
            recorded(&topup.fingerprint()),
            Some((Op::Topup, "c".into()))
        );
        assert_eq!(recorded(r#"{"op":"dance","user":"c"}"#), None);
        assert_eq!(recorded("topup c 5"), None);
    }

    /// A refund's canonical form is frozen: the entry, then what is optional; the key is not
    /// in it.
    #[test]
    fn a_refunds_fingerprint_is_its_entry_user_and_amount() {
        let refund = RefundRequest {
            entry: 42,
            amount: Some(3),
            user: Some("bob".into()),
            idempotency_key: Some("k".into()),
        };
        assert_eq!(
            refund.fingerprint(),
            r#"{"op":"refund","entry":42,"user":"bob","amount":3}"#
        );
        let all = RefundRequest {
            entry: 42,
            ..RefundRequest::default()
        };
        assert_eq!(all.fingerprint(), r#"{"op":"refund","entry":42}"#);
    }
}
