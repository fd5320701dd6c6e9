//! The contract between memesd and its clients: the typed requests and the reply `data`
//! every front speaks (the socket frames them as NDJSON lines, see [`ndjson`], which the
//! client and the socket front share), the limits on every input field, and their
//! validation, and the canonical form of a keyed request ([`canonical`]).
//!
//! It knows nothing about balances, memes or sockets. Changes here are additive
//! (`#[serde(default)]`); an incompatible change bumps [`PROTOCOL_VERSION`].

pub use crate::domain::{
    AuditReport, EntryKind, ErrorCode, HistoryEntry, MAX_BALANCE, Stale, Tier, format_instant,
};
use serde::{Deserialize, Serialize};

pub mod canonical;
pub mod ndjson;
pub mod route;

pub use route::Route;

/// Bumped on any incompatible change of the wire format; `status` reports it.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest request line the daemon accepts, newline excluded. A longer line gets
/// `line_too_long` and the connection is closed, so the daemon never buffers unbounded input.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// User ids are 1 to this many characters (Unicode scalar values), no control characters.
pub const MAX_USER_CHARS: usize = 128;
/// Search queries are at most this many characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// The largest |amount| a single top-up may move, in tokens.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// Idempotency keys are 1 to this many characters.
pub const MAX_KEY_CHARS: usize = 255;
/// Free-text reasons on top-ups are at most this many characters.
pub const MAX_REASON_CHARS: usize = 500;
/// `get --count` accepts 1 to this many memes.
pub const MAX_COUNT: u32 = 10;
/// Meme ids (`similar`'s `meme`) are at most this many characters, as the catalogue allows.
pub const MAX_MEME_ID_CHARS: usize = 64;
/// `search --limit` (and `similar --limit`) accepts 1 to this many results.
pub const MAX_SEARCH_LIMIT: u32 = 100;
/// A `history` reply holds at most this many entries (then follow its `next`).
pub const MAX_HISTORY_PAGE: u64 = 10_000;
/// A history cursor (opaque; the store reads it) is at most this many characters.
pub const MAX_CURSOR_CHARS: usize = 256;
/// A request id (echoed in the reply) is a number or a string of at most this many bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Signed claims (JWTs) are at most this many bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// An error reply: a code from the closed set and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
}

/// Every operation, once: its name on the wire, its variant, its request type, its route in
/// the HTTP API (method and path template, see [`route`]) and who may make it ([`Callers`]).
/// Everything that names an op is made from this list: [`Request`] (serde's tag), [`Op`] (the
/// op alone, for the socket's head, logs and refusals), [`Op::route`] (which the HTTP front
/// serves and labels, and which `memes --url` calls), [`Op::callers`] (which the service's
/// access rules read) and, through [`for_each_op`], the metrics' labels, the service's
/// admission and its any-op reply, and the CLI's dispatch of `memes --url` calls. Adding an
/// op adds one line here (and its request type below).
macro_rules! for_each_op {
    ($callback:ident) => {
        $callback! {
            "get" => Get(GetRequest) at POST "/v1/memes" for Anyone,
            "topup" => Topup(TopupRequest) at POST "/v1/users/{user}/topups" for Admins,
            "balance" => Balance(BalanceRequest) at GET "/v1/users/{user}/balance" for Anyone,
            "history" => History(HistoryRequest) at GET "/v1/users/{user}/history" for Anyone,
            "lots" => Lots(LotsRequest) at GET "/v1/users/{user}/lots" for Anyone,
            "hold" => Hold(HoldRequest) at POST "/v1/users/{user}/holds" for Admins,
            "capture" => Capture(CaptureRequest) at POST "/v1/holds/{hold}/capture" for Admins,
            "void" => Void(VoidRequest) at POST "/v1/holds/{hold}/void" for Admins,
            "refund" => Refund(RefundRequest) at POST "/v1/entries/{entry}/refund" for Admins,
            "status" => Status(StatusRequest) at GET "/v1/status" for Anyone,
            "search" => Search(SearchRequest) at GET "/v1/search" for Anyone,
            "similar" => Similar(SimilarRequest) at GET "/v1/memes/{id}/similar" for Anyone,
            "entitle" => Entitle(EntitleRequest) at PUT "/v1/users/{user}/entitlement" for Admins,
            "audit" => Audit(AuditRequest) at POST "/v1/audit" for Admins,
            "reload" => Reload(ReloadRequest) at POST "/v1/reload" for Admins,
        }
    };
}
pub(crate) use for_each_op;

