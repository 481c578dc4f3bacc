//! Helpers of the cluster tests (`tests/cluster.rs`), thin over `seqd::testkit::cluster` (which
//! the benchmark shares): a cluster of `seqd run` processes in a temporary directory, one test
//! at a time; the venue; a load thread that follows the leader and records every
//! acknowledgement; keyed commands; the journals read back and checked against those
//! acknowledgements.
#![allow(dead_code)]

pub use seqd::testkit::cluster::*;

use seqd::client::cluster::{ClusterClient, ClusterConfig};
use seqd::client::{Client, ClientError, Outcome};
use seqd::engine::{AccountId, Command, Event, NewOrder, OrderType, RejectReason, Seq, Side, StpMode, TimeInForce};
use seqd::protocol::Message;
use seqd::storage::event_log::EventLogReader;
use seqd::storage::journal::format::{decode_slot, parse_segment_file_name, Slot, SEGMENT_HEADER_LEN_BYTES};
use seqd::storage::journal::JournalReader;
use seqd::storage::replay::DataDir;
use seqd::testkit::workload::{btc_usdt_spec, BTC, BTC_USDT, LOT, MID_TICKS, TICK, USDT};
use seqd::wire::codec;
use std::collections::{BTreeMap, HashMap};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Long enough for an election or a restart of a debug build on a loaded 2-core machine.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(30);
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(120);
/// A load connection that hears nothing for this long assumes its node is gone (a killed or
/// paused node's QUIC connection otherwise lingers until its idle timeout).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// USDT (scale 6) deposited into each venue account at set-up: 1,000,000 USDT.
pub const FUNDING_USDT_MINOR: i64 = 1_000_000_000_000;
/// Accounts of the venue (all funded).
pub const ACCOUNTS: u64 = 4;

/// Three nodes each spawn their own threads; two clusters at once on 2 cores would blur the
/// election timeouts. One test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A started cluster in a temporary directory, kept (and named on stderr) when the test fails.
pub struct TestCluster {
    cluster: Option<LocalCluster>,
    dir: Option<tempfile::TempDir>,
    _serial: MutexGuard<'static, ()>,
}

impl Deref for TestCluster {
    type Target = LocalCluster;
    fn deref(&self) -> &LocalCluster {
        self.cluster.as_ref().expect("present until drop")
    }
}

impl DerefMut for TestCluster {
    fn deref_mut(&mut self) -> &mut LocalCluster {
        self.cluster.as_mut().expect("present until drop")
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        drop(self.cluster.take());
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                eprintln!("the cluster's directory (configs, data, node logs n<id>.log): {}", dir.keep().display());
            }
        }
    }
}

/// Starts a cluster of `options` and waits for its leader.
pub fn start(options: ClusterOptions) -> TestCluster {
    let serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let exe = Path::new(env!("CARGO_BIN_EXE_seqd"));
    let cluster = LocalCluster::start(exe, dir.path(), options).unwrap_or_else(|e| panic!("cluster start: {e}"));
    TestCluster { cluster: Some(cluster), dir: Some(dir), _serial: serial }
}

impl TestCluster {
    /// The leader the live nodes agree on.
    pub fn leader(&mut self) -> u64 {
        let leader = self.wait_leader(LEADER_TIMEOUT);
        leader.unwrap_or_else(|e| panic!("{e}{}", self.exits()))
    }

    pub fn converged(&mut self) -> Seq {
        let converged = self.wait_converged(CONVERGE_TIMEOUT);
        converged.unwrap_or_else(|e| panic!("{e}{}", self.exits()))
    }

    /// Nodes that exited on their own, for a failure message (a node signalled by something
    /// outside the test shows up here too).
    fn exits(&mut self) -> String {
        self.exited_on_their_own().iter().map(|exit| format!("\n{exit}")).collect()
    }

    /// Waits until the nodes have converged, stops every node (SIGTERM; each must exit with
    /// success) and checks that all their data directories replay to the same state at the
    /// sequence they reported; returns that sequence.
    pub fn stop_and_compare(&mut self) -> Seq {
        let last_seq = self.converged();
        self.stop_all().unwrap_or_else(|e| panic!("stop: {e}"));
        self.equal_state_hashes(last_seq).unwrap_or_else(|e| panic!("{e}"));
        last_seq
    }

