//! The daemon's configuration: one TOML file (`systemd/seqd.example.toml` documents every key
//! and is the embedded default). Unknown keys are errors, so a typo never silently falls back
//! to a default.

use crate::engine::AccountId;
use crate::pipeline::sequencer::SequencerConfig;
use crate::pipeline::{PipelineConfig, WaitStrategy, MIN_RING_SIZE};
use crate::storage::journal::Durability;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Smallest `pipeline.stall_limit_ms`: a few supervisor rounds, so a stall is never a single reading.
pub const MIN_STALL_LIMIT_MS: u64 = 500;

/// The embedded default configuration (`seqd run` with no `--config`).
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../systemd/seqd.example.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Parse(#[from] toml::de::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    pub data: DataSection,
    pub journal: JournalSection,
    pub snapshots: SnapshotsSection,
    pub pipeline: PipelineSection,
    pub gateway: GatewaySection,
    pub metrics: MetricsSection,
    pub replicate: ReplicateSection,
    pub retention: RetentionSection,
    pub principals: Vec<PrincipalSection>,
    /// `[cluster]`: this daemon is one node of a Raft cluster (docs/CLUSTER.md); absent, it
    /// runs alone.
    pub cluster: Option<ClusterSection>,
}

/// `[cluster]`: this node's id and the static membership (`[[cluster.nodes]]`, every node
/// including this one, in the same order on every node).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// This node's id: one of `nodes[].id` (1..=255).
    pub node_id: u64,
    /// The node transport's certificates: `ca.pem` (the cluster's CA), `node-<id>.pem` and
    /// `node-<id>.key` (`seqd dev-certs --nodes N` writes a set). A peer is admitted only with
    /// a certificate of that CA whose common name is `node-<id>` of a configured node.
    pub certs_dir: PathBuf,
    /// A follower that hears nothing from a leader for a random time in
    /// [election_timeout_ms, 2 x election_timeout_ms) starts an election.
    #[serde(default = "default_election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// The leader's heartbeat period; at most a third of the election timeout.
    #[serde(default = "default_heartbeat_ms")]
    pub heartbeat_ms: u64,
    /// Every node hashes its state at each multiple of this sequence; followers compare with
    /// the leader's hash and stop on a mismatch. 0: never.
    #[serde(default = "default_state_hash_every_commands")]
    pub state_hash_every_commands: u64,
    /// Raft log entries kept behind the applied index before compaction (a follower further
    /// behind catches up by snapshot).
    #[serde(default = "default_log_entries_kept")]
    pub log_entries_kept: u64,
    pub nodes: Vec<ClusterNode>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClusterNode {
    pub id: u64,
    /// The node transport (QUIC, node certificates).
    pub node_address: SocketAddr,
    /// The node's client gateway, as clients reach it: what a follower names in `NotLeader`.
    pub client_address: String,
    /// The node's metrics endpoint (`/cluster` for `seqd cluster status`), if it has one.
    #[serde(default)]
    pub metrics_address: Option<SocketAddr>,
}

fn default_election_timeout_ms() -> u64 {
    1000
}
fn default_heartbeat_ms() -> u64 {
    100
}
fn default_state_hash_every_commands() -> u64 {
    100_000
}
fn default_log_entries_kept() -> u64 {
    100_000
}

impl ClusterSection {
    /// This node's entry in `nodes`.
    pub fn this_node(&self) -> &ClusterNode {
        self.nodes.iter().find(|n| n.id == self.node_id).expect("validated: node_id is listed")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(format!("cluster: {m}")));
        if ![1, 3, 5].contains(&self.nodes.len()) {
            return invalid(format!("a cluster has 1, 3 or 5 nodes, not {}", self.nodes.len()));
        }
        let mut ids: Vec<u64> = self.nodes.iter().map(|n| n.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.nodes.len() || ids.iter().any(|&id| id == 0 || id > 255) {
            return invalid("node ids must be distinct, in 1..=255".into());
        }
        if !ids.contains(&self.node_id) {
            return invalid(format!("node_id {} is not among the nodes", self.node_id));
        }
        if self.heartbeat_ms == 0 || self.election_timeout_ms < 3 * self.heartbeat_ms {
            return invalid("election_timeout_ms must be at least 3 x heartbeat_ms (> 0)".into());
        }
        if self.log_entries_kept == 0 {
            return invalid("log_entries_kept must be positive".into());
        }
        Ok(())
    }
}

