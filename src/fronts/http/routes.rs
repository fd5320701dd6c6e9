//! The HTTP routes. Each handler parses its request, builds the caller from the credential,
//! calls the service, and maps the result to a status and a body: no rule of the money is
//! decided here. Success bodies are the protocol's `data` objects, serialised once by the
//! service's typed reply for the op; errors are problem details ([`super::problem`]).
//!
//! The original web routes keep the shapes the first write-up gave them: `GET /memes`
//! answers the meme's own fields plus `charged`, `balance` and `location`, and
//! `POST /update-token-balance` answers `{"success", "message", "user_id", "new_balance"}`.

use super::Http;
use super::auth;
use super::problem::{Problem, Problems};
use super::schema::{self, Amount, IdempotencyKey, UserId};
#[allow(unused_imports, reason = "named in the OpenAPI annotations")]
use crate::domain::AuditReport;
use crate::domain::{ErrorCode, Tier};
use crate::protocol::{
    AuditRequest, BalanceRequest, EntitleRequest, GetData, GetRequest, HistoryRequest, Location,
    MemeView, ReloadRequest, SearchRequest, StatusRequest, TopupData, TopupRequest,
};
#[allow(unused_imports, reason = "named in the OpenAPI annotations")]
use crate::protocol::{BalanceData, EntitleData, HistoryData, ReloadData, SearchData, StatusData};
use crate::service::{Caller, GetReply, Principal, ServiceError, Stored};
use crate::telemetry;
use axum::body::HttpBody as _;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The idempotency key of a request that changes money.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on a reply replayed for an idempotency key (Stripe's header).
const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
/// A payment webhook's signature.
const SIGNATURE: HeaderName = HeaderName::from_static("memes-signature");

/// `GET /memes`'s query, as the first write-up gives it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OriginalQuery {
    /// Latitude, decimal degrees (with `long`).
    #[param(schema_with = schema::query_latitude)]
    #[serde(default, deserialize_with = "empty_as_none")]
    lat: Option<f64>,
    /// Longitude, decimal degrees (with `lat`; `lon` is accepted too).
    #[serde(alias = "lon")]
    #[param(schema_with = schema::query_longitude)]
    #[serde(default, deserialize_with = "empty_as_none")]
    long: Option<f64>,
    /// What the meme should be about.
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    #[serde(default, deserialize_with = "empty_as_none")]
    query: Option<String>,
    /// The user to charge (admin keys only; a user's own credential names the user).
    #[param(schema_with = schema::query_user)]
    #[serde(default, deserialize_with = "empty_as_none")]
    user: Option<String>,
}

/// `GET /v1/memes`'s query: everything a `get` takes but a generated image.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemesQuery {
    /// Latitude, decimal degrees (with `long`).
    #[param(schema_with = schema::query_latitude)]
    #[serde(default, deserialize_with = "empty_as_none")]
    lat: Option<f64>,
    /// Longitude, decimal degrees (with `lat`; `lon` is accepted too).
    #[serde(alias = "lon")]
    #[param(schema_with = schema::query_longitude)]
    #[serde(default, deserialize_with = "empty_as_none")]
    long: Option<f64>,
    /// What the meme should be about.
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    #[serde(default, deserialize_with = "empty_as_none")]
    query: Option<String>,
    /// Deliver this many distinct memes, all or nothing.
    #[param(schema_with = schema::query_count)]
    #[serde(default, deserialize_with = "empty_as_none")]
    count: Option<u32>,
    /// Allow memes flagged not safe for work.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(schema_with = schema::query_flag)]
    nsfw: Option<bool>,
    /// The user to charge (admin keys only; a user's own credential names the user).
    #[param(schema_with = schema::query_user)]
    #[serde(default, deserialize_with = "empty_as_none")]
    user: Option<String>,
}

