//! Length-delimited framing: a 4-byte big-endian length, then one encoded protobuf message.
//!
//! The link code drives a `tokio_util` `LengthDelimitedCodec` with the same layout; these
//! helpers turn its frames into typed messages with errors that say what was wrong.

use prost::Message;

/// Largest frame either side accepts; a desired config for a full host is far below this.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("malformed {what} frame ({len} bytes)")]
pub struct FrameError {
    pub what: &'static str,
    pub len: usize,
    #[source]
    pub source: prost::DecodeError,
}

/// Decodes one frame's payload as message `M`; `what` names it in the error.
pub fn decode<M: Message + Default>(what: &'static str, bytes: &[u8]) -> Result<M, FrameError> {
    M::decode(bytes).map_err(|source| FrameError {
        what,
        len: bytes.len(),
        source,
    })
}
