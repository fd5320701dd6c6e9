//! The HTTP front: the original web routes and the versioned API, over HTTP/1.1 (TLS is a
//! reverse proxy's or load balancer's job).
//!
//! Handlers are thin ([`routes`]): parse, identify the caller ([`auth`]), call the service,
//! map the result ([`problem`] for errors). Everything a client can make the daemon hold is
//! bounded: request heads (16 KiB, and 10 s to send one: slow clients are cut off, and an
//! idle keep-alive connection is closed after as long), bodies (64 KiB, within 30 s),
//! connections at once (beyond the cap a connection gets a `503` and is closed). Once a
//! request has arrived whole, it runs to its end: no deadline cuts a charge off halfway.
//! On shutdown the listener closes, requests in flight finish, idle keep-alive connections
//! are closed, and [`serve`] returns.
//!
//! Why a loop of our own on hyper ([`serve`]) rather than `axum::serve`: axum 0.8's server
//! makes hyper's connection builder inside each connection's task, with its defaults and no
//! way to change them. It gives hyper no timer, so a head has no deadline at all (hyper's
//! 30 s default needs one); a head may grow to hyper's buffer default (about 408 KiB, not
//! 16 KiB); it has no cap on connections, and on shutdown it waits for every connection
//! without a grace period. Each is one of the limits above (`tests/it/http/hostile.rs`
//! checks the first three).
//!
//! Why the request id, span, access line and metrics by hand ([`measured`]) and `GET /memes`
//! outside the router, rather than tower-http's layers on the router: measured against them
//! in alternating rounds (BENCHMARKS.md, "HTTP serve loop"), the layered router cost 1.25 to
//! 1.43 times the CPU per request in the closed loop in ten rounds of eleven, where the noise
//! between two unchanged servers was about ±10%. (Nor would tower-http's body timeout do:
//! its deadline starts again at every chunk, so a body trickled a byte at a time would hold
//! a connection for days; the handlers' read ([`routes`]) gives the whole body one deadline.)

pub mod auth;
pub mod console;
pub mod openapi;
pub mod problem;
pub mod request_id;
pub mod routes;
pub mod schema;
pub mod similar;
#[cfg(test)]
mod tests;
mod unread;
pub mod whoami;

use crate::domain::ErrorCode;
use crate::protocol;
use crate::service::Service;
use crate::telemetry::{self, Exporter, Front, Op};
use auth::{Credentials, WebhookSecret};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::Instrument;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Settings of the HTTP front.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Open connections at once; beyond it a new connection gets `503` and is closed.
    pub max_connections: usize,
    /// Time a client has to send a request's head; also how long an idle keep-alive
    /// connection is kept.
    pub header_timeout: Duration,
    /// Time a client has to send a request's body once its head arrived; a slower one is
    /// answered `408` and the connection closed.
    pub body_timeout: Duration,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct Http(Arc<HttpState>);

pub struct HttpState {
    pub service: Arc<Service>,
    pub credentials: Credentials,
    pub webhook: Option<WebhookSecret>,
    pub limits: HttpLimits,
    /// Renders `GET /metrics`, when metrics are on.
    pub metrics: Option<Exporter>,
    /// Serve the web console at `/` ([`console`]).
    pub console: bool,
}

impl Deref for Http {
    type Target = HttpState;
    fn deref(&self) -> &HttpState {
        &self.0
    }
}

impl Http {
    pub fn new(state: HttpState) -> Http {
        Http(Arc::new(state))
    }
}

/// The original routes (of the first write-up), served beside the API's.
const ORIGINAL_MEMES: &str = "/memes";
const ORIGINAL_TOPUP: &str = "/update-token-balance";
/// The routes of the API that are no protocol op's but are metered as one of their own.
const WEBHOOK: &str = "/v1/webhooks/topup";
const IMAGE: &str = "/v1/images/{file}";

/// The paths metered as an op besides each op's own route ([`protocol::Op::route`]).
const METERED: [(&str, Op); 4] = [
    (ORIGINAL_MEMES, Op::Get),
    (ORIGINAL_TOPUP, Op::Topup),
    (WEBHOOK, Op::Webhook),
    (IMAGE, Op::Image),
];

/// Every route. Each op's route is the one the protocol names ([`protocol::Op::route`]).
pub fn router(http: Http) -> Router {
    let mut router = Router::new()
        // HEAD would run a charging GET and deliver nothing: refused (see routes::not_for_head).
        .route(
            ORIGINAL_MEMES,
            get(routes::original::original_memes).head(routes::not_for_head),
        )
        .route(ORIGINAL_TOPUP, post(routes::original::original_topup));
    for &op in protocol::Op::ALL {
        router = router.route(op.route().path, routes::v1::handler(op));
    }
    router
        .route(IMAGE, get(routes::images::image))
        .route(WEBHOOK, post(routes::v1::webhook))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/openapi.json", get(openapi::document))
        .route("/metrics", get(routes::health::metrics))
        .route("/v1/whoami", get(whoami::whoami))
        .merge(console::routes(&http))
        .fallback(routes::no_route)
        .method_not_allowed_fallback(routes::wrong_method)
        .with_state(http)
}