/// `POST /v1/memes`'s body: everything a `get` takes. (The idempotency key goes in the
/// `Idempotency-Key` header.)
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemesBody {
    /// The user to charge (admin keys only; a user's own credential names the user).
    #[schema(value_type = Option<UserId>)]
    user: Option<String>,
    /// Latitude, decimal degrees (with `long`).
    #[schema(minimum = -90, maximum = 90, nullable = false)]
    lat: Option<f64>,
    /// Longitude, decimal degrees (with `lat`; `lon` is accepted too).
    #[serde(alias = "lon")]
    #[schema(minimum = -180, maximum = 180, nullable = false)]
    long: Option<f64>,
    /// What the meme should be about.
    #[schema(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    query: Option<String>,
    /// Deliver this many distinct memes, all or nothing (not with `generate`).
    #[schema(minimum = 1, maximum = 10, nullable = false)]
    #[serde(default, deserialize_with = "integral_count")]
    count: Option<u32>,
    /// Allow memes flagged not safe for work.
    #[serde(default)]
    nsfw: bool,
    /// Render a new meme image (premium users only).
    #[serde(default)]
    generate: bool,
    /// With `generate`: also return the PNG, base64.
    #[serde(default)]
    inline: bool,
}

/// The meme as `GET /memes` answers it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OriginalMeme {
    pub id: String,
    pub title: String,
    /// Where the image lives (https URL).
    pub image: String,
    /// A page about the meme.
    pub source: String,
    /// Tokens charged.
    pub charged: u64,
    /// Balance after the charge.
    pub balance: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
}

/// `POST /update-token-balance`'s body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct BalanceUpdate {
    #[schema(value_type = UserId)]
    pub user_id: String,
    /// Tokens to add; negative deducts (never below zero).
    #[schema(value_type = Amount)]
    #[serde(deserialize_with = "integral")]
    pub amount: i64,
}

/// `POST /update-token-balance`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BalanceUpdated {
    pub success: bool,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_balance: Option<u64>,
    /// Tokens of the welcome grant, present only when this top-up opened the account (the
    /// grant is part of `new_balance`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub welcome_grant: Option<u64>,
}

/// `POST /v1/users/{user}/topups`'s body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopupBody {
    /// Tokens to add; negative deducts (never below zero).
    #[schema(value_type = Amount)]
    #[serde(deserialize_with = "integral")]
    pub amount: i64,
    /// Kept with the ledger entry (the admin key's name is added to it).
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub reason: Option<String>,
}

/// `PUT /v1/users/{user}/entitlement`'s body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntitlementBody {
    pub tier: Tier,
    /// When it ends (RFC 3339, in the future), if it does.
    #[schema(format = DateTime)]
    pub until: Option<String>,
}

/// `GET /v1/users/{user}/history`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Entries per page, 1 to 10,000 (the default).
    #[param(schema_with = schema::query_history_limit)]
    #[serde(default, deserialize_with = "empty_as_none")]
    limit: Option<u64>,
    /// A page's `next` (opaque), for the page before it.
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    #[serde(default, deserialize_with = "empty_as_none")]
    before: Option<String>,
}

/// `GET /v1/search`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The query (typos forgiven).
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    q: String,
    /// Results, 1 to 100 (10 by default).
    #[param(schema_with = schema::query_search_limit)]
    #[serde(default, deserialize_with = "empty_as_none")]
    limit: Option<u32>,
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(schema_with = schema::query_flag)]
    nsfw: Option<bool>,
}

/// A payment provider's top-up event.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct WebhookEvent {
    /// The event's id: its retries carry the same one, so it tops up once.
    #[schema(value_type = IdempotencyKey)]
    pub id: String,
    #[schema(value_type = UserId)]
    pub user_id: String,
    #[schema(value_type = Amount)]
    #[serde(deserialize_with = "integral")]
    pub amount: i64,
    /// Kept with the ledger entry (default: `webhook <id>`).
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub reason: Option<String>,
}

