//! The schemas of values the HTTP API takes, as precisely as JSON Schema can state the rules
//! that [`crate::protocol`] checks, so that the OpenAPI document is true: a value the
//! document allows is one the service accepts (up to the rules no schema can say: the state
//! of an account, which cursor is current, what time it is).

use crate::protocol::{MAX_AMOUNT, MAX_KEY_CHARS, MAX_USER_CHARS};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

/// Characters no user id may hold anywhere: control and format (invisible) characters, the
/// Hangul fillers, and the characters that would keep an id from being in Unicode
/// normalization form C (those never found in NFC text, and the combining marks that could
/// compose with a character before them). Generated from the Unicode data (Basic
/// Multilingual Plane; `protocol::validate_user` is the rule, this is its shadow).
const NOT_IN_USER_IDS: &str = r"\u0000-\u001f\u007f-\u009f\u00ad\u0300-\u0304\u0306-\u030c\u030f\u0311\u0313-\u0314\u031b\u0323-\u0328\u032d-\u032e\u0330-\u0331\u0338\u0340-\u0345\u034f\u0374\u037e\u0387\u05c1-\u05c2\u0600-\u0605\u061c\u0653-\u0655\u06dd\u070f\u0890-\u0891\u08e2\u093c\u0958-\u095f\u09be\u09d7\u09dc-\u09dd\u09df\u0a33\u0a36\u0a59-\u0a5b\u0a5e\u0b3e\u0b56-\u0b57\u0b5c-\u0b5d\u0bbe\u0bd7\u0c56\u0cc2\u0cd5-\u0cd6\u0d3e\u0d57\u0dca\u0dcf\u0ddf\u0f43\u0f4d\u0f52\u0f57\u0f5c\u0f69\u0f73\u0f75-\u0f76\u0f78\u0f81\u0f93\u0f9d\u0fa2\u0fa7\u0fac\u0fb9\u102e\u115f-\u1175\u11a8-\u11c2\u180e\u1b35\u1f71\u1f73\u1f75\u1f77\u1f79\u1f7b\u1f7d\u1fbb\u1fbe\u1fc9\u1fcb\u1fd3\u1fdb\u1fe3\u1feb\u1fee-\u1fef\u1ff9\u1ffb\u1ffd\u2000-\u2001\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\u2126\u212a-\u212b\u2329-\u232a\u2adc\u3099-\u309a\u3164\uf900-\ufa0d\ufa10\ufa12\ufa15-\ufa1e\ufa20\ufa22\ufa25-\ufa26\ufa2a-\ufa6d\ufa70-\ufad9\ufb1d\ufb1f\ufb2a-\ufb36\ufb38-\ufb3c\ufb3e\ufb40-\ufb41\ufb43-\ufb44\ufb46-\ufb4e\ufeff\uffa0\ufff9-\ufffb";

/// White space a user id may not begin or end with (beyond the controls, excluded anyway).
const EDGE_SPACE: &str = r" \u00a0\u1680\u2002-\u200a\u2028\u2029\u202f\u205f\u3000";

/// Free text (queries, reasons, cursors, keys): no control characters.
pub const TEXT_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";

/// A user id, as `protocol::validate_user` accepts it.
pub struct UserId;

impl PartialSchema for UserId {
    fn schema() -> RefOr<Schema> {
        let pattern = format!(
            "^[^{NOT_IN_USER_IDS}{EDGE_SPACE}](?:[^{NOT_IN_USER_IDS}]{{0,{}}}[^{NOT_IN_USER_IDS}{EDGE_SPACE}])?$",
            MAX_USER_CHARS - 2
        );
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_USER_CHARS))
            .pattern(Some(pattern))
            .description(Some(
                "A user id: 1 to 128 characters, compared exactly; no control or invisible \
                 characters, no white space at either end, in Unicode normalization form C",
            ))
            .examples(["user1234"])
            .into()
    }
}

impl ToSchema for UserId {}

