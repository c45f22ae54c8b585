//! The raft runner (owns the `RawNode`) and the applier, and [`Raft`], their handle.
//!
//! The runner and the applier are OS threads: the runner blocks on fsync, and both must keep
//! going while the async side of the process is busy. They talk through channels:
//! `Raft` → runner (`Request`), runner → applier (committed entries), applier → runner
//! (applied index, so raft-rs knows what has been applied), applier → proposers (oneshot).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use raft::prelude::{ConfChange, ConfChangeType, Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use rand::Rng;
use tokio::sync::{oneshot, watch};

use crate::metrics::RaftMetrics;
use crate::requests::{self, RequestId, Requests};
use crate::storage::{LogStore, StorageError};
use crate::{StateMachine, Transport};

/// How a replica runs Raft.
#[derive(Debug, Clone)]
pub struct RaftConfig {
    /// This replica's Raft id (non-zero).
    pub id: u64,
    /// The log file (redb).
    pub log_path: PathBuf,
    /// Voters of a brand-new cluster; ignored when the log already exists.
    pub bootstrap_voters: Vec<u64>,
    /// One Raft tick.
    pub tick: Duration,
    /// Election timeout in ticks: randomized by raft-rs in `[election_ticks,
    /// max_election_ticks)`; a leader that has not heard from a quorum for `election_ticks`
    /// steps down.
    pub election_ticks: usize,
    pub max_election_ticks: usize,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: usize,
    /// How long `propose` waits for its entry to be applied.
    pub propose_timeout: Duration,
    /// Where snapshots go (default: beside the log, `<log>.snapshots/`).
    pub snapshot_dir: PathBuf,
    /// Take a snapshot and compact the log every this many applied entries (0: never).
    pub snapshot_every: u64,
    /// Where this replica's metrics go (share it with the transport).
    pub metrics: Arc<RaftMetrics>,
    /// Raft link addresses of the replicas known at start (for `NotLeader` answers).
    pub peer_addresses: BTreeMap<u64, String>,
}

impl RaftConfig {
    /// Defaults: 100 ms ticks and heartbeats, election timeout randomized in [0.8 s, 1.2 s)
    /// (etcd's default election timeout is 1 s).
    pub fn new(id: u64, log_path: PathBuf, bootstrap_voters: Vec<u64>) -> Self {
        RaftConfig {
            id,
            bootstrap_voters,
            tick: Duration::from_millis(100),
            election_ticks: 8,
            max_election_ticks: 12,
            heartbeat_ticks: 1,
            propose_timeout: Duration::from_secs(10),
            snapshot_dir: log_path.with_extension("snapshots"),
            snapshot_every: 10_000,
            metrics: Arc::default(),
            peer_addresses: BTreeMap::new(),
            log_path,
        }
    }
}