/// `GET /readyz`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An integer from JSON: a number with no fractional part (`5.0` is 5, as JSON Schema counts
/// integers), within `i64`.
fn integral<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    Integral::deserialize(deserializer).map(|Integral(n)| n)
}

/// An optional count (as [`integral`]), within `u32`.
fn integral_count<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u32>, D::Error> {
    Option::<Integral>::deserialize(deserializer)?
        .map(|Integral(n)| {
            u32::try_from(n).map_err(|_| {
                serde::de::Error::invalid_value(
                    serde::de::Unexpected::Signed(n),
                    &"a count from 1 to 10",
                )
            })
        })
        .transpose()
}

struct Integral(i64);

impl<'de> Deserialize<'de> for Integral {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Integral, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Integral;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Integral, E> {
                Ok(Integral(n))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Integral, E> {
                i64::try_from(n)
                    .map(Integral)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Integral, E> {
                // 2^63 is exact as a float; every integral float below it fits.
                if n.fract() == 0.0
                    && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&n)
                {
                    Ok(Integral(n as i64))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(n), &self))
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// An optional query parameter: an empty value (`lat=`) is the parameter left out, as web
/// forms send them and as the original service read them.
fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let text: Option<std::borrow::Cow<str>> = Option::deserialize(deserializer)?;
    match text.as_deref() {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

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

/// A path segment (a user id), decoded.
pub(super) fn path(segment: Result<Path<String>, PathRejection>) -> Result<String, Problem> {
    segment.map(|Path(segment)| segment).map_err(|e| {
        Problem::new(
            ErrorCode::BadRequest,
            format!("the path: {}", e.body_text()),
        )
    })
}

pub(super) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, Problem> {
    query.map(|Query(query)| query).map_err(|e| {
        Problem::new(
            ErrorCode::BadRequest,
            format!("the query string: {}", e.body_text()),
        )
    })
}

/// A JSON response with an op's reply: its data, marked as a replay if it is one.
fn data_response<T: Serialize>(reply: &T, replayed: bool) -> Response {
    let body = serde_json::to_vec(reply).expect("reply data serialises");
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

/// `GET /memes`: a meme for the bearer's user, charged (the original route).
#[utoipa::path(get, path = "/memes", tag = "original",
    params(OriginalQuery, ("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    responses((status = 200, description = "The meme, charged", body = OriginalMeme), Problems),
    security(("bearer" = [])))]
pub async fn original_memes(
    State(http): State<Http>,
    headers: Headers,
    params: Result<Query<OriginalQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    serve_original_memes(
        &http,
        headers.authorization(),
        headers.idempotency_key(),
        params,
    )
    .await
}

/// `GET /memes` served without the router (see [`super::measured`]): the same handler.
pub async fn original_memes_direct(
    http: &Http,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Response {
    serve_original_memes(
        http,
        headers.get(header::AUTHORIZATION),
        headers.get(IDEMPOTENCY_KEY),
        Query::try_from_uri(uri),
    )
    .await
    .into_response()
}

async fn serve_original_memes(
    http: &Http,
    authorization: Option<&HeaderValue>,
    key: Option<&HeaderValue>,
    params: Result<Query<OriginalQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let params = query(params)?;
    let caller = http.caller(authorization)?;
    let request = GetRequest {
        user: subject(&caller, params.user)?,
        lat: params.lat,
        long: params.long,
        query: params.query,
        idempotency_key: idempotency_key(key)?,
        ..GetRequest::default()
    };
    let get = http.service.get(&caller, request).await?;
    let replayed = get.is_replay();
    let mut response = (StatusCode::OK, original_meme(&get)?).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    Ok(no_store(response))
}

/// `GET /memes`'s body for a `get` reply: the meme's own fields, then `charged`,
/// `balance` and `location`. A fresh delivery is written straight from the catalogue's
/// serialised view of the meme (the route's hot path); a replay is reshaped from its data.
fn original_meme(get: &GetReply) -> Result<Vec<u8>, Problem> {
    use std::io::Write as _;
    let delivery = match get {
        GetReply::Replayed(replayed) => return original_body(replayed.data()),
        GetReply::Memes(delivery) if !delivery.listed => delivery,
        _ => return Err(Problem::new(ErrorCode::Internal, "a get delivered no meme")),
    };
    if let Some(view) = delivery
        .catalogue
        .view(delivery.picked[0])
        .get()
        .strip_suffix('}')
    {
        let mut body = Vec::with_capacity(view.len() + 256);
        body.extend_from_slice(view.as_bytes());
        write!(
            body,
            ",\"charged\":{},\"balance\":{}",
            delivery.charged, delivery.balance
        )
        .expect("writing to memory");
        if let Some(location) = &delivery.location {
            body.extend_from_slice(b",\"location\":");
            serde_json::to_writer(&mut body, location).expect("a location serialises");
        }
        body.push(b'}');
        return Ok(body);
    }
    Err(Problem::new(
        ErrorCode::Internal,
        "a meme's catalogue view is not a JSON object",
    ))
}

/// `GET /memes`'s body from a `get` reply's data.
fn original_body(data: &GetData<MemeView>) -> Result<Vec<u8>, Problem> {
    let meme = data
        .meme
        .as_ref()
        .ok_or_else(|| Problem::new(ErrorCode::Internal, "a get delivered no meme"))?;
    let body = OriginalMeme {
        id: meme.id.clone(),
        title: meme.title.clone(),
        image: meme.image.clone(),
        source: meme.source.clone(),
        charged: data.charged,
        balance: data.balance,
        location: data.location.clone(),
        replayed: data.replayed,
    };
    Ok(serde_json::to_vec(&body).expect("serialises"))
}

/// `POST /update-token-balance`: an admin's top-up or deduction (the original route).
#[utoipa::path(post, path = "/update-token-balance", tag = "original",
    params(("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    request_body = BalanceUpdate,
    responses((status = 200, description = "Updated", body = BalanceUpdated),
        (status = "4XX", description = "Refused", body = BalanceUpdated),
        (status = "5XX", description = "Failed", body = BalanceUpdated)),
    security(("bearer" = [])))]
pub async fn original_topup(State(http): State<Http>, headers: Headers, body: Body) -> Response {
    let refused = |problem: Problem| {
        let body = BalanceUpdated {
            success: false,
            message: problem.message(),
            user_id: None,
            new_balance: None,
            welcome_grant: None,
        };
        let mut response = json_response(problem.status(), &body);
        problem.add_headers(response.headers_mut());
        response.extensions_mut().insert(problem.code());
        response
    };
    let outcome = async {
        let caller = http.caller(headers.authorization())?;
        let update: BalanceUpdate = http.json_body(body).await?;
        let request = TopupRequest {
            user: update.user_id,
            amount: update.amount,
            idempotency_key: idempotency_key(headers.idempotency_key())?,
            reason: None,
        };
        Ok::<_, Problem>(match http.service.topup(&caller, request).await? {
            Stored::Fresh(data) => (data, false),
            Stored::Replayed(replayed) => (replayed.into_data(), true),
        })
    };
    match outcome.await {
        Ok((data, replayed)) => {
            let mut response = json_response(
                StatusCode::OK,
                &BalanceUpdated {
                    success: true,
                    message: "Token balance updated successfully".into(),
                    user_id: Some(data.user_id),
                    new_balance: Some(data.new_balance),
                    welcome_grant: data.welcome_grant,
                },
            );
            if replayed {
                response
                    .headers_mut()
                    .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
            }
            response
        }
        Err(problem) => refused(problem),
    }
}

/// `GET /v1/memes`.
#[utoipa::path(get, path = "/v1/memes", tag = "memes",
    params(MemesQuery, ("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    responses((status = 200, description = "Delivered and charged", body = GetData<MemeView>), Problems),
    security(("bearer" = [])))]
pub async fn get_memes(
    State(http): State<Http>,
    headers: Headers,
    params: Result<Query<MemesQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let params = query(params)?;
    let caller = http.caller(headers.authorization())?;
    let request = GetRequest {
        user: subject(&caller, params.user)?,
        lat: params.lat,
        long: params.long,
        query: params.query,
        count: params.count,
        nsfw: params.nsfw.unwrap_or(false),
        idempotency_key: idempotency_key(headers.idempotency_key())?,
        ..GetRequest::default()
    };
    let get = http.service.get(&caller, request).await?;
    Ok(no_store(data_response(&get, get.is_replay())))
}

/// `POST /v1/memes`.
#[utoipa::path(post, path = "/v1/memes", tag = "memes",
    params(("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    request_body = MemesBody,
    responses((status = 200, description = "Delivered and charged", body = GetData<MemeView>), Problems),
    security(("bearer" = [])))]
pub async fn post_memes(
    State(http): State<Http>,
    headers: Headers,
    body: Body,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let body: MemesBody = http.json_body(body).await?;
    let request = GetRequest {
        user: subject(&caller, body.user)?,
        lat: body.lat,
        long: body.long,
        query: body.query,
        count: body.count,
        nsfw: body.nsfw,
        generate: body.generate,
        inline: body.inline,
        token: None,
        idempotency_key: idempotency_key(headers.idempotency_key())?,
    };
    let get = http.service.get(&caller, request).await?;
    Ok(no_store(data_response(&get, get.is_replay())))
}

/// `GET /v1/search`.
#[utoipa::path(get, path = "/v1/search", tag = "memes", params(SearchQuery),
    responses((status = 200, description = "Ranked matches, free", body = SearchData<MemeView>), Problems))]
pub async fn search(
    State(http): State<Http>,
    headers: Headers,
    params: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let params = query(params)?;
    let caller = http.caller(headers.authorization())?;
    let request = SearchRequest {
        query: params.q,
        limit: params.limit,
        nsfw: params.nsfw.unwrap_or(false),
    };
    Ok(fresh_response(&http.service.search(&caller, request)?))
}

/// `GET /v1/users/{user}/balance`.
#[utoipa::path(get, path = "/v1/users/{user}/balance", tag = "users",
    params(("user" = UserId, Path, description = "The user id")),
    responses((status = 200, description = "Balance and tier", body = BalanceData), Problems),
    security(("bearer" = [])))]
pub async fn balance(
    State(http): State<Http>,
    headers: Headers,
    user: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let request = BalanceRequest {
        user: subject(&caller, Some(path(user)?))?,
    };
    Ok(fresh_response(
        &http.service.balance(&caller, request).await?,
    ))
}

/// `GET /v1/users/{user}/history`.
#[utoipa::path(get, path = "/v1/users/{user}/history", tag = "users",
    params(("user" = UserId, Path, description = "The user id"), HistoryQuery),
    responses((status = 200, description = "A page of ledger entries, oldest first", body = HistoryData), Problems),
    security(("bearer" = [])))]
