//! The guest metadata endpoint: EC2-compatible, so cloud-init's Ec2 datasource and existing
//! tools (`ec2-metadata`, spot-notice watchers) work unchanged.
//!
//! Served at `http://169.254.169.254/` in production (the address is on each tenant bridge;
//! `--metadata-listen`). A request is answered with the data of the instance whose address
//! (the desired NIC's `ipv4`) is the request's source address, and nothing else: a guest
//! reads only its own data. An address no instance on this host has gets 404; an address two
//! instances share (overlapping tenant networks) gets 409 and is logged, never answered with
//! either one's data.
//!
//! Paths (any version prefix: `latest`, `2021-03-23`, …):
//! - `meta-data/` — `ami-id`, `hostname`, `instance-id`, `local-hostname`, `local-ipv4`, `mac`,
//!   `placement/availability-zone`, `placement/region`, `public-keys/0/openssh-key`, …,
//!   `spot/instance-action` (only once a preemption notice is given: `{"action":
//!   "terminate", "time": "…Z"}`; 404 before, as on EC2);
//! - `meta-data/network/interfaces/macs/<mac>/` — `device-number`, `local-ipv4s`, `mac`,
//!   `subnet-ipv4-cidr-block`, `public-ipv4s`, `ipv6s` (as EC2, for tools that read them);
//! - `network-config` — cloud-init network config (version 2, JSON): the NIC matched by its
//!   MAC, its static address and MTU, and an on-link route to the metadata address, so the
//!   guest needs no DHCP (404 without a NIC);
//! - `user-data` (404 when there is none);
//! - IMDSv2: `PUT /latest/api/token` with `X-aws-ec2-metadata-token-ttl-seconds` (1–21600)
//!   returns a token for that guest; a request carrying `X-aws-ec2-metadata-token` must carry
//!   a live token of its own guest. Requests without one are answered too (IMDSv1).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use tokio::sync::watch;
use vmcloud_proto::pb;

const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const MAX_TOKENS: usize = 65_536;

#[derive(Clone)]
pub struct MetadataState {
    pub desired: watch::Receiver<Option<pb::DesiredConfig>>,
    /// Region code of this host (`placement/region`).
    pub region: String,
    tokens: Arc<Mutex<HashMap<String, (IpAddr, Instant)>>>,
}

impl MetadataState {
    pub fn new(desired: watch::Receiver<Option<pb::DesiredConfig>>, region: String) -> Self {
        MetadataState {
            desired,
            region,
            tokens: Arc::default(),
        }
    }
}

pub fn router(state: MetadataState) -> Router {
    Router::new()
        .route("/", get(|| async { "latest\n" }))
        .route("/latest/api/token", put(token))
        .route("/{version}", get(versions))
        .route("/{version}/", get(versions))
        .route("/{version}/user-data", get(user_data))
        .route("/{version}/network-config", get(network_config))
        .route("/{version}/meta-data", get(meta_root))
        .route("/{version}/meta-data/", get(meta_root))
        .route("/{version}/meta-data/{*path}", get(meta))
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "Not Found\n")
}

