//! `seqd-bench e2e`: the daemon end to end over QUIC on loopback.
//!
//! 1. Starts `seqd run` (the binary next to this one) on free ports, unless `--addr` names a
//!    running daemon, and sets up a venue as admin: BTC/USDT without fees, accounts 1..=N+1
//!    funded generously.
//! 2. Latency at low load: one connection, one command at a time (a resting buy, then its
//!    cancel), round trip from send to the `Outcome` (command durable, events back).
//! 3. The floor, measured in the same run: a bare quinn echo with the same TLS setup, 64-byte
//!    messages, one at a time, its server on another thread of this process. Echo and seqd
//!    round trips run in alternating blocks so background load hits both alike.
//! 4. Throughput: N connections on a multi-thread runtime, each keeping `--window` commands
//!    in flight (buys and their cancels by client order id), commands answered per second;
//!    `--passes` passes on fresh connections, the median pass is the figure. Every connection
//!    is the admin (the dev principals' grants cover accounts 1 and 2 only), and an admin sees
//!    every account, so each command's events are also pushed to the other N-1 connections.
//! 5. With `--cluster N`, after the single daemon: a local cluster of N nodes
//!    (`testkit::cluster`, the machinery of `tests/cluster.rs`), the same latency and throughput
//!    tests through its leader, then `--failovers` times: SIGKILL the leader, and time from the
//!    kill to the first command answered through the new leader (a client polling `/cluster`
//!    for the node claiming to lead, connecting, sending); the killed node is restarted and
//!    caught up before the next round. The JSON adds `cluster_*`, `single_*` and `failover_ms`
//!    (the median).

use crate::hdr_plot::{percentile_svg, Curve};
use crate::quic_echo::{EchoCerts, EchoClient, EchoServer, ECHO_MESSAGE_BYTES};
use hdrhistogram::Histogram;
use seqd::client::Client;
use seqd::engine::{AccountId, Command, Event, NewOrder, OrderId, OrderType, RejectReason, Side, StpMode, TimeInForce};
use seqd::protocol::Message;
use seqd::testkit::cluster::{ClusterOptions, LocalCluster};
use seqd::testkit::workload::{BTC, BTC_USDT, LOT, MID_TICKS, TICK, USDT};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command as Process, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct E2eOptions {
    pub addr: Option<SocketAddr>,
    pub certs: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub connections: usize,
    pub commands: u64,
    pub latency_commands: u64,
    pub window: usize,
    pub passes: u64,
    pub rate_per_sec: u64,
    pub durability: Option<String>,
    pub plot: Option<PathBuf>,
    pub cluster: Option<ClusterBench>,
    pub json: bool,
}

/// `--cluster N`: the cluster measured after the single daemon.
pub struct ClusterBench {
    pub nodes: u64,
    pub election_timeout_ms: u64,
    pub failovers: u32,
}

/// Untimed round trips of each kind before the latency test.
const WARMUP_ROUND_TRIPS: u64 = 2_000;
/// The latency test alternates echo and seqd in this many blocks each.
const LATENCY_BLOCKS: u64 = 10;
/// USDT (scale 6) deposited into every account: 1,000,000 USDT.
const DEPOSIT_USDT_MINOR: i64 = 1_000_000_000_000;
/// Latency-test buys rest 100 ticks under the mid (load buys 1 to 64 ticks under it).
const LATENCY_PRICE_TICKS: i64 = MID_TICKS - 100;

pub fn run(options: E2eOptions) -> Result<(), String> {
    let load_before = load_average_1m();
    let scratch = std::env::temp_dir().join(format!("seqd-bench-e2e-{}", std::process::id()));
    let target = Target::open(&options, &scratch)?;
    let result = measure(&options, &target, &scratch);
    let stopped = target.close();
    let cluster = match (&result, &stopped, &options.cluster) {
        (Ok(_), Ok(()), Some(bench)) => Some(measure_cluster(&options, bench, &scratch.join("cluster"))),
        _ => None,
    };
    let _ = std::fs::remove_dir_all(&scratch);
    let report = result?;
    stopped?;
    let cluster = cluster.transpose()?;
    report.print(&options, load_before, cluster.as_ref());
    if let Some(path) = &options.plot {
        write_plot(path, &report, &options)?;
    }
    Ok(())
}

