//! The request and response bodies and query strings of the HTTP routes, as serde and the
//! OpenAPI document see them, and the lenient number and empty-parameter readers they share.
//! Shapes only: what a value means is the service's to decide.

use super::super::schema::{self, Amount, IdempotencyKey, Tokens, UserId};
use crate::domain::Tier;
use crate::protocol::Location;
use serde::{Deserialize, Serialize};

/// `GET /memes`'s query, as the first write-up gives it.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OriginalQuery {
    /// Latitude, decimal degrees (with `long`).
    #[param(schema_with = schema::query_latitude)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub lat: Option<f64>,
    /// Longitude, decimal degrees (with `lat`; `lon` is accepted too).
    #[serde(alias = "lon")]
    #[param(schema_with = schema::query_longitude)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub long: Option<f64>,
    /// What the meme should be about.
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub query: Option<String>,
    /// The user to charge (admin keys only; a user's own credential names the user).
    #[param(schema_with = schema::query_user)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub user: Option<String>,
}

/// `GET /v1/memes`'s query: everything a `get` takes but a generated image.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemesQuery {
    /// Latitude, decimal degrees (with `long`).
    #[param(schema_with = schema::query_latitude)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub lat: Option<f64>,
    /// Longitude, decimal degrees (with `lat`; `lon` is accepted too).
    #[serde(alias = "lon")]
    #[param(schema_with = schema::query_longitude)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub long: Option<f64>,
    /// What the meme should be about.
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub query: Option<String>,
    /// Deliver this many distinct memes, all or nothing.
    #[param(schema_with = schema::query_count)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub count: Option<u32>,
    /// Allow memes flagged not safe for work.
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(schema_with = schema::query_flag)]
    pub nsfw: Option<bool>,
    /// The user to charge (admin keys only; a user's own credential names the user).
    #[param(schema_with = schema::query_user)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub user: Option<String>,
}

/// `POST /v1/memes`'s body: everything a `get` takes. (The idempotency key goes in the
/// `Idempotency-Key` header.)
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemesBody {
    /// The user to charge (admin keys only; a user's own credential names the user).
    #[schema(value_type = Option<UserId>)]
    pub user: Option<String>,
    /// Latitude, decimal degrees (with `long`).
    #[schema(minimum = -90, maximum = 90, nullable = false)]
    pub lat: Option<f64>,
    /// Longitude, decimal degrees (with `lat`; `lon` is accepted too).
    #[serde(alias = "lon")]
    #[schema(minimum = -180, maximum = 180, nullable = false)]
    pub long: Option<f64>,
    /// What the meme should be about.
    #[schema(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub query: Option<String>,
    /// Deliver this many distinct memes, all or nothing (not with `generate`).
    #[schema(minimum = 1, maximum = 10, nullable = false)]
    #[serde(default, deserialize_with = "integral_count")]
    pub count: Option<u32>,
    /// Allow memes flagged not safe for work.
    #[serde(default)]
    pub nsfw: bool,
    /// Render a new meme image (premium users only).
    #[serde(default)]
    pub generate: bool,
    /// With `generate`: also return the PNG, base64.
    #[serde(default)]
    pub inline: bool,
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
    /// When the lot this top-up opens expires (RFC 3339, in the future); not with
    /// `expires_in`. Without either, it never expires.
    pub expires_at: Option<String>,
    /// How long after the top-up its lot expires (`30d`, `12h`).
    pub expires_in: Option<String>,
    /// 0-100, default 50: lots of a lower priority are spent first.
    #[schema(minimum = 0, maximum = 100)]
    pub priority: Option<u64>,
    /// Promotional tokens (given, not paid for): spent before paid ones.
    #[serde(default)]
    pub promo: bool,
}

/// `POST /v1/users/{user}/holds`'s body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    /// Tokens to set aside (taken from the lots in burn order).
    #[schema(value_type = Tokens)]
    #[serde(deserialize_with = "integral")]
    pub amount: i64,
    /// How long the hold lasts (`5m`, `30s`; more than 0, at most 7 days).
    pub ttl: String,
}

/// `POST /v1/holds/{hold}/capture`'s body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureBody {
    /// Tokens to spend (1 to what the hold holds); absent: all. The rest goes back.
    #[schema(value_type = Option<Tokens>)]
    #[serde(default, deserialize_with = "integral_option")]
    pub amount: Option<i64>,
    /// The user the hold must belong to.
    #[schema(value_type = Option<UserId>)]
    pub user: Option<String>,
}

/// `POST /v1/entries/{entry}/refund`'s body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// Tokens to give back (1 to what is left of the charge); absent: all that is left.
    #[schema(value_type = Option<Tokens>)]
    #[serde(default, deserialize_with = "integral_option")]
    pub amount: Option<i64>,
    /// The user the entry must belong to.
    #[schema(value_type = Option<UserId>)]
    pub user: Option<String>,
}

/// `POST /v1/holds/{hold}/void`'s body (optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {
    /// The user the hold must belong to.
    #[schema(value_type = Option<UserId>)]
    pub user: Option<String>,
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

/// `GET /v1/users/{user}/balance`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BalanceQuery {
    /// An instant (RFC 3339): the balance, tier and spendable lots as they were then; after
    /// now, what expiry alone would leave by then. Absent: now. (Empty is not absent: it is
    /// not a time, and refused.)
    #[param(format = DateTime)]
    #[serde(default)]
    pub at: Option<String>,
}

/// `GET /v1/users/{user}/history`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Entries per page, 1 to 10,000 (the default).
    #[param(schema_with = schema::query_history_limit)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub limit: Option<u64>,
    /// A page's `next` (opaque), for the page before it.
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub before: Option<String>,
}

/// `GET /v1/search`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The query (typos forgiven).
    #[param(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub q: String,
    /// Results, 1 to 100 (10 by default).
    #[param(schema_with = schema::query_search_limit)]
    #[serde(default, deserialize_with = "empty_as_none")]
    pub limit: Option<u32>,
    #[serde(default, deserialize_with = "empty_as_none")]
    #[param(schema_with = schema::query_flag)]
    pub nsfw: Option<bool>,
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

/// An optional amount (as [`integral`]).
fn integral_option<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    Option::<Integral>::deserialize(deserializer).map(|n| n.map(|Integral(n)| n))
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
