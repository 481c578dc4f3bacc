//! ClickHouse sink: the analytics mirror.
//!
//! Talks HTTP through the official `clickhouse` crate. Inserts are Native-format blocks encoded
//! here and sent with `Client::insert_formatted_with` (one `INSERT` per table and batch, the tables'
//! inserts of a batch running concurrently, then the checkpoint row): ClickHouse parses Native
//! column by column, which costs the server about a third less CPU per row than the crate's
//! `RowBinary` (row by row), and the server's CPU is what limits the insert rate. Reads use the
//! crate's `RowBinary` rows with `Client::with_validation(false)` (ClickHouse 18.16 has no
//! `RowBinaryWithNamesAndTypes`).
//!
//! Exactly once in effect, without transactions: every table is a `ReplacingMergeTree` whose
//! sorting key is the row's identity, so a batch that is sent again (the process died after its
//! data but before its checkpoint, or an insert's answer was lost) collapses into the rows it
//! already wrote. Facts (ledger entries, order events, trades, deposits, transfers) are keyed by
//! the event identity (seq, idx) or the trade id; current-state tables (assets, symbols,
//! accounts, balances, withdrawals) by their id, with `version = seq * 2^20 + idx` of the event
//! that produced the row. Readers use `FINAL`. Facts are partitioned by `toYYYYMM(time)`, and
//! `time` comes from the event log's stamp, so two copies of a row always land in one partition
//! (merges and `OPTIMIZE ... FINAL` only collapse within a partition).
//!
//! Times are `time DateTime('UTC')` (seconds) plus `ts_ns UInt64` (the sequencing stamp);
//! money is `Decimal(38,18)` written as its raw `i128` ([`Amount::to_mirror_units`]); enums are
//! `Enum8` with the engine's wire values. The schema version is kept in `schema_version`; a
//! mirror written by a newer version of this sink is a fatal error, as is a table whose columns
//! are not the ones this version writes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use clickhouse::{Client, Row, RowOwned, RowRead};
use rustc_hash::FxHashMap;
use serde::Deserialize;

use super::reconcile::{Mirror, MirrorOrder, MirrorState};
use super::rows::{AccountInfo, Amount, Batch, Catalog, Origin};
use super::{BatchLimits, Resume, Sink, SinkError};
use crate::engine::{AccountId, AccountStatus, OrderStatus, Seq, Side};

/// The sink's name: its checkpoint key, log and metric label.
pub const SINK_NAME: &str = "clickhouse";

/// Version of the tables below; bump it (and migrate in `open`) when they change.
pub const SCHEMA_VERSION: u32 = 1;

/// `version` of a current-state row: the event identity as one ordered number.
pub const VERSION_IDX_BITS: u32 = 20;

/// Default limit of one request (connect, insert or query): a hung server becomes a
/// [`SinkError::Transient`] after it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct ClickHouseConfig {
    /// HTTP interface, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Created if missing.
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Batch limits: ClickHouse wants few, large inserts.
    pub max_records: usize,
    pub max_fact_rows: usize,
}

impl ClickHouseConfig {
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> ClickHouseConfig {
        ClickHouseConfig {
            url: url.into(),
            database: database.into(),
            user: None,
            password: None,
            max_records: 1_000_000,
            max_fact_rows: 200_000,
        }
    }
}

pub struct ClickHouseSink {
    config: ClickHouseConfig,
    /// Bound to the database.
    client: Client,
    /// Not bound to a database (to create it).
    server: Client,
    timeout: Duration,
    /// Creation (seq, ts_ns) of every account the mirror holds, so that an account row written
    /// for a status change keeps its creation time.
    account_created: FxHashMap<AccountId, (Seq, u64)>,
}

impl ClickHouseSink {
    pub fn new(config: ClickHouseConfig) -> ClickHouseSink {
        let mut server = Client::default().with_url(config.url.clone()).with_validation(false);
        if let Some(user) = &config.user {
            server = server.with_user(user.clone());
        }
        if let Some(password) = &config.password {
            server = server.with_password(password.clone());
        }
        let client = server.clone().with_database(config.database.clone());
        ClickHouseSink { config, client, server, timeout: DEFAULT_TIMEOUT, account_created: FxHashMap::default() }
    }

