//! The ClickHouse sink against a real server (ClickHouse 18.16 on http://127.0.0.1:8123, started by
//! tools/services.sh; another with SEQD_TEST_CLICKHOUSE_URL). Each test works in its own database
//! `seqd_test_<run>_ch_<n>` (testkit::test_db), dropped at the end.
//!
//! The event log is written by the sequencer (the scripted session, then a seeded exchange-core
//! workload); the expected rows are built here from the events of a shadow engine fed the same
//! commands, independently of the replicator's row builder, and compared line by line with the
//! tables read back as TabSeparated text.

use seqd::engine::{AccountId, AccountStatus, AssetId, Command, Engine, Event, NewOrder, OrderId, Seq, SymbolId};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clickhouse::Client;
use seqd::pipeline::sequencer::{Sequencer, SequencerConfig};
use seqd::replicate::clickhouse::{create_statements, table_names, ClickHouseConfig, ClickHouseSink};
use seqd::replicate::reconcile::{Mirror, MirrorOrder};
use seqd::replicate::rows::utc_datetime_micros;
use seqd::replicate::{run, BatchBuilder, BatchLimits, Catalog, ReplicatorStats, RunOptions, Sink, SinkError, Tailer};
use seqd::storage::journal::Durability;
use seqd::storage::replay::DataDir;
use seqd::testkit::scenario::{scripted_session, timestamp_ns, START_TIMESTAMP_NS};
use seqd::testkit::workload::{btc_usdt_spec, exchange_core_mix, WorkloadSpec};

/// Read when the test runs, so that an edited docs/analytics.sql is what gets checked.
fn analytics_sql() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analytics.sql")).unwrap()
}

