//! `seqd cluster status --config FILE [--json]`: asks every node of the config's `[cluster]` for
//! its `GET /cluster` (on its `metrics_address`) and prints one row per node: role, term, the
//! leader it knows, commit and applied index, applied sequence, and what only the leader knows of
//! the others (how far behind its log each is, when it last heard from each). A node that does
//! not answer is `unreachable`, with the error. Exits non-zero when no node is the leader.
//! [`NodeStatus`] is the part of the endpoint's JSON read here; `--json` passes all of it on.

use super::client::output::{int, text, Cell, Table};
use seqd::config::{ClusterNode, Config};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long one node may take to connect and answer, all of it.
const NODE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest answer read from a node (the status of a 5-node cluster is well under 2 KiB).
const RESPONSE_MAX_BYTES: usize = 64 * 1024;

/// One node's `/cluster` answer (the fields this command reads; others are kept in the JSON).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: u64,
    pub role: String,
    #[serde(default)]
    pub term: u64,
    /// 0: no leader known.
    #[serde(default)]
    pub leader_id: u64,
    #[serde(default)]
    pub commit_index: u64,
    #[serde(default)]
    pub applied_index: u64,
    #[serde(default)]
    pub last_index: u64,
    #[serde(default)]
    pub applied_seq: u64,
    /// Filled on the leader only.
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct PeerStatus {
    pub id: u64,
    #[serde(default)]
    pub match_index: u64,
    /// `null`: never heard from.
    #[serde(default)]
    pub last_contact_ms: Option<u64>,
}

/// What one configured node said, or why it said nothing.
#[derive(Clone, Debug)]
pub struct NodeReport {
    pub id: u64,
    pub client_address: String,
    pub metrics_address: Option<SocketAddr>,
    /// The parsed status and the JSON as it came, or the error.
    pub answer: Result<(NodeStatus, Value), String>,
}

impl NodeReport {
    fn status(&self) -> Option<&NodeStatus> {
        self.answer.as_ref().ok().map(|(status, _)| status)
    }
}