/// Makes [`Request`] and [`Op`] from [`for_each_op`]'s list.
macro_rules! requests_and_ops {
    ($($name:literal => $variant:ident($body:ident) at $method:ident $path:literal for $callers:ident,)+) => {
        /// Every operation, tagged by `"op"`. The `"id"` that any request may carry is not
        /// part of these structs: the daemon reads it separately so that it can echo it even
        /// when the rest of the request is malformed.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "op")]
        pub enum Request {
            $(
                #[serde(rename = $name)]
                $variant($body),
            )+
        }

        /// An operation without its fields: what a request asks for, by name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Op {
            $($variant,)+
        }

        impl Op {
            /// Every op, in the order of the list (and of the socket's "expected one of").
            pub const ALL: &[Op] = &[$(Op::$variant,)+];

            /// The op's name on the wire (`"op"`), also its metric label.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Op::$variant => $name,)+
                }
            }

            /// The op's route in the versioned HTTP API.
            pub const fn route(self) -> Route {
                match self {
                    $(Op::$variant => Route { method: http::Method::$method, path: $path },)+
                }
            }

            /// Who may make this op.
            pub const fn callers(self) -> Callers {
                match self {
                    $(Op::$variant => Callers::$callers,)+
                }
            }

            /// The op a wire name names, if any.
            pub fn from_name(name: &str) -> Option<Op> {
                match name {
                    $($name => Some(Op::$variant),)+
                    _ => None,
                }
            }

            /// Reads this op's own fields from a whole request object (other fields, such as
            /// `op` and `id`, are ignored), straight into its request type: the socket's head
            /// has already read the tag, so the tagged enum's buffering is not needed.
            pub fn decode(self, object: &[u8]) -> Result<Request, serde_json::Error> {
                match self {
                    $(Op::$variant => serde_json::from_slice(object).map(Request::$variant),)+
                }
            }
        }

        impl Request {
            /// The operation this request asks for.
            pub fn op(&self) -> Op {
                match self {
                    $(Request::$variant(_) => Op::$variant,)+
                }
            }

            /// The account this request is about, if any (see [`GetRequest::subject`]).
            pub fn subject(&self) -> Option<&str> {
                match self {
                    $(Request::$variant(request) => request.subject(),)+
                }
            }

            /// Checks every field against the limits above. The daemon calls this on every
            /// request; the CLI calls it too, so that bad input fails fast with the same
            /// message.
            pub fn validate(&self) -> Result<(), ErrorBody> {
                match self {
                    $(Request::$variant(request) => request.validate(),)+
                }
            }
        }

        $(
            impl $body {
                /// The operation this request type asks for.
                pub const OP: Op = Op::$variant;
            }
        )+
    };
}
for_each_op!(requests_and_ops);

/// Who may make an op, as its line in [`for_each_op`] says. The service's access rules read
/// it (`service::access`): an admin on the socket and an admin key over HTTP may make every
/// op, a payment webhook only `topup`; other callers only those for `Anyone`, and a user
/// only for their own account (the request's `subject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callers {
    Anyone,
    Admins,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `get`: deliver a meme (or `count` memes, or a generated image) and charge for it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct GetRequest {
    pub user: String,
    /// Latitude in decimal degrees, -90..=90.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    /// Longitude in decimal degrees, -180..=180 (`"lon"` is accepted too).
    #[serde(default, alias = "lon", skip_serializing_if = "Option::is_none")]
    pub long: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Deliver this many distinct memes (1..=10) in `data.memes`, all or nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// Allow memes flagged not safe for work.
    #[serde(default, skip_serializing_if = "is_false")]
    pub nsfw: bool,
    /// Render a new meme image (premium users only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub generate: bool,
    /// With `generate`: also return the PNG bytes, base64, in `data.generated.png_base64`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub inline: bool,
    /// A signed claim (JWT) naming the user and possibly a premium tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `topup`: add (`amount` > 0) or deduct (`amount` < 0) tokens. Admin only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TopupRequest {
    pub user: String,
    pub amount: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Free text kept with the ledger entry, e.g. a payment provider's event id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the lot this top-up opens expires: an RFC 3339 time in the future. Not with
    /// `expires_in`; without either, the lot never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// How long after the top-up its lot expires: a duration such as `30d` or `12h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<String>,
    /// 0-100, default 50: lots of a lower priority are spent first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u64>,
    /// Promotional tokens (given, not paid for): of two lots otherwise alike, spent first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promo: bool,
}

/// `hold`: set `amount` tokens of an account aside (taken from its lots in burn order) for
/// `ttl`; the balance drops at once. It ends captured, voided, or expired at the end of its
/// `ttl` (its tokens then go back). Admin only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HoldRequest {
    pub user: String,
    /// Tokens to set aside (1 to [`MAX_AMOUNT`]).
    pub amount: u64,
    /// How long the hold lasts: a duration such as `5m` or `30s` (more than 0, at most 7
    /// days).
    pub ttl: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `capture`: end an open hold by spending `amount` of its tokens (all of them if absent);
/// the rest goes back to the lots it came from. Admin only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CaptureRequest {
    /// The hold's id, as `hold` replied.
    pub hold: u64,
    /// Tokens to spend (1 to what the hold holds); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    /// The user the hold must belong to; refused (not found) if it is another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `void`: end an open hold by giving all its tokens back to the lots they came from. Admin
/// only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct VoidRequest {
    /// The hold's id, as `hold` replied.
    pub hold: u64,
    /// The user the hold must belong to; refused (not found) if it is another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `refund`: give back (part of) a charge or a hold's capture, to the lots it took the tokens
