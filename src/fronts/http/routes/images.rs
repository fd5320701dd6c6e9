//! `GET /v1/images/{sha256}.png`: the images rendered for premium users, served from the
//! service's image directory. An image is named by its content, so it never changes: it is
//! cached for a year and revalidated by its strong ETag (`304`).

use super::super::Http;
use super::super::problem::{Problem, Problems};
use super::Parsed;
use crate::domain::ErrorCode;
use crate::service::ServiceError;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

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
    Parsed(Path(file)): Parsed<Path<String>>,
) -> Result<Response, Problem> {
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
