//! The Raft log and hard state in redb.
//!
//! One redb write transaction per `Ready` holds its entries and hard state and is fsynced on
//! commit (`Durability::Immediate`) before anything that depends on it is sent or answered.
//! Commit-index-only updates are written without fsync: raft-rs can recompute the commit
//! index, and the next fsynced transaction makes them durable anyway. redb checksums its pages,
//! and every record we store carries its own CRC-32 (entry bytes and metadata), checked on
//! every read and for the whole log when it is opened: a corrupt log is reported and the
//! replica refuses to start, rather than applying or silently truncating committed data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::snapshot::{SnapshotDir, SnapshotError, SnapshotFile};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const HARD_STATE: &str = "hard_state";
const CONF_STATE: &str = "conf_state";
/// Addresses of replicas that joined by a membership change: `id=address` lines.
const PEERS: &str = "peer_addresses";

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the raft log at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("raft log I/O failed")]
    Redb(#[source] Box<redb::Error>),
    #[error(
        "raft log entry {index} is corrupt ({reason}); this replica must not start on it: wipe its data dir and let it re-join from its peers"
    )]
    CorruptEntry { index: u64, reason: &'static str },
    #[error(
        "raft metadata `{key}` is corrupt ({reason}); this replica must not start on it: wipe its data dir and let it re-join from its peers"
    )]
    CorruptMeta {
        key: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    Snapshot(SnapshotError),
}

impl<E: Into<redb::Error>> From<E> for StorageError {
    fn from(e: E) -> Self {
        StorageError::Redb(Box::new(e.into()))
    }
}

/// A stored record: CRC-32 (little endian) of `bytes`, then `bytes`.
fn seal(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + bytes.len());
    out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}

/// The bytes of a sealed record, if its checksum holds.
fn unseal(record: &[u8]) -> Option<&[u8]> {
    let (crc, bytes) = record.split_at_checked(4)?;
    (crc32fast::hash(bytes).to_le_bytes() == crc).then_some(bytes)
}

fn to_raft(e: StorageError) -> raft::Error {
    raft::Error::Store(raft::StorageError::Other(Box::new(e)))
}

/// The Raft log of one replica. Owned by the raft runner (through the `RawNode`).
pub struct LogStore {
    db: Database,
    hard_state: HardState,
    conf_state: ConfState,
    first_index: u64,
    last_index: u64,
    snapshots: SnapshotDir,
    /// Index and term of the newest snapshot (0, 0 without one); the log starts after it.
    snapshot_index: u64,
    snapshot_term: u64,
    /// Set when a peer needs a newer snapshot than the newest one (see `snapshot`).
    snapshot_wanted: std::sync::atomic::AtomicBool,
    /// The configuration, shared with the applier's snapshot thread.
    shared_conf: Arc<Mutex<ConfState>>,
    /// The newest snapshot, read from disk on a thread of its own for a peer that needs it.
    outgoing: Arc<OutgoingSnapshot>,
    /// The newest entries, as persisted: what raft-rs reads back most (terms to match, entries
    /// to send to followers) is served from memory instead of a read transaction.
    tail: Tail,
}

/// The newest persisted entries, contiguous and ending at the log's last index, each with the
/// size of its stored record (for `max_size`), bounded in count and bytes. Profiles of
/// `bench raft` showed the runner spending a quarter of its time reading back from redb what
/// it had just written (issue 23).
#[derive(Debug, Default)]
struct Tail {
    entries: std::collections::VecDeque<(Entry, u64)>,
    bytes: u64,
}

impl Tail {
    const MAX_ENTRIES: usize = 16_384;
    const MAX_BYTES: u64 = 32 << 20;

