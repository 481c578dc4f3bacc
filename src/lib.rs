//! seqd: an LMAX-style sequencer for trading venues. See README.md and ARCHITECTURE.md.
//!
//! - [`config`]: the daemon's TOML configuration (embedded default: `systemd/seqd.example.toml`).
//! - [`client`]: the Rust client library (QUIC, client certificate, request/answer matching).
//! - [`codec`]: fixed-layout binary encoding of commands and events (journal and wire).
//! - [`engine`]: the deterministic business logic (`Engine::apply(command) -> events`).
//! - [`protocol`]: the binary client protocol: framing, messages, reason codes, connection limits.
//! - [`gateway`]: the QUIC gateway; [`gateway::tls`]: mutual TLS, dev certificates, principals.
//! - [`journal`]: memory-mapped, checksummed, hash-chained segment files (input and event logs).
//! - [`sequencer`]: stamps, journals and applies commands; recovers a data directory.
//! - [`pipeline`]: disruptor rings between journaler, processor, event log and responder.
//! - [`replicate`]: replicators from the event log into TiDB and ClickHouse; `seqd reconcile`.
//! - [`replay`], [`snapshots`]: rebuilding state from snapshots and journals.
//! - [`storage`]: file creation, rename and sync for the journal and snapshots; a simulated disk for power-loss tests.
//! - [`scenario`]: the scripted session behind the demo and the golden journals.
//! - [`daemon`]: `seqd run`: recovery, pipeline, gateway, metrics, systemd notify, graceful stop.
//! - [`crash_test`]: the SIGKILL crash test harness (`seqd crash-test`).
//! - [`money`]: conversions between `rust_decimal` at the edges and integer minor units.
//! - [`workload`]: seeded command generators for benchmarks and tests.

pub mod client;
pub mod codec;
pub mod config;
pub mod crash_test;
pub mod crash_test_daemon;
pub mod daemon;
pub mod engine;
pub mod event_log;
pub mod gateway;
pub mod journal;
pub mod money;
pub mod pipeline;
pub mod protocol;
pub mod replay;
pub mod replicate;
pub mod scenario;
pub mod sequencer;
pub mod snapshots;
pub mod storage;
pub mod workload;
