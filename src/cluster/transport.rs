//! The node transport: QUIC with mutual TLS between cluster nodes, on its own single-threaded
//! tokio runtime, which also runs the consensus loop (`node`): node traffic never waits behind
//! client traffic, and a frame passes between the network and Raft without a thread switch.
//!
//! Each node connects to every peer (as a QUIC client, presenting `node-<id>.pem`) and sends
//! its frames on one unidirectional stream; it accepts the peers' connections on
//! `node_address` and admits a peer only with a certificate of the cluster's CA whose common
//! name is `node-<id>` of a configured node. Frames (docs/CLUSTER.md, "Node transport"):
//!
//! ```text
//! length u32 (of what follows, <= PEER_FRAME_BYTES_MAX) | tag u8 | body
//! tag 1: a Raft message (raft-rs's protobuf encoding)
//! tag 2: a state hash: seq u64 | BLAKE3 hash [32]
//! ```
//!
//! Sending never blocks the consensus thread: each peer has a bounded queue, and a frame that
//! does not fit is dropped, which Raft tolerates (a dropped append is sent again after the
//! peer's answer or the next heartbeat). Timeouts are short (the idle timeout is the election
//! timeout), so a killed peer's connection is noticed and a restarted one is reached again.

use super::node::Inbox;
use crate::config::ClusterSection;
use crate::engine::Seq;
use crate::gateway::tls;
use protobuf::Message as _;
use raft::eraftpb::Message;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Largest frame: a snapshot for a follower that is behind the leader's log carries the whole
/// engine state (an append is at most `max_size_per_msg`, 1 MiB). A state whose snapshot file
/// is larger cannot be sent: such a node is seeded by copying a peer's data directory.
pub const PEER_FRAME_BYTES_MAX: usize = 1 << 30;
/// Frames queued per peer before new ones are dropped.
const PEER_QUEUE_FRAMES: usize = 4096;
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);

const TAG_RAFT: u8 = 1;
const TAG_STATE_HASH: u8 = 2;

/// What nodes send each other.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerFrame {
    Raft(Message),
    StateHash { seq: Seq, hash: [u8; 32] },
}

impl PeerFrame {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; 4];
        match self {
            PeerFrame::Raft(message) => {
                out.push(TAG_RAFT);
                message.write_to_vec(&mut out).expect("a raft message encodes");
            }
            PeerFrame::StateHash { seq, hash } => {
                out.push(TAG_STATE_HASH);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(hash);
            }
        }
        let length = u32::try_from(out.len() - 4).expect("a frame is far below 4 GiB");
        out[..4].copy_from_slice(&length.to_le_bytes());
        out
    }

    /// Decodes a frame's tag and body (after the length).
    pub fn decode(body: &[u8]) -> Result<PeerFrame, String> {
        match body.split_first() {
            Some((&TAG_RAFT, message)) => {
                Message::parse_from_bytes(message).map(PeerFrame::Raft).map_err(|e| format!("raft message: {e}"))
            }
            Some((&TAG_STATE_HASH, rest)) if rest.len() == 40 => Ok(PeerFrame::StateHash {
                seq: u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")),
                hash: rest[8..].try_into().expect("32 bytes"),
            }),
            Some((tag, _)) => Err(format!("unknown frame tag {tag} or bad length")),
            None => Err("empty frame".into()),
        }
    }
}

/// Where the consensus thread sends frames.
pub trait Outbox: Send + Sync {
    fn send(&self, to: u64, frame: PeerFrame);
}

/// The peers' send queues: what the consensus thread sends through.
pub struct PeerQueues {
    peers: BTreeMap<u64, mpsc::Sender<Vec<u8>>>,
}

impl Outbox for PeerQueues {
    fn send(&self, to: u64, frame: PeerFrame) {
        if isolated() {
            return;
        }
        if let Some(queue) = self.peers.get(&to) {
            let _ = queue.try_send(frame.encode());
        }
    }
}