    fn first(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.index)
    }

    /// Appends entries just persisted, dropping any suffix they replace.
    fn append(&mut self, entries: impl IntoIterator<Item = (Entry, u64)>) {
        for (e, size) in entries {
            while self.entries.back().is_some_and(|(b, _)| b.index >= e.index) {
                let (_, dropped) = self.entries.pop_back().expect("checked above");
                self.bytes -= dropped;
            }
            if self
                .entries
                .back()
                .is_some_and(|(b, _)| b.index + 1 != e.index)
            {
                self.clear();
            }
            self.bytes += size;
            self.entries.push_back((e, size));
        }
        while self.entries.len() > Self::MAX_ENTRIES || self.bytes > Self::MAX_BYTES {
            let (_, dropped) = self.entries.pop_front().expect("not empty");
            self.bytes -= dropped;
        }
    }

    /// Drops the entries up to `index` (compacted).
    fn drop_through(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(e, _)| e.index <= index) {
            let (_, dropped) = self.entries.pop_front().expect("checked above");
            self.bytes -= dropped;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries `low..high` if all of them are here, limited to `max_size` as the stored
    /// records would be (at least one).
    fn read(&self, low: u64, high: u64, max_size: Option<u64>) -> Option<Vec<Entry>> {
        let first = self.first()?;
        let last = self.entries.back()?.0.index;
        if low < first || high > last + 1 || low >= high {
            return None;
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        for (e, len) in self
            .entries
            .range((low - first) as usize..(high - first) as usize)
        {
            size += len;
            if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                break;
            }
            out.push(e.clone());
        }
        Some(out)
    }

    fn term(&self, index: u64) -> Option<u64> {
        let first = self.first()?;
        let pos = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(pos).map(|(e, _)| e.term)
    }
}

/// A snapshot being read for sending. Reading (and checking) a snapshot file of hundreds of
/// MiB takes longer than an election timeout; done on the Raft runner, the leader would miss
/// its heartbeats and lose its leadership before the snapshot even left (the follower then
/// drops it as coming from an old term). So the runner only ever takes a snapshot that is
/// ready; raft-rs is told it is temporarily unavailable meanwhile and asks again on the
/// peer's next heartbeat response.
#[derive(Default)]
struct OutgoingSnapshot {
    loading: std::sync::atomic::AtomicBool,
    ready: Mutex<Option<SnapshotFile>>,
    /// The state machine's say in what a peer is sent (see
    /// [`crate::StateMachine::outgoing_snapshot`]).
    make: std::sync::OnceLock<crate::OutgoingSnapshotFn>,
}

impl std::fmt::Debug for OutgoingSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingSnapshot")
            .field("loading", &self.loading)
            .field("made_by_state_machine", &self.make.get().is_some())
            .finish_non_exhaustive()
    }
}

impl OutgoingSnapshot {
    /// What a peer is sent of `file`: as written, or as the state machine makes it.
    fn made(&self, file: Option<SnapshotFile>) -> Result<Option<SnapshotFile>, String> {
        let (Some(mut file), Some(make)) = (file.clone(), self.make.get()) else {
            return Ok(file);
        };
        let (requests, state) = crate::requests::unwrap(&file.data)?;
        let state = make(file.index, state)?;
        file.data = crate::requests::wrap(&requests, state);
        Ok(Some(file))
    }