pub async fn history(
    State(http): State<Http>,
    headers: Headers,
    user: Result<Path<String>, PathRejection>,
    params: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let params = query(params)?;
    let caller = http.caller(headers.authorization())?;
    let request = HistoryRequest {
        user: subject(&caller, Some(path(user)?))?,
        limit: params.limit,
        before: params.before,
    };
    Ok(fresh_response(
        &http.service.history(&caller, request).await?,
    ))
}

/// `POST /v1/users/{user}/topups` (admin keys).
#[utoipa::path(post, path = "/v1/users/{user}/topups", tag = "admin",
    params(("user" = UserId, Path, description = "The user id"),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    request_body = TopupBody,
    responses((status = 200, description = "Topped up or deducted", body = TopupData), Problems),
    security(("bearer" = [])))]
pub async fn topup(
    State(http): State<Http>,
    headers: Headers,
    user: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, Problem> {
    let user = path(user)?;
    let caller = http.caller(headers.authorization())?;
    let body: TopupBody = http.json_body(body).await?;
    let request = TopupRequest {
        user,
        amount: body.amount,
        idempotency_key: idempotency_key(headers.idempotency_key())?,
        reason: body.reason,
    };
    let topped = http.service.topup(&caller, request).await?;
    Ok(data_response(&topped, topped.is_replay()))
}

/// `PUT /v1/users/{user}/entitlement` (admin keys).
#[utoipa::path(put, path = "/v1/users/{user}/entitlement", tag = "admin",
    params(("user" = UserId, Path, description = "The user id")),
    request_body = EntitlementBody,
    responses((status = 200, description = "The tier set", body = EntitleData), Problems),
    security(("bearer" = [])))]
