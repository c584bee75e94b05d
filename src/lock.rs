//! One writer per file: an advisory lock (`flock` on Unix, `LockFileEx` on Windows) on
//! `<file>.lock`, held for as long as the returned [`Lock`] lives (the process's life
//! for a command). The lock file names the holder's pid and host, so that a second
//! writer is refused with one line saying who holds it. The operating system drops the
//! lock when the holder exits or is killed, so a lock is never stale; the file stays.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::{bail, Error, Result};

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

/// The lock file of `target`.
pub fn lock_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".into())
}

/// Take the lock of `target` (creating its folder), or fail naming the holder. `what`
/// says what the target is, for the message ("the records file", "the model").
pub fn acquire(target: &Path, what: &str) -> Result<Lock> {
    let path = lock_path(target);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error(format!("cannot create folder {}: {e}", dir.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error(format!("cannot write {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            bail!(
                "{} ({what}) is being written by another process ({}; lock {}): wait for it to finish, or use another --out",
                target.display(),
                if holder.is_empty() { "holder unknown" } else { holder },
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            bail!("cannot lock {}: {e}", path.display())
        }
    }
    let me = format!("pid {} on {}\n", std::process::id(), host());
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(me.as_bytes()))
        .and_then(|_| file.flush())
        .map_err(|e| Error(format!("cannot write {}: {e}", path.display())))?;
    Ok(Lock { _file: file, path })
}
