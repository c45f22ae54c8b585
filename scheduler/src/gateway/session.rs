//! One agent's link session: registration, desired configs out, heartbeats and reports in,
//! renewals, and redirects to the leader.

use futures::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::gateway::join::Signer;
use crate::gateway::links::LinkInfo;
use crate::gateway::links::NodeLinks;
use crate::gateway::reports::observe_gpus;
use crate::gateway::reports::{back_up, observe, register_node};
use crate::gateway::wire::LinkError;
use crate::gateway::wire::encode;
use crate::gateway::wire::{codec, now_us};
use crate::raft_handle::Cluster;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use vmcloud_proto::pb::{self, agent_message, scheduler_message};
use vmcloud_proto::{NodeId, frame};

pub(crate) async fn serve_link(
    conn: &quinn::Connection,
    node: NodeId,
    cluster: &Cluster,
    links: &NodeLinks,
    signer: Option<&Signer>,
    connection: u64,
) -> Result<(), LinkError> {
    let (send, recv) = conn.accept_bi().await?;
    let mut reader = FramedRead::new(recv, codec());
    let mut writer = FramedWrite::new(send, codec());

    let first = reader.next().await.ok_or(LinkError::Protocol(
        "the agent closed the stream before registering",
    ))??;
    let message: pb::AgentMessage = frame::decode("agent", &first)?;
    let Some(agent_message::Body::Register(register)) = message.body else {
        return Err(LinkError::Protocol("the first message must be Register"));
    };
    // Only the leader serves agents: it keeps their liveness and pushes their configs.
    if let Some(redirect) = redirect(cluster) {
        return send_redirect(conn, &mut writer, links, redirect).await;
    }
    let now = Instant::now();
    let wake = Arc::new(tokio::sync::Notify::new());
    {
        let mut map = links.0.lock().unwrap();
        map.insert(
            node.clone(),
            LinkInfo {
                connection,
                connected_since: now,
                last_heartbeat: now,
                acked_generation: None,
                summary: None,
                conditions: Vec::new(),
                unhealthy_gpus: Vec::new(),
                wake: wake.clone(),
                generation_seen: 0,
            },
        );
    }
    // Listed before it registers: liveness never sees a registered node without its link.
    register_node(cluster, &node, &register).await;
    back_up(cluster, &node).await;
    writer
        .send(encode(scheduler_message::Body::Registered(
            pb::Registered {
                node_id: node.to_string(),
            },
        )))
        .await?;
    links.1.connected_agents.set(links.len() as i64);
    tracing::info!(%node, remote = %conn.remote_address(), version = register.build.as_ref().map(|b| b.version.as_str()).unwrap_or(""), "agent connected");

    let mut leading = links.2.subscribe();
    let mut sent_generation = None;
    // The config this stream carried last: a large one that follows goes as a delta on it.
    let mut last_sent: Option<pb::DesiredConfig> = None;
    loop {
        let desired = {
            let state = cluster.state();
            let generation = state.nodes.get(&node).map(|n| n.generation);
            if generation.is_some() && generation != sent_generation {
                state.desired_config(&node)
            } else {
                None
            }
        };
        if let Some(desired) = desired {
            sent_generation = Some(desired.generation);
            let message = match &last_sent {
                Some(base)
                    if desired.instances.len() >= vmcloud_proto::desired::DELTA_MIN_INSTANCES =>
                {
                    links.1.desired_deltas.inc();
                    vmcloud_proto::desired::delta(base, &desired)
                }
                _ => {
                    links.1.desired_whole.inc();
                    desired.clone()
                }
            };
            last_sent = Some(desired);
            writer
                .send(encode(scheduler_message::Body::Desired(message)))
                .await?;
        }
        // Both arms are cancel-safe: `FramedRead::next` keeps partial frames in its buffer,
        // and `watch::Receiver::changed` loses nothing (the loop re-reads the state).
        tokio::select! {
            frame = reader.next() => {
                let Some(frame) = frame else { return Ok(()) };
                let message: pb::AgentMessage = frame::decode("agent", &frame?)?;
                match message.body {
                    Some(agent_message::Body::Heartbeat(hb)) => {
                        if hb.sent_unix_us > 0 {
                            let delay_us = now_us() - hb.sent_unix_us;
                            links.1.heartbeat_delay_seconds.observe(delay_us.max(0) as f64 / 1e6);
                        }
                        links.update(&node, |l| {
                            l.last_heartbeat = Instant::now();
                            if hb.summary.is_some() {
                                l.summary = hb.summary;
                            }
                        });
                    }
                    Some(agent_message::Body::Status(report)) => {
                        links.update(&node, |l| {
                            l.last_heartbeat = Instant::now();
                            l.acked_generation = Some(report.generation);
                            for c in report.conditions.iter().filter(|c| !l.conditions.contains(c)) {
                                tracing::warn!(%node, kind = c.kind, subject = c.subject, "host condition: {}", c.message);
                            }
                            for g in report.unhealthy_gpus.iter().filter(|g| !l.unhealthy_gpus.contains(g)) {
                                tracing::error!(%node, gpu = g.pci_address, reason = g.reason, "GPU unhealthy");
                            }
                            l.conditions.clone_from(&report.conditions);
                            l.unhealthy_gpus.clone_from(&report.unhealthy_gpus);
                        });
                        observe(cluster, &node, &report).await;
                        observe_gpus(cluster, &node, &report).await;
                    }
                    Some(agent_message::Body::Renew(renew)) => {
                        // The certificate names the node this connection proved it is.
                        let answer = match signer {
                            None => pb::Renewed { cert_pem: String::new(), error: "this scheduler cannot sign certificates: the cluster CA's key is not in its PKI directory".into() },
                            Some(s) => match s.ca.sign_node_csr_for(&renew.csr_pem, &node, s.node_cert_ttl) {
                                Ok(cert_pem) => {
                                    tracing::info!(%node, "node certificate renewed");
                                    pb::Renewed { cert_pem, error: String::new() }
                                }
                                Err(e) => pb::Renewed { cert_pem: String::new(), error: format!("the certificate request is not valid: {e}") },
                            },
                        };
                        writer.send(encode(scheduler_message::Body::Renewed(answer))).await?;
                    }
                    Some(agent_message::Body::Register(_)) => return Err(LinkError::Protocol("Register sent twice")),
                    None => return Err(LinkError::Protocol("empty agent message")),
                }
            }
            () = wake.notified() => {}
            changed = leading.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                if *leading.borrow_and_update() {
                    continue;
                }
                if let Some(redirect) = redirect_after_lead_lost(cluster, links).await {
                    tracing::info!(%node, leader = redirect.leader_gateway, "this replica no longer leads; sending the agent to the leader");
                    return send_redirect(conn, &mut writer, links, redirect).await;
                }
            }
        }
    }
}

