//! libvirt domain XML for an instance's [`DomainSpec`]: kept here, with the libvirt backend,
//! not in the `Hypervisor` trait's file (other backends describe domains their own way).

use std::path::Path;

use crate::hypervisor::{DomainSpec, HostDev, domain_uuid};

/// libvirt domain XML for this instance. `domain_type` is `test`, `qemu` (TCG) or `kvm`.
///
/// The domain's UUID starts with `ec2` and SMBIOS names the product, so cloud-init's Ec2
/// datasource recognises the platform and reads the agent's metadata endpoint.
pub fn domain_xml(spec: &DomainSpec, domain_type: &str) -> String {
    use std::fmt::Write;
    let e = |s: &str| xml_escape(s);
    let p = |p: &Path| xml_escape(&p.to_string_lossy());
    let uuid = domain_uuid(&spec.instance_id);
    let mut x = String::with_capacity(2048);
    let _ = write!(
        x,
        "<domain type='{ty}'>\n  <name>{name}</name>\n  <uuid>{uuid}</uuid>\n  <title>{title}</title>\n  \
         <metadata><vmcloud:instance xmlns:vmcloud='urn:vmcloud:instance:1' id='{id}' image='{image}'/></metadata>\n  \
         <memory unit='MiB'>{mem}</memory>\n",
        ty = e(domain_type),
        name = e(&spec.domain_name()),
        title = e(&spec.title),
        id = e(spec.instance_id.as_str()),
        image = e(&spec.image),
        mem = spec.memory_mib,
    );
    match &spec.cpuset {
        Some(set) => {
            let _ = writeln!(
                x,
                "  <vcpu placement='static' cpuset='{}'>{}</vcpu>",
                e(set),
                spec.vcpus
            );
        }
        None => {
            let _ = writeln!(x, "  <vcpu placement='static'>{}</vcpu>", spec.vcpus);
        }
    }
    if let Some(node) = spec.numa_node {
        let _ = writeln!(
            x,
            "  <numatune><memory mode='preferred' nodeset='{node}'/></numatune>"
        );
    }
    let _ = writeln!(
        x,
        "  <sysinfo type='smbios'><system><entry name='manufacturer'>VMCloud</entry>\
         <entry name='product'>VMCloud Instance</entry><entry name='serial'>{id}</entry>\
         <entry name='uuid'>{uuid}</entry></system></sysinfo>",
        id = e(spec.instance_id.as_str()),
    );
    x.push_str("  <os>\n    <type arch='x86_64'>hvm</type>\n");
    if let Some(boot) = &spec.boot {
        let _ = writeln!(x, "    <kernel>{}</kernel>", p(&boot.kernel));
        if let Some(initrd) = &boot.initrd {
            let _ = writeln!(x, "    <initrd>{}</initrd>", p(initrd));
        }
        let _ = writeln!(x, "    <cmdline>{}</cmdline>", e(&boot.cmdline));
    } else {
        x.push_str("    <boot dev='hd'/>\n");
    }
    x.push_str(
        "    <smbios mode='sysinfo'/>\n  </os>\n  <features><acpi/><apic/></features>\n  \
         <on_poweroff>destroy</on_poweroff>\n  <on_reboot>restart</on_reboot>\n  \
         <on_crash>destroy</on_crash>\n  <devices>\n",
    );
    if let Some(disk) = &spec.disk {
        let _ = writeln!(
            x,
            "    <disk type='file' device='disk'><driver name='qemu' type='qcow2' discard='unmap'/>\
             <source file='{}'/><target dev='vda' bus='virtio'/></disk>",
            p(disk)
        );
    }
    if let Some(nic) = &spec.nic {
        let _ = writeln!(
            x,
            "    <interface type='bridge'><source bridge='{}'/><target dev='{}'/><mac address='{}'/>\
             <model type='virtio'/><mtu size='{}'/></interface>",
            e(&nic.bridge),
            e(&nic.port),
            e(&nic.mac),
            nic.mtu
        );
    }
    match &spec.serial_log {
        Some(log) => {
            let _ = writeln!(
                x,
                "    <serial type='file'><source path='{log}' append='on'/><target port='0'/></serial>\n    \
                 <console type='file'><source path='{log}' append='on'/><target type='serial' port='0'/></console>",
                log = p(log)
            );
        }
        None => x.push_str(
            "    <serial type='pty'><target port='0'/></serial>\n    \
             <console type='pty'><target type='serial' port='0'/></console>\n",
        ),
    }
    for dev in &spec.hostdevs {
        match dev {
            HostDev::Pci(a) => {
                let _ = writeln!(
                    x,
                    "    <hostdev mode='subsystem' type='pci' managed='yes'><source>\
                     <address domain='0x{:04x}' bus='0x{:02x}' slot='0x{:02x}' function='0x{:x}'/>\
                     </source></hostdev>",
                    a.domain, a.bus, a.slot, a.function
                );
            }
            HostDev::Mdev { uuid, .. } => {
                let _ = writeln!(
                    x,
                    "    <hostdev mode='subsystem' type='mdev' model='vfio-pci'><source>\
                     <address uuid='{}'/></source></hostdev>",
                    e(uuid)
                );
            }
        }
    }
    x.push_str("  </devices>\n</domain>\n");
    x
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