/// What a replica knows about the group, published after every `Ready`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    pub id: u64,
    pub term: u64,
    /// 0 when no leader is known.
    pub leader_id: u64,
    pub is_leader: bool,
    pub commit: u64,
    /// The group's voters, by Raft id.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// On the leader: the highest log index known replicated on each replica.
    pub matched: BTreeMap<u64, u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the raft log {path}")]
    Storage {
        path: PathBuf,
        #[source]
        source: StorageError,
    },
    #[error("invalid raft configuration")]
    Config(#[source] raft::Error),
    #[error("cannot start the raft threads")]
    Thread(#[source] std::io::Error),
    #[error("the state machine cannot be restored from snapshot {index}: {message}")]
    Restore { index: u64, message: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("no leader could take the request (last known leader: {leader:?} at {address:?})")]
    NotLeader {
        leader: Option<u64>,
        /// The leader's raft link address, when this replica knows it.
        address: Option<String>,
    },
    #[error("the proposal was not applied within {0:?}")]
    Timeout(Duration),
    #[error("the replica is shutting down")]
    ShuttingDown,
    #[error("the proposal was dropped by raft: {0}")]
    Dropped(String),
    #[error("{0}")]
    Membership(String),
    #[error("this request was applied already, at log index {index}")]
    AlreadyApplied { index: u64 },
    /// This replica replaced its state with a snapshot from the leader while the proposal
    /// waited: it may or may not have been applied (a retry with a request id is safe).
    #[error("whether the proposal was applied is unknown: {0}")]
    Unknown(String),
}

enum Request {
    /// Answered with the term the entry was stamped with (see [`requests::proposed_in`]).
    Propose {
        context: Vec<u8>,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    /// A linearizable read: answered with the commit index a read must wait for.
    ReadIndex {
        context: Vec<u8>,
        reply: oneshot::Sender<Result<u64, ProposeError>>,
    },
    /// Propose a membership change.
    ConfChange {
        context: Vec<u8>,
        change: ConfChange,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    /// The applier reached a committed membership change: apply it to the group.
    ApplyConfChange(ConfChange),
    /// Hand leadership to another voter (for maintenance).
    TransferLeader {
        to: u64,
        reply: oneshot::Sender<Result<(), ProposeError>>,
    },
    /// A message from a peer, delivered by the transport.
    Step(Box<Message>),
    /// The applier has applied everything up to this index.
    Applied(u64),
    /// The applier's snapshot thread saved a snapshot of the state machine at `index`:
    /// compact the log up to it.
    Compacted {
        index: u64,
        term: u64,
    },
    Shutdown,
}

/// What the applier tells a proposer about its entry.
enum Outcome<O> {
    Applied(O),
    /// An entry without data (a barrier) or a membership change.
    Done,
    /// Its request id had been applied already, at this index.
    Duplicate(u64),
    /// The state machine was replaced by a snapshot while it waited.
    Unknown,
}

type Waiters<O> = Arc<Mutex<HashMap<Vec<u8>, oneshot::Sender<Outcome<O>>>>>;

/// Removes a proposal's waiter when the proposing future ends.
struct Forget<'a, O> {
    waiters: &'a Waiters<O>,
    context: &'a [u8],
}

impl<O> Drop for Forget<'_, O> {
    fn drop(&mut self) {
        self.waiters.lock().unwrap().remove(self.context);
    }
}

/// Handle to a running replica. Cheap to clone.
pub struct Raft<O> {
    requests: mpsc::Sender<Request>,
    waiters: Waiters<O>,
    status: watch::Receiver<RaftStatus>,
    applied: watch::Receiver<u64>,
    /// The term of the last applied entry (published before `applied`).
    applied_term: watch::Receiver<u64>,
    propose_timeout: Duration,
    /// How long a read waits for its confirmation before asking again (half the election
    /// timeout: a confirmation takes one round trip when all is well).
    reask: Duration,
    /// How often a waiting proposal looks whether the term has moved on (one tick).
    poll: Duration,
    threads: Arc<Mutex<Vec<thread::JoinHandle<()>>>>,
    metrics: Arc<RaftMetrics>,
}

impl<O> Clone for Raft<O> {
    fn clone(&self) -> Self {
        Raft {
            requests: self.requests.clone(),
            waiters: self.waiters.clone(),
            status: self.status.clone(),
            applied: self.applied.clone(),
            applied_term: self.applied_term.clone(),
            propose_timeout: self.propose_timeout,
            reask: self.reask,
            poll: self.poll,
            threads: self.threads.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<O: Send + 'static> Raft<O> {
    /// Opens the log and starts the runner and the applier. Committed entries already in the
    /// log are applied to `state_machine` again, in order, before anything new.
    pub fn start<S, T>(
        config: RaftConfig,
        state_machine: S,
        transport: T,
    ) -> Result<Raft<O>, StartError>
    where
        S: StateMachine<Output = O>,
        T: Transport,
    {
        let (store, snapshot) = LogStore::open(
            &config.log_path,
            &config.snapshot_dir,
            &config.bootstrap_voters,
        )
        .map_err(|source| StartError::Storage {
            path: config.log_path.clone(),
            source,
        })?;
        let mut state_machine = state_machine;
        let snapshot_index = store.snapshot_index();
        let mut applied_requests = Requests::default();
        if let Some(snapshot) = &snapshot {
            let restore_err = |message| StartError::Restore {
                index: snapshot.index,
                message,
            };
            let (requests, state) = requests::unwrap(&snapshot.data).map_err(restore_err)?;
            state_machine.restore(state).map_err(restore_err)?;
            applied_requests = requests;
        }
        let raft_config = raft::Config {
            id: config.id,
            election_tick: config.election_ticks,
            min_election_tick: config.election_ticks,
            max_election_tick: config.max_election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            // The state machine starts from the snapshot and replays the log after it.
            applied: snapshot_index,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        raft_config.validate().map_err(StartError::Config)?;
        let single_voter = store
            .initial_state_voters()
            .is_some_and(|v| v == [config.id]);
        let snapshot_writer = store.snapshot_writer();
        if let Some(make) = state_machine.outgoing_snapshot() {
            store.make_outgoing(make);
        }
        let mut node = RawNode::new(&raft_config, store, &crate::slog_bridge::logger())
            .map_err(StartError::Config)?;
        if single_voter {
            // Nobody else can win: do not wait a whole election timeout to become leader.
            node.campaign().map_err(StartError::Config)?;
        }

        let (requests_tx, requests_rx) = mpsc::channel();
        let (apply_tx, apply_rx) = mpsc::channel::<ApplyWork>();
        let (status_tx, status_rx) = watch::channel(RaftStatus {
            id: config.id,
            ..Default::default()
        });
        let (applied_tx, applied_rx) = watch::channel(snapshot_index);
        let last_term = snapshot.as_ref().map_or(0, |s| s.term);
        let (applied_term_tx, applied_term_rx) = watch::channel(last_term);
        let waiters: Waiters<O> = Arc::default();

        let mut transport = transport;
        match node.store().peer_addresses() {
            Ok(peers) => {
                for (peer, address) in peers.iter().filter(|(p, _)| **p != config.id) {
                    transport.add_peer(*peer, address);
                }
            }
            Err(e) => {
                tracing::warn!(error = %vmcloud_proto::ErrorChain(&e), "cannot read the addresses of joined replicas")
            }
        }
        let mut addresses: HashMap<u64, String> =
            config.peer_addresses.clone().into_iter().collect();
        if let Ok(joined) = node.store().peer_addresses() {
            addresses.extend(joined);
        }
        let runner = Runner {
            addresses,
            node,
            reads: HashMap::new(),
            requests: requests_rx,
            apply: apply_tx,
            status: status_tx,
            transport,
            tick: config.tick,
            metrics: config.metrics.clone(),
        };
        let applier = Applier {
            state_machine,
            snapshot_every: config.snapshot_every,
            requests: applied_requests,
            last_snapshot: snapshot_index,
            last_term,
            entries: apply_rx,
            waiters: waiters.clone(),
            applied: applied_tx,
            applied_term: applied_term_tx,
            runner: requests_tx.clone(),
            metrics: config.metrics.clone(),
            encoding: Default::default(),
            writer: snapshot_writer,
        };
        let runner = thread::Builder::new()
            .name("raft-runner".into())
            .spawn(move || runner.run())
            .map_err(StartError::Thread)?;
        let applier = thread::Builder::new()
            .name("raft-applier".into())
            .spawn(move || applier.run())
            .map_err(StartError::Thread)?;
        Ok(Raft {
            requests: requests_tx,
            waiters,
            status: status_rx,
            applied: applied_rx,
            applied_term: applied_term_rx,
            propose_timeout: config.propose_timeout,
            reask: config.tick * (config.election_ticks as u32).max(2) / 2,
            poll: config.tick,
            threads: Arc::new(Mutex::new(vec![runner, applier])),
            metrics: config.metrics,
        })
    }

    /// Proposes `data` and waits until it is committed and applied; returns the state
    /// machine's output for it.
    pub async fn propose(&self, data: Vec<u8>) -> Result<O, ProposeError> {
        let id = rand::rng().random::<RequestId>();
        match self
            .propose_entry(requests::context(requests::PLAIN, id), data)
            .await?
        {
            Outcome::Applied(output) => Ok(output),
            Outcome::Unknown => Err(unknown()),
            _ => Err(ProposeError::Dropped(
                "an entry with data produced no output".into(),
            )),
        }
    }

    /// Like [`Raft::propose`], with a client request id: proposing the same id again — a
    /// retry after a timeout, through any replica — is not applied again and answers
    /// `AlreadyApplied` (ids are remembered for [`requests::WINDOW`] entries).
    pub async fn propose_once(&self, request: RequestId, data: Vec<u8>) -> Result<O, ProposeError> {
        match self
            .propose_entry(requests::context(requests::ONCE, request), data)
            .await?
        {
            Outcome::Applied(output) => Ok(output),
            Outcome::Duplicate(index) => Err(ProposeError::AlreadyApplied { index }),
            Outcome::Unknown => Err(unknown()),
            Outcome::Done => Err(ProposeError::Dropped(
                "an entry with data produced no output".into(),
            )),
        }
    }

    /// Waits until an empty entry proposed now is applied: everything committed before this
    /// call is then applied too. Used at start to replay the log before serving.
    pub async fn barrier(&self) -> Result<(), ProposeError> {
        let id = rand::rng().random::<RequestId>();
        self.propose_entry(requests::context(requests::PLAIN, id), Vec::new())
            .await
            .map(|_| ())
    }

    /// Hands the entry to the leader and waits until it is applied here, failing over with
    /// the group: when a leader dies (or is paused, or deposed) with the entry not yet
    /// committed, the entry is proposed again to the next leader as soon as it is certain
    /// the first try can never be applied — this replica has applied an entry of a later term
    /// than the one the try was stamped with ([`requests::proposed_in`]) — so a write waits
    /// about one election, not the whole timeout, and is applied once. While no leader is
    /// known it waits for one. Gives up with `Timeout` (the entry may still be applied, or
    /// not) after `propose_timeout`, or `NotLeader` when no leader appeared by then.
    async fn propose_entry(
        &self,
        context: Vec<u8>,
        data: Vec<u8>,
    ) -> Result<Outcome<O>, ProposeError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.propose_timeout;
        let (mut done_rx, _forget) = self.wait_for_apply(&context);
        let mut tries = 0u32;
        let outcome = 'tries: loop {
            let (reply, answer) = oneshot::channel();
            if tries > 0 {
                self.metrics.proposals_retried.inc();
            }
            tries += 1;
            self.requests
                .send(Request::Propose {
                    context: context.clone(),
                    data: data.clone(),
                    reply,
                })
                .map_err(|_| ProposeError::ShuttingDown)?;
            let term = match answer.await.map_err(|_| ProposeError::ShuttingDown)? {
                Ok(term) => term,
                Err(ProposeError::NotLeader { .. }) if self.wait_for_leader(deadline).await => {
                    continue;
                }
                Err(e) => return Err(e),
            };
            // Waits for the answer, looking every tick (no more: most proposals are answered
            // in milliseconds, and one watch registration each would cost the applier's
            // throughput) whether an entry of a later term has been applied.
            loop {
                let now = tokio::time::Instant::now();
                if now >= deadline {
                    return Err(ProposeError::Timeout(self.propose_timeout));
                }
                let poll = self.poll.min(deadline - now);
                match tokio::time::timeout(poll, &mut done_rx).await {
                    Ok(done) => break 'tries done.map_err(|_| ProposeError::ShuttingDown)?,
                    Err(_) if *self.applied_term.borrow() > term => {
                        // Answers of a batch are sent before its term is published.
                        match done_rx.try_recv() {
                            Ok(done) => break 'tries done,
                            Err(oneshot::error::TryRecvError::Empty) => {
                                tracing::debug!(
                                    term,
                                    tries,
                                    "the leader changed before the proposal was committed; proposing it again"
                                );
                                break;
                            }
                            Err(oneshot::error::TryRecvError::Closed) => {
                                return Err(ProposeError::ShuttingDown);
                            }
                        }
                    }
                    Err(_) => {}
                }
            }
        };
        self.metrics
            .proposal_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(outcome)
    }

    /// Registers a waiter for the entry proposed with `context`; it goes when the guard drops
    /// (however the proposing future ends).
    fn wait_for_apply<'a>(
        &'a self,
        context: &'a [u8],
    ) -> (oneshot::Receiver<Outcome<O>>, Forget<'a, O>) {
        let (done_tx, done_rx) = oneshot::channel();
        self.waiters
            .lock()
            .unwrap()
            .insert(context.to_vec(), done_tx);
        let forget = Forget {
            waiters: &self.waiters,
            context,
        };
        (done_rx, forget)
    }

    /// Waits until a leader is known or `deadline` passes; true if one is known.
    async fn wait_for_leader(&self, deadline: tokio::time::Instant) -> bool {
        let mut status = self.status.clone();
        // Not the status the refusal was based on: wait for a leader other than none.
        let known = tokio::time::timeout_at(deadline, status.wait_for(|s| s.leader_id != 0));
        let found = matches!(known.await, Ok(Ok(_)));
        if found {
            // The status trails the runner by one `Ready`: should the leader be gone again
            // by the time the next try arrives, do not spin on the refusals.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        found
    }

    /// Registers a waiter for `context`, sends the request `make` builds, and waits until the
    /// entry is applied here. However this future ends (answered, failed, timed out or
    /// dropped by the caller), the waiter goes.
    async fn submit(
        &self,
        context: Vec<u8>,
        make: impl FnOnce(Vec<u8>, oneshot::Sender<Result<(), ProposeError>>) -> Request,
    ) -> Result<Outcome<O>, ProposeError> {
        let (done_rx, _forget) = self.wait_for_apply(&context);
        let (reply_tx, reply_rx) = oneshot::channel();
        self.requests
            .send(make(context.clone(), reply_tx))
            .map_err(|_| ProposeError::ShuttingDown)?;
        reply_rx.await.map_err(|_| ProposeError::ShuttingDown)??;
        match tokio::time::timeout(self.propose_timeout, done_rx).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(ProposeError::ShuttingDown),
            Err(_) => Err(ProposeError::Timeout(self.propose_timeout)),
        }
    }

    /// Waits until this replica has applied everything committed before the call, confirmed
    /// with a quorum (raft ReadIndex, `ReadOnlyOption::Safe`): state read from this replica's
    /// state machine afterwards is linearizable. A deposed or partitioned leader cannot get the
    /// quorum's confirmation, so it never answers; the caller gets `Timeout` (or `NotLeader`
    /// when no leader is known).
    pub async fn read_barrier(&self) -> Result<(), ProposeError> {
        let limit = self.propose_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let mut status = self.status.clone();
        let index = loop {
            let (term, leader) = {
                let s = status.borrow_and_update();
                (s.term, s.leader_id)
            };
            let context: Vec<u8> = rand::rng().random::<[u8; 16]>().to_vec();
            let (reply_tx, mut reply_rx) = oneshot::channel();
            self.requests
                .send(Request::ReadIndex {
                    context,
                    reply: reply_tx,
                })
                .map_err(|_| ProposeError::ShuttingDown)?;
            // A read pending when the lead changes (this replica deposed, or its leader gone)
            // is never answered, nor one whose message was lost: ask again — through the new
            // leader — instead of waiting out the timeout. Reads are safe to repeat.
            tokio::select! {
                biased;
                answer = &mut reply_rx => match answer.map_err(|_| ProposeError::ShuttingDown)? {
                    Ok(index) => break index,
                    Err(ProposeError::NotLeader { .. }) if self.wait_for_leader(deadline).await => continue,
                    Err(e) => return Err(e),
                },
                changed = async { status.wait_for(|s| s.term != term || s.leader_id != leader).await.is_ok() } => {
                    if !changed {
                        return Err(ProposeError::ShuttingDown);
                    }
                    self.metrics.reads_retried.inc();
                }
                _ = tokio::time::sleep(self.reask) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ProposeError::Timeout(limit));
                    }
                    self.metrics.reads_retried.inc();
                }
            }
        };
        let mut applied = self.applied.clone();
        match tokio::time::timeout_at(deadline, applied.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ProposeError::ShuttingDown),
            Err(_) => Err(ProposeError::Timeout(limit)),
        }
    }

    /// Adds replica `id` (reachable at `address`) as a learner: it receives the log but does
    /// not vote. Returns when the change is applied here.
    pub async fn add_learner(&self, id: u64, address: &str) -> Result<(), ProposeError> {
        self.change(ConfChangeType::AddLearnerNode, id, address)
            .await
    }

    /// Makes learner `id` a voter.
    pub async fn promote(&self, id: u64, address: &str) -> Result<(), ProposeError> {
        self.change(ConfChangeType::AddNode, id, address).await
    }

    /// Removes replica `id` from the group.
    pub async fn remove(&self, id: u64) -> Result<(), ProposeError> {
        self.change(ConfChangeType::RemoveNode, id, "").await
    }

    async fn change(
        &self,
        kind: ConfChangeType,
        id: u64,
        address: &str,
    ) -> Result<(), ProposeError> {
        let mut change = ConfChange::default();
        change.set_change_type(kind);
        change.node_id = id;
        change.context = address.as_bytes().to_vec();
        let id_bytes = rand::rng().random::<RequestId>();
        let context = requests::context(requests::PLAIN, id_bytes);
        self.submit(context, |context, reply| Request::ConfChange {
            context,
            change,
            reply,
        })
        .await?;
        // Committed and applied; wait until the runner has changed the group too.
        let done = |s: &RaftStatus| match kind {
            ConfChangeType::AddLearnerNode => s.learners.contains(&id) || s.voters.contains(&id),
            ConfChangeType::AddNode => s.voters.contains(&id),
            ConfChangeType::RemoveNode => !s.voters.contains(&id) && !s.learners.contains(&id),
        };
        let mut status = self.status.clone();
        match tokio::time::timeout(self.propose_timeout, status.wait_for(done)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ProposeError::ShuttingDown),
            Err(_) => Err(ProposeError::Timeout(self.propose_timeout)),
        }
    }

    /// Asks this replica, which must lead, to hand leadership to voter `to`; returns once the
    /// transfer has started (watch `status()` for the new leader).
    pub async fn transfer_leader(&self, to: u64) -> Result<(), ProposeError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::TransferLeader { to, reply })
            .map_err(|_| ProposeError::ShuttingDown)?;
        answer.await.map_err(|_| ProposeError::ShuttingDown)?
    }

    /// Delivers a message from a peer.
    pub fn step(&self, message: Message) {
        let _ = self.requests.send(Request::Step(Box::new(message)));
    }

    pub fn status(&self) -> watch::Receiver<RaftStatus> {
        self.status.clone()
    }

    pub fn metrics(&self) -> &Arc<RaftMetrics> {
        &self.metrics
    }

    /// The index of the last applied entry; changes after every applied batch.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Stops the runner and the applier and waits for them. Entries already committed are
    /// applied first; proposals still waiting get `ShuttingDown`.
    pub fn shutdown(&self) {
        let _ = self.requests.send(Request::Shutdown);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap());
        for t in threads {
            let _ = t.join();
        }
    }
}

