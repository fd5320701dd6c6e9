//! Small file systems for tests that need a full or a read-only disk: a tmpfs mounted for the
//! test and lazily unmounted when it ends. Tests run as root (here and in CI); where mounting
//! is not permitted the caller says so and skips ([`crate::harness::cannot_run_here`]: in
//! CI, fails).

use crate::harness::Daemon;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop.
pub struct Mount(PathBuf);

impl Mount {
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Mounts a tmpfs with `options` (e.g. `size=4m` or `ro,size=1m`) on `dir`, creating it.
pub fn tmpfs(dir: &Path, options: &str) -> Result<Mount, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let output = Command::new("mount")
        .args(["-t", "tmpfs", "-o", options, "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    match output.status.success() {
        true => Ok(Mount(dir.to_path_buf())),
        false => Err(String::from_utf8_lossy(&output.stderr).trim().to_string()),
    }
}

/// Fills the file system holding `dir` with a file named `filler`, to the last block.
pub fn fill(dir: &Path) {
    let mut file = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    // What did not fit in a block may still fit in smaller writes.
    while file.write_all(&[0u8; 64]).is_ok() {}
}

/// A daemon whose data directory is on a 4 MiB tmpfs that is then filled until the ledger
/// refuses a write: `status` reports it not writable (`u` has an account). None, and a note
/// on stderr, where mounting is not permitted.
pub fn daemon_on_a_full_disk(args: &[&str]) -> Option<(Daemon, Mount)> {
    // A full disk is the file store's.
    let mut daemon = Daemon::start_file_with(args);
    let mount = match tmpfs(&daemon.dir.path().join("tiny"), "size=4m,mode=0700") {
        Ok(mount) => mount,
        Err(why) => {
            crate::harness::cannot_run_here(&format!(
                "mounting a small tmpfs is not permitted here ({why})"
            ));
            return None;
        }
    };
    let status = daemon.signal_and_wait(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(status.code(), Some(0));
    daemon.data_dir = mount.path().join("data");
    daemon.restart();
    daemon.memes_json(&["topup", "--user", "u", "--amount", "10"]);
    fill(mount.path());
    let mut conn = daemon.connect();
    // The journal's zeroed space (set aside before the filler) is used up first.
    let reason = "r".repeat(450);
    for _ in 0..20_000 {
        let reply = conn.request(
            &json!({"op": "topup", "user": "u", "amount": 1, "reason": reason}).to_string(),
        );
        if reply["ok"] == false {
            assert_eq!(reply["error"]["code"], "unavailable", "{reply}");
            return Some((daemon, mount));
        }
    }
    panic!("the disk never filled up:\n{}", daemon.log());
}