fn measure(options: &E2eOptions, target: &Target, scratch: &Path) -> Result<Report, String> {
    let admin = AdminCerts::load(&target.certs_dir)?;
    let echo_certs = EchoCerts::load(&target.certs_dir, &scratch.join("echo-certs"))?;
    let accounts = options.connections as u64 + 1;
    let current_thread =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let latency = current_thread.block_on(async {
        let mut client = admin.connect(target.addr).await?;
        set_up_venue(&mut client, accounts).await?;
        eprintln!("venue ready: BTC/USDT (no fees), accounts 1..={accounts}");
        measure_latency(client, &echo_certs, accounts, options).await
    })?;
    drop(current_thread);
    let multi_thread = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())?;
    let load = multi_thread.block_on(measure_throughput(&admin, target.addr, options))?;
    Ok(Report { latency, load })
}

// ---------------------------------------------------------------------------------------------
// The daemon under test

/// Where the daemon is and, when this run started it, the process.
struct Target {
    addr: SocketAddr,
    certs_dir: PathBuf,
    daemon: Option<Daemon>,
    /// A data directory this run made and removes.
    own_data_dir: Option<PathBuf>,
}

impl Target {
    fn open(options: &E2eOptions, scratch: &Path) -> Result<Target, String> {
        if let Some(addr) = options.addr {
            let certs_dir = options.certs.clone().ok_or("--addr needs --certs DIR (ca.pem, admin.pem, admin.key)")?;
            eprintln!("measuring the daemon at {addr}");
            return Ok(Target { addr, certs_dir, daemon: None, own_data_dir: None });
        }
        let data_dir = options.data_dir.clone().unwrap_or_else(|| scratch.join("data"));
        let own_data_dir = options.data_dir.is_none().then(|| data_dir.clone());
        let durability = options.durability.as_deref().unwrap_or("page-cache");
        let daemon = Daemon::start(&data_dir, durability)?;
        eprintln!(
            "started seqd (pid {}, {durability}) on {}, data in {}",
            daemon.pid(),
            daemon.addr,
            data_dir.display()
        );
        Ok(Target { addr: daemon.addr, certs_dir: data_dir.join("certs"), daemon: Some(daemon), own_data_dir })
    }

    fn close(self) -> Result<(), String> {
        let stopped = self.daemon.map_or(Ok(()), Daemon::stop);
        if let Some(dir) = self.own_data_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        stopped
    }
}

