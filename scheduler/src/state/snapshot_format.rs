//! How the state and its history are written into a snapshot: a small header naming the
//! format and its version, the state as positional MessagePack (`rmp-serde`: a struct is an
//! array of its fields in declaration order, enum variants by name), then the history records.
//!
//! Layout of version 2: `VMCSTATE`, version (u32 LE), length of the state (u64 LE) and the
//! state without its instances; the number of chunks of instances (u32 LE), then each chunk
//! as its length (u64 LE) and an array of instances (up to 32,768, in id order; encoded and
//! decoded in parallel where there are cores); then one byte: 0, the history is in the replica's own store, made durable through
//! the snapshot's index before the snapshot was written (what a replica writes for itself:
//! the snapshot does not grow with history); or 1, a history section follows to the end (what
//! a peer is sent, [`with_history`]): each record as log index (u64 LE), sequence (u32 LE),
//! length (u32 LE) and the record (MessagePack with field names), oldest first. Version 1 was
//! version 2 without the byte, the section always there.
//!
//! **The rule that keeps old snapshots readable:** fields of the state's types are only ever
//! appended at the end of their struct, each with `#[serde(default)]` (a shorter array from an
//! older binary fills them with their defaults), never removed, reordered or skipped when
//! serializing (`skip_serializing_if` would shift the fields after it). A change that cannot
//! follow it bumps [`VERSION`] and adds a branch to [`decode`]. The decoder also reads structs
//! written as maps with field names.
//! Snapshots written before this format (JSON, no header, no history) are still read. The
//! consensus crate wraps these bytes with the snapshot file's index, term and CRC-32, writes
//! them to a temporary file, fsyncs and renames it (docs/decisions/0007-snapshot-format.md).

pub use crate::history::section::HistoryRecords;
use crate::history::store::FrozenHistory;
use std::sync::Arc;

use crate::instances::types::Instance;
use crate::state::ClusterState;

/// Marks a state snapshot in this format.
pub const MAGIC: &[u8; 8] = b"VMCSTATE";
/// The newest version this binary writes and reads.
pub const VERSION: u32 = 2;

