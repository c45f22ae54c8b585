//! [`Libvirt`]: the [`Hypervisor`] backed by libvirt through the `virt` crate.
//!
//! One connection, opened at start and closed on drop, guarded by a mutex (libvirt connections
//! may be shared between threads, but the agent's calls are short and serial anyway).

pub mod xml;

use std::sync::Mutex;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;

use crate::hypervisor::{
    DomainInfo, DomainSpec, DomainState, Hypervisor, HypervisorError, StateReason, instance_of,
};

pub struct Libvirt {
    uri: String,
    conn: Mutex<Connect>,
}

impl std::fmt::Debug for Libvirt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Libvirt").field("uri", &self.uri).finish()
    }
}

impl Libvirt {
    pub fn connect(uri: &str) -> Result<Libvirt, HypervisorError> {
        // libvirt prints every error to stderr by default; the agent reports them itself.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(|e| HypervisorError {
            uri: uri.to_owned(),
            operation: "connecting".into(),
            message: format!(
                "{}; check that the URI is right and, for qemu:///system, that libvirtd is running",
                e.message()
            ),
        })?;
        Ok(Libvirt {
            uri: uri.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    fn error(&self, operation: impl Into<String>, e: &virt::error::Error) -> HypervisorError {
        HypervisorError {
            uri: self.uri.clone(),
            operation: operation.into(),
            message: e.message().to_owned(),
        }
    }
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        if let Ok(conn) = self.conn.get_mut() {
            let _ = conn.close();
        }
    }
}

fn state_of(raw: u32, reason: i32) -> (DomainState, StateReason) {
    let shutoff_reason = || match reason as u32 {
        virt::sys::VIR_DOMAIN_SHUTOFF_SHUTDOWN => StateReason::GuestShutdown,
        virt::sys::VIR_DOMAIN_SHUTOFF_DESTROYED => StateReason::Destroyed,
        virt::sys::VIR_DOMAIN_SHUTOFF_CRASHED => StateReason::Crashed,
        _ => StateReason::Other,
    };
    match raw {
        virt::sys::VIR_DOMAIN_RUNNING | virt::sys::VIR_DOMAIN_BLOCKED => {
            (DomainState::Running, StateReason::Other)
        }
        virt::sys::VIR_DOMAIN_PAUSED | virt::sys::VIR_DOMAIN_PMSUSPENDED => {
            (DomainState::Paused, StateReason::Other)
        }
        virt::sys::VIR_DOMAIN_SHUTOFF => (DomainState::Shutoff, shutoff_reason()),
        // Shutting down: still running until it is off.
        virt::sys::VIR_DOMAIN_SHUTDOWN => (DomainState::Running, StateReason::Other),
        virt::sys::VIR_DOMAIN_CRASHED => (DomainState::Crashed, StateReason::Crashed),
        _ => (DomainState::Other, StateReason::Other),
    }
}

impl Libvirt {
    /// The domain of that name, or `None` when there is none.
    fn lookup(&self, conn: &Connect, name: &str) -> Result<Option<Domain>, HypervisorError> {
        match Domain::lookup_by_name(conn, name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.code() == ErrorNumber::NoDomain => Ok(None),
            Err(e) => Err(self.error(format!("looking up {name}"), &e)),
        }
    }

    fn is_active(&self, domain: &Domain, name: &str) -> Result<bool, HypervisorError> {
        domain
            .is_active()
            .map_err(|e| self.error(format!("reading the state of {name}"), &e))
    }

    fn define_locked(&self, conn: &Connect, spec: &DomainSpec) -> Result<Domain, HypervisorError> {
        let xml = xml::domain_xml(spec, xml::domain_type_for(&self.uri));
        Domain::define_xml(conn, &xml)
            .map_err(|e| self.error(format!("defining {}", spec.domain_name()), &e))
    }

    fn not_running(&self, operation: String, message: &str) -> HypervisorError {
        HypervisorError {
            uri: self.uri.clone(),
            operation,
            message: message.into(),
        }
    }
}

