//! Everything on disk: the journal's segment files, the event log, snapshot files, the data
//! directory and replay, and the file operations (create, rename, sync) they all go through,
//! with a simulated disk for power-loss tests. Uses the engine and `wire`; no threads.

pub mod disk;
pub mod event_log;
pub mod journal;
pub mod replay;
pub mod retention;
pub mod snapshots;