/// The instance the request comes from, or the response that refuses it.
fn guest(
    s: &MetadataState,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<pb::DesiredInstance, (StatusCode, String)> {
    let ip = peer.ip().to_canonical();
    if let Some(token) = headers.get(TOKEN_HEADER) {
        let tokens = s.tokens.lock().unwrap();
        let live = token
            .to_str()
            .ok()
            .and_then(|t| tokens.get(t))
            .is_some_and(|(owner, expires)| *owner == ip && Instant::now() < *expires);
        if !live {
            return Err((
                StatusCode::UNAUTHORIZED,
                "the metadata token is not valid for this guest or has expired; PUT /latest/api/token for a new one\n".into(),
            ));
        }
    }
    let desired = s.desired.borrow();
    let mut found = desired.iter().flat_map(|d| &d.instances).filter(|i| {
        i.nic.as_ref().is_some_and(|n| {
            n.ipv4
                .split('/')
                .next()
                .and_then(|a| a.parse::<IpAddr>().ok())
                == Some(ip)
        })
    });
    match (found.next(), found.next()) {
        (Some(i), None) => Ok(i.clone()),
        (None, _) => Err((
            StatusCode::NOT_FOUND,
            format!("no instance on this host has the address {ip}\n"),
        )),
        (Some(a), Some(b)) => {
            tracing::warn!(%ip, a = a.instance_id, b = b.instance_id, "two instances share an address; metadata refused to both");
            Err((
                StatusCode::CONFLICT,
                format!("more than one instance on this host has the address {ip}\n"),
            ))
        }
    }
}

async fn token(
    State(s): State<MetadataState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let ttl = headers
        .get(TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let Some(ttl) = ttl.filter(|t| (1..=21_600).contains(t)) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{TTL_HEADER} must be a number of seconds from 1 to 21600\n"),
        );
    };
    if let Err((status, why)) = guest(&s, peer, &HeaderMap::new()) {
        return text(status, why);
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut tokens = s.tokens.lock().unwrap();
    let now = Instant::now();
    tokens.retain(|_, (_, expires)| *expires > now);
    if tokens.len() >= MAX_TOKENS {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many metadata tokens; retry later\n",
        );
    }
    tokens.insert(
        token.clone(),
        (peer.ip().to_canonical(), now + Duration::from_secs(ttl)),
    );
    (StatusCode::OK, [(TTL_HEADER, ttl.to_string())], token).into_response()
}

async fn versions(Path(version): Path<String>) -> Response {
    if !valid_version(&version) {
        return not_found();
    }
    text(StatusCode::OK, "meta-data/\nnetwork-config\nuser-data\n")
}

fn valid_version(v: &str) -> bool {
    v == "latest"
        || (v.len() == 10
            && v.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            }))
}

/// The address and subnet of a NIC: (`10.0.0.3`, 24, `10.0.0.0/24`).
fn nic_address(nic: &pb::DesiredNic) -> Option<(std::net::Ipv4Addr, u8, String)> {
    let (ip, prefix) = nic.ipv4.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    let base = std::net::Ipv4Addr::from(u32::from(ip) & mask);
    Some((ip, prefix, format!("{base}/{prefix}")))
}

/// cloud-init's network config (version 2) for the guest's NIC: no DHCP needed.
async fn network_config(
    State(s): State<MetadataState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !valid_version(&version) {
        return not_found();
    }
    let i = match guest(&s, peer, &headers) {
        Err((status, why)) => return text(status, why),
        Ok(i) => i,
    };
    let Some((nic, (ip, prefix, _))) = i.nic.as_ref().and_then(|n| nic_address(n).map(|a| (n, a)))
    else {
        return not_found();
    };
    let mut addresses = vec![format!("{ip}/{prefix}")];
    let mut routes = vec![serde_json::json!({"to": "169.254.169.254/32", "scope": "link"})];
    if !nic.public_ipv4s.is_empty() {
        // Public addresses are routed to the guest by its host (a /32 each); the guest sends
        // the rest of the world through the host, which answers on the bridge.
        addresses.extend(nic.public_ipv4s.iter().map(|a| format!("{a}/32")));
        routes.push(
            serde_json::json!({"to": "0.0.0.0/0", "via": "169.254.169.254", "on-link": true}),
        );
    }
    if !nic.ipv6.is_empty() {
        // In its host's /64; the host answers as fe80::1 on the bridge.
        addresses.push(nic.ipv6.clone());
        routes.push(serde_json::json!({"to": "::/0", "via": "fe80::1"}));
    }
    let config = serde_json::json!({
        "version": 2,
        "ethernets": {
            "eth0": {
                "match": {"macaddress": nic.mac},
                "set-name": "eth0",
                "addresses": addresses,
                "mtu": nic.mtu,
                "routes": routes,
            }
        }
    });
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        config.to_string(),
    )
        .into_response()
}