    /// Limit of each request (default [`DEFAULT_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> ClickHouseSink {
        self.timeout = timeout;
        self
    }

    pub fn config(&self) -> &ClickHouseConfig {
        &self.config
    }

    /// The client bound to the mirror's database (for tools and tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn execute(&self, client: &Client, sql: &str) -> Result<(), SinkError> {
        let what = || format!("ClickHouse statement `{}`", first_line(sql));
        with_timeout(self.timeout, what, client.query_raw(sql).execute()).await
    }

    async fn fetch_all<T: RowOwned + RowRead>(&self, sql: &str) -> Result<Vec<T>, SinkError> {
        let what = || format!("ClickHouse query `{}`", first_line(sql));
        with_timeout(self.timeout, what, self.client.query(sql).fetch_all::<T>()).await
    }

    async fn fetch_one<T: RowOwned + RowRead>(&self, sql: &str) -> Result<T, SinkError> {
        let what = || format!("ClickHouse query `{}`", first_line(sql));
        with_timeout(self.timeout, what, self.client.query(sql).fetch_one::<T>()).await
    }

    /// Creates the database and tables if missing; refuses a newer or different schema.
    async fn prepare_schema(&self) -> Result<(), SinkError> {
        let database = quote_identifier(&self.config.database);
        self.execute(&self.server, &format!("CREATE DATABASE IF NOT EXISTS {database}")).await?;
        self.execute(&self.client, &SCHEMA_VERSION_TABLE.create_sql()).await?;
        let found = self.check_version().await?;
        for table in TABLES {
            self.execute(&self.client, &table.create_sql()).await?;
        }
        self.check_columns().await?;
        if found < SCHEMA_VERSION {
            // Version 1 is the first: nothing to migrate from.
            let now = (super::now_ns() / 1_000_000_000) as u32;
            let row = SchemaVersionRow { version: SCHEMA_VERSION, applied_time: now };
            self.insert_rows(&SCHEMA_VERSION_TABLE, std::slice::from_ref(&row), |r| SchemaVersionRow { ..*r }).await?;
        }
        Ok(())
    }

    /// The mirror's schema version; newer than this binary's is fatal.
    async fn check_version(&self) -> Result<u32, SinkError> {
        let found: u32 = self.fetch_one("SELECT max(version) FROM schema_version").await?;
        if found > SCHEMA_VERSION {
            return Err(SinkError::Fatal(format!(
                "ClickHouse database {} has schema version {found}, newer than this binary's {SCHEMA_VERSION}",
                self.config.database
            )));
        }
        Ok(found)
    }

    /// Every table this version writes must have exactly the columns it writes.
    async fn check_columns(&self) -> Result<(), SinkError> {
        let database = quote_literal(&self.config.database);
        let rows: Vec<ColumnRow> = self
            .fetch_all(&format!("SELECT table, name, type FROM system.columns WHERE database = {database}"))
            .await?;
        let mut found: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::new();
        for row in &rows {
            found.entry(row.table.as_str()).or_default().insert((row.name.clone(), normalize_type(&row.r#type)));
        }
        for table in std::iter::once(&SCHEMA_VERSION_TABLE).chain(TABLES) {
            let expected: BTreeSet<(String, String)> =
                table.columns.iter().map(|(name, ty)| (name.to_string(), normalize_type(ty))).collect();
            let actual = found.get(table.name).cloned().unwrap_or_default();
            if actual != expected {
                return Err(SinkError::Fatal(format!(
                    "ClickHouse table {}.{} does not have the columns this binary writes: found {:?}, expected {:?}",
                    self.config.database, table.name, actual, expected
                )));
            }
        }
        Ok(())
    }

    async fn read_checkpoint(&self) -> Result<Seq, SinkError> {
        let name = quote_literal(SINK_NAME);
        self.fetch_one(&format!("SELECT max(last_seq) FROM replicator_checkpoint FINAL WHERE sink = {name}")).await
    }

    /// Reference data as the mirror holds it. Rows newer than the checkpoint (a batch whose
    /// checkpoint was not written) are harmless: reference rows only change through events that
    /// the re-sent records carry again.
    async fn read_catalog(&mut self) -> Result<Catalog, SinkError> {
        let mut catalog = Catalog::default();
        let assets: Vec<AssetCh> = self.fetch_all("SELECT ?fields FROM assets FINAL").await?;
        for asset in assets {
            catalog.asset_scales.insert(asset.asset, asset.scale);
        }
        let symbols: Vec<SymbolCh> = self.fetch_all("SELECT ?fields FROM symbols FINAL").await?;
        for symbol in symbols {
            catalog.symbols.insert(symbol.symbol, (symbol.base, symbol.quote));
        }
        let accounts: Vec<AccountCh> = self.fetch_all("SELECT ?fields FROM accounts FINAL").await?;
        self.account_created.clear();
        for account in accounts {
            let status = AccountStatus::from_u8(account.status as u8).ok_or_else(|| {
                SinkError::Fatal(format!("account {} has status {} in ClickHouse", account.account, account.status))
            })?;
            self.account_created.insert(account.account, (account.created_seq, account.created_ts_ns));
            let info = AccountInfo { parent: account.parent, owner: account.owner, path: account.path, status };
            catalog.accounts.insert(account.account, info);
        }
        Ok(catalog)
    }

    /// One `INSERT` of `rows` into `table` as one Native block, each row converted by `convert`.
    async fn insert_rows<R, T: NativeRow>(
        &self,
        table: &Table,
        rows: &[R],
        convert: impl Fn(&R) -> T,
    ) -> Result<(), SinkError> {
        if rows.is_empty() {
            return Ok(());
        }
        let (header, columns) = native_block(table, rows, convert);
        let sql = format!("INSERT INTO {} ({}) FORMAT Native", table.name, T::COLUMNS.join(", "));
        let what = || format!("ClickHouse insert into {}", table.name);
        let attempt = async {
            let mut insert =
                self.client.insert_formatted_with(sql).with_timeouts(Some(self.timeout), Some(self.timeout));
            insert.send(header.into()).await?;
            for column in columns {
                insert.send(column.into()).await?;
            }
            insert.end().await
        };
        with_timeout(self.timeout, what, attempt).await
    }
}

impl Sink for ClickHouseSink {
    fn name(&self) -> &str {
        SINK_NAME
    }

    fn batch_limits(&self) -> BatchLimits {
        BatchLimits { max_records: self.config.max_records.max(1), max_fact_rows: self.config.max_fact_rows.max(1) }
    }

    async fn open(&mut self) -> Result<Resume, SinkError> {
        self.prepare_schema().await?;
        let last_seq = self.read_checkpoint().await?;
        let catalog = self.read_catalog().await?;
        Ok(Resume { last_seq, catalog })
    }

    async fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        check_versions(batch)?;
        let created = &self.account_created;
        let account_row = |row: &super::rows::AccountRow| {
            let (created_seq, created_ts_ns) =
                created.get(&row.account).copied().unwrap_or((row.created.seq, row.created.ts_ns));
            AccountCh {
                account: row.account,
                parent: row.info.parent,
                owner: row.info.owner,
                path: row.info.path.clone(),
                status: row.info.status.as_u8() as i8,
                created_seq,
                created_time: seconds(created_ts_ns),
                created_ts_ns,
                seq: row.updated.seq,
                idx: row.updated.idx,
                time: seconds(row.updated.ts_ns),
                ts_ns: row.updated.ts_ns,
                version: version(row.updated),
            }
        };
        tokio::try_join!(
            self.insert_rows(table("ledger_entries"), &batch.ledger, |r| LedgerCh::from(r)),
            self.insert_rows(table("order_events"), &batch.order_events, |r| OrderEventCh::from(r)),
            self.insert_rows(table("trades"), &batch.trades, |r| TradeCh::from(r)),
            self.insert_rows(table("deposits"), &batch.deposits, |r| DepositCh::from(r)),
            self.insert_rows(table("transfers"), &batch.transfers, |r| TransferCh::from(r)),
            self.insert_rows(table("withdrawals"), &batch.withdrawals, |r| WithdrawalCh::from(r)),
            self.insert_rows(table("balances"), &batch.balances, |r| BalanceCh::from(r)),
            self.insert_rows(table("accounts"), &batch.accounts, account_row),
            self.insert_rows(table("assets"), &batch.assets, |r| AssetCh::from(r)),
            self.insert_rows(table("symbols"), &batch.symbols, |r| SymbolCh::from(r)),
        )?;
        // Only once every row of the batch is in: a failure before this re-sends the batch.
        let last_ts_ns = batch.record_ts_ns.last().copied().unwrap_or(0);
        let checkpoint = CheckpointCh {
            sink: SINK_NAME.to_string(),
            last_seq: batch.last_seq,
            time: seconds(last_ts_ns),
            ts_ns: last_ts_ns,
        };
        self.insert_rows(table("replicator_checkpoint"), std::slice::from_ref(&checkpoint), |c| c.clone()).await?;
        for row in &batch.accounts {
            self.account_created.entry(row.account).or_insert((row.created.seq, row.created.ts_ns));
        }
        Ok(())
    }
}

impl Mirror for ClickHouseSink {
    fn name(&self) -> &str {
        SINK_NAME
    }

    /// The mirror at its checkpoint: rows beyond it (a batch without its checkpoint) are left out.
    async fn read_state(&mut self) -> Result<MirrorState, SinkError> {
        self.check_version().await?;
        let checkpoint_seq = self.read_checkpoint().await?;
        let catalog = self.read_catalog().await?;
        let mut state = MirrorState { checkpoint_seq, ..MirrorState::default() };
        let v = "seq * 1048576 + idx";
        let ledger: Vec<LedgerStateRow> = self
            .fetch_all(&format!(
                "SELECT account, asset, sum(available_delta) AS available_sum, sum(held_delta) AS held_sum, \
                 argMax(available_after, {v}) AS available, argMax(held_after, {v}) AS held \
                 FROM ledger_entries FINAL WHERE seq <= {checkpoint_seq} GROUP BY account, asset"
            ))
            .await?;
        for row in ledger {
            let scale = *catalog.asset_scales.get(&row.asset).ok_or_else(|| {
                SinkError::Fatal(format!("ClickHouse ledger refers to asset {}, which assets lacks", row.asset))
            })?;
            let units = |raw: i128| minor_units(raw, scale, "ledger_entries");
            let key = (row.account, row.asset);
            state.ledger_sums.insert(key, (units(row.available_sum)?, units(row.held_sum)?));
            state.balances.insert(key, (units(row.available)?, units(row.held)?));
        }
        let orders: Vec<OpenOrderRow> = self
            .fetch_all(&format!(
                "SELECT order_id, argMax(account, {v}) AS account, argMax(symbol, {v}) AS symbol, \
                 argMax(side, {v}) AS side, argMax(status, {v}) AS status, argMax(price, {v}) AS price, \
                 argMax(remaining_qty, {v}) AS remaining_qty, argMax(filled_qty, {v}) AS filled_qty \
                 FROM order_events FINAL WHERE seq <= {checkpoint_seq} GROUP BY order_id \
                 HAVING status IN ('new', 'partially_filled')"
            ))
            .await?;
        for row in orders {
            let (base, quote) = *catalog.symbols.get(&row.symbol).ok_or_else(|| {
                SinkError::Fatal(format!(
                    "ClickHouse order {} is in symbol {}, which symbols lacks",
                    row.order_id, row.symbol
                ))
            })?;
            let scale = |asset| {
                catalog.asset_scales.get(&asset).copied().ok_or_else(|| {
                    SinkError::Fatal(format!(
                        "ClickHouse symbol {} refers to asset {asset}, which assets lacks",
                        row.symbol
                    ))
                })
            };
            let (base_scale, quote_scale) = (scale(base)?, scale(quote)?);
            let enum_error =
                || SinkError::Fatal(format!("ClickHouse order {} has an unknown enum value", row.order_id));
            let order = MirrorOrder {
                account: row.account,
                symbol: row.symbol,
                side: Side::from_u8(row.side as u8).ok_or_else(enum_error)?,
                status: OrderStatus::from_u8(row.status as u8).ok_or_else(enum_error)?,
                price: minor_units(row.price, quote_scale, "order_events")?,
                remaining_qty: minor_units(row.remaining_qty, base_scale, "order_events")?,
                filled_qty: minor_units(row.filled_qty, base_scale, "order_events")?,
            };
            state.open_orders.insert(row.order_id, order);
        }
        Ok(state)
    }
}

fn minor_units(raw: i128, scale: u8, table: &str) -> Result<i64, SinkError> {
    Amount::from_mirror_units(raw, scale).map(|a| a.units).ok_or_else(|| {
        SinkError::Fatal(format!(
            "ClickHouse {table} holds {raw}e-18, not a whole number of minor units at scale {scale}"
        ))
    })
}

/// Runs a request under a time limit; every failure of it is transient (the server is down,
/// restarting, overloaded or hung: reconnect and resume from the checkpoint).
async fn with_timeout<T>(
    limit: Duration,
    what: impl Fn() -> String,
    request: impl std::future::Future<Output = clickhouse::error::Result<T>>,
) -> Result<T, SinkError> {
    match tokio::time::timeout(limit, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(SinkError::Transient(format!("{}: {error}", what()))),
        Err(_) => Err(SinkError::Transient(format!("{}: no answer within {limit:?}", what()))),
    }
}

fn first_line(sql: &str) -> &str {
    let sql = sql.trim_start();
    let line = sql.lines().next().unwrap_or("");
    match line.char_indices().nth(120) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `system.columns` spells types with spaces after commas and around `=`; compare without them.
fn normalize_type(ty: &str) -> String {
    ty.chars().filter(|c| !c.is_whitespace()).collect()
}

fn seconds(ts_ns: u64) -> u32 {
    (ts_ns / 1_000_000_000).min(u64::from(u32::MAX)) as u32
}

fn version(origin: Origin) -> u64 {
    (origin.seq << VERSION_IDX_BITS) | u64::from(origin.idx)
}

/// Versions must stay ordered: an event index needs `VERSION_IDX_BITS` bits at most, a seq the
/// rest.
fn check_versions(batch: &Batch) -> Result<(), SinkError> {
    if batch.last_seq >= 1 << (64 - VERSION_IDX_BITS) {
        return Err(SinkError::Fatal(format!("seq {} does not fit the mirror's row versions", batch.last_seq)));
    }
    let max_idx = batch
        .accounts
        .iter()
        .map(|r| r.updated.idx)
        .chain(batch.balances.iter().map(|r| r.origin.idx))
        .chain(batch.withdrawals.iter().map(|r| r.origin.idx))
        .chain(batch.symbols.iter().map(|r| r.origin.idx))
        .chain(batch.assets.iter().map(|r| r.origin.idx))
        .max()
        .unwrap_or(0);
    if max_idx >= 1 << VERSION_IDX_BITS {
        return Err(SinkError::Fatal(format!("an event index of {max_idx} does not fit the mirror's row versions")));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Schema.

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, &'static str)],
    engine: &'static str,
    partition_by: Option<&'static str>,
    order_by: &'static str,
}

impl Table {
    /// The type of one of the table's columns (the row types name only columns of their table).
    fn column_type(&self, column: &str) -> &'static str {
        match self.columns.iter().find(|(name, _)| *name == column) {
            Some((_, ty)) => ty,
            None => panic!("table {} has no column {column}", self.name),
        }
    }

    fn create_sql(&self) -> String {
        let columns: Vec<String> = self.columns.iter().map(|(name, ty)| format!("    {name} {ty}")).collect();
        let partition = self.partition_by.map(|p| format!("\nPARTITION BY {p}")).unwrap_or_default();
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\n{}\n) ENGINE = {}{partition}\nORDER BY {}",
            self.name,
            columns.join(",\n"),
            self.engine,
            self.order_by
        )
    }
}

