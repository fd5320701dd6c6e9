//! The versioned API: a route per protocol op (its path and method are the protocol's,
//! [`crate::protocol::Op::route`]) and the payment webhook. Each answers the op's `data`
//! object as the socket does; a charge is never cached and a replay says so
//! (`Idempotent-Replayed`).
//!
//! Everything the front knows about an op is here: its handler with its OpenAPI annotation,
//! which handler serves its route ([`handler`], which the router calls for every op) and
//! the list of handlers the document describes ([`Paths`], which `openapi.rs` merges).

use super::super::Http;
use super::super::auth;
use super::super::problem::{Problem, Problems};
use super::super::schema::{IdempotencyKey, UserId};
use super::super::similar;
use super::types::{
    BalanceQuery, CaptureBody, EntitlementBody, HistoryQuery, HoldBody, MemesBody, MemesQuery,
    RefundBody, SearchQuery, TopupBody, VoidBody, WebhookEvent,
};
use super::{
    Headers, Parsed, data_response, fresh_response, idempotency_key, no_store, parse_json, subject,
};
#[allow(unused_imports, reason = "named in the OpenAPI annotations")]
use crate::domain::AuditReport;
use crate::domain::ErrorCode;
use crate::protocol::{
    AuditRequest, BalanceRequest, CaptureRequest, EntitleRequest, GetData, GetRequest,
    HistoryRequest, HoldData, HoldRequest, MemeView, Op, RefundData, RefundRequest, ReloadRequest,
    SearchRequest, StatusRequest, TopupData, TopupRequest, VoidRequest,
};
#[allow(unused_imports, reason = "named in the OpenAPI annotations")]
use crate::protocol::{
    BalanceData, EntitleData, HistoryData, LotsData, LotsRequest, ReloadData, SearchData,
    StatusData,
};
use crate::service::{Caller, Principal};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName};
use axum::response::Response;
use axum::routing::{MethodFilter, MethodRouter, on};
use utoipa::OpenApi;

/// A payment webhook's signature.
const SIGNATURE: HeaderName = HeaderName::from_static("memes-signature");

/// The handler of an op's route, on the method the protocol names, and the other methods
/// that route serves. The router serves it at the op's route; the match is exhaustive, so a
/// new op does not compile until it has its handler here.
pub fn handler(op: Op) -> MethodRouter<Http> {
    let method =
        MethodFilter::try_from(op.route().method).expect("an op's method is a standard one");
    match op {
        // HEAD would run a charging GET and deliver nothing: refused (see routes::not_for_head).
        Op::Get => on(method, post_memes)
            .get(get_memes)
            .head(super::not_for_head),
        Op::Topup => on(method, topup),
        Op::Balance => on(method, balance),
        Op::History => on(method, history),
        Op::Lots => on(method, lots),
        Op::Hold => on(method, hold),
        Op::Capture => on(method, capture),
        Op::Void => on(method, void),
        Op::Refund => on(method, refund),
        Op::Status => on(method, status),
        Op::Search => on(method, search),
        Op::Similar => on(method, similar::similar),
        Op::Entitle => on(method, entitle),
        Op::Audit => on(method, audit),
        Op::Reload => on(method, reload),
    }
}

/// The OpenAPI paths of this module's routes (every op's and the webhook's), which the
/// document ([`super::super::openapi`]) merges. A test there checks that every op is
/// documented at its route.
#[derive(OpenApi)]
#[openapi(paths(
    get_memes,
    post_memes,
    search,
    similar::similar,
    balance,
    lots,
    history,
    topup,
    hold,
    capture,
    void,
    refund,
    entitle,
    audit,
    reload,
    status,
    webhook,
))]
pub struct Paths;

/// `GET /v1/memes`.
#[utoipa::path(get, path = "/v1/memes", tag = "memes",
    params(MemesQuery, ("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    responses((status = 200, description = "Delivered and charged", body = GetData<MemeView>), Problems),
    security(("bearer" = [])))]
pub async fn get_memes(
    State(http): State<Http>,
    headers: Headers,
    Parsed(Query(params)): Parsed<Query<MemesQuery>>,
) -> Result<Response, Problem> {
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
    Parsed(Query(params)): Parsed<Query<SearchQuery>>,
) -> Result<Response, Problem> {
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
    params(("user" = UserId, Path, description = "The user id"), BalanceQuery),
    responses((status = 200, description = "Balance and tier, now or at `at`", body = BalanceData), Problems),
    security(("bearer" = [])))]
pub async fn balance(
    State(http): State<Http>,
    headers: Headers,
    Parsed(Path(user)): Parsed<Path<String>>,
    Parsed(Query(params)): Parsed<Query<BalanceQuery>>,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let request = BalanceRequest {
        user: subject(&caller, Some(user))?,
        at: params.at,
    };
    Ok(fresh_response(
        &http.service.balance(&caller, request).await?,
    ))
}

/// `GET /v1/users/{user}/lots`.
#[utoipa::path(get, path = "/v1/users/{user}/lots", tag = "users",
    params(("user" = UserId, Path, description = "The user id")),
    responses((status = 200, description = "The spendable lots, in the order they are spent, and the holds open now", body = LotsData), Problems),
    security(("bearer" = [])))]
pub async fn lots(
    State(http): State<Http>,
    headers: Headers,
    Parsed(Path(user)): Parsed<Path<String>>,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let request = LotsRequest {
        user: subject(&caller, Some(user))?,
    };
    Ok(fresh_response(&http.service.lots(&caller, request).await?))
}

