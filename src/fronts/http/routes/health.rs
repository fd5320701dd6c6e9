//! The routes an operator's tooling reads: `GET /healthz` (the process answers), `GET /readyz`
//! (the store accepts changes and a catalogue is loaded) and `GET /metrics` (the Prometheus
//! exposition, when metrics are on). None of them charges or needs a credential.

use super::super::Http;
use super::super::problem::Problem;
use super::json_response;
use super::types::Readiness;
use crate::domain::ErrorCode;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

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