const TIME: &str = "DateTime('UTC')";
const MONEY: &str = "Decimal(38, 18)";
const SIDE: &str = "Enum8('buy' = 0, 'sell' = 1)";
const ORDER_TYPE: &str = "Enum8('limit' = 0, 'market' = 1, 'stop_limit' = 2, 'stop_market' = 3)";
const TIF: &str = "Enum8('gtc' = 0, 'ioc' = 1, 'fok' = 2, 'post_only' = 3)";
const ACCOUNT_STATUS: &str = "Enum8('active' = 0, 'frozen' = 1)";
const SYMBOL_STATUS: &str = "Enum8('trading' = 0, 'halted' = 1)";
const WITHDRAWAL_STATUS: &str = "Enum8('pending' = 0, 'approved' = 1, 'rejected' = 2)";
const ORDER_STATUS: &str =
    "Enum8('new' = 0, 'partially_filled' = 1, 'filled' = 2, 'cancelled' = 3, 'expired' = 4, 'rejected' = 5)";
const LEDGER_KIND: &str = "Enum8('deposit' = 0, 'withdrawal' = 1, 'trade' = 2, 'fee' = 3, 'transfer' = 4, \
     'hold' = 5, 'release' = 6, 'adjustment' = 7)";
const REF_KIND: &str =
    "Enum8('order' = 0, 'trade' = 1, 'deposit' = 2, 'withdrawal' = 3, 'transfer' = 4, 'client_ref' = 5)";
