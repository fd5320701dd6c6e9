//! Newline-delimited JSON framing, the socket's wire: one request object per line, one reply
//! line per request, in request order, each echoing the request's `"id"`. It lives with the
//! protocol because both ends use it: the socket front and [`crate::client`]. The socket front
//! reads lines with [`parse_line`] and writes replies with [`encode_ok`] / [`encode_error`];
//! clients (the CLI) write [`Envelope`]s and read [`ReplyLine`]s.

use crate::protocol::{ErrorBody, ErrorCode, MAX_ID_BYTES, Op, Request};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A request line as the daemon sees it: the echoed id (when the line was a JSON object) and
/// either a well-formed request or the error to reply with.
pub struct Incoming<'a> {
    pub id: Option<&'a RawValue>,
    pub request: Result<Request, ErrorBody>,
}

/// Parses one request line (without its newline). Never panics, whatever the bytes. The
/// request's fields are checked against their limits by the service, as for every front.
///
/// Two passes over the line keep error codes exact: the first reads only `id` and `op`
/// (so a malformed request still gets its id echoed, and an unknown op is told apart from a
/// malformed one), the second reads the operation's own fields. Unknown fields are ignored, so
/// newer clients can talk to older daemons.
pub fn parse_line(line: &[u8]) -> Incoming<'_> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow, default)]
        id: Option<&'a RawValue>,
        #[serde(borrow, default)]
        op: Option<Cow<'a, str>>,
    }
    let not_an_object = |why: String| Incoming {
        id: None,
        request: Err(ErrorBody::bad_request(format!(
            "request is not a JSON object{why}"
        ))),
    };
    // serde would also read a struct from a JSON array, by position; requests are objects.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return not_an_object(String::new());
    }
    let head: Head = match serde_json::from_slice(line) {
        Ok(head) => head,
        Err(e) => return not_an_object(format!(": {e}")),
    };
    let id = match head.id.filter(|raw| raw.get() != "null") {
        Some(raw) if !is_plain_id(raw) => {
            return Incoming {
                id: None,
                request: Err(ErrorBody::bad_request(format!(
                    "id must be a number or a string of at most {MAX_ID_BYTES} bytes"
                ))),
            };
        }
        id => id,
    };
    let Some(op) = head.op else {
        return Incoming {
            id,
            request: Err(ErrorBody::bad_request("missing field `op`")),
        };
    };
    let request = match Op::from_name(&op) {
        Some(op) => op
            .decode(line)
            .map_err(|e| ErrorBody::bad_request(e.to_string())),
        None => Err(unknown_op(&op)),
    };
    Incoming { id, request }
}

/// Ids are echoed verbatim, so they are kept to what clients actually use: a number or a
/// string, of bounded size (never a deeply nested value a client could not read back).
/// The id must also read back as JSON any client can hold: a finite number (`1e999` is
/// not), a string without lone surrogates (`"\ud800"` is not).
fn is_plain_id(raw: &RawValue) -> bool {
    let text = raw.get();
    text.len() <= MAX_ID_BYTES
        && matches!(text.as_bytes()[0], b'"' | b'-' | b'0'..=b'9')
        && serde_json::from_str::<serde_json::Value>(text).is_ok()
}

/// The refusal of an op no [`Op`] names, listing the ones there are.
#[cold]
fn unknown_op(name: &str) -> ErrorBody {
    let known: Vec<&str> = Op::ALL.iter().map(|op| op.as_str()).collect();
    ErrorBody::new(
        ErrorCode::UnknownOp,
        format!(
            "unknown op {:?}; expected one of {}",
            truncate_for_message(name),
            known.join(", ")
        ),
    )
}

fn truncate_for_message(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// A request as a client sends it: the operation plus an optional id to match the reply.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(flatten)]
    pub request: &'a Request,
}

/// A reply line as a client reads it. `data` stays raw so each caller decodes the type it expects
/// (and `--json` can print it untouched).
#[derive(Debug, Deserialize)]
pub struct ReplyLine {
    #[serde(default)]
    pub id: Option<serde_json::Value>,
    pub ok: bool,
    #[serde(default)]
    pub data: Option<Box<RawValue>>,
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

#[derive(Serialize)]
struct ReplyOut<'a, T: Serialize> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a RawValue>,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ErrorBody>,
}

/// Appends a success reply line (with its newline) to `out`.
pub fn encode_ok<T: Serialize>(out: &mut Vec<u8>, id: Option<&RawValue>, data: &T) {
    let reply = ReplyOut {
        id,
        ok: true,
        data: Some(data),
        error: None,
    };
    // Serialising our own types into a Vec cannot fail: no maps with non-string keys, no I/O.
    serde_json::to_writer(&mut *out, &reply).expect("reply serialises");
    out.push(b'\n');
}

