//! How the state and its history are written into a snapshot: a small header naming the
//! format and its version, the state as positional MessagePack (`rmp-serde`: a struct is an
//! array of its fields in declaration order, enum variants by name), then the history records.
//!
//! Layout of version 1: `VMCSTATE`, version (u32 LE), length of the state (u64 LE) and the
//! state; then each history record as log index (u64 LE), sequence (u32 LE), length (u32 LE)
//! and the record (MessagePack with field names), oldest first, to the end.
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

use crate::history::store::FrozenHistory;
use crate::history::types::HistoryKey;
use crate::state::ClusterState;

/// Marks a state snapshot in this format.
pub const MAGIC: &[u8; 8] = b"VMCSTATE";
/// The newest version this binary writes and reads.
pub const VERSION: u32 = 1;

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
    #[error("the snapshot's history cannot be read")]
    History(#[source] crate::history::store::HistoryError),
    #[error("the snapshot is neither in a known state format nor JSON")]
    Unknown,
}

/// The state (and the history, when the replica keeps one) in the newest format.
pub fn encode(
    state: &ClusterState,
    history: Option<&FrozenHistory>,
) -> Result<Vec<u8>, FormatError> {
    let mut out = Vec::with_capacity(64 + state.instances.len() * 512);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    let start = out.len();
    rmp_serde::encode::write(&mut out, state).expect("the cluster state encodes");
    let len = (out.len() - start) as u64;
    out[start - 8..start].copy_from_slice(&len.to_le_bytes());
    if let Some(history) = history {
        history
            .for_each(state.applied_index, |key, bytes| {
                out.extend_from_slice(&key.index.to_le_bytes());
                out.extend_from_slice(&key.seq.to_le_bytes());
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(bytes);
            })
            .map_err(FormatError::History)?;
    }
    Ok(out)
}

/// The history records of a snapshot, each encoded as the history store keeps them.
#[derive(Debug, Clone)]
pub struct HistoryRecords<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for HistoryRecords<'a> {
    type Item = Result<(HistoryKey, &'a [u8]), FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((head, rest)) = self.rest.split_at_checked(16) else {
            self.rest = &[];
            return Some(Err(FormatError::Truncated {
                what: "a history record's header",
            }));
        };
        let index = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let seq = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes")) as usize;
        let Some((record, rest)) = rest.split_at_checked(len) else {
            self.rest = &[];
            return Some(Err(FormatError::Truncated {
                what: "a history record",
            }));
        };
        self.rest = rest;
        Some(Ok((HistoryKey { index, seq }, record)))
    }
}

/// A state and its history from a snapshot in any format this binary knows (the state
/// without its derived indexes: call [`ClusterState::reindex`]).
pub fn decode(data: &[u8]) -> Result<(ClusterState, HistoryRecords<'_>), FormatError> {
    if let Some(rest) = data.strip_prefix(MAGIC.as_slice()) {
        let (version, body) = rest.split_at_checked(4).ok_or(FormatError::Unknown)?;
        let version = u32::from_le_bytes(version.try_into().expect("4 bytes"));
        if version != 1 {
            return Err(FormatError::Newer { found: version });
        }
        let (len, body) = body.split_at_checked(8).ok_or(FormatError::Truncated {
            what: "the state's length",
        })?;
        let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
        let (state, history) = body
            .split_at_checked(len)
            .ok_or(FormatError::Truncated { what: "the state" })?;
        let state = rmp_serde::from_slice(state).map_err(|e| FormatError::Undecodable {
            version,
            source: Box::new(e),
        })?;
        return Ok((state, HistoryRecords { rest: history }));
    }
    if data.first() == Some(&b'{') {
        // Version 0: JSON, written before the binary format existed; it had no history.
        let state = serde_json::from_slice(data).map_err(|e| FormatError::Undecodable {
            version: 0,
            source: Box::new(e),
        })?;
        return Ok((state, HistoryRecords { rest: &[] }));
    }
    Err(FormatError::Unknown)
}
