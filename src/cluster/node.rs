//! The consensus thread of a cluster node: drives raft-rs's `RawNode` (tick, step, propose,
//! one `Ready` at a time), keeps the Raft log on disk (`raft_store`), and hands committed
//! commands to the pipeline's input ring in log order.
//!
//! On the leader, client commands arrive here (the gateway's `CommandRoute`), are stamped with
//! the next sequence and a timestamp that never goes backwards, batched into one entry
//! (`entry`, up to `ENTRY_COMMANDS_MAX`) and proposed. Every node, leader included, publishes a
//! command into the ring only once its entry is committed, so the journaler and the processor
//! see the same input on every node and the responder answers only committed commands. The
//! leader remembers which connection sent each command of its own entries (by index and term);
//! a committed entry of another term, or losing leadership, answers those commands with
//! `NotLeader` (outcome unknown: the client retries with its request key).
//!
//! Ready handling follows raft-rs's contract: the leader's messages go out at once; entries
//! and the hard state are persisted (term and vote synced) before the `persisted_messages`
//! that depend on them are sent.

use super::catch_up::{self, NodeStorage, OfferedSnapshot};
use super::entry::{self, SequencedCommand, ENTRY_COMMANDS_MAX};
use super::raft_store::RaftStore;
use super::status::{ClusterShared, ClusterStatus, PeerStatus, Role};
use super::transport::{Outbox, PeerFrame};
use crate::engine::{Command, Seq};
use crate::pipeline::{Origin, PipelineStats, Submitter};
use crate::storage::replay::DataDir;
use raft::eraftpb::{Entry, EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole, Storage};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::Receiver;

/// What the consensus thread is sent.
pub enum Inbox {
    /// A client command, from the gateway of the leader.
    Command { command: Command, request_key: u64, origin: Origin, received_ns: u64 },
    /// A frame from a peer node.
    Peer { from: u64, frame: PeerFrame },
}

/// Commands the inbox holds at most; the gateway answers `Busy` beyond it.
pub const INBOX_CAPACITY: usize = 16_384;

/// Uncommitted entry data a leader holds at most; proposals beyond it are refused `Busy`.
pub const UNCOMMITTED_BYTES_MAX: u64 = 64 << 20;

/// State hashes kept per side while waiting for the other side's hash at the same sequence.
const STATE_HASHES_KEPT: usize = 64;

/// Why a command the pipeline will never answer is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// This node does not lead (any more); the leader's client address when one is known.
    NotLeader(Option<String>),
    /// This node leads but cannot take more (its uncommitted log is full): retry later.
    Busy,
}

/// Answers a command the pipeline will never answer (the gateway's router).
pub type Refuse = Box<dyn Fn(Origin, Refusal) + Send>;

pub struct NodeSettings {
    pub node_id: u64,
    pub voters: Vec<u64>,
    pub tick: Duration,
    pub election_ticks: usize,
    /// Client address of every node, for `NotLeader`.
    pub client_addresses: BTreeMap<u64, String>,
    pub data_dir: DataDir,
    /// Entries kept behind the applied index when the log is compacted.
    pub log_entries_kept: u64,
}

/// How often `/cluster` and the metrics are refreshed (and at once on a change of leader).
const STATUS_EVERY: Duration = Duration::from_millis(20);

/// How often the log is checked for a newer snapshot to offer and for compaction.
const LOG_MAINTENANCE_EVERY: Duration = Duration::from_secs(1);

/// Where the recovered pipeline stands: the last sequence applied and its timestamp.
#[derive(Clone, Copy, Debug)]
pub struct Recovered {
    pub seq: Seq,
    pub timestamp_ns: u64,
}

