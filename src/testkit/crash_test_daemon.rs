//! The daemon crash test: the whole `seqd run` process is SIGKILLed under client load, many
//! times, on one data directory (`seqd crash-test --daemon`, `tools/crash-test --daemon`).
//!
//! Each cycle starts `seqd run` (this very executable) on the directory, waits for its
//! `seqd: listening on ADDR` line, sets up a venue as admin on the first cycle, then drives it
//! over QUIC with two trader connections, each keeping a seeded window of 1-32 commands in
//! flight (limit orders, IOC orders, amends, cancels of its own live orders). Every `Accepted
//! { seq }` is recorded with the command sent: it promises that the command is durable. After
//! a seeded 20-300 ms of load the daemon is killed with SIGKILL, and the directory is checked
//! offline:
//! - both logs verify, and recovery (newest snapshot + tail, as the restarting daemon does it)
//!   reaches the same state hash as a replay from scratch (`crash_test::check_recovery`);
//! - every acknowledged (seq, command) pair of every cycle so far is in the input journal,
//!   decoding to exactly the command sent, both as the kill left it and after recovery;
//! - the event log equals a replay, and the events each client was answered with equal the
//!   event log's record of that sequence (the traders may see both accounts, so the gateway
//!   hides nothing from them).
//!
//! The daemon writes snapshots only on a graceful stop, which a SIGKILL never reaches, so every
//! third cycle the check writes one offline from the recovered state (as `seqd snapshot DIR`
//! does) and the following restarts recover from a snapshot plus the journal tail.

use crate::client::{Client, ClientError};
use crate::engine::{AccountId, Command, Event, ExecKind, NewOrder, OrderId, Seq, Side, StpMode, TimeInForce};
use crate::protocol::Message;
use crate::storage::event_log::EventLogReader;
use crate::storage::journal::{Durability, JournalReader};
use crate::storage::replay::{replay, DataDir, ReplayOptions};
use crate::testkit::crash_test::{
    check_event_log, check_recovery, pump_complete_lines, tempfile_dir, CRASH_SEGMENT_SIZE_BYTES,
};
use crate::testkit::samples::gtc_limit;
use crate::testkit::workload::{exchange_core_mix, SplitMix64, WorkloadSpec, BTC_USDT, LOT, MID_TICKS, TICK};
use crate::wire::codec;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Load before the kill, in milliseconds: `MIN..MIN+SPAN`.
const KILL_AFTER_MIN_MS: u64 = 20;
const KILL_AFTER_SPAN_MS: u64 = 281;
/// Commands each trader keeps in flight: 1..=MAX_WINDOW, seeded per cycle.
const MAX_WINDOW: u64 = 32;
/// A snapshot is written offline after every this many cycles.
const SNAPSHOT_EVERY_CYCLES: u32 = 3;
const SNAPSHOTS_KEPT: usize = 3;
/// The traders' accounts (trader1 drives account 1, trader2 account 2).
const TRADERS: [(&str, u64); 2] = [("trader1", 1), ("trader2", 2)];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonCrashSummary {
    pub cycles: u32,
    pub kills: u32,
    /// Commands acknowledged (`Accepted`) over all cycles.
    pub acknowledged: u64,
    /// Acknowledged commands whose events were also received in full before the kill.
    pub outcomes: u64,
    /// Commands the gateway refused (nothing sequenced), e.g. a full ring.
    pub refused: u64,
    /// Highest acknowledged sequence.
    pub acked_seq: Seq,
    /// Acknowledged commands missing or altered; the run stops at the first cycle with any.
    pub lost: u64,
    pub torn_tails: u32,
    pub events_regenerated: u32,
    /// Checks after a kill whose recovery started from a snapshot.
    pub snapshot_recoveries: u32,
    pub snapshots_written: u32,
}