/// What a listener serves: a router, and the state its hottest route is served from
/// directly.
#[derive(Clone)]
pub struct Routes {
    router: Router,
    hot: Option<Http>,
}

impl Routes {
    /// The whole API. `GET /memes`, the route a benchmark hammers, skips the router.
    pub fn api(http: Http) -> Routes {
        Routes {
            router: router(http.clone()),
            hot: Some(http),
        }
    }

    /// Only `GET /metrics`.
    pub fn metrics(http: Http) -> Routes {
        Routes {
            router: metrics_router(http),
            hot: None,
        }
    }
}

/// Only `GET /metrics`, for `--metrics ADDR` beside a daemon that serves no HTTP API.
pub fn metrics_router(http: Http) -> Router {
    Router::new()
        .route("/metrics", get(routes::health::metrics))
        .fallback(routes::no_route)
        .with_state(http)
}

/// Serves one request, counted and timed by operation and outcome code, under its request
/// id ([`request_id`]). Done here rather than in tower-http's layers, and `GET /memes` served
/// without the router, because that measured cheaper by more than the noise (see the module
/// doc); everything else goes through the router.
async fn measured<B>(
    routes: Routes,
    request: axum::http::Request<B>,
) -> Result<axum::response::Response, std::convert::Infallible>
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + Unpin + 'static,
    B::Error: Into<axum::BoxError>,
{
    let started = Instant::now();
    // A body the handler leaves unread ends the connection, and the answer says so.
    let (request, ended) = {
        let (parts, body) = request.into_parts();
        match unread::watch(body) {
            Ok((body, ended)) => (
                axum::http::Request::from_parts(parts, axum::body::Body::new(body)),
                Some(ended),
            ),
            Err(body) => (
                axum::http::Request::from_parts(parts, axum::body::Body::new(body)),
                None,
            ),
        }
    };
    let id = request_id::take(request.headers());
    let span = request_id::span(&id, request.method(), request.uri().path());
    let op = op_of(request.uri().path());
    let charging_allow = routes::charging_allow(request.uri().path());
    let mut response = async {
        let path = request.uri().path();
        let response = match routes.hot {
            Some(http) if path == ORIGINAL_MEMES && request.method() == axum::http::Method::GET => {
                routes::original::original_memes_direct(&http, request.uri(), request.headers())
                    .await
            }
            _ => routes.router.oneshot(request).await?,
        };
        // The access line (debug level; failures are logged once, by the service).
        tracing::debug!(
            status = response.status().as_u16(),
            latency_us = started.elapsed().as_micros() as u64,
            "response"
        );
        Ok::<_, std::convert::Infallible>(response)
    }
    .instrument(span)
    .await?;
    response.headers_mut().insert(request_id::HEADER, id);
    if ended.is_some_and(|ended| !ended.get()) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = charging_allow
    {
        // The router lists HEAD beside every GET; on these routes it is refused.
        response
            .headers_mut()
            .insert(axum::http::header::ALLOW, allow);
    }
    let code = match response.extensions().get::<ErrorCode>() {
        Some(code) => Some(*code),
        None => ErrorCode::of_bare_status(response.status().as_u16()),
    };
    telemetry::request(Front::Http, op, code, started.elapsed());
    Ok(response)
}

/// The operation a request path names (as the router will match it), for the metrics.
fn op_of(path: &str) -> Op {
    // The original `GET /memes`, the hottest route, is the first one tried.
    if let Some((_, op)) = METERED
        .iter()
        .find(|(template, _)| protocol::route::template_matches(template, path))
    {
        return *op;
    }
    protocol::Op::ALL
        .iter()
        .find(|op| op.route().matches(path))
        .map_or(Op::Other, |&op| Op::from(op))
}

/// Serves `listener` until `shutdown` resolves, then lets requests in flight finish.
pub async fn serve(
    routes: Routes,
    listener: TcpListener,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut connection = hyper::server::conn::http1::Builder::new();
    connection
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!("accepting an HTTP connection failed: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            telemetry::connection_refused(Front::Http);
            tokio::spawn(refuse_busy(stream, limits.max_connections));
            continue;
        };
        let open = telemetry::connection_opened(Front::Http);
        let routes = routes.clone();
        let service = hyper::service::service_fn(move |request| measured(routes.clone(), request));
        let served = graceful.watch(connection.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = served.await {
                tracing::debug!("HTTP connection ended: {error}");
            }
            drop((slot, open));
        });
    }
    drop(listener);
    tracing::info!("HTTP: no new connections; finishing requests in flight");
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "some HTTP connections were still busy after {:?}; closing them",
            limits.shutdown_grace
        );
    }
}

/// Tells a client over the connection cap to come back later, and hangs up.
async fn refuse_busy(mut stream: tokio::net::TcpStream, max_connections: usize) {
    let problem = problem::ProblemDetails {
        kind: "about:blank",
        title: "Service Unavailable".into(),
        status: ErrorCode::Busy.http_status(),
        detail: format!("memesd is at its limit of {max_connections} connections; try again later"),
        code: ErrorCode::Busy,
        retry_after: Some(1),
    };
    let body = serde_json::to_string(&problem).expect("problem serialises");
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: {}\r\nretry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        problem::PROBLEM_JSON,
        body.len()
    );
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        stream.write_all(response.as_bytes()),
    )
    .await;
}