const EXEC_KIND: &str = "Enum8('new' = 0, 'trade' = 1, 'cancelled' = 2, 'expired' = 3, 'amended' = 4, 'triggered' = 5)";

const MONTHLY: Option<&str> = Some("toYYYYMM(time)");
const FACT: &str = "ReplacingMergeTree";
const STATE: &str = "ReplacingMergeTree(version)";

const SCHEMA_VERSION_TABLE: Table = Table {
    name: "schema_version",
    columns: &[("version", "UInt32"), ("applied_time", TIME)],
    engine: FACT,
    partition_by: None,
    order_by: "version",
};

/// Every table but `schema_version`, in the order they are created.
const TABLES: &[Table] = &[
    Table {
        name: "replicator_checkpoint",
        columns: &[("sink", "String"), ("last_seq", "UInt64"), ("time", TIME), ("ts_ns", "UInt64")],
        engine: "ReplacingMergeTree(last_seq)",
        partition_by: None,
        order_by: "sink",
    },
    Table {
        name: "assets",
        columns: &[
            ("asset", "UInt32"),
            ("scale", "UInt8"),
            ("seq", "UInt64"),
            ("idx", "UInt32"),
            ("time", TIME),
            ("ts_ns", "UInt64"),
            ("version", "UInt64"),
        ],
        engine: STATE,
        partition_by: None,
        order_by: "asset",
    },
    Table {
        name: "symbols",
        columns: &[
            ("symbol", "UInt32"),
            ("base", "UInt32"),
            ("quote", "UInt32"),
            ("tick_size", MONEY),
            ("lot_size", MONEY),
            ("min_qty", MONEY),
            ("min_notional", MONEY),
            ("max_order_qty", MONEY),
            ("maker_fee_ppm", "UInt32"),
            ("taker_fee_ppm", "UInt32"),
            ("price_band_bps", "UInt32"),
            ("status", SYMBOL_STATUS),
            ("seq", "UInt64"),
            ("idx", "UInt32"),
            ("time", TIME),
            ("ts_ns", "UInt64"),
            ("version", "UInt64"),
        ],
        engine: STATE,
        partition_by: None,
        order_by: "symbol",
    },
    Table {
        name: "accounts",
        columns: &[
            ("account", "UInt64"),
            ("parent", "UInt64"),
            ("owner", "UInt64"),
            ("path", "String"),
            ("status", ACCOUNT_STATUS),
            ("created_seq", "UInt64"),
            ("created_time", TIME),
            ("created_ts_ns", "UInt64"),
            ("seq", "UInt64"),
            ("idx", "UInt32"),
            ("time", TIME),
            ("ts_ns", "UInt64"),
            ("version", "UInt64"),
        ],
        engine: STATE,
        partition_by: None,
        order_by: "account",
    },
    Table {
        name: "balances",
        columns: &[
            ("account", "UInt64"),
            ("asset", "UInt32"),
            ("available", MONEY),
            ("held", MONEY),
            ("seq", "UInt64"),
            ("idx", "UInt32"),
            ("time", TIME),
            ("ts_ns", "UInt64"),
            ("version", "UInt64"),
        ],
        engine: STATE,
        partition_by: None,
        order_by: "(account, asset)",
    },
    Table {
        name: "withdrawals",
        columns: &[
            ("withdrawal_id", "UInt64"),
            ("account", "UInt64"),
            ("asset", "UInt32"),
            ("amount", MONEY),
            ("client_ref", "UInt64"),
            ("status", WITHDRAWAL_STATUS),
            ("seq", "UInt64"),
            ("idx", "UInt32"),
            ("time", TIME),
            ("ts_ns", "UInt64"),
            ("version", "UInt64"),
        ],
        engine: STATE,
        partition_by: None,
        order_by: "withdrawal_id",
    },
    Table {
        name: "ledger_entries",
        columns: &[
            ("seq", "UInt64"),
            ("idx", "UInt32"),
            ("time", TIME),
            ("ts_ns", "UInt64"),
            ("account", "UInt64"),
            ("asset", "UInt32"),
            ("kind", LEDGER_KIND),
            ("available_delta", MONEY),
            ("held_delta", MONEY),
            ("available_after", MONEY),
            ("held_after", MONEY),
            ("ref_kind", REF_KIND),
            ("ref_id", "UInt64"),
        ],
        engine: FACT,
        partition_by: MONTHLY,
        order_by: "(seq, idx)",
    },
    Table {
        name: "order_events",
        columns: &[
            ("seq", "UInt64"),
            ("idx", "UInt32"),
            ("time", TIME),
            ("ts_ns", "UInt64"),
            ("order_id", "UInt64"),
            ("account", "UInt64"),
            ("symbol", "UInt32"),
            ("client_order_id", "UInt64"),
            ("exec", EXEC_KIND),
            ("status", ORDER_STATUS),
            ("side", SIDE),
            ("order_type", ORDER_TYPE),
            ("tif", TIF),
            ("price", MONEY),
            ("qty", MONEY),
            ("filled_qty", MONEY),
            ("remaining_qty", MONEY),
            ("filled_quote", MONEY),
            ("fees_paid", MONEY),
        ],
        engine: FACT,
        partition_by: MONTHLY,
        order_by: "(seq, idx)",
    },
    Table {
        name: "trades",
        columns: &[
            ("trade_id", "UInt64"),
            ("symbol", "UInt32"),
            ("seq", "UInt64"),
            ("idx", "UInt32"),
            ("time", TIME),
            ("ts_ns", "UInt64"),
            ("price", MONEY),
            ("qty", MONEY),
            ("quote_qty", MONEY),
            ("maker_order", "UInt64"),
            ("taker_order", "UInt64"),
            ("maker_account", "UInt64"),
            ("taker_account", "UInt64"),
            ("maker_side", SIDE),
            ("maker_fee", MONEY),
            ("taker_fee", MONEY),
        ],
        engine: FACT,
        partition_by: MONTHLY,
        order_by: "(symbol, trade_id)",
    },
    Table {
        name: "deposits",
        columns: &[
            ("seq", "UInt64"),
            ("idx", "UInt32"),
            ("time", TIME),
            ("ts_ns", "UInt64"),
            ("account", "UInt64"),
            ("asset", "UInt32"),
            ("amount", MONEY),
            ("external_ref", "UInt64"),
        ],
        engine: FACT,
        partition_by: MONTHLY,
        order_by: "(seq, idx)",
    },
    Table {
        name: "transfers",
        columns: &[
            ("seq", "UInt64"),
            ("idx", "UInt32"),
            ("time", TIME),
            ("ts_ns", "UInt64"),
            ("from_account", "UInt64"),
            ("to_account", "UInt64"),
            ("asset", "UInt32"),
            ("amount", MONEY),
            ("client_ref", "UInt64"),
        ],
        engine: FACT,
        partition_by: MONTHLY,
        order_by: "(seq, idx)",
    },
];

