//! Admin keys as text, for whoever makes or recognises one: their prefix, and making a fresh
//! key with the `name sha256hex` line that memesd's `--admin-keys` file holds for it.
//!
//! Front-neutral on purpose: the CLI makes keys without a daemon (`memes admin-key new`),
//! the HTTP front recognises a bearer that looks like one, and the service keeps the hashes
//! in service ([`crate::service::AdminKeys`]). Checking a presented key is not done here.

use sha2::{Digest, Sha256};

/// Admin keys start with this, so a leaked one is recognisable (and secret scanners can
/// find it).
pub const ADMIN_KEY_PREFIX: &str = "memes_admin_";

/// A fresh admin key and the keys-file line for it.
pub fn new_admin_key(name: &str) -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the kernel's random source works");
    let key = format!("{ADMIN_KEY_PREFIX}{}", hex::encode(bytes));
    let line = format!("{name} {}", hex::encode(Sha256::digest(key.as_bytes())));
    (key, line)
}
