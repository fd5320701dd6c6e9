//! The two routes of the first write-up, with the shapes it gave them: `GET /memes` answers
//! the meme's own fields plus `charged`, `balance` and `location`, and
//! `POST /update-token-balance` answers `{"success", "message", "user_id", "new_balance"}`
//! (refusals too, with the problem's status). `GET /memes` is the route a benchmark hammers;
//! its fresh body is written straight from the catalogue's serialised view of the meme.

use super::super::Http;
use super::super::problem::{Problem, Problems};
use super::super::schema::IdempotencyKey;
use super::types::{BalanceUpdate, BalanceUpdated, OriginalMeme, OriginalQuery};
use super::{
    Headers, IDEMPOTENCY_KEY, Parsed, data_response, idempotency_key, json_response, no_store,
    reply_response, subject,
};
use crate::domain::ErrorCode;
use crate::protocol::{GetData, GetRequest, MemeView, TopupRequest};
use crate::service::{GetReply, Stored};
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// `GET /memes`: a meme for the bearer's user, charged (the original route).
#[utoipa::path(get, path = "/memes", tag = "original",
    params(OriginalQuery, ("Idempotency-Key" = Option<IdempotencyKey>, Header, description = "Makes a retry safe")),
    responses((status = 200, description = "The meme, charged", body = OriginalMeme), Problems),
    security(("bearer" = [])))]
pub async fn original_memes(
    State(http): State<Http>,
    headers: Headers,
    Parsed(Query(params)): Parsed<Query<OriginalQuery>>,
) -> Result<Response, Problem> {
    serve_original_memes(
        &http,
        headers.authorization(),
        headers.idempotency_key(),
        params,
    )
    .await
}

/// `GET /memes` served without the router (see [`super::super::measured`]): the same handler.
pub async fn original_memes_direct(
    http: &Http,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> Response {
    // As [`Parsed`] would refuse it through the router.
    let params = match Query::try_from_uri(uri) {
        Ok(Query(params)) => params,
        Err(rejection) => return Problem::from(rejection).into_response(),
    };
    serve_original_memes(
        http,
        headers.get(header::AUTHORIZATION),
        headers.get(IDEMPOTENCY_KEY),
        params,
    )
    .await
    .into_response()
}

async fn serve_original_memes(
    http: &Http,
    authorization: Option<&HeaderValue>,
    key: Option<&HeaderValue>,
    params: OriginalQuery,
) -> Result<Response, Problem> {
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
    let body = original_meme(&get)?;
    Ok(no_store(reply_response(body, get.is_replay())))
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
            ..TopupRequest::default()
        };
        Ok::<_, Problem>(match http.service.topup(&caller, request).await? {
            Stored::Fresh(data) => (data, false),
            Stored::Replayed(replayed) => (replayed.into_data(), true),
        })
    };
    match outcome.await {
        Ok((data, replayed)) => data_response(
            &BalanceUpdated {
                success: true,
                message: "Token balance updated successfully".into(),
                user_id: Some(data.user_id),
                new_balance: Some(data.new_balance),
                welcome_grant: data.welcome_grant,
            },
            replayed,
        ),
        Err(problem) => refused(problem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;
    use crate::protocol::Location;
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