/// One of [`TABLES`] by name.
fn table(name: &str) -> &'static Table {
    TABLES.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no table {name}"))
}

/// Names of the tables the sink writes (all `ReplacingMergeTree`), for tools and tests.
pub fn table_names() -> impl Iterator<Item = &'static str> {
    std::iter::once(SCHEMA_VERSION_TABLE.name).chain(TABLES.iter().map(|t| t.name))
}

/// The `CREATE TABLE IF NOT EXISTS` statements of the schema (documentation, tools).
pub fn create_statements() -> Vec<String> {
    std::iter::once(&SCHEMA_VERSION_TABLE).chain(TABLES).map(Table::create_sql).collect()
}

// ---------------------------------------------------------------------------------------------
// Native format. ClickHouse parses a Native block column by column, which costs its server about
// a third less CPU per row than RowBinary (parsed row by row, value by value); the server is
// what limits the insert rate. A block over HTTP (no block info): varuint column count, varuint
// row count, then per column its name, its type (exactly the table's) and its values, fixed-size
// values little-endian back to back, strings as varuint length + bytes.

/// A value of a Native column.
trait NativeValue {
    /// Bytes per value (a guess for strings), to size the column buffers.
    const SIZE: usize;
    fn put(&self, out: &mut Vec<u8>);
}

