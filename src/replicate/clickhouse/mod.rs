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
//! money is `Decimal(38,18)` written as its raw `i128`
//! ([`crate::replicate::rows::Amount::to_mirror_units`]); enums are `Enum8` with the engine's
//! wire values. The schema version is kept in `schema_version`; a
//! mirror written by a newer version of this sink is a fatal error, as is a table whose columns
//! are not the ones this version writes.
//!
//! Files: [`schema`] (the tables, each declared once, the DDL and the schema check), [`encode`]
//! (the Native format and the table macro), [`read_back`] (checkpoint, catalog and state).

mod encode;
mod read_back;
mod schema;

use std::time::Duration;

use clickhouse::{Client, RowOwned, RowRead};
use rustc_hash::FxHashMap;

use super::rows::{Batch, Origin};
use super::{BatchLimits, Resume, Sink, SinkError};
use crate::engine::{AccountId, Seq};
use encode::{native_block, NativeRow};
pub use schema::{create_statements, table_names};
use schema::{
    AccountAt, AccountCh, AssetCh, BalanceCh, CheckpointCh, CodeCh, DepositCh, LedgerCh, OrderEventCh, SymbolCh,
    TradeCh, TransferCh, WithdrawalCh,
};

/// The sink's name: its checkpoint key, log and metric label.
pub const SINK_NAME: &str = "clickhouse";

/// Version of the tables ([`schema`]); bump it (and migrate in `open`) when they change.
pub const SCHEMA_VERSION: u32 = 2;

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

    pub(crate) async fn execute(&self, client: &Client, sql: &str) -> Result<(), SinkError> {
        let what = || format!("ClickHouse statement `{}`", first_line(sql));
        with_timeout(self.timeout, what, client.query_raw(sql).execute()).await
    }

    pub(crate) async fn fetch_all<T: RowOwned + RowRead>(&self, sql: &str) -> Result<Vec<T>, SinkError> {
        let what = || format!("ClickHouse query `{}`", first_line(sql));
        with_timeout(self.timeout, what, self.client.query(sql).fetch_all::<T>()).await
    }

    pub(crate) async fn fetch_one<T: RowOwned + RowRead>(&self, sql: &str) -> Result<T, SinkError> {
        let what = || format!("ClickHouse query `{}`", first_line(sql));
        with_timeout(self.timeout, what, self.client.query(sql).fetch_one::<T>()).await
    }

    /// One `INSERT` of `rows` into `T`'s table as one Native block, each row converted to `T`.
    async fn insert<R, T>(&self, rows: &[R]) -> Result<(), SinkError>
    where
        T: NativeRow + for<'a> From<&'a R>,
    {
        if rows.is_empty() {
            return Ok(());
        }
        let table = &T::TABLE;
        let (header, columns) = native_block::<R, T>(rows);
        let names: Vec<&str> = table.columns.iter().map(|(name, _)| *name).collect();
        let sql = format!("INSERT INTO {} ({}) FORMAT Native", table.name, names.join(", "));
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
        let accounts: Vec<AccountAt> = batch
            .accounts
            .iter()
            .map(|row| {
                let (created_seq, created_ts_ns) =
                    self.account_created.get(&row.account).copied().unwrap_or((row.created.seq, row.created.ts_ns));
                AccountAt { row, created_seq, created_ts_ns }
            })
            .collect();
        tokio::try_join!(
            self.insert::<_, LedgerCh>(&batch.ledger),
            self.insert::<_, OrderEventCh>(&batch.order_events),
            self.insert::<_, TradeCh>(&batch.trades),
            self.insert::<_, DepositCh>(&batch.deposits),
            self.insert::<_, TransferCh>(&batch.transfers),
            self.insert::<_, WithdrawalCh>(&batch.withdrawals),
            self.insert::<_, BalanceCh>(&batch.balances),
            self.insert::<_, AccountCh>(&accounts),
            self.insert::<_, AssetCh>(&batch.assets),
            self.insert::<_, SymbolCh>(&batch.symbols),
            self.insert::<_, CodeCh>(&batch.codes),
        )?;
        // Only once every row of the batch is in: a failure before this re-sends the batch.
        let last_ts_ns = batch.record_ts_ns.last().copied().unwrap_or(0);
        self.insert::<_, CheckpointCh>(&[(batch.last_seq, last_ts_ns)]).await?;
        for row in &batch.accounts {
            self.account_created.entry(row.account).or_insert((row.created.seq, row.created.ts_ns));
        }
        Ok(())
    }
}

/// An error of the ClickHouse client (HTTP, the server's answer), with what the sink was doing.
/// Every one is transient: the server is down, restarting, overloaded or refused a request that
/// a later attempt repeats; what retrying cannot cure is found by the sink's own checks.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct ClickHouseError {
    pub what: String,
    #[source]
    pub source: clickhouse::error::Error,
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
        Ok(Err(source)) => Err(SinkError::Transient(Box::new(ClickHouseError { what: what(), source }))),
        Err(_) => Err(SinkError::transient(format!("{}: no answer within {limit:?}", what()))),
    }
}

pub(crate) fn first_line(sql: &str) -> &str {
    let sql = sql.trim_start();
    let line = sql.lines().next().unwrap_or("");
    match line.char_indices().nth(120) {
        Some((end, _)) => &line[..end],
        None => line,
    }
}

pub(crate) fn quote_identifier(name: &str) -> String {
    format!("`{}`", name.replace('\\', "\\\\").replace('`', "\\`"))
}

pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub(crate) fn seconds(ts_ns: u64) -> u32 {
    (ts_ns / 1_000_000_000).min(u64::from(u32::MAX)) as u32
}

pub(crate) fn version(origin: Origin) -> u64 {
    (origin.seq << VERSION_IDX_BITS) | u64::from(origin.idx)
}

/// Versions must stay ordered: an event index needs `VERSION_IDX_BITS` bits at most, a seq the
/// rest.
fn check_versions(batch: &Batch) -> Result<(), SinkError> {
    if batch.last_seq >= 1 << (64 - VERSION_IDX_BITS) {
        return Err(SinkError::fatal(format!("seq {} does not fit the mirror's row versions", batch.last_seq)));
    }
    let max_idx = batch
        .accounts
        .iter()
        .map(|r| r.updated.idx)
        .chain(batch.balances.iter().map(|r| r.origin.idx))
        .chain(batch.withdrawals.iter().map(|r| r.origin.idx))
        .chain(batch.symbols.iter().map(|r| r.origin.idx))
        .chain(batch.assets.iter().map(|r| r.origin.idx))
        .chain(batch.codes.iter().map(|r| r.origin.idx))
        .max()
        .unwrap_or(0);
    if max_idx >= 1 << VERSION_IDX_BITS {
        return Err(SinkError::fatal(format!("an event index of {max_idx} does not fit the mirror's row versions")));
    }
    Ok(())
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
}