fn unknown() -> ProposeError {
    ProposeError::Unknown(
        "this replica installed a snapshot from the leader while the proposal waited".into(),
    )
}

impl LogStore {
    fn initial_state_voters(&self) -> Option<Vec<u64>> {
        use raft::Storage;
        self.initial_state().ok().map(|s| s.conf_state.voters)
    }
}

struct Runner<T> {
    node: RawNode<LogStore>,
    /// Raft link addresses of the other replicas, for `NotLeader` answers.
    addresses: HashMap<u64, String>,
    /// ReadIndex requests waiting for their read state, by context.
    reads: HashMap<Vec<u8>, oneshot::Sender<Result<u64, ProposeError>>>,
    requests: mpsc::Receiver<Request>,
    apply: mpsc::Sender<ApplyWork>,
    status: watch::Sender<RaftStatus>,
    transport: T,
    tick: Duration,
    metrics: Arc<RaftMetrics>,
}

impl<T: Transport> Runner<T> {
    fn run(mut self) {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.requests.recv_timeout(wait) {
                Ok(Request::Shutdown) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(request) => {
                    if self.handle(request).is_break() {
                        break;
                    }
                    // Group commit: take everything already queued into this one Ready.
                    let mut stop = false;
                    while let Ok(request) = self.requests.try_recv() {
                        if matches!(request, Request::Shutdown) || self.handle(request).is_break() {
                            stop = true;
                            break;
                        }
                    }
                    if stop {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick = Instant::now() + self.tick;
            }
            if let Err(e) = self.on_ready() {
                // Continuing after a failed fsync could acknowledge writes that are not on
                // disk: stop this replica instead.
                tracing::error!(error = %e, "raft log write failed; stopping this replica");
                break;
            }
        }
        tracing::debug!("raft runner stopped");
    }

    fn handle(&mut self, request: Request) -> std::ops::ControlFlow<()> {
        match request {
            Request::Propose {
                context,
                data,
                reply,
            } => {
                // A follower forwards the proposal to the leader (raft-rs does it); the entry
                // carries its context, so this replica's applier answers the waiter when it
                // applies it. Without a known leader raft-rs drops the proposal.
                let (leader, term) = (self.node.raft.leader_id, self.node.raft.term);
                let result = self
                    .node
                    .propose(requests::stamped(&context, term), data)
                    .map(|()| term)
                    .map_err(|e| match e {
                        raft::Error::ProposalDropped => ProposeError::NotLeader {
                            leader: (leader != 0).then_some(leader),
                            address: self.addresses.get(&leader).cloned(),
                        },
                        other => ProposeError::Dropped(other.to_string()),
                    });
                let _ = reply.send(result);
            }
            Request::ReadIndex { context, reply } => {
                let leader = self.node.raft.leader_id;
                if leader == 0 {
                    let _ = reply.send(Err(ProposeError::NotLeader {
                        leader: None,
                        address: None,
                    }));
                } else {
                    // A follower forwards it to the leader; the answer comes back as a read
                    // state in a later Ready. Unanswered reads time out at the caller.
                    self.node.read_index(context.clone());
                    self.reads.retain(|_, r| !r.is_closed());
                    self.reads.insert(context, reply);
                }
            }
            Request::ConfChange {
                context,
                change,
                reply,
            } => {
                let result = if self.node.raft.state != StateRole::Leader {
                    let leader = self.node.raft.leader_id;
                    Err(ProposeError::NotLeader {
                        leader: (leader != 0).then_some(leader),
                        address: self.addresses.get(&leader).cloned(),
                    })
                } else {
                    // raft-rs refuses a change while another is not yet applied.
                    self.node.propose_conf_change(context, change).map_err(|e| {
                        ProposeError::Membership(format!("membership change refused: {e}"))
                    })
                };
                let _ = reply.send(result);
            }
            Request::ApplyConfChange(change) => self.apply_conf_change(&change),
            Request::TransferLeader { to, reply } => {
                let raft = &self.node.raft;
                let result = if raft.state != StateRole::Leader {
                    let leader = raft.leader_id;
                    Err(ProposeError::NotLeader {
                        leader: (leader != 0).then_some(leader),
                        address: self.addresses.get(&leader).cloned(),
                    })
                } else if !raft.prs().conf().voters().contains(to) {
                    Err(ProposeError::Dropped(format!(
                        "{to} is not a voter of this group"
                    )))
                } else {
                    self.node.transfer_leader(to);
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Request::Step(message) => {
                if let Err(e) = self.node.step(*message) {
                    tracing::debug!(error = %e, "raft step refused a message");
                }
            }
            Request::Applied(index) => self.node.advance_apply_to(index),
            Request::Compacted { index, term } => {
                // A failed compaction loses nothing: the log is still whole.
                match self.node.mut_store().compact_log(index, term) {
                    Ok(()) => tracing::debug!(index, "snapshot saved, log compacted"),
                    Err(e) => {
                        tracing::warn!(index, error = %vmcloud_proto::ErrorChain(&e), "snapshot failed; the log is kept")
                    }
                }
            }
            Request::Shutdown => return std::ops::ControlFlow::Break(()),
        }
        std::ops::ControlFlow::Continue(())
    }

    fn apply_conf_change(&mut self, change: &ConfChange) {
        let id = change.node_id;
        match self.node.apply_conf_change(change) {
            Ok(conf_state) => {
                if let Err(e) = self.node.mut_store().set_conf_state(conf_state.clone()) {
                    tracing::error!(error = %vmcloud_proto::ErrorChain(&e), "cannot persist the new configuration");
                }
                match change.get_change_type() {
                    ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                        if id != self.node.raft.id {
                            let address = String::from_utf8_lossy(&change.context);
                            self.transport.add_peer(id, &address);
                        }
                    }
                    ConfChangeType::RemoveNode => {
                        if id == self.node.raft.id {
                            tracing::warn!(
                                "this replica was removed from the group; it no longer takes part"
                            );
                        } else {
                            self.transport.remove_peer(id);
                        }
                    }
                }
                tracing::info!(voters = ?conf_state.voters, learners = ?conf_state.learners, "membership changed");
                self.publish_status();
            }
            Err(e) => tracing::warn!(node = id, error = %e, "membership change not applied"),
        }
    }

    /// Handles one `Ready` in raft-rs's documented order.
    fn on_ready(&mut self) -> Result<(), StorageError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        let mut snapshots_sent = Vec::new();
        for state in ready.take_read_states() {
            if let Some(reply) = self.reads.remove(&state.request_ctx) {
                let _ = reply.send(Ok(state.index));
            }
        }
        // 1. Messages that need no persistence (a leader's appends go out in parallel with
        //    its own fsync; raft thesis §10.2.1).
        if !ready.messages().is_empty() {
            let messages = ready.take_messages();
            note_snapshots(&messages, &mut snapshots_sent);
            self.transport.send(messages);
        }
        // 2. A snapshot from the leader replaces the log; the applier restores the state
        //    machine from it before applying anything after it.
        if !ready.snapshot().is_empty() {
            let file = self.node.mut_store().install(ready.snapshot())?;
            tracing::info!(index = file.index, "installed a snapshot from the leader");
            let _ = self.apply.send(ApplyWork::Restore(file));
        }
        // 3. Committed entries go to the applier, which runs concurrently.
        let committed = ready.take_committed_entries();
        if !committed.is_empty() {
            let _ = self.apply.send(ApplyWork::Entries(committed));
        }
        // 4–5. Entries and hard state: one transaction, fsynced when raft-rs says it must be
        //      (new entries, term or vote); a commit-index-only change is not.
        let sync = ready.must_sync();
        let started = Instant::now();
        self.node
            .mut_store()
            .persist(ready.entries(), ready.hs(), sync)?;
        if sync {
            self.metrics
                .fsync_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics
                .entries_per_write
                .observe(ready.entries().len() as f64);
        }
        // 6. Messages that must follow the fsync (votes, follower acks).
        if !ready.persisted_messages().is_empty() {
            let messages = ready.take_persisted_messages();
            note_snapshots(&messages, &mut snapshots_sent);
            self.transport.send(messages);
        }
        // 7. Advance. Not `advance`, which would also mark every committed entry handed out
        //    as applied: the applier reports what it has applied (`Request::Applied`).
        let mut light = self.node.advance_append(ready);
        if let Some(commit) = light.commit_index() {
            self.node.mut_store().set_commit(commit)?;
        }
        if !light.messages().is_empty() {
            let messages = light.take_messages();
            note_snapshots(&messages, &mut snapshots_sent);
            self.transport.send(messages);
        }
        let committed = light.take_committed_entries();
        if !committed.is_empty() {
            let _ = self.apply.send(ApplyWork::Entries(committed));
        }
        // A snapshot handed to the transport counts as delivered: if it was lost, the
        // follower rejects the next append and the leader sends a snapshot again.
        for to in snapshots_sent {
            self.metrics
                .snapshots_sent
                .get_or_create(&RaftMetrics::peer(to))
                .inc();
            self.node.report_snapshot(to, raft::SnapshotStatus::Finish);
        }
        if self.node.store().take_snapshot_wanted() {
            let _ = self.apply.send(ApplyWork::SnapshotNow);
        }
        self.publish_status();
        Ok(())
    }

    fn publish_status(&self) {
        let raft = &self.node.raft;
        let status = RaftStatus {
            id: raft.id,
            term: raft.term,
            leader_id: raft.leader_id,
            is_leader: raft.state == StateRole::Leader,
            commit: raft.raft_log.committed,
            voters: {
                let mut v: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
                v.sort_unstable();
                v
            },
            learners: raft
                .prs()
                .conf()
                .learners()
                .iter()
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect(),
            matched: if raft.state == StateRole::Leader {
                raft.prs()
                    .iter()
                    .map(|(id, pr)| (*id, pr.matched))
                    .collect()
            } else {
                BTreeMap::new()
            },
        };
        self.metrics.term.set(status.term as i64);
        self.metrics.leader.set(status.leader_id as i64);
        self.metrics.is_leader.set(i64::from(status.is_leader));
        self.metrics.commit_index.set(status.commit as i64);
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }
}

/// Work for the applier, in log order.
enum ApplyWork {
    Entries(Vec<Entry>),
    /// A peer needs a snapshot newer than the newest one: take one now.
    SnapshotNow,
    /// Replace the state machine with this snapshot (installed from the leader).
    Restore(crate::snapshot::SnapshotFile),
}

fn note_snapshots(messages: &[Message], sent: &mut Vec<u64>) {
    sent.extend(
        messages
            .iter()
            .filter(|m| m.get_msg_type() == raft::prelude::MessageType::MsgSnapshot)
            .map(|m| m.to),
    );
}

struct Applier<S: StateMachine> {
    state_machine: S,
    snapshot_every: u64,
    /// Request ids applied (replicated state, kept in snapshots).
    requests: Requests,
    last_snapshot: u64,
    /// Term of the last applied entry (for snapshots taken on request).
    last_term: u64,
    entries: mpsc::Receiver<ApplyWork>,
    waiters: Waiters<S::Output>,
    applied: watch::Sender<u64>,
    applied_term: watch::Sender<u64>,
    runner: mpsc::Sender<Request>,
    metrics: Arc<RaftMetrics>,
    /// A snapshot is being encoded on its own thread; no second one starts until it is done.
    encoding: Arc<std::sync::atomic::AtomicBool>,
    /// Writes snapshot files from that thread (the runner then only compacts the log).
    writer: crate::storage::SnapshotWriter,
}

impl<S: StateMachine> Applier<S> {
    /// Takes a snapshot at `index`: an immutable copy now, encoded and written (fsynced) on a
    /// thread of its own — applying and the Raft runner go on meanwhile — then the runner is
    /// told to compact the log up to it.
    fn snapshot(&mut self, index: u64, term: u64) {
        use std::sync::atomic::Ordering;
        if self.encoding.swap(true, Ordering::AcqRel) {
            // The one being encoded covers most of the log; the next due one follows it.
            return;
        }
        let encode = self.state_machine.snapshot_later();
        let requests = self.requests.clone();
        let (runner, metrics, encoding, writer) = (
            self.runner.clone(),
            self.metrics.clone(),
            self.encoding.clone(),
            self.writer.clone(),
        );
        self.last_snapshot = index;
        let spawned = std::thread::Builder::new()
            .name("raft-snapshot".into())
            .spawn(move || {
                match encode() {
                    Ok(state) => {
                        let data = requests::wrap(&requests, state);
                        match writer.save(index, term, data) {
                            Ok(()) => {
                                metrics.snapshots_taken.inc();
                                let _ = runner.send(Request::Compacted { index, term });
                            }
                            Err(e) => tracing::warn!(
                                index,
                                error = %vmcloud_proto::ErrorChain(&e),
                                "the snapshot could not be saved; the log is kept"
                            ),
                        }
                    }
                    Err(message) => {
                        tracing::warn!(
                            index,
                            message,
                            "the snapshot could not be encoded; the log is kept"
                        )
                    }
                }
                encoding.store(false, Ordering::Release);
            });
        if let Err(e) = spawned {
            tracing::warn!(index, error = %e, "cannot start the snapshot thread; the log is kept");
            self.encoding.store(false, Ordering::Release);
        }
    }