    /// The loaded snapshot if it satisfies `fits`; otherwise starts loading the newest one
    /// (unless a load is under way) and returns `None`.
    fn take_or_load(
        self: &Arc<Self>,
        snapshots: &SnapshotDir,
        fits: impl Fn(&SnapshotFile) -> bool,
    ) -> Option<SnapshotFile> {
        use std::sync::atomic::Ordering;
        let newest = snapshots.newest_index();
        {
            let mut ready = self.ready.lock().expect("outgoing snapshot lock poisoned");
            match ready.take() {
                Some(file) if Some(file.index) == newest && fits(&file) => return Some(file),
                Some(_) | None => {}
            }
        }
        if !self.loading.swap(true, Ordering::AcqRel) {
            let (this, snapshots) = (self.clone(), snapshots.clone());
            let spawned = std::thread::Builder::new()
                .name("raft-snapshot-read".into())
                .spawn(move || {
                    match snapshots.latest() {
                        Ok(file) => match this.made(file) {
                            Ok(file) => {
                                *this.ready.lock().expect("outgoing snapshot lock poisoned") = file
                            }
                            Err(message) => tracing::warn!(
                                message,
                                "cannot make the snapshot for a peer; raft will ask again"
                            ),
                        },
                        Err(e) => tracing::warn!(
                            error = %vmcloud_proto::ErrorChain(&e),
                            "cannot read the newest snapshot for a peer; raft will ask again"
                        ),
                    }
                    this.loading.store(false, Ordering::Release);
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the snapshot reading thread");
                self.loading.store(false, Ordering::Release);
            }
        }
        None
    }
}

/// Writes the state machine's snapshots from the applier's snapshot thread, with the
/// group's configuration, so the Raft runner only compacts the log afterwards.
#[derive(Debug, Clone)]
pub struct SnapshotWriter {
    snapshots: SnapshotDir,
    conf: Arc<Mutex<ConfState>>,
}

impl SnapshotWriter {
    /// Writes the snapshot at `index` durably (see [`SnapshotDir::save`]).
    pub fn save(&self, index: u64, term: u64, data: Vec<u8>) -> Result<(), SnapshotError> {
        let conf_state = self.conf.lock().expect("conf state lock poisoned").clone();
        self.snapshots.save(&SnapshotFile {
            index,
            term,
            conf_state,
            data,
        })
    }
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("first_index", &self.first_index)
            .field("last_index", &self.last_index)
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log at `path`, with its snapshots in `snapshot_dir`. A new log
    /// is bootstrapped with `voters` as its configuration; an existing one keeps the one it
    /// has. Returns the newest snapshot too, for the state machine to start from.
    pub fn open(
        path: &Path,
        snapshot_dir: &Path,
        voters: &[u64],
    ) -> Result<(LogStore, Option<SnapshotFile>), StorageError> {
        let snapshots = SnapshotDir::new(snapshot_dir.to_owned());
        let mut snapshot = snapshots.latest().map_err(StorageError::Snapshot)?;
        let db = Database::create(path).map_err(|source| StorageError::Open {
            path: path.to_owned(),
            source,
        })?;
        let brand_new = match db.begin_read()?.open_table(META) {
            Ok(meta) => meta.get(CONF_STATE)?.is_none(),
            Err(redb::TableError::TableDoesNotExist(_)) => true,
            Err(e) => return Err(e.into()),
        };
        if brand_new && !voters.is_empty() && snapshot.is_none() {
            // A replica of a new group starts from a snapshot at index 1 that holds the
            // configuration, like every other replica of the group, so the log starts at 2 and
            // a replica added later always catches up from a snapshot (which carries the
            // configuration) rather than from a log that does not.
            let bootstrap = SnapshotFile {
                index: 1,
                term: 1,
                conf_state: ConfState {
                    voters: voters.to_vec(),
                    ..Default::default()
                },
                data: Vec::new(),
            };
            snapshots.save(&bootstrap).map_err(StorageError::Snapshot)?;
            snapshot = Some(bootstrap);
        }
        let (snapshot_index, snapshot_term) =
            snapshot.as_ref().map_or((0, 0), |s| (s.index, s.term));
        let txn = db.begin_write()?;
        let (hard_state, conf_state, first_index, last_index) = {
            let mut meta = txn.open_table(META)?;
            let mut entries = txn.open_table(ENTRIES)?;
            // A compaction interrupted after its snapshot was saved: finish it.
            if snapshot_index > 0 {
                entries.retain_in(..=snapshot_index, |_, _| false)?;
            }
            let hard_state = match meta.get(HARD_STATE)? {
                Some(v) => decode_meta::<HardState>(HARD_STATE, v.value())?,
                None => HardState::default(),
            };
            let existing = meta.get(CONF_STATE)?.map(|v| v.value().to_vec());
            let conf_state = match existing {
                Some(v) => decode_meta::<ConfState>(CONF_STATE, &v)?,
                None => {
                    let cs = ConfState {
                        voters: voters.to_vec(),
                        ..Default::default()
                    };
                    let bytes = cs
                        .write_to_bytes()
                        .expect("encoding a ConfState cannot fail");
                    meta.insert(CONF_STATE, seal(&bytes).as_slice())?;
                    cs
                }
            };
            let first_index = match entries.first()? {
                Some((k, _)) => k.value(),
                None => snapshot_index + 1,
            };
            if first_index != snapshot_index + 1 {
                return Err(StorageError::CorruptEntry {
                    index: snapshot_index + 1,
                    reason: "missing from the log",
                });
            }
            let last_index = match entries.last()? {
                Some((k, _)) => k.value(),
                None => snapshot_index,
            };
            // Check the whole log before raft-rs sees any of it: consecutive indexes,
            // non-decreasing terms, every checksum.
            let mut last_term = snapshot_term;
            for (expected, item) in (first_index..).zip(entries.iter()?) {
                let (k, v) = item?;
                let index = k.value();
                if index != expected {
                    return Err(StorageError::CorruptEntry {
                        index: expected,
                        reason: "missing from the log",
                    });
                }
                let e = decode_entry(index, v.value())?;
                if e.term < last_term {
                    return Err(StorageError::CorruptEntry {
                        index,
                        reason: "term goes backwards",
                    });
                }
                last_term = e.term;
            }
            (hard_state, conf_state, first_index, last_index)
        };
        txn.commit()?;
        let mut hard_state = hard_state;
        // Everything in a snapshot was committed, in its term or later.
        hard_state.commit = hard_state.commit.max(snapshot_index);
        hard_state.term = hard_state.term.max(snapshot_term);
        let store = LogStore {
            db,
            hard_state,
            conf_state,
            first_index,
            last_index,
            snapshots,
            snapshot_index,
            snapshot_term,
            snapshot_wanted: Default::default(),
            outgoing: Default::default(),
            tail: Tail::default(),
            shared_conf: Default::default(),
        };
        *store.shared_conf.lock().expect("conf state lock poisoned") = store.conf_state.clone();
        Ok((store, snapshot))
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Records the configuration after a membership change (fsynced).
    pub fn set_conf_state(&mut self, conf_state: ConfState) -> Result<(), StorageError> {
        let txn = self.db.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            let bytes = conf_state
                .write_to_bytes()
                .expect("encoding a ConfState cannot fail");
            meta.insert(CONF_STATE, seal(&bytes).as_slice())?;
        }
        txn.commit()?;
        self.conf_state = conf_state;
        self.share_conf();
        Ok(())
    }

