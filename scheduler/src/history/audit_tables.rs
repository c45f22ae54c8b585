//! The history store's index tables of audit events, written in the same transaction as the
//! records (see [`crate::history::audit_index`] for the reads).

use redb::TableDefinition;

use crate::history::types::{HistoryKey, HistoryRecord};

/// Every audit event under several dimensions: `all`, `org:<id>`, `actor:<actor>`,
/// `resource:<resource>`; a webhook endpoint's delivery attempts under
/// `deliveries:<endpoint>`; a project's ended instances under `ended:<project>`; an issued
/// invoice under `invoice:<id>`; an organisation's billed usage of a period under
/// `usage:<org>:<period>`. Each dimension's keys in log order.
pub(super) const BY: TableDefinition<(&str, u64, u32), ()> = TableDefinition::new("audit_by");
/// Every audit event by time, to find where a time range starts.
pub(super) const BY_TIME: TableDefinition<(i64, u64, u32), ()> =
    TableDefinition::new("audit_by_time");

pub(super) fn create(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(BY)?;
    txn.open_table(BY_TIME)?;
    Ok(())
}

pub(super) fn delete(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    txn.delete_table(BY)?;
    txn.delete_table(BY_TIME)?;
    Ok(())
}

/// The index tables open in one write transaction.
pub(super) struct Writer<'t> {
    by: redb::Table<'t, (&'static str, u64, u32), ()>,
    time: redb::Table<'t, (i64, u64, u32), ()>,
}

impl<'t> Writer<'t> {
    pub(super) fn open(txn: &'t redb::WriteTransaction) -> Result<Writer<'t>, redb::Error> {
        Ok(Writer {
            by: txn.open_table(BY)?,
            time: txn.open_table(BY_TIME)?,
        })
    }

    pub(super) fn insert(
        &mut self,
        key: HistoryKey,
        record: &HistoryRecord,
    ) -> Result<(), redb::Error> {
        if let HistoryRecord::WebhookDelivery { endpoint_id, .. } = record {
            self.by.insert(
                (
                    format!("deliveries:{endpoint_id}").as_str(),
                    key.index,
                    key.seq,
                ),
                (),
            )?;
            return Ok(());
        }
        if let HistoryRecord::InstanceEnded { instance, .. } = record {
            self.by.insert(
                (
                    format!("ended:{}", instance.project).as_str(),
                    key.index,
                    key.seq,
                ),
                (),
            )?;
            return Ok(());
        }
        if let HistoryRecord::InvoiceIssued(invoice) = record {
            self.by.insert(
                (
                    format!("invoice:{}", invoice.id).as_str(),
                    key.index,
                    key.seq,
                ),
                (),
            )?;
            return Ok(());
        }
        if let HistoryRecord::ClosedUsage { org, period, .. } = record {
            self.by.insert(
                (format!("usage:{org}:{period}").as_str(), key.index, key.seq),
                (),
            )?;
            return Ok(());
        }
        let HistoryRecord::Audit(e) = record else {
            return Ok(());
        };
        let (i, s) = (key.index, key.seq);
        self.by.insert(("all", i, s), ())?;
        for org in e.org.iter().chain(&e.member_of) {
            self.by.insert((format!("org:{org}").as_str(), i, s), ())?;
        }
        self.by
            .insert((format!("actor:{}", e.actor).as_str(), i, s), ())?;
        self.by
            .insert((format!("resource:{}", e.resource).as_str(), i, s), ())?;
        self.time.insert((e.at_ms, i, s), ())?;
        Ok(())
    }
}
