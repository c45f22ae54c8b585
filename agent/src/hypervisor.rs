//! The `Hypervisor` trait: what the agent needs from a VM runtime, and the domain description
//! it builds from a desired instance.
//!
//! The real implementation is [`crate::libvirt::Libvirt`] (any libvirt URI: `test:///default`
//! in development and most tests, `qemu:///system` in production). Calls block; the agent makes
//! them from blocking threads.

use std::path::PathBuf;

use vmcloud_proto::{InstanceId, pb};

/// Every domain the agent manages is named `vmcloud-<instance id>`; others are left alone.
pub const DOMAIN_PREFIX: &str = "vmcloud-";

#[derive(Debug, thiserror::Error)]
#[error("{operation} on {uri} failed: {message}")]
pub struct HypervisorError {
    pub uri: String,
    pub operation: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainState {
    Running,
    Paused,
    /// Defined but not running.
    Shutoff,
    Crashed,
    Other,
}

/// Why a domain is in its state, where it matters to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateReason {
    /// The guest shut itself down (from inside, or after an ACPI request it honoured).
    GuestShutdown,
    /// The guest crashed (kernel panic, emulator failure).
    Crashed,
    /// Stopped forcibly (destroy).
    Destroyed,
    Other,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DomainInfo {
    pub name: String,
    pub state: DomainState,
    pub reason: StateReason,
    /// Set for domains this agent manages.
    pub instance_id: Option<InstanceId>,
    pub vcpus: u32,
    pub memory_mib: u64,
}

/// How [`Hypervisor::shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// It was not running.
    AlreadyStopped,
    /// The guest honoured the ACPI request within the grace period.
    Graceful,
    /// The grace period passed; the domain was stopped forcibly.
    Forced,
}

/// Booting a kernel directly (no bootloader in the image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// The instance's NIC: virtio-net on a tenant bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    pub bridge: String,
    /// Its port on the bridge (the tap's name; see [`crate::firewall::port_name`]).
    pub port: String,
    pub mac: String,
    pub mtu: u32,
}

/// A PCI address `domain:bus:slot.function` (`0000:17:00.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

impl PciAddress {
    pub fn parse(s: &str) -> Option<PciAddress> {
        let (domain, rest) = s.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (slot, function) = rest.split_once('.')?;
        Some(PciAddress {
            domain: u16::from_str_radix(domain, 16).ok()?,
            bus: u8::from_str_radix(bus, 16).ok()?,
            slot: u8::from_str_radix(slot, 16).ok().filter(|s| *s < 32)?,
            function: u8::from_str_radix(function, 16).ok().filter(|f| *f < 8)?,
        })
    }
}

impl std::fmt::Display for PciAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.slot, self.function
        )
    }
}

/// A GPU given to the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDev {
    /// A whole GPU through VFIO.
    Pci(PciAddress),
    /// A MIG slice as a mediated device (created on the host before the domain starts).
    Mdev {
        gpu: PciAddress,
        profile: String,
        uuid: String,
    },
}

impl HostDev {
    pub fn gpu(&self) -> PciAddress {
        match self {
            HostDev::Pci(a) | HostDev::Mdev { gpu: a, .. } => *a,
        }
    }
}

/// What to run for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    pub instance_id: InstanceId,
    /// The customer's name for it (shown as the libvirt title).
    pub title: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub image: String,
    /// The instance's disk (a qcow2 overlay), when its image has one.
    pub disk: Option<PathBuf>,
    pub boot: Option<DirectBoot>,
    /// Where the serial console is written; a pty when none.
    pub serial_log: Option<PathBuf>,
    pub nic: Option<Nic>,
    pub hostdevs: Vec<HostDev>,
    /// Host CPUs the vCPUs may run on (`"0-15,32-47"`), e.g. those of the GPUs' NUMA node.
    pub cpuset: Option<String>,
    /// NUMA node to take memory from.
    pub numa_node: Option<u32>,
}