pub async fn entitle(
    State(http): State<Http>,
    headers: Headers,
    user: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, Problem> {
    let user = path(user)?;
    let caller = http.caller(headers.authorization())?;
    let body: EntitlementBody = http.json_body(body).await?;
    let request = EntitleRequest {
        user,
        tier: body.tier,
        until: body.until,
    };
    Ok(fresh_response(
        &http.service.entitle(&caller, request).await?,
    ))
}

/// `POST /v1/audit` (admin keys).
#[utoipa::path(post, path = "/v1/audit", tag = "admin",
    responses((status = 200, description = "The ledger checked", body = AuditReport), Problems),
    security(("bearer" = [])))]
pub async fn audit(State(http): State<Http>, headers: Headers) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    Ok(fresh_response(
        &http.service.audit(&caller, AuditRequest {}).await?,
    ))
}

/// `POST /v1/reload` (admin keys).
#[utoipa::path(post, path = "/v1/reload", tag = "admin",
    responses((status = 200, description = "The catalogue reloaded", body = ReloadData), Problems),
    security(("bearer" = [])))]
pub async fn reload(State(http): State<Http>, headers: Headers) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    Ok(fresh_response(
        &http.service.reload(&caller, ReloadRequest {}).await?,
    ))
}

/// `GET /v1/status`.
#[utoipa::path(get, path = "/v1/status", tag = "service",
    responses((status = 200, description = "Version, uptime, counts", body = StatusData), Problems))]
