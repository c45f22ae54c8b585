//! [`Rtnetlink`]: the [`NetLinks`] of a real host, through rtnetlink.
//!
//! The netlink socket belongs to the network namespace of the thread that opens it, so a test
//! opens one inside a namespace it made and nothing on the machine changes. Calls are blocking
//! (the reconciler makes them from a blocking thread); each runs on the socket's own
//! single-threaded runtime.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::RouteScope;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{LinkBridge, LinkUnspec, LinkVxlan, RouteMessageBuilder};

use crate::tenant_net::{
    NetError, NetLinks, TenantNetwork, Underlay, VXLAN_PORT, bridge_name, validate, vni_of_bridge,
    vxlan_name,
};

pub struct Rtnetlink {
    rt: tokio::runtime::Runtime,
    handle: rtnetlink::Handle,
    /// The underlay: its device index, address and MTU.
    underlay: Option<(u32, Ipv4Addr, u32)>,
    /// An address every bridge gets (/32): the metadata endpoint's, 169.254.169.254.
    bridge_address: Option<Ipv4Addr>,
}

impl std::fmt::Debug for Rtnetlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rtnetlink")
            .field("underlay", &self.underlay)
            .finish_non_exhaustive()
    }
}

/// What the agent needs to know of an existing link.
#[derive(Debug)]
struct Link {
    index: u32,
    kind: Option<String>,
    vni: Option<u32>,
    mtu: Option<u32>,
    controller: Option<u32>,
    up: bool,
}

fn link_of(msg: &LinkMessage) -> Link {
    let mut link = Link {
        index: msg.header.index,
        kind: None,
        vni: None,
        mtu: None,
        controller: None,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Mtu(m) => link.mtu = Some(*m),
            LinkAttribute::Controller(c) => link.controller = Some(*c),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(InfoKind::Bridge) => link.kind = Some("bridge".into()),
                        LinkInfo::Kind(InfoKind::Vxlan) => link.kind = Some("vxlan".into()),
                        LinkInfo::Kind(other) => {
                            link.kind = Some(format!("{other:?}").to_lowercase())
                        }
                        LinkInfo::Data(InfoData::Vxlan(data)) => {
                            link.vni = data.iter().find_map(|d| match d {
                                InfoVxlan::Id(id) => Some(*id),
                                _ => None,
                            });
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// A VXLAN device's flood entry to `peer`: the all-zero MAC, on the device itself (`self`).
fn flood_entry(index: u32, peer: Ipv4Addr) -> NeighbourMessage {
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Bridge;
    message.header.ifindex = index;
    message.header.state = NeighbourState::Permanent;
    message.header.flags = NeighbourFlags::Own;
    message
        .attributes
        .push(NeighbourAttribute::LinkLayerAddress(vec![0; 6]));
    message
        .attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            peer,
        )));
    message
}

fn failed(operation: impl Into<String>, e: impl std::fmt::Display) -> NetError {
    NetError::Netlink {
        operation: operation.into(),
        message: e.to_string(),
    }
}

fn describe(kind: &Option<String>) -> String {
    match kind {
        Some(k) => format!("a {k} device"),
        None => "a plain device".into(),
    }
}

