//! How the state is written into a snapshot: a small header naming the format and its
//! version, then the state as MessagePack with field names (`rmp-serde`).
//!
//! Field names make the encoding self-describing, so a newer binary restores an older
//! snapshot the way it reads older JSON: fields it lacks take their `#[serde(default)]`,
//! renamed enum variants keep their old names. A change that cannot be read that way bumps
//! [`VERSION`] and adds a branch to [`decode`]. Snapshots written before this format (JSON, no
//! header) are still read. The consensus crate wraps these bytes with the snapshot file's
//! index, term and CRC-32, writes them to a temporary file, fsyncs and renames it
//! (docs/decisions/0007-snapshot-format.md).

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
    #[error("the snapshot is neither in a known state format nor JSON")]
    Unknown,
}

/// The state in the newest format.
pub fn encode(state: &ClusterState) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + state.instances.len() * 512);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    rmp_serde::encode::write_named(&mut out, state).expect("the cluster state encodes");
    out
}

/// A state from a snapshot in any format this binary knows (without its derived indexes:
/// call [`ClusterState::reindex`]).
pub fn decode(data: &[u8]) -> Result<ClusterState, FormatError> {
    if let Some(rest) = data.strip_prefix(MAGIC.as_slice()) {
        let (version, body) = rest.split_at_checked(4).ok_or(FormatError::Unknown)?;
        let version = u32::from_le_bytes(version.try_into().expect("4 bytes"));
        return match version {
            1 => rmp_serde::from_slice(body).map_err(|e| FormatError::Undecodable {
                version,
                source: Box::new(e),
            }),
            found => Err(FormatError::Newer { found }),
        };
    }
    if data.first() == Some(&b'{') {
        // Version 0: JSON, written before the binary format existed.
        return serde_json::from_slice(data).map_err(|e| FormatError::Undecodable {
            version: 0,
            source: Box::new(e),
        });
    }
    Err(FormatError::Unknown)
}
