//! The reconciler: one task that converges the hypervisor onto the desired config.
//!
//! It wakes when a new desired config is accepted (persisted first by the link) or when its
//! retry timer fires — quickly with backoff after a failure, every 30 s otherwise to catch
//! drift — and publishes a full [`pb::StatusReport`] whenever what it observes changes.
//!
//! Until the agent has a desired config it touches nothing: a VM is never destroyed because
//! the scheduler has not been heard from.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use vmcloud_proto::pb;

use crate::hypervisor::{DomainSpec, DomainState, Hypervisor, HypervisorError, domain_name};

const RESYNC: Duration = Duration::from_secs(30);
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// One pass: make every desired instance run and remove every managed domain that is not
/// desired. Returns the observed status and whether every action succeeded.
pub fn reconcile_once(
    hv: &dyn Hypervisor,
    desired: &pb::DesiredConfig,
) -> Result<(pb::StatusReport, bool), HypervisorError> {
    let domains = hv.list()?;
    let mut by_instance: HashMap<_, _> = domains
        .iter()
        .filter_map(|d| d.instance_id.clone().map(|id| (id, d)))
        .collect();
    let mut statuses = Vec::new();
    let mut all_ok = true;
    for want in &desired.instances {
        let Some(spec) = DomainSpec::from_desired(want) else {
            tracing::warn!(
                instance = want.instance_id,
                "desired instance has an invalid id; skipped"
            );
            continue;
        };
        let current = by_instance.remove(&spec.instance_id).map(|d| d.state);
        let status = if current == Some(DomainState::Running) {
            (pb::ObservedState::Running, String::new())
        } else {
            match hv.ensure_running(&spec) {
                Ok(()) => {
                    tracing::info!(instance = %spec.instance_id, domain = spec.domain_name(), "instance started");
                    (pb::ObservedState::Running, String::new())
                }
                Err(e) => {
                    all_ok = false;
                    tracing::warn!(instance = %spec.instance_id, error = %e, "instance could not be started");
                    (pb::ObservedState::Failed, e.to_string())
                }
            }
        };
        statuses.push(pb::InstanceStatus {
            instance_id: spec.instance_id.to_string(),
            state: status.0 as i32,
            message: status.1,
        });
    }
    // Managed domains that are no longer desired.
    for (id, domain) in by_instance {
        let name = domain_name(&id);
        match hv.destroy(&name) {
            Ok(()) => tracing::info!(instance = %id, domain = name, "instance removed"),
            Err(e) => {
                all_ok = false;
                tracing::warn!(instance = %id, error = %e, "instance could not be removed");
                let state = match domain.state {
                    DomainState::Running => pb::ObservedState::Running,
                    _ => pb::ObservedState::Stopped,
                };
                statuses.push(pb::InstanceStatus {
                    instance_id: id.to_string(),
                    state: state as i32,
                    message: e.to_string(),
                });
            }
        }
    }
    statuses.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    Ok((
        pb::StatusReport {
            generation: desired.generation,
            instances: statuses,
        },
        all_ok,
    ))
}

/// Runs the reconcile loop until `desired`'s sender is dropped.
pub async fn run(
    hv: Arc<dyn Hypervisor>,
    mut desired: watch::Receiver<Option<pb::DesiredConfig>>,
    status: watch::Sender<Option<pb::StatusReport>>,
) {
    let mut retry = RETRY_MIN;
    loop {
        let config = desired.borrow_and_update().clone();
        let wait = match config {
            None => RESYNC,
            Some(config) => {
                let hv = hv.clone();
                let pass = tokio::task::spawn_blocking(move || reconcile_once(&*hv, &config)).await;
                match pass {
                    Ok(Ok((report, all_ok))) => {
                        status.send_if_modified(|s| {
                            let changed = s.as_ref() != Some(&report);
                            *s = Some(report);
                            changed
                        });
                        if all_ok {
                            retry = RETRY_MIN;
                            RESYNC
                        } else {
                            retry = (retry * 2).min(RETRY_MAX);
                            retry
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, retry_in = ?retry, "cannot read the hypervisor");
                        retry = (retry * 2).min(RETRY_MAX);
                        retry
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "reconcile pass panicked");
                        RETRY_MAX
                    }
                }
            }
        };
        // Both arms are cancel-safe: a missed timer is re-armed by the next round, and
        // `changed` only marks the value seen (the loop re-reads it).
        tokio::select! {
            changed = desired.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::libvirt::Libvirt;
    use vmcloud_proto::InstanceId;

    fn desired(generation: u64, ids: &[&InstanceId]) -> pb::DesiredConfig {
        pb::DesiredConfig {
            generation,
            instances: ids
                .iter()
                .map(|id| pb::DesiredInstance {
                    instance_id: id.to_string(),
                    name: "web".into(),
                    vcpus: 1,
                    memory_mib: 256,
                    disk_gib: 10,
                    image: "debian-12".into(),
                    gpus: vec![],
                    terminate_at_unix_ms: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn converges_with_the_libvirt_test_driver() {
        let _guard = crate::TEST_DRIVER.lock().unwrap_or_else(|e| e.into_inner());
        let hv = Libvirt::connect("test:///default").unwrap();
        let (a, b) = (InstanceId::generate(), InstanceId::generate());
        let (report, ok) = reconcile_once(&hv, &desired(1, &[&a, &b])).unwrap();
        assert!(ok);
        assert_eq!(report.instances.len(), 2);
        assert!(
            report
                .instances
                .iter()
                .all(|s| s.state() == pb::ObservedState::Running)
        );

        // b is no longer desired: its domain goes, a stays untouched.
        let (report, ok) = reconcile_once(&hv, &desired(2, &[&a])).unwrap();
        assert!(ok);
        assert_eq!(report.generation, 2);
        assert_eq!(report.instances.len(), 1);
        let names: Vec<String> = hv.list().unwrap().into_iter().map(|d| d.name).collect();
        assert!(names.contains(&domain_name(&a)));
        assert!(!names.contains(&domain_name(&b)));
        // Domains that are not ours are never touched.
        assert!(names.contains(&"test".to_owned()));
        reconcile_once(&hv, &desired(3, &[])).unwrap();
    }
}