fn clickhouse_url() -> String {
    std::env::var("SEQD_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".to_string())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A database of this test's own, dropped when the guard goes (outside any runtime).
struct TestDb {
    name: String,
}

impl TestDb {
    fn new() -> TestDb {
        TestDb { name: seqd::testkit::test_db::database_name("ch") }
    }

    fn config(&self) -> ClickHouseConfig {
        ClickHouseConfig::new(clickhouse_url(), self.name.clone())
    }

    fn client(&self) -> Client {
        Client::default().with_url(clickhouse_url()).with_database(self.name.clone()).with_validation(false)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let client = Client::default().with_url(clickhouse_url()).with_validation(false);
        let sql = format!("DROP DATABASE IF EXISTS `{}`", self.name);
        if let Err(e) = runtime().block_on(client.query(&sql).execute()) {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

async fn execute(client: &Client, sql: &str) {
    client.query(sql).execute().await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A query's result as TabSeparated lines.
async fn tsv(client: &Client, sql: &str) -> Vec<String> {
    let bytes = client
        .query(sql)
        .fetch_bytes("TabSeparated")
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    String::from_utf8(bytes.to_vec()).unwrap().lines().map(str::to_string).collect()
}

async fn count(client: &Client, table: &str, final_: bool) -> u64 {
    let sql = format!("SELECT count() FROM {table}{}", if final_ { " FINAL" } else { "" });
    tsv(client, &sql).await[0].parse().unwrap()
}

// ---------------------------------------------------------------------------------------------
// The event log.

type Record = (Seq, u64, Vec<Event>);

struct Log {
    _dir: tempfile::TempDir,
    events_dir: PathBuf,
    /// The sequencer's engine after the last command.
    engine: Engine,
    /// Every record's (seq, stamp, events), from a shadow engine fed the same commands.
    records: Vec<Record>,
}

impl Log {
    fn last_seq(&self) -> Seq {
        self.records.last().map_or(0, |r| r.0)
    }
}

/// Renumbers a workload command that runs after `order_shift` other commands, with its accounts
/// moved by `account_shift` (out of the scripted session's way).
fn shift(command: Command, order_shift: u64, account_shift: u64) -> Command {
    let a =
        |account: AccountId| if account == AccountId::NONE { account } else { AccountId(account.0 + account_shift) };
    match command {
        Command::CreateAccount { account, parent, owner } => {
            Command::CreateAccount { account: a(account), parent: a(parent), owner: owner + account_shift }
        }
        Command::Deposit { account, asset, amount, external_ref } => {
            Command::Deposit { account: a(account), asset, amount, external_ref }
        }
        Command::PlaceOrder(order) => Command::PlaceOrder(NewOrder { account: a(order.account), ..order }),
        Command::AmendOrder { account, order_id, price, qty } => {
            Command::AmendOrder { account: a(account), order_id: OrderId(order_id.0 + order_shift), price, qty }
        }
        Command::CancelOrder { account, order_id } => {
            Command::CancelOrder { account: a(account), order_id: OrderId(order_id.0 + order_shift) }
        }
        other => other,
    }
}

/// Writes the event log through the sequencer: optionally the scripted session (and the
/// workload's symbol parameters), then the workload. Workload commands come in bursts of 50,
/// 0.7 s apart within a burst, one burst an hour: minutes with many trades, trades in one
/// second, a span of days across a month boundary.
fn write_log(spec: WorkloadSpec, with_script: bool) -> Log {
    let mut commands = Vec::new();
    let mut stamps = Vec::new();
    if with_script {
        for (i, command) in scripted_session().into_iter().enumerate() {
            commands.push(command);
            stamps.push(timestamp_ns(i));
        }
        stamps.push(timestamp_ns(commands.len()));
        commands.push(Command::UpdateSymbol(btc_usdt_spec(200, 500)));
    }
    let order_shift = commands.len() as u64;
    let account_shift = if with_script { 1_000 } else { 0 };
    let start = stamps.last().copied().unwrap_or(START_TIMESTAMP_NS) + 1_000;
    let workload = exchange_core_mix(spec);
    for (j, command) in workload.setup.iter().chain(&workload.commands).enumerate() {
        commands.push(shift(*command, order_shift, account_shift));
        stamps.push(start + (j as u64 / 50) * 3_600_000_000_000 + (j as u64 % 50) * 700_000_000);
    }

    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let config = SequencerConfig { segment_size_bytes: 16 << 20, durability: Durability::PageCache };
    let (mut sequencer, _) = Sequencer::open(&data_dir, config).unwrap();
    let mut shadow = Engine::new();
    let mut records = Vec::with_capacity(commands.len());
    let mut events = Vec::new();
    for (i, (command, &ts)) in commands.iter().zip(&stamps).enumerate() {
        let seq = sequencer.submit(ts, command).unwrap();
        assert_eq!(seq, i as Seq + 1);
        events.clear();
        shadow.apply(seq, ts, command, &mut events);
        records.push((seq, ts, events.clone()));
        if i % 1_000 == 0 {
            sequencer.commit().unwrap();
        }
    }
    sequencer.commit().unwrap();
    assert_eq!(shadow.state_hash(), sequencer.engine().state_hash());
    let engine = sequencer.engine().clone();
    Log { events_dir: data_dir.events(), _dir: dir, engine, records }
}

// ---------------------------------------------------------------------------------------------
// The rows the mirror must hold, from the events.

fn dec(units: i64, scale: u8) -> String {
    let raw = i128::from(units) * 10i128.pow(u32::from(18 - scale));
    let sign = if raw < 0 { "-" } else { "" };
    let abs = raw.unsigned_abs();
    format!("{sign}{}.{:018}", abs / 10u128.pow(18), abs % 10u128.pow(18))
}

fn dec_raw(raw: i128) -> String {
    let sign = if raw < 0 { "-" } else { "" };
    let abs = raw.unsigned_abs();
    format!("{sign}{}.{:018}", abs / 10u128.pow(18), abs % 10u128.pow(18))
}

fn time(ts_ns: u64) -> String {
    utc_datetime_micros(ts_ns)[..19].to_string()
}

fn minute(ts_ns: u64) -> String {
    time(ts_ns / 60_000_000_000 * 60_000_000_000)
}

/// `PartiallyFilled` -> `partially_filled`: the Enum8 labels.
fn label(value: impl std::fmt::Debug) -> String {
    let mut out = String::new();
    for (i, c) in format!("{value:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn version(seq: Seq, idx: usize) -> u64 {
    seq * 1_048_576 + idx as u64
}

fn line(fields: &[String]) -> String {
    fields.join("\t")
}

macro_rules! fields {
    ($($e:expr),* $(,)?) => { line(&[$($e.to_string()),*]) };
}

struct AccountState {
    parent: AccountId,
    owner: u64,
    path: String,
    status: AccountStatus,
    created: (Seq, u64),
    updated: (Seq, usize, u64),
}

#[derive(Clone, Copy)]
struct TradeFact {
    ts: u64,
    trade_id: u64,
    symbol: SymbolId,
    price: i64,
    qty: i64,
    quote_qty: i64,
    maker_account: AccountId,
    taker_account: AccountId,
    maker_fee: i64,
    taker_fee: i64,
}

#[derive(Default)]
struct Expected {
    /// Table -> (select list, order by, lines).
    tables: BTreeMap<&'static str, (&'static str, &'static str, Vec<String>)>,
    trades: Vec<TradeFact>,
    ledger_sums: BTreeMap<(AccountId, AssetId), (i64, i64)>,
    last_ledger: BTreeMap<(AccountId, AssetId), (i64, i64)>,
    scales: BTreeMap<AssetId, u8>,
    pairs: BTreeMap<SymbolId, (u8, u8)>,
}

const TRADE_COLUMNS: &str =
    "trade_id, symbol, seq, idx, time, ts_ns, price, qty, quote_qty, maker_order, taker_order, \
                             maker_account, taker_account, maker_side, maker_fee, taker_fee";
const LEDGER_COLUMNS: &str = "seq, idx, time, ts_ns, account, asset, kind, available_delta, held_delta, \
                              available_after, held_after, ref_kind, ref_id";
const ORDER_EVENT_COLUMNS: &str = "seq, idx, time, ts_ns, order_id, account, symbol, client_order_id, exec, status, \
                                   side, order_type, tif, price, qty, filled_qty, remaining_qty, filled_quote, fees_paid";
const DEPOSIT_COLUMNS: &str = "seq, idx, time, ts_ns, account, asset, amount, external_ref";
const TRANSFER_COLUMNS: &str = "seq, idx, time, ts_ns, from_account, to_account, asset, amount, client_ref";
const WITHDRAWAL_COLUMNS: &str =
    "withdrawal_id, account, asset, amount, client_ref, status, seq, idx, time, ts_ns, version";
const BALANCE_COLUMNS: &str = "account, asset, available, held, seq, idx, time, ts_ns, version";
const ACCOUNT_COLUMNS: &str = "account, parent, owner, path, status, created_seq, created_time, created_ts_ns, \
                               seq, idx, time, ts_ns, version";
const ASSET_COLUMNS: &str = "asset, scale, seq, idx, time, ts_ns, version";
const SYMBOL_COLUMNS: &str = "symbol, base, quote, tick_size, lot_size, min_qty, min_notional, max_order_qty, \
                              maker_fee_ppm, taker_fee_ppm, price_band_bps, status, seq, idx, time, ts_ns, version";
const CHECKPOINT_COLUMNS: &str = "sink, last_seq, time, ts_ns";

fn expected_rows(records: &[Record]) -> Expected {
    let mut x = Expected::default();
    let (mut trades, mut ledger, mut order_events, mut deposits, mut transfers) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut withdrawals = BTreeMap::new();
    let mut balances = BTreeMap::new();
    let mut accounts: BTreeMap<AccountId, AccountState> = BTreeMap::new();
    let mut assets = BTreeMap::new();
    let mut symbols = BTreeMap::new();
    for (seq, ts, events) in records {
        let (seq, ts) = (*seq, *ts);
        for (idx, event) in events.iter().enumerate() {
            let at = || fields!(seq, idx, time(ts), ts);
            let v = version(seq, idx);
            match *event {
                Event::Rejected { .. } => {}
                Event::AssetCreated { asset, scale } => {
                    x.scales.insert(asset, scale);
                    assets.insert(asset, fields!(asset, scale, seq, idx, time(ts), ts, v));
                }
                Event::SymbolUpdated { spec, status } => {
                    let (b, q) = (x.scales[&spec.base], x.scales[&spec.quote]);
                    x.pairs.insert(spec.symbol, (b, q));
                    symbols.insert(
                        spec.symbol,
                        fields!(
                            spec.symbol,
                            spec.base,
                            spec.quote,
                            dec(spec.tick_size, q),
                            dec(spec.lot_size, b),
                            dec(spec.min_qty, b),
                            dec(spec.min_notional, q),
                            dec(spec.max_order_qty, b),
                            spec.maker_fee_ppm,
                            spec.taker_fee_ppm,
                            spec.price_band_bps,
                            label(status),
                            seq,
                            idx,
                            time(ts),
                            ts,
                            v
                        ),
                    );
                }
                Event::AccountCreated { account, parent, owner } => {
                    let path = match accounts.get(&parent) {
                        Some(p) => format!("{}/{account}", p.path),
                        None => format!("/{account}"),
                    };
                    let state = AccountState {
                        parent,
                        owner,
                        path,
                        status: AccountStatus::Active,
                        created: (seq, ts),
                        updated: (seq, idx, ts),
                    };
                    accounts.insert(account, state);
                }
                Event::AccountStatusChanged { account, status } => {
                    let state = accounts.get_mut(&account).unwrap();
                    state.status = status;
                    state.updated = (seq, idx, ts);
                }
                Event::Ledger(e) => {
                    let s = x.scales[&e.asset];
                    ledger.push(fields!(
                        at(),
                        e.account,
                        e.asset,
                        label(e.kind),
                        dec(e.available_delta, s),
                        dec(e.held_delta, s),
                        dec(e.available_after, s),
                        dec(e.held_after, s),
                        label(e.ref_kind),
                        e.ref_id
                    ));
                    let key = (e.account, e.asset);
                    balances.insert(
                        key,
                        fields!(e.account, e.asset, dec(e.available_after, s), dec(e.held_after, s), at(), v),
                    );
                    let sum = x.ledger_sums.entry(key).or_default();
                    sum.0 += e.available_delta;
                    sum.1 += e.held_delta;
                    x.last_ledger.insert(key, (e.available_after, e.held_after));
                }
                Event::DepositCredited { account, asset, amount, external_ref } => {
                    deposits.push(fields!(at(), account, asset, dec(amount, x.scales[&asset]), external_ref));
                }
                Event::WithdrawalUpdated { withdrawal_id, account, asset, amount, client_ref, status } => {
                    let s = x.scales[&asset];
                    withdrawals.insert(
                        withdrawal_id,
                        fields!(withdrawal_id, account, asset, dec(amount, s), client_ref, label(status), at(), v),
                    );
                }
                Event::Transferred { from, to, asset, amount, client_ref } => {
                    transfers.push(fields!(at(), from, to, asset, dec(amount, x.scales[&asset]), client_ref));
                }
                Event::Order(r) => {
                    let (b, q) = x.pairs[&r.symbol];
                    order_events.push(fields!(
                        at(),
                        r.order_id,
                        r.account,
                        r.symbol,
                        r.client_order_id,
                        label(r.exec),
                        label(r.status),
                        label(r.side),
                        label(r.order_type),
                        label(r.tif),
                        dec(r.price, q),
                        dec(r.qty, b),
                        dec(r.filled_qty, b),
                        dec(r.remaining_qty, b),
                        dec(r.filled_quote, q),
                        dec(r.fees_paid, q)
                    ));
                }
                Event::Trade(t) => {
                    let (b, q) = x.pairs[&t.symbol];
                    trades.push((
                        t.trade_id,
                        fields!(
                            t.trade_id,
                            t.symbol,
                            at(),
                            dec(t.price, q),
                            dec(t.qty, b),
                            dec(t.quote_qty, q),
                            t.maker_order,
                            t.taker_order,
                            t.maker_account,
                            t.taker_account,
                            label(t.maker_side),
                            dec(t.maker_fee, q),
                            dec(t.taker_fee, q)
                        ),
                    ));
                    x.trades.push(TradeFact {
                        ts,
                        trade_id: t.trade_id.0,
                        symbol: t.symbol,
                        price: t.price,
                        qty: t.qty,
                        quote_qty: t.quote_qty,
                        maker_account: t.maker_account,
                        taker_account: t.taker_account,
                        maker_fee: t.maker_fee,
                        taker_fee: t.taker_fee,
                    });
                }
            }
        }
    }
    trades.sort();
    let accounts = accounts
        .iter()
        .map(|(id, a)| {
            let (seq, idx, ts) = a.updated;
            fields!(
                id,
                a.parent,
                a.owner,
                a.path,
                label(a.status),
                a.created.0,
                time(a.created.1),
                a.created.1,
                seq,
                idx,
                time(ts),
                ts,
                version(seq, idx)
            )
        })
        .collect();
    let (last_seq, last_ts, _) = records.last().unwrap();
    let t = &mut x.tables;
    t.insert("trades", (TRADE_COLUMNS, "trade_id", trades.into_iter().map(|(_, l)| l).collect()));
    t.insert("ledger_entries", (LEDGER_COLUMNS, "seq, idx", ledger));
    t.insert("order_events", (ORDER_EVENT_COLUMNS, "seq, idx", order_events));
    t.insert("deposits", (DEPOSIT_COLUMNS, "seq, idx", deposits));
    t.insert("transfers", (TRANSFER_COLUMNS, "seq, idx", transfers));
    t.insert("withdrawals", (WITHDRAWAL_COLUMNS, "withdrawal_id", withdrawals.into_values().collect()));
    t.insert("balances", (BALANCE_COLUMNS, "account, asset", balances.into_values().collect()));
    t.insert("accounts", (ACCOUNT_COLUMNS, "account", accounts));
    t.insert("assets", (ASSET_COLUMNS, "asset", assets.into_values().collect()));
    t.insert("symbols", (SYMBOL_COLUMNS, "symbol", symbols.into_values().collect()));
    t.insert(
        "replicator_checkpoint",
        (CHECKPOINT_COLUMNS, "sink", vec![fields!("clickhouse", last_seq, time(*last_ts), last_ts)]),
    );
    x
}

fn assert_lines(what: &str, expected: &[String], actual: &[String]) {
    if let Some(i) = (0..expected.len().max(actual.len())).find(|&i| expected.get(i) != actual.get(i)) {
        panic!(
            "{what}: {} rows expected, {} found; first difference at row {i}:\n  expected: {:?}\n  found:    {:?}",
            expected.len(),
            actual.len(),
            expected.get(i),
            actual.get(i)
        );
    }
}

/// Every table, row by row, read with FINAL.
async fn check_tables(client: &Client, expected: &Expected) {
    for (table, (columns, order_by, lines)) in &expected.tables {
        let actual = tsv(client, &format!("SELECT {columns} FROM {table} FINAL ORDER BY {order_by}")).await;
        assert_lines(table, lines, &actual);
    }
}

// ---------------------------------------------------------------------------------------------
// docs/analytics.sql, recomputed from the engine's trades.

fn analytics_queries() -> BTreeMap<String, String> {
    let mut queries = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut body = String::new();
    let mut flush = |name: &mut Option<String>, body: &mut String| {
        if let Some(name) = name.take() {
            let sql = body.trim().trim_end_matches(';').trim().to_string();
            assert!(!sql.is_empty(), "query {name} is empty");
            queries.insert(name, sql);
        }
        body.clear();
    };
    for l in analytics_sql().lines() {
        if let Some(n) = l.strip_prefix("-- name:") {
            flush(&mut name, &mut body);
            name = Some(n.trim().to_string());
        } else if !l.trim_start().starts_with("--") && name.is_some() {
            body.push_str(l);
            body.push('\n');
        }
    }
    flush(&mut name, &mut body);
    queries
}

fn expected_kline(x: &Expected) -> Vec<String> {
    // (symbol, minute) -> (first id, open, high, low, last id, close, volume, quote volume, count)
    #[allow(clippy::type_complexity)] // one tuple per K-line, as the query returns it
    let mut candles: BTreeMap<(SymbolId, u64), (u64, i64, i64, i64, u64, i64, i64, i64, u64)> = BTreeMap::new();
    for t in &x.trades {
        let key = (t.symbol, t.ts / 60_000_000_000);
        let c = candles.entry(key).or_insert((t.trade_id, t.price, t.price, t.price, t.trade_id, t.price, 0, 0, 0));
        if t.trade_id < c.0 {
            (c.0, c.1) = (t.trade_id, t.price);
        }
        if t.trade_id > c.4 {
            (c.4, c.5) = (t.trade_id, t.price);
        }
        c.2 = c.2.max(t.price);
        c.3 = c.3.min(t.price);
        c.6 += t.qty;
        c.7 += t.quote_qty;
        c.8 += 1;
    }
    candles
        .iter()
        .map(|(&(symbol, m), c)| {
            let (b, q) = x.pairs[&symbol];
            fields!(
                symbol,
                minute(m * 60_000_000_000),
                dec(c.1, q),
                dec(c.2, q),
                dec(c.3, q),
                dec(c.5, q),
                dec(c.6, b),
                dec(c.7, q),
                c.8
            )
        })
        .collect()
}

fn expected_account_7d(x: &Expected) -> Vec<String> {
    let newest = x.trades.iter().map(|t| t.ts / 1_000_000_000).max().unwrap();
    let mut per_account: BTreeMap<AccountId, (u64, i128)> = BTreeMap::new();
    let quote_scale = |t: &TradeFact| x.pairs[&t.symbol].1;
    for t in x.trades.iter().filter(|t| t.ts / 1_000_000_000 > newest - 604_800) {
        let notional = i128::from(t.quote_qty) * 10i128.pow(u32::from(18 - quote_scale(t)));
        let mut accounts = vec![t.maker_account];
        if t.taker_account != t.maker_account {
            accounts.push(t.taker_account);
        }
        for a in accounts {
            let e = per_account.entry(a).or_default();
            e.0 += 1;
            e.1 += notional;
        }
    }
    per_account.iter().map(|(a, (n, sum))| fields!(a, n, dec_raw(sum / i128::from(*n)))).collect()
}

fn expected_daily(x: &Expected) -> Vec<String> {
    #[allow(clippy::type_complexity)] // one tuple per day, as the query returns it
    let mut days: BTreeMap<(String, SymbolId), (u64, i64, i64, i64, i64)> = BTreeMap::new();
    for t in &x.trades {
        let day = utc_datetime_micros(t.ts)[..10].to_string();
        let d = days.entry((day, t.symbol)).or_default();
        d.0 += 1;
        d.1 += t.qty;
        d.2 += t.quote_qty;
        d.3 += t.maker_fee;
        d.4 += t.taker_fee;
    }
    days.iter()
        .map(|((day, symbol), d)| {
            let (b, q) = x.pairs[symbol];
            fields!(day, symbol, d.0, dec(d.1, b), dec(d.2, q), dec(d.3, q), dec(d.4, q), dec(d.3 + d.4, q))
        })
        .collect()
}

async fn check_analytics(client: &Client, x: &Expected) {
    let queries = analytics_queries();
    let names: BTreeSet<&str> = queries.keys().map(String::as_str).collect();
    assert_eq!(names, BTreeSet::from(["account_trades_7d", "daily_volume_fees", "kline_1m"]));
    let kline = expected_kline(x);
    let account_7d = expected_account_7d(x);
    let daily = expected_daily(x);
    // The data must make the queries mean something: many candles with several trades, a
    // window that leaves trades out, several days.
    assert!(
        kline.len() > 50 && x.trades.len() > 2 * kline.len(),
        "{} candles of {} trades",
        kline.len(),
        x.trades.len()
    );
    assert!(daily.len() > 7, "{} days", daily.len());
    for (name, expected) in [("kline_1m", kline), ("account_trades_7d", account_7d), ("daily_volume_fees", daily)] {
        let actual = tsv(client, &queries[name]).await;
        assert_lines(&format!("analytics query {name}"), &expected, &actual);
    }
    let in_window = tsv(client, "SELECT sum(trade_count) FROM (SELECT count() AS trade_count FROM trades FINAL WHERE time > (SELECT max(time) FROM trades FINAL) - 604800)").await;
    let in_window: usize = in_window[0].parse().unwrap();
    assert!(
        in_window > 0 && in_window < x.trades.len(),
        "the 7-day window holds {in_window} of {} trades",
        x.trades.len()
    );
}

/// The same schema, rows and analytic queries on a current ClickHouse engine (chdb, embedded in
/// Python: tools/chdb-venv.sh) give exactly the answers of this server (18.16): names, types and
/// values. Money stays exact on both, which `avg` of a Decimal (Float64 on current releases) broke.
fn check_on_current_clickhouse(db: &TestDb) {
    let repo = env!("CARGO_MANIFEST_DIR");
    let python = match std::env::var("SEQD_CHDB_PYTHON") {
        Ok(python) => python,
        Err(_) => {
            let out = std::process::Command::new("bash").arg(format!("{repo}/tools/chdb-venv.sh")).output().unwrap();
            assert!(out.status.success(), "tools/chdb-venv.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        }
    };
    let schema = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(schema.path(), create_statements().join("\n;\n")).unwrap();
    let out = std::process::Command::new(&python)
        .arg(format!("{repo}/tools/analytics_compat.py"))
        .args(["--url", &clickhouse_url(), "--database", &db.name, "--analytics"])
        .arg(format!("{repo}/docs/analytics.sql"))
        .arg("--schema")
        .arg(schema.path())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the analytics differ on a current ClickHouse:\n{report}");
    assert_eq!(report.matches(": same answer").count(), analytics_queries().len(), "{report}");
}

// ---------------------------------------------------------------------------------------------
// Reconciliation figures.

async fn check_read_state(config: ClickHouseConfig, log: &Log, x: &Expected) {
    let mut sink = ClickHouseSink::new(config);
    let state = sink.read_state().await.unwrap();
    assert_eq!(state.checkpoint_seq, log.last_seq());
    assert_eq!(state.ledger_sums, x.ledger_sums, "ledger sums");
    assert_eq!(state.balances, x.last_ledger, "balances as the last ledger entries");
    let engine = &log.engine;
    let mut nonzero = 0;
    for (&(account, asset), &(available, held)) in &state.balances {
        let b = engine.balance_of(account, asset).map_or((0, 0), |b| (b.available, b.held));
        assert_eq!((available, held), b, "balance of account {account} asset {asset}");
        nonzero += usize::from(b != (0, 0));
    }
    let mut engine_nonzero = 0;
    let mut open = BTreeMap::new();
    for (account, _) in engine.account_parents() {
        for view in engine.balances(account).unwrap_or_default() {
            engine_nonzero += usize::from((view.available, view.held) != (0, 0));
        }
        for r in engine.open_orders(account).unwrap_or_default() {
            let order = MirrorOrder {
                account: r.account,
                symbol: r.symbol,
                side: r.side,
                status: r.status,
                price: r.price,
                remaining_qty: r.remaining_qty,
                filled_qty: r.filled_qty,
            };
            open.insert(r.order_id, order);
        }
    }
    assert_eq!(nonzero, engine_nonzero, "every non-zero balance of the engine is in the mirror");
    assert!(open.len() > 10, "{} open orders", open.len());
    assert_eq!(state.open_orders, open, "open orders");
}

// ---------------------------------------------------------------------------------------------

async fn replicate(config: ClickHouseConfig, log: &Log) -> std::sync::Arc<ReplicatorStats> {
    let sink = ClickHouseSink::new(config);
    let mut options = RunOptions::new(&log.events_dir);
    options.until_seq = Some(log.last_seq());
    options.backoff_max = Duration::from_millis(500);
    let stats = ReplicatorStats::new("clickhouse");
    run(sink, &options, &AtomicBool::new(false), &stats).await.unwrap();
    assert_eq!(stats.checkpoint_seq.load(Ordering::Relaxed), log.last_seq());
    assert_eq!(stats.errors.load(Ordering::Relaxed), 0, "no transient errors");
    stats
}

#[test]
fn mirror_matches_the_events_row_by_row_and_a_resent_log_collapses() {
    let log = write_log(WorkloadSpec { accounts: 100, resting_orders: 300, commands: 20_000, seed: 11 }, true);
    let x = expected_rows(&log.records);
    let db = TestDb::new();
    runtime().block_on(async {
        let client = db.client();
        let mut config = db.config();
        config.max_fact_rows = 20_000;
        let stats = replicate(config.clone(), &log).await;
        eprintln!(
            "{} records, {} rows ({} ledger, {} order events, {} trades) in {} batches",
            log.last_seq(),
            stats.total_rows.load(Ordering::Relaxed),
            x.tables["ledger_entries"].2.len(),
            x.tables["order_events"].2.len(),
            x.trades.len(),
            stats.batches.load(Ordering::Relaxed)
        );
        assert!(stats.batches.load(Ordering::Relaxed) > 2, "several batches");
        assert_eq!(stats.records.load(Ordering::Relaxed), log.last_seq());
        check_tables(&client, &x).await;
        check_analytics(&client, &x).await;
        check_on_current_clickhouse(&db);
        check_read_state(config.clone(), &log, &x).await;

        // The whole log again over the same tables, batched differently: as after a crash
        // between the data and the checkpoint, for every batch at once.
        let mut before = BTreeMap::new();
        for table in table_names() {
            before.insert(table, count(&client, table, true).await);
        }
        execute(&client, "DROP TABLE replicator_checkpoint").await;
        let mut again = config.clone();
        again.max_records = 3_000;
        again.max_fact_rows = 7_000;
        let stats = replicate(again, &log).await;
        assert_eq!(stats.records.load(Ordering::Relaxed), log.last_seq(), "the second run started from 0");
        let ledger_copies = count(&client, "ledger_entries", false).await;
        for table in table_names() {
            assert_eq!(count(&client, table, true).await, before[table], "{table}: count() FINAL after the re-send");
        }
        assert!(ledger_copies > before["ledger_entries"], "the re-send did write the rows again ({ledger_copies})");
        check_tables(&client, &x).await;

        // Merged for good, the copies are gone without FINAL too.
        for table in table_names() {
            execute(&client, &format!("OPTIMIZE TABLE {table} FINAL")).await;
            let expected = match x.tables.get(table) {
                Some((_, _, lines)) => lines.len() as u64,
                None => 1, // schema_version
            };
            assert_eq!(count(&client, table, false).await, expected, "{table}: count() after OPTIMIZE FINAL");
        }
        let partitions = tsv(&client, "SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = 'ledger_entries' AND active").await;
        assert!(partitions.len() >= 2, "the log spans months: partitions {partitions:?}");
        check_analytics(&client, &x).await;
        check_read_state(config, &log, &x).await;
    });
}

#[test]
fn a_newer_schema_is_fatal_and_an_unreachable_or_hung_server_is_transient() {
    let db = TestDb::new();
    runtime().block_on(async {
        let mut sink = ClickHouseSink::new(db.config());
        let resume = sink.open().await.unwrap();
        assert_eq!(resume.last_seq, 0);
        assert!(resume.catalog.accounts.is_empty());
        // Open again: nothing changes.
        sink.open().await.unwrap();
        assert_eq!(count(&db.client(), "schema_version", true).await, 1);

        execute(&db.client(), "INSERT INTO schema_version (version, applied_time) VALUES (999, now())").await;
        match ClickHouseSink::new(db.config()).open().await {
            Err(SinkError::Fatal(message)) => assert!(message.to_string().contains("999"), "{message}"),
            other => panic!("expected a fatal error, got {:?}", other.map(|r| r.last_seq)),
        }

        // Nothing listens.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let mut sink = ClickHouseSink::new(ClickHouseConfig::new(url, db.name.clone()));
        assert!(matches!(sink.open().await, Err(SinkError::Transient(_))));

        // Accepts and never answers.
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", hung.local_addr().unwrap());
        let keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = hung.accept().await {
                held.push(socket);
            }
        });
        let mut sink =
            ClickHouseSink::new(ClickHouseConfig::new(url, db.name.clone())).with_timeout(Duration::from_millis(300));
        let started = Instant::now();
        match sink.open().await {
            Err(SinkError::Transient(message)) => assert!(message.to_string().contains("no answer"), "{message}"),
            other => panic!("expected a transient error, got {:?}", other.map(|r| r.last_seq)),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        keep.abort();
    });
}

/// Throughput of the sink on a workload log (release build):
/// `cargo test --release --test replicate_clickhouse -- --ignored --nocapture`.
/// SEQD_CH_BENCH_COMMANDS sets the workload size (default 250,000 commands).
#[test]
#[ignore]
fn throughput_of_a_workload_log() {
    let commands = std::env::var("SEQD_CH_BENCH_COMMANDS").ok().and_then(|v| v.parse().ok()).unwrap_or(250_000);
    let log = write_log(WorkloadSpec { accounts: 1_000, resting_orders: 1_000, commands, seed: 3 }, false);
    let config = ClickHouseConfig::new(clickhouse_url(), "unused");
    let limits = BatchLimits { max_records: config.max_records, max_fact_rows: config.max_fact_rows };

    // The replicator's own side alone: read the log and build the rows.
    let started = Instant::now();
    let mut tailer = Tailer::open(&log.events_dir, 1).unwrap();
    let mut builder = BatchBuilder::new(Catalog::default());
    let mut batches = Vec::new();
    while tailer.fill(&mut builder, limits).unwrap() > 0 {
        batches.push(builder.take());
    }
    let build = started.elapsed();
    let rows: usize = batches.iter().map(|b| b.total_rows()).sum();
    let fact_rows: usize = batches.iter().map(|b| b.fact_rows()).sum();

    // The sink alone: the same batches, written one after the other.
    let db = TestDb::new();
    let (open, write, write_cpu) = runtime().block_on(async {
        let mut sink = ClickHouseSink::new(db.config());
        let started = Instant::now();
        sink.open().await.unwrap();
        let open = started.elapsed();
        let cpu = Cpu::now();
        let started = Instant::now();
        for batch in &batches {
            sink.write(batch).await.unwrap();
        }
        (open, started.elapsed(), cpu.since())
    });
    drop(db);

    let db = TestDb::new();
    let (stats, elapsed, run_cpu) = runtime().block_on(async {
        let cpu = Cpu::now();
        let started = Instant::now();
        let stats = replicate(db.config(), &log).await;
        (stats, started.elapsed(), cpu.since())
    });
    let total = stats.total_rows.load(Ordering::Relaxed);
    assert_eq!(total as usize, rows);
    let per_s = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "{} records, {rows} rows ({fact_rows} fact rows) in {} batches\n\
         log -> rows only:        {:.2} s, {:.0} rows/s\n\
         sink.write only:         {:.2} s, {:.0} rows/s (open: {:.2} s)\n\
         replicate::run (all):    {:.2} s, {:.0} rows/s ({:.0} fact rows/s)\n\
         CPU seconds (this process, clickhouse-server): sink.write only {:.2}, {:.2}; run {:.2}, {:.2}",
        log.last_seq(),
        batches.len(),
        build.as_secs_f64(),
        per_s(rows, build),
        write.as_secs_f64(),
        per_s(rows, write),
        open.as_secs_f64(),
        elapsed.as_secs_f64(),
        per_s(rows, elapsed),
        per_s(fact_rows, elapsed),
        write_cpu.0,
        write_cpu.1,
        run_cpu.0,
        run_cpu.1,
    );
}

/// CPU time used so far by this process and by the local clickhouse-server (0 if not found).
struct Cpu(f64, f64);

impl Cpu {
    fn now() -> Cpu {
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Cpu(secs(usage.ru_utime) + secs(usage.ru_stime), clickhouse_server_cpu())
    }

    fn since(&self) -> (f64, f64) {
        let now = Cpu::now();
        (now.0 - self.0, now.1 - self.1)
    }
}

fn clickhouse_server_cpu() -> f64 {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "clickhouse-serv" {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
            let used: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
            return used / ticks;
        }
    }
    0.0
}
