//! A cluster node (`[cluster]` in the configuration; docs/CLUSTER.md): the input journal fed by
//! a Raft log, so that 3 or 5 machines hold every acknowledged command and one of them leads.
//!
//! ```text
//!  gateway ─ route ─► seqd-consensus: stamp, batch, propose ──► Raft log (raft/log, raft/meta)
//!    (leader only;       │  raft-rs RawNode: tick, step, Ready          │
//!     followers answer   │                                     seqd-cluster-net: QUIC + mTLS
//!     NotLeader)         ▼ committed entries, in order                   to and from the peers
//!                 input ring ─► journaler, processor, event log, responder (as on a single node)
//! ```
//!
//! Consensus is raft-rs's (elections, terms, log matching, commitment); this module supplies
//! its storage (`raft_store`), its transport (`transport`) and the state machine's input
//! (`entry`, `node`). Only the leader sequences; every node, the leader included, applies a
//! command only once its entry is committed, through the same pipeline as a single node, so
//! all nodes write the same input journal and compute the same state (checked by the state
//! hashes the leader sends every `state_hash_every_commands`).
//!
//! Threads: `seqd-consensus` runs a single-threaded tokio runtime with the consensus loop and
//! the node transport's tasks together.
//!
//! Files: `entry.rs` (the entry data: a batch of sequenced commands), `raft_store.rs` (the
//! Raft log and hard state on disk), `node.rs` (the consensus thread), `transport.rs` (the node
//! transport), `status.rs` (role and progress for `/cluster` and the metrics).

pub mod catch_up;
pub mod entry;
pub mod node;
pub mod raft_store;
pub mod status;
pub mod transport;

use crate::config::ClusterSection;
use crate::engine::Command;
use crate::pipeline::{fault, CommandRoute, Origin, PipelineStats, SubmitError, Submitter};
use crate::storage::journal::Durability;
use crate::storage::replay::DataDir;
use node::{Consensus, Inbox, NodeSettings, Recovered, Refuse, INBOX_CAPACITY};
use raft_store::RaftStore;
use status::ClusterShared;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::mpsc::error::TrySendError;
use transport::Network;

/// The running node: the consensus thread and the transport.
pub struct ClusterNode {
    shared: Arc<ClusterShared>,
    route: Arc<NodeRoute>,
    thread: Option<JoinHandle<()>>,
}

/// Where the pipeline's recovery left off, and what the node needs beside its configuration.
pub struct StartArgs<'a> {
    pub cluster: &'a ClusterSection,
    pub data_root: &'a Path,
    pub segment_size_bytes: u64,
    pub durability: Durability,
    pub recovered: Recovered,
    /// The pipeline's submitter (publishes into the input ring directly).
    pub submitter: Submitter,
    pub stats: Arc<PipelineStats>,
    pub refuse: Refuse,
}

impl ClusterNode {
    /// Opens the Raft state, binds the node transport and starts the consensus thread. A
    /// failure of that thread stops the daemon like any pipeline thread's.
    pub fn start(args: StartArgs<'_>) -> Result<ClusterNode, String> {
        let cluster = args.cluster;
        let voters: Vec<u64> = cluster.nodes.iter().map(|n| n.id).collect();
        let store = RaftStore::open(args.data_root, args.segment_size_bytes, args.durability, &voters)
            .map_err(|e| format!("cluster: {e}"))?;
        let (inbox_tx, inbox_rx) = tokio::sync::mpsc::channel(INBOX_CAPACITY);
        let network = Network::bind(cluster, inbox_tx.clone())?;
        let shared = Arc::new(ClusterShared::default());
        let settings = NodeSettings {
            node_id: cluster.node_id,
            voters,
            tick: Duration::from_millis(cluster.heartbeat_ms),
            election_ticks: (cluster.election_timeout_ms / cluster.heartbeat_ms) as usize,
            client_addresses: cluster.nodes.iter().map(|n| (n.id, n.client_address.clone())).collect(),
            data_dir: DataDir::new(args.data_root),
            log_entries_kept: cluster.log_entries_kept,
        };
        let consensus = Consensus::new(
            settings,
            store,
            args.recovered,
            inbox_rx,
            network.queues.clone(),
            args.submitter,
            shared.clone(),
            args.stats.clone(),
            args.refuse,
        )?;
        let stats = args.stats;
        let thread = std::thread::Builder::new()
            .name("seqd-consensus".into())
            .spawn(move || match panic::catch_unwind(AssertUnwindSafe(|| network.run(consensus.run()))) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => stats.fail("consensus", &e),
                Err(payload) => stats.fail("consensus", &format!("panicked: {}", fault::panic_message(&*payload))),
            })
            .map_err(|e| format!("consensus thread: {e}"))?;
        let route = Arc::new(NodeRoute { inbox: inbox_tx, shared: shared.clone() });
        Ok(ClusterNode { shared, route, thread: Some(thread) })
    }

    /// What the gateway's submitters route commands through.
    pub fn route(&self) -> Arc<dyn CommandRoute> {
        self.route.clone()
    }

    pub fn shared(&self) -> Arc<ClusterShared> {
        self.shared.clone()
    }

    /// Stops the consensus loop (its submitter is dropped, so the pipeline can drain) and the
    /// transport with it.
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct NodeRoute {
    inbox: tokio::sync::mpsc::Sender<Inbox>,
    shared: Arc<ClusterShared>,
}

impl CommandRoute for NodeRoute {
    fn route(&self, command: Command, request_key: u64, origin: Origin, received_ns: u64) -> Result<(), SubmitError> {
        let not_leader = || SubmitError::NotLeader {
            leader_client_address: self.shared.leader_client_address.lock().expect("leader lock").clone(),
        };
        if !self.shared.is_leader.load(Ordering::Acquire) {
            return Err(not_leader());
        }
        match self.inbox.try_send(Inbox::Command { command, request_key, origin, received_ns }) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(SubmitError::Busy),
            Err(TrySendError::Closed(_)) => Err(not_leader()),
        }
    }
}

/// Replaces this process with a fresh start of the same binary and arguments (same PID, so
/// systemd and a test harness see the same service): how a follower that staged a snapshot
/// restarts its pipeline from it. Returns only if the exec failed.
pub(crate) fn restart_process() -> String {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return format!("cannot find this executable to restart: {e}"),
    };
    tracing::warn!(exe = %exe.display(), "cluster: restarting to load the installed snapshot");
    let error = std::process::Command::new(&exe).args(std::env::args_os().skip(1)).exec();
    format!("cannot restart {}: {error}", exe.display())
}

/// raft-rs logs through `slog`; this drain hands its records to `tracing` (target `raft`).
pub(crate) struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => tracing::error!(target: "raft", "{}", record.msg()),
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::info!(target: "raft", "{}", record.msg()),
            _ => tracing::debug!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}