pub fn status(config_path: &Path, json: bool) -> ExitCode {
    let cluster = match Config::load(Some(config_path)) {
        Ok(Config { cluster: Some(cluster), .. }) => cluster,
        Ok(_) => {
            eprintln!("error: {} has no [cluster] section", config_path.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let reports = fetch_all(&cluster.nodes, NODE_TIMEOUT);
    let leader = leader(&reports);
    if json {
        println!("{}", json_document(&reports));
    } else {
        println!("{}", table(&reports).render());
        for report in &reports {
            if let Err(e) = &report.answer {
                println!("node {}: unreachable: {e}", report.id);
            }
        }
    }
    match leader {
        Some(_) => ExitCode::SUCCESS,
        None => {
            eprintln!("error: no node answered as the leader");
            ExitCode::FAILURE
        }
    }
}

/// Every node's answer, asked in parallel (each within `timeout`), in the config's order.
pub fn fetch_all(nodes: &[ClusterNode], timeout: Duration) -> Vec<NodeReport> {
    std::thread::scope(|scope| {
        let asks: Vec<_> = nodes
            .iter()
            .map(|node| {
                scope.spawn(move || {
                    let answer = match node.metrics_address {
                        Some(addr) => fetch(addr, timeout).and_then(|body| parse(node.id, &body)),
                        None => Err("no metrics_address in the config".to_owned()),
                    };
                    NodeReport {
                        id: node.id,
                        client_address: node.client_address.clone(),
                        metrics_address: node.metrics_address,
                        answer,
                    }
                })
            })
            .collect();
        asks.into_iter().map(|ask| ask.join().expect("a status fetch does not panic")).collect()
    })
}

/// The body of `GET /cluster` from `addr`, over plain HTTP/1.0, within `timeout` in all.
pub fn fetch(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    let failed = |what: &str, e: std::io::Error| format!("{what} http://{addr}/cluster: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| failed("connect", e))?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| failed("write", e))?;
    stream
        .write_all(format!("GET /cluster HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| failed("write", e))?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("http://{addr}/cluster: no whole answer within {} s", timeout.as_secs_f64()));
        }
        stream.set_read_timeout(Some(left)).map_err(|e| failed("read", e))?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if response.len() + n > RESPONSE_MAX_BYTES => {
                return Err(format!("http://{addr}/cluster: answer over {RESPONSE_MAX_BYTES} bytes"))
            }
            Ok(n) => response.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed("read", e)),
        }
    }
    http_body(&response).map_err(|e| format!("http://{addr}/cluster: {e}"))
}

/// The body of a whole HTTP/1.x response whose status is 200.
fn http_body(response: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(response).map_err(|_| "the answer is not UTF-8".to_owned())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("the answer has no header end")?;
    let status_line = head.lines().next().unwrap_or("");
    let mut words = status_line.split(' ');
    match (words.next(), words.next()) {
        (Some(version), Some("200")) if version.starts_with("HTTP/1.") => Ok(body.to_owned()),
        _ => Err(format!("answered {status_line:?}: {}", body.trim())),
    }
}

/// The status of node `id` from its JSON.
pub fn parse(id: u64, body: &str) -> Result<(NodeStatus, Value), String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not the /cluster JSON: {e}"))?;
    let status = NodeStatus::deserialize(&value).map_err(|e| format!("not the /cluster JSON: {e}"))?;
    if status.node_id != id {
        return Err(format!("answered as node {} (is metrics_address right?)", status.node_id));
    }
    Ok((status, value))
}

/// The leader: a node that says it is one; of several (a deposed one that has not heard yet),
/// the one of the highest term.
pub fn leader(reports: &[NodeReport]) -> Option<&NodeStatus> {
    reports.iter().filter_map(NodeReport::status).filter(|s| s.role == "leader").max_by_key(|s| s.term)
}

/// How many log entries node `id` is behind the leader's last one: for the leader itself the
/// entries not applied yet, for another node the entries past its match index (what the leader
/// knows it has). `None` when the leader does not list the node.
pub fn lag(leader: &NodeStatus, id: u64) -> Option<u64> {
    if id == leader.node_id {
        return Some(leader.last_index.saturating_sub(leader.applied_index));
    }
    leader.peers.iter().find(|p| p.id == id).map(|p| leader.last_index.saturating_sub(p.match_index))
}

/// When the leader last heard from node `id`, milliseconds ago (`None`: never, or unknown).
fn last_contact_ms(leader: &NodeStatus, id: u64) -> Option<u64> {
    leader.peers.iter().find(|p| p.id == id).and_then(|p| p.last_contact_ms)
}

pub fn table(reports: &[NodeReport]) -> Table {
    let leader = leader(reports);
    let mut table = Table::new(&[
        "node",
        "address",
        "role",
        "term",
        "leader",
        "commit",
        "applied",
        "applied_seq",
        "lag",
        "last_contact",
    ]);
    let dash = || text("-");
    for report in reports {
        let mut row = vec![int(report.id), text(report.client_address.clone())];
        match report.status() {
            None => row.extend([text("unreachable"), dash(), dash(), dash(), dash(), dash()]),
            Some(s) => {
                let known_leader = if s.leader_id == 0 { text("?") } else { int(s.leader_id) };
                row.extend([
                    text(s.role.clone()),
                    int(s.term),
                    known_leader,
                    int(s.commit_index),
                    int(s.applied_index),
                    int(s.applied_seq),
                ]);
            }
        }
        // The leader's view, also of a node this command could not reach (the leader may).
        let contact: Cell = match leader {
            Some(l) if l.node_id == report.id => text("self"),
            Some(l) => last_contact_ms(l, report.id).map_or_else(|| text("never"), |ms| text(format!("{ms} ms"))),
            None => dash(),
        };
        row.extend([leader.and_then(|l| lag(l, report.id)).map_or_else(dash, int), contact]);
        table.push(row);
    }
    table
}

/// `--json`: `{"leader_id": N or null, "nodes": [...]}`, each node its configured id and
/// addresses, `status` (the `/cluster` object as received, or null with `error`), and `lag`
/// and `last_contact_ms` from the leader's view (null when unknown).
pub fn json_document(reports: &[NodeReport]) -> Value {
    let leader = leader(reports);
    let nodes: Vec<Value> = reports
        .iter()
        .map(|report| {
            let mut node = json!({
                "id": report.id,
                "client_address": report.client_address,
                "metrics_address": report.metrics_address.map(|a| a.to_string()),
            });
            match &report.answer {
                Ok((_, value)) => node["status"] = value.clone(),
                Err(e) => {
                    node["status"] = Value::Null;
                    node["error"] = json!(e);
                }
            }
            node["lag"] = json!(leader.and_then(|l| lag(l, report.id)));
            node["last_contact_ms"] = json!(leader.and_then(|l| last_contact_ms(l, report.id)));
            node
        })
        .collect();
    json!({ "leader_id": leader.map(|l| l.node_id), "nodes": nodes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEADER: &str = r#"{"node_id":1,"role":"leader","term":3,"leader_id":1,"commit_index":120,"applied_index":118,
        "last_index":121,"applied_seq":5000,"peers":[{"id":2,"match_index":120,"last_contact_ms":12},
        {"id":3,"match_index":0,"last_contact_ms":null}]}"#;
    const FOLLOWER: &str = r#"{"node_id":2,"role":"follower","term":3,"leader_id":1,"commit_index":120,
        "applied_index":120,"last_index":120,"applied_seq":4990,"peers":[]}"#;

    fn report(id: u64, answer: Result<&str, &str>) -> NodeReport {
        NodeReport {
            id,
            client_address: format!("127.0.0.1:710{id}"),
            metrics_address: Some(format!("127.0.0.1:910{id}").parse().unwrap()),
            answer: answer.map_err(str::to_owned).and_then(|body| parse(id, body)),
        }
    }

    fn three() -> Vec<NodeReport> {
        vec![report(1, Ok(LEADER)), report(2, Ok(FOLLOWER)), report(3, Err("connect: Connection refused"))]
    }

    #[test]
    fn lag_is_the_leaders_last_index_past_each_nodes_match_index() {
        let reports = three();
        let leader = leader(&reports).unwrap();
        assert_eq!(leader.node_id, 1);
        assert_eq!(lag(leader, 1), Some(3), "the leader: entries it has not applied");
        assert_eq!(lag(leader, 2), Some(1));
        assert_eq!(lag(leader, 3), Some(121), "a node the leader has nothing from");
        assert_eq!(lag(leader, 9), None, "not a peer");
    }

    #[test]
    fn the_table_shows_each_node_and_an_unreachable_one() {
        let rendered = table(&three()).render();
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(lines.len(), 4, "{rendered}");
        let words = |line: &str| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            words(lines[0]),
            [
                "NODE", "ADDRESS", "ROLE", "TERM", "LEADER", "COMMIT", "APPLIED", "APPLIED", "SEQ", "LAG", "LAST",
                "CONTACT"
            ]
        );
        assert_eq!(words(lines[1]), ["1", "127.0.0.1:7101", "leader", "3", "1", "120", "118", "5000", "3", "self"]);
        assert_eq!(
            words(lines[2]),
            ["2", "127.0.0.1:7102", "follower", "3", "1", "120", "120", "4990", "1", "12", "ms"]
        );
        // Unreachable from here, but the leader's view of it is shown.
        assert_eq!(words(lines[3]), ["3", "127.0.0.1:7103", "unreachable", "-", "-", "-", "-", "-", "121", "never"]);
    }

    #[test]
    fn without_a_leader_there_is_no_lag_and_the_json_says_so() {
        let candidate = r#"{"node_id":1,"role":"candidate","term":4,"leader_id":0,"commit_index":5,
            "applied_index":5,"last_index":5,"applied_seq":50,"peers":[]}"#;
        let reports = vec![report(1, Ok(candidate)), report(2, Err("timed out"))];
        assert!(leader(&reports).is_none());
        let rendered = table(&reports).render();
        let row: Vec<&str> = rendered.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row, ["1", "127.0.0.1:7101", "candidate", "4", "?", "5", "5", "50", "-", "-"]);
        let document = json_document(&reports);
        assert_eq!(document["leader_id"], Value::Null);
        assert_eq!(document["nodes"][0]["status"]["role"], "candidate");
        assert_eq!(document["nodes"][0]["lag"], Value::Null);
        assert_eq!(document["nodes"][1]["error"], "timed out");
    }

    #[test]
    fn the_json_carries_each_status_as_received_with_the_leaders_view() {
        let document = json_document(&three());
        assert_eq!(document["leader_id"], 1);
        let nodes = document["nodes"].as_array().unwrap();
        assert_eq!(nodes[0]["status"]["last_index"], 121);
        assert_eq!(nodes[0]["lag"], 3);
        assert_eq!(nodes[1]["lag"], 1);
        assert_eq!(nodes[1]["last_contact_ms"], 12);
        assert_eq!(nodes[1]["metrics_address"], "127.0.0.1:9102");
        assert_eq!(nodes[2]["status"], Value::Null);
        assert_eq!(nodes[2]["error"], "connect: Connection refused");
        assert_eq!((&nodes[2]["lag"], &nodes[2]["last_contact_ms"]), (&json!(121), &Value::Null));
    }

    #[test]
    fn of_two_leaders_the_higher_term_wins() {
        let stale = r#"{"node_id":2,"role":"leader","term":2,"leader_id":2,"peers":[]}"#;
        let reports = vec![report(1, Ok(LEADER)), report(2, Ok(stale))];
        assert_eq!(leader(&reports).unwrap().node_id, 1);
    }

    #[test]
    fn a_wrong_answer_is_an_error_not_a_row_of_zeros() {
        assert!(parse(2, LEADER).unwrap_err().contains("answered as node 1"));
        assert!(parse(1, "not found: /metrics").unwrap_err().contains("not the /cluster JSON"));
        assert!(parse(1, r#"{"role":"leader"}"#).is_err(), "node_id is required");
        assert_eq!(http_body(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap(), "{}");
        let not_found = http_body(b"HTTP/1.1 404 Not Found\r\n\r\nnot found: /metrics\n").unwrap_err();
        assert!(not_found.contains("404") && not_found.contains("not found: /metrics"), "{not_found}");
        assert!(http_body(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn fetch_reads_a_node_over_http_and_reports_a_dead_one() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let n = socket.read(&mut request).unwrap();
            let head = String::from_utf8_lossy(&request[..n]).into_owned();
            let response =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{FOLLOWER}", FOLLOWER.len());
            socket.write_all(response.as_bytes()).unwrap();
            head
        });
        let body = fetch(addr, NODE_TIMEOUT).unwrap();
        assert!(server.join().unwrap().starts_with("GET /cluster HTTP/1.0\r\n"));
        assert_eq!(parse(2, &body).unwrap().0.applied_seq, 4990);

        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        assert!(fetch(dead_addr, NODE_TIMEOUT).unwrap_err().starts_with("connect http://"));
    }
}
