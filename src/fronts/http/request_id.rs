//! Request ids on the HTTP front: every request has one, in `X-Request-Id` both ways. A
//! client's (or a proxy's) id is kept when it is sane (1 to 128 printable ASCII characters,
//! no spaces or quotes, so it can go into a log line as it is); otherwise memesd makes one up:
//! a random prefix chosen at start-up and a counter (`5f3a9c1e07d2-2a`), unique without a
//! random number per request.
//!
//! With tower-http: [`drop_insane`] removes an id not worth keeping, `SetRequestId` keeps the
//! rest or makes one ([`Sequential`]), `PropagateRequestId` echoes it in the response, and the
//! trace layer runs the request in a `request` span carrying it ([`span`]), at debug level,
//! with an access line when the response is ready. At the default level that span is never
//! built (see [`crate::daemon::logging`]).

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use tower_http::request_id::{MakeRequestId, RequestId};

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

/// Removes an `X-Request-Id` that is not [sane](is_sane), so that one is made up instead.
pub async fn drop_insane(mut request: Request) -> Request {
    if let Some(value) = request.headers().get(&HEADER)
        && !is_sane(value)
    {
        request.headers_mut().remove(&HEADER);
    }
    request
}

/// Makes ids: this process's random prefix, then a counter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sequential;

impl MakeRequestId for Sequential {
    fn make_request_id<B>(&mut self, _: &http::Request<B>) -> Option<RequestId> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        HeaderValue::try_from(format!("{}-{n:x}", prefix()))
            .ok()
            .map(RequestId::new)
    }
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
pub fn span<B>(request: &http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        request_id = request
            .extensions()
            .get::<RequestId>()
            .and_then(|id| id.header_value().to_str().ok())
            .unwrap_or("-"),
        method = %request.method(),
        path = request.uri().path(),
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
        }
        for id in ["", "a b", "a\"b", "back\\slash", &"x".repeat(129)] {
            assert!(!is_sane(&HeaderValue::from_str(id).unwrap()), "{id:?}");
        }
        assert!(!is_sane(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()));
    }

    #[test]
    fn made_up_ids_are_distinct_and_sane() {
        let request = http::Request::new(());
        let one = Sequential.make_request_id(&request).unwrap();
        let two = Sequential.make_request_id(&request).unwrap();
        assert_ne!(one.header_value(), two.header_value());
        assert!(is_sane(one.header_value()));
    }
}