    fn share_conf(&self) {
        *self.shared_conf.lock().expect("conf state lock poisoned") = self.conf_state.clone();
    }

    /// A writer of snapshots for the applier's snapshot thread.
    /// Lets the state machine make what peers are sent (see
    /// [`crate::StateMachine::outgoing_snapshot`]); set once, at start.
    pub fn make_outgoing(&self, make: crate::OutgoingSnapshotFn) {
        let _ = self.outgoing.make.set(make);
    }

    pub fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter {
            snapshots: self.snapshots.clone(),
            conf: self.shared_conf.clone(),
        }
    }

    /// Addresses of replicas added by membership changes, so a restarted replica can reach
    /// them even when its command line predates them.
    pub fn peer_addresses(&self) -> Result<BTreeMap<u64, String>, StorageError> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(BTreeMap::new()),
            Err(e) => return Err(e.into()),
        };
        let Some(record) = table.get(PEERS)? else {
            return Ok(BTreeMap::new());
        };
        let corrupt = |reason| StorageError::CorruptMeta { key: PEERS, reason };
        let bytes = unseal(record.value()).ok_or(corrupt("checksum mismatch"))?;
        let text = std::str::from_utf8(bytes).map_err(|_| corrupt("undecodable"))?;
        text.lines()
            .map(|line| {
                let (id, addr) = line.split_once('=').ok_or(corrupt("undecodable"))?;
                Ok((
                    id.parse().map_err(|_| corrupt("undecodable"))?,
                    addr.to_owned(),
                ))
            })
            .collect()
    }

    /// Remembers (or, with `None`, forgets) the address of replica `id`.
    pub fn set_peer_address(&mut self, id: u64, address: Option<&str>) -> Result<(), StorageError> {
        let mut peers = self.peer_addresses()?;
        match address {
            Some(a) if !a.is_empty() => peers.insert(id, a.to_owned()),
            _ => peers.remove(&id),
        };
        let text: String = peers.iter().map(|(id, a)| format!("{id}={a}\n")).collect();
        let txn = self.db.begin_write()?;
        txn.open_table(META)?
            .insert(PEERS, seal(text.as_bytes()).as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Whether raft-rs asked for a snapshot the newest one could not serve (a peer that is not
    /// in its configuration); clears the request.
    pub fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted
            .swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Saves a snapshot of the state machine at `index` (term `term`), then drops the log up
    /// to it. The snapshot is durable before any entry goes.
    pub fn compact(&mut self, index: u64, term: u64, data: Vec<u8>) -> Result<(), StorageError> {
        if index <= self.snapshot_index {
            return Ok(());
        }
        self.snapshots
            .save(&SnapshotFile {
                index,
                term,
                conf_state: self.conf_state.clone(),
                data,
            })
            .map_err(StorageError::Snapshot)?;
        self.compact_log(index, term)
    }

    /// Drops the log up to `index`, once the snapshot at `index` (term `term`) is durable
    /// (written by a [`SnapshotWriter`]).
    pub fn compact_log(&mut self, index: u64, term: u64) -> Result<(), StorageError> {
        if index <= self.snapshot_index {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        txn.open_table(ENTRIES)?.retain_in(..=index, |_, _| false)?;
        txn.commit()?;
        self.tail.drop_through(index);
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.first_index = index + 1;
        self.last_index = self.last_index.max(index);
        Ok(())
    }

    /// Installs a snapshot received from the leader: it replaces the whole log.
    pub fn install(&mut self, snapshot: &Snapshot) -> Result<SnapshotFile, StorageError> {
        let meta = snapshot.get_metadata();
        let file = SnapshotFile {
            index: meta.index,
            term: meta.term,
            conf_state: meta.get_conf_state().clone(),
            data: snapshot.data.to_vec(),
        };
        self.snapshots.save(&file).map_err(StorageError::Snapshot)?;
        let txn = self.db.begin_write()?;
        {
            txn.open_table(ENTRIES)?.retain(|_, _| false)?;
            let mut table = txn.open_table(META)?;
            let cs = file
                .conf_state
                .write_to_bytes()
                .expect("encoding a ConfState cannot fail");
            table.insert(CONF_STATE, seal(&cs).as_slice())?;
            self.hard_state.commit = self.hard_state.commit.max(file.index);
            let hs = self
                .hard_state
                .write_to_bytes()
                .expect("encoding a HardState cannot fail");
            table.insert(HARD_STATE, seal(&hs).as_slice())?;
        }
        txn.commit()?;
        self.tail.clear();
        self.conf_state = file.conf_state.clone();
        self.share_conf();
        self.snapshot_index = file.index;
        self.snapshot_term = file.term;
        self.first_index = file.index + 1;
        self.last_index = file.index;
        Ok(file)
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// Appends `entries` (replacing any conflicting suffix) and sets `hard_state`, in one
    /// transaction, fsynced before this returns when `sync`.
    pub fn persist(
        &mut self,
        entries: &[Entry],
        hard_state: Option<&HardState>,
        sync: bool,
    ) -> Result<(), StorageError> {
        if entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut txn = self.db.begin_write()?;
        if !sync {
            txn.set_durability(Durability::None)
                .expect("no persistent savepoints are used");
        }
        let mut sizes = Vec::with_capacity(entries.len());
        {
            let mut table = txn.open_table(ENTRIES)?;
            if let Some(first) = entries.first() {
                // A leader may overwrite an uncommitted suffix: drop everything from here on.
                if first.index <= self.last_index {
                    table.retain_in(first.index.., |_, _| false)?;
                }
                for e in entries {
                    let bytes = e.write_to_bytes().expect("encoding an Entry cannot fail");
                    let record = seal(&bytes);
                    sizes.push(record.len() as u64);
                    table.insert(e.index, record.as_slice())?;
                }
            }
            if let Some(hs) = hard_state {
                let mut meta = txn.open_table(META)?;
                let bytes = hs
                    .write_to_bytes()
                    .expect("encoding a HardState cannot fail");
                meta.insert(HARD_STATE, seal(&bytes).as_slice())?;
            }
        }
        txn.commit()?;
        // Replacing a suffix there too (see `Tail::append`).
        self.tail
            .append(entries.iter().cloned().zip(sizes.iter().copied()));
        if let Some(last) = entries.last() {
            self.last_index = last.index;
            if self.last_index < self.first_index {
                self.first_index = 1;
            }
        }
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        Ok(())
    }

    /// Records a new commit index without an fsync (see the module docs).
    pub fn set_commit(&mut self, commit: u64) -> Result<(), StorageError> {
        self.hard_state.commit = commit;
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::None)
            .expect("no persistent savepoints are used");
        {
            let mut meta = txn.open_table(META)?;
            let bytes = self
                .hard_state
                .write_to_bytes()
                .expect("encoding a HardState cannot fail");
            meta.insert(HARD_STATE, seal(&bytes).as_slice())?;
        }
        txn.commit()?;
        Ok(())
    }

    fn read_entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, StorageError> {
        if let Some(entries) = self.tail.read(low, high, max_size) {
            return Ok(entries);
        }
        let txn = self.db.begin_read()?;
        let table = txn.open_table(ENTRIES)?;
        let mut out = Vec::new();
        let mut size = 0u64;
        for item in table.range(low..high)? {
            let (k, v) = item?;
            let index = k.value();
            let e = decode_entry(index, v.value())?;
            size += v.value().len() as u64;
            if !out.is_empty() && max_size.is_some_and(|m| size > m) {
                break;
            }
            out.push(e);
        }
        Ok(out)
    }
}

fn decode_entry(index: u64, record: &[u8]) -> Result<Entry, StorageError> {
    let corrupt = |reason| StorageError::CorruptEntry { index, reason };
    let bytes = unseal(record).ok_or(corrupt("checksum mismatch"))?;
    let mut e = Entry::default();
    e.merge_from_bytes(bytes)
        .map_err(|_| corrupt("undecodable"))?;
    if e.index != index {
        return Err(corrupt("stored under another index"));
    }
    Ok(e)
}

fn decode_meta<M: protobuf::Message>(key: &'static str, record: &[u8]) -> Result<M, StorageError> {
    let corrupt = |reason| StorageError::CorruptMeta { key, reason };
    let bytes = unseal(record).ok_or(corrupt("checksum mismatch"))?;
    let mut m = M::new();
    m.merge_from_bytes(bytes)
        .map_err(|_| corrupt("undecodable"))?;
    Ok(m)
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let entries = self
            .read_entries(low, high, max_size.into())
            .map_err(to_raft)?;
        if entries.is_empty() && low < high {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        Ok(entries)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == 0 {
            return Ok(0);
        }
        if idx == self.snapshot_index {
            return Ok(self.snapshot_term);
        }
        if idx < self.first_index {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        if let Some(term) = self.tail.term(idx) {
            return Ok(term);
        }
        let e = self.read_entries(idx, idx + 1, None).map_err(to_raft)?;
        e.first()
            .map(|e| e.term)
            .ok_or(raft::Error::Store(raft::StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        // A peer added after the newest snapshot would refuse it (raft-rs only restores a
        // snapshot whose configuration names it): ask for a fresh one and let raft-rs retry.
        let names = |cs: &ConfState| cs.voters.contains(&to) || cs.learners.contains(&to);
        let fits = |f: &SnapshotFile| f.index >= request_index && names(&f.conf_state);
        // The file is read off this thread (see `OutgoingSnapshot`); one that does not fit
        // (too old, or taken before `to` joined) asks the applier for a fresh one.
        let Some(file) = self.outgoing.take_or_load(&self.snapshots, |f| {
            let fits = fits(f);
            if !fits {
                self.snapshot_wanted
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            fits
        }) else {
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        };
        Ok(Snapshot {
            data: file.data,
            metadata: Some(SnapshotMetadata {
                conf_state: Some(file.conf_state),
                index: file.index,
                term: file.term,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn entries_and_hard_state_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let mut store = LogStore::open(&path, &dir.path().join("snapshots"), &[1])
                .unwrap()
                .0;
            // A new group starts from its bootstrap snapshot at index 1.
            assert_eq!(store.first_index().unwrap(), 2);
            assert_eq!(store.term(1).unwrap(), 1);
            let hs = HardState {
                term: 2,
                vote: 1,
                commit: 3,
            };
            store
                .persist(
                    &[entry(2, 1, b"a"), entry(3, 2, b"b"), entry(4, 2, b"c")],
                    Some(&hs),
                    true,
                )
                .unwrap();
            // A new leader overwrites the uncommitted suffix from index 4.
            store.persist(&[entry(4, 3, b"x")], None, true).unwrap();
        }
        let store = LogStore::open(&path, &dir.path().join("snapshots"), &[7])
            .unwrap()
            .0;
        let state = store.initial_state().unwrap();
        assert_eq!(state.hard_state.term, 2);
        assert_eq!(
            state.conf_state.voters,
            vec![1],
            "the bootstrap configuration is kept"
        );
        assert_eq!(store.last_index().unwrap(), 4);
        assert_eq!(store.term(4).unwrap(), 3);
        let all = store
            .entries(2, 5, None, GetEntriesContext::empty(false))
            .unwrap();
        let data: Vec<&[u8]> = all.iter().map(|e| &e.data[..]).collect();
        assert_eq!(data, vec![&b"a"[..], b"b", b"x"]);
        let limited = store
            .entries(2, 5, Some(1), GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(
            limited.len(),
            1,
            "max_size still returns at least one entry"
        );
    }

    #[test]
    fn entries_served_from_memory_are_those_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        let snaps = dir.path().join("snapshots");
        let all = |s: &LogStore, lo, hi, max| {
            s.entries(lo, hi, max, GetEntriesContext::empty(false))
                .unwrap()
                .iter()
                .map(|e| (e.index, e.term, e.data.to_vec()))
                .collect::<Vec<_>>()
        };
        let mut store = LogStore::open(&path, &snaps, &[1]).unwrap().0;
        let batch: Vec<Entry> = (2..40).map(|i| entry(i, 1, &[i as u8; 10])).collect();
        store.persist(&batch, None, true).unwrap();
        // A new leader overwrites from 30, with fewer entries; then the log is compacted to 9.
        let overwrite: Vec<Entry> = (30..35).map(|i| entry(i, 2, b"new")).collect();
        store.persist(&overwrite, None, true).unwrap();
        store.compact(9, 1, b"state".to_vec()).unwrap();
        let from_memory = (
            all(&store, 10, 35, None),
            all(&store, 10, 35, Some(100)),
            (10..35).map(|i| store.term(i).unwrap()).collect::<Vec<_>>(),
        );
        assert_eq!(store.tail.first(), Some(10));
        // The same store reopened reads everything from disk.
        drop(store);
        let store = LogStore::open(&path, &snaps, &[1]).unwrap().0;
        assert_eq!(store.tail.first(), None);
        let from_disk = (
            all(&store, 10, 35, None),
            all(&store, 10, 35, Some(100)),
            (10..35).map(|i| store.term(i).unwrap()).collect::<Vec<_>>(),
        );
        assert_eq!(from_memory, from_disk);
        assert_eq!(store.last_index().unwrap(), 34);
        assert!(
            from_memory.1.len() < from_memory.0.len(),
            "max_size limits both"
        );
    }

    /// Flips one byte in every copy of `needle` in the file (redb is copy-on-write, so old
    /// pages may hold copies too).
    fn flip(path: &Path, needle: &[u8]) -> usize {
        let mut bytes = std::fs::read(path).unwrap();
        let mut hits = 0;
        let mut i = 0;
        while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
            bytes[i + pos + needle.len() / 2] ^= 0x40;
            hits += 1;
            i += pos + needle.len();
        }
        std::fs::write(path, bytes).unwrap();
        hits
    }

    #[test]
    fn a_flipped_byte_in_an_entry_is_detected_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let mut store = LogStore::open(&path, &dir.path().join("snapshots"), &[1])
                .unwrap()
                .0;
            let entries = [
                entry(2, 1, b"first entry"),
                entry(3, 1, b"CORRUPT-ME-PLEASE-0042"),
                entry(4, 1, b"third"),
            ];
            store.persist(&entries, None, true).unwrap();
        }
        assert!(
            flip(&path, b"CORRUPT-ME-PLEASE-0042") > 0,
            "the payload is in the file"
        );
        let err = LogStore::open(&path, &dir.path().join("snapshots"), &[1]).unwrap_err();
        let text = vmcloud_proto::ErrorChain(&err).to_string();
        assert!(
            matches!(err, StorageError::CorruptEntry { index: 3, .. }),
            "the corruption must be reported: {text}"
        );
        assert!(text.contains("wipe") || text.contains("orrupt"), "{text}");
    }

    #[test]
    fn a_flipped_byte_in_the_hard_state_is_detected_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raft.redb");
        {
            let mut store = LogStore::open(&path, &dir.path().join("snapshots"), &[1])
                .unwrap()
                .0;
            // A distinctive vote/term makes the record findable: term 0x0badcafe.
            let hs = HardState {
                term: 0x0bad_cafe,
                vote: 1,
                commit: 0,
            };
            store.persist(&[], Some(&hs), true).unwrap();
        }
        let needle = HardState {
            term: 0x0bad_cafe,
            vote: 1,
            commit: 0,
        }
        .write_to_bytes()
        .unwrap();
        assert!(flip(&path, &needle) > 0);
        let err = LogStore::open(&path, &dir.path().join("snapshots"), &[1]).unwrap_err();
        assert!(
            matches!(
                err,
                StorageError::CorruptMeta {
                    key: "hard_state",
                    ..
                }
            ),
            "{err}"
        );
    }
}