/// A number of tokens to add (positive) or deduct (negative): never 0, at most 10^12 either
/// way.
pub struct Amount;

impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        let side = |minimum: i64, maximum: i64| {
            ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(minimum))
                .maximum(Some(maximum))
        };
        OneOfBuilder::new()
            .item(side(1, MAX_AMOUNT))
            .item(side(-MAX_AMOUNT, -1))
            .description(Some(
                "Tokens: positive adds, negative deducts (never below zero); not 0, at most 10^12 either way",
            ))
            .examples([50])
            .into()
    }
}

impl ToSchema for Amount {}

/// A number of tokens to set aside, spend or give back: 1 to 10^12.
pub struct Tokens;

impl PartialSchema for Tokens {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(MAX_AMOUNT))
            .description(Some("Tokens: 1 to 10^12"))
            .examples([10])
            .into()
    }
}

impl ToSchema for Tokens {}

/// An idempotency key, or a payment provider's event id: 1 to 255 characters, no control
/// characters.
pub struct IdempotencyKey;

impl PartialSchema for IdempotencyKey {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(MAX_KEY_CHARS))
            .pattern(Some(TEXT_PATTERN))
            .into()
    }
}

impl ToSchema for IdempotencyKey {}

/// An optional query parameter, which may also be sent empty (`?lat=`): that is the
/// parameter left out (web forms send them so).
fn or_empty(value: impl Into<RefOr<Schema>>) -> Schema {
    OneOfBuilder::new()
        .item(value)
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(0)),
        )
        .into()
}

fn number(minimum: i64, maximum: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .minimum(Some(minimum))
        .maximum(Some(maximum))
}

fn integer(minimum: i64, maximum: i64) -> ObjectBuilder {
    number(minimum, maximum).schema_type(Type::Integer)
}

/// `lat`: decimal degrees, or empty.
pub fn query_latitude() -> Schema {
    or_empty(number(-90, 90))
}

/// `long`: decimal degrees, or empty.
pub fn query_longitude() -> Schema {
    or_empty(number(-180, 180))
}

/// `count`: 1 to 10 memes, or empty.
pub fn query_count() -> Schema {
    or_empty(integer(1, crate::protocol::MAX_COUNT as i64))
}

/// A history page's `limit`, or empty.
pub fn query_history_limit() -> Schema {
    or_empty(integer(1, crate::protocol::MAX_HISTORY_PAGE as i64))
}

/// A search's `limit`, or empty.
pub fn query_search_limit() -> Schema {
    or_empty(integer(1, crate::protocol::MAX_SEARCH_LIMIT as i64))
}

/// `nsfw`: true or false, or empty.
pub fn query_flag() -> Schema {
    or_empty(ObjectBuilder::new().schema_type(Type::Boolean))
}

/// `user`: a user id, or empty (the bearer's own).
pub fn query_user() -> Schema {
    or_empty(UserId::schema())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern's excluded characters are refused by the rule, and a sample of what it
    /// allows is accepted (a drift between the two would make the document untrue).
    #[test]
    fn the_user_id_schema_shadows_the_rule() {
        let excluded = |c: char| {
            let mut chars = NOT_IN_USER_IDS.split(r"\u").filter(|s| !s.is_empty());
            let mut ranges = Vec::new();
            while let Some(start) = chars.next() {
                let (start, end) = match start.strip_suffix('-') {
                    Some(start) => (start, chars.next().unwrap()),
                    None => (start, start),
                };
                let parse = |hex: &str| u32::from_str_radix(hex, 16).unwrap();
                ranges.push(parse(start)..=parse(end));
            }
            ranges.iter().any(|range| range.contains(&(c as u32)))
        };
        for code in 0..=0xFFFFu32 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let alone = crate::protocol::validate_user(&format!("a{c}b")).is_ok();
            // Whatever the rule refuses in the middle of an id, the pattern excludes.
            if !alone {
                assert!(
                    excluded(c),
                    "U+{code:04X} is refused but allowed by the schema"
                );
            }
        }
    }
}
