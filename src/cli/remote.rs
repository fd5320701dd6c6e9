//! The CLI's remote transport: `memes --url http://host:8080` (or `MEMES_URL`) sends each
//! request to memesd's HTTP front instead of the socket, so that every subcommand works
//! against a remote daemon with the same output and exit codes.
//!
//! A [`Request`] becomes its route (`get` is `POST /v1/memes`, `topup` is
//! `POST /v1/users/{user}/topups`, …), filled in by its [`ToCall`], which each subcommand's
//! file implements for its op (`cli/get.rs` says how a `get` is sent); a success body is the
//! same `data` the socket sends, and a problem (RFC 9457) is read back into the same
//! [`ErrorBody`], so the CLI cannot tell the two transports apart. The bearer is
//! `MEMES_TOKEN` (a user's JWT, an admin key); without it, a `get` with `--token` sends that
//! token, and otherwise the request's own user id is the bearer, which is what a
//! development-mode memesd expects.
//!
//! Synchronous, like the socket client: one ureq agent per process, its connection kept
//! alive between the calls of one command (history pages).

use crate::protocol::{ErrorBody, ErrorCode, Request, Route};
use serde_json::value::RawValue;
use std::time::Duration;
use ureq::http;

/// Where the bearer credential for `--url` comes from.
pub const TOKEN_ENV: &str = "MEMES_TOKEN";

/// Why a remote call produced no reply.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot connect to memesd at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("the call to memesd at {url} failed")]
    Transport {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("memesd at {url} sent an unexpected reply: {detail}")]
    Protocol { url: String, detail: String },
}

/// memesd's HTTP front, as a client of it.
pub struct Remote {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

/// A request as an HTTP call: its op's route, which the request's [`ToCall`] fills in.
pub struct Call {
    /// The op's route: the method and the path template.
    route: Route,
    /// The route's method (an op's own, not a request's to change).
    method: http::Method,
    /// The path with its query, each value percent-encoded.
    pub path: String,
    pub body: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    /// The bearer when no `MEMES_TOKEN` is set.
    pub fallback_bearer: Option<String>,
}

impl Call {
    /// The bare route: its method and its path template, nothing more.
    fn new(route: Route) -> Call {
        Call {
            method: route.method.clone(),
            path: route.path.to_string(),
            route,
            body: None,
            idempotency_key: None,
            fallback_bearer: None,
        }
    }

    /// Fills the route's `{…}` segment with `segment` (percent-encoded here).
    pub fn at(&mut self, segment: &str) {
        self.path = self.route.path_with(&encode(segment));
    }

    /// A change to what `id` names in the path (a hold, an entry): `amount` and `user`, when
    /// given, in the body; the key as the `Idempotency-Key` header.
    pub fn change_of(
        &mut self,
        id: u64,
        amount: Option<u64>,
        user: Option<&str>,
        idempotency_key: Option<String>,
    ) {
        let mut body = serde_json::json!({});
        if let Some(amount) = amount {
            body["amount"] = amount.into();
        }
        if let Some(user) = user {
            body["user"] = user.into();
        }
        self.at(&id.to_string());
        self.body = Some(body);
        self.idempotency_key = idempotency_key;
    }

