//! Bringing state from before organisations into the tenancy tree. A project of an older log
//! or snapshot (then called an account) gets an organisation of its own, named after it, and
//! becomes that organisation's `default` project; its id stays, so every instance, job and
//! key that names it still does. An operator account becomes the provider's organisation
//! and its keys `operator` keys.

use std::collections::BTreeMap;

use vmcloud_proto::{OrgId, ProjectId};

use crate::state::ClusterState;
use crate::tenancy::types::DEFAULT_PROJECT;
use crate::tenancy::types::Role;
use crate::tenancy::types::{OrgKind, Organisation};

/// The organisation a project from before organisations belongs to.
pub fn legacy_org_of(project: &ProjectId, name: &str, at_ms: i64) -> Organisation {
    Organisation {
        id: legacy_org_id(project),
        name: if name.is_empty() {
            project.to_string()
        } else {
            name.to_owned()
        },
        kind: OrgKind::Company,
        // Unknown: asked for before the first invoice.
        billing_country: String::new(),
        vat_id: None,
        billing_address: Vec::new(),
        created_at_ms: at_ms,
        members: BTreeMap::new(),
        mfa_required: false,
        trial: false,
        provider: false,
        sso: None,
        invitations: BTreeMap::new(),
        api_per_hour: None,
        partner: None,
        support_access_until_ms: None,
    }
}

fn legacy_org_id(project: &ProjectId) -> OrgId {
    OrgId::parse(&format!("org-{project}"))
        .or_else(|_| OrgId::parse(&format!("org-{}", &project.as_str()[..60])))
        .expect("a project id makes a valid organisation id")
}

impl ClusterState {
    /// Puts every project that has no organisation into one of its own (a restored snapshot
    /// from before organisations). Idempotent.
    pub fn migrate_tenancy(&mut self) {
        let orphans: Vec<ProjectId> = self
            .projects
            .iter()
            .filter(|(_, p)| !self.organisations.contains_key(&p.org))
            .map(|(id, _)| id.clone())
            .collect();
        for id in orphans {
            let project = self.projects.get_mut(&id).expect("listed above");
            let mut org = legacy_org_of(&id, &project.name, project.created_at_ms);
            org.provider = project.operator;
            project.org = org.id.clone();
            project.name = DEFAULT_PROJECT.to_owned();
            let operator = project.operator;
            self.organisations.insert(org.id.clone(), org);
            if operator {
                let keys: Vec<String> = self
                    .api_keys
                    .iter()
                    .filter(|(_, k)| k.project == id && k.role == Role::ProjectAdmin)
                    .map(|(key_id, _)| key_id.clone())
                    .collect();
                for key_id in keys {
                    if let Some(key) = self.api_keys.get_mut(&key_id) {
                        key.role = Role::Operator;
                    }
                }
            }
        }
    }
}