impl Hypervisor for Libvirt {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn list(&self) -> Result<Vec<DomainInfo>, HypervisorError> {
        let conn = self.conn.lock().unwrap();
        let domains = conn
            .list_all_domains(0)
            .map_err(|e| self.error("listing domains", &e))?;
        let mut out = Vec::with_capacity(domains.len());
        for d in domains {
            let name = d
                .get_name()
                .map_err(|e| self.error("reading a domain name", &e))?;
            let (raw, reason) = d
                .get_state()
                .map_err(|e| self.error(format!("reading the state of {name}"), &e))?;
            let info = d
                .get_info()
                .map_err(|e| self.error(format!("reading {name}"), &e))?;
            let (state, reason) = state_of(raw, reason);
            out.push(DomainInfo {
                instance_id: instance_of(&name),
                state,
                reason,
                vcpus: info.nr_virt_cpu,
                memory_mib: info.max_mem / 1024,
                name,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn define(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        let conn = self.conn.lock().unwrap();
        self.define_locked(&conn, spec).map(drop)
    }

    fn ensure_running(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        let conn = self.conn.lock().unwrap();
        let name = spec.domain_name();
        let domain = match self.lookup(&conn, &name)? {
            Some(d) if self.is_active(&d, &name)? => return Ok(()),
            // Stopped or absent: the definition is brought up to date first (so an offline
            // resize takes effect here).
            _ => self.define_locked(&conn, spec)?,
        };
        domain
            .create()
            .map_err(|e| self.error(format!("starting {name}"), &e))?;
        Ok(())
    }

    fn request_shutdown(&self, name: &str) -> Result<(), HypervisorError> {
        let conn = self.conn.lock().unwrap();
        if let Some(d) = self.lookup(&conn, name)?
            && self.is_active(&d, name)?
        {
            d.shutdown()
                .map_err(|e| self.error(format!("asking {name} to shut down"), &e))?;
        }
        Ok(())
    }

    fn force_stop(&self, name: &str) -> Result<(), HypervisorError> {
        let conn = self.conn.lock().unwrap();
        if let Some(d) = self.lookup(&conn, name)?
            && self.is_active(&d, name)?
        {
            d.destroy()
                .map_err(|e| self.error(format!("stopping {name}"), &e))?;
        }
        Ok(())
    }

    fn reboot(&self, name: &str) -> Result<(), HypervisorError> {
        let conn = self.conn.lock().unwrap();
        let operation = format!("rebooting {name}");
        match self.lookup(&conn, name)? {
            Some(d) if self.is_active(&d, name)? => {
                d.reboot(0).map_err(|e| self.error(operation, &e))
            }
            Some(_) => {
                Err(self.not_running(operation, "the domain is not running; start it instead"))
            }
            None => Err(self.not_running(operation, "no such domain")),
        }
    }

    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        let conn = self.conn.lock().unwrap();
        let Some(domain) = self.lookup(&conn, name)? else {
            return Ok(());
        };
        if self.is_active(&domain, name)? {
            domain
                .destroy()
                .map_err(|e| self.error(format!("stopping {name}"), &e))?;
        }
        domain
            .undefine()
            .map_err(|e| self.error(format!("undefining {name}"), &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hypervisor::StopOutcome;
    use vmcloud_proto::InstanceId;

    #[test]
    fn test_driver_lifecycle_is_idempotent() {
        let _guard = crate::TEST_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
        let hv = Libvirt::connect("test:///default").unwrap();
        let mut spec = DomainSpec::from_desired(&vmcloud_proto::pb::DesiredInstance {
            instance_id: InstanceId::generate().to_string(),
            name: "web".into(),
            vcpus: 1,
            memory_mib: 512,
            image: "debian-12".into(),
            ..Default::default()
        })
        .unwrap();
        let name = spec.domain_name();
        hv.ensure_running(&spec).unwrap();
        hv.ensure_running(&spec).unwrap();
        let found = hv
            .list()
            .unwrap()
            .into_iter()
            .find(|d| d.name == name)
            .unwrap();
        assert_eq!(found.state, DomainState::Running);
        assert_eq!(found.instance_id.as_ref(), Some(&spec.instance_id));
        assert_eq!((found.vcpus, found.memory_mib), (1, 512));

        // Stop (the test driver's guests honour ACPI at once), resize offline, start again.
        let grace = std::time::Duration::from_secs(5);
        assert_eq!(hv.shutdown(&name, grace).unwrap(), StopOutcome::Graceful);
        assert_eq!(
            hv.shutdown(&name, grace).unwrap(),
            StopOutcome::AlreadyStopped
        );
        let find = |hv: &Libvirt| {
            hv.list()
                .unwrap()
                .into_iter()
                .find(|d| d.name == name)
                .unwrap()
        };
        assert_eq!(find(&hv).state, DomainState::Shutoff);
        spec.vcpus = 2;
        spec.memory_mib = 1024;
        hv.ensure_running(&spec).unwrap();
        let resized = find(&hv);
        assert_eq!(
            (resized.state, resized.vcpus, resized.memory_mib),
            (DomainState::Running, 2, 1024)
        );
        hv.reboot(&name).unwrap();
        hv.force_stop(&name).unwrap();
        hv.force_stop(&name).unwrap();
        assert_eq!(find(&hv).reason, StateReason::Destroyed);
        let err = hv.reboot(&name).unwrap_err().to_string();
        assert!(err.contains("not running"), "{err}");
        hv.destroy(&name).unwrap();
        hv.destroy(&name).unwrap();
        assert!(!hv.list().unwrap().iter().any(|d| d.name == name));
        let err = Libvirt::connect("bogus:///nothing").unwrap_err();
        assert!(err.to_string().contains("bogus:///nothing"), "{err}");
    }
}
