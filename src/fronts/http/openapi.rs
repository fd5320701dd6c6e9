//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers' annotations and
//! the protocol's own types, so it cannot drift from what is served (`GET /openapi.json`).
//! The versioned API's handlers are listed in their own module ([`routes::v1::Paths`]),
//! merged here, so a new op needs nothing in this file.

use super::problem::ProblemDetails;
use super::routes;
use super::schema::{Amount, IdempotencyKey, UserId};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "memes",
        description = "Memes as a service: a meme per request, charged in tokens from a durable ledger. \
            Errors are RFC 9457 problem details carrying the protocol's `code`."
    ),
    paths(
        routes::original::original_memes,
        routes::original::original_topup,
        routes::images::image,
        routes::health::healthz,
        routes::health::readyz,
        super::whoami::whoami,
    ),
    components(schemas(ProblemDetails, UserId, Amount, IdempotencyKey, super::similar::MemeId)),
    modifiers(&BearerAuth),
    tags(
        (name = "original", description = "The routes of the first write-up"),
        (name = "memes", description = "Getting memes"),
        (name = "users", description = "A user's balance and history (their own; admin keys: anyone's)"),
        (name = "admin", description = "Changes for admin keys and payment webhooks"),
        (name = "service", description = "Health and status"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer scheme the routes' `security` refers to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A user's JWT (or, in development mode, the user id), or an admin key",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, serialised once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut doc = ApiDoc::openapi();
    // The versioned API's routes are listed beside their handlers.
    doc.merge(routes::v1::Paths::openapi());
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut value = serde_json::to_value(&doc).expect("the document serialises");
    // What the derive cannot say: a body's latitude and longitude come together, and a
    // count is not for a generated image.
    let body = &mut value["components"]["schemas"]["MemesBody"];
    body["dependentRequired"] = serde_json::json!({"lat": ["long"], "long": ["lat"]});
    body["dependentSchemas"] =
        serde_json::json!({"count": {"properties": {"generate": {"const": false}}}});
    serde_json::to_string_pretty(&value).expect("the document serialises")
});

/// `GET /openapi.json`.
pub async fn document() -> Response {
    let mut response = DOCUMENT.as_str().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The handlers' annotations repeat each op's route (utoipa reads literals only): the
    /// document must describe the route the protocol names, which the router serves.
    #[test]
    fn every_op_is_documented_at_its_route() {
        let document: serde_json::Value = serde_json::from_str(&DOCUMENT).unwrap();
        for op in crate::protocol::Op::ALL {
            let route = op.route();
            let method = route.method.as_str().to_ascii_lowercase();
            assert!(
                document["paths"][route.path][&method].is_object(),
                "{op}: {method} {} is not in the document",
                route.path
            );
        }
    }

    /// A balance or history read from a standby carries `stale`, optional, described once.
    #[test]
    fn a_read_from_a_standby_is_documented_as_optional() {
        let document: serde_json::Value = serde_json::from_str(&DOCUMENT).unwrap();
        let schemas = &document["components"]["schemas"];
        for reply in ["BalanceData", "HistoryData"] {
            let stale = schemas[reply]["properties"]["stale"].to_string();
            assert!(
                stale.contains("#/components/schemas/Stale"),
                "{reply}: {stale}"
            );
            let required = schemas[reply]["required"].as_array().unwrap();
            assert!(!required.contains(&"stale".into()), "{reply}");
        }
        let stale = &schemas["Stale"];
        assert_eq!(stale["required"], serde_json::json!(["from"]), "{stale}");
        for field in ["from", "as_of", "age_secs"] {
            assert!(stale["properties"][field].is_object(), "{field}: {stale}");
        }
    }
}
