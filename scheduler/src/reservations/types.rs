//! Reservations: capacity held for one project.
//!
//! A reservation is `count` slots of one flavor in one region, each held on a host chosen
//! when the reservation is made ([`plan_reservation`], re-checked by apply). From then until
//! its end, the capacity of its unused slots is **held**: on-demand work and other tenants'
//! reservations may not use it; spot work may borrow it. When the owner starts a reserved
//! instance, it takes a free slot; if spot borrowed the capacity, the spot instances there
//! are preempted with their notice and the reserved instance is placed when they are gone.
//!
//! The rule that makes this a guarantee (DESIGN.md §5, invariant 4): on every host, the
//! capacity used by non-spot work plus the capacity held for unused slots never exceeds what
//! the host has. Admission and every placement keep it; evicting spot always frees a slot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use vmcloud_proto::{InstanceId, NodeId, ProjectId, ReservationId};

use crate::instances::types::Market;
use crate::instances::types::{GpuRequest, Instance};
use std::collections::BTreeSet;

/// Most slots one reservation may hold.
pub const MAX_SLOTS: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: ReservationId,
    #[serde(alias = "account")]
    pub project: ProjectId,
    pub region: String,
    pub flavor: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub gpu: Option<GpuRequest>,
    pub count: u32,
    pub start_ms: i64,
    pub end_ms: i64,
    pub created_at_ms: i64,
    /// One per `count` while it lasts; empty once it has ended.
    pub slots: Vec<Slot>,
    /// Instances drawing on it (placed or still pending).
    pub instances: BTreeSet<InstanceId>,
    /// It has ended: nothing held any more.
    pub expired: bool,
    /// Invoiced up to (a billing run's cut), once a run has billed part of it.
    #[serde(default)]
    pub billed_to_ms: Option<i64>,
}

/// One unit of held capacity on one host, and the instance using it, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub node: NodeId,
    pub instance: Option<InstanceId>,
}

/// Capacity held on a host for reservation slots nobody uses yet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Held {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub gpus: u32,
}

impl Held {
    pub(crate) fn add(&mut self, r: &Reservation) {
        self.vcpus += r.vcpus;
        self.memory_mib += r.memory_mib;
        self.gpus += r.gpu.as_ref().map_or(0, |g| g.count);
    }

    pub(crate) fn remove(&mut self, r: &Reservation) {
        self.vcpus = self.vcpus.saturating_sub(r.vcpus);
        self.memory_mib = self.memory_mib.saturating_sub(r.memory_mib);
        self.gpus = self
            .gpus
            .saturating_sub(r.gpu.as_ref().map_or(0, |g| g.count));
    }

    /// What of this is held back from `instance`: nothing for spot (it borrows held
    /// capacity); everything for other work; all but one slot for a reserved instance taking
    /// a slot of its reservation on this host (`own_slot`).
    pub fn against(&self, instance: &Instance, own_slot: bool) -> Held {
        if instance.market == Market::Spot {
            return Held::default();
        }
        let mut held = *self;
        if own_slot {
            held.vcpus = held.vcpus.saturating_sub(instance.vcpus);
            held.memory_mib = held.memory_mib.saturating_sub(instance.memory_mib);
            held.gpus = held
                .gpus
                .saturating_sub(instance.gpu.as_ref().map_or(0, |g| g.count));
        }
        held
    }
}

impl Reservation {
    /// Active: the owner may start instances on it now.
    pub fn active_at(&self, at_ms: i64) -> bool {
        !self.expired && self.start_ms <= at_ms && at_ms < self.end_ms
    }

    /// `scheduled` (not started), `active` or `expired`.
    pub fn status_at(&self, at_ms: i64) -> &'static str {
        if self.expired || at_ms >= self.end_ms {
            "expired"
        } else if at_ms < self.start_ms {
            "scheduled"
        } else {
            "active"
        }
    }

    /// Hosts holding a slot nobody uses, with how many.
    pub fn free_slots(&self) -> BTreeMap<&NodeId, u32> {
        let mut free = BTreeMap::new();
        for s in self.slots.iter().filter(|s| s.instance.is_none()) {
            *free.entry(&s.node).or_default() += 1;
        }
        free
    }

    /// Whether an instance of this shape, from this project, may draw on it.
    pub(crate) fn shape_matches(&self, i: &Instance) -> bool {
        i.project == self.project
            && i.region == self.region
            && i.vcpus == self.vcpus
            && i.memory_mib == self.memory_mib
            && i.gpu == self.gpu
    }
}
