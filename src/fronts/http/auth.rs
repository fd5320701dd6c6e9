//! Who an HTTP request comes from: the `Authorization: Bearer …` credential, made into a
//! [`Principal`] for the service.
//!
//! - An admin key (`--admin-keys FILE`: one `name sha256hex` line per key; the file holds
//!   hashes, never keys). The keys in service are the service's
//!   ([`crate::service::AdminKeys`]), so a reload revokes or adds one for every front at once.
//! - A user's signed token (JWT), when memesd has a claims key: its `sub` is the user, its
//!   `tier` claim may make the request premium. Verified claims are cached, keyed by the
//!   token's SHA-256 and never past the token's `exp`, so a client that repeats its token
//!   pays a lookup, not a signature check.
//! - Without a claims key (development mode): the bearer is the user id itself, as in the
//!   original write-up. memesd refuses to do that on a non-loopback address unless told to.
//!
//! Payment webhooks sign instead ([`WebhookSecret`]): `Memes-Signature: t=<unix seconds>,
//! v1=<hex HMAC-SHA256 of "t.body">`, as Stripe does, within five minutes of now.

// Re-exported where the integration tests and older callers look for them.
pub use crate::credentials::{ADMIN_KEY_PREFIX, new_admin_key};
use crate::domain::ErrorCode;
use crate::protocol::validate_user;
use crate::service::{Principal, Service, ServiceError};
use axum::http::HeaderValue;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// Verified tokens remembered at once.
const CLAIMS_CACHE: usize = 65_536;
/// How far a webhook's timestamp may be from now.
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(300);

/// What a cached token said, and until when.
#[derive(Clone)]
struct Verified {
    user: String,
    premium: bool,
    /// Seconds since the epoch.
    exp: u64,
}

/// Verified tokens by the SHA-256 of the token: bounded, and never served at or past the
/// token's `exp` (an entry that old is verified again, which refuses it once it expired).
struct ClaimsCache(quick_cache::sync::Cache<[u8; 32], Verified>);

impl ClaimsCache {
    fn new(capacity: usize) -> ClaimsCache {
        ClaimsCache(quick_cache::sync::Cache::new(capacity))
    }

    /// What the token with this digest was verified to say, if it is still valid at `now`
    /// (seconds since the epoch).
    fn get(&self, digest: &[u8; 32], now: u64) -> Option<Verified> {
        self.0.get(digest).filter(|verified| verified.exp > now)
    }

    fn insert(&self, digest: [u8; 32], verified: Verified) {
        self.0.insert(digest, verified);
    }
}

/// Tells callers apart by their bearer credential.
pub struct Credentials {
    claims: ClaimsCache,
}

/// Whether a token was found in the claims cache (for the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
}

impl Credentials {
    /// An empty claims cache.
    pub fn new() -> Credentials {
        Credentials {
            claims: ClaimsCache::new(CLAIMS_CACHE),
        }
    }

    /// The caller a request's headers name: `Anonymous` without a bearer, or an error for
    /// a credential that does not verify.
    pub fn principal(
        &self,
        service: &Service,
        authorization: Option<&HeaderValue>,
    ) -> Result<(Principal, Option<CacheOutcome>), ServiceError> {
        self.principal_at(service, authorization, unix_now())
    }

    /// [`Credentials::principal`] at `now` (seconds since the epoch), for the claims cache.
    pub(super) fn principal_at(
        &self,
        service: &Service,
        authorization: Option<&HeaderValue>,
        now: u64,
    ) -> Result<(Principal, Option<CacheOutcome>), ServiceError> {
        let Some(bearer) = bearer(authorization)? else {
            return Ok((Principal::Anonymous, None));
        };
        let digest: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
        if let Some(name) = service.admin_keys().find(&digest) {
            return Ok((Principal::Admin { name }, None));
        }
        if bearer.starts_with(ADMIN_KEY_PREFIX) {
            // A revoked or mistyped admin key: never a user id (in development mode it
            // would otherwise open an account named after the key).
            return Err(unauthorized(
                "this admin key is not in memesd's --admin-keys file",
            ));
        }
        if !service.verifies_tokens() {
            // Development mode: the bearer is the user id.
            validate_user(bearer).map_err(|e| unauthorized(e.message))?;
            return Ok((
                Principal::User {
                    id: bearer.to_string(),
                    premium: false,
                },
                None,
            ));
        }
        if let Some(verified) = self.claims.get(&digest, now) {
            return Ok((
                Principal::User {
                    id: verified.user,
                    premium: verified.premium,
                },
                Some(CacheOutcome::Hit),
            ));
        }
        let claims = service
            .verify_token(bearer)
            .map_err(|e| unauthorized(format!("the bearer token was refused: {}", e.message)))?;
        validate_user(&claims.sub)
            .map_err(|e| unauthorized(format!("the token's sub: {}", e.message)))?;
        let premium = claims.is_premium();
        let verified = Verified {
            user: claims.sub.clone(),
            premium,
            exp: claims.exp,
        };
        self.claims.insert(digest, verified);
        Ok((
            Principal::User {
                id: claims.sub,
                premium,
            },
            Some(CacheOutcome::Miss),
        ))
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials::new()
    }
}