impl Rtnetlink {
    /// Opens a netlink socket in the calling thread's network namespace. With an underlay,
    /// networks get a VXLAN device over it.
    pub fn new(
        underlay: Option<Underlay>,
        bridge_address: Option<Ipv4Addr>,
    ) -> Result<Rtnetlink, NetError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| failed("starting the netlink runtime", e))?;
        let handle = rt.block_on(async {
            let (conn, handle, _) =
                rtnetlink::new_connection().map_err(|e| failed("opening a netlink socket", e))?;
            tokio::spawn(conn);
            Ok::<_, NetError>(handle)
        })?;
        let mut links = Rtnetlink {
            rt,
            handle,
            underlay: None,
            bridge_address,
        };
        if let Some(u) = underlay {
            let found = links.link(&u.device)?.ok_or_else(|| {
                failed(
                    format!("finding the underlay device {}", u.device),
                    "no such device; name the host's underlay interface (--underlay-device)",
                )
            })?;
            links.underlay = Some((found.index, u.local, found.mtu.unwrap_or(1500)));
        }
        Ok(links)
    }

    fn link(&self, name: &str) -> Result<Option<Link>, NetError> {
        self.rt.block_on(async {
            let mut found = self.handle.link().get().match_name(name).execute();
            match found.try_next().await {
                Ok(Some(msg)) => Ok(Some(link_of(&msg))),
                Ok(None) => Ok(None),
                // ENODEV: there is no such link.
                Err(rtnetlink::Error::NetlinkError(e))
                    if e.code.map(|c| c.get()) == Some(-libc_enodev()) =>
                {
                    Ok(None)
                }
                Err(e) => Err(failed(format!("reading link {name}"), e)),
            }
        })
    }

    /// The VXLAN device's flood entries (all-zero MAC, `bridge fdb … dst PEER`): each peer
    /// and its entry.
    fn flood_entries(&self, index: u32) -> Result<Vec<Ipv4Addr>, NetError> {
        let all: Vec<NeighbourMessage> = self.rt.block_on(async {
            self.handle
                .neighbours()
                .get()
                .set_address_family(AddressFamily::Bridge)
                .execute()
                .try_collect()
                .await
                .map_err(|e| failed("listing forwarding entries", e))
        })?;
        Ok(all
            .into_iter()
            .filter(|m| m.header.ifindex == index)
            .filter(|m| {
                m.attributes.iter().any(|a| {
                    matches!(a, NeighbourAttribute::LinkLayerAddress(mac) if mac.iter().all(|b| *b == 0))
                })
            })
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(*ip),
                    // A bridge-family dump does not say which family its addresses are.
                    NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                        <[u8; 4]>::try_from(b.as_slice()).ok().map(Ipv4Addr::from)
                    }
                    _ => None,
                })
            })
            .collect())
    }

    /// Appends a flood entry to `peer` (several share the all-zero MAC, hence `NLM_F_APPEND`,
    /// which `bridge fdb append` sends too).
    fn add_flood_entry(&self, index: u32, peer: Ipv4Addr) -> Result<(), rtnetlink::Error> {
        use futures::StreamExt;
        use rtnetlink::packet_core::{
            NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
        };
        let mut req =
            NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(flood_entry(index, peer)));
        req.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
        self.rt.block_on(async {
            let mut handle = self.handle.clone();
            let mut response = handle.request(req)?;
            while let Some(message) = response.next().await {
                if let NetlinkPayload::Error(err) = message.payload {
                    return Err(rtnetlink::Error::NetlinkError(err));
                }
            }
            Ok(())
        })
    }

    fn apply(&self, operation: String, msg: LinkMessage, add: bool) -> Result<(), NetError> {
        self.rt.block_on(async {
            let done = if add {
                self.handle.link().add(msg).execute().await
            } else {
                self.handle.link().set(msg).execute().await
            };
            done.map_err(|e| failed(operation, e))
        })
    }

    fn delete(&self, name: &str, index: u32) -> Result<(), NetError> {
        self.rt.block_on(async {
            self.handle
                .link()
                .del(index)
                .execute()
                .await
                .map_err(|e| failed(format!("deleting link {name}"), e))
        })
    }

    /// The existing link `name` if it is of `kind` (and, for VXLAN, has the VNI); a clash
    /// error if something else has the name.
    fn existing(&self, name: &str, kind: &str, vni: Option<u32>) -> Result<Option<Link>, NetError> {
        match self.link(name)? {
            None => Ok(None),
            Some(l) if l.kind.as_deref() == Some(kind) && (vni.is_none() || l.vni == vni) => {
                Ok(Some(l))
            }
            Some(l) => Err(NetError::Clash {
                name: name.to_owned(),
                found: match (l.kind.as_deref(), l.vni) {
                    (Some("vxlan"), Some(v)) => format!("a vxlan device with VNI {v}"),
                    _ => describe(&l.kind),
                },
                wanted: match vni {
                    Some(v) => format!("vxlan device with VNI {v}"),
                    None => kind.to_owned(),
                },
            }),
        }
    }
}

fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

