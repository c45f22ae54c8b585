//! Joining and renewal: signs node certificates for hosts presenting a join token (ALPN
//! `vmcloud-join/1`) and for agents renewing over their link.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use prost::Message;
use std::time::Duration;

use crate::gateway::wire::{LinkError, codec};
use crate::raft_handle::Cluster;
use tokio_util::codec::{FramedRead, FramedWrite};
use vmcloud_proto::pb::{self, command::Body};
use vmcloud_proto::{NodeId, frame, pki};

/// Signs node certificates: for hosts joining with a token and for agents renewing theirs.
#[derive(Debug)]
pub struct Signer {
    pub ca: pki::Ca,
    /// How long a node certificate it signs is valid.
    pub node_cert_ttl: Duration,
}

/// A host joining with a token: one request, one answer.
pub(crate) async fn serve_join(
    conn: &quinn::Connection,
    cluster: &Cluster,
    ca: Option<&Signer>,
) -> Result<(), LinkError> {
    let (send, recv) = conn.accept_bi().await?;
    let mut reader = FramedRead::new(recv, codec());
    let mut writer = FramedWrite::new(send, codec());
    let Some(frame) = reader.next().await else {
        return Ok(());
    };
    let request: pb::JoinRequest = frame::decode("joining host", &frame?)?;
    let answer = match join(cluster, ca, &request).await {
        Ok(cert_pem) => {
            tracing::info!(node = request.node_id, remote = %conn.remote_address(), "host joined with a token");
            pb::JoinResponse {
                cert_pem,
                error: String::new(),
            }
        }
        Err(error) => {
            tracing::warn!(node = request.node_id, remote = %conn.remote_address(), %error, "join refused");
            pb::JoinResponse {
                cert_pem: String::new(),
                error,
            }
        }
    };
    writer.send(Bytes::from(answer.encode_to_vec())).await?;
    let _ = writer.get_mut().finish();
    // Let the answer reach the host before the connection goes.
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
    Ok(())
}

/// Checks the token and signs the host's certificate; Err is the reason, for the host.
pub(crate) async fn join(
    cluster: &Cluster,
    ca: Option<&Signer>,
    request: &pb::JoinRequest,
) -> Result<String, String> {
    let ca = ca.ok_or(
        "this scheduler cannot sign certificates: the cluster CA's key is not in its PKI directory",
    )?;
    let node = NodeId::parse(&request.node_id).map_err(|e| e.to_string())?;
    let secret = crate::join::types::TokenSecret::parse(&request.token).ok_or(
        "that is not a join token (vmcjoin_<id>_<secret>); make one with `vmcloud token create`",
    )?;
    let unknown = || "unknown join token; make one with `vmcloud token create`".to_owned();
    {
        let state = cluster.state();
        let token = state.join_tokens.get(&secret.id).ok_or_else(unknown)?;
        if !token.matches(&secret) {
            return Err(unknown());
        }
        if let Some(why) = token.refusal(&node, crate::clock::now_ms()) {
            return Err(why);
        }
    }
    // Applied once: a second host racing with the same token is refused here.
    match cluster
        .propose(Body::UseJoinToken(pb::UseJoinToken {
            token_id: secret.id.clone(),
            node_id: node.to_string(),
        }))
        .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(rejected)) => return Err(rejected.to_string()),
        Err(e) => return Err(format!("the token could not be recorded as used: {e}")),
    }
    ca.ca
        .sign_node_csr_for(&request.csr_pem, &node, ca.node_cert_ttl)
        .map_err(|e| format!("the certificate request is not valid: {e}"))
}
