//! seqd: an LMAX-style sequencer for trading venues. See README.md and ARCHITECTURE.md.
//!
//! - [`codec`]: fixed-layout binary encoding of commands and events (journal and wire).
//! - [`engine`]: the deterministic business logic (`Engine::apply(command) -> events`).
//! - [`money`]: conversions between `rust_decimal` at the edges and integer minor units.
//! - [`workload`]: seeded command generators for benchmarks and tests.

pub mod codec;
pub mod engine;
pub mod money;
pub mod scenario;
pub mod workload;
