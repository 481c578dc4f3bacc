//! Machinery to exercise seqd, not part of it: seeded workloads, the scripted session of the
//! demo and the golden journals, and the SIGKILL crash tests. Behind the `testkit` feature (on by
//! default, for the `seqd` and `seqd-bench` binaries; a program using seqd as a library turns
//! default features off and does not see this module). Nothing outside `testkit` uses it except
//! tests and the binaries.

pub mod cluster;
pub mod crash_test;
pub mod crash_test_daemon;
pub mod samples;
pub mod scenario;
pub mod test_db;
pub mod workload;