/// from (the last taken first; a part whose lot has expired expires at once), never more than
/// it spent minus what was refunded of it already. Its ledger entry names the entry it
/// `reverses`. Admin only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RefundRequest {
    /// The charge's (or capture's) entry: its `seq`, as `history` shows it.
    pub entry: u64,
    /// Tokens to give back (1 to what is left of the charge); absent: all that is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<u64>,
    /// The user the entry must belong to; refused (not found) if it is another's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// `balance`: an account's balance and tier, now or at an instant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BalanceRequest {
    pub user: String,
    /// An RFC 3339 time: the balance, tier and spendable lots as they were then (the running
    /// balance of the history at that instant). After now: what expiry alone would leave by
    /// then. Absent: now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// `lots`: the lots an account can spend now, in the order they are spent.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LotsRequest {
    pub user: String,
}

/// `history`: a page of an account's ledger entries: the newest `limit` (at most
/// [`MAX_HISTORY_PAGE`], the default) older than `before`, oldest first. A reply with `next`
/// has older entries: ask again with `before` set to it. Following `next` to the end gives
/// the complete history; `memes history` does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HistoryRequest {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// A cursor from a previous reply's `next`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
}

/// `status`: daemon version, protocol version, uptime, counts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StatusRequest {}

/// `search`: ranked matches for a query, free of charge.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SearchRequest {
    pub query: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nsfw: bool,
}

/// `similar`: the memes nearest in meaning to one meme, free of charge.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SimilarRequest {
    /// The meme's id, as in a `get` or `search` reply. (Not `id`: that is the request's own,
    /// which the reply echoes.)
    pub meme: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub nsfw: bool,
}

/// `entitle`: set an account's tier, optionally until an RFC 3339 instant. Admin only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EntitleRequest {
    pub user: String,
    pub tier: Tier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// `audit`: replay the whole ledger and check its invariants. Admin only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditRequest {}

/// `reload`: reload the meme catalogue and the admin keys from their files (same as
/// SIGHUP); on any problem neither changes. Admin only.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ReloadRequest {}

fn is_false(b: &bool) -> bool {
    !*b
}

impl GetRequest {
    /// The account this request is about, if any: a user may make it only for their own
    /// account, and the rate limit counts it there. (Every request type has this method:
    /// [`Request::subject`] calls it.)
    pub fn subject(&self) -> Option<&str> {
        Some(&self.user)
    }
}

impl LotsRequest {
    /// The account this request is about (see [`GetRequest::subject`]).
    pub fn subject(&self) -> Option<&str> {
        Some(&self.user)
    }

    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        validate_user(&self.user)
    }
}

impl BalanceRequest {
    /// The account this request is about (see [`GetRequest::subject`]).
    pub fn subject(&self) -> Option<&str> {
        Some(&self.user)
    }

    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        validate_user(&self.user)?;
        self.at_ms().map(drop)
    }

    /// `at` as milliseconds since the Unix epoch.
    pub fn at_ms(&self) -> Result<Option<i64>, ErrorBody> {
        self.at
            .as_deref()
            .map(|at| parse_time("at", at))
            .transpose()
    }
}

impl HistoryRequest {
    /// The account this request is about (see [`GetRequest::subject`]).
    pub fn subject(&self) -> Option<&str> {
        Some(&self.user)
    }
}

/// Requests about no user's own account: open to anyone, or for admins (whose changes to an
/// account are not that account's requests, and not counted against its rate limit).
macro_rules! about_no_account {
    ($($body:ident),+) => {
        $(impl $body {
            /// The account this request is about: none (see [`GetRequest::subject`]).
            pub fn subject(&self) -> Option<&str> {
                None
            }
        })+
    };
}
about_no_account!(
    TopupRequest,
    HoldRequest,
    CaptureRequest,
    VoidRequest,
    RefundRequest,
    StatusRequest,
    SearchRequest,
    SimilarRequest,
    EntitleRequest,
    AuditRequest,
    ReloadRequest
);

/// Requests without fields: nothing to check.
macro_rules! nothing_to_validate {
    ($($body:ident),+) => {
        $(impl $body {
            /// Checks every field against its limits (there are none).
            pub fn validate(&self) -> Result<(), ErrorBody> {
                Ok(())
            }
        })+
    };
}
nothing_to_validate!(StatusRequest, AuditRequest, ReloadRequest);

impl GetRequest {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        validate_user(&self.user)?;
        match (self.lat, self.long) {
            (Some(lat), Some(long)) => validate_coordinates(lat, long)?,
            (None, None) => {}
            _ => return Err(ErrorBody::invalid("lat and long must be given together")),
        }
        if let Some(query) = &self.query {
            validate_text("query", query, MAX_QUERY_CHARS)?;
        }
        if let Some(count) = self.count
            && !(1..=MAX_COUNT).contains(&count)
        {
            return Err(ErrorBody::invalid(format!(
                "count must be between 1 and {MAX_COUNT}, got {count}"
            )));
        }
        if self.generate && self.count.is_some() {
            return Err(ErrorBody::invalid(
                "count cannot be combined with generate (one image per request)",
            ));
        }
        if let Some(token) = &self.token
            && (token.is_empty() || token.len() > MAX_TOKEN_BYTES)
        {
            return Err(ErrorBody::invalid(format!(
                "token must be 1 to {MAX_TOKEN_BYTES} bytes"
            )));
        }
        validate_key(self.idempotency_key.as_deref())
    }
}

