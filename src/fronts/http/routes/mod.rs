//! The HTTP routes, by what they serve: [`original`] (the two routes of the first write-up),
//! [`v1`] (the versioned API: a route per protocol op, and the payment webhook), [`images`]
//! (generated images, named by their content) and [`health`] (liveness, readiness, metrics);
//! the bodies and query strings they read and answer are in [`types`].
//!
//! Each handler parses its request, builds the caller from the credential, calls the
//! service, and maps the result to a status and a body: no rule of the money is decided
//! here. Success bodies are the protocol's `data` objects, serialised once by the service's
//! typed reply for the op; errors are problem details ([`super::problem`]). This module holds
//! what the handlers share: the two headers they read, the caller, the body read within its
//! limits, the JSON responses, and the answers for no route and for a wrong method.

pub mod health;
pub mod images;
pub mod original;
pub mod types;
pub mod v1;

use super::Http;
use super::auth;
use super::problem::Problem;
use crate::domain::ErrorCode;
use crate::service::{Caller, Principal};
use crate::telemetry;
use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The idempotency key of a request that changes money.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a reply replayed for an idempotency key (Stripe's header).
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The two request headers most handlers read, taken out of the request on their own:
/// axum's `HeaderMap` extractor would copy the whole map for every request.
pub struct Headers {
    authorization: Option<HeaderValue>,
    idempotency_key: Option<HeaderValue>,
}

impl Headers {
    pub(super) fn authorization(&self) -> Option<&HeaderValue> {
        self.authorization.as_ref()
    }

    fn idempotency_key(&self) -> Option<&HeaderValue> {
        self.idempotency_key.as_ref()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Headers {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Headers, Self::Rejection> {
        Ok(Headers {
            authorization: parts.headers.get(header::AUTHORIZATION).cloned(),
            idempotency_key: parts.headers.get(IDEMPOTENCY_KEY).cloned(),
        })
    }
}

impl Http {
    /// Who a request comes from, by its credential (the `Authorization` header), counting
    /// claims-cache hits.
    pub(super) fn principal(
        &self,
        authorization: Option<&HeaderValue>,
    ) -> Result<Principal, Problem> {
        let (principal, cached) = self.credentials.principal(&self.service, authorization)?;
        if let Some(outcome) = cached {
            telemetry::claims_cache(outcome == auth::CacheOutcome::Hit);
        }
        Ok(principal)
    }

    /// The caller of a request, from its credential.
    pub(super) fn caller(&self, authorization: Option<&HeaderValue>) -> Result<Caller, Problem> {
        Ok(Caller::Remote(self.principal(authorization)?))
    }

    /// Reads a request body whole: at most [`super::MAX_BODY_BYTES`], and within the body
    /// deadline (a client that trickles its body is cut off).
    async fn read_body(&self, body: Body) -> Result<Bytes, Problem> {
        let limit = self.limits.body_timeout;
        let too_large = || {
            Problem::new(
                ErrorCode::PayloadTooLarge,
                format!(
                    "request bodies are limited to {} bytes",
                    super::MAX_BODY_BYTES
                ),
            )
        };
        // A body announced as too large is refused before any of it is read.
        if body.size_hint().lower() > super::MAX_BODY_BYTES as u64 {
            return Err(too_large());
        }
        let limited = Limited::new(body, super::MAX_BODY_BYTES);
        match tokio::time::timeout(limit, limited.collect()).await {
            Err(_) => Err(Problem::Timeout(limit)),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) if error.is::<LengthLimitError>() => Err(too_large()),
            Ok(Err(error)) => Err(Problem::new(
                ErrorCode::BadRequest,
                format!("reading the body: {error}"),
            )),
        }
    }

    /// Reads a request body as JSON of type `T`.
    async fn json_body<T: DeserializeOwned>(&self, body: Body) -> Result<T, Problem> {
        parse_json(&self.read_body(body).await?)
    }

    /// Reads a request body that may be left out (empty: `T`'s default) as JSON of type `T`.
    async fn optional_json_body<T: DeserializeOwned + Default>(
        &self,
        body: Body,
    ) -> Result<T, Problem> {
        let bytes = self.read_body(body).await?;
        match bytes.trim_ascii().is_empty() {
            true => Ok(T::default()),
            // `null` is no body too: the document says the body is optional (nullable).
            false => parse_json::<Option<T>>(&bytes).map(Option::unwrap_or_default),
        }
    }
}

/// The user a request is for: a user's own id (or, if the request names one, that one,
/// which the service then checks); an admin key must name one.
fn subject(caller: &Caller, named: Option<String>) -> Result<String, Problem> {
    match (caller, named) {
        (_, Some(user)) => Ok(user),
        (Caller::Remote(Principal::User { id, .. }), None) => Ok(id.clone()),
        (Caller::Remote(Principal::Anonymous), None) => Err(Problem::new(
            ErrorCode::Unauthorized,
            "this needs a bearer credential: a token for the user (or, in development mode, the user id)",
        )),
        (_, None) => Err(Problem::new(
            ErrorCode::NotAllowed,
            "an admin key has no account of its own: name the user to charge (`user`)",
        )),
    }
}

/// The `Idempotency-Key` header, if any (UTF-8, as the bearer).
fn idempotency_key(header: Option<&HeaderValue>) -> Result<Option<String>, Problem> {
    header
        .map(|value| {
            std::str::from_utf8(value.as_bytes())
                .map(str::to_string)
                .map_err(|_| {
                    Problem::new(
                        ErrorCode::InvalidArgument,
                        "the Idempotency-Key header is not UTF-8 text",
                    )
                })
        })
        .transpose()
}

/// A body as JSON of type `T`.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            ErrorCode::BadRequest,
            format!("the body is not the JSON expected: {e}"),
        )
    })
}