    /// Every node's input journal: the acknowledged commands each at its sequence, and no
    /// command applied twice.
    pub fn check_journals(&self, acked: &[(Seq, Command)]) {
        for id in self.ids() {
            let journal = journal_commands(self.data_dir(id)).unwrap_or_else(|e| panic!("node {id}: {e}"));
            check_acknowledged(&journal, acked).unwrap_or_else(|e| panic!("node {id}: {e}"));
            check_applied_once(self.data_dir(id)).unwrap_or_else(|e| panic!("node {id}: {e}"));
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Creates BTC, USDT and BTC/USDT (no fees), accounts 1..=ACCOUNTS funded with USDT, through
/// the leader; returns the acknowledgements.
pub async fn set_up_venue(view: &ClusterView) -> Vec<(Seq, Command)> {
    let (_, mut admin) = view.connect_leader("admin", LEADER_TIMEOUT).await.unwrap();
    let mut setup = vec![
        Command::CreateAsset { asset: BTC, scale: 8 },
        Command::CreateAsset { asset: USDT, scale: 6 },
        Command::CreateSymbol(btc_usdt_spec(0, 0)),
    ];
    for account in 1..=ACCOUNTS {
        setup.push(Command::CreateAccount { account: AccountId(account), parent: AccountId::NONE, owner: account });
        setup.push(Command::Deposit {
            account: AccountId(account),
            asset: USDT,
            amount: FUNDING_USDT_MINOR,
            external_ref: account,
        });
    }
    let mut acked = Vec::new();
    for command in setup {
        let outcome = admin.command(command).await.unwrap_or_else(|e| panic!("set-up {command:?}: {e}"));
        assert_eq!(outcome.rejected(), None, "{command:?}");
        acked.push((outcome.seq, command));
    }
    admin.close().await;
    acked
}

/// A resting buy of one lot, `ticks_below_mid` under the mid (only buys are sent: nothing
/// trades).
pub fn buy(account: u64, ticks_below_mid: i64, client_order_id: u64) -> Command {
    Command::PlaceOrder(NewOrder {
        account: AccountId(account),
        symbol: BTC_USDT,
        client_order_id,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        stp: StpMode::CancelIncoming,
        price: (MID_TICKS - ticks_below_mid) * TICK,
        stop_price: 0,
        qty: LOT,
        quote_budget: 0,
    })
}

/// The i-th command of a load on `account`, each different from every other (references and
/// client order ids from `base + i`): a deposit of 1 USDT minor unit, a resting buy, the
/// cancel of that buy by client order id.
pub fn load_command(account: u64, base: u64, i: u64) -> Command {
    let reference = base + i;
    match i % 3 {
        0 => Command::Deposit { account: AccountId(account), asset: USDT, amount: 1, external_ref: reference },
        1 => buy(account, 1 + (i % 64) as i64, reference),
        _ => Command::CancelByClientId { account: AccountId(account), client_order_id: reference - 1 },
    }
}

/// What a load thread was told.
#[derive(Debug, Default)]
pub struct LoadRecord {
    /// (seq, command) of every `Accepted`: the command is committed.
    pub acked: Vec<(Seq, Command)>,
    /// Commands whose outcome is unknown (931 in flight, a lost connection, stopped).
    pub unknown: u64,
    /// Gateway refusals (nothing sequenced) by code, 931 included.
    pub refused: BTreeMap<u16, u64>,
    /// Connections made (the first included).
    pub connections: u64,
}

/// A thread keeping `window` commands in flight on the leader, following it across failovers:
/// on a 931, a lost connection or a silence of `ANSWER_TIMEOUT` it reconnects to whichever
/// node then claims to lead. It never resends a command whose outcome it does not know, so
/// every command is sequenced at most once unless the cluster duplicates it.
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    handle: Option<JoinHandle<Result<LoadRecord, String>>>,
}

impl Load {
    pub fn start(view: ClusterView, account: u64, base: u64, window: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let (stop_flag, acked_count) = (stop.clone(), acked.clone());
        let handle = std::thread::spawn(move || {
            runtime().block_on(drive(view, account, base, window, &stop_flag, &acked_count))
        });
        Load { stop, acked, handle: Some(handle) }
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits until `more` commands past `since` are acknowledged.
    pub fn wait_acked(&self, since: u64, more: u64, timeout: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let acked = self.acked();
            if acked >= since + more {
                return Ok(acked);
            }
            if self.handle.as_ref().is_some_and(|h| h.is_finished()) {
                return Err(format!("the load thread ended after {acked} acknowledgements"));
            }
            if Instant::now() >= deadline {
                return Err(format!("{} commands acknowledged in {timeout:?}, {more} wanted", acked - since));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stop(mut self) -> LoadRecord {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("joined once");
        handle.join().expect("the load thread panicked").unwrap_or_else(|e| panic!("load: {e}"))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn connect_until_stopped(view: &ClusterView, stop: &AtomicBool) -> Result<Option<Client>, String> {
    let deadline = Instant::now() + LEADER_TIMEOUT;
    while !stop.load(Ordering::Relaxed) {
        match view.connect_leader("admin", Duration::from_secs(1)).await {
            Ok((_, client)) => return Ok(Some(client)),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
    }
    Ok(None)
}

async fn drive(
    view: ClusterView,
    account: u64,
    base: u64,
    window: usize,
    stop: &AtomicBool,
    acked: &AtomicU64,
) -> Result<LoadRecord, String> {
    let mut record = LoadRecord::default();
    let mut next = 0u64;
    'connections: while let Some(mut client) = connect_until_stopped(&view, stop).await? {
        record.connections += 1;
        // Request id to (command, its sequence once accepted).
        let mut in_flight: HashMap<u64, (Command, Option<Seq>)> = HashMap::new();
        loop {
            if stop.load(Ordering::Relaxed) {
                record.unknown += in_flight.len() as u64;
                break 'connections;
            }
            while in_flight.len() < window {
                let command = load_command(account, base, next);
                next += 1;
                match client.send(&Message::Command(command)).await {
                    Ok(request_id) => {
                        in_flight.insert(request_id, (command, None));
                    }
                    Err(_) => {
                        record.unknown += in_flight.len() as u64 + 1;
                        continue 'connections;
                    }
                }
            }
            let (request_id, message) = match tokio::time::timeout(ANSWER_TIMEOUT, client.next_message()).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) | Err(_) => {
                    record.unknown += in_flight.len() as u64;
                    continue 'connections;
                }
            };
            if request_id == 0 {
                continue;
            }
            let Some(pending) = in_flight.get_mut(&request_id) else {
                return Err(format!("answer to unknown request {request_id}: {message:?}"));
            };
            match message {
                Message::Accepted { seq } if pending.1.is_none() => {
                    pending.1 = Some(seq);
                    record.acked.push((seq, pending.0));
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Message::Events { seq, more, .. } if pending.1 == Some(seq) => {
                    if !more {
                        in_flight.remove(&request_id);
                    }
                }
                Message::Error { code, .. } if pending.1.is_none() => {
                    in_flight.remove(&request_id);
                    *record.refused.entry(code).or_default() += 1;
                    if code == 931 {
                        // Not the leader (any more): this command was not sequenced here or
                        // its outcome is unknown; the others in flight will be refused too.
                        record.unknown += 1 + in_flight.len() as u64;
                        continue 'connections;
                    }
                }
                other => return Err(format!("unexpected answer to request {request_id}: {other:?}")),
            }
        }
    }
    Ok(record)
}

/// Most reconnections a `blast` accepts: it is for a phase without failures, but an election
/// may still happen (a loaded machine, a stopped peer).
const BLAST_RECONNECTS_MAX: u32 = 5;

/// Sends `count` load commands (from index `first`) on the leader with `window` in flight, in
/// batches; returns the acknowledgements. On a 931 or a lost connection it reconnects to the
/// leader (the commands in flight are of unknown outcome and not resent) and says so on
/// stderr; anything else but a full answer fails the test.
pub async fn blast(
    view: &ClusterView,
    account: u64,
    base: u64,
    first: u64,
    count: u64,
    window: usize,
) -> Vec<(Seq, Command)> {
    let mut acked = Vec::with_capacity(count as usize);
    let (mut next, end) = (first, first + count);
    // Answered or of unknown outcome.
    let mut resolved = 0;
    let mut reconnects = 0;
    'connections: while resolved < count {
        let (_, mut client) = view.connect_leader("admin", LEADER_TIMEOUT).await.unwrap();
        let mut in_flight: HashMap<u64, Command> = HashMap::new();
        let mut lost = |in_flight: &HashMap<u64, Command>, why: String| {
            reconnects += 1;
            assert!(reconnects <= BLAST_RECONNECTS_MAX, "blast: {reconnects} reconnections, the last for {why}");
            eprintln!("blast: reconnecting to the leader after {why}; {} commands of unknown outcome", in_flight.len());
            in_flight.len() as u64
        };
        while resolved < count {
            let room = (window - in_flight.len()).min((end - next) as usize);
            if room > 0 {
                let commands: Vec<Command> =
                    (next..next + room as u64).map(|i| load_command(account, base, i)).collect();
                let messages: Vec<Message> = commands.iter().map(|&c| Message::Command(c)).collect();
                next += room as u64;
                match client.send_batch(&messages).await {
                    Ok(first_id) => {
                        in_flight.extend(commands.into_iter().enumerate().map(|(k, c)| (first_id + k as u64, c)))
                    }
                    Err(e) => {
                        resolved += lost(&in_flight, e.to_string()) + room as u64;
                        continue 'connections;
                    }
                }
            }
            let (request_id, message) = match tokio::time::timeout(ANSWER_TIMEOUT, client.next_message()).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    resolved += lost(&in_flight, e.to_string());
                    continue 'connections;
                }
                Err(_) => {
                    resolved += lost(&in_flight, format!("no answer within {ANSWER_TIMEOUT:?}"));
                    continue 'connections;
                }
            };
            if request_id == 0 {
                continue;
            }
            match message {
                Message::Accepted { seq } => acked.push((seq, in_flight[&request_id])),
                Message::Events { more: false, .. } => {
                    in_flight.remove(&request_id);
                    resolved += 1;
                }
                Message::Events { more: true, .. } => {}
                Message::Error { code: 931, message } => {
                    resolved += lost(&in_flight, format!("931 {message:?}"));
                    continue 'connections;
                }
                other => panic!("unexpected answer to request {request_id}: {other:?}"),
            }
        }
        client.close().await;
    }
    acked
}

/// A command's journal form: (kind, payload).
fn encoded(command: &Command) -> (u16, Vec<u8>) {
    let mut payload = Vec::new();
    let kind = codec::encode_command(command, &mut payload);
    (kind, payload)
}

/// Each acknowledged command is in `journal` at the sequence it was acknowledged with.
pub fn check_acknowledged(journal: &BTreeMap<Seq, Command>, acked: &[(Seq, Command)]) -> Result<(), String> {
    let wrong: Vec<String> = acked
        .iter()
        .filter(|(seq, command)| journal.get(seq) != Some(command))
        .take(10)
        .map(|(seq, command)| format!("seq {seq}: acknowledged {command:?}, journaled {:?}", journal.get(seq)))
        .collect();
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!("acknowledged commands not in the journal as acknowledged (first 10): {}", wrong.join("; ")))
    }
}

/// No command is in `journal` twice: every command sent is different, so a second copy is a
/// command sequenced (and applied) twice.
pub fn check_no_duplicates(journal: &BTreeMap<Seq, Command>) -> Result<(), String> {
    let mut seen: HashMap<(u16, Vec<u8>), Seq> = HashMap::with_capacity(journal.len());
    for (&seq, command) in journal {
        if let Some(first) = seen.insert(encoded(command), seq) {
            return Err(format!("{command:?} is in the journal twice: at {first} and at {seq}"));
        }
    }
    Ok(())
}

/// No command of the data directory's input journal was applied twice. Every command the
/// tests send is different, so a second copy is either a resend under the same request key,
/// which the engine must have rejected as `DuplicateRequest` (its event-log record says so),
/// or a command sequenced twice.
pub fn check_applied_once(data_dir: &Path) -> Result<(), String> {
    let mut seen: HashMap<(u16, Vec<u8>), (Seq, u64)> = HashMap::new();
    for (seq, (key, command)) in journal_records(data_dir)? {
        let Some((first, first_key)) = seen.insert(encoded(&command), (seq, key)) else { continue };
        if key == 0 || key != first_key {
            return Err(format!(
                "{command:?} is in the journal twice, at {first} and {seq} (keys {first_key:#x}, {key:#x})"
            ));
        }
        let events = logged_events(data_dir, seq)?;
        let duplicate = Event::Rejected { reason: RejectReason::DuplicateRequest };
        if events != [duplicate] {
            return Err(format!("{command:?} resent under key {key:#x} at {seq} (first at {first}) was not refused as a duplicate: {events:?}"));
        }
        seen.insert(encoded(&command), (first, first_key));
    }
    Ok(())
}

/// What the client-library load was told.
#[derive(Debug, Default)]
pub struct ClientLoadRecord {
    /// (seq, command) of every delivered command (for `AppliedBefore`, the rejection's seq).
    pub delivered: Vec<(Seq, Command)>,
    pub applied_before: u64,
    /// Commands that came back with an error (outcome unknown unless keyed).
    pub errors: u64,
    pub first_error: Option<String>,
    /// Whether the library sent request keys.
    pub keyed: bool,
    pub resends: u64,
}

/// A thread sending deposits one at a time through the client library's leader-following
/// `ClusterClient` (`seqd::client::cluster`), as the admin (deposits are admin commands),
/// recording what it was told. A refusal fails it; a lost connection (a command of unknown
/// outcome while the library sends no request keys) is counted.
pub struct ClientLoad {
    stop: Arc<AtomicBool>,
    delivered: Arc<AtomicU64>,
    handle: Option<JoinHandle<Result<ClientLoadRecord, String>>>,
}

impl ClientLoad {
    pub fn start(view: ClusterView, account: u64, base: u64) -> ClientLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let delivered = Arc::new(AtomicU64::new(0));
        let (stop_flag, count) = (stop.clone(), delivered.clone());
        let handle =
            std::thread::spawn(move || runtime().block_on(drive_client(view, account, base, &stop_flag, &count)));
        ClientLoad { stop, delivered, handle: Some(handle) }
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    pub fn stop(mut self) -> ClientLoadRecord {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("joined once");
        handle.join().expect("the client load thread panicked").unwrap_or_else(|e| panic!("client load: {e}"))
    }
}

impl Drop for ClientLoad {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn drive_client(
    view: ClusterView,
    account: u64,
    base: u64,
    stop: &AtomicBool,
    count: &AtomicU64,
) -> Result<ClientLoadRecord, String> {
    let credentials = view.credentials("admin")?;
    let mut config = ClusterConfig::new(view.nodes.iter().map(|n| n.client.to_string()).collect());
    config.failover_timeout = LEADER_TIMEOUT;
    let mut client = ClusterClient::connect(config, &credentials.ca, &credentials.cert, &credentials.key)
        .await
        .map_err(|e| e.to_string())?;
    let mut record = ClientLoadRecord::default();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let command = Command::Deposit { account: AccountId(account), asset: USDT, amount: 1, external_ref: base + i };
        i += 1;
        match client.command(command).await {
            Ok(delivered) => {
                let outcome = delivered.outcome();
                if delivered.applied_before() {
                    record.applied_before += 1;
                } else if let Some(code) = outcome.rejected() {
                    return Err(format!("{command:?} rejected with {code}"));
                }
                record.delivered.push((outcome.seq, command));
                count.fetch_add(1, Ordering::Relaxed);
            }
            Err(e @ ClientError::Refused { .. }) => return Err(format!("{command:?}: {e}")),
            Err(e) => {
                record.errors += 1;
                record.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    record.keyed = client.keyed();
    record.resends = client.resends();
    client.close().await;
    Ok(record)
}

// ---------------------------------------------------------------------------------------------
// Request keys and the journals

/// Sends `command` under `request_key` (`KeyedCommand`, protocol version 2) and waits for its
/// outcome; `Refused` for an `Error`.
/// The answer to request `request_id` on `client`, or `None` when none comes within `timeout`
/// (or the connection ends): what a client waiting on a node sees.
pub async fn answer_within(client: &mut Client, request_id: u64, timeout: Duration) -> Option<Message> {
    let answer = async {
        loop {
            match client.next_message().await {
                Ok((id, message)) if id == request_id => return Some(message),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(timeout, answer).await.unwrap_or_default()
}

pub async fn keyed_command(client: &mut Client, request_key: u64, command: Command) -> Result<Outcome, ClientError> {
    let request_id = client.send(&Message::KeyedCommand { request_key, command }).await?;
    keyed_outcome(client, request_id).await
}

/// The outcome of request `request_id` (a keyed command already sent).
pub async fn keyed_outcome(client: &mut Client, request_id: u64) -> Result<Outcome, ClientError> {
    let mut seq = None;
    let mut events = Vec::new();
    loop {
        let (id, message) = client.next_message().await?;
        if id != request_id {
            continue;
        }
        match (message, seq) {
            (Message::Accepted { seq: s }, None) => seq = Some(s),
            (Message::Events { seq: s, more, events: part }, Some(accepted)) if s == accepted => {
                events.extend(part);
                if !more {
                    return Ok(Outcome { seq: accepted, events });
                }
            }
            (Message::Error { code, message }, _) => return Err(ClientError::Refused { code, message }),
            (other, _) => return Err(ClientError::Protocol(format!("unexpected answer {other:?}"))),
        }
    }
}

/// Every record of the input journal of `data_dir`, decoded: sequence to command (a keyed
/// record's command without its key). An error for a record that does not decode.
pub fn journal_commands(data_dir: &Path) -> Result<BTreeMap<Seq, Command>, String> {
    Ok(journal_records(data_dir)?.into_iter().map(|(seq, (_, command))| (seq, command)).collect())
}

/// Every record of the input journal of `data_dir`, decoded: sequence to (request key, 0 for
/// none; command).
pub fn journal_records(data_dir: &Path) -> Result<BTreeMap<Seq, (u64, Command)>, String> {
    let input = DataDir::new(data_dir).input();
    let first_seq = first_journal_seq(&input)?.unwrap_or(1);
    let mut reader = JournalReader::open(&input, first_seq).map_err(|e| format!("{}: {e}", input.display()))?;
    let mut records = BTreeMap::new();
    while let Some(record) = reader.next().map_err(|e| format!("{}: {e}", input.display()))? {
        let decoded = codec::decode_input(record.kind, record.payload)
            .map_err(|e| format!("record {} of {}: {e}", record.seq, input.display()))?;
        records.insert(record.seq, decoded);
    }
    Ok(records)
}

/// The events the event log of `data_dir` holds for `seq`.
pub fn logged_events(data_dir: &Path, seq: Seq) -> Result<Vec<Event>, String> {
    let events_dir = DataDir::new(data_dir).events();
    let failed = |e: String| format!("event record {seq} of {}: {e}", events_dir.display());
    let mut reader = EventLogReader::open(&events_dir, seq).map_err(|e| failed(e.to_string()))?;
    let mut events = Vec::new();
    match reader.next(&mut events).map_err(|e| failed(e.to_string()))? {
        Some((logged, _)) if logged == seq => Ok(events),
        other => Err(failed(format!("not found (read {other:?})"))),
    }
}

/// The journal's segment files, in sequence order.
pub fn segment_files(journal_dir: &Path) -> Result<Vec<(u64, PathBuf)>, String> {
    let entries = std::fs::read_dir(journal_dir).map_err(|e| format!("{}: {e}", journal_dir.display()))?;
    let mut segments: Vec<(u64, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let first_seq = parse_segment_file_name(entry.file_name().to_str()?)?;
            Some((first_seq, entry.path()))
        })
        .collect();
    segments.sort();
    Ok(segments)
}

/// The first sequence of the journal in `journal_dir` (a node that caught up by snapshot
/// keeps no records before it), `None` without segments.
pub fn first_journal_seq(journal_dir: &Path) -> Result<Option<Seq>, String> {
    if !journal_dir.exists() {
        return Ok(None);
    }
    Ok(segment_files(journal_dir)?.first().map(|(first_seq, _)| *first_seq))
}

/// Where a record lies in a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordLocation {
    pub seq: Seq,
    /// Of the record's header, from the start of the file.
    pub offset: u64,
    pub payload_len_bytes: usize,
}

/// The records of one segment file, in order, up to its end or its first invalid slot.
pub fn records_in_segment(file: &Path) -> Result<Vec<RecordLocation>, String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let mut offset = SEGMENT_HEADER_LEN_BYTES;
    let mut records = Vec::new();
    while let Slot::Record { record, len_bytes } = decode_slot(&bytes, offset) {
        records.push(RecordLocation {
            seq: record.seq,
            offset: offset as u64,
            payload_len_bytes: record.payload.len(),
        });
        offset += len_bytes;
    }
    Ok(records)
}

/// A record in the middle of the journal in `journal_dir` (of its first segment holding at
/// least three records, the middle one): the file and the record's location.
pub fn middle_record(journal_dir: &Path) -> Result<(PathBuf, RecordLocation), String> {
    for (_, file) in segment_files(journal_dir)? {
        let records = records_in_segment(&file)?;
        if records.len() >= 3 {
            return Ok((file, records[records.len() / 2]));
        }
    }
    Err(format!("no segment of {} holds three records", journal_dir.display()))
}

/// The environment variable `name` as a number, else `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
