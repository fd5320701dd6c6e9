//! The admin keys memesd accepts over HTTP (`--admin-keys FILE`: one `name sha256hex` line
//! per key; the file holds hashes, never keys), held where every front and every reload sees
//! the same set.
//!
//! The file is read at start-up and again on every reload (SIGHUP, `reload`), so a key
//! removed from the file stops working at once and a key added works without a restart. A
//! file that does not parse changes nothing: the keys in service stay, and the reload says
//! which line is wrong. Only hashes are kept; a presented key's SHA-256 is compared with
//! every stored one in constant time. Telling a bearer apart is the HTTP front's business
//! (`fronts::http::auth`), not this module's.

use arc_swap::ArcSwap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// One admin key, as the keys file holds it.
struct AdminKey {
    name: String,
    sha256: [u8; 32],
}

/// The admin keys in service, and the file they come from.
pub struct AdminKeys {
    path: Option<PathBuf>,
    keys: ArcSwap<Vec<AdminKey>>,
}

/// Keys read from the file, not yet in service (see [`AdminKeys::install`]).
pub struct ReadKeys(Vec<AdminKey>);

impl ReadKeys {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AdminKeys {
    /// No keys file: no admin key is accepted.
    pub fn none() -> AdminKeys {
        AdminKeys {
            path: None,
            keys: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// The keys in `path`; an error names the file and the line that is wrong.
    pub fn from_file(path: &Path) -> Result<AdminKeys, String> {
        let keys = read(path)?;
        Ok(AdminKeys {
            path: Some(path.to_path_buf()),
            keys: ArcSwap::from_pointee(keys.0),
        })
    }

    /// The keys file, if memesd has one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the keys file again without putting it in service, so that a reload can check
    /// everything it reloads before it changes anything. `None` without a keys file.
    pub fn read_again(&self) -> Result<Option<ReadKeys>, String> {
        self.path.as_deref().map(read).transpose()
    }

    /// Puts keys read by [`AdminKeys::read_again`] in service: from the next request on,
    /// only these keys are accepted.
    pub fn install(&self, keys: ReadKeys) {
        self.keys.store(Arc::new(keys.0));
    }

    /// How many keys are in service.
    pub fn len(&self) -> usize {
        self.keys.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name of the key whose SHA-256 is `digest`, if it is in service.
    pub fn find(&self, digest: &[u8; 32]) -> Option<String> {
        // Every stored key is compared, each in constant time, so the time taken tells
        // nothing about which key or how much of one matched.
        let keys = self.keys.load();
        let mut found = None;
        for key in keys.iter() {
            if bool::from(key.sha256.ct_eq(digest)) {
                found = Some(&key.name);
            }
        }
        found.cloned()
    }
}

impl Default for AdminKeys {
    fn default() -> Self {
        AdminKeys::none()
    }
}

impl fmt::Debug for AdminKeys {
    // Names the file and counts the keys; the hashes stay out of any log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminKeys")
            .field("path", &self.path)
            .field("keys", &self.len())
            .finish()
    }
}

/// Reads a keys file: `name sha256hex` per line; blank lines and `#` comments are skipped.
fn read(path: &Path) -> Result<ReadKeys, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("{}, line {}: {why}", path.display(), number + 1);
        let (name, hash) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| bad("expected `name sha256hex`"))?;
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(hash.trim(), &mut sha256)
            .map_err(|_| bad("the hash is not 64 hexadecimal digits"))?;
        keys.push(AdminKey {
            name: name.to_string(),
            sha256,
        });
    }
    Ok(ReadKeys(keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn digest(key: &str) -> [u8; 32] {
        Sha256::digest(key.as_bytes()).into()
    }

    fn line(name: &str, key: &str) -> String {
        format!("{name} {}\n", hex::encode(digest(key)))
    }

    #[test]
    fn keys_are_found_by_their_hash_and_reread_only_when_installed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("# admins\n\n{}", line("ops", "k1"))).unwrap();
        let keys = AdminKeys::from_file(&path).unwrap();
        assert_eq!(keys.find(&digest("k1")).as_deref(), Some("ops"));
        assert_eq!(keys.find(&digest("k2")), None);

        std::fs::write(&path, line("new", "k2")).unwrap();
        let read = keys.read_again().unwrap().unwrap();
        assert_eq!(read.len(), 1);
        // Read, not yet in service.
        assert_eq!(keys.find(&digest("k1")).as_deref(), Some("ops"));
        keys.install(read);
        assert_eq!(keys.find(&digest("k1")), None);
        assert_eq!(keys.find(&digest("k2")).as_deref(), Some("new"));
    }

    #[test]
    fn a_malformed_file_is_refused_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, format!("{}ops nothex\n", line("a", "k1"))).unwrap();
        let error = AdminKeys::from_file(&path).unwrap_err();
        assert!(
            error.contains("line 2") && error.contains("hexadecimal"),
            "{error}"
        );
        std::fs::write(&path, "lonely\n").unwrap();
        let error = AdminKeys::from_file(&path).unwrap_err();
        assert!(
            error.contains("line 1") && error.contains("name sha256hex"),
            "{error}"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(AdminKeys::from_file(&path).unwrap_err().contains("reading"));
        assert!(AdminKeys::none().read_again().unwrap().is_none());
    }
}
