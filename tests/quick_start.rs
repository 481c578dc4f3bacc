//! The README's quick start, run exactly as written against a fresh daemon: the first `sh`
//! block under "## Quick start", line by line in one `bash -e`, with `target/release/seqd`
//! being the binary under test (a debug or a release build) and `SEQD_ADDR`/`SEQD_CERTS`
//! pointing the CLI at the daemon (the README says so). If the README's commands stop
//! working, or stop doing what it says, this fails.

#[path = "common/daemon.rs"]
mod daemon;

use daemon::Daemon;
use std::path::Path;
use std::process::Command as Process;

/// The first ```sh block after the "## Quick start" heading.
fn quick_start_block() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let section = &readme[readme.find("## Quick start").expect("a Quick start section")..];
    let block = &section[section.find("```sh\n").expect("an sh block") + "```sh\n".len()..];
    block[..block.find("```").expect("the block ends")].to_string()
}

/// Lines with their runs of spaces collapsed, so table columns compare as words.
fn words(output: &str) -> Vec<String> {
    output.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn the_readme_quick_start_runs_top_to_bottom_and_trades() {
    let block = quick_start_block();
    assert!(block.starts_with("seqd=target/release/seqd\n"), "{block}");
    let data = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(data.path());
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cwd.path().join("target/release")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_seqd"), cwd.path().join("target/release/seqd")).unwrap();

    // `timeout` bounds a hung command (a watch that never gets its updates).
    let output = Process::new("timeout")
        .args(["120", "bash", "-e", "-c", &block])
        .current_dir(cwd.path())
        .env("SEQD_ADDR", daemon.addr.to_string())
        .env("SEQD_CERTS", daemon.certs())
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the quick start failed ({:?})\n{stdout}\n{stderr}", output.status);
    let lines = words(&stdout);
    let has = |line: &str| lines.iter().any(|l| l == line);
    for expected in [
        // The symbol, named by the codes of its assets.
        "1 BTC/USDT BTC USDT trading 0.01 0.0001 0.0001 0 92233720368.5477 0 1000 0",
        // The watch saw the bid, then the trade and the level's new quantity.
        "md 2 trade 1: sell 0.2 @ 30000 (quote 6000)",
        "md 3 bid 30000 -> qty 0.3 orders 1",
        // The book after the trade.
        "bid 30000 0.3 1",
        // trader1 bought 0.2 BTC for 6,000 USDT and still bids 0.3: 9,000 held, and the 15
        // held when it was placed against a taker fee of 0.1% (as the maker it paid none).
        "BTC 0.2 0 0.2",
        "USDT 84985 9015 94000",
        // trader2 sold 0.2 BTC and paid the 0.1% taker fee.
        "BTC 1.8 0 1.8",
        "USDT 5994 0 5994",
        "refused: account 2 is not in trader1's subtree",
    ] {
        assert!(has(expected), "missing {expected:?} in\n{stdout}");
    }
    assert!(stderr.contains("refused (910)"), "{stderr}");
    daemon.stop();
}
