//! The daemon crash test, short: `seqd crash-test --daemon` starts `seqd run` on one data
//! directory, loads it with two QUIC clients, SIGKILLs it, checks that every acknowledged
//! command is in the journal as sent and that recovery equals a replay, and restarts it, five
//! times (`tools/crash-test --daemon` runs 100 cycles).

use std::process::Command;

#[test]
fn five_daemon_kills_under_load_lose_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_seqd"))
        .args(["crash-test", "--daemon", "--cycles", "5", "--seed", "7", "--dir"])
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stdout.lines().last(),
        Some("crash-test: 5 cycles, 0 acknowledged lost"),
        "stdout {stdout}\nstderr {stderr}"
    );
    assert!(out.status.success(), "{}\n{stderr}", out.status);
    let summary = stderr
        .lines()
        .find(|l| l.starts_with("daemon crash test: "))
        .unwrap_or_else(|| panic!("no summary in {stderr}"));
    assert_eq!(count(summary, "kills"), 5, "{summary}");
    assert!(count(summary, "commands acknowledged") > 0, "the daemon acknowledged nothing: {summary}");
    // A snapshot is written offline after the third cycle: the last two recover from it.
    assert_eq!(count(summary, "recoveries from a snapshot"), 2, "{summary}");
}

/// The number written just before `label` in the summary line.
fn count(summary: &str, label: &str) -> u64 {
    let before = &summary[..summary.find(&format!(" {label}")).unwrap_or_else(|| panic!("no {label:?} in {summary}"))];
    before.rsplit(' ').next().unwrap().parse().unwrap()
}
