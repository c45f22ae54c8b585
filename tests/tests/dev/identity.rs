//! The scheduler takes an agent's node from its certificate, never from what it says: an agent
//! holding node A's certificate can do nothing about node B, and a certificate from another CA
//! gets no link at all. Real QUIC + mutual TLS against a running `vmcloud dev`.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use prost::Message;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};
use vmcloud_proto::pb::{self, agent_message, scheduler_message};
use vmcloud_proto::pki::{self, Ca, Identity};
use vmcloud_proto::{ALPN_AGENT, NodeId};

use super::{Fixture, cli_json, create, instance, wait_state};

/// Registers as whatever node `identity` names and returns the stream halves and the answer.
async fn register(
    gateway: SocketAddr,
    ca_pem: &str,
    identity: &Identity,
) -> Result<
    (
        quinn::Connection,
        FramedWrite<quinn::SendStream, LengthDelimitedCodec>,
        FramedRead<quinn::RecvStream, LengthDelimitedCodec>,
        pb::Registered,
    ),
    String,
> {
    let tls = pki::client_config(ca_pem, identity, ALPN_AGENT).map_err(|e| e.to_string())?;
    let endpoint =
        vmcloud_agent::scheduler_link::endpoint(gateway, tls).map_err(|e| e.to_string())?;
    let conn = endpoint
        .connect(gateway, pki::SCHEDULER_SERVER_NAME)
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let (send, recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    let mut writer = FramedWrite::new(send, LengthDelimitedCodec::new());
    let mut reader = FramedRead::new(recv, LengthDelimitedCodec::new());
    let register = pb::AgentMessage {
        body: Some(agent_message::Body::Register(pb::Register {
            inventory: Some(pb::HostInventory {
                // What the agent claims about itself is not who it is.
                hostname: "i-am-someone-else".into(),
                region: "par".into(),
                cpu_threads: 4,
                memory_bytes: 8 << 30,
                ..Default::default()
            }),
            ..Default::default()
        })),
    };
    writer
        .send(prost::bytes::Bytes::from(register.encode_to_vec()))
        .await
        .map_err(|e| e.to_string())?;
    let frame = tokio::time::timeout(Duration::from_secs(5), reader.next())
        .await
        .map_err(|_| "no answer to Register".to_owned())?
        .ok_or("the scheduler closed the stream")?
        .map_err(|e| e.to_string())?;
    let answer = pb::SchedulerMessage::decode(frame).map_err(|e| e.to_string())?;
    match answer.body {
        Some(scheduler_message::Body::Registered(r)) => Ok((conn, writer, reader, r)),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

#[tokio::test]
async fn an_agent_speaks_only_for_the_node_its_certificate_names() {
    let fx = Fixture::start();
    let pki_dir = fx.fleet.data_dir.join("pki");
    let read = |f: &str| std::fs::read_to_string(pki_dir.join(f)).unwrap();
    let ca = Ca {
        identity: Identity {
            cert_pem: read("ca.pem"),
            key_pem: read("ca.key"),
        },
    };
    let gateway: SocketAddr = fx.fleet.gateway.parse().unwrap();
    let victim_node = fx.fleet.node.clone();
    let victim = create(&fx, &[]);
    wait_state(&fx, &victim, "running").await;

    // Node A (a certificate from the cluster CA for "intruder") registers as itself, whatever
    // it claims, and receives only its own (empty) config.
    let intruder = ca.issue_node(&NodeId::parse("intruder").unwrap()).unwrap();
    let (_conn, mut writer, mut reader, registered) =
        register(gateway, &ca.identity.cert_pem, &intruder)
            .await
            .unwrap();
    assert_eq!(registered.node_id, "intruder");
    let first = tokio::time::timeout(Duration::from_secs(5), reader.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match pb::SchedulerMessage::decode(first).unwrap().body {
        Some(scheduler_message::Body::Desired(d)) => {
            assert!(d.instances.is_empty(), "node B's instances leaked: {d:?}")
        }
        other => panic!("expected its desired config, got {other:?}"),
    }

    // It reports node B's instance as gone and failed: nothing happens to it.
    for state in [pb::ObservedState::Absent, pb::ObservedState::Failed] {
        let report = pb::AgentMessage {
            body: Some(agent_message::Body::Status(pb::StatusReport {
                generation: 1,
                instances: vec![pb::InstanceStatus {
                    instance_id: victim.clone(),
                    state: state as i32,
                    message: "intruder says so".into(),
                }],
                ..Default::default()
            })),
        };
        writer
            .send(prost::bytes::Bytes::from(report.encode_to_vec()))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let i = instance(&fx, &victim).await.unwrap();
    assert_eq!(i["state"], "running", "{i}");
    assert_eq!(i["node"], victim_node.as_str(), "{i}");
    assert!(i["status_message"].is_null(), "{i}");
    let nodes = cli_json(&fx, &["node", "list"]);
    let ids: Vec<&str> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"intruder") && ids.contains(&victim_node.as_str()),
        "{ids:?}"
    );

    // A certificate for node B from another CA gets no link.
    let other_ca = Ca::generate("someone-else").unwrap();
    let forged = other_ca
        .issue_node(&NodeId::parse(&victim_node).unwrap())
        .unwrap();
    let refused = register(gateway, &ca.identity.cert_pem, &forged).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA was accepted"
    );
    let i = instance(&fx, &victim).await.unwrap();
    assert_eq!(i["state"], "running", "{i}");
}
