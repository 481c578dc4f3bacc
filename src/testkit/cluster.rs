//! A local seqd cluster of real processes, for the cluster tests (`tests/cluster.rs`) and the
//! cluster benchmark (`seqd-bench e2e --cluster N`).
//!
//! `LocalCluster::create` makes the certificates (`seqd dev-certs DIR --nodes N`: the CA, the
//! server and client certificates of the gateway, `node-<id>.pem/.key` of the node transport)
//! and one configuration and data directory per node, on loopback ports picked free once and
//! kept for the cluster's life (a restarted node comes back on the same addresses, as the
//! others expect). Each node is a `seqd run --config` child: killed (SIGKILL), stopped
//! (SIGTERM), paused (SIGSTOP, a partition as the others see it) and started again at will.
//! Its stdout is drained by a thread (the daemon must never write to a closed pipe) and its
//! stderr is appended to `<root>/n<id>.log`, one file over all its lives.
//!
//! State comes from two places: `GET /cluster` on each node's metrics listener (role, leader,
//! indexes, `applied_seq`), polled with short timeouts, and, once the nodes are stopped, each
//! data directory replayed offline (`storage::replay`), whose state hashes must agree. The
//! tests' checks of the journals themselves are in `tests/common/cluster.rs`.

use crate::client::Client;
use crate::engine::Seq;
use crate::storage::replay::{replay, DataDir, ReplayOptions};
use serde::Deserialize;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Short timeouts so that a test's elections take a fraction of a second.
pub const TEST_ELECTION_TIMEOUT_MS: u64 = 300;
pub const TEST_HEARTBEAT_MS: u64 = 50;
/// How long a node may take from spawn to its "listening on" line (recovery of its journal
/// included; debug builds on a loaded machine are slow).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// One `GET /cluster`: a paused node accepts the TCP connection (the kernel does) and never
/// answers, so the read is bounded.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
/// Between two rounds of status polls.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// A QUIC handshake with a node that is gone (killed, paused) never completes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Principals of every node: the admin, and two traders who may act on accounts 1 to 9.
const PRINCIPALS_TOML: &str = "[[principals]]\nname = \"admin\"\nadmin = true\n\n\
     [[principals]]\nname = \"trader1\"\naccounts = [1, 2, 3, 4, 5, 6, 7, 8, 9]\n\n\
     [[principals]]\nname = \"trader2\"\naccounts = [1, 2, 3, 4, 5, 6, 7, 8, 9]\n";

/// What the cluster's nodes are configured with.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// 1, 3 or 5.
    pub nodes: u64,
    pub election_timeout_ms: u64,
    pub heartbeat_ms: u64,
    pub log_entries_kept: u64,
    pub state_hash_every_commands: u64,
    /// `page-cache` or `fsync`.
    pub durability: String,
    /// `RUST_LOG` of the nodes (their stderr goes to the node's log file).
    pub rust_log: String,
    /// Appended to every node's configuration (e.g. a `[snapshots]` section).
    pub extra_toml: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            nodes: 3,
            election_timeout_ms: TEST_ELECTION_TIMEOUT_MS,
            heartbeat_ms: TEST_HEARTBEAT_MS,
            log_entries_kept: 100_000,
            state_hash_every_commands: 1_000,
            durability: "page-cache".into(),
            rust_log: "info".into(),
            extra_toml: String::new(),
        }
    }
}

/// One node's addresses, fixed for the cluster's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddrs {
    pub id: u64,
    pub node: SocketAddr,
    pub client: SocketAddr,
    pub metrics: SocketAddr,
}

/// `GET /cluster` of one node (docs: CLUSTER-SPEC, "Status").
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: u64,
    /// "leader", "follower", "candidate" or "pre-candidate".
    pub role: String,
    pub term: u64,
    /// 0: unknown.
    pub leader_id: u64,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_index: u64,
    pub applied_seq: u64,
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: u64,
    pub match_index: u64,
    pub last_contact_ms: Option<u64>,
}

impl NodeStatus {
    pub fn is_leader(&self) -> bool {
        self.role == "leader"
    }
}