    /// Appends the given query parameters (values already encoded) to the path, in order.
    pub fn query<const N: usize>(&mut self, parameters: [(&str, Option<String>); N]) {
        add_query(&mut self.path, parameters);
    }
}

/// How an op's request goes to memesd's HTTP front: what it adds to its route (the path
/// segment, the query, the body, the idempotency key, the fallback bearer). The method and
/// the path template are the op's own ([`crate::protocol::Op::route`]), the route the HTTP
/// front serves it on. Each subcommand's file implements it for its op's request type, and
/// [`route`] is made from the list of ops, so an op does not compile without it.
pub trait ToCall {
    fn fill(&self, call: &mut Call);
}

impl Remote {
    /// A client of the memesd at `url` (`http://host:port`, optionally with a path prefix
    /// where a proxy mounts it).
    pub fn new(url: &str) -> Result<Remote, String> {
        let base = url.trim_end_matches('/');
        if base.starts_with("https://") {
            return Err(format!(
                "{url}: this memes speaks plain HTTP only; reach a TLS front through a tunnel or a local proxy"
            ));
        }
        let Some(authority) = base.strip_prefix("http://") else {
            return Err(format!("{url} is not an http:// URL"));
        };
        if authority.is_empty() || authority.starts_with('/') {
            return Err(format!("{url} names no host"));
        }
        // Deadlines per phase, none on the whole call: a deadline that covers name
        // resolution makes ureq resolve on a thread of its own, which costs more than the
        // call itself on loopback.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_send_request(Some(Duration::from_secs(30)))
            .timeout_send_body(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_recv_body(Some(Duration::from_secs(120)))
            .user_agent(concat!("memes/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Remote {
            base: base.to_string(),
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            agent,
        })
    }

    /// The base URL, as given.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Sends `request` and returns the reply's `data` (raw JSON) or its error, as the socket
    /// client does.
    pub fn call(&self, request: &Request) -> Result<Result<Box<RawValue>, ErrorBody>, RemoteError> {
        let call = route(request);
        let mut builder = http::Request::builder()
            .method(call.method.clone())
            .uri(format!("{}{}", self.base, call.path));
        if let Some(bearer) = self.token.as_deref().or(call.fallback_bearer.as_deref()) {
            builder = builder.header("authorization", format!("Bearer {bearer}"));
        }
        if let Some(key) = &call.idempotency_key {
            builder = builder.header("idempotency-key", key.as_str());
        }
        let protocol = |detail: String| RemoteError::Protocol {
            url: self.base.clone(),
            detail,
        };
        let sent = match &call.body {
            Some(body) => {
                let request = builder
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .map_err(|e| protocol(format!("building the request: {e}")))?;
                self.agent.run(request)
            }
            None => {
                let request = builder
                    .body(())
                    .map_err(|e| protocol(format!("building the request: {e}")))?;
                self.agent.run(request)
            }
        };
        let response = sent.map_err(|source| match source {
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Io(_) => {
                RemoteError::Unreachable {
                    url: self.base.clone(),
                    source,
                }
            }
            source => RemoteError::Transport {
                url: self.base.clone(),
                source,
            },
        })?;
        let status = response.status();
        let body = response
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .map_err(|source| RemoteError::Transport {
                url: self.base.clone(),
                source,
            })?;
        if status == http::StatusCode::OK {
            return RawValue::from_string(body)
                .map(Ok)
                .map_err(|e| protocol(format!("a 200 whose body is not JSON: {e}")));
        }
        Ok(Err(error_of(status, &body)))
    }
}

/// Makes [`route`] from the protocol's list of ops.
macro_rules! calls {
    ($($name:literal => $variant:ident($body:ident) at $method:ident $path:literal for $callers:ident,)+) => {
        /// The route, body and headers of a request: its op's route, filled in by the
        /// request's [`ToCall`].
        fn route(request: &Request) -> Call {
            let mut call = Call::new(request.op().route());
            match request {
                $(Request::$variant(request) => request.fill(&mut call),)+
            }
            call
        }
    };
}
crate::protocol::for_each_op!(calls);

/// Appends the given query parameters (values already encoded) to `path`, in order.
fn add_query<const N: usize>(path: &mut String, parameters: [(&str, Option<String>); N]) {
    let mut separator = '?';
    for (name, value) in parameters {
        if let Some(value) = value {
            path.push_str(&format!("{separator}{name}={value}"));
            separator = '&';
        }
    }
}

/// A refusal read back from a response: the problem's `code` and `detail`, or (for a
/// response that carries no problem, such as the original routes' or a proxy's) the code
/// its status stands for.
fn error_of(status: http::StatusCode, body: &str) -> ErrorBody {
    #[derive(serde::Deserialize)]
    struct Problem {
        code: ErrorCode,
        detail: String,
    }
    if let Ok(problem) = serde_json::from_str::<Problem>(body) {
        return ErrorBody::new(problem.code, problem.detail);
    }
    // The code the front counts such a response by, read the same way here.
    let code = ErrorCode::of_bare_status(status.as_u16()).unwrap_or(ErrorCode::Internal);
    let text = body.trim();
    let message = match text.is_empty() {
        true => format!("memesd answered {status}"),
        false => format!(
            "memesd answered {status}: {}",
            text.chars().take(200).collect::<String>()
        ),
    };
    ErrorBody::new(code, message)
}

/// Text for a path segment or a query value (also what `memes bench --http` sends): everything
/// but unreserved characters percent-encoded (UTF-8).
pub fn encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{GetRequest, HistoryRequest, TopupRequest};

    #[test]
    fn requests_become_their_routes() {
        let get = route(&Request::Get(GetRequest {
            user: "Zoë/1".into(),
            lat: Some(40.0),
            long: Some(-73.0),
            count: Some(2),
            idempotency_key: Some("k".into()),
            ..GetRequest::default()
        }));
        assert_eq!(
            (get.method, get.path.as_str()),
            (http::Method::POST, "/v1/memes")
        );
        assert_eq!(
            get.body.unwrap(),
            serde_json::json!({"user": "Zoë/1", "lat": 40.0, "long": -73.0, "count": 2})
        );
        assert_eq!(get.idempotency_key.as_deref(), Some("k"));
        assert_eq!(get.fallback_bearer.as_deref(), Some("Zoë/1"));
        let topup = route(&Request::Topup(TopupRequest {
            user: "Zoë/1".into(),
            amount: -5,
            ..TopupRequest::default()
        }));
        assert_eq!(topup.path, "/v1/users/Zo%C3%AB%2F1/topups");
        assert_eq!(topup.body.unwrap(), serde_json::json!({"amount": -5}));
        let history = route(&Request::History(HistoryRequest {
            user: "u".into(),
            limit: Some(3),
            before: Some("12:3".into()),
        }));
        assert_eq!(history.path, "/v1/users/u/history?limit=3&before=12%3A3");
    }

    #[test]
    fn refusals_read_back_as_the_socket_sends_them() {
        let problem = r#"{"type":"about:blank","title":"Payment Required","status":402,"detail":"user \"u\" has 0 tokens, 1 needed","code":"insufficient_tokens"}"#;
        assert_eq!(
            error_of(http::StatusCode::PAYMENT_REQUIRED, problem),
            ErrorBody::new(
                ErrorCode::InsufficientTokens,
                "user \"u\" has 0 tokens, 1 needed"
            )
        );
        let bare = error_of(http::StatusCode::SERVICE_UNAVAILABLE, "");
        assert_eq!(bare.code, ErrorCode::Unavailable);
        assert!(bare.message.contains("503"));
    }

    #[test]
    fn only_plain_http_urls() {
        assert!(Remote::new("http://127.0.0.1:8080/").is_ok());
        assert!(Remote::new("https://memes.example.com").is_err());
        assert!(Remote::new("127.0.0.1:8080").is_err());
        assert!(Remote::new("http://").is_err());
    }

    #[test]
    fn text_is_percent_encoded_but_for_unreserved_characters() {
        assert_eq!(encode("monday meeting/ü"), "monday%20meeting%2F%C3%BC");
        assert_eq!(encode("A-z_0.9~"), "A-z_0.9~");
    }
}
