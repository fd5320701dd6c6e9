//! Signed claims: a JWT carried with a request, issued by an auth service, naming the user
//! (`sub`) and possibly `"tier": "premium"`. Verified with the key given to `--claims-key`:
//! an HS256 shared secret (the file's bytes), or an Ed25519 public key (a PEM file), which
//! lets the daemon verify tokens without being able to mint them.
//!
//! Verification is one signature check, in memory. Every refusal says which check failed.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::path::Path;
use std::time::Duration;

/// Clock difference tolerated between the issuer and this host, unless memesd is told
/// otherwise (`--claims-leeway`): a token is accepted this long past its `exp` and this long
/// before its `nbf`, because the issuer's clock and ours never agree exactly.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The claims memes reads from a token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Claims {
    /// The user the token was issued for.
    pub sub: String,
    /// `"premium"` makes the request premium.
    #[serde(default)]
    pub tier: Option<String>,
    /// Expiry, seconds since the Unix epoch. Required: verification refuses a token
    /// without it (and says so) before this default could matter.
    #[serde(default)]
    pub exp: u64,
}

impl Claims {
    pub fn is_premium(&self) -> bool {
        self.tier.as_deref() == Some("premium")
    }
}

/// Checks tokens against one key.
pub struct ClaimsVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl ClaimsVerifier {
    /// Reads the key file: a PEM Ed25519 public key, or else an HS256 secret (its bytes, a
    /// trailing newline ignored).
    pub fn from_file(path: &Path) -> Result<ClaimsVerifier, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        if bytes.starts_with(b"-----BEGIN") {
            let key = DecodingKey::from_ed_pem(&bytes)
                .map_err(|e| format!("{}: not an Ed25519 public key: {e}", path.display()))?;
            return Ok(ClaimsVerifier::new(key, Algorithm::EdDSA));
        }
        let secret = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
        if secret.len() < 16 {
            return Err(format!(
                "{}: an HS256 secret must be at least 16 bytes",
                path.display()
            ));
        }
        Ok(ClaimsVerifier::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
        ))
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> ClaimsVerifier {
        let mut validation = Validation::new(algorithm);
        validation.leeway = DEFAULT_LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        ClaimsVerifier { key, validation }
    }

    /// Tolerates this much clock difference instead of [`DEFAULT_LEEWAY`] (whole seconds:
    /// JWT times are seconds).
    pub fn with_leeway(mut self, leeway: Duration) -> ClaimsVerifier {
        self.validation.leeway = leeway.as_secs();
        self
    }

    /// The token's claims if its signature, algorithm, expiry and not-before all check out.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => "the token has expired (exp is in the past)".into(),
                ErrorKind::ImmatureSignature => {
                    "the token is not valid yet (nbf is in the future)".into()
                }
                ErrorKind::InvalidSignature => "the token's signature does not verify".into(),
                ErrorKind::InvalidAlgorithm => format!(
                    "the token is not signed with {:?}, the algorithm of this daemon's key",
                    self.validation.algorithms[0]
                ),
                ErrorKind::MissingRequiredClaim(claim) => {
                    format!("the token has no {claim:?} claim")
                }
                ErrorKind::InvalidClaimFormat(claim) => {
                    format!("the token's {claim:?} claim is malformed")
                }
                other => format!("the token is malformed ({other:?})"),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    const SECRET: &[u8] = b"a test secret of enough length";

    fn verifier() -> ClaimsVerifier {
        ClaimsVerifier::new(DecodingKey::from_secret(SECRET), Algorithm::HS256)
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn now() -> i64 {
        crate::domain::now_ms() / 1000
    }

    #[test]
    fn the_leeway_is_how_long_past_exp_and_before_nbf_a_token_still_verifies() {
        let expired = token(serde_json::json!({"sub": "u1", "exp": now() - 45}));
        let early = token(serde_json::json!({"sub": "u1", "exp": now() + 600, "nbf": now() + 45}));
        for token in [&expired, &early] {
            assert!(verifier().verify(token).is_err(), "30 s by default");
            let wide = verifier().with_leeway(Duration::from_secs(60));
            assert_eq!(wide.verify(token).unwrap().sub, "u1");
        }
        let just_expired = token(serde_json::json!({"sub": "u1", "exp": now() - 5}));
        assert!(verifier().verify(&just_expired).is_ok());
        let strict = verifier().with_leeway(Duration::ZERO);
        assert!(
            strict
                .verify(&just_expired)
                .unwrap_err()
                .contains("expired")
        );
    }

    #[test]
    fn a_valid_premium_token_verifies() {
        let claims = verifier()
            .verify(&token(
                serde_json::json!({"sub": "u1", "tier": "premium", "exp": now() + 600}),
            ))
            .unwrap();
        assert_eq!(claims.sub, "u1");
        assert!(claims.is_premium());
    }

    #[test]
    fn each_failed_check_is_named() {
        let v = verifier();
        let expired = v.verify(&token(serde_json::json!({"sub": "u", "exp": now() - 3600})));
        assert!(expired.unwrap_err().contains("expired"));
        let early = v.verify(&token(
            serde_json::json!({"sub": "u", "exp": now() + 7200, "nbf": now() + 3600}),
        ));
        assert!(early.unwrap_err().contains("not valid yet"));
        let good = token(serde_json::json!({"sub": "u", "exp": now() + 600}));
        let mut altered = good.clone().into_bytes();
        let at = good.rfind('.').unwrap() + 3;
        altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert!(v.verify(&altered).unwrap_err().contains("signature"));
        assert!(v.verify("not a token").unwrap_err().contains("malformed"));
        let no_exp = v.verify(&token(serde_json::json!({"sub": "u"})));
        assert!(no_exp.unwrap_err().contains("\"exp\""));
    }

    #[test]
    fn an_ed25519_public_key_verifies_eddsa_tokens_and_refuses_hs256_ones() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let verifier = ClaimsVerifier::from_file(&fixtures.join("ed25519-public.pem")).unwrap();
        let private = std::fs::read(fixtures.join("ed25519-private.pem")).unwrap();
        let claims = serde_json::json!({"sub": "u1", "tier": "premium", "exp": now() + 600});
        let signed = encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_ed_pem(&private).unwrap(),
        )
        .unwrap();
        assert!(verifier.verify(&signed).unwrap().is_premium());
        // A token MACed with some secret must not pass as signed by the key.
        let forged = token(claims);
        assert!(verifier.verify(&forged).unwrap_err().contains("algorithm"));
    }
}
