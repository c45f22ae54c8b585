//! [`Libvirt`]: the [`Hypervisor`] backed by libvirt through the `virt` crate.
//!
//! One connection, opened at start and closed on drop, guarded by a mutex (libvirt connections
//! may be shared between threads, but the agent's calls are short and serial anyway).

use std::sync::Mutex;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::ErrorNumber;

use crate::hypervisor::{
    DomainInfo, DomainSpec, DomainState, Hypervisor, HypervisorError, domain_type_for, instance_of,
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

fn state_of(raw: u32) -> DomainState {
    match raw {
        virt::sys::VIR_DOMAIN_RUNNING | virt::sys::VIR_DOMAIN_BLOCKED => DomainState::Running,
        virt::sys::VIR_DOMAIN_PAUSED | virt::sys::VIR_DOMAIN_PMSUSPENDED => DomainState::Paused,
        virt::sys::VIR_DOMAIN_SHUTOFF | virt::sys::VIR_DOMAIN_SHUTDOWN => DomainState::Shutoff,
        virt::sys::VIR_DOMAIN_CRASHED => DomainState::Crashed,
        _ => DomainState::Other,
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
            let (state, _reason) = d
                .get_state()
                .map_err(|e| self.error(format!("reading the state of {name}"), &e))?;
            out.push(DomainInfo {
                instance_id: instance_of(&name),
                state: state_of(state),
                name,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn ensure_running(&self, spec: &DomainSpec) -> Result<(), HypervisorError> {
        let conn = self.conn.lock().unwrap();
        let name = spec.domain_name();
        let domain = match Domain::lookup_by_name(&conn, &name) {
            Ok(d) => d,
            Err(e) if e.code() == ErrorNumber::NoDomain => {
                let xml = spec.to_xml(domain_type_for(&self.uri));
                Domain::define_xml(&conn, &xml)
                    .map_err(|e| self.error(format!("defining {name}"), &e))?
            }
            Err(e) => return Err(self.error(format!("looking up {name}"), &e)),
        };
        if !domain
            .is_active()
            .map_err(|e| self.error(format!("reading the state of {name}"), &e))?
        {
            domain
                .create()
                .map_err(|e| self.error(format!("starting {name}"), &e))?;
        }
        Ok(())
    }

    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        let conn = self.conn.lock().unwrap();
        let domain = match Domain::lookup_by_name(&conn, name) {
            Ok(d) => d,
            Err(e) if e.code() == ErrorNumber::NoDomain => return Ok(()),
            Err(e) => return Err(self.error(format!("looking up {name}"), &e)),
        };
        if domain
            .is_active()
            .map_err(|e| self.error(format!("reading the state of {name}"), &e))?
        {
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
    use vmcloud_proto::InstanceId;

    #[test]
    fn test_driver_lifecycle_is_idempotent() {
        let _guard = crate::TEST_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
        let hv = Libvirt::connect("test:///default").unwrap();
        let spec = DomainSpec {
            instance_id: InstanceId::generate(),
            title: "web".into(),
            vcpus: 1,
            memory_mib: 512,
            image: "debian-12".into(),
        };
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
        hv.destroy(&name).unwrap();
        hv.destroy(&name).unwrap();
        assert!(!hv.list().unwrap().iter().any(|d| d.name == name));
        let err = Libvirt::connect("bogus:///nothing").unwrap_err();
        assert!(err.to_string().contains("bogus:///nothing"), "{err}");
    }
}
