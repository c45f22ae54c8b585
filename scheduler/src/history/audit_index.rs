//! Pages of audit events read through the history store's indexes (by organisation, actor,
//! resource and time; [`crate::history::audit_tables`]), so that a filtered page reads only
//! what it shows — however many million events the store holds.

use redb::ReadableDatabase;

use crate::audit::types::AuditEvent;
use crate::history::audit_tables::{BY, BY_TIME};
use crate::history::store::{HistoryError, HistoryStore, RECORDS, decode};
use crate::history::types::{HistoryKey, HistoryRecord};

/// Which events a page shows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub org: Option<String>,
    pub actor: Option<String>,
    pub resource: Option<String>,
    /// Unix ms, inclusive.
    pub since_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub until_ms: Option<i64>,
}

impl AuditFilter {
    fn admits(&self, e: &AuditEvent) -> bool {
        self.org
            .as_ref()
            .is_none_or(|o| e.org.as_ref() == Some(o) || e.member_of.contains(o))
            && self.actor.as_ref().is_none_or(|a| &e.actor == a)
            && self.resource.as_ref().is_none_or(|r| &e.resource == r)
            && self.since_ms.is_none_or(|t| e.at_ms >= t)
            && self.until_ms.is_none_or(|t| e.at_ms < t)
    }
}

/// A page of audit events and the key of the last one when more may follow.
#[derive(Debug, Clone)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub last: Option<HistoryKey>,
}

impl HistoryStore {
    /// Up to `limit` events the filter admits, after `after` (exclusive), oldest first or
    /// newest first. Reads one index (the narrowest the filter names) from where the page
    /// starts; time bounds stop the walk as soon as it leaves them (events are in log order,
    /// and their times never go back).
    pub fn audit_page(
        &self,
        filter: &AuditFilter,
        after: Option<HistoryKey>,
        limit: usize,
        newest_first: bool,
    ) -> Result<AuditPage, HistoryError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.failed(e))?;
        let by = txn.open_table(BY).map_err(|e| self.failed(e))?;
        let times = txn.open_table(BY_TIME).map_err(|e| self.failed(e))?;
        // The narrowest dimension the filter names; the others are checked on each event.
        let dimension = match (&filter.resource, &filter.actor, &filter.org) {
            (Some(r), _, _) => format!("resource:{r}"),
            (None, Some(a), _) => format!("actor:{a}"),
            (None, None, Some(o)) => format!("org:{o}"),
            (None, None, None) => "all".to_owned(),
        };
        // Where the time bounds put the walk's ends, as history keys.
        let first_at = |t: i64| -> Result<Option<(u64, u32)>, HistoryError> {
            let mut range = times.range((t, 0, 0)..).map_err(|e| self.failed(e))?;
            Ok(match range.next() {
                Some(item) => {
                    let (k, _) = item.map_err(|e| self.failed(e))?;
                    let (_, i, s) = k.value();
                    Some((i, s))
                }
                None => None,
            })
        };
        let mut lo = (0u64, 0u32);
        let mut hi = (u64::MAX, u32::MAX);
        if let Some(t) = filter.since_ms {
            match first_at(t)? {
                Some(k) => lo = lo.max(k),
                None => {
                    return Ok(AuditPage {
                        events: Vec::new(),
                        last: None,
                    });
                }
            }
        }
        if let Some(t) = filter.until_ms
            && let Some(k) = first_at(t)?
        {
            // Exclusive: stop before the first event at or after `until`.
            if k == (0, 0) {
                return Ok(AuditPage {
                    events: Vec::new(),
                    last: None,
                });
            }
            hi = hi.min(if k.1 > 0 {
                (k.0, k.1 - 1)
            } else {
                (k.0 - 1, u32::MAX)
            });
        }
        match (after, newest_first) {
            (Some(k), false) => lo = lo.max((k.index, k.seq.saturating_add(1))),
            (Some(k), true) => {
                if (k.index, k.seq) == (0, 0) {
                    return Ok(AuditPage {
                        events: Vec::new(),
                        last: None,
                    });
                }
                let before = if k.seq > 0 {
                    (k.index, k.seq - 1)
                } else {
                    (k.index - 1, u32::MAX)
                };
                hi = hi.min(before);
            }
            (None, _) => {}
        }
        let mut events = Vec::new();
        let mut more = false;
        if lo <= hi {
            let d = dimension.as_str();
            let range = by
                .range((d, lo.0, lo.1)..=(d, hi.0, hi.1))
                .map_err(|e| self.failed(e))?;
            let items: Box<dyn Iterator<Item = _>> = if newest_first {
                Box::new(range.rev())
            } else {
                Box::new(range)
            };
            for item in items {
                let (k, _) = item.map_err(|e| self.failed(e))?;
                let (_, index, seq) = k.value();
                let key = HistoryKey { index, seq };
                let Some(bytes) = records.get((index, seq)).map_err(|e| self.failed(e))? else {
                    continue;
                };
                let HistoryRecord::Audit(e) = decode(key, bytes.value())? else {
                    continue;
                };
                if !filter.admits(&e) {
                    continue;
                }
                if events.len() == limit {
                    more = true;
                    break;
                }
                events.push(*e);
            }
        }
        let last = if more {
            events.last().map(|e| key_of(&e.id))
        } else {
            None
        };
        Ok(AuditPage { events, last })
    }

    /// Up to `limit` records filed under `dimension` (`deliveries:<endpoint>`,
    /// `ended:<project>`; see [`crate::history::audit_tables`]), newest first, before `before`
    /// (exclusive), and the key of the last one when more may follow.
    pub fn dimension_page(
        &self,
        dimension: &str,
        before: Option<HistoryKey>,
        limit: usize,
    ) -> Result<(Vec<HistoryRecord>, Option<HistoryKey>), HistoryError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let records = txn.open_table(RECORDS).map_err(|e| self.failed(e))?;
        let by = txn.open_table(BY).map_err(|e| self.failed(e))?;
        let d = dimension;
        let hi = match before {
            Some(k) if (k.index, k.seq) == (0, 0) => return Ok((Vec::new(), None)),
            Some(k) if k.seq > 0 => (k.index, k.seq - 1),
            Some(k) => (k.index - 1, u32::MAX),
            None => (u64::MAX, u32::MAX),
        };
        let mut out = Vec::new();
        let mut last = None;
        for item in by
            .range((d, 0, 0)..=(d, hi.0, hi.1))
            .map_err(|e| self.failed(e))?
            .rev()
        {
            let (k, _) = item.map_err(|e| self.failed(e))?;
            let (_, index, seq) = k.value();
            if out.len() == limit {
                return Ok((out, last));
            }
            let key = HistoryKey { index, seq };
            if let Some(bytes) = records.get((index, seq)).map_err(|e| self.failed(e))? {
                out.push(decode(key, bytes.value())?);
                last = Some(key);
            }
        }
        Ok((out, None))
    }

    /// How many audit events the store holds.
    pub fn audit_len(&self) -> Result<u64, HistoryError> {
        use redb::ReadableTableMetadata;
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(BY_TIME).map_err(|e| self.failed(e))?;
        table.len().map_err(|e| self.failed(e))
    }
}

/// The history key an event's id (`ae-<index>-<seq>`) names.
pub fn key_of(id: &str) -> HistoryKey {
    let mut parts = id.trim_start_matches("ae-").splitn(2, '-');
    let index = parts.next().and_then(|i| i.parse().ok()).unwrap_or(0);
    let seq = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    HistoryKey { index, seq }
}