async fn user_data(
    State(s): State<MetadataState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !valid_version(&version) {
        return not_found();
    }
    match guest(&s, peer, &headers) {
        Err((status, why)) => text(status, why),
        Ok(i) if i.user_data.is_empty() => not_found(),
        Ok(i) => (
            StatusCode::OK,
            [("content-type", "application/octet-stream")],
            i.user_data,
        )
            .into_response(),
    }
}

async fn meta_root(
    State(s): State<MetadataState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(version): Path<String>,
    headers: HeaderMap,
) -> Response {
    meta(
        State(s),
        ConnectInfo(peer),
        Path((version, String::new())),
        headers,
    )
    .await
}

async fn meta(
    State(s): State<MetadataState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((version, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if !valid_version(&version) {
        return not_found();
    }
    let i = match guest(&s, peer, &headers) {
        Ok(i) => i,
        Err((status, why)) => return text(status, why),
    };
    match lookup(&i, &s.region, path.trim_end_matches('/')) {
        Some(body) => text(StatusCode::OK, body),
        None => not_found(),
    }
}

/// The metadata tree of one instance: a leaf's value, or a directory's listing (children one
/// per line, directories with a trailing `/`).
fn lookup(i: &pb::DesiredInstance, region: &str, path: &str) -> Option<String> {
    let ip = i
        .nic
        .as_ref()
        .and_then(|n| n.ipv4.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let mac = i.nic.as_ref().map(|n| n.mac.clone()).unwrap_or_default();
    let ipv6 = i
        .nic
        .as_ref()
        .and_then(|n| n.ipv6.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let public: Vec<String> = i
        .nic
        .as_ref()
        .map(|n| n.public_ipv4s.clone())
        .unwrap_or_default();
    let hostname = if i.hostname.is_empty() {
        i.instance_id.clone()
    } else {
        i.hostname.clone()
    };
    let zone = if i.availability_zone.is_empty() {
        region.to_owned()
    } else {
        i.availability_zone.clone()
    };
    let notice = (i.terminate_at_unix_ms > 0).then(|| {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(i.terminate_at_unix_ms) * 1_000_000,
        )
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .ok()
        })
        .unwrap_or_default();
        format!("{{\"action\": \"terminate\", \"time\": \"{t}\"}}")
    });
    let keys: Vec<&String> = i.ssh_keys.iter().collect();
    let value = match path {
        "" => {
            let mut entries = vec![
                "ami-id",
                "hostname",
                "instance-id",
                "local-hostname",
                "local-ipv4",
                "mac",
                "network/",
                "placement/",
                "public-keys/",
            ];
            if !public.is_empty() {
                entries.push("public-ipv4");
            }
            if notice.is_some() {
                entries.push("spot/");
            }
            entries.join("\n")
        }
        "ami-id" => i.image.clone(),
        "instance-id" => i.instance_id.clone(),
        "hostname" | "local-hostname" => hostname,
        "local-ipv4" if !ip.is_empty() => ip,
        "public-ipv4" if !public.is_empty() => public[0].clone(),
        "mac" if !mac.is_empty() => mac,
        "network" if !mac.is_empty() => "interfaces/".into(),
        "network/interfaces" if !mac.is_empty() => "macs/".into(),
        "network/interfaces/macs" if !mac.is_empty() => format!("{mac}/"),
        "placement" => "availability-zone\nregion".into(),
        "placement/availability-zone" => zone,
        "placement/region" => region.to_owned(),
        "public-keys" => keys
            .iter()
            .enumerate()
            .map(|(n, _)| format!("{n}=key-{n}"))
            .collect::<Vec<_>>()
            .join("\n"),
        "spot" if notice.is_some() => "instance-action".into(),
        "spot/instance-action" => notice?,
        other if !mac.is_empty() && other.starts_with("network/interfaces/macs/") => {
            let rest = other.strip_prefix("network/interfaces/macs/")?;
            let (m, leaf) = rest.split_once('/').unwrap_or((rest, ""));
            if m != mac {
                return None;
            }
            let (_, _, subnet) = nic_address(i.nic.as_ref()?)?;
            match leaf {
                "" => {
                    let mut leaves = vec!["device-number"];
                    if !ipv6.is_empty() {
                        leaves.push("ipv6s");
                    }
                    leaves.extend(["local-ipv4s", "mac"]);
                    if !public.is_empty() {
                        leaves.push("public-ipv4s");
                    }
                    leaves.push("subnet-ipv4-cidr-block");
                    leaves.join("\n")
                }
                "device-number" => "0".into(),
                "public-ipv4s" if !public.is_empty() => public.join("\n"),
                "ipv6s" if !ipv6.is_empty() => ipv6.clone(),
                "local-ipv4s" => ip,
                "mac" => mac,
                "subnet-ipv4-cidr-block" => subnet,
                _ => return None,
            }
        }
        other => {
            // public-keys/<n> and public-keys/<n>/openssh-key
            let rest = other.strip_prefix("public-keys/")?;
            let (n, leaf) = rest.split_once('/').unwrap_or((rest, ""));
            let key = keys.get(n.parse::<usize>().ok()?)?;
            match leaf {
                "" => "openssh-key".into(),
                "openssh-key" => format!("{key}\n"),
                _ => return None,
            }
        }
    };
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One HTTP/1.1 request from `source` (a loopback address), as a guest would make it.
    async fn request(
        server: SocketAddr,
        source: [u8; 4],
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((source, 0))).unwrap();
        let mut stream = socket.connect(server).await.unwrap();
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("Content-Length: 0\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        stream.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }

    fn instance(id: &str, ip: &str) -> pb::DesiredInstance {
        pb::DesiredInstance {
            instance_id: id.into(),
            name: "web".into(),
            image: "debian-12".into(),
            hostname: format!("{id}-host"),
            availability_zone: "par".into(),
            nic: Some(pb::DesiredNic {
                vni: 42,
                mac: "52:54:00:00:00:01".into(),
                mtu: 1450,
                ipv4: format!("{ip}/24"),
                ipv6: "2001:db8:0:7::2/64".into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_guest_reads_its_own_metadata_and_nothing_else() {
        let mut a = instance("i-aaaa", "127.0.0.2");
        a.ssh_keys = vec!["ssh-ed25519 AAAAC3Nza alice@laptop".into()];
        a.user_data = "#cloud-config\npackages: [nginx]\n".into();
        let mut b = instance("i-bbbb", "127.0.0.3");
        b.terminate_at_unix_ms = 1_795_000_000_000;
        let shared1 = instance("i-cccc", "127.0.0.5");
        let shared2 = instance("i-dddd", "127.0.0.5");
        let (_tx, rx) = watch::channel(Some(pb::DesiredConfig {
            generation: 1,
            instances: vec![a, b, shared1, shared2],
            ..Default::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router(MetadataState::new(rx, "par".into()));
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        let get = |src, path: &'static str| request(addr, src, "GET", path, &[]);
        let a_ip = [127, 0, 0, 2];
        let b_ip = [127, 0, 0, 3];

        assert_eq!(
            get(a_ip, "/latest/meta-data/instance-id").await,
            (200, "i-aaaa".into())
        );
        assert_eq!(
            get(b_ip, "/latest/meta-data/instance-id").await,
            (200, "i-bbbb".into())
        );
        assert_eq!(
            get(a_ip, "/2021-03-23/meta-data/local-hostname").await,
            (200, "i-aaaa-host".into())
        );
        assert_eq!(
            get(a_ip, "/latest/meta-data/placement/availability-zone").await,
            (200, "par".into())
        );
        assert_eq!(
            get(a_ip, "/latest/meta-data/public-keys/").await,
            (200, "0=key-0".into())
        );
        assert_eq!(
            get(a_ip, "/latest/meta-data/public-keys/0/openssh-key").await,
            (200, "ssh-ed25519 AAAAC3Nza alice@laptop\n".into())
        );
        assert_eq!(
            get(a_ip, "/latest/user-data").await,
            (200, "#cloud-config\npackages: [nginx]\n".into())
        );
        let (status, listing) = get(a_ip, "/latest/meta-data/").await;
        assert_eq!(status, 200);
        assert!(
            listing.contains("instance-id") && !listing.contains("spot/"),
            "{listing}"
        );

        // Its NIC, as EC2 describes one, and cloud-init's network config.
        assert_eq!(
            get(a_ip, "/latest/meta-data/network/interfaces/macs/").await,
            (200, "52:54:00:00:00:01/".into())
        );
        assert_eq!(
            get(
                a_ip,
                "/latest/meta-data/network/interfaces/macs/52:54:00:00:00:01/subnet-ipv4-cidr-block"
            )
            .await,
            (200, "127.0.0.0/24".into())
        );
        assert_eq!(
            get(
                a_ip,
                "/latest/meta-data/network/interfaces/macs/52:54:00:00:00:01/local-ipv4s"
            )
            .await,
            (200, "127.0.0.2".into())
        );
        assert_eq!(
            get(
                a_ip,
                "/latest/meta-data/network/interfaces/macs/52:54:00:00:00:01/ipv6s"
            )
            .await,
            (200, "2001:db8:0:7::2".into())
        );
        let (status, config) = get(a_ip, "/latest/network-config").await;
        assert_eq!(status, 200);
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["version"], 2);
        assert_eq!(config["ethernets"]["eth0"]["addresses"][0], "127.0.0.2/24");
        assert_eq!(
            config["ethernets"]["eth0"]["match"]["macaddress"],
            "52:54:00:00:00:01"
        );
        assert_eq!(
            config["ethernets"]["eth0"]["addresses"][1],
            "2001:db8:0:7::2/64"
        );
        assert_eq!(config["ethernets"]["eth0"]["routes"][1]["via"], "fe80::1");

        // Spot notice: only the guest that has one sees it.
        assert_eq!(
            get(a_ip, "/latest/meta-data/spot/instance-action").await.0,
            404
        );
        assert_eq!(
            get(b_ip, "/latest/meta-data/spot/instance-action").await,
            (
                200,
                r#"{"action": "terminate", "time": "2026-11-18T11:06:40Z"}"#.into()
            )
        );
        assert_eq!(get(b_ip, "/latest/user-data").await.0, 404);

        // Unknown and shared addresses get nobody's data.
        let (status, body) = get([127, 0, 0, 9], "/latest/meta-data/instance-id").await;
        assert_eq!(status, 404);
        assert!(body.contains("127.0.0.9"), "{body}");
        assert_eq!(
            get([127, 0, 0, 5], "/latest/meta-data/instance-id").await.0,
            409
        );

        // IMDSv2: a token works for its own guest only.
        let (status, token) = request(
            addr,
            a_ip,
            "PUT",
            "/latest/api/token",
            &[(TTL_HEADER, "60")],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(token.len(), 64);
        let with = [(TOKEN_HEADER, token.as_str())];
        assert_eq!(
            request(addr, a_ip, "GET", "/latest/meta-data/instance-id", &with).await,
            (200, "i-aaaa".into())
        );
        assert_eq!(
            request(addr, b_ip, "GET", "/latest/meta-data/instance-id", &with)
                .await
                .0,
            401
        );
        let (status, body) =
            request(addr, a_ip, "PUT", "/latest/api/token", &[(TTL_HEADER, "0")]).await;
        assert_eq!(status, 400);
        assert!(body.contains("1 to 21600"), "{body}");
        assert_eq!(get(a_ip, "/nope/meta-data/instance-id").await.0, 404);
    }
}