/// `seqd crash-test --daemon`: runs the test against this executable, prints the summary line
/// on stdout and the details on stderr.
pub fn run_cli(dir: Option<PathBuf>, durability: Durability, seed: u64, cycles: u32) -> ExitCode {
    let outcome = run_standalone(dir, durability, seed, cycles).map(|summary| (summary.cycles, summary.lost));
    crate::testkit::crash_test::report(outcome, cycles)
}

pub fn run_standalone(
    dir: Option<PathBuf>,
    durability: Durability,
    seed: u64,
    cycles: u32,
) -> Result<DaemonCrashSummary, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let (dir, temporary) = match dir {
        Some(dir) => (dir, false),
        None => (tempfile_dir()?, true),
    };
    let started = Instant::now();
    let result = run(&exe, &dir, durability, seed, cycles);
    // A passing run's temporary directory (hundreds of MB after 100 cycles) goes; a failing
    // one stays for inspection.
    match &result {
        Ok(summary) if temporary && summary.lost == 0 && summary.cycles == cycles => {
            let _ = std::fs::remove_dir_all(&dir);
        }
        _ => eprintln!("crash-test: data directory {}", dir.display()),
    }
    let summary = result?;
    eprintln!(
        "daemon crash test: {} kills, {} commands acknowledged ({} with their events), {} refused, acknowledged up to seq {}, \
         {} torn tails truncated, {} event-log catch-ups, {} snapshots written, {} recoveries from a snapshot, {:.1} s",
        summary.kills,
        summary.acknowledged,
        summary.outcomes,
        summary.refused,
        summary.acked_seq,
        summary.torn_tails,
        summary.events_regenerated,
        summary.snapshots_written,
        summary.snapshot_recoveries,
        started.elapsed().as_secs_f64()
    );
    Ok(summary)
}

/// `cycles` times: start `exe run` on `dir`, load it, SIGKILL it, check `dir`.
pub fn run(
    exe: &Path,
    dir: &Path,
    durability: Durability,
    seed: u64,
    cycles: u32,
) -> Result<DaemonCrashSummary, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let config = dir.join("crash-test-daemon.toml");
    std::fs::write(&config, daemon_config(durability)).map_err(|e| format!("{}: {e}", config.display()))?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| format!("runtime: {e}"))?;
    let data_dir = DataDir::new(dir);
    let mut rng = SplitMix64::new(seed);
    let mut acked: BTreeMap<Seq, Command> = BTreeMap::new();
    let mut summary = DaemonCrashSummary::default();
    for cycle in 0..cycles {
        let plan = CyclePlan {
            setup: cycle == 0,
            kill_after: Duration::from_millis(KILL_AFTER_MIN_MS + rng.below(KILL_AFTER_SPAN_MS)),
            windows: [1 + rng.below(MAX_WINDOW) as usize, 1 + rng.below(MAX_WINDOW) as usize],
            flow_seeds: [rng.next_u64(), rng.next_u64()],
        };
        let mut daemon = DaemonProcess::start(exe, &config, dir).map_err(|e| format!("cycle {cycle}: {e}"))?;
        let load = runtime.block_on(drive_cycle(&mut daemon, &dir.join("certs"), &plan));
        daemon.reap();
        let records = load.map_err(|e| format!("cycle {cycle}: {e}"))?;
        summary.kills += 1;

        // Record this cycle's acknowledgements; a sequence acknowledged twice for different
        // commands means one of them was lost.
        let mut outcomes: BTreeMap<Seq, Vec<Event>> = BTreeMap::new();
        for record in &records {
            summary.refused += record.refused;
            for &(seq, command) in &record.acked {
                summary.acknowledged += 1;
                summary.acked_seq = summary.acked_seq.max(seq);
                if let Some(previous) = acked.insert(seq, command) {
                    if previous != command {
                        eprintln!(
                            "cycle {cycle}: seq {seq} acknowledged twice: first for {previous:?}, now for {command:?}"
                        );
                        summary.lost += 1;
                    }
                }
            }
            for (seq, events) in &record.outcomes {
                outcomes.insert(*seq, events.clone());
            }
        }
        summary.outcomes += outcomes.len() as u64;

        // Acknowledged commands in the journal as the kill left it (read-only), and again after
        // recovery repaired it: recovery must not drop them either.
        let lost_at_kill = count_lost_acknowledged(&data_dir.input(), &acked, &format!("cycle {cycle}, at the kill"))?;
        let recovery = check_recovery(&data_dir).map_err(|e| {
            format!(
                "cycle {cycle} ({plan:?}), after the kill {} acknowledged lost (acknowledged up to seq {}): {e}",
                summary.lost + lost_at_kill,
                summary.acked_seq
            )
        })?;
        summary.torn_tails += u32::from(recovery.torn_tail);
        summary.events_regenerated += u32::from(recovery.events_regenerated);
        summary.snapshot_recoveries += u32::from(recovery.from_snapshot);
        let lost_after_recovery =
            count_lost_acknowledged(&data_dir.input(), &acked, &format!("cycle {cycle}, after recovery"))?;
        summary.lost += lost_at_kill.max(lost_after_recovery);
        check_event_log(&data_dir).map_err(|e| format!("cycle {cycle}: {e}"))?;
        check_answered_events(&data_dir.events(), &outcomes).map_err(|e| format!("cycle {cycle}: {e}"))?;
        summary.cycles = cycle + 1;
        if summary.lost > 0 {
            eprintln!(
                "cycle {cycle}: {} acknowledged commands lost (recovered to seq {}, acknowledged up to {}; plan {plan:?})",
                summary.lost, recovery.last_seq, summary.acked_seq
            );
            return Ok(summary);
        }
        if cycle % SNAPSHOT_EVERY_CYCLES == SNAPSHOT_EVERY_CYCLES - 1 {
            write_snapshot(&data_dir).map_err(|e| format!("cycle {cycle}: snapshot: {e}"))?;
            summary.snapshots_written += 1;
        }
    }
    Ok(summary)
}

