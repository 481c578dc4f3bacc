//! The TiDB sink against a real MySQL-protocol server (MariaDB 10.11 from tools/services.sh on
//! 127.0.0.1:3306, or `SEQD_TEST_MYSQL_URL`). Each test uses its own database
//! (`seqd_test_<run>_tidb_<tag>_<n>`, testkit::test_db), dropped at the end.
//!
//! The expected rows are rebuilt here from the events themselves (not through `rows.rs`) and,
//! for the current state, from the engine, then compared with every table row by row.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row, Value};
use seqd::engine::*;
use seqd::pipeline::sequencer::{Sequencer, SequencerConfig};
use seqd::replicate::reconcile::{Mirror, MirrorOrder, MirrorState};
use seqd::replicate::rows::utc_datetime_micros;
use seqd::replicate::tidb::{TidbConfig, TidbError, TidbSink};
use seqd::replicate::{
    run, Batch, BatchBuilder, BatchLimits, Catalog, ReplicatorStats, Resume, RunOptions, Sink, SinkError,
};
use seqd::storage::journal::Durability;
use seqd::storage::replay::{apply_journal, DataDir};
use seqd::testkit::scenario::{scripted_session, START_TIMESTAMP_NS};
use seqd::testkit::workload::{exchange_core_mix, WorkloadSpec, USDT};

// ------------------------------------------------------------------------------------------
// A database of its own per test.

