//! Quota limits, usage, and requests for more.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vmcloud_proto::{ProjectId, pb};

use crate::instances::types::Instance;
use crate::tenancy::types::OrgKind;

/// Limits on what a project holds in one region; `None`: no limit. Kept in the replicated
/// state, whose snapshots are positional: no field may be skipped when serialized.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Limits {
    #[serde(default)]
    pub instances: Option<u32>,
    #[serde(default)]
    pub vcpus: Option<u32>,
    #[serde(default)]
    pub memory_mib: Option<u64>,
    /// GPUs of every model together (MIG slices count one each).
    #[serde(default)]
    pub gpus: Option<u32>,
    /// GPUs of one model (in addition to `gpus`).
    #[serde(default)]
    pub gpus_by_model: BTreeMap<String, u32>,
    #[serde(default)]
    pub reservations: Option<u32>,
}

impl Limits {
    pub fn from_pb(l: &pb::QuotaLimits) -> Limits {
        Limits {
            instances: l.instances,
            vcpus: l.vcpus,
            memory_mib: l.memory_mib,
            gpus: l.gpus,
            gpus_by_model: l
                .gpus_by_model
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            reservations: l.reservations,
        }
    }

    pub fn to_pb(&self) -> pb::QuotaLimits {
        pb::QuotaLimits {
            instances: self.instances,
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            gpus: self.gpus,
            gpus_by_model: self
                .gpus_by_model
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect(),
            reservations: self.reservations,
        }
    }

    /// These limits with every limit `over` sets replacing this one's.
    pub fn overlaid(&self, over: &Limits) -> Limits {
        let mut gpus_by_model = self.gpus_by_model.clone();
        gpus_by_model.extend(over.gpus_by_model.iter().map(|(k, v)| (k.clone(), *v)));
        Limits {
            instances: over.instances.or(self.instances),
            vcpus: over.vcpus.or(self.vcpus),
            memory_mib: over.memory_mib.or(self.memory_mib),
            gpus: over.gpus.or(self.gpus),
            gpus_by_model,
            reservations: over.reservations.or(self.reservations),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// The limits a project starts with in each region, by its organisation's kind. The
/// provider's own projects have none.
pub fn defaults(kind: OrgKind, provider: bool) -> Limits {
    if provider {
        return Limits::default();
    }
    let (instances, vcpus, memory_gib, gpus, reservations) = match kind {
        OrgKind::Company => (50, 200, 800, 8, 10),
        OrgKind::Person => (10, 32, 128, 2, 2),
        // A household's game sessions (one at a time each) and little else.
        OrgKind::Household => (6, 48, 192, 6, 0),
    };
    Limits {
        instances: Some(instances),
        vcpus: Some(vcpus),
        memory_mib: Some(memory_gib * 1024),
        gpus: Some(gpus),
        gpus_by_model: BTreeMap::new(),
        reservations: Some(reservations),
    }
}

/// What a project holds in one region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Used {
    pub instances: u32,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub gpus: u32,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gpus_by_model: BTreeMap<String, u32>,
    pub reservations: u32,
}

impl Used {
    pub fn add(&mut self, i: &Instance) {
        self.instances += 1;
        self.vcpus += i.vcpus;
        self.memory_mib += i.memory_mib;
        if let Some(g) = &i.gpu {
            self.gpus += g.count;
            *self.gpus_by_model.entry(g.model.clone()).or_default() += g.count;
        }
    }

    pub fn remove(&mut self, i: &Instance) {
        self.instances = self.instances.saturating_sub(1);
        self.vcpus = self.vcpus.saturating_sub(i.vcpus);
        self.memory_mib = self.memory_mib.saturating_sub(i.memory_mib);
        if let Some(g) = &i.gpu {
            self.gpus = self.gpus.saturating_sub(g.count);
            if let Some(n) = self.gpus_by_model.get_mut(&g.model) {
                *n = n.saturating_sub(g.count);
                if *n == 0 {
                    self.gpus_by_model.remove(&g.model);
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Open,
    Approved,
    Declined,
}

/// A project's request for higher limits in a region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaRequest {
    pub id: String,
    pub project: ProjectId,
    pub region: String,
    pub wanted: Limits,
    pub reason: String,
    /// Who asked (`user:…` or `key:…`).
    pub requested_by: String,
    pub created_at_ms: i64,
    pub state: RequestState,
    #[serde(default)]
    pub decided_at_ms: Option<i64>,
    #[serde(default)]
    pub note: String,
}