/// Small segments, so that kills also land on segment rolls; both traders may act on and see
/// both accounts, so their answers carry every event unredacted; development certificates,
/// made on the first start in the data directory (the test's clients read them there).
fn daemon_config(durability: Durability) -> String {
    let durability = match durability {
        Durability::PageCache => "page-cache",
        Durability::Fsync => "fsync",
    };
    format!(
        "# Written by seqd crash-test --daemon.\n\
         [journal]\ndurability = \"{durability}\"\nsegment_size_bytes = {CRASH_SEGMENT_SIZE_BYTES}\n\n\
         [gateway]\ndev_certs = true\n\n\
         [[principals]]\nname = \"admin\"\nadmin = true\n\n\
         [[principals]]\nname = \"trader1\"\naccounts = [1, 2]\n\n\
         [[principals]]\nname = \"trader2\"\naccounts = [1, 2]\n"
    )
}

/// What one cycle does, derived from the seed.
#[derive(Debug)]
struct CyclePlan {
    setup: bool,
    kill_after: Duration,
    windows: [usize; 2],
    flow_seeds: [u64; 2],
}

/// What one connection was told before the kill.
#[derive(Debug, Default)]
struct ConnectionRecord {
    /// (seq, command) of every `Accepted`.
    acked: Vec<(Seq, Command)>,
    /// Complete answers: the events of an acknowledged command.
    outcomes: Vec<(Seq, Vec<Event>)>,
    refused: u64,
}

struct DaemonProcess {
    child: Child,
    addr: SocketAddr,
}

