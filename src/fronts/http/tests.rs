//! The HTTP front in-process, on a real store in a temporary directory: the claims cache,
//! and a property test that no query string, header or body makes the front fail, panic,
//! or change a balance without saying so.

use super::auth::{CacheOutcome, Credentials};
use super::{Http, HttpLimits, HttpState};
use crate::catalogue::Catalogue;
use crate::premium::Premium;
use crate::premium::claims::ClaimsVerifier;
use crate::premium::generate::{Backend, Generator};
use crate::premium::render::Renderer;
use crate::service::{AdminKeys, AdminPolicy, Principal, Service, ServiceConfig};
use crate::store::{FileStore, StoreConfig};
use axum::body::Body;
use axum::http::{HeaderValue, Request, header};
use http_body_util::BodyExt;
use proptest::prelude::*;
use std::sync::Arc;

const CLAIMS_SECRET: &[u8] = b"in-process-claims-secret-0123456789";
/// The fixture's admin key (named `prop`).
const ADMIN_KEY: &str = "memes_admin_in_process_test_key";

/// A service on a fresh store, and the HTTP front on it.
struct Fixture {
    _dir: tempfile::TempDir,
    service: Arc<Service>,
    http: Http,
}

fn fixture(verify_tokens: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(FileStore::open(&dir.path().join("data"), StoreConfig::default()).unwrap());
    let claims = verify_tokens.then(|| {
        let path = dir.path().join("claims-key");
        std::fs::write(&path, CLAIMS_SECRET).unwrap();
        ClaimsVerifier::from_file(&path).unwrap()
    });
    let premium = Premium::new(
        claims,
        Generator::new(Renderer::embedded().unwrap(), Backend::Builtin),
        dir.path().join("generated"),
        5,
    );
    let keys = dir.path().join("admin-keys");
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(ADMIN_KEY));
    std::fs::write(&keys, format!("prop {hash}\n")).unwrap();
    let config = ServiceConfig {
        meme_cost: 1,
        catalogue_path: None,
        admin: AdminPolicy::default(),
        admin_keys: Arc::new(AdminKeys::from_file(&keys).unwrap()),
        rate_limit: None,
    };
    let service = Arc::new(Service::new(
        store,
        Catalogue::embedded().unwrap(),
        premium,
        config,
    ));
    let http = Http::new(HttpState {
        service: service.clone(),
        credentials: Credentials::new(),
        webhook: None,
        limits: HttpLimits::default(),
        metrics: None,
        console: false,
    });
    Fixture {
        _dir: dir,
        service,
        http,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
}

#[test]
fn verified_claims_are_cached_but_never_past_their_exp() {
    let _runtime = runtime().enter();
    let fixture = fixture(true);
    let now = crate::domain::now_ms() as u64 / 1000;
    let exp = now + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "u1", "tier": "premium", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(CLAIMS_SECRET),
    )
    .unwrap();
    let headers = bearer(&token);
    let credentials = &fixture.http.credentials;
    let principal = |at: u64| {
        credentials
            .principal_at(&fixture.service, Some(&headers), at)
            .unwrap()
    };
    let user = Principal::User {
        id: "u1".into(),
        premium: true,
    };
    assert_eq!(principal(now), (user.clone(), Some(CacheOutcome::Miss)));
    assert_eq!(principal(now), (user.clone(), Some(CacheOutcome::Hit)));
    assert_eq!(principal(exp - 1), (user.clone(), Some(CacheOutcome::Hit)));
    // At exp the cached entry is not used: the token is verified again (here, by the real
    // clock, it is still valid; past exp the verification refuses it).
    assert_eq!(principal(exp), (user.clone(), Some(CacheOutcome::Miss)));
    // Another token is another entry, even for the same user.
    let other = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": "u1", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(CLAIMS_SECRET),
    )
    .unwrap();
    let (free, outcome) = credentials
        .principal_at(&fixture.service, Some(&bearer(&other)), now)
        .unwrap();
    assert_eq!(
        (free, outcome),
        (
            Principal::User {
                id: "u1".into(),
                premium: false
            },
            Some(CacheOutcome::Miss)
        )
    );
    // Admin keys and tokens live side by side; an admin key never touches the cache.
    let (admin, outcome) = credentials
        .principal_at(&fixture.service, Some(&bearer(ADMIN_KEY)), now)
        .unwrap();
    assert_eq!(
        (admin, outcome),
        (
            Principal::Admin {
                name: "prop".into()
            },
            None
        )
    );
}