macro_rules! native_fixed {
    ($($t:ty),*) => {$(
        impl NativeValue for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline]
            fn put(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}
native_fixed!(u8, u32, u64, i8, i128);

impl NativeValue for String {
    const SIZE: usize = 24;
    fn put(&self, out: &mut Vec<u8>) {
        put_string(out, self);
    }
}

fn put_varuint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_string(out: &mut Vec<u8>, value: &str) {
    put_varuint(out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

/// A row type whose fields are, in order, the columns it is inserted into.
trait NativeRow {
    const COLUMNS: &'static [&'static str];
    const SIZES: &'static [usize];
    /// Appends each field to its column's buffer.
    fn put(&self, columns: &mut [Vec<u8>]);
}

/// Defines a row struct (field = column) and its [`NativeRow`] encoding.
macro_rules! native_row {
    ($(#[$meta:meta])* struct $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        struct $name { $($field: $ty),* }

        impl NativeRow for $name {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];
            const SIZES: &'static [usize] = &[$(<$ty as NativeValue>::SIZE),*];
            #[inline]
            fn put(&self, columns: &mut [Vec<u8>]) {
                let mut columns = columns.iter_mut();
                $(NativeValue::put(&self.$field, columns.next().expect("a buffer per column"));)*
            }
        }
    };
}

/// `rows` as one Native block: the block header, then one buffer per column (sent as they are).
fn native_block<R, T: NativeRow>(table: &Table, rows: &[R], convert: impl Fn(&R) -> T) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut columns: Vec<Vec<u8>> = T::COLUMNS
        .iter()
        .zip(T::SIZES)
        .map(|(name, size)| {
            let mut column = Vec::with_capacity(64 + rows.len() * size);
            put_string(&mut column, name);
            put_string(&mut column, table.column_type(name));
            column
        })
        .collect();
    for row in rows {
        convert(row).put(&mut columns);
    }
    let mut header = Vec::with_capacity(20);
    put_varuint(&mut header, columns.len() as u64);
    put_varuint(&mut header, rows.len() as u64);
    (header, columns)
}

// ---------------------------------------------------------------------------------------------
// Rows: field names are the column names. Written as Native; the reference-data rows are also read
// back (RowBinary, `SELECT ?fields`).

native_row! {
    #[derive(Clone, Copy)]
    struct SchemaVersionRow {
        version: u32,
        applied_time: u32,
    }
}

#[derive(Row, Deserialize)]
struct ColumnRow {
    table: String,
    name: String,
    r#type: String,
}

native_row! {
    #[derive(Clone)]
    struct CheckpointCh {
        sink: String,
        last_seq: u64,
        time: u32,
        ts_ns: u64,
    }
}

native_row! {
    #[derive(Row, Deserialize)]
    struct AssetCh {
        asset: u32,
        scale: u8,
        seq: u64,
        idx: u32,
        time: u32,
        ts_ns: u64,
        version: u64,
    }
}

impl From<&super::rows::AssetRow> for AssetCh {
    fn from(r: &super::rows::AssetRow) -> AssetCh {
        let o = r.origin;
        AssetCh {
            asset: r.asset,
            scale: r.scale,
            seq: o.seq,
            idx: o.idx,
            time: seconds(o.ts_ns),
            ts_ns: o.ts_ns,
            version: version(o),
        }
    }
}

native_row! {
    #[derive(Row, Deserialize)]
    struct SymbolCh {
        symbol: u32,
        base: u32,
        quote: u32,
        tick_size: i128,
        lot_size: i128,
        min_qty: i128,
        min_notional: i128,
        max_order_qty: i128,
        maker_fee_ppm: u32,
        taker_fee_ppm: u32,
        price_band_bps: u32,
        status: i8,
        seq: u64,
        idx: u32,
        time: u32,
        ts_ns: u64,
        version: u64,
    }
}

impl From<&super::rows::SymbolRow> for SymbolCh {
    fn from(r: &super::rows::SymbolRow) -> SymbolCh {
        let o = r.origin;
        SymbolCh {
            symbol: r.symbol,
            base: r.base,
            quote: r.quote,
            tick_size: r.tick_size.to_mirror_units(),
            lot_size: r.lot_size.to_mirror_units(),
            min_qty: r.min_qty.to_mirror_units(),
            min_notional: r.min_notional.to_mirror_units(),
            max_order_qty: r.max_order_qty.to_mirror_units(),
            maker_fee_ppm: r.maker_fee_ppm,
            taker_fee_ppm: r.taker_fee_ppm,
            price_band_bps: r.price_band_bps,
            status: r.status.as_u8() as i8,
            seq: o.seq,
            idx: o.idx,
            time: seconds(o.ts_ns),
            ts_ns: o.ts_ns,
            version: version(o),
        }
    }
}

native_row! {
    #[derive(Row, Deserialize)]
    struct AccountCh {
        account: u64,
        parent: u64,
        owner: u64,
        path: String,
        status: i8,
        created_seq: u64,
        created_time: u32,
        created_ts_ns: u64,
        seq: u64,
        idx: u32,
        time: u32,
        ts_ns: u64,
        version: u64,
    }
}

native_row! {
    struct BalanceCh {
        account: u64,
        asset: u32,
        available: i128,
        held: i128,
        seq: u64,
        idx: u32,
        time: u32,
        ts_ns: u64,
        version: u64,
    }
}

impl From<&super::rows::BalanceRow> for BalanceCh {
    fn from(r: &super::rows::BalanceRow) -> BalanceCh {
        let o = r.origin;
        BalanceCh {
            account: r.account,
            asset: r.asset,
            available: r.available.to_mirror_units(),
            held: r.held.to_mirror_units(),
            seq: o.seq,
            idx: o.idx,
            time: seconds(o.ts_ns),
            ts_ns: o.ts_ns,
            version: version(o),
        }
    }
}

native_row! {
    struct WithdrawalCh {
        withdrawal_id: u64,
        account: u64,
        asset: u32,
        amount: i128,
        client_ref: u64,
        status: i8,
        seq: u64,
        idx: u32,
        time: u32,
        ts_ns: u64,
        version: u64,
    }
}

impl From<&super::rows::WithdrawalRow> for WithdrawalCh {
    fn from(r: &super::rows::WithdrawalRow) -> WithdrawalCh {
        let o = r.origin;
        WithdrawalCh {
            withdrawal_id: r.withdrawal_id,
            account: r.account,
            asset: r.asset,
            amount: r.amount.to_mirror_units(),
            client_ref: r.client_ref,
            status: r.status.as_u8() as i8,
            seq: o.seq,
            idx: o.idx,
            time: seconds(o.ts_ns),
            ts_ns: o.ts_ns,
            version: version(o),
        }
    }
}

native_row! {
    struct LedgerCh {
        seq: u64,
        idx: u32,
        time: u32,
        ts_ns: u64,
        account: u64,
        asset: u32,
        kind: i8,
        available_delta: i128,
        held_delta: i128,
        available_after: i128,
        held_after: i128,
        ref_kind: i8,
        ref_id: u64,
    }
}

impl From<&super::rows::LedgerRow> for LedgerCh {
    fn from(r: &super::rows::LedgerRow) -> LedgerCh {
        let o = r.origin;
        LedgerCh {
            seq: o.seq,
            idx: o.idx,
            time: seconds(o.ts_ns),
            ts_ns: o.ts_ns,
            account: r.account,
            asset: r.asset,
            kind: r.kind.as_u8() as i8,
            available_delta: r.available_delta.to_mirror_units(),
            held_delta: r.held_delta.to_mirror_units(),
            available_after: r.available_after.to_mirror_units(),
            held_after: r.held_after.to_mirror_units(),
            ref_kind: r.ref_kind.as_u8() as i8,
            ref_id: r.ref_id,
        }
    }
}

native_row! {
    struct OrderEventCh {
        seq: u64,
        idx: u32,
        time: u32,
        ts_ns: u64,
        order_id: u64,
        account: u64,
        symbol: u32,
        client_order_id: u64,
        exec: i8,
        status: i8,
        side: i8,
        order_type: i8,
        tif: i8,
        price: i128,
        qty: i128,
        filled_qty: i128,
        remaining_qty: i128,
        filled_quote: i128,
        fees_paid: i128,
    }
}

impl From<&super::rows::OrderRow> for OrderEventCh {
    fn from(r: &super::rows::OrderRow) -> OrderEventCh {
        let o = r.origin;
        OrderEventCh {
            seq: o.seq,
            idx: o.idx,
            time: seconds(o.ts_ns),
            ts_ns: o.ts_ns,
            order_id: r.order_id,
            account: r.account,
            symbol: r.symbol,
            client_order_id: r.client_order_id,
            exec: r.exec.as_u8() as i8,
            status: r.status.as_u8() as i8,
            side: r.side.as_u8() as i8,
            order_type: r.order_type.as_u8() as i8,
            tif: r.tif.as_u8() as i8,
            price: r.price.to_mirror_units(),
            qty: r.qty.to_mirror_units(),
            filled_qty: r.filled_qty.to_mirror_units(),
            remaining_qty: r.remaining_qty.to_mirror_units(),
            filled_quote: r.filled_quote.to_mirror_units(),
            fees_paid: r.fees_paid.to_mirror_units(),
        }
    }
}

native_row! {
    struct TradeCh {
        trade_id: u64,
        symbol: u32,
        seq: u64,
        idx: u32,
        time: u32,
        ts_ns: u64,
        price: i128,
        qty: i128,
        quote_qty: i128,
        maker_order: u64,
        taker_order: u64,
        maker_account: u64,
        taker_account: u64,
        maker_side: i8,
        maker_fee: i128,
        taker_fee: i128,
    }
}

impl From<&super::rows::TradeRow> for TradeCh {
    fn from(r: &super::rows::TradeRow) -> TradeCh {
        let o = r.origin;
        TradeCh {
            trade_id: r.trade_id,
            symbol: r.symbol,
            seq: o.seq,
            idx: o.idx,
            time: seconds(o.ts_ns),
            ts_ns: o.ts_ns,
            price: r.price.to_mirror_units(),
            qty: r.qty.to_mirror_units(),
            quote_qty: r.quote_qty.to_mirror_units(),
            maker_order: r.maker_order,
            taker_order: r.taker_order,
            maker_account: r.maker_account,
            taker_account: r.taker_account,
            maker_side: r.maker_side.as_u8() as i8,
            maker_fee: r.maker_fee.to_mirror_units(),
            taker_fee: r.taker_fee.to_mirror_units(),
        }
    }
}

native_row! {
    struct DepositCh {
        seq: u64,
        idx: u32,
        time: u32,
        ts_ns: u64,
        account: u64,
        asset: u32,
        amount: i128,
        external_ref: u64,
    }
}

impl From<&super::rows::DepositRow> for DepositCh {
    fn from(r: &super::rows::DepositRow) -> DepositCh {
        let o = r.origin;
        DepositCh {
            seq: o.seq,
            idx: o.idx,
            time: seconds(o.ts_ns),
            ts_ns: o.ts_ns,
            account: r.account,
            asset: r.asset,
            amount: r.amount.to_mirror_units(),
            external_ref: r.external_ref,
        }
    }
}

native_row! {
    struct TransferCh {
        seq: u64,
        idx: u32,
        time: u32,
        ts_ns: u64,
        from_account: u64,
        to_account: u64,
        asset: u32,
        amount: i128,
        client_ref: u64,
    }
}

impl From<&super::rows::TransferRow> for TransferCh {
    fn from(r: &super::rows::TransferRow) -> TransferCh {
        let o = r.origin;
        TransferCh {
            seq: o.seq,
            idx: o.idx,
            time: seconds(o.ts_ns),
            ts_ns: o.ts_ns,
            from_account: r.from,
            to_account: r.to,
            asset: r.asset,
            amount: r.amount.to_mirror_units(),
            client_ref: r.client_ref,
        }
    }
}

#[derive(Row, Deserialize)]
struct LedgerStateRow {
    account: u64,
    asset: u32,
    available_sum: i128,
    held_sum: i128,
    available: i128,
    held: i128,
}

#[derive(Row, Deserialize)]
struct OpenOrderRow {
    order_id: u64,
    account: u64,
    symbol: u32,
    side: i8,
    status: i8,
    price: i128,
    remaining_qty: i128,
    filled_qty: i128,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_events() {
        let a = version(Origin { seq: 7, idx: 3, ts_ns: 0 });
        let b = version(Origin { seq: 7, idx: 4, ts_ns: 0 });
        let c = version(Origin { seq: 8, idx: 0, ts_ns: 0 });
        assert!(a < b && b < c);
    }

    /// Every row type names exactly its table's columns.
    #[test]
    fn row_types_match_their_tables() {
        fn check<T: NativeRow>(table: &Table) {
            let row: BTreeSet<&str> = T::COLUMNS.iter().copied().collect();
            let columns: BTreeSet<&str> = table.columns.iter().map(|(name, _)| *name).collect();
            assert_eq!(row, columns, "{}", table.name);
            assert_eq!(T::COLUMNS.len(), T::SIZES.len());
        }
        check::<SchemaVersionRow>(&SCHEMA_VERSION_TABLE);
        check::<CheckpointCh>(table("replicator_checkpoint"));
        check::<AssetCh>(table("assets"));
        check::<SymbolCh>(table("symbols"));
        check::<AccountCh>(table("accounts"));
        check::<BalanceCh>(table("balances"));
        check::<WithdrawalCh>(table("withdrawals"));
        check::<LedgerCh>(table("ledger_entries"));
        check::<OrderEventCh>(table("order_events"));
        check::<TradeCh>(table("trades"));
        check::<DepositCh>(table("deposits"));
        check::<TransferCh>(table("transfers"));
        assert_eq!(TABLES.len(), 11);
    }

    /// The bytes ClickHouse 18.16 itself writes for
    /// `SELECT toDecimal128(1, 18) AS d, CAST('b' AS Enum8('a'=0,'b'=1)) AS e, 'xy' AS s FORMAT Native`.
    #[test]
    fn native_block_encoding() {
        native_row! {
            struct Probe {
                d: i128,
                e: i8,
                s: String,
            }
        }
        let probe = Table {
            name: "probe",
            columns: &[("d", "Decimal(38, 18)"), ("e", "Enum8('a' = 0, 'b' = 1)"), ("s", "String")],
            engine: FACT,
            partition_by: None,
            order_by: "d",
        };
        let rows = [(10i128.pow(18), 1i8, "xy")];
        let (header, columns) = native_block(&probe, &rows, |&(d, e, s)| Probe { d, e, s: s.to_string() });
        let bytes: Vec<u8> = header.into_iter().chain(columns.into_iter().flatten()).collect();
        let mut expected = vec![3, 1, 1, b'd', 15];
        expected.extend_from_slice(b"Decimal(38, 18)");
        expected.extend_from_slice(&10i128.pow(18).to_le_bytes());
        expected.extend_from_slice(&[1, b'e', 23]);
        expected.extend_from_slice(b"Enum8('a' = 0, 'b' = 1)");
        expected.extend_from_slice(&[1, 1, b's', 6]);
        expected.extend_from_slice(b"String");
        expected.extend_from_slice(&[2, b'x', b'y']);
        assert_eq!(bytes, expected);
        let mut long = Vec::new();
        put_varuint(&mut long, 8192);
        assert_eq!(long, [0x80, 0x40]);
    }

    #[test]
    fn ddl_names_every_column_once() {
        for table in std::iter::once(&SCHEMA_VERSION_TABLE).chain(TABLES) {
            let names: BTreeSet<_> = table.columns.iter().map(|(n, _)| n).collect();
            assert_eq!(names.len(), table.columns.len(), "{}", table.name);
        }
        assert_eq!(normalize_type("Enum8('a' = 0, 'b' = 1)"), "Enum8('a'=0,'b'=1)");
    }
}