pub struct Consensus {
    raw: RawNode<NodeStorage>,
    offered: Arc<Mutex<Option<OfferedSnapshot>>>,
    next_maintenance: Instant,
    store: RaftStore,
    settings: NodeSettings,
    inbox: Receiver<Inbox>,
    outbox: Arc<dyn Outbox>,
    submitter: Submitter,
    shared: Arc<ClusterShared>,
    stats: Arc<PipelineStats>,
    refuse: Refuse,
    /// The last sequence and timestamp in the log (the leader stamps after them).
    last_stamp: (Seq, u64),
    /// The batch being gathered for the next proposal, and where each command came from.
    batch: Vec<SequencedCommand>,
    batch_origins: Vec<Origin>,
    /// Entries this node proposed as leader: index -> (term, origins).
    proposed: BTreeMap<u64, (u64, Vec<Origin>)>,
    /// Committed commands not yet in the input ring (it was full).
    to_publish: VecDeque<(SequencedCommand, Origin)>,
    /// The last sequence handed to the ring or queued for it, and its timestamp.
    queued_seq: Seq,
    queued_ts: u64,
    decoded: Vec<SequencedCommand>,
    was_leader: bool,
    known_leader: u64,
    /// Own hashes (from the processor) and the leader's, by sequence, until compared.
    own_hashes: BTreeMap<Seq, [u8; 32]>,
    leader_hashes: BTreeMap<Seq, [u8; 32]>,
    last_contact: BTreeMap<u64, Instant>,
}