pub async fn status(State(http): State<Http>, headers: Headers) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    Ok(fresh_response(
        &http.service.status(&caller, StatusRequest {}).await?,
    ))
}

/// `POST /v1/webhooks/topup`: a payment provider's signed top-up; its event id is the
/// idempotency key, so its retries top up once.
#[utoipa::path(post, path = "/v1/webhooks/topup", tag = "admin",
    params(("Memes-Signature" = String, Header, description = "t=<unix seconds>,v1=<hex HMAC-SHA256 of \"t.body\">")),
    request_body = WebhookEvent,
    responses((status = 200, description = "Topped up (once per event id)", body = TopupData), Problems))]
pub async fn webhook(
    State(http): State<Http>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Problem> {
    let Some(secret) = &http.webhook else {
        return Err(Problem::new(
            ErrorCode::NotFound,
            "payment webhooks are off (memesd was started without --webhook-secret)",
        ));
    };
    let bytes = http.read_body(body).await?;
    let signature = headers.get(SIGNATURE).and_then(|v| v.to_str().ok());
    secret.verify(signature, &bytes, auth::now_secs())?;
    let event: WebhookEvent = parse_json(&bytes)?;
    let request = TopupRequest {
        user: event.user_id,
        amount: event.amount,
        reason: Some(
            event
                .reason
                .unwrap_or_else(|| format!("webhook {}", event.id)),
        ),
        idempotency_key: Some(event.id),
    };
    let topped = http
        .service
        .topup(&Caller::Remote(Principal::Webhook), request)
        .await?;
    Ok(data_response(&topped, topped.is_replay()))
}

/// `GET /v1/images/{sha256}.png`: a generated image, named by its content, so it never
/// changes: cached for a year, revalidated by its ETag.
#[utoipa::path(get, path = "/v1/images/{sha256}.png", tag = "memes",
    params(("sha256" = String, Path, description = "The image's SHA-256, 64 lower-case hexadecimal digits"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag you have")),
    responses((status = 200, description = "The PNG", content_type = "image/png", body = Vec<u8>),
        (status = 304, description = "Not modified"), Problems))]
pub async fn image(
    State(http): State<Http>,
    headers: HeaderMap,
    file: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let file = path(file)?;
    let not_found = || Problem::new(ErrorCode::NotFound, format!("no image {file:?}"));
    let sha256 = file
        .strip_suffix(".png")
        .filter(|sha| {
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        .ok_or_else(not_found)?;
    let etag = format!("\"{sha256}\"");
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            // If-None-Match compares weakly: W/"x" matches "x".
            tags.split(',').any(|tag| {
                let tag = tag.trim();
                tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag
            })
        });
    let path = http.service.image_path(sha256);
    let immutable = HeaderValue::from_static("public, max-age=31536000, immutable");
    if cached && tokio::fs::try_exists(&path).await.unwrap_or(false) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
        headers.insert(header::CACHE_CONTROL, immutable);
        return Ok(response);
    }
    let png = match tokio::fs::read(&path).await {
        Ok(png) => png,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(error) => {
            return Err(Problem::Service(ServiceError::internal(format!(
                "reading the image: {error}"
            ))));
        }
    };
    let mut response = (StatusCode::OK, png).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex"));
    headers.insert(header::CACHE_CONTROL, immutable);
    Ok(response)
}

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service",
    responses((status = 200, description = "The process answers", body = Object)))]