/// Journal retention and the free-disk warning (`[retention]`; storage/retention.rs).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSection {
    /// "off", "move" (to `archive_dir`) or "delete": what the daemon does, every
    /// `archive_interval_s`, with segments nothing needs any more.
    pub mode: String,
    pub archive_dir: PathBuf,
    pub archive_interval_s: u64,
    /// Keep both journals from this sequence on (a follower's, an external consumer's); 0: none.
    pub keep_from_seq: u64,
    /// A warning every `disk_check_interval_s` while the data directory's file system has less
    /// free space than this.
    pub warn_free_bytes: u64,
    pub disk_check_interval_s: u64,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            mode: "off".into(),
            archive_dir: PathBuf::new(),
            archive_interval_s: 3600,
            keep_from_seq: 0,
            warn_free_bytes: 10 << 30,
            disk_check_interval_s: 60,
        }
    }
}

/// The replicators into the mirrors (`[replicate.tidb]`, `[replicate.clickhouse]`). Each runs in
/// the daemon when enabled, or in a separate `seqd replicate` process reading the event log.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplicateSection {
    pub tidb: TidbSection,
    pub clickhouse: ClickHouseSection,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TidbSection {
    pub enabled: bool,
    /// `mysql://user:password@host:port/database`; the database is created if missing.
    pub url: String,
    /// Largest transaction: records and fact rows (ledger, order events, trades...) per batch.
    pub max_records: usize,
    pub max_fact_rows: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseSection {
    pub enabled: bool,
    /// HTTP interface.
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub max_records: usize,
    pub max_fact_rows: usize,
}

impl Default for TidbSection {
    fn default() -> Self {
        TidbSection {
            enabled: false,
            url: "mysql://root@127.0.0.1:3306/seqd".into(),
            max_records: 50_000,
            max_fact_rows: 20_000,
        }
    }
}

impl Default for ClickHouseSection {
    fn default() -> Self {
        ClickHouseSection {
            enabled: false,
            url: "http://127.0.0.1:8123".into(),
            database: "seqd".into(),
            user: None,
            password: None,
            max_records: 200_000,
            max_fact_rows: 200_000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSection {
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalSection {
    pub durability: String,
    pub segment_size_bytes: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotsSection {
    pub every_commands: u64,
    pub keep: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    pub ring_size: usize,
    pub processor_wait: String,
    pub other_wait: String,
    pub processor_core: Option<usize>,
    /// A pipeline thread with work queued and no progress for this long stops the daemon.
    pub stall_limit_ms: u64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    pub listen: SocketAddr,
    /// `ca.pem`, `server.pem`, `server.key`. A missing file is a start-up error naming it,
    /// unless `dev_certs`.
    pub certs_dir: PathBuf,
    /// Generate a development CA and certificates into `certs_dir` when it has no CA. Off
    /// unless the configuration says so (the embedded development default does; production
    /// configurations must not), so a mistyped `certs_dir` never makes the daemon serve with
    /// a CA and an admin key it just invented.
    pub dev_certs: bool,
    pub max_frame_bytes: u32,
    pub max_in_flight: u32,
    pub rate_per_sec: u32,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    pub listen: SocketAddr,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PrincipalSection {
    pub name: String,
    #[serde(default)]
    pub admin: bool,
    /// Roots of the account subtrees this principal may act on and see.
    #[serde(default)]
    pub accounts: Vec<AccountId>,
}

impl Default for DataSection {
    fn default() -> Self {
        DataSection { dir: PathBuf::from("./data") }
    }
}

impl Default for JournalSection {
    fn default() -> Self {
        JournalSection { durability: "page-cache".into(), segment_size_bytes: 64 << 20 }
    }
}

impl Default for SnapshotsSection {
    fn default() -> Self {
        SnapshotsSection { every_commands: 1_000_000, keep: 3 }
    }
}

impl Default for PipelineSection {
    fn default() -> Self {
        PipelineSection {
            ring_size: 1 << 14,
            processor_wait: "backoff".into(),
            other_wait: "backoff".into(),
            processor_core: None,
            stall_limit_ms: 5000,
        }
    }
}

impl Default for GatewaySection {
    fn default() -> Self {
        GatewaySection {
            listen: "127.0.0.1:7400".parse().expect("literal address"),
            certs_dir: PathBuf::from("./data/certs"),
            dev_certs: false,
            max_frame_bytes: 64 * 1024,
            max_in_flight: 1024,
            rate_per_sec: 100_000,
        }
    }
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection { listen: "127.0.0.1:9400".parse().expect("literal address") }
    }
}

impl RetentionSection {
    fn validate(&self) -> Result<(), ConfigError> {
        match self.mode.as_str() {
            "off" | "delete" => {}
            "move" if !self.archive_dir.as_os_str().is_empty() => {}
            "move" => return Err(ConfigError::Invalid("retention.mode = \"move\" needs retention.archive_dir".into())),
            other => {
                return Err(ConfigError::Invalid(format!(
                    "retention.mode must be \"off\", \"move\" or \"delete\", not {other:?}"
                )))
            }
        }
        if self.archive_interval_s == 0 || self.disk_check_interval_s == 0 {
            return Err(ConfigError::Invalid("retention intervals must be at least 1 s".into()));
        }
        Ok(())
    }
}

impl Config {
    /// Parses and validates a configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// The file at `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
                Config::parse(&text)
            }
            None => Config::parse(DEFAULT_CONFIG_TOML),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.durability()?;
        self.pipeline_config()?;
        if self.pipeline.stall_limit_ms < MIN_STALL_LIMIT_MS {
            return Err(ConfigError::Invalid(format!(
                "pipeline.stall_limit_ms must be at least {MIN_STALL_LIMIT_MS} (the supervisor looks every 100 ms)"
            )));
        }
        // A segment must hold the largest event-log record: refused here, at start-up, rather
        // than failing the pipeline on the first long event list.
        crate::storage::event_log::check_segment_size(self.journal.segment_size_bytes)
            .map_err(|e| ConfigError::Invalid(format!("journal.{e}")))?;
        if self.gateway.max_frame_bytes < 1024 || self.gateway.max_in_flight == 0 || self.gateway.rate_per_sec == 0 {
            return Err(ConfigError::Invalid("gateway limits must be positive (max_frame_bytes >= 1024)".into()));
        }
        let mut names: Vec<&str> = self.principals.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::Invalid(format!("principal {:?} is listed twice", w[0])));
        }
        if self.principals.iter().any(|p| p.name.is_empty()) {
            return Err(ConfigError::Invalid("a principal has an empty name".into()));
        }
        if let Some(cluster) = &self.cluster {
            cluster.validate()?;
        }
        self.retention.validate()
    }

    pub fn durability(&self) -> Result<Durability, ConfigError> {
        self.journal.durability.parse().map_err(ConfigError::Invalid)
    }

    pub fn pipeline_config(&self) -> Result<PipelineConfig, ConfigError> {
        let wait = |s: &str| s.parse::<WaitStrategy>().map_err(ConfigError::Invalid);
        let ring_size = self.pipeline.ring_size;
        if ring_size < MIN_RING_SIZE || !ring_size.is_power_of_two() {
            return Err(ConfigError::Invalid(format!("pipeline.ring_size must be a power of two >= {MIN_RING_SIZE}")));
        }
        let processor_wait = wait(&self.pipeline.processor_wait)?;
        let other_wait = wait(&self.pipeline.other_wait)?;
        if other_wait == WaitStrategy::Spin {
            return Err(ConfigError::Invalid(
                "pipeline.other_wait = \"spin\" would spin three threads; only the processor may spin".into(),
            ));
        }
        let durability = self.durability()?;
        Ok(PipelineConfig {
            journal: SequencerConfig {
                segment_size_bytes: self.journal.segment_size_bytes,
                // On a cluster node the Raft log holds the durability policy (an entry is
                // stored under it before it counts towards a majority); the input journal
                // is written from committed entries and refilled from the Raft log if a
                // power cut takes its tail, so syncing it too would only add latency.
                durability: if self.cluster.is_some() { Durability::PageCache } else { durability },
            },
            ring_size,
            processor_wait,
            other_wait,
            processor_core: self.pipeline.processor_core,
            state_hash_every_commands: self.cluster.as_ref().map_or(0, |c| c.state_hash_every_commands),
        })
    }

    pub fn principal(&self, name: &str) -> Option<&PrincipalSection> {
        self.principals.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_the_documented_default() {
        let embedded = Config::load(None).unwrap();
        let empty = Config::parse("").unwrap();
        assert_eq!(embedded.journal.durability, empty.journal.durability);
        assert_eq!(embedded.pipeline.ring_size, empty.pipeline.ring_size);
        assert_eq!(embedded.gateway.listen, empty.gateway.listen);
        assert_eq!(embedded.data.dir, empty.data.dir);
        assert_eq!(embedded.pipeline.stall_limit_ms, empty.pipeline.stall_limit_ms);
        assert_eq!(embedded.principal("trader1").unwrap().accounts, vec![AccountId(1)]);
        assert!(embedded.principal("admin").unwrap().admin);
        assert_eq!(embedded.durability().unwrap(), Durability::PageCache);
        assert_eq!(embedded.retention.mode, empty.retention.mode);
        assert_eq!(embedded.retention.warn_free_bytes, empty.retention.warn_free_bytes);
        assert_eq!(embedded.retention.archive_interval_s, empty.retention.archive_interval_s);
        assert_eq!(embedded.retention.disk_check_interval_s, empty.retention.disk_check_interval_s);
    }

    #[test]
    fn development_certificates_only_where_the_configuration_asks() {
        assert!(Config::load(None).unwrap().gateway.dev_certs, "the embedded development default asks");
        assert!(!Config::parse("").unwrap().gateway.dev_certs, "a missing key means no");
        let production = include_str!("../systemd/seqd.toml");
        assert!(!Config::parse(production).unwrap().gateway.dev_certs, "systemd/seqd.toml must not ask");
        assert!(Config::parse("[gateway]\ndev_certs = true").unwrap().gateway.dev_certs);
    }

    #[test]
    fn the_cluster_example_is_node_1_of_3_and_bad_memberships_are_refused() {
        let example = Config::parse(include_str!("../systemd/seqd-cluster.example.toml")).unwrap();
        let cluster = example.cluster.as_ref().unwrap();
        assert_eq!((cluster.node_id, cluster.nodes.len()), (1, 3));
        assert_eq!(cluster.this_node().client_address, "10.0.0.1:7400");
        // In a cluster the Raft log holds the policy; the input journal is refilled from it.
        assert_eq!(example.durability().unwrap(), Durability::Fsync);
        assert_eq!(example.pipeline_config().unwrap().journal.durability, Durability::PageCache);
        assert_eq!(example.pipeline_config().unwrap().state_hash_every_commands, 100_000);
        assert_eq!(Config::parse("").unwrap().pipeline_config().unwrap().state_hash_every_commands, 0);

        let node = |id: u64| {
            format!(
                "[[cluster.nodes]]\nid = {id}\nnode_address = \"127.0.0.1:{}\"\nclient_address = \"x\"\n",
                7500 + id
            )
        };
        let cluster_of = |node_id: u64, ids: &[u64], extra: &str| {
            let nodes: String = ids.iter().map(|&id| node(id)).collect();
            format!("[cluster]\nnode_id = {node_id}\ncerts_dir = \"c\"\n{extra}\n{nodes}")
        };
        assert!(Config::parse(&cluster_of(1, &[1, 2, 3], "")).is_ok());
        for (text, expected) in [
            (cluster_of(1, &[1, 2], ""), "1, 3 or 5 nodes"),
            (cluster_of(4, &[1, 2, 3], ""), "not among the nodes"),
            (cluster_of(1, &[1, 1, 3], ""), "distinct"),
            (cluster_of(1, &[1, 2, 3], "heartbeat_ms = 400"), "3 x heartbeat_ms"),
        ] {
            let error = Config::parse(&text).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn mistakes_are_errors_that_say_what_is_wrong() {
        let cases = [
            ("[journal]\ndurabilty = \"fsync\"", "unknown field"),
            ("[journal]\ndurability = \"sometimes\"", "unknown durability"),
            ("[pipeline]\nring_size = 100", "power of two"),
            ("[pipeline]\nother_wait = \"spin\"", "only the processor may spin"),
            ("[pipeline]\nstall_limit_ms = 100", "stall_limit_ms must be at least 500"),
            ("[gateway]\nlisten = \"nowhere\"", "invalid"),
            ("[[principals]]\nname = \"a\"\n[[principals]]\nname = \"a\"", "listed twice"),
            ("[retention]\nmode = \"move\"", "needs retention.archive_dir"),
            ("[retention]\nmode = \"archive\"", "retention.mode must be"),
            ("[retention]\narchive_interval_s = 0", "at least 1 s"),
        ];
        for (text, expected) in cases {
            let error = Config::parse(text).expect_err(text).to_string();
            assert!(error.contains(expected), "{text:?} gave {error:?}");
        }
    }

    #[test]
    fn values_override_defaults() {
        let config = Config::parse(
            "[journal]\ndurability = \"fsync\"\n[pipeline]\nprocessor_wait = \"spin\"\nprocessor_core = 1",
        )
        .unwrap();
        let pipeline = config.pipeline_config().unwrap();
        assert_eq!(pipeline.journal.durability, Durability::Fsync);
        assert_eq!(pipeline.processor_wait, WaitStrategy::Spin);
        assert_eq!(pipeline.processor_core, Some(1));
    }
}