/// Appends an error reply line (with its newline) to `out`.
pub fn encode_error(out: &mut Vec<u8>, id: Option<&RawValue>, error: &ErrorBody) {
    let reply: ReplyOut<'_, ()> = ReplyOut {
        id,
        ok: false,
        data: None,
        error: Some(error),
    };
    serde_json::to_writer(&mut *out, &reply).expect("reply serialises");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{BalanceRequest, GetRequest, StatusRequest, TopupData, TopupRequest};

    /// A line as the socket front reads it and the service then checks it.
    fn parse(line: &str) -> (Option<String>, Result<Request, ErrorBody>) {
        let incoming = parse_line(line.as_bytes());
        (
            incoming.id.map(|raw| raw.get().to_string()),
            incoming.request.and_then(|r| r.validate().map(|()| r)),
        )
    }

    fn code(line: &str) -> ErrorCode {
        parse(line).1.expect_err("request should be refused").code
    }

    #[test]
    fn get_with_all_fields_parses() {
        let (id, req) = parse(
            r#"{"id":7,"op":"get","user":"u1","lat":40.0,"long":-73.0,"query":"cats","count":3,"nsfw":true,"idempotency_key":"k"}"#,
        );
        assert_eq!(id.as_deref(), Some("7"));
        let Request::Get(get) = req.unwrap() else {
            panic!("not a get")
        };
        assert_eq!(get.user, "u1");
        assert_eq!((get.lat, get.long), (Some(40.0), Some(-73.0)));
        assert_eq!(get.query.as_deref(), Some("cats"));
        assert_eq!(get.count, Some(3));
        assert!(get.nsfw);
        assert_eq!(get.idempotency_key.as_deref(), Some("k"));
    }

    #[test]
    fn lon_is_an_alias_of_long() {
        let (_, req) = parse(r#"{"op":"get","user":"u1","lat":1,"lon":2}"#);
        let Request::Get(get) = req.unwrap() else {
            panic!("not a get")
        };
        assert_eq!(get.long, Some(2.0));
    }

    #[test]
    fn ids_are_echoed_verbatim_even_for_bad_requests() {
        assert_eq!(
            parse(r#"{"id":"abc","op":"nope"}"#).0.as_deref(),
            Some("\"abc\"")
        );
        assert_eq!(
            parse(r#"{"id":-1.5e3,"op":"get"}"#).0.as_deref(),
            Some("-1.5e3")
        );
        assert_eq!(
            parse(r#"{"id":{"a":[1]},"op":"status"}"#).0,
            None,
            "only numbers and strings"
        );
        assert_eq!(code(r#"{"id":[1],"op":"status"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"id":1e999,"op":"status"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"id":"\ud800","op":"status"}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(parse(r#"{"id":null,"op":"status"}"#).0, None);
        assert_eq!(parse("not json").0, None);
    }

    #[test]
    fn error_codes_are_exact() {
        assert_eq!(code("not json"), ErrorCode::BadRequest);
        assert_eq!(code("[1,2]"), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"[7,"get","u1"]"#),
            ErrorCode::BadRequest,
            "no positional requests"
        );
        assert_eq!(code(r#"{"user":"u1"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"op":"fly"}"#), ErrorCode::UnknownOp);
        assert_eq!(code(r#"{"op":"get"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"op":"get","user":5}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"op":"get","user":""}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"get","user":"u","lat":91,"long":0}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"get","user":"u","lat":0,"long":-180.5}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"get","user":"u","lat":1}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"get","user":"u","lat":1e999,"long":0}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"op":"get","user":"u","count":0}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"get","user":"u","count":11}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"topup","user":"u","amount":0}"#),
            ErrorCode::InvalidArgument
        );
        // JSON's -0 is read as a float, so it is a mistyped amount.
        assert_eq!(
            code(r#"{"op":"topup","user":"u","amount":-0}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"op":"topup","user":"u","amount":1.5}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"op":"topup","user":"u","amount":1000000000001}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"topup","user":"u","amount":100000000000000000000}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(code(r#"{"op":"topup","user":"u"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"op":"topup","user":"u","amount":1,"idempotency_key":""}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"balance","user":"a\u0007b"}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"balance","user":"u","at":"yesterday"}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"entitle","user":"u","tier":"gold"}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"op":"entitle","user":"u","tier":"premium","until":"tomorrow"}"#),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(r#"{"op":"get","user":"u","user":"v"}"#),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn escaped_strings_parse() {
        let (_, req) = parse(r#"{"op":"balance","user":"a\"b\\c\u00e9"}"#);
        assert_eq!(
            req.unwrap(),
            Request::Balance(BalanceRequest {
                user: "a\"b\\cé".into(),
                at: None,
            })
        );
    }

    #[test]
    fn requests_serialise_to_the_documented_lines() {
        let get = Request::Get(GetRequest {
            user: "u1".into(),
            lat: Some(40.0),
            long: Some(-73.0),
            query: Some("cats".into()),
            ..GetRequest::default()
        });
        let line = serde_json::to_string(&Envelope {
            id: None,
            request: &get,
        })
        .unwrap();
        assert_eq!(
            line,
            r#"{"op":"get","user":"u1","lat":40.0,"long":-73.0,"query":"cats"}"#
        );
        let topup = Request::Topup(TopupRequest {
            user: "u1".into(),
            amount: 50,
            ..TopupRequest::default()
        });
        let line = serde_json::to_string(&Envelope {
            id: Some(3),
            request: &topup,
        })
        .unwrap();
        assert_eq!(line, r#"{"id":3,"op":"topup","user":"u1","amount":50}"#);
        assert_eq!(
            serde_json::to_string(&Request::Status(StatusRequest {})).unwrap(),
            r#"{"op":"status"}"#
        );
        let at = Request::Balance(BalanceRequest {
            user: "u1".into(),
            at: Some("2026-12-01T00:00:00Z".into()),
        });
        assert_eq!(
            serde_json::to_string(&at).unwrap(),
            r#"{"op":"balance","user":"u1","at":"2026-12-01T00:00:00Z"}"#
        );
    }

    #[test]
    fn replies_serialise_to_the_documented_lines() {
        let mut out = Vec::new();
        let id = RawValue::from_string("9".into()).unwrap();
        encode_ok(
            &mut out,
            Some(&id),
            &TopupData {
                user_id: "u1".into(),
                amount: 50,
                new_balance: 199,
                welcome_grant: None,
                replayed: false,
            },
        );
        encode_error(
            &mut out,
            None,
            &ErrorBody::new(ErrorCode::InsufficientTokens, "balance 0, need 1"),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            concat!(
                r#"{"id":9,"ok":true,"data":{"user_id":"u1","amount":50,"new_balance":199}}"#,
                "\n",
                r#"{"ok":false,"error":{"code":"insufficient_tokens","message":"balance 0, need 1"}}"#,
                "\n"
            )
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// The reply a parse leads to, read back as a client would.
        /// The reply a line leads to (the request itself standing in for its data), read
        /// back as a client would.
        fn reply_of(line: &[u8]) -> ReplyLine {
            let incoming = parse_line(line);
            let request = incoming.request.and_then(|r| r.validate().map(|()| r));
            let mut out = Vec::new();
            match &request {
                Ok(request) => encode_ok(&mut out, incoming.id, request),
                Err(error) => encode_error(&mut out, incoming.id, error),
            }
            assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
            serde_json::from_slice(&out).expect("every reply is valid JSON")
        }

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                    .map_or(serde_json::Value::Null, serde_json::Value::Number)),
                "[a-z0-9 \\u{0}-\\u{1f}\\u{e9}]{0,12}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..4)
                        .prop_map(serde_json::Value::from),
                    proptest::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        fn request_like() -> impl Strategy<Value = serde_json::Value> {
            let op = prop_oneof![
                Just("get"),
                Just("topup"),
                Just("balance"),
                Just("history"),
                Just("status"),
                Just("search"),
                Just("similar"),
                Just("entitle"),
                Just("audit"),
                Just("reload"),
                Just("dance"),
            ];
            let field = prop_oneof![
                Just("id"),
                Just("user"),
                Just("lat"),
                Just("long"),
                Just("lon"),
                Just("query"),
                Just("amount"),
                Just("count"),
                Just("nsfw"),
                Just("limit"),
                Just("tier"),
                Just("until"),
                Just("idempotency_key"),
                Just("reason"),
                Just("token"),
                Just("meme"),
            ];
            (op, proptest::collection::vec((field, json_value()), 0..6)).prop_map(|(op, fields)| {
                let mut object = serde_json::Map::new();
                object.insert("op".into(), op.into());
                for (key, value) in fields {
                    object.insert(key.into(), value);
                }
                serde_json::Value::Object(object)
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn any_bytes_give_a_request_or_an_error_reply(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
                let reply = reply_of(&bytes);
                if !reply.ok {
                    prop_assert!(reply.error.is_some());
                }
            }

            #[test]
            fn request_shaped_objects_are_valid_requests_or_exact_errors(value in request_like()) {
                let line = serde_json::to_vec(&value).unwrap();
                match parse_line(&line).request.and_then(|r| r.validate().map(|()| r)) {
                    Ok(request) => {
                        prop_assert!(request.validate().is_ok());
                        // What was accepted means the same thing when sent again.
                        let again = serde_json::to_vec(&request).unwrap();
                        prop_assert_eq!(parse_line(&again).request, Ok(request));
                    }
                    Err(error) => {
                        prop_assert!(matches!(
                            error.code,
                            ErrorCode::BadRequest | ErrorCode::InvalidArgument | ErrorCode::UnknownOp
                        ));
                        prop_assert!(!reply_of(&line).ok);
                    }
                }
            }
        }
    }
}