impl DaemonProcess {
    /// `exe run` on `dir` with `config`, on free ports; waits for the listening line.
    fn start(exe: &Path, config: &Path, dir: &Path) -> Result<DaemonProcess, String> {
        let path = |p: &Path| p.to_str().map(str::to_string).ok_or_else(|| format!("non-UTF-8 path {}", p.display()));
        let mut child = Process::new(exe)
            .args(["run", "--config", &path(config)?, "--data-dir", &path(dir)?])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().ok_or("the daemon has no stdout")?;
        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        // The pump ends when the daemon does (its stdout closes).
        thread::spawn(move || pump_complete_lines(stdout, lines_tx));
        let line = match lines_rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map_err(|e| e.to_string())?;
                return Err(format!("the daemon exited before listening: {status}"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the daemon did not listen within {READY_TIMEOUT:?}"));
            }
        };
        let addr = line
            .strip_prefix("seqd: listening on ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .ok_or_else(|| format!("unexpected first line from the daemon: {line:?}"));
        match addr {
            Ok(addr) => Ok(DaemonProcess { child, addr }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// SIGKILL: no destructor, no flush, no graceful stop. An error if the daemon had already
    /// exited, which it must never do on its own.
    fn kill(&mut self) -> Result<(), String> {
        if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
            return Err(format!("the daemon exited on its own under load: {status}"));
        }
        self.child.kill().map_err(|e| format!("kill: {e}"))
    }

    /// Kills the daemon if it still runs and waits for it.
    fn reap(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects, sets up the venue on the first cycle, then loads the daemon with both traders
/// until `plan.kill_after` has passed, and SIGKILLs it right then, with the load running.
async fn drive_cycle(
    daemon: &mut DaemonProcess,
    certs: &Path,
    plan: &CyclePlan,
) -> Result<Vec<ConnectionRecord>, String> {
    let mut records = vec![ConnectionRecord::default(), ConnectionRecord::default(), ConnectionRecord::default()];
    if plan.setup {
        let mut admin = connect(daemon.addr, certs, "admin").await?;
        let setup = exchange_core_mix(WorkloadSpec { accounts: 2, resting_orders: 0, commands: 0, seed: 1 }).setup;
        for command in setup {
            let outcome = admin.command(command).await.map_err(|e| format!("setup {command:?}: {e}"))?;
            records[2].acked.push((outcome.seq, command));
            records[2].outcomes.push((outcome.seq, outcome.events));
        }
        admin.close().await;
    }
    let mut clients = Vec::with_capacity(TRADERS.len());
    for (principal, _) in TRADERS {
        clients.push(connect(daemon.addr, certs, principal).await?);
    }
    let [first, second] = <[Client; 2]>::try_from(clients).map_err(|_| "two clients")?;
    let (record_a, rest) = records.split_first_mut().expect("three records");
    let record_b = &mut rest[0];
    let kill_after = plan.kill_after;
    let killer = async move {
        tokio::time::sleep(kill_after).await;
        // SIGKILL while both connections have commands in flight (their futures are alive
        // but not polled during this synchronous call).
        daemon.kill()
    };
    let flow = |i: usize| OrderFlow::new(TRADERS[i].1, plan.flow_seeds[i]);
    let killed = tokio::select! {
        biased;
        killed = killer => killed,
        failed = async {
            tokio::try_join!(
                load(first, flow(0), plan.windows[0], record_a),
                load(second, flow(1), plan.windows[1], record_b),
            )
        } => match failed {
            Err(e) => Err(format!("a client failed before the kill: {e}")),
            Ok((never, _)) => match never {},
        },
    };
    killed.map(|()| records)
}

async fn connect(addr: SocketAddr, certs: &Path, principal: &str) -> Result<Client, String> {
    let read =
        |name: String| std::fs::read(certs.join(&name)).map_err(|e| format!("{}: {e}", certs.join(name).display()));
    let ca = read("ca.pem".into())?;
    let cert = read(format!("{principal}.pem"))?;
    let key = read(format!("{principal}.key"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, Client::connect(addr, &ca, &cert, &key)).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(format!("{principal}: {e}")),
        Err(_) => Err(format!("{principal}: no connection within {CONNECT_TIMEOUT:?}")),
    }
}

/// A command sent and not yet fully answered.
struct InFlight {
    command: Command,
    seq: Option<Seq>,
    events: Vec<Event>,
}

enum Never {}

/// Keeps `window` commands in flight on one connection until the future is dropped (at the
/// kill) or the connection fails. Records every acknowledgement as it arrives.
async fn load(
    mut client: Client,
    mut flow: OrderFlow,
    window: usize,
    record: &mut ConnectionRecord,
) -> Result<Never, ClientError> {
    let mut in_flight: HashMap<u64, InFlight> = HashMap::new();
    let mut last_accepted: Seq = 0;
    loop {
        while in_flight.len() < window {
            let command = flow.next();
            let request_id = client.send(&Message::Command(command)).await?;
            in_flight.insert(request_id, InFlight { command, seq: None, events: Vec::new() });
        }
        let (request_id, message) = client.next_message().await?;
        if request_id == 0 {
            if let Message::Events { events, .. } = &message {
                flow.observe(events);
            }
            continue;
        }
        let Some(pending) = in_flight.get_mut(&request_id) else {
            return Err(ClientError::Protocol(format!("answer to unknown request {request_id}: {message:?}")));
        };
        match message {
            Message::Accepted { seq } if pending.seq.is_none() => {
                if seq <= last_accepted {
                    return Err(ClientError::Protocol(format!(
                        "Accepted seq {seq} after {last_accepted} on one connection"
                    )));
                }
                last_accepted = seq;
                pending.seq = Some(seq);
                record.acked.push((seq, pending.command));
            }
            Message::Events { seq, more, events } if pending.seq == Some(seq) => {
                pending.events.extend(events);
                if !more {
                    let done = in_flight.remove(&request_id).expect("pending");
                    flow.observe(&done.events);
                    record.outcomes.push((seq, done.events));
                }
            }
            Message::Error { .. } if pending.seq.is_none() => {
                in_flight.remove(&request_id);
                record.refused += 1;
            }
            other => {
                return Err(ClientError::Protocol(format!("unexpected answer to request {request_id}: {other:?}")));
            }
        }
    }
}

/// One trader's seeded order flow on BTC/USDT around the mid price: limit orders that often
/// cross the other trader's, IOC orders, amends and cancels of its own live orders. It starts
/// each cycle by cancelling whatever it left resting, which keeps the book small.
struct OrderFlow {
    rng: SplitMix64,
    account: u64,
    /// Live orders of this account seen in answers and pushes: (id, side, qty).
    live: Vec<(OrderId, Side, i64)>,
    started: bool,
}

impl OrderFlow {
    fn new(account: u64, seed: u64) -> OrderFlow {
        OrderFlow { rng: SplitMix64::new(seed), account, live: Vec::new(), started: false }
    }

    fn next(&mut self) -> Command {
        if !self.started {
            self.started = true;
            return Command::CancelAll { account: AccountId(self.account), symbol: BTC_USDT };
        }
        let roll = self.rng.below(100);
        if !self.live.is_empty() && (roll < 20 || self.live.len() > 200) {
            let (order_id, _, _) = self.live.swap_remove(self.rng.below(self.live.len() as u64) as usize);
            return Command::CancelOrder { account: AccountId(self.account), order_id };
        }
        if !self.live.is_empty() && roll < 35 {
            let (order_id, side, qty) = self.live[self.rng.below(self.live.len() as u64) as usize];
            let lots = qty / LOT;
            let qty = if self.rng.below(2) == 0 { qty } else { (1 + self.rng.below(lots.max(1) as u64) as i64) * LOT };
            return Command::AmendOrder {
                account: AccountId(self.account),
                order_id,
                price: self.limit_price(side),
                qty,
            };
        }
        let side = if self.rng.below(2) == 0 { Side::Buy } else { Side::Sell };
        let (tif, price) = if roll < 45 {
            let through = if side == Side::Buy { 3 } else { -3 };
            (TimeInForce::Ioc, (MID_TICKS + through) * TICK)
        } else {
            (TimeInForce::Gtc, self.limit_price(side))
        };
        let order = gtc_limit(AccountId(self.account), BTC_USDT, side, price, (1 + self.rng.below(10) as i64) * LOT);
        Command::PlaceOrder(NewOrder { tif, stp: StpMode::CancelResting, ..order })
    }

    /// Bids at mid-6..=mid+1 ticks, asks at mid-1..=mid+6: the two traders' books overlap.
    fn limit_price(&mut self, side: Side) -> i64 {
        let offset = self.rng.below(8) as i64;
        let ticks = match side {
            Side::Buy => MID_TICKS - 6 + offset,
            Side::Sell => MID_TICKS - 1 + offset,
        };
        ticks * TICK
    }

    /// Tracks this account's live orders from execution reports.
    fn observe(&mut self, events: &[Event]) {
        for event in events {
            let Event::Order(report) = event else { continue };
            if report.account != AccountId(self.account) {
                continue;
            }
            if report.status.is_terminal() {
                self.live.retain(|(id, _, _)| *id != report.order_id);
            } else if report.exec == ExecKind::New {
                self.live.push((report.order_id, report.side, report.qty));
            }
        }
    }
}

/// Acknowledged sequences whose record is missing from the input journal or does not decode
/// to the command that was sent. Prints each one.
fn count_lost_acknowledged(input_dir: &Path, acked: &BTreeMap<Seq, Command>, when: &str) -> Result<u64, String> {
    let mut reader = JournalReader::open(input_dir, 1).map_err(|e| e.to_string())?;
    let mut expected = acked.iter().peekable();
    let mut lost = 0;
    while let Some(record) = reader.next().map_err(|e| e.to_string())? {
        while let Some((&seq, sent)) = expected.next_if(|&(&seq, _)| seq <= record.seq) {
            let found = if seq == record.seq { codec::decode_command(record.kind, record.payload).ok() } else { None };
            if found.as_ref() != Some(sent) {
                eprintln!("{when}: acknowledged seq {seq} ({sent:?}) is not in the input journal as sent: {found:?}");
                lost += 1;
            }
        }
    }
    for (seq, sent) in expected {
        eprintln!("{when}: acknowledged seq {seq} ({sent:?}) is past the end of the input journal");
        lost += 1;
    }
    Ok(lost)
}

/// The events a client was answered with equal the event log's record of that sequence.
fn check_answered_events(events_dir: &Path, answered: &BTreeMap<Seq, Vec<Event>>) -> Result<(), String> {
    let Some((&first, _)) = answered.first_key_value() else { return Ok(()) };
    let mut reader = EventLogReader::open(events_dir, first).map_err(|e| e.to_string())?;
    let mut logged = Vec::new();
    for (&seq, events) in answered {
        loop {
            match reader.next(&mut logged).map_err(|e| format!("event record {seq}: {e}"))? {
                Some((logged_seq, _)) if logged_seq < seq => continue,
                Some((logged_seq, _)) if logged_seq == seq => break,
                _ => return Err(format!("the event log has no record {seq}, whose events a client was answered with")),
            }
        }
        if &logged != events {
            return Err(format!(
                "the events answered for seq {seq} differ from the event log: {events:?} vs {logged:?}"
            ));
        }
    }
    Ok(())
}

/// What `seqd snapshot DIR` does: rebuild the state offline, write it, prune old snapshots.
fn write_snapshot(data_dir: &DataDir) -> Result<(), String> {
    let (engine, _) = replay(data_dir, ReplayOptions { use_snapshot: true, ..ReplayOptions::default() })
        .map_err(|e| e.to_string())?;
    data_dir.snapshots().write(&engine).map_err(|e| e.to_string())?;
    data_dir.snapshots().prune(SNAPSHOTS_KEPT).map_err(|e| e.to_string())?;
    Ok(())
}
