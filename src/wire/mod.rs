//! Bytes in and out: the fixed-layout codec of commands and events that the journal stores
//! (`journal/FORMAT.md` §10), and the conversion between decimals at the edges and integer minor
//! units. Uses the engine's types; no I/O.

pub mod codec;
pub mod money;