pub async fn healthz() -> Response {
    json_response(StatusCode::OK, &serde_json::json!({"alive": true}))
}

/// `GET /readyz`: the store accepts changes and a catalogue is loaded.
#[utoipa::path(get, path = "/readyz", tag = "service",
    responses((status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready", body = Readiness)))]
pub async fn readyz(State(http): State<Http>) -> Response {
    match http.service.readiness().await {
        Ok(()) => json_response(
            StatusCode::OK,
            &Readiness {
                ready: true,
                reason: None,
            },
        ),
        Err(reason) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &Readiness {
                ready: false,
                reason: Some(reason),
            },
        ),
    }
}

/// `GET /metrics`: the Prometheus exposition of memesd's own metrics.
pub async fn metrics(State(http): State<Http>) -> Result<Response, Problem> {
    let Some(exporter) = &http.metrics else {
        return Err(Problem::new(ErrorCode::NotFound, "metrics are off"));
    };
    http.service.refresh_gauges().await;
    let mut response = exporter.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(response)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;
    use crate::service::Delivery;
    use std::sync::Arc;

    /// The hot path writes `GET /memes`'s body from the catalogue's view of the meme; it
    /// must be byte for byte what the reshaped reply is.
    #[test]
    fn the_original_body_is_the_meme_then_charge_balance_and_location() {
        let catalogue = Arc::new(Catalogue::embedded().unwrap());
        let location = Location {
            country_code: "US".into(),
            country: "United States".into(),
            city: "Great \"River\"".into(),
            region: "New York".into(),
            region_code: Some("US-NY".into()),
            distance_km: 81.3,
            at_sea: true,
            landmass: Some("Long Island".into()),
        };
        for (index, location) in [(0, None), (7, Some(location))] {
            let delivery = Delivery {
                catalogue: catalogue.clone(),
                picked: vec![index],
                listed: false,
                user_id: "u1".into(),
                charged: 1,
                balance: 149,
                location,
            };
            let fast = original_meme(&GetReply::Memes(delivery.clone())).unwrap();
            let stored = serde_json::to_string(&GetReply::Memes(delivery.clone())).unwrap();
            let reshaped = original_body(&serde_json::from_str(&stored).unwrap()).unwrap();
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(reshaped).unwrap()
            );
        }
    }
}