impl Consensus {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: NodeSettings,
        mut store: RaftStore,
        recovered: Recovered,
        inbox: Receiver<Inbox>,
        outbox: Arc<dyn Outbox>,
        submitter: Submitter,
        shared: Arc<ClusterShared>,
        stats: Arc<PipelineStats>,
        refuse: Refuse,
    ) -> Result<Consensus, String> {
        let applied_index = applied_index(&store, recovered.seq)?;
        // Applied entries were committed: the commit point (kept lazily on disk) is at least there.
        let mut hard_state = store.mem.initial_state().map_err(|e| e.to_string())?.hard_state;
        if hard_state.commit < applied_index {
            hard_state.commit = applied_index;
            store.set_hard_state(&hard_state).map_err(|e| e.to_string())?;
        }
        let config = raft::Config {
            id: settings.node_id,
            election_tick: settings.election_ticks,
            heartbeat_tick: 1,
            applied: applied_index,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            // A leader that cannot commit (no majority reachable) stops taking proposals past
            // this much uncommitted data, instead of growing its log and its memory.
            max_uncommitted_size: UNCOMMITTED_BYTES_MAX,
            // A leader that cannot reach a majority for an election timeout steps down, and a
            // node that was cut off cannot disrupt a healthy leader when it comes back.
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        };
        config.validate().map_err(|e| format!("raft config: {e}"))?;
        let logger = slog::Logger::root(super::TracingDrain, slog::o!("node" => settings.node_id));
        let offered = Arc::new(Mutex::new(None));
        let storage = NodeStorage { mem: store.mem.clone(), offered: offered.clone(), voters: settings.voters.clone() };
        let raw = RawNode::new(&config, storage, &logger).map_err(|e| format!("raft: {e}"))?;
        tracing::info!(node = settings.node_id, applied_index, seq = recovered.seq, "cluster node: recovered");
        Ok(Consensus {
            raw,
            offered,
            next_maintenance: Instant::now(),
            store,
            settings,
            inbox,
            outbox,
            submitter,
            shared,
            stats,
            refuse,
            last_stamp: (recovered.seq, recovered.timestamp_ns),
            batch: Vec::with_capacity(ENTRY_COMMANDS_MAX),
            batch_origins: Vec::with_capacity(ENTRY_COMMANDS_MAX),
            proposed: BTreeMap::new(),
            to_publish: VecDeque::new(),
            queued_seq: recovered.seq,
            queued_ts: recovered.timestamp_ns,
            decoded: Vec::with_capacity(ENTRY_COMMANDS_MAX),
            was_leader: false,
            known_leader: 0,
            own_hashes: BTreeMap::new(),
            leader_hashes: BTreeMap::new(),
            last_contact: BTreeMap::new(),
        })
    }

    /// Runs until `shared.stop` is set or the pipeline fails; an error stops the daemon. It
    /// runs on the node transport's runtime, on the same thread as the transport's tasks, so
    /// a peer's frame reaches it, and its messages reach the peers, without waking a thread.
    pub async fn run(mut self) -> Result<(), String> {
        let mut next_tick = Instant::now() + self.settings.tick;
        let mut next_status = Instant::now();
        loop {
            if self.shared.stop.load(Ordering::Acquire) || self.stats.failed.load(Ordering::Acquire) {
                self.step_down_answers(None);
                return Ok(());
            }
            if self.to_publish.is_empty() {
                tokio::select! {
                    biased;
                    message = self.inbox.recv() => match message {
                        Some(message) => self.on_inbox(message)?,
                        None => return Ok(()),
                    },
                    _ = tokio::time::sleep_until(next_tick.into()) => {}
                }
            } else {
                // The ring was full: let the transport run, then try again.
                tokio::task::yield_now().await;
            }
            // Take what else is waiting, bounded so ticks and readies keep their pace.
            for _ in 0..INBOX_CAPACITY {
                match self.inbox.try_recv() {
                    Ok(message) => self.on_inbox(message)?,
                    Err(_) => break,
                }
            }
            self.propose_batch();
            let now = Instant::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = (next_tick + self.settings.tick).max(now);
            }
            self.on_ready()?;
            self.publish();
            let role_changed = self.role_changes();
            self.compare_state_hashes()?;
            if now >= self.next_maintenance {
                self.next_maintenance = now + LOG_MAINTENANCE_EVERY;
                self.maintain_log()?;
            }
            if role_changed || now >= next_status {
                next_status = now + STATUS_EVERY;
                self.update_status();
            }
        }
    }

    fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    fn leader_client_address(&self) -> Option<String> {
        let leader = self.raw.raft.leader_id;
        (leader != 0).then(|| self.settings.client_addresses.get(&leader).cloned()).flatten()
    }

    fn on_inbox(&mut self, message: Inbox) -> Result<(), String> {
        match message {
            Inbox::Command { command, request_key, origin, received_ns } => {
                if !self.is_leader() {
                    (self.refuse)(origin, Refusal::NotLeader(self.leader_client_address()));
                    return Ok(());
                }
                let (last_seq, last_ts) = self.last_stamp;
                let stamped = SequencedCommand {
                    seq: last_seq + 1,
                    timestamp_ns: received_ns.max(last_ts),
                    request_key,
                    command,
                };
                self.last_stamp = (stamped.seq, stamped.timestamp_ns);
                self.batch.push(stamped);
                self.batch_origins.push(origin);
                if self.batch.len() == ENTRY_COMMANDS_MAX {
                    self.propose_batch();
                }
            }
            Inbox::Peer { from, frame } => {
                self.last_contact.insert(from, Instant::now());
                match frame {
                    PeerFrame::Raft(message) => {
                        if let Err(e) = self.raw.step(message) {
                            tracing::debug!(from, "raft step: {e}");
                        }
                    }
                    PeerFrame::StateHash { seq, hash } => {
                        if from == self.raw.raft.leader_id {
                            insert_bounded(&mut self.leader_hashes, seq, hash);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn propose_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let mut data = Vec::with_capacity(64 + self.batch.len() * 128);
        entry::encode(&self.batch, &mut data);
        // The origins move into `proposed`: an exact copy, and the buffer keeps its capacity.
        let origins: Vec<Origin> = self.batch_origins.drain(..).collect();
        self.batch.clear();
        match self.raw.propose(vec![], data) {
            Ok(()) => {
                let index = self.raw.raft.raft_log.last_index();
                self.proposed.insert(index, (self.raw.raft.term, origins));
            }
            Err(e) => {
                tracing::debug!("proposal dropped: {e}");
                let refusal = match self.is_leader() {
                    true => Refusal::Busy,
                    false => Refusal::NotLeader(self.leader_client_address()),
                };
                for origin in origins {
                    (self.refuse)(origin, refusal.clone());
                }
                // The stamps of a dropped batch are free again.
                self.last_stamp = self.log_last_stamp();
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), String> {
        if !self.raw.has_ready() {
            return Ok(());
        }
        let mut ready = self.raw.ready();
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            // This node is behind the leader's log: start over from the leader's snapshot.
            let seq = catch_up::stage(&self.settings.data_dir.root, ready.snapshot())?;
            tracing::warn!(seq, index = ready.snapshot().get_metadata().index, "cluster: staged the leader's snapshot");
            return Err(super::restart_process());
        }
        self.on_committed(ready.take_committed_entries())?;
        self.store.append(ready.entries()).map_err(|e| e.to_string())?;
        self.store.commit().map_err(|e| e.to_string())?;
        if let Some(hard_state) = ready.hs() {
            self.store.set_hard_state(hard_state).map_err(|e| e.to_string())?;
        }
        self.send(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.store.set_commit(commit);
        }
        self.send(light.take_messages());
        self.on_committed(light.take_committed_entries())?;
        self.raw.advance_apply();
        Ok(())
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            let (to, snapshot) = (message.to, message.get_msg_type() == MessageType::MsgSnapshot);
            self.outbox.send(to, PeerFrame::Raft(message));
            if snapshot {
                // The follower restarts to install it and then answers appends after it: probe
                // it again rather than wait for an answer to the snapshot itself.
                self.raw.report_snapshot(to, SnapshotStatus::Finish);
            }
        }
    }

    /// Offers the newest snapshot file to raft-rs and compacts the log behind it, keeping
    /// `log_entries_kept` entries before the applied index.
    fn maintain_log(&mut self) -> Result<(), String> {
        let snapshots = self.settings.data_dir.snapshots();
        let newest = snapshots.list().map_err(|e| e.to_string())?.pop();
        let offered_seq = self.offered.lock().expect("offer lock").as_ref().map(|o| o.seq);
        if let Some((seq, path)) = newest.filter(|(seq, _)| Some(*seq) > offered_seq) {
            if let Some(index) = self.index_covering(seq) {
                let term = self.raw.store().term(index).map_err(|e| e.to_string())?;
                tracing::debug!(seq, index, term, "cluster: offering a snapshot");
                *self.offered.lock().expect("offer lock") = Some(OfferedSnapshot { path, seq, index, term });
            }
        }
        let Some(offered_index) = self.offered.lock().expect("offer lock").as_ref().map(|o| o.index) else {
            return Ok(());
        };
        let applied = self.raw.raft.raft_log.applied;
        let keep_from = offered_index.min(applied.saturating_sub(self.settings.log_entries_kept));
        self.store.compact(keep_from).map_err(|e| format!("compacting the raft log: {e}"))
    }

    /// The last applied entry whose commands are all at or below `seq`.
    fn index_covering(&self, seq: Seq) -> Option<u64> {
        let store = self.raw.store();
        let applied = self.raw.raft.raft_log.applied;
        last_entry_covering(store, store.first_index().ok()?, applied, seq, applied).ok().flatten()
    }

    /// Queues the commands of committed entries for the ring, with their origins when this
    /// node proposed them in the term they committed in.
    fn on_committed(&mut self, entries: Vec<Entry>) -> Result<(), String> {
        for entry in entries {
            let origins = self.take_origins(entry.index, entry.term);
            if entry.data.is_empty() || entry.get_entry_type() != EntryType::EntryNormal {
                continue;
            }
            entry::decode(&entry.data, &mut self.decoded)
                .map_err(|e| format!("committed entry {} (term {}): {e}", entry.index, entry.term))?;
            for (i, command) in self.decoded.iter().enumerate() {
                if command.seq <= self.queued_seq {
                    continue; // applied before a restart
                }
                if command.seq != self.queued_seq + 1 {
                    return Err(format!(
                        "committed entry {} starts at sequence {} where {} was due",
                        entry.index,
                        command.seq,
                        self.queued_seq + 1
                    ));
                }
                let origin = origins.as_ref().map(|o| o[i]).unwrap_or_default();
                self.to_publish.push_back((*command, origin));
                self.queued_seq = command.seq;
                self.queued_ts = command.timestamp_ns;
            }
        }
        Ok(())
    }

    /// The origins of entry `index` if this node proposed it in `term`; commands of its own
    /// entries at or below `index` that lost to another entry are refused.
    fn take_origins(&mut self, index: u64, term: u64) -> Option<Vec<Origin>> {
        let mut mine = None;
        while let Some(entry) = self.proposed.first_entry() {
            if *entry.key() > index {
                break;
            }
            let (proposed_index, (proposed_term, origins)) = entry.remove_entry();
            if proposed_index == index && proposed_term == term {
                mine = Some(origins);
            } else {
                let refusal = Refusal::NotLeader(self.leader_client_address());
                for origin in origins {
                    (self.refuse)(origin, refusal.clone());
                }
            }
        }
        mine
    }

    fn publish(&mut self) {
        while let Some((command, origin)) = self.to_publish.front() {
            let published = self.submitter.try_publish_sequenced(
                command.command,
                command.request_key,
                *origin,
                command.timestamp_ns,
            );
            if published.is_err() {
                return; // the ring is full: the rest goes on the next round
            }
            self.to_publish.pop_front();
        }
    }

    /// Notices a change of role (true when there was one): the gateway's route follows at
    /// once, and a former leader answers its commands in flight.
    fn role_changes(&mut self) -> bool {
        let leader = self.is_leader();
        if leader == self.was_leader {
            return self.leader_id_changed();
        }
        self.was_leader = leader;
        self.shared.is_leader.store(leader, Ordering::Release);
        if leader {
            self.last_stamp = self.log_last_stamp();
            tracing::info!(term = self.raw.raft.term, last_seq = self.last_stamp.0, "became leader");
        } else {
            tracing::info!(term = self.raw.raft.term, leader = self.raw.raft.leader_id, "became follower");
            let leader = self.leader_client_address();
            self.step_down_answers(leader);
        }
        self.leader_id_changed();
        true
    }

    /// Whether the leader this node knows changed since the last call.
    fn leader_id_changed(&mut self) -> bool {
        let leader = self.raw.raft.leader_id;
        std::mem::replace(&mut self.known_leader, leader) != leader
    }

    /// Answers every command this node gathered or proposed and will not see committed as
    /// its own with `NotLeader`.
    fn step_down_answers(&mut self, leader: Option<String>) {
        let refusal = Refusal::NotLeader(leader);
        for origin in self.batch_origins.drain(..) {
            (self.refuse)(origin, refusal.clone());
        }
        self.batch.clear();
        for (_, (_, origins)) in std::mem::take(&mut self.proposed) {
            for origin in origins {
                (self.refuse)(origin, refusal.clone());
            }
        }
    }

    /// The last stamp in the log: the newest entry with commands, or what was applied when
    /// the log holds none after it.
    fn log_last_stamp(&self) -> (Seq, u64) {
        let store = self.raw.store();
        let first = store.first_index().unwrap_or(1);
        let mut index = self.raw.raft.raft_log.last_index();
        let applied = self.last_applied_stamp();
        while index >= first && index > 0 {
            if let Ok(entries) = store.entries(index, index + 1, None, raft::GetEntriesContext::empty(false)) {
                if let Some(entry) = entries.first().filter(|e| !e.data.is_empty()) {
                    if let Ok(stamp) = entry::last_stamp(&entry.data) {
                        return stamp.max(applied);
                    }
                }
            }
            index -= 1;
        }
        applied
    }

    fn last_applied_stamp(&self) -> (Seq, u64) {
        (self.queued_seq, self.queued_ts)
    }

    /// The leader sends each hash its processor computed; a follower compares its own with
    /// the leader's at the same sequence and stops the node on a difference.
    fn compare_state_hashes(&mut self) -> Result<(), String> {
        let computed: Vec<(Seq, [u8; 32])> = self.stats.state_hashes.lock().expect("hash lock").drain(..).collect();
        for (seq, hash) in computed {
            if self.is_leader() {
                for &peer in self.settings.voters.iter().filter(|&&id| id != self.settings.node_id) {
                    self.outbox.send(peer, PeerFrame::StateHash { seq, hash });
                }
            } else {
                insert_bounded(&mut self.own_hashes, seq, hash);
            }
        }
        let common: Vec<Seq> = self.own_hashes.keys().filter(|s| self.leader_hashes.contains_key(s)).copied().collect();
        for seq in common {
            let own = self.own_hashes.remove(&seq).expect("listed");
            let leader = self.leader_hashes.remove(&seq).expect("listed");
            if own != leader {
                return Err(format!(
                    "state hash at sequence {seq} differs from the leader's: this node {} , leader (node {}) {}",
                    hex(&own),
                    self.raw.raft.leader_id,
                    hex(&leader)
                ));
            }
            self.shared.state_hash_checks.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn update_status(&self) {
        let raft = &self.raw.raft;
        let role = match raft.state {
            StateRole::Leader => Role::Leader,
            StateRole::Follower => Role::Follower,
            StateRole::Candidate => Role::Candidate,
            StateRole::PreCandidate => Role::PreCandidate,
        };
        let peers = self
            .settings
            .voters
            .iter()
            .filter(|&&id| id != self.settings.node_id)
            .map(|&id| PeerStatus {
                id,
                match_index: if role == Role::Leader { raft.prs().get(id).map_or(0, |p| p.matched) } else { 0 },
                last_contact_ms: self.last_contact.get(&id).map(|t| t.elapsed().as_millis() as u64),
            })
            .collect();
        let status = ClusterStatus {
            node_id: self.settings.node_id,
            role,
            term: raft.term,
            leader_id: raft.leader_id,
            commit_index: raft.raft_log.committed,
            applied_index: raft.raft_log.applied,
            last_index: raft.raft_log.last_index(),
            applied_seq: self.stats.applied_seq.load(Ordering::Acquire),
            peers,
        };
        *self.shared.status.lock().expect("status lock") = status;
        *self.shared.leader_client_address.lock().expect("leader lock") = self.leader_client_address();
    }
}

fn insert_bounded(map: &mut BTreeMap<Seq, [u8; 32]>, seq: Seq, hash: [u8; 32]) {
    map.insert(seq, hash);
    while map.len() > STATE_HASHES_KEPT {
        map.pop_first();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The index of the last entry whose commands were all applied (sequence <= `applied_seq`):
/// raft-rs resumes delivering committed entries after it, and commands of a partly applied
/// entry at or below `applied_seq` are skipped.
fn applied_index(store: &RaftStore, applied_seq: Seq) -> Result<u64, String> {
    let meta = store.meta();
    let covering =
        last_entry_covering(&store.mem, meta.snapshot_index + 1, store.last_index(), applied_seq, meta.commit)?;
    Ok(covering.unwrap_or(meta.snapshot_index))
}

/// The last entry in `first..=last` whose commands are all at or below `seq` (entries are in
/// sequence order, so the scan stops at the first one past it). An entry without commands
/// counts only at or below `committed`: raft-rs must never be told that an entry it may still
/// have to replace was applied. A command entry at or below `seq` was applied, so committed,
/// and so is every entry before it.
fn last_entry_covering(
    storage: &impl Storage,
    first: u64,
    last: u64,
    seq: Seq,
    committed: u64,
) -> Result<Option<u64>, String> {
    if last < first {
        return Ok(None);
    }
    let entries =
        storage.entries(first, last + 1, None, raft::GetEntriesContext::empty(false)).map_err(|e| e.to_string())?;
    let mut covering = None;
    for entry in entries {
        if !entry.data.is_empty() && entry.get_entry_type() == EntryType::EntryNormal {
            let (first_seq, count) = entry::first_seq_and_count(&entry.data)
                .map_err(|e| format!("raft log entry {} (term {}): {e}", entry.index, entry.term))?;
            if first_seq + count - 1 > seq {
                break;
            }
            covering = Some(entry.index);
        } else if entry.index <= committed {
            covering = Some(entry.index);
        }
    }
    Ok(covering)
}