impl TopupRequest {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        validate_user(&self.user)?;
        if self.amount == 0 {
            return Err(ErrorBody::invalid("amount must not be 0"));
        }
        if self.amount.unsigned_abs() > MAX_AMOUNT as u64 {
            return Err(ErrorBody::invalid(format!(
                "amount must be between -{MAX_AMOUNT} and {MAX_AMOUNT}, got {}",
                self.amount
            )));
        }
        if let Some(reason) = &self.reason {
            validate_text("reason", reason, MAX_REASON_CHARS)?;
        }
        validate_key(self.idempotency_key.as_deref())?;
        self.lot_terms(0).map(drop)
    }

    /// Whether it asks for lot terms other than the defaults.
    pub fn has_terms(&self) -> bool {
        self.expires_at.is_some()
            || self.expires_in.is_some()
            || self.priority.is_some()
            || self.promo
    }

    /// The terms of the lot it opens, at `now` (milliseconds since the epoch): `expires_in`
    /// counts from then. Whether the expiry is after now is the store's rule
    /// ([`crate::store::rules::check_terms`]), judged at the store's clock.
    pub fn lot_terms(&self, now: i64) -> Result<crate::domain::LotTerms, ErrorBody> {
        use crate::domain::{DEFAULT_PRIORITY, LotKind, LotTerms, MAX_PRIORITY};
        if self.amount < 0 && self.has_terms() {
            return Err(ErrorBody::invalid(
                "a deduction takes tokens from the lots in burn order: it has no expiry, priority or promo",
            ));
        }
        let expires_at = match (&self.expires_at, &self.expires_in) {
            (Some(_), Some(_)) => {
                return Err(ErrorBody::invalid(
                    "give expires_at or expires_in, not both",
                ));
            }
            (Some(at), None) => Some(parse_time("expires_at", at)?),
            (None, Some(within)) => {
                let within = humantime::parse_duration(within).map_err(|e| {
                    ErrorBody::invalid(format!(
                        "expires_in must be a duration like 30d or 12h: {e}"
                    ))
                })?;
                if within.is_zero() {
                    return Err(ErrorBody::invalid("expires_in must be more than zero"));
                }
                let ms = i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
                Some(now.saturating_add(ms))
            }
            (None, None) => None,
        };
        let priority = match self.priority {
            None => DEFAULT_PRIORITY,
            Some(priority) if priority <= u64::from(MAX_PRIORITY) => priority as u8,
            Some(priority) => {
                return Err(ErrorBody::invalid(format!(
                    "priority must be between 0 and {MAX_PRIORITY} (lower is spent first), got {priority}"
                )));
            }
        };
        Ok(LotTerms {
            expires_at,
            priority,
            kind: match self.promo {
                true => LotKind::Promo,
                false => LotKind::Paid,
            },
        })
    }
}

impl HoldRequest {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        validate_user(&self.user)?;
        validate_hold_amount(self.amount)?;
        self.ttl_ms()?;
        validate_key(self.idempotency_key.as_deref())
    }

    /// The hold's time to live in milliseconds: more than 0, at most
    /// [`crate::domain::MAX_HOLD_TTL_MS`].
    pub fn ttl_ms(&self) -> Result<i64, ErrorBody> {
        let ttl = humantime::parse_duration(&self.ttl).map_err(|e| {
            ErrorBody::invalid(format!("ttl must be a duration like 5m or 30s: {e}"))
        })?;
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        match (1..=crate::domain::MAX_HOLD_TTL_MS).contains(&ms) {
            true => Ok(ms),
            false => Err(ErrorBody::invalid(format!(
                "ttl must be more than 0 and at most 7d, got {:?}",
                self.ttl
            ))),
        }
    }
}

impl CaptureRequest {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        if let Some(user) = &self.user {
            validate_user(user)?;
        }
        if let Some(amount) = self.amount {
            validate_hold_amount(amount)?;
        }
        validate_key(self.idempotency_key.as_deref())
    }
}

impl VoidRequest {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        if let Some(user) = &self.user {
            validate_user(user)?;
        }
        validate_key(self.idempotency_key.as_deref())
    }
}

impl RefundRequest {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        if let Some(user) = &self.user {
            validate_user(user)?;
        }
        if let Some(amount) = self.amount {
            validate_hold_amount(amount)?;
        }
        validate_key(self.idempotency_key.as_deref())
    }
}

fn validate_hold_amount(amount: u64) -> Result<(), ErrorBody> {
    match (1..=MAX_AMOUNT as u64).contains(&amount) {
        true => Ok(()),
        false => Err(ErrorBody::invalid(format!(
            "amount must be between 1 and {MAX_AMOUNT}, got {amount}"
        ))),
    }
}

impl HistoryRequest {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        validate_user(&self.user)?;
        if let Some(limit) = self.limit
            && !(1..=MAX_HISTORY_PAGE).contains(&limit)
        {
            return Err(ErrorBody::invalid(format!(
                "limit must be between 1 and {MAX_HISTORY_PAGE}, got {limit}"
            )));
        }
        if let Some(cursor) = &self.before {
            validate_text("before", cursor, MAX_CURSOR_CHARS)?;
        }
        Ok(())
    }
}