/// What a cluster's clients need: the nodes' addresses and the certificates. Cheap to clone
/// into a load thread while the test's thread owns the processes.
#[derive(Clone, Debug)]
pub struct ClusterView {
    pub nodes: Vec<NodeAddrs>,
    pub certs_dir: PathBuf,
}

impl ClusterView {
    pub fn addrs(&self, id: u64) -> &NodeAddrs {
        self.nodes.iter().find(|n| n.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    /// `GET /cluster` of node `id`.
    pub fn status(&self, id: u64) -> Result<NodeStatus, String> {
        fetch_status(self.addrs(id).metrics)
    }

    /// One round of status polls of `ids`: the node they all name as leader, if that node
    /// says it is the leader and no other node does.
    pub fn agreed_leader(&self, ids: &[u64]) -> Result<u64, String> {
        let statuses: Vec<NodeStatus> = ids.iter().map(|&id| self.status(id)).collect::<Result<_, _>>()?;
        agreed_leader(&statuses).ok_or_else(|| format!("no agreed leader: {}", describe(&statuses)))
    }

    /// Polls `ids` until they agree on one leader.
    pub fn wait_leader_among(&self, ids: &[u64], timeout: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.agreed_leader(ids) {
                Ok(leader) => return Ok(leader),
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("nodes {ids:?} agreed on no leader within {timeout:?}: {e}"))
                }
                Err(_) => thread::sleep(POLL_INTERVAL),
            }
        }
    }

    /// The first node that says it is the leader, by one round of polls; `None` during an
    /// election (or when every node is down).
    pub fn claimed_leader(&self) -> Option<u64> {
        self.nodes.iter().find_map(|n| fetch_status(n.metrics).ok().filter(NodeStatus::is_leader).map(|s| s.node_id))
    }

    /// Reads `principal`'s certificate and key.
    pub fn credentials(&self, principal: &str) -> Result<Credentials, String> {
        Credentials::load(&self.certs_dir, principal)
    }

    /// Connects `principal` to the node that claims to lead, retrying (elections, restarts)
    /// until `timeout`. Returns the leader's id and the client.
    pub async fn connect_leader(&self, principal: &str, timeout: Duration) -> Result<(u64, Client), String> {
        let credentials = self.credentials(principal)?;
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("no node claimed to lead");
        loop {
            if let Some(leader) = self.claimed_leader() {
                match credentials.connect(self.addrs(leader).client).await {
                    Ok(client) => return Ok((leader, client)),
                    Err(e) => last_error = format!("node {leader}: {e}"),
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("no connection to a leader within {timeout:?}: {last_error}"));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

fn describe(statuses: &[NodeStatus]) -> String {
    statuses
        .iter()
        .map(|s| {
            format!(
                "node {} {} term {} leader {} commit {} applied {} (seq {})",
                s.node_id, s.role, s.term, s.leader_id, s.commit_index, s.applied_index, s.applied_seq
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The leader every status names, when exactly that node claims the role.
pub fn agreed_leader(statuses: &[NodeStatus]) -> Option<u64> {
    let leader = statuses.first()?.leader_id;
    let claimants: Vec<u64> = statuses.iter().filter(|s| s.is_leader()).map(|s| s.node_id).collect();
    (leader != 0 && statuses.iter().all(|s| s.leader_id == leader) && claimants == [leader]).then_some(leader)
}

/// `GET /cluster` on a metrics listener: plain HTTP/1.1, the server closes after answering.
pub fn fetch_status(metrics: SocketAddr) -> Result<NodeStatus, String> {
    let body = http_get(metrics, "/cluster")?;
    serde_json::from_str(&body).map_err(|e| format!("GET http://{metrics}/cluster: {e}: {body:?}"))
}

fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let failed = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut socket = TcpStream::connect_timeout(&addr, STATUS_TIMEOUT).map_err(failed)?;
    socket.set_read_timeout(Some(STATUS_TIMEOUT)).map_err(failed)?;
    socket.set_write_timeout(Some(STATUS_TIMEOUT)).map_err(failed)?;
    socket
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: seqd\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(failed)?;
    let mut response = String::new();
    // Status answers are small; 1 MiB bounds a confused server.
    socket.take(1 << 20).read_to_string(&mut response).map_err(failed)?;
    let status = response.split(' ').nth(1).unwrap_or("");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    if status != "200" {
        return Err(format!("GET http://{addr}{path}: status {status:?}: {body:?}"));
    }
    Ok(body.to_string())
}

/// A principal's PEM files, read once.
#[derive(Clone)]
pub struct Credentials {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl Credentials {
    pub fn load(certs_dir: &Path, principal: &str) -> Result<Credentials, String> {
        let read = |name: String| {
            let path = certs_dir.join(name);
            std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
        };
        Ok(Credentials {
            ca: read("ca.pem".into())?,
            cert: read(format!("{principal}.pem"))?,
            key: read(format!("{principal}.key"))?,
        })
    }

    /// Connects within `CONNECT_TIMEOUT` (a gone node never completes the handshake).
    pub async fn connect(&self, addr: SocketAddr) -> Result<Client, String> {
        match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(addr, &self.ca, &self.cert, &self.key)).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(format!("connect {addr}: {e}")),
            Err(_) => Err(format!("connect {addr}: no handshake within {CONNECT_TIMEOUT:?}")),
        }
    }
}

/// A running node.
struct NodeProcess {
    child: Child,
    paused: bool,
    /// Lines of its stdout after the first ("listening on").
    _stdout: mpsc::Receiver<String>,
}

struct Node {
    addrs: NodeAddrs,
    data_dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
    process: Option<NodeProcess>,
}

/// A cluster of `seqd run` processes under `root`.
pub struct LocalCluster {
    exe: PathBuf,
    root: PathBuf,
    options: ClusterOptions,
    view: ClusterView,
    nodes: Vec<Node>,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut process) = node.process.take() {
                let _ = process.child.kill();
                let _ = process.child.wait();
            }
        }
    }
}

/// Free loopback ports: all sockets are bound before any is released, so no two are equal.
/// (Another program could take one before the node binds it; on a test machine it does not.)
fn free_ports(udp: usize, tcp: usize) -> Result<(Vec<SocketAddr>, Vec<SocketAddr>), String> {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal address");
    let udp_sockets: Vec<UdpSocket> =
        (0..udp).map(|_| UdpSocket::bind(any)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let tcp_sockets: Vec<TcpListener> =
        (0..tcp).map(|_| TcpListener::bind(any)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let udp_addrs =
        udp_sockets.iter().map(UdpSocket::local_addr).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let tcp_addrs =
        tcp_sockets.iter().map(TcpListener::local_addr).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    Ok((udp_addrs, tcp_addrs))
}

impl LocalCluster {
    /// Certificates, configurations and data directories under `root` (created; it should be
    /// empty); no process runs yet. `exe` is the `seqd` binary.
    pub fn create(exe: &Path, root: &Path, options: ClusterOptions) -> Result<LocalCluster, String> {
        std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
        let certs_dir = root.join("certs");
        let output = Process::new(exe)
            .arg("dev-certs")
            .arg(&certs_dir)
            .args(["--nodes", &options.nodes.to_string()])
            .output()
            .map_err(|e| format!("{} dev-certs: {e}", exe.display()))?;
        if !output.status.success() {
            return Err(format!(
                "`seqd dev-certs {} --nodes {}` failed ({}): {}",
                certs_dir.display(),
                options.nodes,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let count = options.nodes as usize;
        let (udp, tcp) = free_ports(2 * count, count)?;
        let addrs: Vec<NodeAddrs> = (0..count)
            .map(|i| NodeAddrs { id: i as u64 + 1, node: udp[2 * i], client: udp[2 * i + 1], metrics: tcp[i] })
            .collect();
        let view = ClusterView { nodes: addrs.clone(), certs_dir: certs_dir.clone() };
        let mut nodes = Vec::with_capacity(count);
        for node in addrs {
            let data_dir = root.join(format!("n{}", node.id));
            let config = root.join(format!("n{}.toml", node.id));
            std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
            let text = node_config(&options, &view, &data_dir, node.id);
            std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
            let log = root.join(format!("n{}.log", node.id));
            nodes.push(Node { addrs: node, data_dir, config, log, process: None });
        }
        Ok(LocalCluster { exe: exe.to_path_buf(), root: root.to_path_buf(), options, view, nodes })
    }

    /// `create`, start every node and wait for a leader all agree on.
    pub fn start(exe: &Path, root: &Path, options: ClusterOptions) -> Result<LocalCluster, String> {
        let mut cluster = LocalCluster::create(exe, root, options)?;
        cluster.start_all()?;
        cluster.wait_leader(Duration::from_secs(30))?;
        Ok(cluster)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.addrs.id).collect()
    }

    /// Nodes with a process that is not paused.
    pub fn live_ids(&self) -> Vec<u64> {
        self.nodes.iter().filter(|n| n.process.as_ref().is_some_and(|p| !p.paused)).map(|n| n.addrs.id).collect()
    }

    pub fn is_running(&self, id: u64) -> bool {
        self.node(id).process.is_some()
    }

    fn node(&self, id: u64) -> &Node {
        self.nodes.iter().find(|n| n.addrs.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.iter_mut().find(|n| n.addrs.id == id).unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn addrs(&self, id: u64) -> &NodeAddrs {
        &self.node(id).addrs
    }

    pub fn data_dir(&self, id: u64) -> &Path {
        &self.node(id).data_dir
    }

    pub fn config_path(&self, id: u64) -> &Path {
        &self.node(id).config
    }

    pub fn log_path(&self, id: u64) -> &Path {
        &self.node(id).log
    }

    /// The end of node `id`'s log: for failure messages.
    pub fn log_tail(&self, id: u64, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn start_all(&mut self) -> Result<(), String> {
        // Spawned together so that no node waits long for the others (each waits for its own
        // listening line only, which does not need a leader).
        for id in self.ids() {
            if !self.is_running(id) {
                self.start_node(id)?;
            }
        }
        Ok(())
    }

    fn spawn(&self, id: u64) -> Result<(Child, u64), String> {
        let node = self.node(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| format!("{}: {e}", node.log.display()))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let child = Process::new(&self.exe)
            .arg("run")
            .arg("--config")
            .arg(&node.config)
            .env("RUST_LOG", &self.options.rust_log)
            // The node transport's test-only partition switch (`cluster::transport`, feature
            // `fault-injection`): while this file exists the node drops every node frame.
            .env("SEQD_FAULT_ISOLATE_FILE", self.isolation_switch(id))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.exe.display()))?;
        Ok((child, log_start))
    }

    /// Starts node `id` and waits for its "listening on" line.
    pub fn start_node(&mut self, id: u64) -> Result<(), String> {
        assert!(!self.is_running(id), "node {id} is running");
        let (mut child, log_start) = self.spawn(id)?;
        let stdout = child.stdout.take().expect("piped");
        let (lines_tx, lines_rx) = mpsc::channel();
        thread::spawn(move || drain_lines(stdout, lines_tx));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match lines_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.starts_with("seqd: listening on ") => break,
                Ok(_) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = child.wait().map_err(|e| e.to_string())?;
                    return Err(format!(
                        "node {id} exited before listening ({status}); its log:\n{}",
                        self.log_since(id, log_start)
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "node {id} did not listen within {START_TIMEOUT:?}; its log:\n{}",
                        self.log_since(id, log_start)
                    ));
                }
            }
        }
        self.node_mut(id).process = Some(NodeProcess { child, paused: false, _stdout: lines_rx });
        Ok(())
    }

    /// Starts node `id` expecting it to fail: waits up to `timeout` for it to exit and returns
    /// its exit status and what it wrote on stderr. An error if it is still running then (it
    /// is killed) or printed a listening line.
    pub fn start_node_expecting_failure(&mut self, id: u64, timeout: Duration) -> Result<(ExitStatus, String), String> {
        assert!(!self.is_running(id), "node {id} is running");
        let (mut child, log_start) = self.spawn(id)?;
        let stdout = child.stdout.take().expect("piped");
        let (lines_tx, lines_rx) = mpsc::channel();
        thread::spawn(move || drain_lines(stdout, lines_tx));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                let stdout: Vec<String> = lines_rx.try_iter().collect();
                if stdout.iter().any(|l| l.starts_with("seqd: listening on ")) {
                    return Err(format!("node {id} served before exiting ({status}): {stdout:?}"));
                }
                return Ok((status, self.log_since(id, log_start)));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "node {id} still ran after {timeout:?}; its log:\n{}",
                    self.log_since(id, log_start)
                ));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn log_since(&self, id: u64, start: u64) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path(id)) {
            let _ = file.seek(SeekFrom::Start(start));
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn signal(&self, id: u64, signal: libc::c_int) {
        let process = self.node(id).process.as_ref().unwrap_or_else(|| panic!("node {id} is not running"));
        // SAFETY: kill(2) on our own child's pid (not yet waited for, so not reused); no
        // memory is involved.
        unsafe { libc::kill(process.child.id() as libc::pid_t, signal) };
    }

    /// Nodes whose process has exited on its own (none should): reaped, with their exit status
    /// and the end of their log, for a failure message.
    pub fn exited_on_their_own(&mut self) -> Vec<String> {
        let mut exited = Vec::new();
        for node in &mut self.nodes {
            if let Some(process) = node.process.as_mut() {
                if let Ok(Some(status)) = process.child.try_wait() {
                    node.process = None;
                    exited.push((node.addrs.id, status));
                }
            }
        }
        exited
            .into_iter()
            .map(|(id, status)| format!("node {id} exited ({status}):\n{}", self.log_tail(id, 20)))
            .collect()
    }

    /// SIGKILL node `id` and reap it. Panics if it had exited on its own before.
    pub fn kill(&mut self, id: u64) {
        let mut process = self.node_mut(id).process.take().unwrap_or_else(|| panic!("node {id} is not running"));
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("node {id} had exited on its own ({status}); its log:\n{}", self.log_tail(id, 40));
        }
        let _ = process.child.kill();
        let _ = process.child.wait();
    }

    /// SIGTERM node `id` and wait: the graceful stop. Returns its exit status.
    pub fn terminate(&mut self, id: u64) -> ExitStatus {
        if self.node(id).process.as_ref().is_some_and(|p| p.paused) {
            self.resume(id);
        }
        self.signal(id, libc::SIGTERM);
        let mut process = self.node_mut(id).process.take().expect("running");
        process.child.wait().expect("wait for seqd")
    }

    /// SIGTERM every running node (together, so none waits on the others' departure) and
    /// wait; an error naming the nodes that did not exit with success.
    pub fn stop_all(&mut self) -> Result<(), String> {
        let running: Vec<u64> = self.ids().into_iter().filter(|&id| self.is_running(id)).collect();
        for &id in &running {
            if self.node(id).process.as_ref().is_some_and(|p| p.paused) {
                self.resume(id);
            }
            self.signal(id, libc::SIGTERM);
        }
        let mut failed = Vec::new();
        for id in running {
            let mut process = self.node_mut(id).process.take().expect("running");
            let status = process.child.wait().map_err(|e| e.to_string())?;
            if !status.success() {
                failed.push(format!("node {id}: {status}; its log:\n{}", self.log_tail(id, 30)));
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("\n"))
        }
    }

    /// SIGKILL node `id`, then start it again on the same directory and addresses.
    pub fn restart(&mut self, id: u64) -> Result<(), String> {
        self.kill(id);
        self.start_node(id)
    }

    /// The file whose existence cuts node `id` off from its peers (it keeps serving clients).
    pub fn isolation_switch(&self, id: u64) -> PathBuf {
        self.root.join(format!("isolate-n{id}"))
    }

    /// Cuts node `id` off from the other nodes (`true`) or reconnects it (`false`), with the
    /// node transport's fault switch: the process runs on and its clients stay connected.
    pub fn isolate(&self, id: u64, isolated: bool) {
        let switch = self.isolation_switch(id);
        if isolated {
            std::fs::write(&switch, b"").unwrap_or_else(|e| panic!("{}: {e}", switch.display()));
        } else {
            let _ = std::fs::remove_file(&switch);
        }
    }

    /// SIGSTOP: the node neither sends nor answers, as if cut off by the network.
    pub fn pause(&mut self, id: u64) {
        self.signal(id, libc::SIGSTOP);
        self.node_mut(id).process.as_mut().expect("running").paused = true;
    }

    pub fn resume(&mut self, id: u64) {
        self.signal(id, libc::SIGCONT);
        self.node_mut(id).process.as_mut().expect("running").paused = false;
    }

    pub fn status(&self, id: u64) -> Result<NodeStatus, String> {
        self.view.status(id)
    }

    /// Polls the live nodes until they agree on one leader; returns its id.
    pub fn wait_leader(&self, timeout: Duration) -> Result<u64, String> {
        self.view.wait_leader_among(&self.live_ids(), timeout)
    }

    /// Polls the live nodes until they agree on a leader and all have applied the same
    /// sequence and index as it has committed; returns that sequence. With no new commands,
    /// this is the point where their states must be equal.
    pub fn wait_converged(&self, timeout: Duration) -> Result<Seq, String> {
        let deadline = Instant::now() + timeout;
        let ids = self.live_ids();
        loop {
            let statuses: Result<Vec<NodeStatus>, String> = ids.iter().map(|&id| self.status(id)).collect();
            let last = match statuses {
                Ok(statuses) => {
                    let converged = agreed_leader(&statuses).is_some()
                        && statuses.windows(2).all(|w| {
                            (w[0].applied_seq, w[0].applied_index, w[0].commit_index)
                                == (w[1].applied_seq, w[1].applied_index, w[1].commit_index)
                        })
                        && statuses.iter().all(|s| s.applied_index == s.commit_index);
                    if converged {
                        return Ok(statuses[0].applied_seq);
                    }
                    describe(&statuses)
                }
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(format!("nodes {ids:?} did not converge within {timeout:?}: {last}"));
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// Each node's data directory replayed offline to `last_seq` (newest usable snapshot and
    /// the journal after it): (id, last sequence, state hash). The nodes must be stopped, and
    /// none may hold a record past `last_seq`.
    ///
    /// The replay is told where to stop rather than finding the journal's end: a follower
    /// seeded by a snapshot at the last sequence has an empty journal after it, which
    /// `storage::journal::verify` reports as ending at 0 (and `seqd replay` then starts from
    /// an empty state and fails on the missing sequence 1).
    pub fn state_hashes(&self, last_seq: Seq) -> Result<Vec<(u64, Seq, [u8; 32])>, String> {
        self.nodes
            .iter()
            .map(|node| {
                let id = node.addrs.id;
                assert!(node.process.is_none(), "node {id} is running");
                let data_dir = DataDir::new(&node.data_dir);
                let journal_end =
                    crate::storage::journal::verify(&data_dir.input()).map_err(|e| format!("node {id}: {e}"))?.last_seq;
                if journal_end > last_seq {
                    return Err(format!("node {id}'s journal goes on to {journal_end}, past {last_seq}"));
                }
                let options = ReplayOptions { use_snapshot: true, to_seq: Some(last_seq), ..ReplayOptions::default() };
                let (_, outcome) = replay(&data_dir, options).map_err(|e| format!("replay of node {id}: {e}"))?;
                Ok((id, outcome.last_seq, outcome.state_hash))
            })
            .collect()
    }

    /// `state_hashes`, which must all be equal: the common state hash.
    pub fn equal_state_hashes(&self, last_seq: Seq) -> Result<[u8; 32], String> {
        let hashes = self.state_hashes(last_seq)?;
        let first = hashes[0].2;
        if hashes.iter().all(|h| h.2 == first) {
            Ok(first)
        } else {
            let listed: Vec<String> =
                hashes.iter().map(|(id, seq, hash)| format!("node {id}: seq {seq} hash {}", hex(hash))).collect();
            Err(format!("the nodes' states differ: {}", listed.join("; ")))
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One node's configuration: its own data directory, gateway and metrics addresses, the
/// shared certificates, and the whole membership.
fn node_config(options: &ClusterOptions, view: &ClusterView, data_dir: &Path, id: u64) -> String {
    let me = view.addrs(id);
    let certs = view.certs_dir.display();
    let mut text = format!(
        "# Written by testkit::cluster.\n\
         [data]\ndir = \"{}\"\n\n\
         [journal]\ndurability = \"{}\"\n\n\
         [gateway]\nlisten = \"{}\"\ncerts_dir = \"{certs}\"\n\n\
         [metrics]\nlisten = \"{}\"\n\n\
         {PRINCIPALS_TOML}\n\
         [cluster]\nnode_id = {id}\ncerts_dir = \"{certs}\"\n\
         election_timeout_ms = {}\nheartbeat_ms = {}\n\
         state_hash_every_commands = {}\nlog_entries_kept = {}\n",
        data_dir.display(),
        options.durability,
        me.client,
        me.metrics,
        options.election_timeout_ms,
        options.heartbeat_ms,
        options.state_hash_every_commands,
        options.log_entries_kept,
    );
    for node in &view.nodes {
        text.push_str(&format!(
            "\n[[cluster.nodes]]\nid = {}\nnode_address = \"{}\"\nclient_address = \"{}\"\nmetrics_address = \"{}\"\n",
            node.id, node.node, node.client, node.metrics
        ));
    }
    if !options.extra_toml.is_empty() {
        text.push('\n');
        text.push_str(&options.extra_toml);
        text.push('\n');
    }
    text
}

/// Reads a child's stdout to its end (keeping the pipe open while the child lives), passing
/// complete lines on while anyone listens.
fn drain_lines(stdout: impl Read, lines_tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let _ = lines_tx.send(line.trim_end_matches('\n').to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn status(node_id: u64, role: &str, leader_id: u64) -> NodeStatus {
        NodeStatus {
            node_id,
            role: role.into(),
            term: 2,
            leader_id,
            commit_index: 0,
            applied_index: 0,
            last_index: 0,
            applied_seq: 0,
            peers: Vec::new(),
        }
    }

    #[test]
    fn node_configs_parse_and_name_the_same_membership() {
        let (udp, tcp) = free_ports(6, 3).unwrap();
        let nodes: Vec<NodeAddrs> = (0..3)
            .map(|i| NodeAddrs { id: i as u64 + 1, node: udp[2 * i], client: udp[2 * i + 1], metrics: tcp[i] })
            .collect();
        let view = ClusterView { nodes, certs_dir: PathBuf::from("/tmp/certs") };
        let options = ClusterOptions { log_entries_kept: 1_000, ..ClusterOptions::default() };
        let configs: Vec<Config> =
            (1..=3).map(|id| Config::parse(&node_config(&options, &view, Path::new("/tmp/n"), id)).unwrap()).collect();
        for (i, config) in configs.iter().enumerate() {
            let cluster = config.cluster.as_ref().unwrap();
            assert_eq!(cluster.node_id, i as u64 + 1);
            assert_eq!(cluster.nodes, configs[0].cluster.as_ref().unwrap().nodes);
            assert_eq!(config.gateway.listen, view.nodes[i].client);
            assert_eq!(config.metrics.listen, view.nodes[i].metrics);
            assert_eq!(cluster.this_node().node_address, view.nodes[i].node);
            assert_eq!((cluster.election_timeout_ms, cluster.heartbeat_ms, cluster.log_entries_kept), (300, 50, 1_000));
        }
        let mut all: Vec<SocketAddr> = udp.iter().chain(&tcp).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 9);
    }

    #[test]
    fn a_leader_is_agreed_only_when_all_name_it_and_only_it_claims_the_role() {
        let agreed = [status(1, "follower", 2), status(2, "leader", 2), status(3, "follower", 2)];
        assert_eq!(agreed_leader(&agreed), Some(2));
        let unknown = [status(1, "candidate", 0), status(2, "follower", 0)];
        assert_eq!(agreed_leader(&unknown), None);
        let stale = [status(1, "leader", 1), status(2, "leader", 2), status(3, "follower", 2)];
        assert_eq!(agreed_leader(&stale), None);
        let split = [status(1, "follower", 2), status(2, "leader", 2), status(3, "follower", 1)];
        assert_eq!(agreed_leader(&split), None);
        assert_eq!(agreed_leader(&[]), None);
    }
}
