//! JSON Lines results files (experiments' runs, cross-validation's folds): one record per
//! line, appended and synced as each result is finished, so a kill loses at most the
//! record in progress, and a torn last line is cut before a resume.

use std::path::Path;

use crate::{Error, Result};

/// A process killed while appending to a JSON Lines file can leave a last line without
/// its newline: cut it, so the next line starts clean (the `what`, a run or a fold, that
/// was being recorded is simply done again).
pub fn repair_tail(path: &Path, what: &str) -> Result<()> {
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(());
    };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    eprintln!(
        "note: {} ended in a partial line (a {what} was interrupted while writing); it is dropped and that {what} done again",
        path.display()
    );
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error(format!("cannot open {}: {e}", path.display())))?;
    f.set_len(keep as u64)
        .map_err(|e| Error(format!("cannot truncate {}: {e}", path.display())))
}

/// Append `v` as one line of the JSON Lines file at `path` (created if missing), and
/// flush it to disk before returning: a result recorded is a result kept.
pub fn append_line(path: &Path, v: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error(format!("cannot open {}: {e}", path.display())))?;
    writeln!(f, "{v}")
        .and_then(|_| f.sync_data())
        .map_err(|e| Error(format!("cannot append to {}: {e}", path.display())))
}