impl DomainSpec {
    /// The parts of the spec the desired instance says itself; the agent adds the files
    /// (disk, boot, serial log), the NIC and NUMA placement. Fails with the reason when the
    /// desired instance cannot be a domain.
    pub fn from_desired(d: &pb::DesiredInstance) -> Result<DomainSpec, String> {
        let instance_id = InstanceId::parse(&d.instance_id)
            .map_err(|_| format!("instance id {:?} is not valid", d.instance_id))?;
        let hostdevs = d
            .gpus
            .iter()
            .map(|g| parse_gpu(&instance_id, g))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DomainSpec {
            instance_id,
            title: d.name.clone(),
            vcpus: d.vcpus.max(1),
            memory_mib: d.memory_mib.max(64),
            image: d.image.clone(),
            disk: None,
            boot: None,
            serial_log: None,
            nic: None,
            hostdevs,
            cpuset: None,
            numa_node: None,
        })
    }

    pub fn domain_name(&self) -> String {
        domain_name(&self.instance_id)
    }
}

/// `"0000:17:00.0"` (a whole GPU) or `"0000:17:00.0/3g.40gb@4"` (a MIG slice).
fn parse_gpu(id: &InstanceId, s: &str) -> Result<HostDev, String> {
    let bad = || {
        format!(
            "GPU {s:?} is not a PCI address (\"0000:17:00.0\") or a MIG slice (\"0000:17:00.0/3g.40gb@4\")"
        )
    };
    match s.split_once('/') {
        None => PciAddress::parse(s).map(HostDev::Pci).ok_or_else(bad),
        Some((addr, slice)) => {
            let gpu = PciAddress::parse(addr).ok_or_else(bad)?;
            let (profile, _start) = slice.split_once('@').ok_or_else(bad)?;
            Ok(HostDev::Mdev {
                gpu,
                profile: profile.to_owned(),
                uuid: derived_uuid(&format!("{id}/{s}"), ""),
            })
        }
    }
}