impl SearchRequest {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        validate_text("query", &self.query, MAX_QUERY_CHARS)?;
        validate_search_limit(self.limit)
    }
}

fn validate_search_limit(limit: Option<u32>) -> Result<(), ErrorBody> {
    if let Some(limit) = limit
        && !(1..=MAX_SEARCH_LIMIT).contains(&limit)
    {
        return Err(ErrorBody::invalid(format!(
            "limit must be between 1 and {MAX_SEARCH_LIMIT}, got {limit}"
        )));
    }
    Ok(())
}

impl SimilarRequest {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        if self.meme.is_empty() {
            return Err(ErrorBody::invalid("meme must not be empty"));
        }
        validate_text("meme", &self.meme, MAX_MEME_ID_CHARS)?;
        validate_search_limit(self.limit)
    }
}

impl EntitleRequest {
    /// Checks every field against its limits.
    pub fn validate(&self) -> Result<(), ErrorBody> {
        validate_user(&self.user)?;
        if let Some(until) = &self.until {
            parse_instant(until)?;
        }
        Ok(())
    }

    /// `until` as milliseconds since the Unix epoch.
    pub fn until_ms(&self) -> Result<Option<i64>, ErrorBody> {
        self.until.as_deref().map(parse_instant).transpose()
    }
}

/// Parses an RFC 3339 instant (`2027-01-31T00:00:00Z`) into milliseconds since the epoch.
pub fn parse_instant(text: &str) -> Result<i64, ErrorBody> {
    parse_time("until", text)
}

/// Parses the RFC 3339 instant given as `field` into milliseconds since the epoch: every
/// time a request carries (`until`, `expires_at`, `at`) is read here.
fn parse_time(field: &str, text: &str) -> Result<i64, ErrorBody> {
    let ts: jiff::Timestamp = text.parse().map_err(|e| {
        ErrorBody::invalid(format!(
            "{field} must be an RFC 3339 time like 2027-01-31T00:00:00Z: {e}"
        ))
    })?;
    Ok(ts.as_millisecond())
}

/// User ids: 1 to [`MAX_USER_CHARS`] characters, case-sensitive and compared exactly, so
/// that what looks the same is the same id:
/// - no control characters, and no invisible ones (Unicode format characters such as the
///   zero-width space, joiners and bidirectional controls; Hangul fillers);
/// - no white space at the start or the end;
/// - in Unicode normalization form C (NFC). An id in another form is refused, not rewritten:
///   it names the account of whoever issued it, and rewriting could merge two of them.
pub fn validate_user(user: &str) -> Result<(), ErrorBody> {
    if user.is_empty() {
        return Err(ErrorBody::invalid("user id must not be empty"));
    }
    if user.chars().count() > MAX_USER_CHARS {
        return Err(ErrorBody::invalid(format!(
            "user id must be at most {MAX_USER_CHARS} characters"
        )));
    }
    if user.chars().any(char::is_control) {
        return Err(ErrorBody::invalid(
            "user id must not contain control characters",
        ));
    }
    if user.starts_with(char::is_whitespace) || user.ends_with(char::is_whitespace) {
        return Err(ErrorBody::invalid(
            "user id must not begin or end with white space",
        ));
    }
    // ASCII (most ids) has no invisible characters and is always in NFC: the Unicode
    // tables below cost more than the rest of a request's checks together.
    if user.is_ascii() {
        return Ok(());
    }
    if let Some(invisible) = user.chars().find(|c| is_invisible(*c)) {
        return Err(ErrorBody::invalid(format!(
            "user id must not contain invisible characters (it has U+{:04X})",
            invisible as u32
        )));
    }
    if !unicode_normalization::is_nfc(user) {
        let nfc: String = unicode_normalization::UnicodeNormalization::nfc(user).collect();
        return Err(ErrorBody::invalid(format!(
            "user id must be in Unicode normalization form C (NFC), e.g. {nfc:?}"
        )));
    }
    Ok(())
}

/// Characters that show as nothing: format characters (zero-width space and joiners,
/// bidirectional controls, the byte order mark, soft hyphen) and the Hangul fillers.
fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    c.general_category() == GeneralCategory::Format
        || matches!(
            c,
            '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}' | '\u{034F}'
        )
}

/// Latitude in [-90, 90], longitude in [-180, 180], both finite.
pub fn validate_coordinates(lat: f64, long: f64) -> Result<(), ErrorBody> {
    if !lat.is_finite() || !(-90.0..=90.0).contains(&lat) {
        return Err(ErrorBody::invalid(format!(
            "lat must be a number between -90 and 90, got {lat}"
        )));
    }
    if !long.is_finite() || !(-180.0..=180.0).contains(&long) {
        return Err(ErrorBody::invalid(format!(
            "long must be a number between -180 and 180, got {long}"
        )));
    }
    Ok(())
}