/// The bearer credential of a request, if it has an `Authorization` header.
fn bearer(authorization: Option<&HeaderValue>) -> Result<Option<&str>, ServiceError> {
    let Some(value) = authorization else {
        return Ok(None);
    };
    // UTF-8, not just ASCII: a user id or a token's subject may be any text.
    let value = std::str::from_utf8(value.as_bytes())
        .map_err(|_| unauthorized("the Authorization header is not UTF-8 text"))?;
    let (scheme, credential) = value
        .split_once(' ')
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <credential>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(unauthorized(format!(
            "only Bearer credentials are accepted, not {scheme:?}"
        )));
    }
    let credential = credential.trim();
    if credential.is_empty() {
        return Err(unauthorized("the bearer credential is empty"));
    }
    Ok(Some(credential))
}

fn unauthorized(message: impl Into<String>) -> ServiceError {
    ServiceError::new(ErrorCode::Unauthorized, message)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The shared secret of payment webhooks.
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Reads the secret from a file (its bytes, a trailing newline ignored).
    pub fn from_file(path: &Path) -> Result<WebhookSecret, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes).to_vec();
        if secret.len() < 16 {
            return Err(format!(
                "{}: a webhook secret must be at least 16 bytes",
                path.display()
            ));
        }
        Ok(WebhookSecret(secret))
    }

    /// Checks a `Memes-Signature` header against the body, at `now` (seconds since the
    /// epoch).
    pub fn verify(&self, header: Option<&str>, body: &[u8], now: u64) -> Result<(), ServiceError> {
        let header = header.ok_or_else(|| unauthorized("the Memes-Signature header is missing"))?;
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", value)) => timestamp = value.parse::<u64>().ok(),
                Some(("v1", value)) => signatures.push(value),
                _ => {}
            }
        }
        let timestamp = timestamp
            .ok_or_else(|| unauthorized("the Memes-Signature header has no t=<unix seconds>"))?;
        if now.abs_diff(timestamp) > WEBHOOK_TOLERANCE.as_secs() {
            return Err(unauthorized(format!(
                "the webhook's timestamp is more than {} seconds from now",
                WEBHOOK_TOLERANCE.as_secs()
            )));
        }
        let expected = self.sign(timestamp, body);
        let good = signatures.iter().any(|given| {
            hex::decode(given).is_ok_and(|given| bool::from(given.ct_eq(&expected[..])))
        });
        if !good {
            return Err(unauthorized("the webhook's signature does not verify"));
        }
        Ok(())
    }

    /// HMAC-SHA256 of `"<timestamp>.<body>"`.
    pub fn sign(&self, timestamp: u64, body: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.finalize().into_bytes().into()
    }
}

/// Seconds since the epoch now, for webhook checks.
pub fn now_secs() -> u64 {
    unix_now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_admin_key_matches_its_line() {
        let (key, line) = new_admin_key("ops");
        assert!(key.starts_with(ADMIN_KEY_PREFIX));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("# admins\n\n{line}\n")).unwrap();
        let keys = crate::service::AdminKeys::from_file(&path).unwrap();
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        assert_eq!(keys.find(&digest).as_deref(), Some("ops"));
    }

    #[test]
    fn bearers_are_read_strictly() {
        assert_eq!(bearer(None).unwrap(), None);
        let value = HeaderValue::from_static("Bearer abc");
        assert_eq!(bearer(Some(&value)).unwrap(), Some("abc"));
        let value = HeaderValue::from_static("bearer  abc ");
        assert_eq!(bearer(Some(&value)).unwrap(), Some("abc"));
        for bad in ["Basic dTpw", "Bearer", "Bearer  ", "abc"] {
            let value = HeaderValue::from_static(bad);
            assert_eq!(
                bearer(Some(&value)).unwrap_err().code,
                ErrorCode::Unauthorized,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn webhook_signatures_are_checked_with_a_tolerance() {
        let secret = WebhookSecret(b"whsec_0123456789abcdef".to_vec());
        let body = br#"{"id":"evt_1","user_id":"u","amount":5}"#;
        let now = 1_800_000_000;
        let signed =
            |t: u64, body: &[u8]| format!("t={t},v1={}", hex::encode(secret.sign(t, body)));
        assert!(secret.verify(Some(&signed(now, body)), body, now).is_ok());
        assert!(
            secret
                .verify(Some(&signed(now - 299, body)), body, now)
                .is_ok()
        );
        let stale = secret.verify(Some(&signed(now - 301, body)), body, now);
        assert!(stale.unwrap_err().message.contains("timestamp"));
        let tampered = secret.verify(Some(&signed(now, body)), b"{}", now);
        assert!(tampered.unwrap_err().message.contains("does not verify"));
        assert!(secret.verify(None, body, now).is_err());
        assert!(secret.verify(Some("v1=00"), body, now).is_err());
        // Several signatures (a secret being rolled over): one good one is enough.
        let rolled = format!("t={now},v1=00ff,v1={}", hex::encode(secret.sign(now, body)));
        assert!(secret.verify(Some(&rolled), body, now).is_ok());
    }
}