impl NetLinks for Rtnetlink {
    fn ensure_network(&self, net: &TenantNetwork) -> Result<String, NetError> {
        validate(net, self.underlay.map(|(_, _, mtu)| mtu))?;
        let bridge = net.bridge();
        let br = match self.existing(&bridge, "bridge", None)? {
            Some(l) => {
                if l.mtu != Some(net.mtu) || !l.up {
                    self.apply(
                        format!("setting {bridge} up with MTU {}", net.mtu),
                        LinkUnspec::new_with_index(l.index)
                            .mtu(net.mtu)
                            .up()
                            .build(),
                        false,
                    )?;
                }
                l.index
            }
            None => {
                self.apply(
                    format!("creating bridge {bridge}"),
                    LinkBridge::new(&bridge).mtu(net.mtu).up().build(),
                    true,
                )?;
                self.link(&bridge)?
                    .ok_or_else(|| failed(format!("creating bridge {bridge}"), "it vanished"))?
                    .index
            }
        };
        // Guests' IPv6 gateway: fe80::1 on every bridge.
        self.rt.block_on(async {
            match self
                .handle
                .address()
                .add(
                    br,
                    IpAddr::V6(std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
                    64,
                )
                .execute()
                .await
            {
                Ok(()) => Ok(()),
                Err(rtnetlink::Error::NetlinkError(e))
                    if e.code.map(|c| c.get()) == Some(-(nix::errno::Errno::EEXIST as i32)) =>
                {
                    Ok(())
                }
                Err(e) => Err(failed(format!("adding fe80::1/64 to {bridge}"), e)),
            }
        })?;
        if let Some(addr) = self.bridge_address {
            self.rt.block_on(async {
                match self
                    .handle
                    .address()
                    .add(br, std::net::IpAddr::V4(addr), 32)
                    .execute()
                    .await
                {
                    Ok(()) => Ok(()),
                    // EEXIST: it is there already.
                    Err(rtnetlink::Error::NetlinkError(e))
                        if e.code.map(|c| c.get()) == Some(-(nix::errno::Errno::EEXIST as i32)) =>
                    {
                        Ok(())
                    }
                    Err(e) => Err(failed(format!("adding {addr}/32 to {bridge}"), e)),
                }
            })?;
        }
        if let Some((dev, local, _)) = self.underlay {
            let vx = net.vxlan();
            match self.existing(&vx, "vxlan", Some(net.vni))? {
                Some(l) => {
                    if l.mtu != Some(net.mtu) || !l.up || l.controller != Some(br) {
                        self.apply(
                            format!("attaching {vx} to {bridge}"),
                            LinkUnspec::new_with_index(l.index)
                                .mtu(net.mtu)
                                .controller(br)
                                .up()
                                .build(),
                            false,
                        )?;
                    }
                }
                None => self.apply(
                    format!("creating VXLAN device {vx} (VNI {})", net.vni),
                    LinkVxlan::new(&vx, net.vni)
                        .dev(dev)
                        .local(local)
                        .port(VXLAN_PORT)
                        .mtu(net.mtu)
                        .controller(br)
                        .up()
                        .build(),
                    true,
                )?,
            }
        }
        Ok(bridge)
    }

    fn remove_network(&self, vni: u32) -> Result<(), NetError> {
        let vx = vxlan_name(vni);
        if let Some(l) = self.existing(&vx, "vxlan", Some(vni))? {
            self.delete(&vx, l.index)?;
        }
        let bridge = bridge_name(vni);
        if let Some(l) = self.existing(&bridge, "bridge", None)? {
            self.delete(&bridge, l.index)?;
        }
        Ok(())
    }

    fn route_guest(&self, vni: u32, ip: IpAddr) -> Result<(), NetError> {
        let bridge = bridge_name(vni);
        let br = self.existing(&bridge, "bridge", None)?.ok_or_else(|| {
            failed(
                format!("routing {ip} to {bridge}"),
                "the bridge does not exist",
            )
        })?;
        let route = match ip {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(v4, 32)
                .output_interface(br.index)
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(v6, 128)
                .output_interface(br.index)
                .build(),
        };
        self.rt.block_on(async {
            self.handle
                .route()
                .add(route)
                .replace()
                .execute()
                .await
                .map_err(|e| failed(format!("routing {ip} to {bridge}"), e))
        })
    }

    fn unroute_guest(&self, ip: IpAddr) -> Result<(), NetError> {
        // Scope "nowhere" matches the route whatever its scope.
        let route = match ip {
            IpAddr::V4(v4) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(v4, 32)
                .scope(RouteScope::NoWhere)
                .build(),
            IpAddr::V6(v6) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(v6, 128)
                .build(),
        };
        self.rt.block_on(async {
            match self.handle.route().del(route).execute().await {
                Ok(()) => Ok(()),
                // ESRCH: there is no such route.
                Err(rtnetlink::Error::NetlinkError(e))
                    if e.code.map(|c| c.get()) == Some(-(nix::errno::Errno::ESRCH as i32)) =>
                {
                    Ok(())
                }
                Err(e) => Err(failed(format!("removing the route to {ip}"), e)),
            }
        })
    }

    fn set_peers(&self, vni: u32, peers: &[Ipv4Addr]) -> Result<(), NetError> {
        if self.underlay.is_none() {
            return Ok(());
        }
        let vx = vxlan_name(vni);
        let Some(link) = self.existing(&vx, "vxlan", Some(vni))? else {
            return Ok(());
        };
        let present = self.flood_entries(link.index)?;
        for ip in &present {
            if !peers.contains(ip) {
                self.rt.block_on(async {
                    self.handle
                        .neighbours()
                        .del(flood_entry(link.index, *ip))
                        .execute()
                        .await
                        .map_err(|e| failed(format!("removing VXLAN peer {ip} from {vx}"), e))
                })?;
            }
        }
        for ip in peers {
            if !present.contains(ip) {
                self.add_flood_entry(link.index, *ip)
                    .map_err(|e| failed(format!("adding VXLAN peer {ip} to {vx}"), e))?;
            }
        }
        Ok(())
    }

    fn networks(&self) -> Result<Vec<u32>, NetError> {
        let links: Vec<LinkMessage> = self.rt.block_on(async {
            self.handle
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| failed("listing links", e))
        })?;
        let mut vnis: Vec<u32> = links
            .iter()
            .filter_map(|m| {
                let name = m.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some(n.as_str()),
                    _ => None,
                })?;
                let vni = vni_of_bridge(name)?;
                (link_of(m).kind.as_deref() == Some("bridge")).then_some(vni)
            })
            .collect();
        vnis.sort_unstable();
        Ok(vnis)
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use vmcloud_proto::testing::skip;

    const TEST: &str = "tenant_net::linux::bridges_and_vxlan_in_a_throwaway_namespace";

    /// Deletes the namespace however the test ends.
    struct Namespace(String);

    impl Drop for Namespace {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }

    fn ip(ns: &str, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["-n", ns])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn details(ns: &str, name: &str) -> serde_json::Value {
        let v: serde_json::Value =
            serde_json::from_str(&ip(ns, &["-d", "-j", "link", "show", name])).unwrap();
        v[0].clone()
    }

    #[test]
    fn bridges_and_vxlan_in_a_throwaway_namespace() {
        if !nix::unistd::Uid::effective().is_root() {
            skip(TEST, "needs root to create a network namespace");
            return;
        }
        let name = format!("vmc-test-{}", std::process::id());
        match Command::new("ip").args(["netns", "add", &name]).output() {
            Err(e) => {
                skip(TEST, &format!("cannot run ip (iproute2): {e}"));
                return;
            }
            Ok(out) if !out.status.success() => {
                skip(
                    TEST,
                    &format!(
                        "cannot create a network namespace: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                );
                return;
            }
            Ok(_) => {}
        }
        let ns = Namespace(name);
        let n = ns.0.as_str();
        // Some kernels lack the dummy driver; a veth pair serves as the underlay.
        ip(
            n,
            &[
                "link",
                "add",
                "underlay0",
                "type",
                "veth",
                "peer",
                "name",
                "underlay1",
            ],
        );
        ip(n, &["addr", "add", "192.0.2.1/24", "dev", "underlay0"]);
        ip(n, &["link", "set", "underlay0", "up"]);

        // The netlink socket is opened from a thread that entered the namespace; it stays
        // there whichever thread uses it.
        let path = format!("/run/netns/{n}");
        let links = std::thread::spawn(move || {
            let f = std::fs::File::open(path).unwrap();
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            Rtnetlink::new(
                Some(Underlay {
                    device: "underlay0".into(),
                    local: Ipv4Addr::new(192, 0, 2, 1),
                }),
                Some(Ipv4Addr::new(169, 254, 169, 254)),
            )
        })
        .join()
        .unwrap()
        .unwrap();

        let net = TenantNetwork { vni: 42, mtu: 1450 };
        assert_eq!(links.ensure_network(&net).unwrap(), "vmcbr42");
        assert_eq!(links.ensure_network(&net).unwrap(), "vmcbr42");
        let br = details(n, "vmcbr42");
        assert_eq!(br["linkinfo"]["info_kind"], "bridge");
        assert_eq!(br["mtu"], 1450);
        assert!(
            br["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
            "{br}"
        );
        let vx = details(n, "vmcvx42");
        assert_eq!(vx["linkinfo"]["info_kind"], "vxlan");
        assert_eq!(vx["linkinfo"]["info_data"]["id"], 42);
        assert_eq!(vx["linkinfo"]["info_data"]["port"], 4789);
        assert_eq!(vx["linkinfo"]["info_data"]["local"], "192.0.2.1");
        assert_eq!(vx["master"], "vmcbr42");
        assert_eq!(vx["mtu"], 1450);
        // The metadata address is on the bridge, once.
        let addrs = ip(n, &["-j", "addr", "show", "dev", "vmcbr42"]);
        assert_eq!(addrs.matches("169.254.169.254").count(), 1, "{addrs}");
        // And the guests' IPv6 gateway.
        assert_eq!(addrs.matches("\"fe80::1\"").count(), 1, "{addrs}");
        // A guest's IPv6 address is routed there too.
        let v6: IpAddr = "2001:db8:0:7::5".parse().unwrap();
        links.route_guest(42, v6).unwrap();
        let routes = ip(n, &["-j", "-6", "route", "show", "2001:db8:0:7::5/128"]);
        assert!(routes.contains("\"dev\":\"vmcbr42\""), "{routes}");
        links.unroute_guest(v6).unwrap();
        // A guest's address is routed to its bridge; routing it again changes nothing.
        let guest = Ipv4Addr::new(10, 42, 0, 5);
        links.route_guest(42, guest.into()).unwrap();
        links.route_guest(42, guest.into()).unwrap();
        let routes = ip(n, &["-j", "route", "show", "10.42.0.5/32"]);
        assert!(routes.contains("\"dev\":\"vmcbr42\""), "{routes}");
        links.unroute_guest(guest.into()).unwrap();
        links.unroute_guest(guest.into()).unwrap();
        assert_eq!(ip(n, &["-j", "route", "show", "10.42.0.5/32"]).trim(), "[]");
        // VXLAN peers: the flood list is exactly what is asked, added and removed.
        let fdb = || {
            let out = Command::new("ip")
                .args([
                    "netns", "exec", n, "bridge", "-j", "fdb", "show", "dev", "vmcvx42",
                ])
                .output()
                .unwrap();
            let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let mut peers: Vec<String> = all
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["mac"] == "00:00:00:00:00:00")
                .filter_map(|e| e["dst"].as_str().map(str::to_owned))
                .collect();
            peers.sort();
            peers
        };
        let (b, c) = (Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 3));
        links.set_peers(42, &[b, c]).unwrap();
        links.set_peers(42, &[b, c]).unwrap();
        assert_eq!(fdb(), ["192.0.2.2", "192.0.2.3"]);
        links.set_peers(42, &[c]).unwrap();
        assert_eq!(fdb(), ["192.0.2.3"]);
        links.set_peers(42, &[]).unwrap();
        assert!(fdb().is_empty());
        // A network not on this host: nothing to do.
        links.set_peers(99, &[b]).unwrap();
        // Nothing appeared outside the namespace.
        assert!(
            !Command::new("ip")
                .args(["link", "show", "vmcbr42"])
                .output()
                .unwrap()
                .status
                .success()
        );

        // Drift is repaired: someone set the bridge down and changed its MTU.
        ip(n, &["link", "set", "vmcbr42", "down", "mtu", "1400"]);
        links.ensure_network(&net).unwrap();
        let br = details(n, "vmcbr42");
        assert_eq!(br["mtu"], 1450);

        // An MTU the underlay cannot carry, and a name taken by something else, are refused
        // and change nothing.
        let err = links
            .ensure_network(&TenantNetwork { vni: 43, mtu: 1500 })
            .unwrap_err();
        assert!(err.to_string().contains("576 to 1450"), "{err}");
        ip(
            n,
            &[
                "link", "add", "vmcbr7", "type", "veth", "peer", "name", "vmcpeer7",
            ],
        );
        let err = links
            .ensure_network(&TenantNetwork { vni: 7, mtu: 1400 })
            .unwrap_err()
            .to_string();
        assert!(err.contains("link name clash: vmcbr7"), "{err}");
        assert_eq!(details(n, "vmcbr7")["linkinfo"]["info_kind"], "veth");

        assert_eq!(links.networks().unwrap(), vec![42]);
        links.remove_network(42).unwrap();
        links.remove_network(42).unwrap();
        assert!(links.networks().unwrap().is_empty());
        assert!(ip(n, &["-j", "link", "show", "type", "vxlan"]).trim() == "[]");
    }
}