fn validate_text(field: &str, text: &str, max_chars: usize) -> Result<(), ErrorBody> {
    if text.chars().count() > max_chars {
        return Err(ErrorBody::invalid(format!(
            "{field} must be at most {max_chars} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(ErrorBody::invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

fn validate_key(key: Option<&str>) -> Result<(), ErrorBody> {
    match key {
        Some(key) if key.is_empty() || key.chars().count() > MAX_KEY_CHARS => {
            Err(ErrorBody::invalid(format!(
                "idempotency key must be 1 to {MAX_KEY_CHARS} characters"
            )))
        }
        Some(key) if key.chars().any(char::is_control) => Err(ErrorBody::invalid(
            "idempotency key must not contain control characters",
        )),
        _ => Ok(()),
    }
}

/// A meme as replies show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemeView {
    pub id: String,
    pub title: String,
    /// Where the image lives (https URL).
    pub image: String,
    /// A page about the meme (https URL).
    pub source: String,
}

/// Where a coordinate is, as `get` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Location {
    /// ISO 3166-1 alpha-2 code (of the nearest land place when at sea).
    pub country_code: String,
    pub country: String,
    /// The nearest populated place (within the country the point is in).
    pub city: String,
    /// First-level subdivision name, e.g. "New York"; may be empty.
    pub region: String,
    /// ISO 3166-2 code of the subdivision, e.g. "US-NY", where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_code: Option<String>,
    /// Great-circle distance to `city`, in kilometres.
    pub distance_km: f64,
    /// True when the point is in no country (at sea); the place fields then name the nearest land.
    #[serde(default, skip_serializing_if = "is_false")]
    pub at_sea: bool,
    /// The island or landmass of the nearest land, where known (e.g. "Long Island").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landmass: Option<String>,
}

impl Location {
    /// One human line, e.g. "Paris, Ile-de-France, France (0.4 km)" or
    /// "at sea, 81.3 km from Great River, New York, United States (Long Island)".
    pub fn describe(&self) -> String {
        let mut place: Vec<&str> = Vec::with_capacity(3);
        for part in [&self.city, &self.region, &self.country] {
            // GeoNames often names a city-state's region after it ("Singapore, Singapore").
            if !part.is_empty() && place.last() != Some(&part.as_str()) {
                place.push(part);
            }
        }
        let place = place.join(", ");
        let distance = format!("{:.1} km", self.distance_km);
        // Don't say the island twice: "Manhattan, New York, United States (Manhattan, ...)",
        // "Palermo, Sicily, Italy (Sicily, ...)", "Reykjavík, ..., Iceland (Iceland, ...)".
        let landmass = self.landmass.as_ref().filter(|landmass| {
            ![&self.city, &self.region, &self.country]
                .iter()
                .any(|part| landmass.eq_ignore_ascii_case(part))
        });
        match (self.at_sea, landmass) {
            (true, Some(landmass)) => format!("at sea, {distance} from {place} ({landmass})"),
            (true, None) => format!("at sea, {distance} from {place}"),
            (false, _) if self.city.is_empty() => place,
            (false, Some(landmass)) => format!("{place} ({landmass}, {distance})"),
            (false, None) => format!("{place} ({distance})"),
        }
    }
}

/// A meme image rendered for a premium user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GeneratedImage {
    /// Absolute path of the PNG on the daemon's host.
    pub path: String,
    /// Size of the PNG in bytes.
    pub bytes: u64,
    pub width: u32,
    pub height: u32,
    /// SHA-256 of the PNG bytes, lower-case hex.
    pub sha256: String,
    /// Where memesd's HTTP front serves the image, relative to its base URL
    /// (`/v1/images/{sha256}.png`): how a client on another host fetches it.
    #[serde(default)]
    pub url: String,
    pub template: String,
    pub top: String,
    pub bottom: String,
    /// The PNG itself, base64, when the request asked for `inline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub png_base64: Option<String>,
}

impl GeneratedImage {
    /// [`GeneratedImage::url`] for an image with this SHA-256.
    pub fn url_of(sha256: &str) -> String {
        format!("/v1/images/{sha256}.png")
    }
}

/// `get` reply data. `M` is the meme representation: pre-serialised JSON in the daemon,
/// [`MemeView`] in clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(bound(deserialize = "M: Deserialize<'de>"))]
pub struct GetData<M = MemeView> {
    pub user_id: String,
    /// The delivered meme (requests without `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meme: Option<M>,
    /// The delivered memes (requests with `count`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memes: Option<Vec<M>>,
    /// The rendered image (requests with `generate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<GeneratedImage>,
    /// Tokens charged by this request.
    pub charged: u64,
    /// Balance after the charge, in tokens.
    pub balance: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// True when this is the stored reply of an earlier request with the same idempotency
    /// key, sent again: nothing was charged this time.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replayed: bool,
}

/// `topup` reply data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopupData {
    pub user_id: String,
    pub amount: i64,
    pub new_balance: u64,
    /// Tokens of the welcome grant, present only when this top-up opened the account: the
    /// grant was recorded first and `new_balance` includes it (a new user topped up by 10
    /// has 160).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome_grant: Option<u64>,
    /// True when this is the stored reply of an earlier request with the same idempotency
    /// key, sent again: nothing was changed this time.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replayed: bool,
}

/// `hold`, `capture` and `void` reply data: the hold as the request left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HoldData {
    /// The hold's id (what `capture` and `void` name).
    pub hold: u64,
    pub state: crate::domain::HoldState,
    /// Tokens held.
    pub amount: u64,
    /// Tokens its capture spent (0 unless captured).
    pub captured: u64,
    /// Tokens this request gave back to the lots (a part whose lot had expired expired
    /// instead).
    pub returned: u64,
    /// When the hold expires, or expired (RFC 3339).
    pub expires_at: String,
    /// The account's balance after the request.
    pub new_balance: u64,
    /// True when this is the stored reply of an earlier request with the same idempotency
    /// key, sent again: nothing was changed this time.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replayed: bool,
}

