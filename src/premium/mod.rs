//! Premium: who is premium, and the generated memes only premium users get.
//!
//! A request is premium if it carries a valid signed claim with `"tier": "premium"` (see
//! [`claims`]) or if the user's account holds an unexpired premium entitlement (set with
//! `entitle`). Both checks are in memory, and a plain `get` pays for neither unless it
//! carries a token.
//!
//! This module makes and keeps the images; it charges nothing. The service charges
//! `generate_cost` tokens only once an image is completely written (see
//! [`crate::service::deliver`]). Sub-modules: [`render`] draws captions on the built-in
//! templates; [`generate`] chooses template and caption, runs the backend and stores the
//! file, named by its SHA-256.

pub mod claims;
pub mod generate;
pub mod render;

use crate::domain::ErrorCode;
use crate::protocol::{GeneratedImage, Location};
use base64::Engine;
use claims::{Claims, ClaimsVerifier};
use generate::{Backend, Generator, Plan};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use tokio::sync::Semaphore;

/// Why a premium step (verifying a claim, making or restoring an image) was refused or
/// failed: a code from the closed set and a message for people. Premium's own, so that it
/// sits below the service, which turns it into its error as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PremiumError {
    pub code: ErrorCode,
    pub message: String,
}

impl PremiumError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> PremiumError {
        PremiumError {
            code,
            message: message.into(),
        }
    }

    pub fn not_allowed(message: impl Into<String>) -> PremiumError {
        PremiumError::new(ErrorCode::NotAllowed, message)
    }

    pub fn internal(message: impl Into<String>) -> PremiumError {
        PremiumError::new(ErrorCode::Internal, message)
    }
}

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

/// A generated image, stored: what a reply describes, and its bytes.
pub struct Made {
    pub image: GeneratedImage,
    pub png: Vec<u8>,
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

    /// Tokens per generated meme.
    pub fn cost(&self) -> u64 {
        self.cost
    }

    /// True when tokens can be verified (a claims key was given).
    pub fn verifies_tokens(&self) -> bool {
        self.claims.is_some()
    }

    /// Verifies a signed claim (JWT): its claims, or why it was refused.
    pub fn verify(&self, token: &str) -> Result<Claims, PremiumError> {
        let verifier = self.claims.as_ref().ok_or_else(|| {
            PremiumError::not_allowed(
                "this memesd accepts no tokens (it was started without --claims-key)",
            )
        })?;
        verifier.verify(token).map_err(PremiumError::not_allowed)
    }

    /// Checks the token a request carries for `user`, if it has one: `Ok(true)` if it makes
    /// the request premium.
    pub fn verify_token(&self, user: &str, token: Option<&str>) -> Result<bool, PremiumError> {
        let Some(token) = token else {
            return Ok(false);
        };
        let claims = self.verify(token)?;
        if claims.sub != user {
            return Err(PremiumError::not_allowed(format!(
                "the token was issued for user {:?}, not {user:?}",
                claims.sub
            )));
        }
        Ok(claims.is_premium())
    }

    /// The template and caption for a query and a place.
    pub fn plan(&self, query: Option<&str>, location: Option<&Location>) -> Plan {
        self.generator.plan(query, location)
    }

    /// Produces the image for `plan` and stores it, content-addressed. Nothing is charged
    /// here: the caller charges once this has succeeded.
    pub async fn make(
        &self,
        user: &str,
        query: Option<&str>,
        plan: &Plan,
        location: Option<&Location>,
    ) -> Result<Made, PremiumError> {
        let input = GeneratorInput {
            user,
            query,
            template: &plan.template,
            top: &plan.top,
            bottom: &plan.bottom,
            location,
        };
        let png = {
            let _slot = self.render_slots.acquire().await.expect("never closed");
            self.generator.produce(plan, &input).await?
        };
        let (out_dir, bytes) = (self.out_dir.clone(), png.bytes);
        let (stored, bytes) = tokio::task::spawn_blocking(move || {
            generate::store_png(&out_dir, &bytes).map(|stored| (stored, bytes))
        })
        .await
        .map_err(|e| PremiumError::internal(format!("storing the image failed: {e}")))?
        .map_err(|e| {
            // The details name this host's paths: for the log, not for the client.
            tracing::error!("storing a generated image failed: {e}");
            PremiumError::internal("storing the image failed; nothing was charged")
        })?;
        Ok(Made {
            image: GeneratedImage {
                path: stored.path.display().to_string(),
                bytes: bytes.len() as u64,
                width: png.width,
                height: png.height,
                url: GeneratedImage::url_of(&stored.sha256),
                sha256: stored.sha256,
                template: plan.template.clone(),
                top: plan.top.clone(),
                bottom: plan.bottom.clone(),
                png_base64: None,
            },
            png: bytes,
        })
    }

    /// Where an image with this SHA-256 is (or would be) stored on this host.
    pub fn image_path(&self, sha256: &str) -> PathBuf {
        self.out_dir.join(format!("{sha256}.png"))
    }

    /// Makes sure an image a stored reply describes is on this host, and points the reply
    /// at it: it may have been made by another host, or removed. The built-in renderer is
    /// deterministic, so the image is made again from its template and caption and checked
    /// against its SHA-256; an external generator's image cannot be made again, and is then
    /// reported missing. Returns the PNG's bytes.
    pub async fn restore(&self, image: &mut GeneratedImage) -> Result<Vec<u8>, PremiumError> {
        let path = self.image_path(&image.sha256);
        let missing = || {
            PremiumError::new(
                ErrorCode::NotFound,
                format!(
                    "the generated image {} is not stored on this memesd and cannot be made again here",
                    image.sha256
                ),
            )
        };
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::read(path))
                .await
                .map_err(|e| PremiumError::internal(format!("reading the image: {e}")))?
        };
        let bytes = match read {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if !matches!(self.generator.backend(), Backend::Builtin) {
                    return Err(missing());
                }
                let plan = Plan {
                    template: image.template.clone(),
                    top: image.top.clone(),
                    bottom: image.bottom.clone(),
                };
                let made = self.make("", None, &plan, None).await?;
                if made.image.sha256 != image.sha256 {
                    return Err(missing());
                }
                made.png
            }
            Err(error) => {
                return Err(PremiumError::internal(format!(
                    "reading {}: {error}",
                    path.display()
                )));
            }
        };
        if format!("{:x}", Sha256::digest(&bytes)) != image.sha256 {
            return Err(PremiumError::internal(format!(
                "{} does not hold the image it is named after",
                path.display()
            )));
        }
        image.path = path.display().to_string();
        image.url = GeneratedImage::url_of(&image.sha256);
        Ok(bytes)
    }
}

/// The PNG as base64, for replies that ask for the image inline.
pub fn inline(png: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(png)
}
