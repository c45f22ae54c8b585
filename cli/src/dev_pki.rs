//! The development PKI under `<data dir>/pki/`: a cluster CA, the scheduler's certificate and
//! the local node's certificate, generated on first start and reused after.

use std::path::Path;

use anyhow::Context;
use vmcloud_proto::NodeId;
use vmcloud_proto::pki::{Ca, Identity};

use crate::data_dir::{read_optional, write_private};

#[derive(Debug)]
pub struct DevPki {
    pub ca: Ca,
    pub scheduler: Identity,
    pub node: Identity,
    pub generated: bool,
}

fn load_identity(dir: &Path, name: &str) -> anyhow::Result<Option<Identity>> {
    let cert = read_optional(&dir.join(format!("{name}.pem")))?;
    let key = read_optional(&dir.join(format!("{name}.key")))?;
    Ok(match (cert, key) {
        (Some(cert_pem), Some(key_pem)) => Some(Identity { cert_pem, key_pem }),
        _ => None,
    })
}

fn save_identity(dir: &Path, name: &str, id: &Identity) -> anyhow::Result<()> {
    std::fs::write(dir.join(format!("{name}.pem")), &id.cert_pem)
        .with_context(|| format!("cannot write {}/{name}.pem", dir.display()))?;
    write_private(&dir.join(format!("{name}.key")), &id.key_pem)
}

pub fn load_or_create(dir: &Path, node: &NodeId) -> anyhow::Result<DevPki> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut generated = false;
    let ca = match load_identity(dir, "ca")? {
        Some(identity) => Ca { identity },
        None => {
            let ca = Ca::generate("vmcloud-dev").context("generating the dev CA")?;
            save_identity(dir, "ca", &ca.identity)?;
            generated = true;
            ca
        }
    };
    let scheduler = match load_identity(dir, "scheduler")? {
        Some(id) if !generated => id,
        _ => {
            let id = ca
                .issue_scheduler("1")
                .context("issuing the scheduler certificate")?;
            save_identity(dir, "scheduler", &id)?;
            id
        }
    };
    let node_name = format!("node-{node}");
    let node = match load_identity(dir, &node_name)? {
        Some(id) if !generated => id,
        _ => {
            let id = ca
                .issue_node(node)
                .context("issuing the node certificate")?;
            save_identity(dir, &node_name, &id)?;
            id
        }
    };
    Ok(DevPki {
        ca,
        scheduler,
        node,
        generated,
    })
}
