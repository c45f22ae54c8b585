//! Test support shared by every crate's tests.

use std::io::Write;

/// Environment variable naming a file where skipped tests are recorded (`scripts/test` sets it
/// and counts them as skipped rather than passed).
pub const SKIPPED_FILE_ENV: &str = "VMCLOUD_SKIPPED";

/// Records that `test` could not run here and why. The caller returns right after: Rust's test
/// harness has no run-time skip, so the test shows as passed to `cargo test`, and
/// `scripts/test` moves it to the skipped count from this record. Always printed.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    if let Ok(path) = std::env::var(SKIPPED_FILE_ENV)
        && let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
    {
        let _ = writeln!(f, "{test}: {reason}");
    }
}
