//! seqd: an LMAX-style sequencer for trading venues. See README.md and ARCHITECTURE.md (its
//! "Layout" section gives each folder's reason and what it may use).
//!
//! - [`cursor`]: the one byte cursor (`ByteReader`, `ByteWriter`) of every encoding. Uses nothing.
//! - [`engine`]: the deterministic business logic (`Engine::apply(command) -> events`). Pure.
//! - [`wire`]: fixed-layout encoding of commands and events (journal), money conversions.
//! - [`storage`]: the journal, the event log, snapshots, the data directory and replay, and the
//!   file operations under them (with a simulated disk for power-loss tests).
//! - [`pipeline`]: the sequencer (stamp, journal, apply; recovery) and the disruptor rings
//!   between journaler, processor, event log and responder.
//! - [`protocol`]: the binary client protocol: framing, messages, reason codes, limits. Pure.
//! - [`gateway`]: the QUIC gateway: TLS, grants, visibility, routing, market data.
//! - [`cluster`]: a cluster node: the Raft log (raft-rs) in front of the input ring, the node
//!   transport (QUIC, mutual TLS), leader election and failover.
//! - [`replicate`]: replicators from the event log into TiDB and ClickHouse; `seqd reconcile`.
//! - [`config`]: the TOML configuration (embedded default: `systemd/seqd.example.toml`); its
//!   sections are read by the gateway, the replicators and the daemon.
//! - [`daemon`]: `seqd run`: recovery, pipeline, gateway, metrics, systemd notify, snapshots.
//! - [`client`]: the Rust client library (QUIC, client certificate, request/answer matching).
//! - [`testkit`] (feature `testkit`): workloads, the scripted session, the crash tests.

pub mod client;
pub mod cluster;
pub mod config;
pub mod cursor;
pub mod daemon;
pub mod engine;
pub mod gateway;
pub mod pipeline;
pub mod protocol;
pub mod replicate;
pub mod storage;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod wire;
