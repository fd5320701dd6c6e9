//! Errors over HTTP: RFC 9457 problem details (`application/problem+json`) carrying the
//! protocol's `code`, with the status from the one table ([`ErrorCode::http_status`]). A 401 says how to
//! authenticate (`WWW-Authenticate: Bearer`); a 429 or 503 says when to come back
//! (`Retry-After`).

use crate::domain::ErrorCode;
use crate::service::ServiceError;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// How long a client is told to wait when the service names no time.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// The HTTP status of each outcome code (the table is [`ErrorCode::http_status`]).
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).expect("every code's status is a valid one")
}

/// A problem details document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProblemDetails {
    /// A URI naming the kind of problem (`about:blank`: the status says it).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's reason phrase.
    pub title: String,
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// The protocol's error code, for programs.
    #[schema(value_type = String, example = "insufficient_tokens")]
    pub code: ErrorCode,
    /// Seconds to wait before trying again, when known (also in `Retry-After`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// What every route of the API may answer besides its success, for the OpenAPI document
/// (`responses(..., Problems)` on a route).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // never built: it only describes responses
pub enum Problems {
    /// Refused; nothing changed
    #[response(status = "4XX", content_type = "application/problem+json")]
    Refused(ProblemDetails),
    /// Failed or unavailable; nothing changed
    #[response(status = "5XX", content_type = "application/problem+json")]
    Failed(ProblemDetails),
}

/// A refused or failed request, as an HTTP response.
#[derive(Debug)]
pub enum Problem {
    /// Refused or failed, by the service or the front: the status is its code's.
    Service(ServiceError),
    /// The request body did not arrive within this time: `408`, and the connection is
    /// closed (the client is either gone or too slow to keep a connection for).
    Timeout(Duration),
    /// The route exists, but not with this method: `405`.
    WrongMethod(Method),
}

impl From<ServiceError> for Problem {
    fn from(error: ServiceError) -> Problem {
        Problem::Service(error)
    }
}

/// A query string axum could not read as the route's parameters.
impl From<QueryRejection> for Problem {
    fn from(rejection: QueryRejection) -> Problem {
        let why = rejection.body_text();
        Problem::new(ErrorCode::BadRequest, format!("the query string: {why}"))
    }
}

/// A path segment axum could not decode.
impl From<PathRejection> for Problem {
    fn from(rejection: PathRejection) -> Problem {
        let why = rejection.body_text();
        Problem::new(ErrorCode::BadRequest, format!("the path: {why}"))
    }
}

impl Problem {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Problem {
        Problem::Service(ServiceError::new(code, message))
    }

    /// The protocol's code for it (a slow body or a wrong method is the client's:
    /// `bad_request`).
    pub fn code(&self) -> ErrorCode {
        match self {
            Problem::Service(error) => error.code,
            Problem::Timeout(_) | Problem::WrongMethod(_) => ErrorCode::BadRequest,
        }
    }

    /// What went wrong, for people.
    pub fn message(&self) -> String {
        match self {
            Problem::Service(error) => error.message.clone(),
            Problem::Timeout(limit) => format!(
                "the request body did not arrive within {} s",
                limit.as_secs_f64()
            ),
            // Every GET route takes HEAD but the two that charge (routes::not_for_head).
            Problem::WrongMethod(method) if *method == Method::HEAD => {
                "HEAD is not served on a route that charges: it would deliver no meme. Use GET (charged), or /healthz to check that memesd answers".to_string()
            }
            Problem::WrongMethod(method) => {
                format!("this route does not take {method}; see /openapi.json")
            }
        }
    }

    /// The status this problem is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Problem::Service(error) => status_of(error.code),
            Problem::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Problem::WrongMethod(_) => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// When to try again, for the statuses that say it.
    fn retry_after(&self) -> Option<u64> {
        let Problem::Service(error) = self else {
            return None;
        };
        let status = status_of(error.code);
        let waits =
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
        waits.then(|| {
            let after = error.retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
            after.as_secs() + u64::from(after.subsec_nanos() > 0)
        })
    }

    /// The headers every answer to this problem carries, whatever its body: how to
    /// authenticate after a 401, when to come back after a 429 or 503, that the
    /// connection ends after a 408.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        match self.status() {
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="memes""#),
                );
            }
            StatusCode::REQUEST_TIMEOUT => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        if let Some(seconds) = self.retry_after() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut headers = HeaderMap::new();
        self.add_headers(&mut headers);
        let body = ProblemDetails {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: self.message(),
            code: self.code(),
            retry_after: self.retry_after(),
        };
        let code = self.code();
        let mut response = problem_response(status, headers, &body);
        // For the request metrics: the outcome's code, not only its status.
        response.extensions_mut().insert(code);
        response
    }
}

fn problem_response(status: StatusCode, headers: HeaderMap, body: &ProblemDetails) -> Response {
    let json = serde_json::to_vec(body).expect("problem serialises");
    let mut response = (status, headers, json).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_status() {
        let table = [
            (ErrorCode::BadRequest, 400),
            (ErrorCode::InvalidArgument, 400),
            (ErrorCode::Unauthorized, 401),
            (ErrorCode::InsufficientTokens, 402),
            (ErrorCode::NotAllowed, 403),
            (ErrorCode::NotFound, 404),
            (ErrorCode::IdempotencyConflict, 409),
            (ErrorCode::PayloadTooLarge, 413),
            (ErrorCode::RateLimited, 429),
            (ErrorCode::Internal, 500),
            (ErrorCode::Busy, 503),
            (ErrorCode::Unavailable, 503),
        ];
        for (code, status) in table {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
        }
    }

    #[test]
    fn waits_are_rounded_up_to_whole_seconds() {
        let limited = Problem::Service(
            ServiceError::new(ErrorCode::RateLimited, "slow down")
                .retry_after(Duration::from_millis(1200)),
        );
        assert_eq!(limited.retry_after(), Some(2));
        assert_eq!(
            Problem::new(ErrorCode::Unavailable, "disk").retry_after(),
            Some(1)
        );
        assert_eq!(Problem::new(ErrorCode::NotFound, "no").retry_after(), None);
    }
}
