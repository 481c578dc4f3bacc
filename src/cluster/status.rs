//! What a cluster node shares with the rest of the daemon: whether it leads (the gateway's
//! route reads it on every command), the leader's client address (for `NotLeader`), and the
//! status served as JSON at `/cluster` and as `seqd_cluster_*` metrics.

use crate::engine::Seq;
use serde::Serialize;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Leader,
    #[default]
    Follower,
    Candidate,
    PreCandidate,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PeerStatus {
    pub id: u64,
    /// The highest log index the leader knows this peer stored (leader only; 0 elsewhere).
    pub match_index: u64,
    /// Since this node last heard from the peer; `None`: never since start.
    pub last_contact_ms: Option<u64>,
}

/// One node's view, refreshed by the consensus thread on every round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    pub node_id: u64,
    pub role: Role,
    pub term: u64,
    /// 0 while no leader is known.
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    /// The last sequence the processor applied on this node.
    pub applied_seq: Seq,
    pub peers: Vec<PeerStatus>,
}

#[derive(Debug, Default)]
pub struct ClusterShared {
    pub is_leader: AtomicBool,
    pub leader_client_address: Mutex<Option<String>>,
    pub status: Mutex<ClusterStatus>,
    /// State hashes compared equal with the leader's.
    pub state_hash_checks: AtomicU64,
    /// Set to stop the consensus thread.
    pub stop: AtomicBool,
}

impl ClusterShared {
    pub fn status(&self) -> ClusterStatus {
        self.status.lock().expect("status lock").clone()
    }

    /// `/cluster`.
    pub fn status_json(&self) -> String {
        serde_json::to_string(&self.status()).expect("a status serializes")
    }

    /// The `seqd_cluster_*` metrics (docs/METRICS.md).
    pub fn write_metrics(&self, out: &mut String) {
        let status = self.status();
        let mut gauge = |name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        gauge("seqd_cluster_node_id", "This node's id in the cluster.", status.node_id);
        gauge("seqd_cluster_is_leader", "1 while this node is the leader.", u64::from(status.role == Role::Leader));
        gauge("seqd_cluster_term", "The Raft term this node is in.", status.term);
        gauge("seqd_cluster_leader_id", "The leader this node knows (0: none).", status.leader_id);
        gauge("seqd_cluster_commit_index", "The highest Raft log index known committed.", status.commit_index);
        gauge("seqd_cluster_applied_index", "The highest Raft log index handed to the pipeline.", status.applied_index);
        gauge("seqd_cluster_last_index", "The last index of this node's Raft log.", status.last_index);
        let _ = writeln!(
            out,
            "# HELP seqd_cluster_state_hash_checks_total State hashes found equal to the leader's.\n\
             # TYPE seqd_cluster_state_hash_checks_total counter\n\
             seqd_cluster_state_hash_checks_total {}",
            self.state_hash_checks.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP seqd_cluster_peer_match_index The highest index the leader knows the peer stored.\n\
             # TYPE seqd_cluster_peer_match_index gauge"
        );
        for peer in &status.peers {
            let _ = writeln!(out, "seqd_cluster_peer_match_index{{peer=\"{}\"}} {}", peer.id, peer.match_index);
        }
        let _ = writeln!(
            out,
            "# HELP seqd_cluster_peer_last_contact_seconds Since this node last heard from the peer.\n\
             # TYPE seqd_cluster_peer_last_contact_seconds gauge"
        );
        for peer in &status.peers {
            if let Some(ms) = peer.last_contact_ms {
                let _ = writeln!(
                    out,
                    "seqd_cluster_peer_last_contact_seconds{{peer=\"{}\"}} {:.3}",
                    peer.id,
                    ms as f64 / 1e3
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_json_has_the_documented_fields() {
        let shared = ClusterShared::default();
        *shared.status.lock().unwrap() = ClusterStatus {
            node_id: 2,
            role: Role::PreCandidate,
            term: 7,
            peers: vec![PeerStatus { id: 1, match_index: 0, last_contact_ms: None }],
            ..Default::default()
        };
        let json: serde_json::Value = serde_json::from_str(&shared.status_json()).unwrap();
        assert_eq!(json["role"], "pre-candidate");
        assert_eq!(json["term"], 7);
        assert_eq!(json["peers"][0]["last_contact_ms"], serde_json::Value::Null);
        for field in ["node_id", "leader_id", "commit_index", "applied_index", "last_index", "applied_seq"] {
            assert!(json.get(field).is_some(), "{field}");
        }
        let mut metrics = String::new();
        shared.write_metrics(&mut metrics);
        assert!(metrics.contains("seqd_cluster_is_leader 0\n") && metrics.contains("seqd_cluster_term 7\n"));
    }
}
