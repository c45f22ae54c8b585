//! Queries over the derived indexes, and rebuilding them.

use std::sync::Arc;

use std::collections::HashMap;

use vmcloud_proto::{InstanceId, NodeId};

use crate::instances::types::{Instance, InstanceState, Market};
use crate::reservations::types::Held;
use crate::state::ClusterState;
use crate::state::index::{StateIndex, Usage};

impl ClusterState {
    /// Rebuilds the derived index from the maps: after a restore, or after building a state
    /// by hand (generators, tests).
    pub fn reindex(&mut self) {
        // Two halves over the same maps, each on a core of its own (a restore waits for
        // this: at a million instances, seconds of inserts into persistent maps).
        let this = &*self;
        let (by_node, by_project) = std::thread::scope(|scope| {
            let by_node = std::thread::Builder::new()
                .name("reindex".into())
                .spawn_scoped(scope, || this.index_by_node());
            let by_project = this.index_by_project();
            let by_node = match by_node {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to spare: the same work here.
                Err(_) => this.index_by_node(),
            };
            (by_node, by_project)
        });
        self.index = StateIndex {
            usage: by_node.usage,
            pending: by_node.pending,
            terminating: by_node.terminating,
            sessions: by_node.sessions,
            per_project: by_project.per_project,
            quota_used: by_project.quota_used,
            org_projects: by_project.org_projects,
            project_names: by_project.project_names,
            warm: by_node.warm,
        };
    }

    /// The indexes by node and by state: usage, pending, terminating, sessions.
    fn index_by_node(&self) -> StateIndex {
        let mut index = StateIndex {
            usage: self
                .nodes
                .keys()
                .map(|n| (n.clone(), Arc::new(Usage::default())))
                .collect(),
            ..StateIndex::default()
        };
        for r in self.reservations.values() {
            for s in r.slots.iter().filter(|s| s.instance.is_none()) {
                Arc::make_mut(index.usage.entry(s.node.clone()).or_default())
                    .held
                    .add(r);
            }
        }
        for i in self.instances.values() {
            if let Some(u) = i
                .node
                .as_ref()
                .and_then(|n| index.usage.get_mut(n).map(Arc::make_mut))
            {
                u.add(i);
            }
            if i.state == InstanceState::Pending {
                index.pending.insert((i.created_at_ms, i.id.clone()));
            }
            if let Some(d) = i.terminate_at_ms {
                index.terminating.insert((d, i.id.clone()));
            }
            if let Some(s) = &i.session {
                index
                    .sessions
                    .insert((i.project.clone(), s.profile.clone()), i.id.clone());
            }
            if i.is_warm() && i.state == InstanceState::Running {
                index
                    .warm
                    .entry(crate::gaming::pools::WarmClass::of(i))
                    .or_default()
                    .insert(i.id.clone());
            }
        }
        index
    }

    /// The indexes by owner: per project, quota use, organisations' projects.
    fn index_by_project(&self) -> StateIndex {
        let mut index = StateIndex::default();
        for p in self.projects.values() {
            index
                .org_projects
                .entry(p.org.clone())
                .or_default()
                .insert(p.id.clone());
            index.project_names.insert((p.org.clone(), p.name.clone()));
        }
        for i in self.instances.values() {
            index
                .per_project
                .entry(i.project.clone())
                .or_default()
                .insert((i.created_at_ms, i.id.clone()));
            index
                .quota_used
                .entry((i.project.clone(), i.region.clone()))
                .or_default()
                .add(i);
        }
        index
    }

    /// The capacity held for unused reservation slots on `node`.
    pub(crate) fn held_mut(&mut self, node: &NodeId) -> &mut Held {
        &mut Arc::make_mut(self.index.usage.entry(node.clone()).or_default()).held
    }

