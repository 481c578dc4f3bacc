//! seqd: an LMAX-style sequencer for trading venues. See README.md and ARCHITECTURE.md.
//!
//! - [`codec`]: fixed-layout binary encoding of commands and events (journal and wire).
//! - [`engine`]: the deterministic business logic (`Engine::apply(command) -> events`).
//! - [`journal`]: memory-mapped, checksummed, hash-chained segment files (input and event logs).
//! - [`sequencer`]: stamps, journals and applies commands; recovers a data directory.
//! - [`pipeline`]: disruptor rings between journaler, processor, event log and responder.
//! - [`replay`], [`snapshots`]: rebuilding state from snapshots and journals.
//! - [`scenario`]: the scripted session behind the demo and the golden journals.
//! - [`crash_test`]: the SIGKILL crash test harness (`seqd crash-test`).
//! - [`money`]: conversions between `rust_decimal` at the edges and integer minor units.
//! - [`workload`]: seeded command generators for benchmarks and tests.

pub mod codec;
pub mod crash_test;
pub mod engine;
pub mod journal;
pub mod money;
pub mod pipeline;
pub mod replay;
pub mod scenario;
pub mod sequencer;
pub mod snapshots;
pub mod workload;