/// The node transport, bound and ready to run on its own single-threaded runtime together
/// with the consensus loop (`run`).
pub struct Network {
    runtime: tokio::runtime::Runtime,
    endpoint: quinn::Endpoint,
    node_id: u64,
    voters: Vec<u64>,
    inbox: mpsc::Sender<Inbox>,
    senders: Vec<(u64, SocketAddr, mpsc::Receiver<Vec<u8>>)>,
    pub queues: Arc<PeerQueues>,
}

impl Network {
    /// Binds `node_address` now (an address in use fails the start) with the node
    /// certificates; frames received go to `inbox`.
    pub fn bind(cluster: &ClusterSection, inbox: mpsc::Sender<Inbox>) -> Result<Network, String> {
        let node_id = cluster.node_id;
        let dir = &cluster.certs_dir;
        let name = tls::node_name(node_id);
        let read = |file: String| {
            let path = dir.join(&file);
            std::fs::read(&path).map_err(|e| format!("cluster.certs_dir: {}: {e}", path.display()))
        };
        let (ca, cert, key) = (read("ca.pem".into())?, read(format!("{name}.pem"))?, read(format!("{name}.key"))?);
        let mut transport = quinn::TransportConfig::default();
        let idle = Duration::from_millis(cluster.election_timeout_ms.max(200));
        transport
            .max_idle_timeout(Some(quinn::IdleTimeout::try_from(idle).map_err(|e| e.to_string())?))
            .keep_alive_interval(Some(Duration::from_millis(cluster.heartbeat_ms)))
            .max_concurrent_bidi_streams(0u32.into())
            .max_concurrent_uni_streams(4u32.into());
        let (server, client) =
            tls::node_configs(&ca, &cert, &key, transport).map_err(|e| format!("cluster certificates: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cluster runtime: {e}"))?;
        let listen = cluster.this_node().node_address;
        let mut endpoint = {
            let _context = runtime.enter();
            quinn::Endpoint::server(server, listen)
                .map_err(|e| format!("cluster node_address {listen} (QUIC, UDP): {e}"))?
        };
        endpoint.set_default_client_config(client);
        let mut peers = BTreeMap::new();
        let mut senders = Vec::new();
        for node in cluster.nodes.iter().filter(|n| n.id != node_id) {
            let (tx, rx) = mpsc::channel(PEER_QUEUE_FRAMES);
            peers.insert(node.id, tx);
            senders.push((node.id, node.node_address, rx));
        }
        let voters = cluster.nodes.iter().map(|n| n.id).collect();
        let queues = Arc::new(PeerQueues { peers });
        Ok(Network { runtime, endpoint, node_id, voters, inbox, senders, queues })
    }

    /// Runs the transport's tasks and `main` (the consensus loop) on this thread until `main`
    /// returns; then closes the endpoint.
    pub fn run(self, main: impl std::future::Future<Output = Result<(), String>>) -> Result<(), String> {
        let Network { runtime, endpoint, node_id, voters, inbox, senders, queues } = self;
        let stop = Arc::new(AtomicBool::new(false));
        let result = runtime.block_on(async {
            for (peer, address, rx) in senders {
                tokio::spawn(send_to_peer(endpoint.clone(), peer, address, rx, stop.clone()));
            }
            tokio::spawn(accept(endpoint.clone(), node_id, voters, inbox));
            let result = main.await;
            stop.store(true, Ordering::Release);
            endpoint.close(0u32.into(), b"stopping");
            result
        });
        drop(queues);
        runtime.shutdown_timeout(Duration::from_millis(200));
        result
    }
}

