//! Joining with a token: a host without a certificate asks the scheduler for one.
//!
//! The agent makes a key and a certificate request for its node, connects with ALPN
//! `vmcloud-join/1` trusting only the cluster CA (so it talks to the real scheduler) and
//! presenting no certificate, and sends the token with the request. The scheduler checks the
//! token (single use, not expired, for this node), records it used and answers with the signed
//! certificate, or with why not.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use prost::Message;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use vmcloud_proto::{ALPN_JOIN, NodeId, frame, pb, pki};

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the scheduler refused the join: {0}")]
    Refused(String),
    #[error("cannot reach the scheduler at {scheduler} to join: {message}")]
    Unreachable {
        scheduler: SocketAddr,
        message: String,
    },
    #[error("cannot make the key and certificate request")]
    Pki(#[from] pki::PkiError),
}

/// Joins as `node` with `token`; the node's new identity (certificate and key).
pub async fn join(
    scheduler: SocketAddr,
    ca_pem: &str,
    node: &NodeId,
    token: &str,
) -> Result<pki::Identity, JoinError> {
    let unreachable = |message: String| JoinError::Unreachable { scheduler, message };
    let (csr_pem, key_pem) = pki::node_csr(node)?;
    let tls = pki::anonymous_client_config(ca_pem, ALPN_JOIN)?;
    let endpoint =
        crate::scheduler_link::endpoint(scheduler, tls).map_err(|e| unreachable(e.to_string()))?;
    let exchange = async {
        let conn = endpoint
            .connect(scheduler, pki::SCHEDULER_SERVER_NAME)
            .map_err(|e| unreachable(e.to_string()))?
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let codec = || {
            LengthDelimitedCodec::builder()
                .max_frame_length(frame::MAX_FRAME_BYTES)
                .new_codec()
        };
        let mut writer = FramedWrite::new(send, codec());
        let mut reader = FramedRead::new(recv, codec());
        let request = pb::JoinRequest {
            token: token.trim().to_owned(),
            node_id: node.to_string(),
            csr_pem,
        };
        writer
            .send(bytes::Bytes::from(request.encode_to_vec()))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let frame = reader
            .next()
            .await
            .ok_or_else(|| unreachable("the scheduler closed the stream".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let answer: pb::JoinResponse =
            frame::decode("scheduler", &frame).map_err(|e| unreachable(e.to_string()))?;
        conn.close(0u32.into(), b"joined");
        if !answer.error.is_empty() {
            return Err(JoinError::Refused(answer.error));
        }
        Ok(pki::Identity {
            cert_pem: answer.cert_pem,
            key_pem,
        })
    };
    let joined = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| unreachable("no answer within 30 s".into()))?;
    endpoint.close(0u32.into(), b"joined");
    joined
}