/// A part of the request that axum reads, `Parsed(Query(params))` or `Parsed(Path(user))`:
/// every handler takes its query string and path segments through this one extractor, so
/// whatever axum cannot read is refused the same way on every route, as a problem document
/// naming the part (`bad_request`; the conversions are in [`super::problem`]), before the
/// handler runs.
pub struct Parsed<E>(pub E);

impl<E, S> FromRequestParts<S> for Parsed<E>
where
    E: FromRequestParts<S>,
    E::Rejection: Into<Problem>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Parsed<E>, Problem> {
        E::from_request_parts(parts, state)
            .await
            .map(Parsed)
            .map_err(Into::into)
    }
}

/// A JSON response with an op's reply: its data, marked as a replay if it is one.
fn data_response<T: Serialize>(reply: &T, replayed: bool) -> Response {
    let body = serde_json::to_vec(reply).expect("reply data serialises");
    reply_response(body, replayed)
}

/// A `200` with a reply's JSON `body`, already made, marked as a replay if it is one.
fn reply_response(body: Vec<u8>, replayed: bool) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// A JSON response with the data of an op's reply that is never a replay.
pub(super) fn fresh_response<T: Serialize>(reply: &T) -> Response {
    data_response(reply, false)
}

/// Charges are never cached.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut response = (status, serde_json::to_vec(body).expect("serialises")).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Anything else.
pub async fn no_route() -> Problem {
    Problem::new(ErrorCode::NotFound, "no such route; see /openapi.json")
}

/// `HEAD` on a route whose `GET` charges: `405`, charging nothing. A `HEAD` answered like
/// its `GET` would charge a token for a meme nobody receives (uptime monitors, link checkers
/// and `curl -I` send it); `/healthz` is the route to probe.
pub async fn not_for_head() -> Problem {
    Problem::WrongMethod(axum::http::Method::HEAD)
}

/// The methods a route whose `GET` charges takes (HEAD is not one: [`not_for_head`]).
pub fn charging_allow(path: &str) -> Option<HeaderValue> {
    match path {
        "/memes" => Some(HeaderValue::from_static("GET")),
        "/v1/memes" => Some(HeaderValue::from_static("GET, POST")),
        _ => None,
    }
}

/// A route that exists, with a method it does not have.
pub async fn wrong_method(method: axum::http::Method) -> Problem {
    Problem::WrongMethod(method)
}
