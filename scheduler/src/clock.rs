//! Time helpers: this machine's clock (for proposers and for what is shown), and how times
//! are written. `apply` never reads a clock; its time comes from the command.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The test clock's lead (see [`follow_test_clock`]); 0 on a real cluster.
static TEST_CLOCK_LEAD_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the Unix epoch by this machine's clock, plus the cluster's test-clock
/// lead when it has one.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
        + TEST_CLOCK_LEAD_MS.load(Ordering::Relaxed)
}

/// Follows the replicated test clock (`AdvanceClock` commands, only on clusters started with
/// `--test-clock`): the lead only grows, so this process's time never goes back. Called
/// when a replica publishes its state, so every command it proposes after is stamped with the
/// cluster's time — billing over months is tested without waiting months.
pub fn follow_test_clock(lead_ms: i64) {
    TEST_CLOCK_LEAD_MS.fetch_max(lead_ms, Ordering::Relaxed);
}

/// Milliseconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
