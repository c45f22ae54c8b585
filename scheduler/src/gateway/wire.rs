//! Framing shared by the gateway's protocols: length-delimited protobuf frames, and the
//! errors that end a link.

use bytes::Bytes;
use prost::Message;

use tokio_util::codec::LengthDelimitedCodec;
use vmcloud_proto::pb::{self, scheduler_message};
use vmcloud_proto::{frame, pki};

#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("QUIC connection failed")]
    Connection(#[from] quinn::ConnectionError),
    #[error("the agent's identity could not be established")]
    Identity(#[source] Option<pki::PkiError>),
    #[error("stream I/O failed")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] frame::FrameError),
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(frame::MAX_FRAME_BYTES)
        .new_codec()
}

pub(crate) fn encode(body: scheduler_message::Body) -> Bytes {
    pb::SchedulerMessage { body: Some(body) }
        .encode_to_vec()
        .into()
}

/// The current time, Unix µs.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
