//! The records history holds.

use serde::{Deserialize, Serialize};

use crate::audit::types::AuditEvent;
use crate::billing::types::{Invoice, UsageInterval};
use crate::instances::types::Instance;

/// Where a record sits in history: the log entry that produced it, and its place among that
/// entry's records. Ordered as the log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HistoryKey {
    pub index: u64,
    pub seq: u32,
}

/// One record of history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryRecord {
    /// An instance (VPS, GPU instance, job member or session) that is gone: deleted, or
    /// removed by its agent after it was stopped. The instance as it was last.
    InstanceEnded {
        instance: Box<Instance>,
        ended_at_ms: i64,
        /// Why it ended, for its owner.
        reason: String,
    },
    /// An audited command or refusal (see [`crate::audit`]).
    Audit(Box<AuditEvent>),
    /// A webhook event, as its deliveries send it (see [`crate::webhooks`]).
    WebhookEvent {
        id: String,
        project: vmcloud_proto::ProjectId,
        kind: String,
        payload: String,
        at_ms: i64,
    },
    /// One attempt to deliver a webhook event to one endpoint.
    WebhookDelivery {
        event_id: String,
        endpoint_id: String,
        attempt: u32,
        ok: bool,
        /// 0: no answer.
        status: u16,
        error: String,
        at_ms: i64,
        duration_ms: u32,
    },
    /// An invoice or a credit note as it was finalized (numbered), with every line. The state
    /// keeps what can still change (status, payments) and one line per kind.
    InvoiceIssued(Box<Invoice>),
    /// An organisation's usage of a period, billed by a run (its invoice's detail).
    ClosedUsage {
        org: vmcloud_proto::OrgId,
        /// `YYYY-MM`.
        period: String,
        intervals: Vec<UsageInterval>,
    },
}

/// Records `apply` produced and the consensus adapter has not written yet. Not part of the
/// state's value (two states equal in everything else are equal whatever is buffered) and
/// never serialized.
#[derive(Debug, Clone, Default)]
pub struct HistoryBuffer(pub Vec<(HistoryKey, HistoryRecord)>);

impl PartialEq for HistoryBuffer {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl HistoryBuffer {
    /// The place the next record of log entry `index` gets among that entry's records.
    pub fn next_seq(&self, index: u64) -> u32 {
        self.0
            .iter()
            .rev()
            .take_while(|(k, _)| k.index == index)
            .count() as u32
    }

    /// Appends a record produced by log entry `index`.
    pub fn push(&mut self, index: u64, record: HistoryRecord) {
        let seq = self.next_seq(index);
        self.0.push((HistoryKey { index, seq }, record));
    }
}
