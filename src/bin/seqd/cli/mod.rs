//! The `seqd` binary's subcommands other than `run` (which is `seqd::daemon`).

pub mod client;
pub mod cluster;
pub mod demo;
pub mod journal;
pub mod replicate;
pub mod truncate;
