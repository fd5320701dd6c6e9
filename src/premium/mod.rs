//! Premium: who is premium, and the generated memes only premium users get.
//!
//! A request is premium if it carries a valid signed claim with `"tier": "premium"` (see
//! [`claims`]) or if the user's account holds an unexpired premium entitlement (set with
//! `entitle`). Both checks are in memory, and a plain `get` pays for neither unless it
//! carries a token.
//!
//! A generated meme is charged `generate_cost` tokens, and only after its PNG is completely
//! written; a refusal or a failure charges nothing. Sub-modules: [`render`] draws captions on
//! the built-in templates; [`generate`] chooses template and caption, runs the backend and
//! stores the file.

pub mod claims;
pub mod generate;
pub mod render;

use crate::protocol::{ErrorBody, ErrorCode, GeneratedImage, GetData, GetRequest, Location, Tier};
use crate::store::{ChargeRequest, Commit, Idempotency, Outcome, StoreError, TokenStore, now_ms};
use base64::Engine;
use claims::ClaimsVerifier;
use generate::Generator;
use serde::Serialize;
use serde_json::value::RawValue;
use std::path::PathBuf;
use tokio::sync::Semaphore;

/// Settings and state of the premium features.
pub struct Premium {
    claims: Option<ClaimsVerifier>,
    generator: Generator,
    /// Where generated images are stored.
    out_dir: PathBuf,
    /// Tokens per generated meme.
    cost: u64,
    /// Images rendered at once: rendering is CPU-bound and must not starve plain requests.
    render_slots: Semaphore,
}

/// What an external generator receives on stdin.
#[derive(Serialize)]
struct GeneratorInput<'a> {
    user: &'a str,
    query: Option<&'a str>,
    template: &'a str,
    top: &'a str,
    bottom: &'a str,
    location: Option<&'a Location>,
}

impl Premium {
    pub fn new(
        claims: Option<ClaimsVerifier>,
        generator: Generator,
        out_dir: PathBuf,
        cost: u64,
    ) -> Premium {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Premium {
            claims,
            generator,
            out_dir,
            cost,
            render_slots: Semaphore::new(cores.max(1)),
        }
    }

    /// Checks a request's token, if it has one: `Ok(true)` if it makes the request premium.
    pub fn verify_token(&self, request: &GetRequest) -> Result<bool, ErrorBody> {
        let Some(token) = &request.token else {
            return Ok(false);
        };
        let not_allowed = |message: String| ErrorBody::new(ErrorCode::NotAllowed, message);
        let verifier = self.claims.as_ref().ok_or_else(|| {
            not_allowed(
                "this memesd accepts no tokens (it was started without --claims-key)".into(),
            )
        })?;
        let claims = verifier.verify(token).map_err(not_allowed)?;
        if claims.sub != request.user {
            return Err(not_allowed(format!(
                "the token was issued for user {:?}, not {:?}",
                claims.sub, request.user
            )));
        }
        Ok(claims.is_premium())
    }

    /// Serves a `get` with `generate`: the reply data and its commit.
    pub async fn generate(
        &self,
        store: &dyn TokenStore,
        request: &GetRequest,
        location: Option<Location>,
        fingerprint: &str,
    ) -> Result<(Box<RawValue>, Commit), ErrorBody> {
        let token_premium = self.verify_token(request)?;
        let idem = request
            .idempotency_key
            .as_deref()
            .map(|key| Idempotency { key, fingerprint });
        if let Some(idem) = &idem
            && let Some((reply, commit)) = store.replay(idem).map_err(ErrorBody::from)?
        {
            return Ok((self.with_inline(reply, request.inline)?, commit));
        }
        let account = match store.account(&request.user) {
            Ok((account, _)) => Some(account),
            Err(StoreError::UnknownUser(_)) => None,
            Err(error) => return Err(error.into()),
        };
        let entitled = account.is_some_and(|a| a.tier_at(now_ms()) == Tier::Premium);
        if !token_premium && !entitled {
            return Err(ErrorBody::new(
                ErrorCode::NotAllowed,
                format!(
                    "generated memes are for premium users; {:?} is on the free tier (nothing was charged)",
                    request.user
                ),
            ));
        }
        if let Some(account) = account
            && account.balance < self.cost
        {
            // Refuse before spending a render on a request that cannot be paid for.
            return Err(ErrorBody::from(StoreError::InsufficientTokens {
                user: request.user.clone(),
                balance: account.balance,
                needed: self.cost,
            }));
        }

        let plan = self
            .generator
            .plan(request.query.as_deref(), location.as_ref());
        let input = GeneratorInput {
            user: &request.user,
            query: request.query.as_deref(),
            template: &plan.template,
            top: &plan.top,
            bottom: &plan.bottom,
            location: location.as_ref(),
        };
        let png = {
            let _slot = self.render_slots.acquire().await.expect("never closed");
            self.generator.produce(&plan, &input).await?
        };
        let (out_dir, bytes) = (self.out_dir.clone(), png.bytes);
        let stored = tokio::task::spawn_blocking(move || {
            generate::store_png(&out_dir, &bytes).map(|s| (s, bytes.len()))
        })
        .await
        .map_err(|e| {
            ErrorBody::new(
                ErrorCode::Internal,
                format!("storing the image failed: {e}"),
            )
        })?
        .map_err(|e| {
            ErrorBody::new(
                ErrorCode::Internal,
                format!("storing the image failed: {e}"),
            )
        })?;
        let (stored, size) = stored;

        let data = |balance: u64| GetData::<()> {
            user_id: request.user.clone(),
            meme: None,
            memes: None,
            generated: Some(GeneratedImage {
                path: stored.path.display().to_string(),
                bytes: size as u64,
                width: png.width,
                height: png.height,
                sha256: stored.sha256.clone(),
                template: plan.template.clone(),
                top: plan.top.clone(),
                bottom: plan.bottom.clone(),
                png_base64: None,
            }),
            charged: self.cost,
            balance,
            location: location.clone(),
        };
        let reply = |balance: u64| {
            serde_json::value::to_raw_value(&data(balance)).expect("reply serialises")
        };
        let memo = format!("generated:{}", &stored.sha256[..16]);
        let charge = ChargeRequest {
            user: &request.user,
            cost: self.cost,
            memes: &[&memo],
            keyed: idem.map(|idem| (idem, &reply as &dyn Fn(u64) -> Box<RawValue>)),
        };
        let (outcome, commit) = store.charge(&charge).map_err(ErrorBody::from)?;
        let reply = match outcome {
            Outcome::Applied(balance) => reply(balance),
            Outcome::Replayed(reply) => reply,
        };
        Ok((self.with_inline(reply, request.inline)?, commit))
    }

    /// Adds the PNG itself (base64) to a reply when the request asked for it inline. Stored
    /// replies never carry it, so the ledger holds paths, not images.
    fn with_inline(&self, reply: Box<RawValue>, inline: bool) -> Result<Box<RawValue>, ErrorBody> {
        if !inline {
            return Ok(reply);
        }
        let internal = |message: String| ErrorBody::new(ErrorCode::Internal, message);
        let mut data: GetData<serde_json::Value> = serde_json::from_str(reply.get())
            .map_err(|e| internal(format!("stored reply: {e}")))?;
        if let Some(generated) = &mut data.generated {
            let bytes = std::fs::read(&generated.path)
                .map_err(|e| internal(format!("reading {}: {e}", generated.path)))?;
            generated.png_base64 = Some(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        Ok(serde_json::value::to_raw_value(&data).expect("reply serialises"))
    }
}