/// Query-string keys the routes know, and some they do not.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "lat", "long", "lon", "query", "count", "nsfw", "user", "q", "limit", "before", "",
            "lat[]", "%6Cat", "LAT", "lat ",
        ])
        .prop_map(str::to_string),
        "[a-z%+]{1,6}",
    ]
}

/// Values: numbers of every spelling, text, percent escapes good and bad.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        (-200.0..200.0f64).prop_map(|f| format!("{f}")),
        any::<i64>().prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "NaN",
            "inf",
            "-inf",
            "1e999",
            "-0",
            "+0",
            "0x10",
            "",
            "true",
            "false",
            "1,5",
            "%00",
            "%FF",
            "%C3%28",
            "%E2%80%8B",
            "%",
            "%2",
            "u1",
            "bench-1",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,12}".prop_map(|text| uri_safe(&text)),
    ]
}

/// Text with every character a URI cannot hold as it is percent-encoded.
fn uri_safe(text: &str) -> String {
    let mut safe = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&byte) {
            safe.push(byte as char);
        } else {
            safe.push_str(&format!("%{byte:02X}"));
        }
    }
    safe
}

/// Bytes a header value may hold (anything but control characters), at random.
fn header_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'\t')],
        0..max,
    )
}

fn query_string() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            key(),
            prop::option::of(value()),
            prop::sample::select(vec!["&", "&&", ";"]),
        ),
        0..6,
    )
    .prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(key, value, separator)| match value {
                Some(value) => format!("{key}={value}{separator}"),
                None => format!("{key}{separator}"),
            })
            .collect()
    })
}

/// An `Authorization` header: nothing, a user id, an admin key (good or bad), a JWT-ish
/// string, or arbitrary bytes.
fn authorization() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        "[a-z0-9]{1,8}".prop_map(|user| Some(format!("Bearer {user}").into_bytes())),
        Just(Some(format!("Bearer {ADMIN_KEY}").into_bytes())),
        "memes_admin_[0-9a-f]{0,64}".prop_map(|key| Some(format!("Bearer {key}").into_bytes())),
        "[A-Za-z0-9_.-]{0,60}".prop_map(|token| Some(format!("bearer  {token} ").into_bytes())),
        header_bytes(40).prop_map(Some),
        header_bytes(40).prop_map(|bytes| {
            let mut header = b"Bearer ".to_vec();
            header.extend(bytes);
            Some(header)
        }),
    ]
}

/// Other headers a request may carry, with arbitrary values.
fn extra_headers() -> impl Strategy<Value = Vec<(&'static str, Vec<u8>)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec![
                "idempotency-key",
                "if-none-match",
                "memes-signature",
                "content-type",
                "content-length",
            ]),
            header_bytes(30),
        ),
        0..3,
    )
}

fn route() -> impl Strategy<Value = (&'static str, String)> {
    prop_oneof![
        Just(("GET", "/memes".to_string())),
        Just(("GET", "/v1/memes".to_string())),
        Just(("POST", "/v1/memes".to_string())),
        Just(("GET", "/v1/search".to_string())),
        Just(("POST", "/update-token-balance".to_string())),
        "[a-z0-9%]{0,8}".prop_map(|u| ("GET", format!("/v1/users/{u}/balance"))),
        "[a-z0-9%]{0,8}".prop_map(|u| ("GET", format!("/v1/users/{u}/history"))),
        "[a-z0-9%]{0,8}".prop_map(|u| ("POST", format!("/v1/users/{u}/topups"))),
        "[a-z0-9%]{0,8}".prop_map(|u| ("PUT", format!("/v1/users/{u}/entitlement"))),
        "[0-9a-f.%]{0,70}".prop_map(|f| ("GET", format!("/v1/images/{f}"))),
        Just(("GET", "/v1/status".to_string())),
        Just(("POST", "/v1/webhooks/topup".to_string())),
    ]
}