/// A `seqd run` child process.
struct Daemon {
    child: Option<Child>,
    addr: SocketAddr,
    /// Kept open so the daemon never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Daemon {
    /// Starts `seqd run` on free ports and reads the address from its first stdout line.
    fn start(data_dir: &Path, durability: &str) -> Result<Daemon, String> {
        let data_dir_arg = data_dir.to_str().ok_or("the data directory must be UTF-8")?;
        let mut child = Process::new(seqd_binary()?)
            .args(["run", "--data-dir", data_dir_arg, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(["--durability", durability])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start seqd: {e}"))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let addr = line
            .strip_prefix("seqd: listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok());
        match addr {
            Some(addr) => Ok(Daemon { child: Some(child), addr, _stdout: stdout }),
            None => {
                terminate(&child);
                let _ = child.wait();
                Err(format!("seqd did not start: first line {line:?}"))
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGTERM and wait: the graceful stop (drain, durable journal, snapshot).
    fn stop(mut self) -> Result<(), String> {
        let mut child = self.child.take().expect("running");
        terminate(&child);
        let status = child.wait().map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("seqd exited with {status}"))
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            let _ = child.wait();
        }
    }
}

fn terminate(child: &Child) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

/// `seqd` next to this binary (`cargo run --bin seqd-bench` builds only the benchmark, so a
/// stale or missing `seqd` is possible: `cargo build --release --bins` first).
fn seqd_binary() -> Result<PathBuf, String> {
    let seqd = std::env::current_exe().map_err(|e| e.to_string())?.with_file_name("seqd");
    if seqd.exists() {
        Ok(seqd)
    } else {
        Err(format!("{} not found: build it first (cargo build --release --bins)", seqd.display()))
    }
}

/// The admin's certificate: admins may act on every account.
struct AdminCerts {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl AdminCerts {
    fn load(dir: &Path) -> Result<AdminCerts, String> {
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
        Ok(AdminCerts { ca: read("ca.pem")?, cert: read("admin.pem")?, key: read("admin.key")? })
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Client, String> {
        Client::connect(addr, &self.ca, &self.cert, &self.key).await.map_err(|e| e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// The venue and the commands

fn unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// BTC/USDT without fees and accounts 1..=accounts with USDT. Reference data and accounts a
/// reused daemon already has are fine; deposit references are new on every run.
async fn set_up_venue(admin: &mut Client, accounts: u64) -> Result<(), String> {
    let mut setup = vec![
        Command::CreateAsset { asset: BTC, scale: 8 },
        Command::CreateAsset { asset: USDT, scale: 6 },
        Command::CreateSymbol(seqd::testkit::workload::btc_usdt_spec(0, 0)),
    ];
    let deposit_ref = unix_ns();
    for account in 1..=accounts {
        setup.push(Command::CreateAccount { account: AccountId(account), parent: AccountId::NONE, owner: account });
        let external_ref = deposit_ref + account;
        setup.push(Command::Deposit {
            account: AccountId(account),
            asset: USDT,
            amount: DEPOSIT_USDT_MINOR,
            external_ref,
        });
    }
    let exists =
        [RejectReason::AssetExists, RejectReason::SymbolExists, RejectReason::AccountExists].map(RejectReason::code);
    for command in setup {
        let outcome = admin.command(command).await.map_err(|e| format!("{command:?}: {e}"))?;
        match outcome.rejected() {
            Some(code) if !exists.contains(&code) => return Err(format!("{command:?} rejected with code {code}")),
            _ => {}
        }
    }
    Ok(())
}

/// A resting buy of one lot (only buys are sent, so nothing ever trades).
fn buy(account: AccountId, price_ticks: i64, client_order_id: u64) -> Command {
    Command::PlaceOrder(NewOrder {
        account,
        symbol: BTC_USDT,
        client_order_id,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        stp: StpMode::CancelIncoming,
        price: price_ticks * TICK,
        stop_price: 0,
        qty: LOT,
        quote_budget: 0,
    })
}

/// The i-th command of a load connection: a buy (on one of 64 levels), then its cancel by
/// client order id. Both stay valid however far ahead of their answers they are sent.
fn load_command(account: AccountId, i: u64) -> Command {
    let client_order_id = i / 2 + 1;
    if i.is_multiple_of(2) {
        buy(account, MID_TICKS - 1 - (client_order_id % 64) as i64, client_order_id)
    } else {
        Command::CancelByClientId { account, client_order_id }
    }
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

fn elapsed_us(started: Instant) -> u64 {
    started.elapsed().as_micros() as u64
}

// ---------------------------------------------------------------------------------------------
// Latency at low load, and the echo floor

/// Something timed one round trip at a time.
trait Probe {
    async fn round_trip_us(&mut self) -> Result<u64, String>;
}

/// seqd: a buy, then its cancel, one command in flight.
struct SeqdProbe {
    client: Client,
    account: AccountId,
    resting: Option<OrderId>,
}

impl Probe for SeqdProbe {
    async fn round_trip_us(&mut self) -> Result<u64, String> {
        let command = match self.resting.take() {
            Some(order_id) => Command::CancelOrder { account: self.account, order_id },
            None => buy(self.account, LATENCY_PRICE_TICKS, 0),
        };
        let started = Instant::now();
        let outcome = self.client.command(command).await.map_err(|e| e.to_string())?;
        let round_trip_us = elapsed_us(started);
        if let Some(code) = outcome.rejected() {
            return Err(format!("{command:?} rejected with code {code}"));
        }
        if matches!(command, Command::PlaceOrder(_)) {
            self.resting = Some(OrderId(outcome.seq));
        }
        Ok(round_trip_us)
    }
}

impl Probe for EchoClient {
    async fn round_trip_us(&mut self) -> Result<u64, String> {
        let started = Instant::now();
        self.round_trip().await?;
        Ok(elapsed_us(started))
    }
}

/// Spaces round trips at a fixed rate (none when the rate is 0). Tokio's timer has a
/// resolution of 1 ms, so rates above 1,000/s are only approximate.
struct Pacer {
    interval: Option<Duration>,
    next: tokio::time::Instant,
}

impl Pacer {
    fn new(rate_per_sec: u64) -> Pacer {
        let interval = (rate_per_sec > 0).then(|| Duration::from_nanos(1_000_000_000 / rate_per_sec));
        Pacer { interval, next: tokio::time::Instant::now() }
    }

    async fn wait(&mut self) {
        let Some(interval) = self.interval else { return };
        tokio::time::sleep_until(self.next).await;
        self.next = (self.next + interval).max(tokio::time::Instant::now());
    }
}

async fn run_block<P: Probe>(
    probe: &mut P,
    round_trips: u64,
    pacer: &mut Pacer,
    mut histogram: Option<&mut Histogram<u64>>,
) -> Result<(), String> {
    for _ in 0..round_trips {
        pacer.wait().await;
        let round_trip_us = probe.round_trip_us().await?;
        if let Some(histogram) = histogram.as_deref_mut() {
            histogram.saturating_record(round_trip_us);
        }
    }
    Ok(())
}

struct LatencyResult {
    seqd_us: Histogram<u64>,
    echo_us: Histogram<u64>,
}

async fn measure_latency(
    client: Client,
    echo_certs: &EchoCerts,
    accounts: u64,
    options: &E2eOptions,
) -> Result<LatencyResult, String> {
    let server = EchoServer::start(echo_certs)?;
    let mut echo = EchoClient::connect(server.addr, echo_certs).await?;
    let mut seqd = SeqdProbe { client, account: AccountId(accounts), resting: None };
    let mut pacer = Pacer::new(options.rate_per_sec);
    run_block(&mut echo, WARMUP_ROUND_TRIPS, &mut pacer, None).await?;
    run_block(&mut seqd, WARMUP_ROUND_TRIPS, &mut pacer, None).await?;

    let mut result = LatencyResult { seqd_us: latency_histogram(), echo_us: latency_histogram() };
    let per_block = options.latency_commands.div_ceil(LATENCY_BLOCKS).max(1);
    for block in 0..LATENCY_BLOCKS {
        if block % 2 == 0 {
            run_block(&mut echo, per_block, &mut pacer, Some(&mut result.echo_us)).await?;
            run_block(&mut seqd, per_block, &mut pacer, Some(&mut result.seqd_us)).await?;
        } else {
            run_block(&mut seqd, per_block, &mut pacer, Some(&mut result.seqd_us)).await?;
            run_block(&mut echo, per_block, &mut pacer, Some(&mut result.echo_us)).await?;
        }
    }
    if let Some(order_id) = seqd.resting.take() {
        let _ = seqd.client.command(Command::CancelOrder { account: seqd.account, order_id }).await;
    }
    seqd.client.close().await;
    echo.close().await;
    server.join()?;
    let (s, e) = (&result.seqd_us, &result.echo_us);
    eprintln!(
        "latency, one at a time: seqd p50 {} p99 {} p99.9 {} max {} µs; quinn echo p50 {} p99 {} µs",
        s.value_at_quantile(0.5),
        s.value_at_quantile(0.99),
        s.value_at_quantile(0.999),
        s.max(),
        e.value_at_quantile(0.5),
        e.value_at_quantile(0.99)
    );
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// Throughput: pipelined connections

#[derive(Default)]
struct LoadResult {
    /// Commands answered with their events.
    executed: u64,
    /// Of those, rejected by the engine.
    rejected: u64,
    /// Commands refused by the gateway, by error code (rate limit, busy ring, ...).
    refused: BTreeMap<u16, u64>,
    /// Messages pushed (request id 0) about other connections' commands: admins see every account.
    push_messages: u64,
    /// Wall time of one pass (all connections).
    seconds: f64,
    /// Commands per second of each pass.
    pass_rates_per_sec: Vec<f64>,
    /// Send to answer of each command under load (queueing included).
    loaded_us: Option<Histogram<u64>>,
    window: usize,
}

impl LoadResult {
    fn merge(&mut self, other: LoadResult) {
        self.executed += other.executed;
        self.rejected += other.rejected;
        self.push_messages += other.push_messages;
        for (code, count) in other.refused {
            *self.refused.entry(code).or_default() += count;
        }
        if let Some(theirs) = other.loaded_us {
            self.loaded_us.get_or_insert_with(latency_histogram).add(theirs).expect("same bounds");
        }
        self.window = self.window.max(other.window);
        self.pass_rates_per_sec.extend(other.pass_rates_per_sec);
    }

    fn median_commands_per_sec(&self) -> f64 {
        let mut rates = self.pass_rates_per_sec.clone();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    }
}

/// `--passes` passes of the load, each on fresh connections; the median rate is the figure.
async fn measure_throughput(admin: &AdminCerts, addr: SocketAddr, options: &E2eOptions) -> Result<LoadResult, String> {
    let mut total = LoadResult::default();
    for pass in 0..options.passes.max(1) {
        total.merge(throughput_pass(admin, addr, options, pass).await?);
    }
    let loaded = total.loaded_us.as_ref().expect("at least one connection");
    eprintln!(
        "throughput: median {:.0} commands/s; under load p50 {} p99 {} µs; {} rejected, refused {:?}, {:.1} push messages per command",
        total.median_commands_per_sec(),
        loaded.value_at_quantile(0.5),
        loaded.value_at_quantile(0.99),
        total.rejected,
        total.refused,
        total.push_messages as f64 / total.executed.max(1) as f64
    );
    Ok(total)
}

async fn throughput_pass(
    admin: &AdminCerts,
    addr: SocketAddr,
    options: &E2eOptions,
    pass: u64,
) -> Result<LoadResult, String> {
    let connections = options.connections.max(1);
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(admin.connect(addr).await?);
    }
    let per_connection = options.commands.div_ceil(connections as u64).next_multiple_of(2);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let commands = pass * per_connection..(pass + 1) * per_connection;
            tokio::spawn(drive_connection(client, AccountId(i as u64 + 1), commands, options.window))
        })
        .collect();
    let mut total = LoadResult::default();
    for task in tasks {
        total.merge(task.await.map_err(|e| e.to_string())??);
    }
    total.seconds = started.elapsed().as_secs_f64();
    let rate_per_sec = total.executed as f64 / total.seconds;
    total.pass_rates_per_sec = vec![rate_per_sec];
    eprintln!(
        "throughput pass {}: {connections} connections x {} in flight: {rate_per_sec:.0} commands/s",
        pass + 1,
        total.window
    );
    Ok(total)
}

/// One connection's share of the load, the `commands` of its account by index (see
/// `load_command`): keeps `window` commands in flight (at most the gateway's `max_in_flight`),
/// topping the window up in batches once the answers already received are handled.
async fn drive_connection(
    mut client: Client,
    account: AccountId,
    commands: Range<u64>,
    window: usize,
) -> Result<LoadResult, String> {
    let max_in_flight = match client.welcome.max_in_flight {
        0 => usize::MAX, // no limit
        limit => limit as usize,
    };
    let window = window.clamp(1, max_in_flight);
    let mut result = LoadResult { loaded_us: Some(latency_histogram()), window, ..LoadResult::default() };
    let mut sent_at: rustc_hash::FxHashMap<u64, Instant> = Default::default();
    let mut batch = Vec::with_capacity(window);
    let (mut next, mut answered) = (commands.start, 0u64);
    while answered < commands.end - commands.start {
        let in_flight = (next - commands.start - answered) as usize;
        let room = (window - in_flight).min((commands.end - next) as usize);
        if room > 0 && (!client.has_buffered_input() || in_flight < window / 2) {
            batch.clear();
            batch.extend((next..next + room as u64).map(|i| Message::Command(load_command(account, i))));
            let now = Instant::now();
            let first_id = client.send_batch(&batch).await.map_err(|e| e.to_string())?;
            sent_at.extend((first_id..first_id + room as u64).map(|id| (id, now)));
            next += room as u64;
        }
        let (request_id, message) = client.next_message().await.map_err(|e| e.to_string())?;
        if request_id == 0 {
            result.push_messages += 1;
            continue;
        }
        let finished = match message {
            Message::Accepted { .. } | Message::Events { more: true, .. } => false,
            Message::Events { more: false, events, .. } => {
                result.executed += 1;
                result.rejected += events.iter().any(|e| matches!(e, Event::Rejected { .. })) as u64;
                true
            }
            Message::Error { code, .. } => {
                *result.refused.entry(code).or_default() += 1;
                true
            }
            other => return Err(format!("unexpected answer {other:?}")),
        };
        if finished {
            answered += 1;
            if let (Some(at), Some(histogram)) = (sent_at.remove(&request_id), result.loaded_us.as_mut()) {
                histogram.saturating_record(elapsed_us(at));
            }
        }
    }
    client.close().await;
    Ok(result)
}

// ---------------------------------------------------------------------------------------------
// The cluster

struct ClusterReport {
    nodes: u64,
    election_timeout_ms: u64,
    report: Report,
    /// Kill to first answer through the new leader, each round.
    failover_ms: Vec<f64>,
}

/// Starts `bench.nodes` nodes under `dir`, measures the workload through the leader, then the
/// failovers; stops the nodes (gracefully: each must exit with success).
fn measure_cluster(options: &E2eOptions, bench: &ClusterBench, dir: &Path) -> Result<ClusterReport, String> {
    let cluster_options = ClusterOptions {
        nodes: bench.nodes,
        election_timeout_ms: bench.election_timeout_ms,
        heartbeat_ms: (bench.election_timeout_ms / 10).max(1),
        durability: options.durability.clone().unwrap_or_else(|| "page-cache".into()),
        rust_log: "warn".into(),
        ..ClusterOptions::default()
    };
    let mut cluster = LocalCluster::start(&seqd_binary()?, dir, cluster_options)?;
    let leader = cluster.wait_leader(Duration::from_secs(30))?;
    eprintln!("started a {}-node cluster under {}; leader: node {leader}", bench.nodes, dir.display());
    let target = Target {
        addr: cluster.addrs(leader).client,
        certs_dir: cluster.view().certs_dir.clone(),
        daemon: None,
        own_data_dir: None,
    };
    let report = measure(options, &target, &dir.join("scratch"))?;
    let mut failover_ms = Vec::new();
    if bench.nodes >= 3 {
        for round in 0..bench.failovers {
            let ms = time_failover(&mut cluster, round)?;
            eprintln!("failover {}: {ms:.0} ms from the kill to the first answer through the new leader", round + 1);
            failover_ms.push(ms);
        }
    }
    cluster.stop_all()?;
    Ok(ClusterReport { nodes: bench.nodes, election_timeout_ms: bench.election_timeout_ms, report, failover_ms })
}

/// SIGKILL the leader; milliseconds until a command is answered through its successor.
/// Restarts the killed node and waits until every node has caught up.
fn time_failover(cluster: &mut LocalCluster, round: u32) -> Result<f64, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let view = cluster.view().clone();
    let leader = cluster.wait_leader(Duration::from_secs(30))?;
    let deposit_ref = unix_ns();
    let deposit =
        |k: u64| Command::Deposit { account: AccountId(1), asset: USDT, amount: 1, external_ref: deposit_ref + k };
    // The leader serves before the kill.
    runtime.block_on(async {
        let (_, mut client) = view.connect_leader("admin", Duration::from_secs(30)).await?;
        client.command(deposit(0)).await.map_err(|e| format!("before failover {round}: {e}"))?;
        client.close().await;
        Ok::<(), String>(())
    })?;
    let killed_at = Instant::now();
    cluster.kill(leader);
    let answered = runtime.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempt = 0;
        loop {
            attempt += 1;
            if Instant::now() >= deadline {
                return Err(format!("no answer within 60 s of killing leader {leader}"));
            }
            let Ok((_, mut client)) = view.connect_leader("admin", Duration::from_secs(1)).await else { continue };
            let answer = tokio::time::timeout(Duration::from_secs(1), client.command(deposit(attempt))).await;
            if let Ok(Ok(outcome)) = answer {
                return Ok(outcome);
            }
        }
    })?;
    let ms = killed_at.elapsed().as_secs_f64() * 1e3;
    if let Some(code) = answered.rejected() {
        return Err(format!("the first command after failover {round} was rejected with {code}"));
    }
    cluster.start_node(leader)?;
    cluster.wait_converged(Duration::from_secs(60))?;
    Ok(ms)
}

// ---------------------------------------------------------------------------------------------
// Output

struct Report {
    latency: LatencyResult,
    load: LoadResult,
}

/// What was measured where: the echo's ends are threads of this process, the daemon another
/// process (with its own gateway thread and pipeline threads).
const LAYOUT: &str = "seqd: separate process (gateway runtime + pipeline threads), client on a current-thread runtime in the bench; \
quinn echo: server on its own thread and current-thread runtime in the bench process, client on the same runtime as the seqd client";

fn load_average_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    (numerator as f64 / denominator.max(1) as f64 * 100.0).round() / 100.0
}

impl Report {
    fn print(&self, options: &E2eOptions, load_before: Option<f64>, cluster: Option<&ClusterReport>) {
        let (s, e) = (&self.latency.seqd_us, &self.latency.echo_us);
        let loaded = self.load.loaded_us.as_ref().expect("measured");
        let durability = match (&options.addr, &options.durability) {
            (None, durability) => durability.clone().unwrap_or_else(|| "page-cache".into()),
            (Some(_), Some(said)) => format!("{said} (external daemon, as stated)"),
            (Some(_), None) => "unknown (external daemon)".into(),
        };
        let p50_ratio = ratio(s.value_at_quantile(0.5), e.value_at_quantile(0.5));
        eprintln!("seqd p50 / echo p50 = {p50_ratio}");
        if !options.json {
            return;
        }
        let mut out = serde_json::json!({
            "bench": "e2e",
            "layout": LAYOUT,
            "durability": durability,
            "connections": options.connections.max(1),
            "window_per_connection": self.load.window,
            "commands": self.load.executed,
            "commands_per_sec": self.load.median_commands_per_sec().round(),
            "commands_per_sec_passes": self.load.pass_rates_per_sec.iter().map(|r| r.round()).collect::<Vec<_>>(),
            "rejected": self.load.rejected,
            "refused_by_code": self.load.refused,
            "push_messages_per_command": (self.load.push_messages as f64 / self.load.executed.max(1) as f64 * 100.0).round() / 100.0,
            "loaded_p50_us": loaded.value_at_quantile(0.5),
            "loaded_p99_us": loaded.value_at_quantile(0.99),
            "latency_commands": s.len(),
            "latency_rate_per_sec": options.rate_per_sec,
            "p50_us": s.value_at_quantile(0.5),
            "p99_us": s.value_at_quantile(0.99),
            "p999_us": s.value_at_quantile(0.999),
            "max_us": s.max(),
            "mean_us": (s.mean() * 10.0).round() / 10.0,
            "quinn_echo_message_bytes": ECHO_MESSAGE_BYTES,
            "quinn_echo_p50_us": e.value_at_quantile(0.5),
            "quinn_echo_p99_us": e.value_at_quantile(0.99),
            "quinn_echo_p999_us": e.value_at_quantile(0.999),
            "quinn_echo_max_us": e.max(),
            "p50_ratio_to_echo": p50_ratio,
            "p99_ratio_to_echo": ratio(s.value_at_quantile(0.99), e.value_at_quantile(0.99)),
            "load_avg_1m_before": load_before,
            "load_avg_1m_after": load_average_1m(),
        });
        if let (Some(cluster), Some(fields)) = (cluster, out.as_object_mut()) {
            let c = &cluster.report.latency.seqd_us;
            let c_loaded = cluster.report.load.loaded_us.as_ref().expect("measured");
            let mut failovers = cluster.failover_ms.clone();
            let extra = serde_json::json!({
                "cluster_nodes": cluster.nodes,
                "cluster_election_timeout_ms": cluster.election_timeout_ms,
                "cluster_p50_us": c.value_at_quantile(0.5),
                "cluster_p99_us": c.value_at_quantile(0.99),
                "cluster_p999_us": c.value_at_quantile(0.999),
                "cluster_loaded_p50_us": c_loaded.value_at_quantile(0.5),
                "cluster_loaded_p99_us": c_loaded.value_at_quantile(0.99),
                "cluster_commands_per_sec": cluster.report.load.median_commands_per_sec().round(),
                "cluster_refused_by_code": cluster.report.load.refused,
                "single_p50_us": s.value_at_quantile(0.5),
                "single_p99_us": s.value_at_quantile(0.99),
                "single_commands_per_sec": self.load.median_commands_per_sec().round(),
                "failover_ms": (!failovers.is_empty()).then(|| crate::median(&mut failovers).round()),
                "failover_ms_rounds": cluster.failover_ms.iter().map(|ms| ms.round()).collect::<Vec<_>>(),
            });
            if let Some(extra) = extra.as_object() {
                fields.extend(extra.clone());
            }
        }
        println!("{out}");
    }
}

fn write_plot(path: &Path, report: &Report, options: &E2eOptions) -> Result<(), String> {
    let (s, e) = (&report.latency.seqd_us, &report.latency.echo_us);
    let durability = options.durability.as_deref().unwrap_or("page-cache");
    let curves = [
        Curve {
            label: format!(
                "seqd command round trip, daemon in another process ({durability}): p50 {} µs, p99 {} µs",
                s.value_at_quantile(0.5),
                s.value_at_quantile(0.99)
            ),
            color: "#d62728",
            histogram_us: s,
        },
        Curve {
            label: format!(
                "bare quinn echo, 64 B, server thread in-process: p50 {} µs, p99 {} µs",
                e.value_at_quantile(0.5),
                e.value_at_quantile(0.99)
            ),
            color: "#1f77b4",
            histogram_us: e,
        },
    ];
    let title = format!("seqd end to end over QUIC on loopback, one command at a time ({} round trips each)", s.len());
    std::fs::write(path, percentile_svg(&title, &curves)).map_err(|e| format!("{}: {e}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