/// `refund` reply data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RefundData {
    /// The refund's own ledger entry (its seq).
    pub refund: u64,
    /// The charge it reversed (its entry's seq).
    pub reverses: u64,
    /// Tokens of the charge it reversed.
    pub refunded: u64,
    /// Tokens that went back to the lots: `refunded` less what expired at once (the part
    /// whose lot had expired).
    pub returned: u64,
    /// Tokens of the charge still refundable after it.
    pub left: u64,
    /// The account's balance after the request.
    pub new_balance: u64,
    /// True when this is the stored reply of an earlier request with the same idempotency
    /// key, sent again: nothing was changed this time.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replayed: bool,
}

/// `balance` reply data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BalanceData {
    pub user_id: String,
    pub balance: u64,
    /// The effective tier now (an expired entitlement reads `free`).
    pub tier: Tier,
    /// When a premium entitlement ends (RFC 3339), if it has an end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier_until: Option<String>,
    /// Present only when no primary could be reached and a standby answered: who, and as of
    /// when. The balance may then miss the latest changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<Stale>,
    /// The instant asked for with `at` (RFC 3339): `balance`, `tier` and `lots` are as they
    /// were then. Absent for the balance now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// True when `at` is after now: the balance is what expiry alone would leave by then,
    /// nothing else changing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub projected: bool,
    /// With `at`: the lots spendable then, in burn order, each as it was then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lots: Option<Vec<LotView>>,
}

/// `lots` reply data: the spendable lots, in burn order (the next charge takes from the
/// first), and the holds open now, whose tokens are in no lot until they end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LotsData {
    pub user_id: String,
    pub lots: Vec<LotView>,
    /// Holds open now, oldest first.
    #[serde(default)]
    pub holds: Vec<OpenHoldView>,
}

/// An open hold: tokens set aside until it is captured, voided or expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OpenHoldView {
    /// The hold's id (what `capture` and `void` name).
    pub hold: u64,
    /// Tokens held.
    pub amount: u64,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it expires, its tokens going back, unless it ends before (RFC 3339).
    pub expires_at: String,
}

impl From<&crate::domain::Hold> for OpenHoldView {
    fn from(hold: &crate::domain::Hold) -> OpenHoldView {
        OpenHoldView {
            hold: hold.id,
            amount: hold.amount,
            created_at: format_instant(hold.created_at),
            expires_at: format_instant(hold.expires_at),
        }
    }
}

/// One lot: tokens credited together, what is left of them, and when they may be spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LotView {
    /// The sequence number of the entry that credited it (0: the balance kept before lots).
    pub id: u64,
    /// Tokens credited.
    pub amount: u64,
    /// Tokens left.
    pub remaining: u64,
    /// When the credit that opened it was made (RFC 3339): spendable from then on.
    pub effective_at: String,
    /// When what is left of it expires (RFC 3339); absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// 0-100, lower spent first.
    pub priority: u8,
    pub kind: crate::domain::LotKind,
}

impl From<&crate::domain::Lot> for LotView {
    fn from(lot: &crate::domain::Lot) -> LotView {
        LotView {
            id: lot.id,
            amount: lot.amount,
            remaining: lot.remaining,
            effective_at: format_instant(lot.effective_at),
            expires_at: lot.expires_at.map(format_instant),
            priority: lot.priority,
            kind: lot.kind,
        }
    }
}

/// `entitle` reply data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EntitleData {
    pub user_id: String,
    pub tier: Tier,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// `status` reply data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusData {
    /// memesd's version.
    pub version: String,
    pub protocol: u32,
    pub uptime_secs: f64,
    /// Accounts (the last known count while `unreachable` is present).
    pub accounts: u64,
    pub memes: u64,
    /// Ledger entries written so far (the last known count while `unreachable` is present).
    pub entries: u64,
    /// False while the ledger cannot be written (disk full, I/O error, its database
    /// unreachable or read-only).
    pub writable: bool,
    /// Present while the ledger's database (PostgreSQL) cannot be reached: where, since when
    /// and why. `accounts` and `entries` are then the last known counts, as of `counted_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<StatusUnreachable>,
}

/// `status`: the ledger's database that cannot be reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusUnreachable {
    /// Where the database is: hosts, ports and database name (never a password).
    pub store: String,
    /// Since when no host has given a usable connection (RFC 3339).
    pub since: String,
    /// Seconds since then.
    pub for_secs: f64,
    /// What each host answered.
    pub reason: String,
    /// When `accounts` and `entries` were last counted (RFC 3339); absent if they have not
    /// been since memesd started (they are 0 then, not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counted_at: Option<String>,
}