/// Where to send an agent once this replica lost the lead; None if it leads again. Waits
/// (up to 10 s) until a new leader is known — an agent sent nowhere only adds to the
/// reconnecting crowd — then a random delay that spreads the agents of a large fleet over up
/// to 20 s (one second per 2,000), so they do not all arrive at the new leader at once.
pub(crate) async fn redirect_after_lead_lost(
    cluster: &Cluster,
    links: &NodeLinks,
) -> Option<pb::Redirect> {
    use rand::Rng;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = redirect(cluster)?;
        if !r.leader_gateway.is_empty() || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let spread = Duration::from_secs_f64((links.len() as f64 / 2000.0).min(20.0));
    let wait = rand::rng().random_range(Duration::ZERO..=spread);
    tokio::time::sleep(wait).await;
    redirect(cluster)
}

/// Sends the agent to the leader and ends the session once it has read that (it closes the
/// connection then), giving a busy agent up to 15 s.
pub(crate) async fn send_redirect(
    conn: &quinn::Connection,
    writer: &mut FramedWrite<quinn::SendStream, LengthDelimitedCodec>,
    links: &NodeLinks,
    redirect: pb::Redirect,
) -> Result<(), LinkError> {
    links.1.redirects.inc();
    writer
        .send(encode(scheduler_message::Body::Redirect(redirect)))
        .await?;
    let _ = writer.get_mut().finish();
    let _ = tokio::time::timeout(Duration::from_secs(15), conn.closed()).await;
    Ok(())
}

/// Where to send an agent when this replica does not lead; None when it leads.
pub(crate) fn redirect(cluster: &Cluster) -> Option<pb::Redirect> {
    let status = cluster.raft_status().borrow().clone();
    if status.is_leader {
        return None;
    }
    let leader_gateway = cluster
        .state()
        .replicas
        .get(&status.leader_id)
        .map(|r| r.gateway.clone())
        .unwrap_or_default();
    Some(pb::Redirect {
        leader_gateway,
        leader_id: status.leader_id,
    })
}
