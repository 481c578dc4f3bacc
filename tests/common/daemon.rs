//! Helpers shared by the end-to-end tests over QUIC: the `seqd run` binary as a separate process
//! on a free loopback port, clients with the certificates it generated (`seqd dev-certs` on
//! first start), and a small BTC/USDT venue.
#![allow(dead_code)]

use seqd::client::{Client, ClientError};
use seqd::engine::{AccountId, AssetId, BalanceView, Command, Side, SymbolId, SymbolSpec};
use seqd::protocol::Message;
use seqd::testkit::samples::gtc_limit;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitStatus, Stdio};

/// A `seqd run` child process that a test which fails before stopping it does not leave
/// running.
pub struct SeqdProcess(pub Child);

impl Drop for SeqdProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl SeqdProcess {
    /// Starts `seqd run` on `data_dir` with free loopback ports for QUIC and metrics, then
    /// `extra_args` and the environment `env`; its stderr goes to `stderr_log` (else the
    /// test's). Returns the process and its first stdout line ("seqd: listening on ...", or
    /// empty when it exited before serving).
    pub fn spawn(
        data_dir: &Path,
        extra_args: &[&str],
        env: &[(&str, String)],
        stderr_log: Option<&Path>,
    ) -> (SeqdProcess, String) {
        let stderr = match stderr_log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let mut child = Process::new(env!("CARGO_BIN_EXE_seqd"))
            .args(["run", "--data-dir", data_dir.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        (SeqdProcess(child), line)
    }

    /// SIGTERM and wait: the graceful path (drain, durable journal, snapshot).
    pub fn terminate(mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        self.0.wait().unwrap()
    }
}

/// The QUIC address of the "listening on" line, if that is what `line` is.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let addr = line.strip_prefix("seqd: listening on ")?.split_whitespace().next()?;
    Some(addr.parse().unwrap())
}

/// A client of `principal` with the certificates in `certs` (`seqd dev-certs`).
pub async fn connect(addr: SocketAddr, certs: &Path, principal: &str) -> Client {
    let read = |name: String| std::fs::read(certs.join(name)).unwrap();
    Client::connect(addr, &read("ca.pem".into()), &read(format!("{principal}.pem")), &read(format!("{principal}.key")))
        .await
        .unwrap()
}

pub struct Daemon {
    process: SeqdProcess,
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    data_dir: PathBuf,
}

impl Daemon {
    /// Starts `seqd run` on a free port and waits for its "listening on" line.
    pub fn start(data_dir: &Path) -> Daemon {
        Daemon::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, extra_args: &[&str]) -> Daemon {
        let (process, line) = SeqdProcess::spawn(data_dir, extra_args, &[], None);
        let addr = listening_addr(&line).unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let metrics_addr = line
            .split("metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_else(|| panic!("no metrics address in {line:?}"))
            .parse()
            .unwrap();
        Daemon { process, addr, metrics_addr, data_dir: data_dir.to_path_buf() }
    }

    /// SIGTERM and wait: the graceful path (drain, durable journal, snapshot).
    pub fn stop(self) {
        let status = self.process.terminate();
        assert!(status.success(), "seqd run exited with {status}");
    }

    pub fn certs(&self) -> PathBuf {
        self.data_dir.join("certs")
    }

    pub async fn client(&self, principal: &str) -> Client {
        connect(self.addr, &self.certs(), principal).await
    }
}

pub const BTC: u32 = 1;
pub const USDT: u32 = 2;
pub const BTC_USDT: u32 = 1;

pub fn limit(account: u64, side: Side, price: i64, qty: i64) -> Command {
    Command::PlaceOrder(gtc_limit(AccountId(account), SymbolId(BTC_USDT), side, price, qty))
}

/// BTC/USDT: tick 0.01 USDT, lot 0.0001 BTC (one lot at one tick is 1 USDT minor unit), at most
/// 1,000 BTC an order, no minimum notional, no price band; fees in parts per million.
pub fn venue_spec(maker_fee_ppm: u32, taker_fee_ppm: u32) -> SymbolSpec {
    SymbolSpec {
        symbol: SymbolId(BTC_USDT),
        base: AssetId(BTC),
        quote: AssetId(USDT),
        tick_size: 10_000,
        lot_size: 10_000,
        min_qty: 10_000,
        min_notional: 0,
        max_order_qty: 100_000_000_000,
        maker_fee_ppm,
        taker_fee_ppm,
        price_band_bps: 0,
    }
}

/// Admin creates BTC/USDT (no fees), accounts 1 (trader1's) and 2 (trader2's), and funds them.
pub async fn set_up_venue(admin: &mut Client) {
    let setup = [
        Command::CreateAsset { asset: AssetId(BTC), scale: 8 },
        Command::CreateAsset { asset: AssetId(USDT), scale: 6 },
        Command::CreateSymbol(venue_spec(0, 0)),
        Command::CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 },
        Command::CreateAccount { account: AccountId(2), parent: AccountId::NONE, owner: 2 },
        Command::Deposit { account: AccountId(1), asset: AssetId(USDT), amount: 100_000_000_000, external_ref: 1 },
        Command::Deposit { account: AccountId(2), asset: AssetId(BTC), amount: 1_000_000_000, external_ref: 2 },
    ];
    for command in setup {
        let outcome = admin.command(command).await.unwrap();
        assert_eq!(outcome.rejected(), None, "{command:?}");
    }
}

pub async fn balances(client: &mut Client, account: u64) -> Vec<BalanceView> {
    match client.request(&Message::QueryBalances { account: AccountId(account) }).await.unwrap() {
        Message::Balances { balances, .. } => balances,
        other => panic!("expected Balances, got {other:?}"),
    }
}

/// The code of a refusal; anything else fails the test.
pub fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> u16 {
    match result {
        Err(ClientError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}
