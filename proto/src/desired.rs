//! Desired configs as deltas: what the scheduler sends when a node's config is large and only
//! part of it changed, and how the agent rebuilds the whole config from it.

use std::collections::BTreeMap;

use crate::pb::{DesiredConfig, DesiredInstance};

/// From this many instances on, a config that follows another on the same stream is sent as a
/// delta.
pub const DELTA_MIN_INSTANCES: usize = 16;

/// `new` as a delta on `base`: the instances added or changed, and the ids of those gone.
pub fn delta(base: &DesiredConfig, new: &DesiredConfig) -> DesiredConfig {
    let before: BTreeMap<&str, &DesiredInstance> = base
        .instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i))
        .collect();
    let after: BTreeMap<&str, &DesiredInstance> = new
        .instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i))
        .collect();
    DesiredConfig {
        generation: new.generation,
        base_generation: base.generation,
        instances: new
            .instances
            .iter()
            .filter(|i| before.get(i.instance_id.as_str()) != Some(i))
            .cloned()
            .collect(),
        removed: base
            .instances
            .iter()
            .filter(|i| !after.contains_key(i.instance_id.as_str()))
            .map(|i| i.instance_id.clone())
            .collect(),
        networks: new.networks.clone(),
    }
}

/// Whether `config` is a delta (else it is a whole config).
pub fn is_delta(config: &DesiredConfig) -> bool {
    config.base_generation != 0
}

/// The whole config `delta` describes on top of `base`; None when `base` is not the config it
/// was made on.
pub fn apply(base: &DesiredConfig, delta: &DesiredConfig) -> Option<DesiredConfig> {
    if base.generation != delta.base_generation {
        return None;
    }
    let mut by_id: BTreeMap<&str, &DesiredInstance> = base
        .instances
        .iter()
        .map(|i| (i.instance_id.as_str(), i))
        .collect();
    for gone in &delta.removed {
        by_id.remove(gone.as_str());
    }
    for i in &delta.instances {
        by_id.insert(i.instance_id.as_str(), i);
    }
    Some(DesiredConfig {
        generation: delta.generation,
        instances: by_id.into_values().cloned().collect(),
        base_generation: 0,
        removed: Vec::new(),
        networks: delta.networks.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str, vcpus: u32) -> DesiredInstance {
        DesiredInstance {
            instance_id: id.into(),
            vcpus,
            ..Default::default()
        }
    }

    fn config(generation: u64, instances: &[(&str, u32)]) -> DesiredConfig {
        DesiredConfig {
            generation,
            instances: instances.iter().map(|(id, v)| instance(id, *v)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_delta_carries_only_what_changed_and_rebuilds_the_whole_config() {
        let base = config(7, &[("a", 1), ("b", 2), ("c", 4)]);
        let new = config(9, &[("a", 1), ("c", 8), ("d", 2)]);
        let d = delta(&base, &new);
        assert!(is_delta(&d));
        assert_eq!(d.base_generation, 7);
        assert_eq!(d.generation, 9);
        let changed: Vec<&str> = d.instances.iter().map(|i| i.instance_id.as_str()).collect();
        assert_eq!(changed, ["c", "d"], "a is unchanged");
        assert_eq!(d.removed, ["b"]);
        assert_eq!(apply(&base, &d), Some(new));
        // On any other base it does not apply.
        assert_eq!(apply(&config(8, &[("a", 1)]), &d), None);
    }

    #[test]
    fn deltas_rebuild_random_configs_exactly() {
        use rand::{Rng, SeedableRng};
        let seed: u64 = rand::rng().random();
        eprintln!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut current = config(1, &[]);
        for generation in 2..200 {
            let mut next: BTreeMap<String, u32> = current
                .instances
                .iter()
                .map(|i| (i.instance_id.clone(), i.vcpus))
                .collect();
            for _ in 0..rng.random_range(0..6) {
                let id = format!("i{}", rng.random_range(0..40));
                match rng.random_range(0..3) {
                    0 => {
                        next.remove(&id);
                    }
                    _ => {
                        next.insert(id, rng.random_range(1..8));
                    }
                }
            }
            let new = DesiredConfig {
                generation,
                instances: next.iter().map(|(id, v)| instance(id, *v)).collect(),
                ..Default::default()
            };
            let d = delta(&current, &new);
            assert_eq!(apply(&current, &d).as_ref(), Some(&new), "seed {seed}");
            current = new;
        }
    }
}
