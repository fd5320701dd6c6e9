//! Request ids on the HTTP front: every request has one, in `X-Request-Id` both ways. A
//! client's (or a proxy's) id is kept when it is sane (1 to 128 printable ASCII characters,
//! no spaces or quotes, so it can go into a log line as it is); otherwise memesd makes one up:
//! a random prefix chosen at start-up and a counter (`5f3a9c1e07d2-2a`), unique without a
//! random number per request.
//!
//! The serve loop ([`super::measured`]) takes the id ([`take`]), runs the request in a
//! `request` span carrying it ([`span`], at debug level, with an access line when the
//! response is ready) and echoes it in the response. At the default level that span is never
//! built (see [`crate::daemon::logging`]). Done there rather than with tower-http's layers,
//! which measured a third more CPU per request (see [`super`]'s module doc).

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The header that carries the id, both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest client id kept.
pub const MAX_LEN: usize = 128;

/// Whether a client's id is kept: 1 to [`MAX_LEN`] visible ASCII characters other than quotes
/// and backslashes.
pub fn is_sane(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'))
}

/// The request's id: the client's when it is [sane](is_sane), else a new one.
pub fn take(headers: &HeaderMap) -> HeaderValue {
    match headers.get(&HEADER) {
        Some(value) if is_sane(value) => value.clone(),
        _ => make(),
    }
}

/// A new id: this process's random prefix, then a counter.
pub fn make() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::try_from(format!("{}-{n:x}", prefix())).expect("hex digits are a header value")
}

/// 48 random bits in hex, chosen once, so ids from different runs do not collide.
fn prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 6];
        // Without randomness, the time still sets runs apart.
        if getrandom::fill(&mut bytes).is_err() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos();
            bytes.copy_from_slice(&now.to_le_bytes()[..6]);
        }
        hex::encode(bytes)
    })
}

/// The span a request runs in: its id, method and path (built only when debug is enabled).
pub fn span(id: &HeaderValue, method: &Method, path: &str) -> tracing::Span {
    tracing::debug_span!(
        "request",
        request_id = id.to_str().unwrap_or("-"),
        method = %method,
        path = path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sane_ids_are_kept_and_others_replaced() {
        for id in [
            "abc",
            "req-42",
            "5f3a9c1e07d2-2a",
            "a:b/c=d+e",
            &"x".repeat(128),
        ] {
            assert!(is_sane(&HeaderValue::from_str(id).unwrap()), "{id}");
            let mut headers = HeaderMap::new();
            headers.insert(HEADER, HeaderValue::from_str(id).unwrap());
            assert_eq!(take(&headers), id);
        }
        for id in ["", "a b", "a\"b", "back\\slash", &"x".repeat(129)] {
            assert!(!is_sane(&HeaderValue::from_str(id).unwrap()), "{id:?}");
            let mut headers = HeaderMap::new();
            headers.insert(HEADER, HeaderValue::from_str(id).unwrap());
            assert_ne!(take(&headers), id);
        }
        assert!(!is_sane(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()));
    }

    #[test]
    fn made_up_ids_are_distinct_and_sane() {
        let one = take(&HeaderMap::new());
        let two = take(&HeaderMap::new());
        assert_ne!(one, two);
        assert!(is_sane(&one));
    }
}
