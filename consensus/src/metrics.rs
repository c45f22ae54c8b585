//! Prometheus metrics of one replica: who leads, how far the log is committed and applied,
//! how long proposals and fsyncs take, and what goes to each peer.
//!
//! One [`RaftMetrics`] per replica, shared by the runner, the applier, the handle and the
//! transport; [`RaftMetrics::register`] adds them to the process's registry (the scheduler
//! serves it at `/metrics`).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PeerLabels {
    pub peer: String,
}

#[derive(Debug)]
pub struct RaftMetrics {
    pub term: Gauge,
    pub leader: Gauge,
    pub is_leader: Gauge,
    pub commit_index: Gauge,
    pub applied_index: Gauge,
    /// From `propose` called to the entry applied, seconds.
    pub proposal_seconds: Histogram,
    /// One fsynced log write (one `Ready`), seconds.
    pub fsync_seconds: Histogram,
    /// Entries per fsynced write: how much group commit batches.
    pub entries_per_write: Histogram,
    pub sent_messages: Family<PeerLabels, Counter>,
    pub sent_bytes: Family<PeerLabels, Counter<u64, AtomicU64>>,
    pub snapshots_sent: Family<PeerLabels, Counter>,
    pub snapshots_taken: Counter,
    /// Proposals proposed again after the leader changed before they were committed.
    pub proposals_retried: Counter,
    /// Reads (ReadIndex) asked again after the lead changed while they waited.
    pub reads_retried: Counter,
}

impl Default for RaftMetrics {
    fn default() -> Self {
        RaftMetrics {
            term: Gauge::default(),
            leader: Gauge::default(),
            is_leader: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            // 50 µs … ~1.6 s
            proposal_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            fsync_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            entries_per_write: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            sent_messages: Family::default(),
            sent_bytes: Family::default(),
            snapshots_sent: Family::default(),
            snapshots_taken: Counter::default(),
            proposals_retried: Counter::default(),
            reads_retried: Counter::default(),
        }
    }
}

impl RaftMetrics {
    pub fn peer(peer: u64) -> PeerLabels {
        PeerLabels {
            peer: peer.to_string(),
        }
    }

    /// Adds every metric to `registry` under the prefix `vmcloud_raft`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("vmcloud_raft");
        r.register("term", "Current Raft term", self.term.clone());
        r.register(
            "leader",
            "Raft id of the known leader (0: none)",
            self.leader.clone(),
        );
        r.register(
            "is_leader",
            "1 when this replica leads",
            self.is_leader.clone(),
        );
        r.register(
            "commit_index",
            "Highest log index known committed",
            self.commit_index.clone(),
        );
        r.register(
            "applied_index",
            "Highest log index applied to the state machine",
            self.applied_index.clone(),
        );
        r.register(
            "proposal_seconds",
            "Time from proposing to applying an entry",
            self.proposal_seconds.clone(),
        );
        r.register(
            "fsync_seconds",
            "Duration of one fsynced log write",
            self.fsync_seconds.clone(),
        );
        r.register(
            "entries_per_write",
            "Log entries in one fsynced write (group commit)",
            self.entries_per_write.clone(),
        );
        r.register(
            "sent_messages",
            "Raft messages sent to each peer",
            self.sent_messages.clone(),
        );
        r.register(
            "sent_bytes",
            "Bytes of Raft messages sent to each peer",
            self.sent_bytes.clone(),
        );
        r.register(
            "snapshots_sent",
            "Snapshots sent to each peer",
            self.snapshots_sent.clone(),
        );
        r.register(
            "snapshots_taken",
            "Snapshots of the state machine taken here",
            self.snapshots_taken.clone(),
        );
        r.register(
            "proposals_retried",
            "Proposals proposed again because the leader changed before they were committed",
            self.proposals_retried.clone(),
        );
        r.register(
            "reads_retried",
            "Linearizable reads asked again because the lead changed while they waited",
            self.reads_retried.clone(),
        );
    }
}
