//! The replica's history store: redb, one table keyed by (log index, sequence), each value a
//! [`HistoryRecord`] as MessagePack with field names (the snapshot format's encoding, so a
//! newer binary reads older records). Written in batches without fsync, but for one in 32 (see the module above
//! for why that is safe); read by paging.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use crate::history::types::{HistoryKey, HistoryRecord};

pub(super) const RECORDS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("history");
/// What the store says of itself: `index_version`, the version of the index tables.
const META: TableDefinition<&str, u64> = TableDefinition::new("history_meta");
/// The index tables' version: a store whose indexes are older (a dimension was added since)
/// has them rebuilt from its records when it is opened.
const INDEX_VERSION: u64 = 2;
/// Pages redb keeps in memory: history is read rarely and paged, so a small cache keeps the
/// replica's memory flat however long its history grows.
const CACHE_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("the history store {path} cannot be opened")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("the history store {path} failed")]
    Storage {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("a history record at log index {index} cannot be decoded")]
    Undecodable {
        index: u64,
        #[source]
        source: rmp_serde::decode::Error,
    },
}

/// One replica's history on disk.
#[derive(Debug)]
pub struct HistoryStore {
    pub(super) db: Database,
    pub(super) path: PathBuf,
    /// Commits since the last durable one.
    since_durable: std::sync::atomic::AtomicU32,
}

/// Every this many commits one is durable: redb keeps what non-durable commits free in
/// memory (and the file grows) until a durable commit, so a long run of them grows without
/// bound (redb issue 810). One fsync per this many batches keeps memory and file flat.
const DURABLE_EVERY: u32 = 32;

/// A page of history and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<(HistoryKey, HistoryRecord)>,
    pub next: Option<HistoryKey>,
}

fn encode(record: &HistoryRecord) -> Vec<u8> {
    rmp_serde::to_vec_named(record).expect("a history record encodes")
}

pub(super) fn decode(key: HistoryKey, bytes: &[u8]) -> Result<HistoryRecord, HistoryError> {
    rmp_serde::from_slice(bytes).map_err(|source| HistoryError::Undecodable {
        index: key.index,
        source,
    })
}

/// Rebuilds the index tables from the records (a store written by an older binary).
fn reindex(txn: &redb::WriteTransaction) -> Result<(), redb::Error> {
    crate::history::audit_tables::delete(txn)?;
    crate::history::audit_tables::create(txn)?;
    let records = txn.open_table(RECORDS)?;
    let mut index = crate::history::audit_tables::Writer::open(txn)?;
    for item in records.iter()? {
        let (k, v) = item?;
        let (index_, seq) = k.value();
        // A record this binary cannot read is kept, just not indexed.
        if let Ok(record) = rmp_serde::from_slice::<HistoryRecord>(v.value()) {
            index.insert(HistoryKey { index: index_, seq }, &record)?;
        }
    }
    Ok(())
}