/// Bodies: JSON the routes expect, with odd values, and bytes that are not JSON.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        (any::<i64>(), "[a-z0-9]{0,6}").prop_map(|(amount, user)| {
            format!(r#"{{"user_id":"{user}","amount":{amount}}}"#).into_bytes()
        }),
        (any::<i64>(), value()).prop_map(|(amount, reason)| {
            serde_json::json!({"amount": amount, "reason": reason})
                .to_string()
                .into_bytes()
        }),
        (value(), value()).prop_map(|(lat, query)| {
            format!(r#"{{"lat":{lat},"long":1,"query":"{query}"}}"#).into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_request_fails_the_front_or_moves_money_it_does_not_report(
        (method, path) in route(),
        query in query_string(),
        authorization in authorization(),
        extra in extra_headers(),
        body in body(),
    ) {
        // One fixture for all cases (a store per case would be slow); the ledger is
        // audited at the end of each case.
        static FIXTURE: std::sync::OnceLock<(tokio::runtime::Runtime, Fixture)> =
            std::sync::OnceLock::new();
        let (runtime, fixture) = FIXTURE.get_or_init(|| {
            let runtime = runtime();
            let fixture = {
                let _entered = runtime.enter();
                fixture(false)
            };
            (runtime, fixture)
        });
        let uri = if query.is_empty() { path.clone() } else { format!("{path}?{query}") };
        let mut request = Request::builder().method(method).uri(&uri);
        if let Some(value) = &authorization {
            let Ok(value) = HeaderValue::from_bytes(value) else { return Ok(()) };
            request = request.header(header::AUTHORIZATION, value);
        }
        for (name, value) in &extra {
            let Ok(value) = HeaderValue::from_bytes(value) else { return Ok(()) };
            request = request.header(*name, value);
        }
        // Anything hyper would refuse before routing (a bad URI) is not the front's to see.
        let Ok(request) = request.body(Body::from(body.clone())) else { return Ok(()) };

        let (status, content_type, bytes, before, after) = runtime.block_on(async {
            let before = fixture.service.store().stats().await.unwrap().entries;
            // Through the serve loop's own entry, so the routes served without the router
            // are covered too.
            let routes = super::Routes::api(fixture.http.clone());
            let response = super::measured(routes, request).await.unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_string());
            let bytes = response.into_body().collect().await.unwrap().to_bytes();
            let after = fixture.service.store().stats().await.unwrap().entries;
            (status, content_type, bytes, before, after)
        });
        let text = String::from_utf8_lossy(&bytes);
        prop_assert!(!status.is_server_error(), "{method} {uri}: {status} {text}");
        if status.is_success() {
            prop_assert_eq!(content_type.as_deref(), Some("application/json"), "{}", text);
        } else if path == "/update-token-balance" {
            let refused: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(&refused["success"], &serde_json::json!(false));
        } else {
            prop_assert_eq!(content_type.as_deref(), Some(super::problem::PROBLEM_JSON), "{}", text);
            let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(problem["status"].as_u64(), Some(u64::from(status.as_u16())));
        }
        // A refused request changed nothing; only a success may add ledger entries.
        if !status.is_success() {
            prop_assert_eq!(before, after, "{} {} moved money: {} {}", method, uri, status, text);
        }
        let audit = runtime.block_on(fixture.service.store().audit()).unwrap();
        prop_assert!(audit.ok, "{:?}", audit);
    }
}

#[test]
fn metrics_name_each_route_by_its_operation() {
    use crate::telemetry::Op;
    for (path, op) in [
        ("/memes", Op::Get),
        ("/v1/memes", Op::Get),
        ("/update-token-balance", Op::Topup),
        ("/v1/users/u1/topups", Op::Topup),
        ("/v1/users/u%201/balance", Op::Balance),
        ("/v1/users/u1/history", Op::History),
        ("/v1/users/u1/entitlement", Op::Entitle),
        ("/v1/webhooks/topup", Op::Webhook),
        ("/v1/search", Op::Search),
        ("/v1/status", Op::Status),
        ("/v1/audit", Op::Audit),
        ("/v1/reload", Op::Reload),
        ("/v1/images/abc.png", Op::Image),
        ("/v1/users//balance", Op::Other),
        ("/v1/users/u1/balance/x", Op::Other),
        ("/v1/images/", Op::Other),
        ("/healthz", Op::Other),
        ("/nope", Op::Other),
    ] {
        assert_eq!(super::op_of(path), op, "{path}");
    }
}