fn server_url() -> String {
    std::env::var("SEQD_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

struct TestDb {
    name: String,
}

impl TestDb {
    fn new(tag: &str) -> TestDb {
        TestDb { name: seqd::testkit::test_db::database_name(&format!("tidb_{tag}")) }
    }

    fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    /// A plain connection to the test database (created if the sink has not yet).
    async fn conn(&self) -> Conn {
        let mut conn = Conn::new(Opts::from_url(&server_url()).unwrap()).await.unwrap();
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{}`", self.name)).await.unwrap();
        conn.query_drop(format!("USE `{}`", self.name)).await.unwrap();
        conn
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (server_url(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = Conn::new(Opts::from_url(&url).unwrap()).await {
                    let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await;
                    let _ = conn.disconnect().await;
                }
            });
        })
        .join();
    }
}

// ------------------------------------------------------------------------------------------
// An event log: the scripted session, then a seeded workload moved past its ids, then a few
// commands that leave a pending withdrawal and a frozen account.

struct Log {
    _dir: tempfile::TempDir,
    events_dir: std::path::PathBuf,
    engine: Engine,
    records: Vec<(Seq, u64, Vec<Event>)>,
}

impl Log {
    fn last_seq(&self) -> Seq {
        self.records.last().unwrap().0
    }
}

/// The workload's ids moved past the scripted session's: accounts and owners by 1000, order
/// and withdrawal ids (sequences) by the session's length, deposit references by 10^6. Its
/// symbol already exists, so its creation becomes an update to the workload's spec.
fn shifted(command: Command, seq_offset: u64) -> Command {
    let a = |account: AccountId| if account == AccountId::NONE { account } else { AccountId(account.0 + 1_000) };
    match command {
        Command::CreateSymbol(spec) => Command::UpdateSymbol(spec),
        Command::CreateAccount { account, parent, owner } => {
            Command::CreateAccount { account: a(account), parent: a(parent), owner: owner + 1_000 }
        }
        Command::SetAccountStatus { account, status } => Command::SetAccountStatus { account: a(account), status },
        Command::Deposit { account, asset, amount, external_ref } => {
            Command::Deposit { account: a(account), asset, amount, external_ref: external_ref + 1_000_000 }
        }
        Command::WithdrawRequest { account, asset, amount, client_ref } => {
            Command::WithdrawRequest { account: a(account), asset, amount, client_ref }
        }
        Command::WithdrawApprove { withdrawal_id } => {
            Command::WithdrawApprove { withdrawal_id: withdrawal_id + seq_offset }
        }
        Command::WithdrawReject { withdrawal_id } => {
            Command::WithdrawReject { withdrawal_id: withdrawal_id + seq_offset }
        }
        Command::Transfer { from, to, asset, amount, client_ref } => {
            Command::Transfer { from: a(from), to: a(to), asset, amount, client_ref }
        }
        Command::PlaceOrder(order) => Command::PlaceOrder(NewOrder { account: a(order.account), ..order }),
        Command::CancelOrder { account, order_id } => {
            Command::CancelOrder { account: a(account), order_id: OrderId(order_id.0 + seq_offset) }
        }
        Command::CancelByClientId { account, client_order_id } => {
            Command::CancelByClientId { account: a(account), client_order_id }
        }
        Command::CancelAll { account, symbol } => Command::CancelAll { account: a(account), symbol },
        Command::AmendOrder { account, order_id, price, qty } => {
            Command::AmendOrder { account: a(account), order_id: OrderId(order_id.0 + seq_offset), price, qty }
        }
        other => other,
    }
}

fn write_log(spec: WorkloadSpec) -> Log {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let mut commands = scripted_session();
    let offset = commands.len() as u64;
    let workload = exchange_core_mix(spec);
    commands.extend(workload.setup.iter().chain(&workload.commands).map(|c| shifted(*c, offset)));
    commands.push(Command::WithdrawRequest { account: AccountId(12), asset: USDT, amount: 10_000_000, client_ref: 77 });
    commands.push(Command::SetAccountStatus { account: AccountId(12), status: AccountStatus::Frozen });
    commands.push(Command::Transfer {
        from: AccountId(1),
        to: AccountId(11),
        asset: USDT,
        amount: 1_000_000,
        client_ref: 99,
    });

    let config = SequencerConfig { segment_size_bytes: 8 << 20, durability: Durability::PageCache };
    let (mut sequencer, _) = Sequencer::open(&data_dir, config).unwrap();
    for (i, command) in commands.iter().enumerate() {
        // Microseconds apart, with nanoseconds the DATETIME(6) columns drop.
        sequencer.submit(START_TIMESTAMP_NS + i as u64 * 1_000 + i as u64 % 7, command).unwrap();
        if i % 1_000 == 0 {
            sequencer.commit().unwrap();
        }
    }
    sequencer.commit().unwrap();
    let live = sequencer.engine().clone();
    drop(sequencer);

    let mut records = Vec::new();
    let mut engine = Engine::new();
    apply_journal(&mut engine, &data_dir.input(), None, false, |seq, ts, events| {
        records.push((seq, ts, events.to_vec()))
    })
    .unwrap();
    assert_eq!(engine.state_hash(), live.state_hash());
    assert_eq!(records.len(), commands.len());
    Log { events_dir: data_dir.events(), _dir: dir, engine, records }
}

// ------------------------------------------------------------------------------------------
// The expected tables, from the events (and the engine for the current state).

type Table = Vec<Vec<String>>;

/// A DECIMAL(38,18) as the server prints it, computed apart from the sink's formatter.
fn dec(units: i64, scale: u8) -> String {
    let raw = units as i128 * 10i128.pow(18 - u32::from(scale));
    let sign = if raw < 0 { "-" } else { "" };
    let magnitude = raw.unsigned_abs();
    format!("{sign}{}.{:018}", magnitude / 10u128.pow(18), magnitude % 10u128.pow(18))
}

fn dt(ts_ns: u64) -> String {
    utc_datetime_micros(ts_ns)
}

fn s(value: impl ToString) -> String {
    value.to_string()
}

/// (seq, stamp in ns) of an event's record.
type At = (Seq, u64);
/// parent, owner, path, status, created, updated.
type AccountModel = (AccountId, u64, String, u8, At, At);
/// account, asset, amount, client_ref, status, requested, updated.
type WithdrawalModel = (AccountId, AssetId, i64, u64, u8, At, At);

#[derive(Default)]
struct Model {
    last: (Seq, u64),
    scales: BTreeMap<AssetId, u8>,
    pairs: BTreeMap<SymbolId, (AssetId, AssetId)>,
    assets: BTreeMap<AssetId, Vec<String>>,
    symbols: BTreeMap<SymbolId, Vec<String>>,
    accounts: BTreeMap<AccountId, AccountModel>,
    /// (account, asset) -> (available, held, seq, ts)
    balances: BTreeMap<(AccountId, AssetId), (i64, i64, Seq, u64)>,
    ledger: BTreeMap<(Seq, u32), Vec<String>>,
    ledger_sums: BTreeMap<(AccountId, AssetId), (i64, i64)>,
    /// order -> (first report (seq, ts), last report, its (seq, ts))
    orders: BTreeMap<OrderId, (At, OrderReport, At)>,
    trades: BTreeMap<TradeId, Vec<String>>,
    deposits: BTreeMap<Seq, Vec<String>>,
    withdrawals: BTreeMap<u64, WithdrawalModel>,
    transfers: BTreeMap<Seq, Vec<String>>,
}

impl Model {
    fn build(records: &[(Seq, u64, Vec<Event>)]) -> Model {
        let mut m = Model::default();
        for (seq, ts, events) in records {
            let (seq, ts) = (*seq, *ts);
            m.last = (seq, ts);
            for (idx, event) in events.iter().enumerate() {
                m.add(seq, idx as u32, ts, event);
            }
        }
        m
    }

    fn add(&mut self, seq: Seq, idx: u32, ts: u64, event: &Event) {
        match *event {
            Event::Rejected { .. } => {}
            Event::AssetCreated { asset, scale } => {
                self.scales.insert(asset, scale);
                self.assets.insert(asset, vec![s(asset), s(scale), s(seq), dt(ts)]);
            }
            Event::SymbolUpdated { spec, status } => {
                let (b, q) = (self.scales[&spec.base], self.scales[&spec.quote]);
                self.pairs.insert(spec.symbol, (spec.base, spec.quote));
                let row = vec![
                    s(spec.symbol),
                    s(spec.base),
                    s(spec.quote),
                    dec(spec.tick_size, q),
                    dec(spec.lot_size, b),
                    dec(spec.min_qty, b),
                    dec(spec.min_notional, q),
                    dec(spec.max_order_qty, b),
                    s(spec.maker_fee_ppm),
                    s(spec.taker_fee_ppm),
                    s(spec.price_band_bps),
                    s(status.as_u8()),
                    s(seq),
                    dt(ts),
                ];
                self.symbols.insert(spec.symbol, row);
            }
            Event::AccountCreated { account, parent, owner } => {
                let path = match self.accounts.get(&parent) {
                    Some(p) => format!("{}/{account}", p.2),
                    None => format!("/{account}"),
                };
                self.accounts.insert(account, (parent, owner, path, 0, (seq, ts), (seq, ts)));
            }
            Event::AccountStatusChanged { account, status } => {
                let a = self.accounts.get_mut(&account).unwrap();
                a.3 = status.as_u8();
                a.5 = (seq, ts);
            }
            Event::Ledger(e) => {
                let sc = self.scales[&e.asset];
                let row = vec![
                    s(seq),
                    s(idx),
                    s(e.account),
                    s(e.asset),
                    s(e.kind.as_u8()),
                    dec(e.available_delta, sc),
                    dec(e.held_delta, sc),
                    dec(e.available_after, sc),
                    dec(e.held_after, sc),
                    s(e.ref_kind.as_u8()),
                    s(e.ref_id),
                    dt(ts),
                ];
                self.ledger.insert((seq, idx), row);
                self.balances.insert((e.account, e.asset), (e.available_after, e.held_after, seq, ts));
                let sum = self.ledger_sums.entry((e.account, e.asset)).or_default();
                sum.0 += e.available_delta;
                sum.1 += e.held_delta;
            }
            Event::DepositCredited { account, asset, amount, external_ref } => {
                let row = vec![
                    s(seq),
                    s(idx),
                    s(account),
                    s(asset),
                    dec(amount, self.scales[&asset]),
                    s(external_ref),
                    dt(ts),
                ];
                assert!(self.deposits.insert(seq, row).is_none());
            }
            Event::WithdrawalUpdated { withdrawal_id, account, asset, amount, client_ref, status } => {
                let requested = self.withdrawals.get(&withdrawal_id).map_or((seq, ts), |w| w.5);
                self.withdrawals
                    .insert(withdrawal_id, (account, asset, amount, client_ref, status.as_u8(), requested, (seq, ts)));
            }
            Event::Transferred { from, to, asset, amount, client_ref } => {
                let sc = self.scales[&asset];
                let row = vec![s(seq), s(idx), s(from), s(to), s(asset), dec(amount, sc), s(client_ref), dt(ts)];
                assert!(self.transfers.insert(seq, row).is_none());
            }
            Event::Order(report) => {
                let first = self.orders.get(&report.order_id).map_or((seq, ts), |o| o.0);
                self.orders.insert(report.order_id, (first, report, (seq, ts)));
            }
            Event::Trade(t) => {
                let (base, quote) = self.pairs[&t.symbol];
                let (b, q) = (self.scales[&base], self.scales[&quote]);
                let row = vec![
                    s(t.trade_id),
                    s(t.symbol),
                    dec(t.price, q),
                    dec(t.qty, b),
                    dec(t.quote_qty, q),
                    s(t.maker_order),
                    s(t.taker_order),
                    s(t.maker_account),
                    s(t.taker_account),
                    s(t.maker_side.as_u8()),
                    dec(t.maker_fee, q),
                    dec(t.taker_fee, q),
                    s(seq),
                    s(idx),
                    dt(ts),
                ];
                assert!(self.trades.insert(t.trade_id, row).is_none());
            }
        }
    }

    /// Checks the model's current state against the engine's: balances, live orders, accounts.
    fn check_against_engine(&self, engine: &Engine) {
        for (&(account, asset), &(available, held, _, _)) in &self.balances {
            let b = engine.balance_of(account, asset).unwrap();
            assert_eq!((b.available, b.held), (available, held), "balance of {account}/{asset}");
            assert_eq!(self.ledger_sums[&(account, asset)], (available, held), "ledger sums of {account}/{asset}");
        }
        for (&order_id, (_, last, _)) in &self.orders {
            match engine.order(order_id) {
                Some(live) => {
                    assert!(!last.status.is_terminal(), "order {order_id} is live but last reported {:?}", last.status);
                    let fields = |r: &OrderReport| {
                        (r.status, r.price, r.qty, r.filled_qty, r.remaining_qty, r.filled_quote, r.fees_paid)
                    };
                    assert_eq!(fields(&live), fields(last), "order {order_id}");
                }
                None => assert!(last.status.is_terminal(), "order {order_id} is gone but last reported {:?}", last),
            }
        }
        let parents: BTreeMap<AccountId, AccountId> = engine.account_parents().collect();
        let model_parents: BTreeMap<AccountId, AccountId> = self.accounts.iter().map(|(&a, v)| (a, v.0)).collect();
        assert_eq!(parents, model_parents);
    }

    /// Every table as `dump` reads it, keyed and ordered like its primary key.
    fn tables(&self) -> BTreeMap<&'static str, Table> {
        let mut t: BTreeMap<&'static str, Table> = BTreeMap::new();
        t.insert("assets", self.assets.values().cloned().collect());
        t.insert("symbols", self.symbols.values().cloned().collect());
        t.insert(
            "accounts",
            self.accounts
                .iter()
                .map(|(&a, (parent, owner, path, status, c, u))| {
                    vec![s(a), s(parent), s(owner), path.clone(), s(status), s(c.0), dt(c.1), s(u.0), dt(u.1)]
                })
                .collect(),
        );
        t.insert(
            "balances",
            self.balances
                .iter()
                .map(|(&(account, asset), &(available, held, seq, ts))| {
                    let sc = self.scales[&asset];
                    vec![s(account), s(asset), dec(available, sc), dec(held, sc), s(seq), dt(ts)]
                })
                .collect(),
        );
        t.insert("ledger_entries", self.ledger.values().cloned().collect());
        t.insert(
            "orders",
            self.orders
                .values()
                .map(|(first, r, last)| {
                    let (base, quote) = self.pairs[&r.symbol];
                    let (b, q) = (self.scales[&base], self.scales[&quote]);
                    vec![
                        s(r.order_id),
                        s(r.client_order_id),
                        s(r.account),
                        s(r.symbol),
                        s(r.side.as_u8()),
                        s(r.order_type.as_u8()),
                        s(r.tif.as_u8()),
                        dec(r.price, q),
                        dec(r.qty, b),
                        dec(r.filled_qty, b),
                        dec(r.remaining_qty, b),
                        dec(r.filled_quote, q),
                        dec(r.fees_paid, q),
                        s(r.status.as_u8()),
                        s(r.exec.as_u8()),
                        s(first.0),
                        dt(first.1),
                        s(last.0),
                        dt(last.1),
                    ]
                })
                .collect(),
        );
        t.insert("trades", self.trades.values().cloned().collect());
        t.insert("deposits", self.deposits.values().cloned().collect());
        t.insert(
            "withdrawals",
            self.withdrawals
                .iter()
                .map(|(&id, &(account, asset, amount, client_ref, status, requested, updated))| {
                    vec![
                        s(id),
                        s(account),
                        s(asset),
                        dec(amount, self.scales[&asset]),
                        s(client_ref),
                        s(status),
                        s(requested.0),
                        dt(requested.1),
                        s(updated.0),
                        dt(updated.1),
                    ]
                })
                .collect(),
        );
        t.insert("transfers", self.transfers.values().cloned().collect());
        t.insert(
            "replicator_checkpoint",
            if self.last.0 == 0 { vec![] } else { vec![vec![s("tidb"), s(self.last.0), dt(self.last.1)]] },
        );
        t
    }

    /// What `read_state` must return, from the engine (balances, open orders) and the ledger.
    fn mirror_state(&self, engine: &Engine) -> MirrorState {
        let mut state = MirrorState { checkpoint_seq: self.last.0, ..MirrorState::default() };
        for &(account, asset) in self.balances.keys() {
            let b = engine.balance_of(account, asset).unwrap();
            state.balances.insert((account, asset), (b.available, b.held));
        }
        state.ledger_sums = self.ledger_sums.clone();
        for &account in self.accounts.keys() {
            for o in engine.open_orders(account).unwrap() {
                let order = MirrorOrder {
                    account: o.account,
                    symbol: o.symbol,
                    side: o.side,
                    status: o.status,
                    price: o.price,
                    remaining_qty: o.remaining_qty,
                    filled_qty: o.filled_qty,
                };
                state.open_orders.insert(o.order_id, order);
            }
        }
        state
    }
}

/// Columns read back per table, in the order `Model::tables` lists them.
const DUMPS: &[(&str, &str)] = &[
    ("assets", "SELECT asset_id, scale, created_seq, created_at FROM assets ORDER BY asset_id"),
    (
        "symbols",
        "SELECT symbol_id, base_asset_id, quote_asset_id, tick_size, lot_size, min_qty, min_notional, max_order_qty, \
         maker_fee_ppm, taker_fee_ppm, price_band_bps, status, updated_seq, updated_at FROM symbols ORDER BY symbol_id",
    ),
    (
        "accounts",
        "SELECT account_id, parent_id, owner, path, status, created_seq, created_at, updated_seq, updated_at \
         FROM accounts ORDER BY account_id",
    ),
    (
        "balances",
        "SELECT account_id, asset_id, available, held, last_seq, updated_at FROM balances ORDER BY account_id, asset_id",
    ),
    (
        "ledger_entries",
        "SELECT seq, idx, account_id, asset_id, kind, available_delta, held_delta, available_after, held_after, \
         ref_kind, ref_id, event_time FROM ledger_entries ORDER BY seq, idx",
    ),
    (
        "orders",
        "SELECT order_id, client_order_id, account_id, symbol_id, side, order_type, tif, price, qty, filled_qty, \
         remaining_qty, filled_quote, fees_paid, status, last_exec, created_seq, created_at, updated_seq, updated_at \
         FROM orders ORDER BY order_id",
    ),
    (
        "trades",
        "SELECT trade_id, symbol_id, price, qty, quote_qty, maker_order_id, taker_order_id, maker_account_id, \
         taker_account_id, maker_side, maker_fee, taker_fee, seq, idx, event_time FROM trades ORDER BY trade_id",
    ),
    (
        "deposits",
        "SELECT seq, idx, account_id, asset_id, amount, external_ref, event_time FROM deposits ORDER BY seq",
    ),
    (
        "withdrawals",
        "SELECT withdrawal_id, account_id, asset_id, amount, client_ref, status, requested_seq, requested_at, \
         updated_seq, updated_at FROM withdrawals ORDER BY withdrawal_id",
    ),
    (
        "transfers",
        "SELECT seq, idx, from_account_id, to_account_id, asset_id, amount, client_ref, event_time FROM transfers \
         ORDER BY seq",
    ),
    (
        "replicator_checkpoint",
        "SELECT sink, last_seq, last_record_at FROM replicator_checkpoint WHERE last_seq > 0 ORDER BY sink",
    ),
];

fn text(value: &Value) -> String {
    match value {
        Value::Bytes(bytes) => String::from_utf8(bytes.clone()).unwrap(),
        Value::NULL => "NULL".into(),
        other => other.as_sql(true),
    }
}

async fn dump(conn: &mut Conn) -> BTreeMap<&'static str, Table> {
    let mut tables = BTreeMap::new();
    for (name, sql) in DUMPS {
        let rows: Vec<Row> = conn.query(*sql).await.unwrap();
        tables.insert(*name, rows.into_iter().map(|r| r.unwrap().iter().map(text).collect()).collect());
    }
    tables
}

/// Row-by-row differences (at most a few per table), empty when equal.
fn differences(expected: &BTreeMap<&'static str, Table>, actual: &BTreeMap<&'static str, Table>) -> Vec<String> {
    let mut found = Vec::new();
    for (name, want) in expected {
        let got = &actual[name];
        if want.len() != got.len() {
            found.push(format!("{name}: {} rows expected, {} in the mirror", want.len(), got.len()));
        }
        let mut shown = 0;
        for (i, (w, g)) in want.iter().zip(got).enumerate() {
            if w != g && shown < 3 {
                found.push(format!("{name} row {i}:\n  expected {w:?}\n  mirror   {g:?}"));
                shown += 1;
            }
        }
    }
    found
}

fn options(log: &Log, until: Seq) -> RunOptions {
    let mut options = RunOptions::new(&log.events_dir);
    options.until_seq = Some(until);
    options.idle_poll = Duration::from_millis(1);
    options.backoff_min = Duration::from_millis(1);
    options.backoff_max = Duration::from_millis(20);
    options
}

async fn replicate<S: Sink>(sink: S, log: &Log, until: Seq) -> std::sync::Arc<ReplicatorStats> {
    let stats = ReplicatorStats::new("tidb");
    let stop = AtomicBool::new(false);
    run(sink, &options(log, until), &stop, &stats).await.unwrap();
    stats
}

fn small_spec(seed: u64) -> WorkloadSpec {
    WorkloadSpec { accounts: 40, resting_orders: 150, commands: 6_000, seed }
}

// ------------------------------------------------------------------------------------------

/// One run to the end of the log: every table equals what the events and the engine say, and
/// `read_state` equals the engine's state. Then a changed row is detected by both checks.
#[tokio::test]
async fn one_run_mirrors_every_table_and_reads_back_the_engine_state() {
    let log = write_log(small_spec(11));
    let model = Model::build(&log.records);
    model.check_against_engine(&log.engine);
    assert!(model.withdrawals.values().any(|w| w.4 == WithdrawalStatus::Pending.as_u8()));
    assert!(model.accounts.values().any(|a| a.3 == AccountStatus::Frozen.as_u8()));
    assert!(model.trades.len() > 100 && model.ledger.len() > 5_000, "a log worth mirroring");
    let db = TestDb::new("one");

    let mut config = TidbConfig::new(db.url());
    config.max_fact_rows = 2_000; // several batches, prepared statements reused across them
    config.rows_per_statement = 256;
    let stats = replicate(TidbSink::new(config), &log, log.last_seq()).await;
    assert_eq!(stats.checkpoint_seq.load(Ordering::Relaxed), log.last_seq());
    assert!(stats.batches.load(Ordering::Relaxed) > 5);
    assert_eq!(stats.ledger_rows.load(Ordering::Relaxed), model.ledger.len() as u64);

    let mut conn = db.conn().await;
    let expected = model.tables();
    let found = differences(&expected, &dump(&mut conn).await);
    assert!(found.is_empty(), "{}", found.join("\n"));

    let mut sink = TidbSink::new(TidbConfig::new(db.url()));
    let state = sink.read_state().await.unwrap();
    let want = model.mirror_state(&log.engine);
    assert!(!want.open_orders.is_empty());
    assert_eq!(state, want);

    // Reopening finds the checkpoint and the catalog the builder would have.
    let resume = sink.open().await.unwrap();
    assert_eq!(resume.last_seq, log.last_seq());
    let mut builder = BatchBuilder::new(Catalog::default());
    for (seq, ts, events) in &log.records {
        builder.add_record(*seq, *ts, events).unwrap();
    }
    assert_eq!(&resume.catalog, builder.catalog());

    // The checks can fail: one unit off in one ledger row and one balance.
    conn.query_drop("UPDATE ledger_entries SET held_delta = held_delta + 0.000001 ORDER BY seq DESC LIMIT 1")
        .await
        .unwrap();
    conn.query_drop("UPDATE balances SET available = available + 0.000001 ORDER BY last_seq DESC LIMIT 1")
        .await
        .unwrap();
    let found = differences(&expected, &dump(&mut conn).await);
    assert_eq!(found.len(), 2, "{found:#?}");
    let state = sink.read_state().await.unwrap();
    assert_ne!(state.balances, want.balances);
    assert_ne!(state.ledger_sums, want.ledger_sums);
    conn.disconnect().await.unwrap();
}

/// Fails (transiently) every few writes after they committed, as if the answer was lost.
struct LosesAnswers {
    inner: TidbSink,
    writes: u64,
}

impl Sink for LosesAnswers {
    fn name(&self) -> &str {
        Sink::name(&self.inner)
    }
    fn batch_limits(&self) -> BatchLimits {
        self.inner.batch_limits()
    }
    async fn open(&mut self) -> Result<Resume, SinkError> {
        self.inner.open().await
    }
    async fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.inner.write(batch).await?;
        self.writes += 1;
        if self.writes.is_multiple_of(7) {
            return Err(SinkError::Transient("answer lost".into()));
        }
        Ok(())
    }
}

/// Several runs with tiny batches that stop and restart from the checkpoint, with writes that
/// fail before their commit and commits whose answer is lost: at every stop the mirror equals
/// the log up to its checkpoint, and at the end the whole log, exactly once.
#[tokio::test]
async fn stopping_restarting_and_failing_writes_give_exactly_the_same_rows() {
    let log = write_log(small_spec(12));
    let last = log.last_seq();
    let db = TestDb::new("restart");
    let mut conn = db.conn().await;
    let mut config = TidbConfig::new(db.url());
    config.max_records = 7;
    config.max_fact_rows = 60;
    config.rows_per_statement = 9;
    config.prepared_statements = false; // the text path (the other test covers the prepared one)
    for (leg, until) in [last / 10, last / 3, last / 3, last - 1, last].into_iter().enumerate() {
        // Every 5th write fails before its COMMIT (test-only fault of the `fault-injection` build).
        let sink = LosesAnswers { inner: TidbSink::new(config.clone()).abort_before_commit_every(5), writes: 0 };
        let stats = replicate(sink, &log, until).await;
        let checkpoint = stats.checkpoint_seq.load(Ordering::Relaxed);
        assert!(checkpoint >= until && checkpoint < until + 7, "leg {leg}: checkpoint {checkpoint}, until {until}");
        assert!(matches!(leg, 2 | 4) || stats.errors.load(Ordering::Relaxed) > 0, "leg {leg}: failures exercised");
        let upto = log.records.iter().position(|r| r.0 == checkpoint).unwrap() + 1;
        let model = Model::build(&log.records[..upto]);
        let found = differences(&model.tables(), &dump(&mut conn).await);
        assert!(found.is_empty(), "leg {leg} at {checkpoint}:\n{}", found.join("\n"));
    }
    let model = Model::build(&log.records);
    let mut sink = TidbSink::new(config);
    assert_eq!(sink.read_state().await.unwrap(), model.mirror_state(&log.engine));
    conn.disconnect().await.unwrap();
}

/// Open and write refuse what cannot be retried, and report an unreachable or silent server as
/// transient, within the configured timeouts.
#[tokio::test]
async fn errors_are_fatal_or_transient_as_they_should_be() {
    // Nothing listens: transient, at once.
    let mut dead = TidbSink::new(TidbConfig::new("mysql://root@127.0.0.1:1/seqd_nowhere"));
    assert!(matches!(dead.open().await, Err(SinkError::Transient(_))));

    // A server that accepts and never speaks: transient after the connect timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            sockets.push(socket);
        }
    });
    let mut config = TidbConfig::new(format!("mysql://root@127.0.0.1:{port}/seqd_hung"));
    config.connect_timeout = Duration::from_millis(300);
    let started = Instant::now();
    assert!(matches!(TidbSink::new(config).open().await, Err(SinkError::Transient(_))));
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    // No database in the URL: fatal.
    let mut nameless = TidbSink::new(TidbConfig::new(format!("{}/", server_url())));
    assert!(matches!(nameless.open().await, Err(SinkError::Fatal(_))));

    let db = TestDb::new("errors");
    let mut records = Vec::new();
    let mut engine = Engine::new();
    for (i, command) in scripted_session().iter().enumerate() {
        let mut events = Vec::new();
        engine.apply(i as u64 + 1, START_TIMESTAMP_NS + i as u64, command, &mut events);
        records.push((i as u64 + 1, START_TIMESTAMP_NS + i as u64, events));
    }
    let batch = |from: usize, to: usize, catalog: Catalog| {
        let mut builder = BatchBuilder::new(catalog);
        for (seq, ts, events) in &records[from..to] {
            builder.add_record(*seq, *ts, events).unwrap();
        }
        (builder.take(), builder.catalog().clone())
    };

    // Two replicators on one mirror: the second one's write finds the checkpoint moved.
    let mut a = TidbSink::new(TidbConfig::new(db.url()));
    let mut b = TidbSink::new(TidbConfig::new(db.url()));
    assert_eq!(a.open().await.unwrap().last_seq, 0);
    assert_eq!(b.open().await.unwrap().last_seq, 0);
    let (first, catalog) = batch(0, 10, Catalog::default());
    a.write(&first).await.unwrap();
    assert!(matches!(b.write(&first).await, Err(SinkError::Transient(_))));
    let resume = b.open().await.unwrap();
    assert_eq!((resume.last_seq, &resume.catalog), (10, &catalog));
    // A batch that does not follow the checkpoint is a bug in the caller: fatal.
    let (later, _) = batch(12, 20, catalog.clone());
    assert!(matches!(b.write(&later).await, Err(SinkError::Fatal(_))));
    // Not open: transient (the run loop opens again).
    assert!(matches!(b.write(&first).await, Err(SinkError::Transient(_))));

    let mut conn = db.conn().await;
    // A mirror holding rows past its checkpoint: fatal.
    conn.query_drop("UPDATE replicator_checkpoint SET last_seq = 5").await.unwrap();
    assert!(matches!(a.open().await, Err(SinkError::Fatal(m)) if m.to_string().contains("past its checkpoint")));
    conn.query_drop("UPDATE replicator_checkpoint SET last_seq = 10").await.unwrap();
    assert_eq!(a.open().await.unwrap().last_seq, 10);
    // A catalog that contradicts itself: fatal.
    conn.query_drop("UPDATE accounts SET path = '/9/11' WHERE account_id = 11").await.unwrap();
    assert!(matches!(a.open().await, Err(SinkError::Fatal(m)) if m.to_string().contains("path")));
    conn.query_drop("UPDATE accounts SET path = '/1/11' WHERE account_id = 11").await.unwrap();
    assert_eq!(a.open().await.unwrap().catalog, catalog);
    // A schema newer than this binary: fatal, for the replicator and for reconcile.
    conn.query_drop("INSERT INTO schema_version (version, applied_at) VALUES (99, UTC_TIMESTAMP(6))").await.unwrap();
    assert!(matches!(a.open().await, Err(SinkError::Fatal(m)) if m.to_string().contains("newer")));
    assert!(matches!(a.read_state().await, Err(SinkError::Fatal(_))));
    conn.disconnect().await.unwrap();
}

/// Throughput figure (not part of the suite): `cargo test --release --test replicate_tidb --
/// --ignored --nocapture`. Replicates a workload log of about 250k ledger rows with the
/// default limits and prints rows/s and where the CPU time went.
#[tokio::test]
#[ignore]
async fn throughput_report() {
    let started = Instant::now();
    let commands: usize = std::env::var("SEQD_TIDB_BENCH_COMMANDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60_000);
    let log = write_log(WorkloadSpec { accounts: 1_000, resting_orders: 1_000, commands, seed: 3 });
    let ledger_rows: usize =
        log.records.iter().map(|r| r.2.iter().filter(|e| matches!(e, Event::Ledger(_))).count()).sum();
    println!("log: {} records, {ledger_rows} ledger rows, written in {:?}", log.records.len(), started.elapsed());
    let db = TestDb::new("bench");
    let mut config = TidbConfig::new(db.url());
    if let Some(v) = std::env::var("SEQD_TIDB_BENCH_FACT_ROWS").ok().and_then(|v| v.parse().ok()) {
        config.max_fact_rows = v;
    }
    config.prepared_statements = std::env::var_os("SEQD_TIDB_BENCH_TEXT").is_none();
    if let Some(v) = std::env::var("SEQD_TIDB_BENCH_ROWS_PER_STATEMENT").ok().and_then(|v| v.parse().ok()) {
        config.rows_per_statement = v;
    }
    let server_cpu = || mariadb_cpu_seconds();
    let (cpu0, server0) = (process_cpu_seconds(), server_cpu());
    let started = Instant::now();
    let stats = replicate(TidbSink::new(config.clone()), &log, log.last_seq()).await;
    let wall = started.elapsed().as_secs_f64();
    let (cpu, server) = (process_cpu_seconds() - cpu0, server_cpu().map(|s| s - server0.unwrap_or(0.0)));
    let total = stats.total_rows.load(Ordering::Relaxed);
    println!(
        "tidb sink: {ledger_rows} ledger rows ({total} rows in all tables) in {wall:.2} s = {:.0} ledger rows/s, \
         {:.0} rows/s; {} batches (max_fact_rows {}, {} rows/statement, prepared {}); replicator CPU {cpu:.2} s, \
         mariadbd CPU {:?} s",
        ledger_rows as f64 / wall,
        total as f64 / wall,
        stats.batches.load(Ordering::Relaxed),
        config.max_fact_rows,
        config.rows_per_statement,
        config.prepared_statements,
        server.map(|s| (s * 100.0).round() / 100.0),
    );
    // Client side alone: events to rows to SQL text.
    let started = Instant::now();
    let mut builder = BatchBuilder::new(Catalog::default());
    let mut bytes = 0usize;
    for chunk in log.records.chunks(2_000) {
        for (seq, ts, events) in chunk {
            builder.add_record(*seq, *ts, events).unwrap();
        }
        let batch = builder.take();
        bytes += seqd::replicate::tidb::batch_statements(&batch, config.rows_per_statement)
            .iter()
            .map(String::len)
            .sum::<usize>();
    }
    println!("rows + SQL text alone: {:.2} s, {} MB of SQL", started.elapsed().as_secs_f64(), bytes >> 20);
    per_table_seconds(&log, &config).await;
    let model = Model::build(&log.records);
    let mut conn = db.conn().await;
    let found = differences(&model.tables(), &dump(&mut conn).await);
    assert!(found.is_empty(), "{}", found.join("\n"));
    conn.disconnect().await.unwrap();
}

/// The same statements again into a fresh database, one transaction per batch, timed per table:
/// where the server spends its time.
async fn per_table_seconds(log: &Log, config: &TidbConfig) {
    use seqd::replicate::tidb::{batch_plan, prepared_sql, RowStatement};
    let db = TestDb::new("bench_tables");
    TidbSink::new(TidbConfig::new(db.url())).open().await.unwrap();
    let mut conn = db.conn().await;
    let mut seconds: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut prepared = BTreeMap::new();
    let mut builder = BatchBuilder::new(Catalog::default());
    let limits = TidbSink::new(config.clone()).batch_limits();
    let mut records = log.records.iter().peekable();
    while records.peek().is_some() {
        while builder.batch().records() < limits.max_records && builder.batch().fact_rows() < limits.max_fact_rows {
            let Some((seq, ts, events)) = records.next() else { break };
            builder.add_record(*seq, *ts, events).unwrap();
        }
        let batch = builder.take();
        conn.query_drop("START TRANSACTION").await.unwrap();
        for statement in batch_plan(&batch, config.rows_per_statement, config.prepared_statements) {
            let started = Instant::now();
            let (table, rows) = match statement {
                RowStatement::Text(sql) => {
                    let table = sql.split_whitespace().nth(2).unwrap().to_string();
                    let rows = sql.matches("),(").count() + 1;
                    conn.query_drop(sql).await.unwrap();
                    (table, rows)
                }
                RowStatement::Prepared { table, rows, params } => {
                    let (name, sql) = prepared_sql(table, rows);
                    if let std::collections::btree_map::Entry::Vacant(entry) = prepared.entry((table, rows)) {
                        entry.insert(conn.prep(sql).await.unwrap());
                    }
                    conn.exec_drop(&prepared[&(table, rows)], mysql_async::Params::Positional(params)).await.unwrap();
                    (name.to_string(), rows)
                }
            };
            let entry = seconds.entry(table).or_default();
            entry.0 += started.elapsed().as_secs_f64();
            entry.1 += rows;
        }
        let started = Instant::now();
        conn.query_drop("COMMIT").await.unwrap();
        let entry = seconds.entry("COMMIT".into()).or_default();
        entry.0 += started.elapsed().as_secs_f64();
        entry.1 += 1;
    }
    for (table, (secs, rows)) in seconds {
        println!("  {table:<16} {rows:>8} rows {secs:>6.2} s {:>8.0} rows/s", rows as f64 / secs);
    }
    conn.disconnect().await.unwrap();
}

fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    cpu_from_stat(&stat)
}

fn mariadb_cpu_seconds() -> Option<f64> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() == "mariadbd" {
            return std::fs::read_to_string(entry.path().join("stat")).ok().map(|s| cpu_from_stat(&s));
        }
    }
    None
}

/// utime + stime of a /proc/<pid>/stat line, in seconds (USER_HZ = 100).
fn cpu_from_stat(stat: &str) -> f64 {
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

/// The test-only fault (a `fault-injection` build): a write that fails before its `COMMIT` leaves
/// nothing in the mirror (its rows were sent, the server rolled them back with the connection).
/// And an error the server answers keeps its error number: a missing table (1146) is fatal.
#[tokio::test]
async fn an_aborted_write_leaves_nothing_and_server_errors_keep_their_code() {
    let db = TestDb::new("aborted");
    let mut builder = BatchBuilder::new(Catalog::default());
    let mut engine = Engine::new();
    for (i, command) in scripted_session().iter().take(10).enumerate() {
        let mut events = Vec::new();
        engine.apply(i as u64 + 1, START_TIMESTAMP_NS + i as u64, command, &mut events);
        builder.add_record(i as u64 + 1, START_TIMESTAMP_NS + i as u64, &events).unwrap();
    }
    let batch = builder.take();
    assert!(!batch.ledger.is_empty());

    let mut aborting = TidbSink::new(TidbConfig::new(db.url())).abort_before_commit_every(1);
    assert_eq!(aborting.open().await.unwrap().last_seq, 0);
    match aborting.write(&batch).await {
        Err(SinkError::Transient(cause)) => assert!(cause.to_string().contains("before COMMIT"), "{cause}"),
        other => panic!("expected the injected transient failure, got {other:?}"),
    }
    let mut conn = db.conn().await;
    let ledger_rows: Option<u64> = conn.query_first("SELECT COUNT(*) FROM ledger_entries").await.unwrap();
    assert_eq!(ledger_rows, Some(0), "the aborted transaction's rows were rolled back");
    let mut sink = TidbSink::new(TidbConfig::new(db.url()));
    assert_eq!(sink.open().await.unwrap().last_seq, 0);
    sink.write(&batch).await.unwrap();
    let ledger_rows: Option<u64> = conn.query_first("SELECT COUNT(*) FROM ledger_entries").await.unwrap();
    assert_eq!(ledger_rows, Some(batch.ledger.len() as u64));

    conn.query_drop("DROP TABLE ledger_entries").await.unwrap();
    match TidbSink::new(TidbConfig::new(db.url())).open().await {
        Err(SinkError::Fatal(cause)) => {
            let error = cause.downcast_ref::<TidbError>().expect("a server error, typed");
            assert_eq!(error.server_code, Some(1146), "{error}");
            assert!(std::error::Error::source(error).is_some());
        }
        other => panic!("expected a fatal error for the missing table, got {other:?}"),
    }
    conn.disconnect().await.unwrap();
}
