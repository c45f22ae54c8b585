//! The `Hypervisor` trait: what the agent needs from a VM runtime, and the domain description
//! it builds from a desired instance.
//!
//! The real implementation is [`crate::libvirt::Libvirt`] (any libvirt URI: `test:///default`
//! in development and most tests, `qemu:///system` in production). Calls block; the agent makes
//! them from blocking threads.

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

#[derive(Debug, Clone, serde::Serialize)]
pub struct DomainInfo {
    pub name: String,
    pub state: DomainState,
    /// Set for domains this agent manages.
    pub instance_id: Option<InstanceId>,
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
}

impl DomainSpec {
    pub fn from_desired(d: &pb::DesiredInstance) -> Option<DomainSpec> {
        Some(DomainSpec {
            instance_id: InstanceId::parse(&d.instance_id).ok()?,
            title: d.name.clone(),
            vcpus: d.vcpus.max(1),
            memory_mib: d.memory_mib.max(64),
            image: d.image.clone(),
        })
    }

    pub fn domain_name(&self) -> String {
        domain_name(&self.instance_id)
    }

    /// libvirt domain XML for this instance. `domain_type` is `test`, `qemu` (TCG) or `kvm`.
    /// Disks, networks and GPUs are added as those parts of the agent arrive.
    pub fn to_xml(&self, domain_type: &str) -> String {
        format!(
            "<domain type='{ty}'>\n  <name>{name}</name>\n  <title>{title}</title>\n  \
             <metadata><vmcloud:instance xmlns:vmcloud='urn:vmcloud:instance:1' id='{id}' image='{image}'/></metadata>\n  \
             <memory unit='MiB'>{mem}</memory>\n  <vcpu>{vcpus}</vcpu>\n  \
             <os><type arch='x86_64'>hvm</type></os>\n  <on_poweroff>destroy</on_poweroff>\n  \
             <devices>\n    <serial type='pty'><target port='0'/></serial>\n    \
             <console type='pty'><target type='serial' port='0'/></console>\n  </devices>\n</domain>\n",
            ty = xml_escape(domain_type),
            name = xml_escape(&self.domain_name()),
            title = xml_escape(&self.title),
            id = xml_escape(self.instance_id.as_str()),
            image = xml_escape(&self.image),
            mem = self.memory_mib,
            vcpus = self.vcpus,
        )
    }
}

pub fn domain_name(id: &InstanceId) -> String {
    format!("{DOMAIN_PREFIX}{id}")
}

/// The instance a domain name belongs to, if it is one of ours.
pub fn instance_of(domain_name: &str) -> Option<InstanceId> {
    InstanceId::parse(domain_name.strip_prefix(DOMAIN_PREFIX)?).ok()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The libvirt domain type to use with a connection URI.
pub fn domain_type_for(uri: &str) -> &'static str {
    if uri.starts_with("test:") {
        "test"
    } else {
        // TCG works everywhere; KVM is selected explicitly when the host supports it.
        "qemu"
    }
}

/// A VM runtime.
pub trait Hypervisor: Send + Sync + 'static {
    fn uri(&self) -> &str;
    /// Every domain, managed or not.
    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError>;
    /// Defines the domain if needed and starts it if it is not running. Idempotent.
    fn ensure_running(&self, spec: &DomainSpec) -> Result<(), HypervisorError>;
    /// Stops the domain (forcibly) and undefines it. Idempotent: an absent domain is success.
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
        let spec = DomainSpec {
            instance_id: id,
            title: "a<b>&'c'".into(),
            vcpus: 2,
            memory_mib: 2048,
            image: "debian-12".into(),
        };
        let xml = spec.to_xml("test");
        assert!(
            xml.contains("<title>a&lt;b&gt;&amp;&apos;c&apos;</title>"),
            "{xml}"
        );
        assert!(xml.contains("<vcpu>2</vcpu>") && xml.contains("<memory unit='MiB'>2048</memory>"));
    }
}