async fn send_to_peer(
    endpoint: quinn::Endpoint,
    peer: u64,
    address: SocketAddr,
    mut queue: mpsc::Receiver<Vec<u8>>,
    stop: Arc<AtomicBool>,
) {
    let name = tls::node_name(peer);
    while !stop.load(Ordering::Acquire) {
        let stream = async {
            let connection =
                endpoint.connect(address, &name).map_err(|e| e.to_string())?.await.map_err(|e| e.to_string())?;
            connection.open_uni().await.map_err(|e| e.to_string())
        };
        let mut stream = match stream.await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(peer, %address, "cluster: cannot reach the peer: {e}");
                // What was queued for a peer that is away is stale by the time it is back.
                while queue.try_recv().is_ok() {}
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        tracing::debug!(peer, %address, "cluster: connected to the peer");
        loop {
            let Some(frame) = queue.recv().await else { return };
            if stream.write_all(&frame).await.is_err() {
                break;
            }
        }
    }
}

async fn accept(endpoint: quinn::Endpoint, node_id: u64, voters: Vec<u64>, inbox: mpsc::Sender<Inbox>) {
    while let Some(incoming) = endpoint.accept().await {
        let (voters, inbox) = (voters.clone(), inbox.clone());
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else { return };
            let principal = tls::principal_of(&connection).unwrap_or_default();
            let Some(from) = voters.iter().copied().find(|&id| id != node_id && tls::node_name(id) == principal) else {
                tracing::warn!(%principal, remote = %connection.remote_address(), "cluster: refused a connection from an unknown node");
                connection.close(1u32.into(), b"unknown node");
                return;
            };
            while let Ok(stream) = connection.accept_uni().await {
                tokio::spawn(receive(stream, from, inbox.clone()));
            }
        });
    }
}

async fn receive(mut stream: quinn::RecvStream, from: u64, inbox: mpsc::Sender<Inbox>) {
    let mut body = Vec::new();
    loop {
        let mut length = [0u8; 4];
        if stream.read_exact(&mut length).await.is_err() {
            return;
        }
        let length = u32::from_le_bytes(length) as usize;
        if length > PEER_FRAME_BYTES_MAX {
            tracing::warn!(from, length, "cluster: a frame over the limit; dropping the stream");
            return;
        }
        body.resize(length, 0);
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        match PeerFrame::decode(&body) {
            Ok(_) if isolated() => {}
            Ok(frame) => {
                // A full inbox drops the frame, as a lossy network would.
                let _ = inbox.try_send(Inbox::Peer { from, frame });
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::warn!(from, "cluster: a bad frame ({e}); dropping the stream");
                return;
            }
        }
    }
}

/// The test-only partition switch: with the `fault-injection` feature, while the file named by
/// `SEQD_FAULT_ISOLATE_FILE` exists, this node drops every frame it would send or receive.
#[cfg(feature = "fault-injection")]
fn isolated() -> bool {
    use std::sync::OnceLock;
    use std::time::Instant;
    static SWITCH: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    static CHECKED: std::sync::Mutex<Option<(Instant, bool)>> = std::sync::Mutex::new(None);
    let Some(path) = SWITCH.get_or_init(|| std::env::var_os("SEQD_FAULT_ISOLATE_FILE").map(Into::into)) else {
        return false;
    };
    let mut checked = CHECKED.lock().expect("switch lock");
    match *checked {
        Some((at, on)) if at.elapsed() < Duration::from_millis(10) => on,
        _ => {
            let on = path.exists();
            *checked = Some((Instant::now(), on));
            on
        }
    }
}

#[cfg(not(feature = "fault-injection"))]
fn isolated() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let message = Message { to: 3, from: 1, term: 9, commit: 42, ..Default::default() };
        for frame in [PeerFrame::Raft(message), PeerFrame::StateHash { seq: 7, hash: [5; 32] }] {
            let bytes = frame.encode();
            let length = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(length, bytes.len() - 4);
            assert_eq!(PeerFrame::decode(&bytes[4..]).unwrap(), frame);
        }
        assert!(PeerFrame::decode(&[]).is_err());
        assert!(PeerFrame::decode(&[2, 0, 0]).is_err());
        assert!(PeerFrame::decode(&[9]).is_err());
    }
}