    /// The instances placed on `node`, by the usage index (not a scan of every instance).
    pub fn instances_on<'s>(&'s self, node: &NodeId) -> impl Iterator<Item = &'s Instance> + 's {
        self.index
            .usage
            .get(node)
            .into_iter()
            .flat_map(|u| u.instances.iter())
            .filter_map(|id| self.instances.get(id).map(|i| &**i))
    }

    /// The game session `project` (and in a household, `profile`) has now (pending,
    /// starting, running or ending), if any.
    pub fn live_session(
        &self,
        project: &vmcloud_proto::ProjectId,
        profile: Option<&str>,
    ) -> Option<&Instance> {
        self.index
            .sessions
            .get(&(project.clone(), profile.map(str::to_owned)))
            .and_then(|id| self.instances.get(id))
            .map(|i| &**i)
    }

    /// Drops a removed instance from the indexes that are not kept by usage.
    pub(crate) fn forget(&mut self, removed: &Instance) {
        if removed.public_ipv4.is_some() || !removed.floating_ips.is_empty() {
            self.forget_public_ips(removed);
        }
        if !removed.firewalls.is_empty() {
            self.forget_firewalls(removed);
        }
        if let Some(nic) = &removed.nic {
            self.release_nic(&removed.id, nic);
            if let Some(node) = &removed.node {
                self.network_hosts_changed(&nic.network, node);
            }
        }
        let key = (removed.project.clone(), removed.region.clone());
        if let Some(used) = self.index.quota_used.get_mut(&key) {
            used.remove(removed);
            if used.instances == 0 {
                self.index.quota_used.remove(&key);
            }
        }
        if let Some(set) = self.index.per_project.get_mut(&removed.project) {
            set.remove(&(removed.created_at_ms, removed.id.clone()));
            if set.is_empty() {
                self.index.per_project.remove(&removed.project);
            }
        }
        if removed.is_warm()
            && let Some(set) = self
                .index
                .warm
                .get_mut(&crate::gaming::pools::WarmClass::of(removed))
        {
            set.remove(&removed.id);
        }
        if let Some(s) = &removed.session {
            let key = (removed.project.clone(), s.profile.clone());
            if self.index.sessions.get(&key) == Some(&removed.id) {
                self.index.sessions.remove(&key);
            }
        }
    }

    /// Up to `limit` of `project`'s instances in creation order, after the sort key `after`;
    /// the last one's key when more may follow. Stable under concurrent creates and deletes:
    /// the key is (creation time, id), never an offset.
    pub fn instances_page(
        &self,
        project: &vmcloud_proto::ProjectId,
        after: Option<&(i64, InstanceId)>,
        limit: usize,
        keep: impl Fn(&Instance) -> bool,
    ) -> (Vec<&Instance>, Option<(i64, InstanceId)>) {
        let Some(set) = self.index.per_project.get(project) else {
            return (Vec::new(), None);
        };
        let mut page = Vec::with_capacity(limit.min(1024));
        let keys: Box<dyn Iterator<Item = &(i64, InstanceId)>> = match after {
            Some(a) => Box::new(set.range((
                std::ops::Bound::Excluded(a.clone()),
                std::ops::Bound::Unbounded,
            ))),
            None => Box::new(set.iter()),
        };
        let mut last = None;
        for key in keys {
            if page.len() == limit {
                return (page, last);
            }
            if let Some(i) = self.instances.get(&key.1).map(|i| &**i)
                && keep(i)
            {
                page.push(i);
            }
            last = Some(key.clone());
        }
        (page, None)
    }

    /// How many instances `project` has (live or ending).
    pub fn instances_of_project(&self, project: &vmcloud_proto::ProjectId) -> u32 {
        self.index
            .per_project
            .get(project)
            .map_or(0, |set| set.len() as u32)
    }

    /// vCPUs, memory and GPUs held on `node`.
    pub fn usage(&self, node: &NodeId) -> Usage {
        self.index
            .usage
            .get(node)
            .map(|u| Usage::clone(u))
            .unwrap_or_default()
    }

    /// What every node holds.
    pub fn usage_by_node(&self) -> HashMap<&NodeId, &Usage> {
        self.index.usage.iter().map(|(n, u)| (n, &**u)).collect()
    }

    /// The earliest time a spot instance's notice runs out, and the instances whose notice
    /// has run out by `now_ms`.
    pub fn notices_ending(&self, now_ms: i64) -> (Option<i64>, Vec<InstanceId>) {
        let running = |id: &InstanceId| {
            self.instances
                .get(id)
                .is_some_and(|i| i.state != InstanceState::Deleting)
        };
        let mut next = None;
        let mut due = Vec::new();
        for (d, id) in &self.index.terminating {
            if !running(id) {
                continue;
            }
            if *d > now_ms {
                next = Some(*d);
                break;
            }
            due.push(id.clone());
        }
        (next, due)
    }

    /// Hosts where spot instances given notice still hold capacity.
    pub fn reclaiming_nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.index.terminating.iter().filter_map(|(_, id)| {
            let i = self.instances.get(id)?;
            (i.market == Market::Spot).then_some(i.node.as_ref()?)
        })
    }

    /// Pending instances, oldest first.
    pub fn pending(&self) -> impl Iterator<Item = &Instance> {
        self.index
            .pending
            .iter()
            .filter_map(|(_, id)| self.instances.get(id).map(|i| &**i))
    }
}