/// `GET /v1/users/{user}/history`.
#[utoipa::path(get, path = "/v1/users/{user}/history", tag = "users",
    params(("user" = UserId, Path, description = "The user id"), HistoryQuery),
    responses((status = 200, description = "A page of ledger entries, oldest first", body = HistoryData), Problems),
    security(("bearer" = [])))]
pub async fn history(
    State(http): State<Http>,
    headers: Headers,
    Parsed(Path(user)): Parsed<Path<String>>,
    Parsed(Query(params)): Parsed<Query<HistoryQuery>>,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let request = HistoryRequest {
        user: subject(&caller, Some(user))?,
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
    Parsed(Path(user)): Parsed<Path<String>>,
    body: Body,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let body: TopupBody = http.json_body(body).await?;
    let request = TopupRequest {
        user,
        amount: body.amount,
        idempotency_key: idempotency_key(headers.idempotency_key())?,
        reason: body.reason,
        expires_at: body.expires_at,
        expires_in: body.expires_in,
        priority: body.priority,
        promo: body.promo,
    };
    let topped = http.service.topup(&caller, request).await?;
    Ok(data_response(&topped, topped.is_replay()))
}

/// `POST /v1/users/{user}/holds` (admin keys).
#[utoipa::path(post, path = "/v1/users/{user}/holds", tag = "admin",
    params(("user" = UserId, Path, description = "The user id"),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    request_body = HoldBody,
    responses((status = 200, description = "Tokens set aside; the balance dropped", body = HoldData), Problems),
    security(("bearer" = [])))]
pub async fn hold(
    State(http): State<Http>,
    headers: Headers,
    Parsed(Path(user)): Parsed<Path<String>>,
    body: Body,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let body: HoldBody = http.json_body(body).await?;
    let request = HoldRequest {
        user,
        amount: hold_amount(body.amount)?,
        ttl: body.ttl,
        idempotency_key: idempotency_key(headers.idempotency_key())?,
    };
    let held = http.service.hold(&caller, request).await?;
    Ok(data_response(&held, held.is_replay()))
}

/// `POST /v1/holds/{hold}/capture` (admin keys).
#[utoipa::path(post, path = "/v1/holds/{hold}/capture", tag = "admin",
    params(("hold" = u64, Path, description = "The hold's id"),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    request_body(content = Option<CaptureBody>),
    responses((status = 200, description = "Captured; the rest went back", body = HoldData), Problems),
    security(("bearer" = [])))]
pub async fn capture(
    State(http): State<Http>,
    headers: Headers,
    Parsed(Path(hold)): Parsed<Path<u64>>,
    body: Body,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let body: CaptureBody = http.optional_json_body(body).await?;
    let request = CaptureRequest {
        hold,
        amount: body.amount.map(hold_amount).transpose()?,
        user: body.user,
        idempotency_key: idempotency_key(headers.idempotency_key())?,
    };
    let captured = http.service.capture(&caller, request).await?;
    Ok(data_response(&captured, captured.is_replay()))
}

/// `POST /v1/holds/{hold}/void` (admin keys).
#[utoipa::path(post, path = "/v1/holds/{hold}/void", tag = "admin",
    params(("hold" = u64, Path, description = "The hold's id"),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    request_body(content = Option<VoidBody>),
    responses((status = 200, description = "Voided; everything went back", body = HoldData), Problems),
    security(("bearer" = [])))]
pub async fn void(
    State(http): State<Http>,
    headers: Headers,
    Parsed(Path(hold)): Parsed<Path<u64>>,
    body: Body,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let body: VoidBody = http.optional_json_body(body).await?;
    let request = VoidRequest {
        hold,
        user: body.user,
        idempotency_key: idempotency_key(headers.idempotency_key())?,
    };
    let voided = http.service.void(&caller, request).await?;
    Ok(data_response(&voided, voided.is_replay()))
}

/// `POST /v1/entries/{entry}/refund` (admin keys).
#[utoipa::path(post, path = "/v1/entries/{entry}/refund", tag = "admin",
    params(("entry" = u64, Path, description = "The charge's (or capture's) entry: its seq in the history"),
        ("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    request_body(content = Option<RefundBody>),
    responses((status = 200, description = "Refunded: back to the lots the charge took from", body = RefundData), Problems),
    security(("bearer" = [])))]
pub async fn refund(
    State(http): State<Http>,
    headers: Headers,
    Parsed(Path(entry)): Parsed<Path<u64>>,
    body: Body,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let body: RefundBody = http.optional_json_body(body).await?;
    let request = RefundRequest {
        entry,
        amount: body.amount.map(hold_amount).transpose()?,
        user: body.user,
        idempotency_key: idempotency_key(headers.idempotency_key())?,
    };
    let refunded = http.service.refund(&caller, request).await?;
    Ok(data_response(&refunded, refunded.is_replay()))
}

/// A hold's (or a refund's) amount as a body gave it: a positive number of tokens.
fn hold_amount(amount: i64) -> Result<u64, Problem> {
    u64::try_from(amount).map_err(|_| {
        Problem::new(
            ErrorCode::InvalidArgument,
            format!("amount must be a positive number of tokens, got {amount}"),
        )
    })
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
    Parsed(Path(user)): Parsed<Path<String>>,
    body: Body,
) -> Result<Response, Problem> {
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
        ..TopupRequest::default()
    };
    let topped = http
        .service
        .topup(&Caller::Remote(Principal::Webhook), request)
        .await?;
    Ok(data_response(&topped, topped.is_replay()))
}