impl HistoryStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<HistoryStore, HistoryError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| HistoryError::Open {
                path: path.to_owned(),
                source,
            })?;
        let store = HistoryStore {
            db,
            path: path.to_owned(),
            since_durable: Default::default(),
        };
        store.write(|t| {
            t.open_table(RECORDS)?;
            crate::history::audit_tables::create(t)?;
            let meta = t.open_table(META)?;
            let version = meta.get("index_version")?.map(|v| v.value());
            if version.is_none_or(|v| v < INDEX_VERSION) {
                // Empty (new) or indexed by an older binary: (re)build every index table.
                drop(meta);
                let records = t.open_table(RECORDS)?.len()?;
                if records > 0 {
                    tracing::info!(
                        records,
                        path = %path.display(),
                        "rebuilding the history store's indexes (once, after an upgrade)"
                    );
                }
                reindex(t)?;
                t.open_table(META)?.insert("index_version", INDEX_VERSION)?;
            }
            Ok(())
        })?;
        Ok(store)
    }

    pub(super) fn failed(
        &self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> HistoryError {
        HistoryError::Storage {
            path: self.path.clone(),
            source: Box::new(source),
        }
    }

    fn write(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), HistoryError> {
        let mut txn = self.db.begin_write().map_err(|e| self.failed(e))?;
        let n = self
            .since_durable
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n + 1 >= DURABLE_EVERY {
            self.since_durable
                .store(0, std::sync::atomic::Ordering::Relaxed);
        } else {
            txn.set_durability(Durability::None)
                .map_err(|e| self.failed(e))?;
        }
        f(&txn).map_err(|e| self.failed(e))?;
        txn.commit().map_err(|e| self.failed(e))
    }

    /// Writes a batch of records (records already there under the same keys are replaced:
    /// replaying the log after a restart writes the same records again).
    pub fn append(&self, records: &[(HistoryKey, HistoryRecord)]) -> Result<(), HistoryError> {
        if records.is_empty() {
            return Ok(());
        }
        self.write(|txn| {
            let mut table = txn.open_table(RECORDS)?;
            let mut index = crate::history::audit_tables::Writer::open(txn)?;
            for (key, record) in records {
                table.insert((key.index, key.seq), encode(record).as_slice())?;
                index.insert(*key, record)?;
            }
            Ok(())
        })
    }

    /// Replaces the whole history (a snapshot restore).
    pub fn replace_all<'a>(
        &self,
        records: impl IntoIterator<Item = (HistoryKey, &'a [u8])>,
    ) -> Result<(), HistoryError> {
        self.write(|txn| {
            txn.open_table(META)?.remove("durable_through")?;
            txn.delete_table(RECORDS)?;
            crate::history::audit_tables::delete(txn)?;
            let mut table = txn.open_table(RECORDS)?;
            let mut index = crate::history::audit_tables::Writer::open(txn)?;
            for (key, bytes) in records {
                table.insert((key.index, key.seq), bytes)?;
                // A record this binary cannot read is kept, just not indexed.
                if let Ok(record) = rmp_serde::from_slice::<HistoryRecord>(bytes) {
                    index.insert(key, &record)?;
                }
            }
            Ok(())
        })
    }

    /// Makes everything written so far durable (one fsync) and notes that history is
    /// complete through log index `through`: a snapshot at that index may then leave the
    /// history out (see [`crate::state::snapshot_format`]).
    pub fn make_durable(&self, through: u64) -> Result<(), HistoryError> {
        let txn = self.db.begin_write().map_err(|e| self.failed(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.failed(e))?;
            let before = meta
                .get("durable_through")
                .map_err(|e| self.failed(e))?
                .map_or(0, |v| v.value());
            meta.insert("durable_through", before.max(through))
                .map_err(|e| self.failed(e))?;
        }
        txn.commit().map_err(|e| self.failed(e))?;
        self.since_durable
            .store(0, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// The log index through which history is known to be complete and durable (0: none).
    pub fn durable_through(&self) -> Result<u64, HistoryError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let meta = txn.open_table(META).map_err(|e| self.failed(e))?;
        Ok(meta
            .get("durable_through")
            .map_err(|e| self.failed(e))?
            .map_or(0, |v| v.value()))
    }

    /// Replaces the whole history with the records of a snapshot's history section.
    pub fn replace_section(&self, section: &[u8]) -> Result<(), HistoryError> {
        let records = crate::history::section::HistoryRecords::new(section)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.failed(e))?;
        self.replace_all(records)
    }

    /// Where the store is on disk.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many records there are.
    pub fn len(&self) -> Result<u64, HistoryError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(RECORDS).map_err(|e| self.failed(e))?;
        table.len().map_err(|e| self.failed(e))
    }

    pub fn is_empty(&self) -> Result<bool, HistoryError> {
        Ok(self.len()? == 0)
    }

    /// Up to `limit` records from `from` on (the first when `None`), oldest first.
    pub fn page(&self, from: Option<HistoryKey>, limit: usize) -> Result<Page, HistoryError> {
        let txn = self.db.begin_read().map_err(|e| self.failed(e))?;
        let table = txn.open_table(RECORDS).map_err(|e| self.failed(e))?;
        let start = from.map_or((0, 0), |k| (k.index, k.seq));
        let mut records = Vec::new();
        let mut next = None;
        for item in table.range(start..).map_err(|e| self.failed(e))? {
            let (k, v) = item.map_err(|e| self.failed(e))?;
            let (index, seq) = k.value();
            let key = HistoryKey { index, seq };
            if records.len() == limit {
                next = Some(key);
                break;
            }
            records.push((key, decode(key, v.value())?));
        }
        Ok(Page { records, next })
    }

    /// A consistent view of the whole history as it is now, to encode later on another
    /// thread (a snapshot): records keep arriving in the store meanwhile.
    pub fn frozen(&self) -> Result<FrozenHistory, HistoryError> {
        Ok(FrozenHistory {
            txn: self.db.begin_read().map_err(|e| self.failed(e))?,
            path: self.path.clone(),
        })
    }
}