/// Where a snapshot's history is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History<'a> {
    /// In the replica's own history store, durable through the snapshot's index (a snapshot
    /// this replica wrote: version 2, flag 0).
    InStore,
    /// In the snapshot: a history section (versions 0 and 1; version 2 with flag 1, as a
    /// peer is sent it). Empty: no history.
    Section(&'a [u8]),
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error(
        "the snapshot is in state format v{found}, newer than this binary reads (up to v{VERSION}); run a newer vmcloud"
    )]
    Newer { found: u32 },
    #[error("the snapshot's state (format v{version}) cannot be decoded")]
    Undecodable {
        version: u32,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the snapshot is cut short ({what})")]
    Truncated { what: &'static str },
    #[error("the snapshot's history section is cut short")]
    Section(#[from] crate::history::section::Truncated),
    #[error("the snapshot's history cannot be read")]
    History(#[source] crate::history::store::HistoryError),
    #[error("the snapshot is neither in a known state format nor JSON")]
    Unknown,
}

/// The state in the newest format, its history left in the replica's store (flag 0; see
/// [`with_history`] for what a peer is sent). The instances, most of a large state, are
/// encoded in chunks, on several threads where there are cores to spare, so that a restore
/// can decode them in parallel.
pub fn encode(state: &ClusterState) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + state.instances.len() * 200);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let start = out.len();
    let shell = ClusterState {
        instances: Default::default(),
        ..state.clone()
    };
    rmp_serde::encode::write(&mut out, &shell).expect("the cluster state encodes");
    let len = (out.len() - start) as u64;
    out[start - 8..start].copy_from_slice(&len.to_le_bytes());
    let instances: Vec<&Arc<Instance>> = state.instances.values().collect();
    let chunks: Vec<&[&Arc<Instance>]> = instances.chunks(CHUNK).collect();
    out.extend_from_slice(&(chunks.len() as u32).to_le_bytes());
    // One core is the applier's.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1));
    let encode_chunk = |out: &mut Vec<u8>, chunk: &[&Arc<Instance>]| {
        let at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        rmp_serde::encode::write(out, chunk).expect("instances encode");
        let len = (out.len() - at - 8) as u64;
        out[at..at + 8].copy_from_slice(&len.to_le_bytes());
    };
    if threads <= 1 || chunks.len() <= 1 {
        for chunk in &chunks {
            encode_chunk(&mut out, chunk);
        }
    } else {
        let parts = in_parallel(&chunks, threads.min(MAX_THREADS), |group| {
            let mut buf = Vec::new();
            for chunk in group {
                encode_chunk(&mut buf, chunk);
            }
            buf
        });
        for part in parts {
            out.extend_from_slice(&part);
        }
    }
    out.push(HISTORY_IN_STORE);
    out
}

/// Instances per chunk.
const CHUNK: usize = 32 * 1024;
/// Threads that encode or decode chunks at most.
const MAX_THREADS: usize = 8;

/// `work` over `items` split into `threads` consecutive groups, one thread each; the results
/// in the groups' order.
fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let per = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|group| scope.spawn(|| work(group)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Version 2's flag after the state: the history is in the replica's store.
const HISTORY_IN_STORE: u8 = 0;
/// Version 2's flag after the state: a history section follows.
const HISTORY_FOLLOWS: u8 = 1;

/// A snapshot written by [`encode`] with the history through its index added (what a peer
/// is sent: it has no history of ours). A snapshot that already carries its history is
/// returned as it is.
pub fn with_history(
    snapshot: &[u8],
    through: u64,
    history: &FrozenHistory,
) -> Result<Vec<u8>, FormatError> {
    if snapshot.is_empty() {
        // The initial state: nothing to add.
        return Ok(Vec::new());
    }
    let (_, where_) = split(snapshot)?;
    if where_ != History::InStore {
        return Ok(snapshot.to_vec());
    }
    let mut out = Vec::with_capacity(snapshot.len() * 2);
    out.extend_from_slice(&snapshot[..snapshot.len() - 1]);
    out.push(HISTORY_FOLLOWS);
    history
        .for_each(through, |key, bytes| {
            crate::history::section::push(&mut out, key, bytes)
        })
        .map_err(FormatError::History)?;
    Ok(out)
}

/// A state and where its history is, from a snapshot in any format this binary knows (the
/// state without its derived indexes: call [`ClusterState::reindex`]; a section's records:
/// [`HistoryRecords`]).
pub fn decode(data: &[u8]) -> Result<(ClusterState, History<'_>), FormatError> {
    let (state, history) = split(data)?;
    let undecodable = |version, e: rmp_serde::decode::Error| FormatError::Undecodable {
        version,
        source: Box::new(e),
    };
    let state = match state {
        State::Binary(version, bytes, chunks) => {
            let mut state: ClusterState =
                rmp_serde::from_slice(bytes).map_err(|e| undecodable(version, e))?;
            if !chunks.is_empty() {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let decoded = in_parallel(&chunks, threads.min(MAX_THREADS), |group| {
                    group
                        .iter()
                        .map(|chunk| rmp_serde::from_slice::<Vec<Arc<Instance>>>(chunk))
                        .collect::<Result<Vec<_>, _>>()
                });
                let mut instances = imbl::OrdMap::new();
                for group in decoded {
                    for chunk in group.map_err(|e| undecodable(version, e))? {
                        for i in chunk {
                            instances.insert(i.id.clone(), i);
                        }
                    }
                }
                state.instances = instances;
            }
            state
        }
        State::Json(bytes) => {
            serde_json::from_slice(bytes).map_err(|e| FormatError::Undecodable {
                version: 0,
                source: Box::new(e),
            })?
        }
    };
    Ok((state, history))
}

/// A snapshot's encoded state: the state (version 1: all of it; version 2: without its
/// instances) and the chunks of instances (version 2).
enum State<'a> {
    Binary(u32, &'a [u8], Vec<&'a [u8]>),
    Json(&'a [u8]),
}

/// A snapshot's state bytes and where its history is, without decoding either.
fn split(data: &[u8]) -> Result<(State<'_>, History<'_>), FormatError> {
    if let Some(rest) = data.strip_prefix(MAGIC.as_slice()) {
        let (version, body) = rest.split_at_checked(4).ok_or(FormatError::Unknown)?;
        let version = u32::from_le_bytes(version.try_into().expect("4 bytes"));
        if !(1..=VERSION).contains(&version) {
            return Err(FormatError::Newer { found: version });
        }
        let (len, body) = body.split_at_checked(8).ok_or(FormatError::Truncated {
            what: "the state's length",
        })?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let (state, mut rest) = body
            .split_at_checked(len)
            .ok_or(FormatError::Truncated { what: "the state" })?;
        let mut chunks = Vec::new();
        if version >= 2 {
            let (count, tail) = rest.split_at_checked(4).ok_or(FormatError::Truncated {
                what: "the number of instance chunks",
            })?;
            rest = tail;
            for _ in 0..u32::from_le_bytes(count.try_into().expect("4 bytes")) {
                let truncated = FormatError::Truncated {
                    what: "a chunk of instances",
                };
                let (len, tail) = rest.split_at_checked(8).ok_or(truncated)?;
                let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
                let (chunk, tail) = tail.split_at_checked(len).ok_or(FormatError::Truncated {
                    what: "a chunk of instances",
                })?;
                chunks.push(chunk);
                rest = tail;
            }
        }
        let history = if version == 1 {
            // Version 1 always carried its history.
            History::Section(rest)
        } else {
            match rest.split_first() {
                Some((&HISTORY_IN_STORE, [])) => History::InStore,
                Some((&HISTORY_FOLLOWS, section)) => History::Section(section),
                _ => {
                    return Err(FormatError::Truncated {
                        what: "the history flag",
                    });
                }
            }
        };
        return Ok((State::Binary(version, state, chunks), history));
    }
    if data.first() == Some(&b'{') {
        // Version 0: JSON, written before the binary format existed; it had no history.
        return Ok((State::Json(data), History::Section(&[])));
    }
    Err(FormatError::Unknown)
}
