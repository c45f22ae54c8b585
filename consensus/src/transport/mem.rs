//! An in-memory network for Raft clusters in one process, with faults driven by a seed.
//!
//! Every message passes through [`MemNetwork::route`], which decides from the network's seeded
//! RNG whether to drop it, duplicate it and how long to delay it (random delays reorder
//! messages), and refuses it when its link is cut. Cuts are directional, so asymmetric
//! partitions are two calls. Delivery calls the receiving replica's `step`.
//!
//! The decisions replay from the seed; the timing does not (replicas run on real threads and
//! real timers), so a failing seed reproduces the same fault pattern, usually the same failure.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft::prelude::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::Transport;

/// Message faults applied to every link that is not cut.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Each delivery is delayed uniformly in `0..=max_delay`.
    pub max_delay: Duration,
}

type Deliver = Arc<dyn Fn(Message) + Send + Sync>;

struct NetState {
    nodes: HashMap<u64, Deliver>,
    cut: HashSet<(u64, u64)>,
    faults: Faults,
    rng: StdRng,
    delivered: u64,
    dropped: u64,
}

/// The network. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct MemNetwork {
    state: Arc<Mutex<NetState>>,
    runtime: tokio::runtime::Handle,
}

impl std::fmt::Debug for MemNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock().unwrap();
        f.debug_struct("MemNetwork")
            .field("nodes", &s.nodes.len())
            .field("cut", &s.cut)
            .field("faults", &s.faults)
            .finish()
    }
}

impl MemNetwork {
    /// A network whose fault decisions come from `seed`. Must be called inside a tokio runtime
    /// (delayed deliveries are timers on it).
    pub fn new(seed: u64, faults: Faults) -> MemNetwork {
        MemNetwork {
            state: Arc::new(Mutex::new(NetState {
                nodes: HashMap::new(),
                cut: HashSet::new(),
                faults,
                rng: StdRng::seed_from_u64(seed),
                delivered: 0,
                dropped: 0,
            })),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The transport for replica `from`.
    pub fn transport(&self, from: u64) -> MemTransport {
        MemTransport {
            from,
            network: self.clone(),
        }
    }

    /// Routes messages for `id` to `deliver` (replacing a previous registration, e.g. after a
    /// restart).
    pub fn register(&self, id: u64, deliver: impl Fn(Message) + Send + Sync + 'static) {
        self.state
            .lock()
            .unwrap()
            .nodes
            .insert(id, Arc::new(deliver));
    }

    /// Messages for `id` are lost until it registers again (a crashed replica).
    pub fn unregister(&self, id: u64) {
        self.state.lock().unwrap().nodes.remove(&id);
    }

    /// Cuts the link from `from` to `to` (one direction).
    pub fn cut(&self, from: u64, to: u64) {
        self.state.lock().unwrap().cut.insert((from, to));
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&self, id: u64, all: &[u64]) {
        let mut s = self.state.lock().unwrap();
        for &other in all.iter().filter(|&&o| o != id) {
            s.cut.insert((id, other));
            s.cut.insert((other, id));
        }
    }

    /// Splits the replicas into two sides that cannot talk to each other.
    pub fn partition(&self, side_a: &[u64], side_b: &[u64]) {
        let mut s = self.state.lock().unwrap();
        for &a in side_a {
            for &b in side_b {
                s.cut.insert((a, b));
                s.cut.insert((b, a));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.state.lock().unwrap().cut.clear();
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().unwrap().faults = faults;
    }

    /// `(delivered, dropped)` so far.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.state.lock().unwrap();
        (s.delivered, s.dropped)
    }

    fn route(&self, from: u64, message: Message) {
        let to = message.to;
        let mut s = self.state.lock().unwrap();
        let Some(deliver) = s.nodes.get(&to).cloned() else {
            s.dropped += 1;
            return;
        };
        let faults = s.faults;
        if s.cut.contains(&(from, to)) || (faults.drop > 0.0 && s.rng.random_bool(faults.drop)) {
            s.dropped += 1;
            return;
        }
        let copies = if faults.duplicate > 0.0 && s.rng.random_bool(faults.duplicate) {
            2
        } else {
            1
        };
        let mut delays = Vec::with_capacity(copies);
        for _ in 0..copies {
            let nanos = faults.max_delay.as_nanos() as u64;
            delays.push(if nanos == 0 {
                Duration::ZERO
            } else {
                Duration::from_nanos(s.rng.random_range(0..=nanos))
            });
        }
        s.delivered += copies as u64;
        drop(s);
        for delay in delays {
            if delay.is_zero() {
                deliver(message.clone());
            } else {
                let (deliver, message) = (deliver.clone(), message.clone());
                let network = self.state.clone();
                self.runtime.spawn(async move {
                    tokio::time::sleep(delay).await;
                    // A link cut while the message was in flight loses it.
                    if !network.lock().unwrap().cut.contains(&(from, to)) {
                        deliver(message);
                    }
                });
            }
        }
    }
}

/// One replica's end of a [`MemNetwork`].
#[derive(Debug)]
pub struct MemTransport {
    from: u64,
    network: MemNetwork,
}

impl Transport for MemTransport {
    fn send(&mut self, messages: Vec<Message>) {
        for m in messages {
            self.network.route(self.from, m);
        }
    }
}