/// The history at one moment (a redb read transaction).
pub struct FrozenHistory {
    txn: redb::ReadTransaction,
    path: PathBuf,
}

impl std::fmt::Debug for FrozenHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenHistory")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FrozenHistory {
    /// Calls `f` with every record's key and encoded bytes, oldest first, up to log index
    /// `through`.
    pub fn for_each(
        &self,
        through: u64,
        mut f: impl FnMut(HistoryKey, &[u8]),
    ) -> Result<(), HistoryError> {
        let failed = |e: redb::Error| HistoryError::Storage {
            path: self.path.clone(),
            source: Box::new(e),
        };
        let table = self.txn.open_table(RECORDS).map_err(|e| failed(e.into()))?;
        for item in table
            .range(..=(through, u32::MAX))
            .map_err(|e| failed(e.into()))?
        {
            let (k, v) = item.map_err(|e| failed(e.into()))?;
            let (index, seq) = k.value();
            f(HistoryKey { index, seq }, v.value());
        }
        Ok(())
    }
}

/// Runs `write` until it succeeds, waiting longer after each failure: history is kept and
/// tried again, never lost.
fn retry(what: &str, mut write: impl FnMut() -> Result<(), HistoryError>) {
    let mut wait = Duration::from_millis(100);
    while let Err(e) = write() {
        tracing::warn!(error = %vmcloud_proto::ErrorChain(&e), "{what}; trying again");
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

/// Batches queued for the writer at most: beyond, the applier waits for it (memory stays
/// flat however fast entries are applied; the writer's pace is the applier's).
const QUEUED_BATCHES: usize = 256;

/// Writes history records on a thread of its own, so a slow commit does not hold up `apply`
/// (unless the writer is [`QUEUED_BATCHES`] behind).
///
/// The applier hands over each batch's records with the batch's last log index; the writer
/// coalesces what is queued into one transaction. A snapshot waits (on its own thread) until
/// the writer has written everything up to the snapshot's index.
#[derive(Debug, Clone)]
pub struct HistoryWriter {
    store: Arc<HistoryStore>,
    queue: std::sync::mpsc::SyncSender<Job>,
    written: Arc<(Mutex<u64>, Condvar)>,
    /// The last log index whose records were queued: batches without records send nothing,
    /// and everything up to any later index is written once this one is.
    queued: Arc<std::sync::atomic::AtomicU64>,
}

/// What the writer thread is asked to do, in the order asked.
enum Job {
    /// A batch's records; the batch's last log index.
    Append(u64, Vec<(HistoryKey, HistoryRecord)>),
    /// A restore: the whole history becomes a snapshot's records (its history section, see
    /// [`crate::state::snapshot_format`]), written through the snapshot's index.
    Replace(u64, Vec<u8>),
}

impl HistoryWriter {
    /// Starts the writer thread for `store`.
    pub fn start(store: HistoryStore) -> HistoryWriter {
        let store = Arc::new(store);
        let (queue, rx) = std::sync::mpsc::sync_channel::<Job>(QUEUED_BATCHES);
        let written: Arc<(Mutex<u64>, Condvar)> = Arc::default();
        let (s, w) = (store.clone(), written.clone());
        std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || {
                // Background work: `apply` (latency-bound) goes first when cores are short.
                // On Linux a thread's nice value is its own (`setpriority` with 0 = this
                // thread); a failure leaves the default.
                // SAFETY: setpriority only reads its arguments.
                #[cfg(target_os = "linux")]
                #[allow(unsafe_code)]
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, 0, 10);
                }
                let mut next = rx.recv().ok();
                while let Some(job) = next.take() {
                    let last = match job {
                        Job::Append(mut last, mut records) => {
                            // Coalesce the appends queued behind it into one transaction.
                            loop {
                                match rx.try_recv() {
                                    Ok(Job::Append(l, more)) => {
                                        last = l;
                                        records.extend(more);
                                    }
                                    Ok(other) => {
                                        next = Some(other);
                                        break;
                                    }
                                    Err(_) => break,
                                }
                            }
                            retry("history records could not be written", || {
                                s.append(&records)
                            });
                            last
                        }
                        Job::Replace(last, section) => {
                            retry("the history of a snapshot could not be written", || {
                                s.replace_section(&section)
                            });
                            last
                        }
                    };
                    let (lock, done) = &*w;
                    let mut w = lock.lock().expect("history lock poisoned");
                    *w = (*w).max(last);
                    done.notify_all();
                    drop(w);
                    if next.is_none() {
                        next = rx.recv().ok();
                    }
                }
            })
            .expect("the history writer thread starts");
        HistoryWriter {
            store,
            queue,
            written,
            queued: Arc::default(),
        }
    }

    /// Replaces the whole history with a snapshot's history section, on the writer thread
    /// after what is queued; until it is written, [`HistoryWriter::wait_written`] waits for
    /// it (the state is served meanwhile; history reads wait).
    pub fn replace(&self, through: u64, section: Vec<u8>) {
        {
            let (lock, _) = &*self.written;
            *lock.lock().expect("history lock poisoned") = 0;
        }
        self.queued
            .store(through, std::sync::atomic::Ordering::Release);
        if self.queue.send(Job::Replace(through, section)).is_err() {
            tracing::error!("the history writer has stopped; a snapshot's history is lost");
        }
    }

    pub fn store(&self) -> &Arc<HistoryStore> {
        &self.store
    }

    /// Queues a batch's records; `last` is the batch's last log index. A batch without records
    /// costs nothing.
    pub fn send(&self, last: u64, records: Vec<(HistoryKey, HistoryRecord)>) {
        if records.is_empty() {
            return;
        }
        self.queued
            .store(last, std::sync::atomic::Ordering::Release);
        if self.queue.send(Job::Append(last, records)).is_err() {
            tracing::error!("the history writer has stopped; history records are lost");
        }
    }

    /// Marks everything up to `index` as written (a restore from a snapshot whose history
    /// the store already holds).
    pub fn mark_written(&self, index: u64) {
        self.queued
            .fetch_max(index, std::sync::atomic::Ordering::AcqRel);
        let (lock, done) = &*self.written;
        let mut w = lock.lock().expect("history lock poisoned");
        *w = (*w).max(index);
        done.notify_all();
    }

    /// Waits until everything up to log index `index` is written, at most `limit`.
    pub fn wait_written(&self, index: u64, limit: Duration) -> bool {
        // Records are queued only at the index of a batch that had some.
        let index = index.min(self.queued.load(std::sync::atomic::Ordering::Acquire));
        let (lock, done) = &*self.written;
        let guard = lock.lock().expect("history lock poisoned");
        let (guard, _) = done
            .wait_timeout_while(guard, limit, |w| *w < index)
            .expect("history lock poisoned");
        *guard >= index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(project: &str, n: u32) -> HistoryRecord {
        let id = vmcloud_proto::InstanceId::generate();
        let spec = crate::instances::types::InstanceSpec {
            name: format!("vm{n}"),
            flavor: "vps-s".into(),
            image: "debian-12".into(),
            region: "par".into(),
            vcpus: 1,
            memory_mib: 1024,
            disk_gib: 20,
            gpu: None,
        };
        let project = vmcloud_proto::ProjectId::parse(project).unwrap();
        HistoryRecord::InstanceEnded {
            instance: Box::new(crate::instances::types::Instance::pending(
                id, project, spec, 1,
            )),
            ended_at_ms: 2,
            reason: "deleted".into(),
        }
    }

    #[test]
    fn a_store_indexed_by_an_older_binary_is_reindexed_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        {
            let store = HistoryStore::open(&path).unwrap();
            let records: Vec<_> = (0..3)
                .map(|n| {
                    (
                        HistoryKey {
                            index: 10 + n as u64,
                            seq: 0,
                        },
                        ended("prj-a", n),
                    )
                })
                .collect();
            store.append(&records).unwrap();
            // What an older binary left: no `ended:` entries, index version 1.
            let txn = store.db.begin_write().unwrap();
            crate::history::audit_tables::delete(&txn).unwrap();
            crate::history::audit_tables::create(&txn).unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("index_version", 1)
                .unwrap();
            txn.commit().unwrap();
            assert!(
                store
                    .dimension_page("ended:prj-a", None, 10)
                    .unwrap()
                    .0
                    .is_empty()
            );
        }
        let store = HistoryStore::open(&path).unwrap();
        let (page, _) = store.dimension_page("ended:prj-a", None, 10).unwrap();
        assert_eq!(page.len(), 3);
        assert!(
            store
                .dimension_page("ended:prj-b", None, 10)
                .unwrap()
                .0
                .is_empty()
        );
    }
}