/// A UUID derived from `seed`, with `prefix` (hex) replacing its first characters.
fn derived_uuid(seed: &str, prefix: &str) -> String {
    use sha2::Digest;
    let hex = hex::encode(sha2::Sha256::digest(seed.as_bytes()));
    let h = format!("{prefix}{}", &hex[prefix.len()..32]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The domain UUID of an instance: stable, and starting with `ec2` (see [`crate::libvirt::xml::domain_xml`]).
pub fn domain_uuid(id: &InstanceId) -> String {
    derived_uuid(id.as_str(), "ec2")
}

pub fn domain_name(id: &InstanceId) -> String {
    format!("{DOMAIN_PREFIX}{id}")
}

/// The instance a domain name belongs to, if it is one of ours.
pub fn instance_of(domain_name: &str) -> Option<InstanceId> {
    InstanceId::parse(domain_name.strip_prefix(DOMAIN_PREFIX)?).ok()
}

/// A VM runtime. Every operation is idempotent.
pub trait Hypervisor: Send + Sync + 'static {
    fn uri(&self) -> &str;
    /// Whether domains run real guests (that need their image's disk and kernel). libvirt's
    /// test driver and simulated hypervisors do not.
    fn boots_guests(&self) -> bool {
        !self.uri().starts_with("test:")
    }
    /// Every domain, managed or not.
    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError>;
    /// Defines the domain, or updates its definition (vCPUs, memory, devices: an offline
    /// resize takes effect at the next start).
    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError>;
    /// Defines the domain if needed and starts it if it is not running.
    fn ensure_running(&self, spec: &DomainSpec) -> Result<(), HypervisorError>;
    /// Asks the guest to shut down (ACPI power button) and returns at once.
    fn request_shutdown(&self, name: &str) -> Result<(), HypervisorError>;
    /// Asks the guest to shut down, waits up to `grace`, then stops it forcibly.
    fn shutdown(
        &self,
        name: &str,
        grace: std::time::Duration,
    ) -> Result<StopOutcome, HypervisorError> {
        let running = |s: &Self| {
            Ok::<_, HypervisorError>(
                s.list()?
                    .iter()
                    .any(|d| d.name == name && d.state != DomainState::Shutoff),
            )
        };
        if !running(self)? {
            return Ok(StopOutcome::AlreadyStopped);
        }
        self.request_shutdown(name)?;
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(200));
            if !running(self)? {
                return Ok(StopOutcome::Graceful);
            }
        }
        self.force_stop(name)?;
        Ok(StopOutcome::Forced)
    }
    /// Stops the domain at once (power cut). An absent or stopped domain is success.
    fn force_stop(&self, name: &str) -> Result<(), HypervisorError>;
    /// Reboots the guest (ACPI; the domain stays defined and running).
    fn reboot(&self, name: &str) -> Result<(), HypervisorError>;
    /// Stops the domain (forcibly) and undefines it. An absent domain is success.
    fn destroy(&self, name: &str) -> Result<(), HypervisorError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_xml_is_escaped() {
        let id = InstanceId::generate();
        assert_eq!(instance_of(&domain_name(&id)), Some(id.clone()));
        assert_eq!(instance_of("test"), None);
        assert_eq!(instance_of("vmcloud-nope"), None);
        let mut spec = DomainSpec::from_desired(&pb::DesiredInstance {
            instance_id: id.to_string(),
            name: "a<b>&'c'".into(),
            vcpus: 2,
            memory_mib: 2048,
            image: "debian-12".into(),
            gpus: vec!["0000:17:00.0".into(), "0000:b1:00.0/3g.40gb@4".into()],
            ..Default::default()
        })
        .unwrap();
        spec.disk = Some("/var/lib/vmcloud/instances/x/disk.qcow2".into());
        spec.serial_log = Some("/var/lib/vmcloud/instances/x/serial.log".into());
        spec.nic = Some(Nic {
            bridge: "vmc-n42".into(),
            port: "vmt0123456789a".into(),
            mac: "52:54:00:12:34:56".into(),
            mtu: 1450,
        });
        spec.cpuset = Some("0-7".into());
        spec.numa_node = Some(0);
        let xml = crate::libvirt::xml::domain_xml(&spec, "test");
        assert!(
            xml.contains("<title>a&lt;b&gt;&amp;&apos;c&apos;</title>"),
            "{xml}"
        );
        for part in [
            "<vcpu placement='static' cpuset='0-7'>2</vcpu>",
            "<memory unit='MiB'>2048</memory>",
            "<numatune><memory mode='preferred' nodeset='0'/></numatune>",
            "<source file='/var/lib/vmcloud/instances/x/disk.qcow2'/><target dev='vda' bus='virtio'/>",
            "<source bridge='vmc-n42'/><target dev='vmt0123456789a'/><mac address='52:54:00:12:34:56'/><model type='virtio'/><mtu size='1450'/>",
            "<serial type='file'><source path='/var/lib/vmcloud/instances/x/serial.log' append='on'/>",
            "<address domain='0x0000' bus='0x17' slot='0x00' function='0x0'/>",
            "type='mdev' model='vfio-pci'",
            "<entry name='product'>VMCloud Instance</entry>",
            "<boot dev='hd'/>",
        ] {
            assert!(xml.contains(part), "{part} missing in {xml}");
        }
        assert!(domain_uuid(&spec.instance_id).starts_with("ec2"));
        assert_eq!(spec.hostdevs[1].gpu().to_string(), "0000:b1:00.0");

        let err = DomainSpec::from_desired(&pb::DesiredInstance {
            instance_id: spec.instance_id.to_string(),
            gpus: vec!["gpu0".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("not a PCI address"), "{err}");
    }
}
