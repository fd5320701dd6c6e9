//! `GET /v1/whoami`: who the request's bearer credential makes the caller, without asking the
//! service for anything. It is the cheap probe a client (the web console) uses to tell a
//! user's credential from an admin key before choosing what to offer; it reads no account
//! and charges nothing, so it is not rate limited.

use super::Http;
use super::problem::{Problem, ProblemDetails};
use crate::service::Principal;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// `GET /v1/whoami`'s answer, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WhoAmI {
    /// A user: a verified token's subject, or (development mode) the user id given as the
    /// bearer.
    User {
        user: String,
        /// True when the credential itself makes requests premium (a token whose claims say
        /// so). An entitlement held by the account shows in its balance's `tier` instead.
        premium: bool,
    },
    /// An admin key, by the name the keys file gives it.
    Admin { name: String },
    /// No bearer credential.
    Anonymous,
}

impl From<Principal> for WhoAmI {
    fn from(principal: Principal) -> WhoAmI {
        match principal {
            Principal::User { id, premium } => WhoAmI::User { user: id, premium },
            Principal::Admin { name } => WhoAmI::Admin { name },
            // A bearer never makes a webhook (those are signed, not bearers); if it did, it
            // would name no one a client could act as.
            Principal::Anonymous | Principal::Webhook => WhoAmI::Anonymous,
        }
    }
}

/// `GET /v1/whoami`.
#[utoipa::path(get, path = "/v1/whoami", tag = "users",
    responses((status = 200, description = "The caller the bearer credential names", body = WhoAmI),
        (status = 401, description = "The credential was refused", body = ProblemDetails, content_type = "application/problem+json")),
    security(("bearer" = []), ()))]
pub async fn whoami(State(http): State<Http>, headers: HeaderMap) -> Result<Response, Problem> {
    let principal = http.principal(headers.get(header::AUTHORIZATION))?;
    let body = serde_json::to_vec(&WhoAmI::from(principal)).expect("whoami serialises");
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    // The answer depends on the credential: no cache may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_shape() {
        let shape = |principal| serde_json::to_value(WhoAmI::from(principal)).unwrap();
        assert_eq!(
            shape(Principal::User {
                id: "u1".into(),
                premium: false
            }),
            serde_json::json!({"kind": "user", "user": "u1", "premium": false})
        );
        assert_eq!(
            shape(Principal::Admin { name: "ops".into() }),
            serde_json::json!({"kind": "admin", "name": "ops"})
        );
        assert_eq!(
            shape(Principal::Anonymous),
            serde_json::json!({"kind": "anonymous"})
        );
    }
}
