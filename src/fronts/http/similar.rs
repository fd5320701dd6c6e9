//! `GET /v1/memes/{id}/similar`: the memes nearest in meaning to one meme, free of charge
//! (the `similar` op). Its own module so the route, its query and its OpenAPI entry read in
//! one place.

use super::Http;
use super::problem::{Problem, Problems};
use super::routes::{Headers, Parsed, fresh_response};
use crate::protocol::{MAX_MEME_ID_CHARS, MemeView, SimilarData, SimilarRequest};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// A meme id as the catalogue writes them. The service looks up any id of up to 64
/// characters (another is simply not found); the document states the catalogue's form.
pub struct MemeId;

impl PartialSchema for MemeId {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_MEME_ID_CHARS))
            .pattern(Some("^[a-z0-9]+(-[a-z0-9]+)*$"))
            .description(Some(
                "A meme's id, as get and search replies give it: lower-case letters, digits \
                 and single dashes",
            ))
            .examples(["this-is-fine"])
            .into()
    }
}

impl ToSchema for MemeId {}

/// `GET /v1/memes/{id}/similar`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SimilarQuery {
    /// Results, 1 to 100 (10 by default).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    nsfw: Option<bool>,
}

/// `GET /v1/memes/{id}/similar`.
#[utoipa::path(get, path = "/v1/memes/{id}/similar", tag = "memes",
    params(("id" = MemeId, Path, description = "The meme's id"), SimilarQuery),
    responses((status = 200, description = "The memes nearest in meaning, nearest first, free", body = SimilarData<MemeView>), Problems))]
pub async fn similar(
    State(http): State<Http>,
    headers: Headers,
    Parsed(Path(id)): Parsed<Path<String>>,
    Parsed(Query(params)): Parsed<Query<SimilarQuery>>,
) -> Result<Response, Problem> {
    let caller = http.caller(headers.authorization())?;
    let request = SimilarRequest {
        meme: id,
        limit: params.limit,
        nsfw: params.nsfw.unwrap_or(false),
    };
    Ok(fresh_response(&http.service.similar(&caller, request)?))
}