/// `history` reply data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryData {
    pub user_id: String,
    /// Oldest first.
    pub entries: Vec<HistoryEntry>,
    /// Present when older entries exist: pass it as `before` to get them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Present only when no primary could be reached and a standby answered: who, and as of
    /// when. The newest entries may then be missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stale: Option<Stale>,
}

/// One `search` (or `similar`) result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchHit<M = MemeView> {
    /// What the hits are ordered by: the cosine plus a saturating share of the BM25F score
    /// (for `similar`, the cosine), or the BM25F score where the daemon ranks by words alone.
    pub score: f32,
    /// The BM25F score of the query's words (0 when none matched). Absent where the daemon
    /// ranks by words alone (`score` is this then) and in `similar` replies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bm25: Option<f32>,
    /// The cosine (-1 to 1) of the query's and the meme's embeddings: closeness in meaning.
    /// Absent where the daemon ranks by words alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meaning: Option<f32>,
    pub meme: M,
}

/// `search` reply data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SearchData<M = MemeView> {
    pub query: String,
    pub hits: Vec<SearchHit<M>>,
}

/// `similar` reply data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SimilarData<M = MemeView> {
    /// The id of the meme the hits are near to.
    pub meme_id: String,
    /// Nearest first; the meme itself is not among them.
    pub hits: Vec<SearchHit<M>>,
}

/// `reload` reply data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReloadData {
    pub memes: u64,
    pub source: String,
    /// Admin keys now in service, read again from memesd's `--admin-keys` file; absent
    /// when memesd has no such file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_keys: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_that_look_alike_are_refused_not_merged() {
        for (id, why) in [
            (" u1", "white space"),
            ("u1 ", "white space"),
            ("u1\u{00A0}", "white space"),
            ("\u{200B}u1", "invisible"),
            ("u\u{200D}1", "invisible"),
            ("u1\u{202E}", "invisible"),
            ("\u{FEFF}u1", "invisible"),
            ("\u{3164}", "invisible"),
            ("Zoe\u{0308}", "NFC"),
        ] {
            let error = validate_user(id).expect_err(id);
            assert_eq!(error.code, ErrorCode::InvalidArgument);
            assert!(error.message.contains(why), "{id:?}: {}", error.message);
        }
        assert!(validate_user("Zo\u{00EB}").is_ok(), "NFC Zoë");
        assert!(
            validate_user("ann smith").is_ok(),
            "white space inside is fine"
        );
        assert!(
            validate_user("U1").is_ok() && validate_user("u1").is_ok(),
            "two ids"
        );
        assert!(
            validate_user("\u{2764}\u{FE0F}").is_ok(),
            "an emoji with its variation selector"
        );
    }

    #[test]
    fn ascii_ids_are_judged_as_the_full_rule_judges_them() {
        let long = "x".repeat(MAX_USER_CHARS);
        for id in ["u1", "a b", "~!@#", " u", "u ", "u\x7f", "\tu", &long] {
            let judged = validate_user(id).is_ok();
            let full = !id.is_empty()
                && id.chars().count() <= MAX_USER_CHARS
                && !id.chars().any(|c| c.is_control() || is_invisible(c))
                && !id.starts_with(char::is_whitespace)
                && !id.ends_with(char::is_whitespace)
                && unicode_normalization::is_nfc(id);
            assert_eq!(judged, full, "{id:?}");
        }
        assert!(validate_user(&format!("{long}x")).is_err());
    }

    #[test]
    fn user_id_limits_count_characters_not_bytes() {
        let ok = "é".repeat(MAX_USER_CHARS);
        assert!(validate_user(&ok).is_ok());
        assert!(validate_user(&format!("{ok}é")).is_err());
    }

    #[test]
    fn a_read_from_a_standby_adds_stale_and_nothing_else() {
        let mut data = BalanceData {
            user_id: "u1".into(),
            balance: 199,
            tier: Tier::Free,
            tier_until: None,
            stale: None,
            at: None,
            projected: false,
            lots: None,
        };
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"user_id":"u1","balance":199,"tier":"free"}"#
        );
        data.stale = Some(Stale {
            from: "db2:5432".into(),
            as_of: Some("2026-12-07T06:49:58.31Z".into()),
            age_secs: Some(12.4),
        });
        let line = serde_json::to_string(&data).unwrap();
        assert_eq!(
            line,
            r#"{"user_id":"u1","balance":199,"tier":"free","stale":{"from":"db2:5432","as_of":"2026-12-07T06:49:58.31Z","age_secs":12.4}}"#
        );
        assert_eq!(serde_json::from_str::<BalanceData>(&line).unwrap(), data);
    }

    #[test]
    fn instants_round_trip() {
        let ms = parse_instant("2027-01-31T00:00:00Z").unwrap();
        assert_eq!(ms, 1_801_353_600_000);
        assert_eq!(format_instant(ms), "2027-01-31T00:00:00Z");
    }
}