    fn run(mut self) {
        while let Ok(work) = self.entries.recv() {
            let batch = match work {
                ApplyWork::Entries(batch) => batch,
                ApplyWork::SnapshotNow => {
                    let last = *self.applied.borrow();
                    if last > self.last_snapshot {
                        self.snapshot(last, self.last_term);
                    }
                    continue;
                }
                ApplyWork::Restore(snapshot) => {
                    let restored =
                        requests::unwrap(&snapshot.data).and_then(|(requests, state)| {
                            self.state_machine.restore(state)?;
                            Ok(requests)
                        });
                    if let Ok(requests) = &restored {
                        self.requests = requests.clone();
                    }
                    if let Err(message) = restored {
                        // Applying anything after a failed restore would diverge.
                        tracing::error!(
                            index = snapshot.index,
                            message,
                            "cannot restore the state machine from the leader's snapshot; this replica stops applying"
                        );
                        return;
                    }
                    self.last_snapshot = snapshot.index;
                    self.last_term = snapshot.term;
                    // Whether what waits here was in the snapshot cannot be told: say so
                    // before the new term is published (which would read as "never applied").
                    for (_, waiter) in self.waiters.lock().unwrap().drain() {
                        let _ = waiter.send(Outcome::Unknown);
                    }
                    self.applied_term.send_if_modified(|t| {
                        let changed = *t != snapshot.term;
                        *t = snapshot.term;
                        changed
                    });
                    let _ = self.applied.send(snapshot.index);
                    let _ = self.runner.send(Request::Applied(snapshot.index));
                    continue;
                }
            };
            let (mut last, mut last_term) = (0, 0);
            let mut answers = Vec::new();
            for entry in batch {
                last = entry.index;
                last_term = entry.term;
                if requests::proposed_in(&entry.context).is_some_and(|t| t != entry.term) {
                    // It reached a leader of a later term than its proposer knew: skipped by
                    // every replica alike; the proposer proposes it again.
                    continue;
                }
                let output = match entry.get_entry_type() {
                    EntryType::EntryNormal if !entry.data.is_empty() => {
                        match requests::request_id(&entry.context) {
                            Some(id) => match self.requests.seen(&id) {
                                Some(first) => Outcome::Duplicate(first),
                                None => {
                                    self.requests.record(id, entry.index);
                                    Outcome::Applied(
                                        self.state_machine.apply(entry.index, &entry.data),
                                    )
                                }
                            },
                            None => {
                                Outcome::Applied(self.state_machine.apply(entry.index, &entry.data))
                            }
                        }
                    }
                    EntryType::EntryNormal => Outcome::Done,
                    EntryType::EntryConfChange => {
                        let mut change = ConfChange::default();
                        match protobuf::Message::merge_from_bytes(&mut change, &entry.data) {
                            // Applied to the group by the runner, in log order with the rest.
                            Ok(()) => {
                                let _ = self.runner.send(Request::ApplyConfChange(change));
                            }
                            Err(_) => tracing::error!(
                                index = entry.index,
                                "undecodable membership change skipped"
                            ),
                        }
                        Outcome::Done
                    }
                    EntryType::EntryConfChangeV2 => {
                        tracing::warn!(
                            index = entry.index,
                            "joint-consensus membership changes are not used; skipped"
                        );
                        Outcome::Done
                    }
                };
                if entry.context.is_empty() {
                    continue;
                }
                answers.push((entry.context, output));
            }
            // Readers see the batch before its proposers hear back (read-your-writes).
            self.state_machine.publish();
            {
                let mut waiters = self.waiters.lock().unwrap();
                for (context, output) in answers {
                    if let Some(waiter) = waiters.remove(requests::key(&context)) {
                        let _ = waiter.send(output);
                    }
                }
            }
            // Only when the term changed (nobody needs the same term told again).
            self.applied_term.send_if_modified(|t| {
                let changed = *t != last_term;
                *t = last_term;
                changed
            });
            let _ = self.applied.send(last);
            self.last_term = last_term;
            self.metrics.applied_index.set(last as i64);
            let _ = self.runner.send(Request::Applied(last));
            if self.snapshot_every > 0 && last >= self.last_snapshot + self.snapshot_every {
                self.snapshot(last, last_term);
            }
        }
        tracing::debug!("raft applier stopped");
    }
}
