//! TiDB sink (MySQL protocol; tested against MariaDB 10.11, using only SQL TiDB accepts).
//!
//! Every batch is one transaction: first the checkpoint row moves from the seq this sink last
//! wrote (or read back) to `batch.last_seq` (a conditional `UPDATE` that must match exactly one
//! row, so a second replicator on the same mirror or a stale connection fails instead of
//! writing twice), then every row of the batch in multi-row `INSERT ... ON DUPLICATE KEY
//! UPDATE` statements, then `COMMIT`. Either all of it is in the mirror or none of it; on any
//! error the connection is dropped (the server rolls the transaction back) and the run loop
//! reconnects and resumes after the checkpoint it reads back. A commit whose answer was lost
//! is therefore harmless: the checkpoint says whether it happened.
//!
//! The upserts are idempotent on their own as well (facts rewrite the same values; current-state
//! rows change only when the incoming row is at least as new, and creation stamps are written on
//! insert only), so rows re-sent by hand never move a mirror backwards.
//!
//! Rows go as parameters of prepared multi-row statements (binary protocol): parsing the
//! literals of a text statement was ~40% of MariaDB's work per row, and the server's one thread
//! per connection is what bounds a single-transaction writer. With `prepared_statements` off
//! (and for the last few rows of each table in a batch) the SQL text is built here from numbers
//! only (ids, codes, decimal and datetime literals our own code formats): no string from outside
//! ever reaches a statement, so there is nothing to escape.
//!
//! Tables, codes and the exactly-once argument: `docs/MIRRORS.md`, section "TiDB".

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Row, Statement, Value};

use super::reconcile::{Mirror, MirrorOrder, MirrorState};
use super::rows::{
    utc_datetime_micros, AccountInfo, AccountRow, Amount, AssetRow, BalanceRow, DepositRow, LedgerRow, OrderLatest,
    SymbolRow, TradeRow, TransferRow, WithdrawalRow, MIRROR_SCALE,
};
use super::{Batch, BatchLimits, Catalog, Resume, Sink, SinkError};
use crate::engine::{AccountStatus, AssetId, OrderStatus, Seq, Side, SymbolId};

/// The checkpoint key, log and metric label of this sink.
pub const SINK_NAME: &str = "tidb";

/// Version of the schema this binary writes. A mirror with a newer version is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// Where and how the sink writes.
#[derive(Clone, Debug)]
pub struct TidbConfig {
    /// `mysql://user:password@host:port/database`; the database is created if missing.
    pub url: String,
    /// Largest batch (one transaction): records, and fact rows (ledger, order events, trades...).
    pub max_records: usize,
    pub max_fact_rows: usize,
    /// Rows per multi-row `INSERT` statement.
    pub rows_per_statement: usize,
    /// Send rows as parameters of prepared multi-row statements (binary protocol) rather than
    /// as SQL text: the server skips parsing every literal, which is most of its work per row.
    pub prepared_statements: bool,
    /// Connecting (TCP, handshake, session setup) must finish within this.
    pub connect_timeout: Duration,
    /// Each statement must finish within this, or the connection is dropped (transient error).
    pub query_timeout: Duration,
    /// Fault injection for tests: every Nth write drops the connection just before `COMMIT`
    /// and fails with a transient error (0: never).
    #[doc(hidden)]
    pub abort_before_commit_every: u64,
}

impl TidbConfig {
    /// Defaults: batches of up to 50,000 records / 20,000 fact rows (a few MB of rows: large
    /// batches collapse the current-state upserts and halve the server's work per ledger row
    /// against 5,000), 1,000 rows per prepared statement, 5 s to connect, 30 s per statement.
    pub fn new(url: impl Into<String>) -> TidbConfig {
        TidbConfig {
            url: url.into(),
            max_records: 50_000,
            max_fact_rows: 20_000,
            rows_per_statement: 1_000,
            prepared_statements: true,
            connect_timeout: Duration::from_secs(5),
            query_timeout: Duration::from_secs(30),
            abort_before_commit_every: 0,
        }
    }
}

/// The TiDB / MySQL-protocol mirror: a [`Sink`] for the replicator and a [`Mirror`] for
/// `seqd reconcile`.
pub struct TidbSink {
    config: TidbConfig,
    conn: Option<Conn>,
    /// The checkpoint in the database as this connection last wrote or read it; `None` until
    /// `open` (and after any error: only a fresh `open` knows it again).
    checkpoint: Option<Seq>,
    /// Prepared statements of this connection by (table, rows).
    prepared: HashMap<(usize, usize), Statement>,
    writes: u64,
}

impl TidbSink {
    pub fn new(config: TidbConfig) -> TidbSink {
        TidbSink { config, conn: None, checkpoint: None, prepared: HashMap::new(), writes: 0 }
    }

    pub fn config(&self) -> &TidbConfig {
        &self.config
    }

    /// Connects to the URL's database, creating it when `create` is set.
    async fn connect(&self, create: bool) -> Result<Conn, SinkError> {
        let opts = Opts::from_url(&self.config.url).map_err(|e| SinkError::Fatal(format!("tidb url: {e}")))?;
        let database = database_name(&opts)?;
        let opts = OptsBuilder::from_opts(opts)
            .db_name(None::<String>)
            .tcp_keepalive(Some(Duration::from_secs(10)))
            .stmt_cache_size(0);
        let timeout = self.config.connect_timeout;
        let mut conn = match tokio::time::timeout(timeout, Conn::new(opts)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(classify("connecting", e)),
            Err(_) => return Err(SinkError::Transient(format!("connecting: no answer within {timeout:?}"))),
        };
        let mut setup = vec![SESSION_SETUP.to_string()];
        if create {
            setup.push(format!("CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"));
        }
        setup.push(format!("USE `{database}`"));
        for sql in &setup {
            if let Err(e) = exec(&mut conn, timeout, sql).await {
                abandon(conn).await;
                return Err(e);
            }
        }
        Ok(conn)
    }

    async fn disconnect(&mut self) {
        self.checkpoint = None;
        self.prepared.clear();
        if let Some(conn) = self.conn.take() {
            abandon(conn).await;
        }
    }
}

impl Sink for TidbSink {
    fn name(&self) -> &str {
        SINK_NAME
    }

    fn batch_limits(&self) -> BatchLimits {
        BatchLimits { max_records: self.config.max_records.max(1), max_fact_rows: self.config.max_fact_rows.max(1) }
    }

    async fn open(&mut self) -> Result<Resume, SinkError> {
        self.disconnect().await;
        let mut conn = self.connect(true).await?;
        self.prepared.clear();
        match open_on(&mut conn, self.config.query_timeout).await {
            Ok(resume) => {
                self.checkpoint = Some(resume.last_seq);
                self.conn = Some(conn);
                Ok(resume)
            }
            Err(e) => {
                abandon(conn).await;
                Err(e)
            }
        }
    }

    async fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (Some(checkpoint), Some(mut conn)) = (self.checkpoint, self.conn.take()) else {
            self.disconnect().await;
            return Err(SinkError::Transient("tidb: not connected (open first)".into()));
        };
        if batch.first_seq != checkpoint + 1 || batch.last_seq < batch.first_seq {
            self.disconnect().await;
            abandon(conn).await;
            return Err(SinkError::Fatal(format!(
                "tidb: batch {}..={} does not follow the mirror's checkpoint {checkpoint}",
                batch.first_seq, batch.last_seq
            )));
        }
        self.writes += 1;
        let every = self.config.abort_before_commit_every;
        let abort = every > 0 && self.writes.is_multiple_of(every);
        let plan = batch_plan(batch, self.config.rows_per_statement, self.config.prepared_statements);
        let timeout = self.config.query_timeout;
        match write_on(&mut conn, &mut self.prepared, timeout, checkpoint, batch, plan, abort).await {
            Ok(()) => {
                self.checkpoint = Some(batch.last_seq);
                self.conn = Some(conn);
                Ok(())
            }
            Err(e) => {
                self.checkpoint = None;
                self.prepared.clear();
                abandon(conn).await;
                Err(e)
            }
        }
    }
}

impl Mirror for TidbSink {
    fn name(&self) -> &str {
        SINK_NAME
    }

    /// The mirror at its checkpoint, read in one transaction (one snapshot), in minor units.
    async fn read_state(&mut self) -> Result<MirrorState, SinkError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => {
                self.prepared.clear();
                self.connect(false).await?
            }
        };
        match read_state_on(&mut conn, self.config.query_timeout).await {
            Ok(state) => {
                self.conn = Some(conn);
                Ok(state)
            }
            Err(e) => {
                self.checkpoint = None;
                self.prepared.clear();
                abandon(conn).await;
                Err(e)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connection-level steps (each takes the connection; the caller drops it on any error).

/// Strict mode (an out-of-range value is an error, never a clamp), UTC, bounded lock waits.
const SESSION_SETUP: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', time_zone = '+00:00', innodb_lock_wait_timeout = 20";

async fn open_on(conn: &mut Conn, timeout: Duration) -> Result<Resume, SinkError> {
    exec(conn, timeout, SCHEMA_VERSION_DDL).await?;
    let current = schema_version(conn, timeout).await?.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(SinkError::Fatal(format!(
            "tidb: the mirror's schema is version {current}, newer than this binary's {SCHEMA_VERSION}: upgrade seqd"
        )));
    }
    for version in current + 1..=SCHEMA_VERSION {
        for ddl in &MIGRATIONS[version as usize - 1] {
            exec(conn, timeout, ddl).await?;
        }
        let sql = format!(
            "INSERT INTO schema_version (version, applied_at) VALUES ({version}, UTC_TIMESTAMP(6)) \
             ON DUPLICATE KEY UPDATE version = version"
        );
        exec(conn, timeout, &sql).await?;
        tracing::info!(sink = SINK_NAME, version, "mirror schema migrated");
    }
    let seed = format!(
        "INSERT INTO replicator_checkpoint (sink, last_seq, last_record_at, updated_at) \
         VALUES ('{SINK_NAME}', 0, NULL, UTC_TIMESTAMP(6)) ON DUPLICATE KEY UPDATE sink = sink"
    );
    exec(conn, timeout, &seed).await?;

    // The checkpoint and the catalog from one snapshot: they were committed together.
    exec(conn, timeout, "START TRANSACTION").await?;
    let last_seq = read_checkpoint(conn, timeout).await?;
    let assets = query(conn, timeout, "SELECT asset_id, scale FROM assets").await?;
    let symbols = query(conn, timeout, "SELECT symbol_id, base_asset_id, quote_asset_id FROM symbols").await?;
    let accounts = query(conn, timeout, "SELECT account_id, parent_id, owner, path, status FROM accounts").await?;
    let newest = query(conn, timeout, NEWEST_ROW_SQL).await?;
    exec(conn, timeout, "COMMIT").await?;

    let newest_row = newest.first().map(|row| cell_u64(row, 0)).transpose()?.unwrap_or(0);
    if newest_row > last_seq {
        return Err(SinkError::Fatal(format!(
            "tidb: the mirror holds rows of seq {newest_row}, past its checkpoint {last_seq}: it was written \
             outside a replicator transaction or its checkpoint was moved back; rebuild it"
        )));
    }
    let catalog = catalog_from_rows(&assets, &symbols, &accounts)?;
    Ok(Resume { last_seq, catalog })
}

async fn write_on(
    conn: &mut Conn,
    prepared: &mut HashMap<(usize, usize), Statement>,
    timeout: Duration,
    checkpoint: Seq,
    batch: &Batch,
    plan: Vec<RowStatement>,
    abort_before_commit: bool,
) -> Result<(), SinkError> {
    exec(conn, timeout, "START TRANSACTION").await?;
    let moved = exec(conn, timeout, &checkpoint_statement(checkpoint, batch)).await?;
    if moved != 1 {
        return Err(SinkError::Transient(format!(
            "tidb: the mirror's checkpoint is no longer {checkpoint} (another replicator?); re-reading it"
        )));
    }
    for statement in plan {
        match statement {
            RowStatement::Text(sql) => {
                exec(conn, timeout, &sql).await?;
            }
            RowStatement::Prepared { table, rows, params } => {
                let statement = match prepared.get(&(table, rows)) {
                    Some(statement) => statement.clone(),
                    None => {
                        let sql = TABLE_SQL[table].placeholders(rows);
                        let statement = match tokio::time::timeout(timeout, conn.prep(sql)).await {
                            Ok(Ok(statement)) => statement,
                            Ok(Err(e)) => return Err(classify("preparing an insert", e)),
                            Err(_) => return Err(SinkError::Transient(format!("tidb: prepare took over {timeout:?}"))),
                        };
                        prepared.insert((table, rows), statement.clone());
                        statement
                    }
                };
                match tokio::time::timeout(timeout, conn.exec_drop(&statement, Params::Positional(params))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(classify(statement_head(&TABLE_SQL[table].prefix), e)),
                    Err(_) => return Err(SinkError::Transient(format!("tidb: an insert took over {timeout:?}"))),
                }
            }
        }
    }
    if abort_before_commit {
        return Err(SinkError::Transient("tidb: injected failure before COMMIT".into()));
    }
    exec(conn, timeout, "COMMIT").await?;
    Ok(())
}

async fn read_state_on(conn: &mut Conn, timeout: Duration) -> Result<MirrorState, SinkError> {
    let version = schema_version(conn, timeout).await?;
    match version {
        None => return Err(SinkError::Fatal("tidb: the database holds no seqd mirror (no schema_version)".into())),
        Some(v) if v > SCHEMA_VERSION => {
            return Err(SinkError::Fatal(format!(
                "tidb: mirror schema {v} is newer than this binary's {SCHEMA_VERSION}"
            )))
        }
        Some(_) => {}
    }
    exec(conn, timeout, "START TRANSACTION").await?;
    let checkpoint_seq = read_checkpoint(conn, timeout).await?;
    let assets = query(conn, timeout, "SELECT asset_id, scale FROM assets").await?;
    let symbols = query(conn, timeout, "SELECT symbol_id, base_asset_id, quote_asset_id FROM symbols").await?;
    let balances = query(conn, timeout, "SELECT account_id, asset_id, available, held FROM balances").await?;
    let orders = query(
        conn,
        timeout,
        "SELECT order_id, account_id, symbol_id, side, status, price, remaining_qty, filled_qty FROM orders \
         WHERE status IN (0, 1)",
    )
    .await?;
    let sums = query(
        conn,
        timeout,
        "SELECT account_id, asset_id, SUM(available_delta), SUM(held_delta) FROM ledger_entries \
         GROUP BY account_id, asset_id",
    )
    .await?;
    exec(conn, timeout, "COMMIT").await?;

    let catalog = catalog_from_rows(&assets, &symbols, &[])?;
    let scale = |asset: AssetId| {
        catalog.asset_scales.get(&asset).copied().ok_or_else(|| bad(format!("a row refers to unknown asset {asset}")))
    };
    let mut state = MirrorState { checkpoint_seq, ..MirrorState::default() };
    for row in &balances {
        let (account, asset) = (cell_u64(row, 0)?, cell_u32(row, 1)?);
        let s = scale(asset)?;
        state.balances.insert((account, asset), (cell_minor(row, 2, s)?, cell_minor(row, 3, s)?));
    }
    for row in &sums {
        let (account, asset) = (cell_u64(row, 0)?, cell_u32(row, 1)?);
        let s = scale(asset)?;
        state.ledger_sums.insert((account, asset), (cell_minor(row, 2, s)?, cell_minor(row, 3, s)?));
    }
    for row in &orders {
        let symbol: SymbolId = cell_u32(row, 2)?;
        let (base, quote) =
            *catalog.symbols.get(&symbol).ok_or_else(|| bad(format!("an order refers to unknown symbol {symbol}")))?;
        let (base_scale, quote_scale) = (scale(base)?, scale(quote)?);
        let side = Side::from_u8(cell_u8(row, 3)?).ok_or_else(|| bad("unknown side code".into()))?;
        let status = OrderStatus::from_u8(cell_u8(row, 4)?).ok_or_else(|| bad("unknown order status code".into()))?;
        let order = MirrorOrder {
            account: cell_u64(row, 1)?,
            symbol,
            side,
            status,
            price: cell_minor(row, 5, quote_scale)?,
            remaining_qty: cell_minor(row, 6, base_scale)?,
            filled_qty: cell_minor(row, 7, base_scale)?,
        };
        state.open_orders.insert(cell_u64(row, 0)?, order);
    }
    Ok(state)
}

async fn schema_version(conn: &mut Conn, timeout: Duration) -> Result<Option<u32>, SinkError> {
    let rows = query(conn, timeout, "SELECT MAX(version) FROM schema_version").await?;
    match rows.first() {
        Some(row) if !matches!(row.as_ref(0), Some(Value::NULL) | None) => Ok(Some(cell_u32(row, 0)?)),
        _ => Ok(None),
    }
}

async fn read_checkpoint(conn: &mut Conn, timeout: Duration) -> Result<Seq, SinkError> {
    let sql = format!("SELECT last_seq FROM replicator_checkpoint WHERE sink = '{SINK_NAME}'");
    let rows = query(conn, timeout, &sql).await?;
    rows.first().map(|row| cell_u64(row, 0)).transpose().map(|seq| seq.unwrap_or(0))
}

/// The newest seq of any row in the tables where that is cheap to find (primary key order or
/// small tables): a mirror holding rows past its checkpoint is damaged.
const NEWEST_ROW_SQL: &str = "SELECT GREATEST(\
COALESCE((SELECT MAX(seq) FROM ledger_entries), 0), \
COALESCE((SELECT MAX(seq) FROM deposits), 0), \
COALESCE((SELECT MAX(seq) FROM transfers), 0), \
COALESCE((SELECT MAX(created_seq) FROM assets), 0), \
COALESCE((SELECT MAX(updated_seq) FROM symbols), 0))";

/// Runs a statement; returns the affected-row count.
async fn exec(conn: &mut Conn, timeout: Duration, sql: &str) -> Result<u64, SinkError> {
    match tokio::time::timeout(timeout, conn.query_drop(sql)).await {
        Ok(Ok(())) => Ok(conn.affected_rows()),
        Ok(Err(e)) => Err(classify(statement_head(sql), e)),
        Err(_) => Err(SinkError::Transient(format!("tidb: {} took longer than {timeout:?}", statement_head(sql)))),
    }
}

async fn query(conn: &mut Conn, timeout: Duration, sql: &str) -> Result<Vec<Row>, SinkError> {
    match tokio::time::timeout(timeout, conn.query::<Row, _>(sql)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(classify(statement_head(sql), e)),
        Err(_) => Err(SinkError::Transient(format!("tidb: {} took longer than {timeout:?}", statement_head(sql)))),
    }
}

/// Closes a connection whose state is unknown (mid-transaction, timed out): the server rolls
/// back whatever it had not committed. Bounded, so a hung server cannot hold us here.
async fn abandon(conn: Conn) {
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.disconnect()).await;
}

fn statement_head(sql: &str) -> &str {
    let end = sql.char_indices().nth(48).map_or(sql.len(), |(i, _)| i);
    &sql[..end]
}

/// Server errors that retrying the same statement cannot cure: the schema or the data is not
/// what this code expects (or a transaction too large for the server's limits).
const FATAL_SERVER_CODES: &[u16] = &[
    1044, // access denied to the database
    1048, // column cannot be null
    1049, // unknown database
    1054, // unknown column
    1064, // syntax error
    1136, // column count does not match
    1146, // table does not exist
    1264, // out of range value
    1265, // data truncated
    1292, // incorrect datetime/decimal value
    1366, // incorrect value
    1406, // data too long
    8004, // TiDB: transaction too large
];

fn classify(what: &str, e: mysql_async::Error) -> SinkError {
    match &e {
        mysql_async::Error::Server(server) if FATAL_SERVER_CODES.contains(&server.code) => {
            SinkError::Fatal(format!("tidb: {what}: {e}"))
        }
        mysql_async::Error::Url(_) => SinkError::Fatal(format!("tidb: {what}: {e}")),
        _ => SinkError::Transient(format!("tidb: {what}: {e}")),
    }
}

fn database_name(opts: &Opts) -> Result<String, SinkError> {
    let name = opts.db_name().unwrap_or_default();
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    if valid {
        Ok(name.to_string())
    } else {
        Err(SinkError::Fatal(format!(
            "tidb url must name a database of letters, digits, '_' or '$' (mysql://host:port/seqd), got {name:?}"
        )))
    }
}

// ---------------------------------------------------------------------------------------------
// Reading rows back.

fn bad(message: String) -> SinkError {
    SinkError::Fatal(format!("tidb: mirror content is not what seqd writes: {message}"))
}

fn cell_text(row: &Row, i: usize) -> Result<String, SinkError> {
    match row.as_ref(i) {
        Some(Value::Bytes(bytes)) => {
            String::from_utf8(bytes.clone()).map_err(|_| bad(format!("column {i} is not UTF-8")))
        }
        Some(Value::NULL) | None => Err(bad(format!("column {i} is NULL"))),
        Some(other) => Ok(other.as_sql(true).trim_matches('\'').to_string()),
    }
}

fn cell_u64(row: &Row, i: usize) -> Result<u64, SinkError> {
    let text = cell_text(row, i)?;
    text.parse().map_err(|_| bad(format!("column {i} is {text:?}, not an unsigned integer")))
}

fn cell_u32(row: &Row, i: usize) -> Result<u32, SinkError> {
    let value = cell_u64(row, i)?;
    u32::try_from(value).map_err(|_| bad(format!("column {i} is {value}, out of range")))
}

fn cell_u8(row: &Row, i: usize) -> Result<u8, SinkError> {
    let value = cell_u64(row, i)?;
    u8::try_from(value).map_err(|_| bad(format!("column {i} is {value}, out of range")))
}

/// A DECIMAL column as minor units of an asset with `scale` decimals, exactly or not at all.
fn cell_minor(row: &Row, i: usize, scale: u8) -> Result<i64, SinkError> {
    let text = cell_text(row, i)?;
    parse_minor(&text, scale).ok_or_else(|| bad(format!("column {i} is {text:?}, not an amount at scale {scale}")))
}

/// Parses decimal text (`-12.345000000000000000`) to minor units at `scale`; `None` when it has
/// non-zero digits past `scale`, is malformed, or does not fit an i64. Exact at any width (the
/// text of a `SUM` over `DECIMAL(38,18)` has more digits than a `rust_decimal` holds).
pub fn parse_minor(text: &str, scale: u8) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || !all_digits(frac_part) || scale > MIRROR_SCALE {
        return None;
    }
    let scale = usize::from(scale);
    let (kept, dropped) = frac_part.split_at(frac_part.len().min(scale));
    if dropped.bytes().any(|b| b != b'0') {
        return None;
    }
    let mut value: i128 = 0;
    for b in int_part.bytes().chain(kept.bytes()).chain(std::iter::repeat_n(b'0', scale - kept.len())) {
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    i64::try_from(if negative { -value } else { value }).ok()
}

/// The catalog as the mirror's reference tables hold it, checked for consistency.
fn catalog_from_rows(assets: &[Row], symbols: &[Row], accounts: &[Row]) -> Result<Catalog, SinkError> {
    let mut catalog = Catalog::default();
    for row in assets {
        let (asset, scale) = (cell_u32(row, 0)?, cell_u8(row, 1)?);
        if scale > MIRROR_SCALE {
            return Err(bad(format!("asset {asset} has scale {scale}")));
        }
        catalog.asset_scales.insert(asset, scale);
    }
    for row in symbols {
        let (symbol, base, quote) = (cell_u32(row, 0)?, cell_u32(row, 1)?, cell_u32(row, 2)?);
        if !catalog.asset_scales.contains_key(&base) || !catalog.asset_scales.contains_key(&quote) {
            return Err(bad(format!("symbol {symbol} trades assets {base}/{quote}, not both in the assets table")));
        }
        catalog.symbols.insert(symbol, (base, quote));
    }
    for row in accounts {
        let account = cell_u64(row, 0)?;
        let status = AccountStatus::from_u8(cell_u8(row, 4)?)
            .ok_or_else(|| bad(format!("account {account} has an unknown status code")))?;
        let info =
            AccountInfo { parent: cell_u64(row, 1)?, owner: cell_u64(row, 2)?, path: cell_text(row, 3)?, status };
        catalog.accounts.insert(account, info);
    }
    for (&account, info) in &catalog.accounts {
        if info.parent != 0 && !catalog.accounts.contains_key(&info.parent) {
            return Err(bad(format!(
                "account {account} has parent {} which is not in the accounts table",
                info.parent
            )));
        }
        let path = catalog.child_path(info.parent, account);
        if info.path != path {
            return Err(bad(format!("account {account} has path {:?}, its parent's gives {path:?}", info.path)));
        }
    }
    Ok(catalog)
}

// ---------------------------------------------------------------------------------------------
// Schema.

const TABLE_OPTIONS: &str = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

const SCHEMA_VERSION_DDL: &str = "CREATE TABLE IF NOT EXISTS schema_version (\
version INT UNSIGNED NOT NULL PRIMARY KEY, \
applied_at DATETIME(6) NOT NULL\
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// `MIGRATIONS[v - 1]` takes the schema from version `v - 1` to `v`. Each statement is safe to
/// run again (DDL is not transactional: a migration cut short is simply run again).
static MIGRATIONS: LazyLock<Vec<Vec<String>>> = LazyLock::new(|| vec![schema_v1()]);

/// Money: `DECIMAL(38,18)` holds every i64 amount at every scale 0..=18 exactly (19 integer
/// digits at scale 0 plus 18 decimals) and matches ClickHouse's `Decimal(38,18)`.
const MONEY: &str = "DECIMAL(38,18) NOT NULL";
const SEQ: &str = "BIGINT UNSIGNED NOT NULL";
const TIME: &str = "DATETIME(6) NOT NULL";
const CODE: &str = "TINYINT UNSIGNED NOT NULL";

fn schema_v1() -> Vec<String> {
    let t = |body: &str| format!("CREATE TABLE IF NOT EXISTS {body} {TABLE_OPTIONS}");
    vec![
        t(&format!(
            "replicator_checkpoint (sink VARCHAR(64) NOT NULL PRIMARY KEY, last_seq {SEQ}, \
             last_record_at DATETIME(6) NULL, updated_at {TIME})"
        )),
        t(&format!(
            "assets (asset_id INT UNSIGNED NOT NULL PRIMARY KEY, scale {CODE}, created_seq {SEQ}, created_at {TIME})"
        )),
        t(&format!(
            "symbols (symbol_id INT UNSIGNED NOT NULL PRIMARY KEY, base_asset_id INT UNSIGNED NOT NULL, \
             quote_asset_id INT UNSIGNED NOT NULL, tick_size {MONEY}, lot_size {MONEY}, min_qty {MONEY}, \
             min_notional {MONEY}, max_order_qty {MONEY}, maker_fee_ppm INT UNSIGNED NOT NULL, \
             taker_fee_ppm INT UNSIGNED NOT NULL, price_band_bps INT UNSIGNED NOT NULL, status {CODE}, \
             updated_seq {SEQ}, updated_at {TIME})"
        )),
        t(&format!(
            "accounts (account_id BIGINT UNSIGNED NOT NULL PRIMARY KEY, parent_id BIGINT UNSIGNED NOT NULL, \
             owner BIGINT UNSIGNED NOT NULL, path VARCHAR(512) NOT NULL, status {CODE}, created_seq {SEQ}, \
             created_at {TIME}, updated_seq {SEQ}, updated_at {TIME}, KEY accounts_parent (parent_id), \
             KEY accounts_path (path))"
        )),
        t(&format!(
            "balances (account_id BIGINT UNSIGNED NOT NULL, asset_id INT UNSIGNED NOT NULL, available {MONEY}, \
             held {MONEY}, last_seq {SEQ}, updated_at {TIME}, PRIMARY KEY (account_id, asset_id))"
        )),
        t(&format!(
            "ledger_entries (seq {SEQ}, idx INT UNSIGNED NOT NULL, account_id BIGINT UNSIGNED NOT NULL, \
             asset_id INT UNSIGNED NOT NULL, kind {CODE}, available_delta {MONEY}, held_delta {MONEY}, \
             available_after {MONEY}, held_after {MONEY}, ref_kind {CODE}, ref_id BIGINT UNSIGNED NOT NULL, \
             event_time {TIME}, PRIMARY KEY (seq, idx), KEY ledger_account_asset (account_id, asset_id))"
        )),
        t(&format!(
            "orders (order_id BIGINT UNSIGNED NOT NULL PRIMARY KEY, client_order_id BIGINT UNSIGNED NOT NULL, \
             account_id BIGINT UNSIGNED NOT NULL, symbol_id INT UNSIGNED NOT NULL, side {CODE}, order_type {CODE}, \
             tif {CODE}, price {MONEY}, qty {MONEY}, filled_qty {MONEY}, remaining_qty {MONEY}, \
             filled_quote {MONEY}, fees_paid {MONEY}, status {CODE}, last_exec {CODE}, created_seq {SEQ}, \
             created_at {TIME}, updated_seq {SEQ}, updated_at {TIME}, \
             KEY orders_account_status (account_id, status))"
        )),
        t(&format!(
            "trades (trade_id BIGINT UNSIGNED NOT NULL PRIMARY KEY, symbol_id INT UNSIGNED NOT NULL, \
             price {MONEY}, qty {MONEY}, quote_qty {MONEY}, maker_order_id BIGINT UNSIGNED NOT NULL, \
             taker_order_id BIGINT UNSIGNED NOT NULL, maker_account_id BIGINT UNSIGNED NOT NULL, \
             taker_account_id BIGINT UNSIGNED NOT NULL, maker_side {CODE}, maker_fee {MONEY}, taker_fee {MONEY}, \
             seq {SEQ}, idx INT UNSIGNED NOT NULL, event_time {TIME}, \
             KEY trades_maker (maker_account_id), KEY trades_taker (taker_account_id))"
        )),
        t(&format!(
            "deposits (seq {SEQ} PRIMARY KEY, idx INT UNSIGNED NOT NULL, account_id BIGINT UNSIGNED NOT NULL, \
             asset_id INT UNSIGNED NOT NULL, amount {MONEY}, external_ref BIGINT UNSIGNED NOT NULL, \
             event_time {TIME}, KEY deposits_account (account_id))"
        )),
        t(&format!(
            "withdrawals (withdrawal_id BIGINT UNSIGNED NOT NULL PRIMARY KEY, account_id BIGINT UNSIGNED NOT NULL, \
             asset_id INT UNSIGNED NOT NULL, amount {MONEY}, client_ref BIGINT UNSIGNED NOT NULL, status {CODE}, \
             requested_seq {SEQ}, requested_at {TIME}, updated_seq {SEQ}, updated_at {TIME}, \
             KEY withdrawals_account_status (account_id, status))"
        )),
        t(&format!(
            "transfers (seq {SEQ} PRIMARY KEY, idx INT UNSIGNED NOT NULL, from_account_id BIGINT UNSIGNED NOT NULL, \
             to_account_id BIGINT UNSIGNED NOT NULL, asset_id INT UNSIGNED NOT NULL, amount {MONEY}, \
             client_ref BIGINT UNSIGNED NOT NULL, event_time {TIME}, \
             KEY transfers_from (from_account_id), KEY transfers_to (to_account_id))"
        )),
    ]
}

/// How a re-sent row with an existing key is applied.
enum Rule {
    /// An append-only fact: the same key always carries the same values; rewrite them.
    Fact,
    /// Never changes once written (assets).
    Immutable,
    /// Current state: every column follows the incoming row only if it is at least as new
    /// (`guard` seq); `insert_only` columns (creation stamps) are never updated.
    State { guard: &'static str, insert_only: &'static [&'static str] },
}

struct Table {
    name: &'static str,
    columns: &'static [&'static str],
    /// The first `key` columns are the primary key.
    key: usize,
    rule: Rule,
}

impl Table {
    fn insert_prefix(&self) -> String {
        format!("INSERT INTO {} ({}) VALUES ", self.name, self.columns.join(", "))
    }

    /// The `ON DUPLICATE KEY UPDATE` clause. MySQL, MariaDB and TiDB apply its assignments left
    /// to right, and a later one sees the columns an earlier one set: the guard column goes
    /// last so every condition compares with the stored (old) seq.
    fn on_duplicate(&self) -> String {
        let rest = &self.columns[self.key..];
        let assignments: Vec<String> = match self.rule {
            Rule::Fact => rest.iter().map(|c| format!("{c} = VALUES({c})")).collect(),
            Rule::Immutable => vec![format!("{0} = {0}", self.columns[0])],
            Rule::State { guard, insert_only } => {
                assert!(rest.contains(&guard), "{}: guard column {guard} is not a column", self.name);
                let mut list: Vec<String> = rest
                    .iter()
                    .filter(|c| **c != guard && !insert_only.contains(c))
                    .map(|c| format!("{c} = IF(VALUES({guard}) >= {guard}, VALUES({c}), {c})"))
                    .collect();
                list.push(format!("{guard} = GREATEST({guard}, VALUES({guard}))"));
                list
            }
        };
        format!(" ON DUPLICATE KEY UPDATE {}", assignments.join(", "))
    }
}

const ASSETS: Table = Table {
    name: "assets",
    columns: &["asset_id", "scale", "created_seq", "created_at"],
    key: 1,
    rule: Rule::Immutable,
};

const SYMBOLS: Table = Table {
    name: "symbols",
    columns: &[
        "symbol_id",
        "base_asset_id",
        "quote_asset_id",
        "tick_size",
        "lot_size",
        "min_qty",
        "min_notional",
        "max_order_qty",
        "maker_fee_ppm",
        "taker_fee_ppm",
        "price_band_bps",
        "status",
        "updated_seq",
        "updated_at",
    ],
    key: 1,
    rule: Rule::State { guard: "updated_seq", insert_only: &[] },
};

const ACCOUNTS: Table = Table {
    name: "accounts",
    columns: &[
        "account_id",
        "parent_id",
        "owner",
        "path",
        "status",
        "created_seq",
        "created_at",
        "updated_seq",
        "updated_at",
    ],
    key: 1,
    rule: Rule::State { guard: "updated_seq", insert_only: &["created_seq", "created_at"] },
};

const BALANCES: Table = Table {
    name: "balances",
    columns: &["account_id", "asset_id", "available", "held", "last_seq", "updated_at"],
    key: 2,
    rule: Rule::State { guard: "last_seq", insert_only: &[] },
};

const LEDGER: Table = Table {
    name: "ledger_entries",
    columns: &[
        "seq",
        "idx",
        "account_id",
        "asset_id",
        "kind",
        "available_delta",
        "held_delta",
        "available_after",
        "held_after",
        "ref_kind",
        "ref_id",
        "event_time",
    ],
    key: 2,
    rule: Rule::Fact,
};

const ORDERS: Table = Table {
    name: "orders",
    columns: &[
        "order_id",
        "client_order_id",
        "account_id",
        "symbol_id",
        "side",
        "order_type",
        "tif",
        "price",
        "qty",
        "filled_qty",
        "remaining_qty",
        "filled_quote",
        "fees_paid",
        "status",
        "last_exec",
        "created_seq",
        "created_at",
        "updated_seq",
        "updated_at",
    ],
    key: 1,
    rule: Rule::State { guard: "updated_seq", insert_only: &["created_seq", "created_at"] },
};

const TRADES: Table = Table {
    name: "trades",
    columns: &[
        "trade_id",
        "symbol_id",
        "price",
        "qty",
        "quote_qty",
        "maker_order_id",
        "taker_order_id",
        "maker_account_id",
        "taker_account_id",
        "maker_side",
        "maker_fee",
        "taker_fee",
        "seq",
        "idx",
        "event_time",
    ],
    key: 1,
    rule: Rule::Fact,
};

const DEPOSITS: Table = Table {
    name: "deposits",
    columns: &["seq", "idx", "account_id", "asset_id", "amount", "external_ref", "event_time"],
    key: 1,
    rule: Rule::Fact,
};

const WITHDRAWALS: Table = Table {
    name: "withdrawals",
    columns: &[
        "withdrawal_id",
        "account_id",
        "asset_id",
        "amount",
        "client_ref",
        "status",
        "requested_seq",
        "requested_at",
        "updated_seq",
        "updated_at",
    ],
    key: 1,
    rule: Rule::State { guard: "updated_seq", insert_only: &["requested_seq", "requested_at"] },
};

const TRANSFERS: Table = Table {
    name: "transfers",
    columns: &["seq", "idx", "from_account_id", "to_account_id", "asset_id", "amount", "client_ref", "event_time"],
    key: 1,
    rule: Rule::Fact,
};

/// Statement text per table, built once.
struct TableSql {
    columns: usize,
    prefix: String,
    suffix: String,
}

impl TableSql {
    /// A prepared multi-row statement's text: `rows` tuples of placeholders.
    fn placeholders(&self, rows: usize) -> String {
        let tuple = format!("({})", vec!["?"; self.columns].join(","));
        format!("{}{}{}", self.prefix, vec![tuple; rows].join(","), self.suffix)
    }

    /// Rows per statement: the configured number, within the protocol's 65,535 placeholders.
    fn max_rows(&self, rows_per_statement: usize) -> usize {
        rows_per_statement.clamp(1, 65_535 / self.columns)
    }
}

static TABLE_SQL: LazyLock<[TableSql; 10]> = LazyLock::new(|| {
    [&ASSETS, &SYMBOLS, &ACCOUNTS, &BALANCES, &LEDGER, &ORDERS, &TRADES, &DEPOSITS, &WITHDRAWALS, &TRANSFERS]
        .map(|t| TableSql { columns: t.columns.len(), prefix: t.insert_prefix(), suffix: t.on_duplicate() })
});

// ---------------------------------------------------------------------------------------------
// Statements of a batch.

/// The conditional checkpoint move that opens every write transaction: it matches one row only
/// if the mirror is still where this sink left it.
pub fn checkpoint_statement(expected: Seq, batch: &Batch) -> String {
    let last_ts = batch.record_ts_ns.last().copied().unwrap_or(0);
    format!(
        "UPDATE replicator_checkpoint SET last_seq = {}, last_record_at = '{}', updated_at = UTC_TIMESTAMP(6) \
         WHERE sink = '{SINK_NAME}' AND last_seq = {expected}",
        batch.last_seq,
        utc_datetime_micros(last_ts)
    )
}

/// Text of the prepared statement for `rows` rows of table `table` (a `RowStatement::Prepared`
/// shape) and the table's name.
pub fn prepared_sql(table: usize, rows: usize) -> (&'static str, String) {
    (TABLE_NAMES[table], TABLE_SQL[table].placeholders(rows))
}

const TABLE_NAMES: [&str; 10] = [
    ASSETS.name,
    SYMBOLS.name,
    ACCOUNTS.name,
    BALANCES.name,
    LEDGER.name,
    ORDERS.name,
    TRADES.name,
    DEPOSITS.name,
    WITHDRAWALS.name,
    TRANSFERS.name,
];

/// One row statement of a batch.
pub enum RowStatement {
    /// SQL text with literal values.
    Text(String),
    /// `rows` rows of table `TABLE_SQL[table]`, for a prepared statement of that shape.
    Prepared { table: usize, rows: usize, params: Vec<Value> },
}

/// Smallest prepared statement: fewer rows go as text (one round trip instead of a prepare).
const MIN_PREPARED_ROWS: usize = 64;

/// Every row statement of a batch as SQL text, reference data first, at most
/// `rows_per_statement` rows each.
pub fn batch_statements(batch: &Batch, rows_per_statement: usize) -> Vec<String> {
    batch_plan(batch, rows_per_statement, false)
        .into_iter()
        .map(|statement| match statement {
            RowStatement::Text(sql) => sql,
            RowStatement::Prepared { .. } => unreachable!("text only"),
        })
        .collect()
}

/// Every row statement of a batch, reference data first. With `prepared`, rows go in prepared
/// statements of `rows_per_statement` rows, the rest in power-of-two shapes down to
/// `MIN_PREPARED_ROWS` (so a connection prepares a handful of shapes per table), and the last
/// few as text. Execution reports (`batch.order_events`) are not written here: this mirror
/// keeps the current order row; the report history is ClickHouse's `order_events`.
pub fn batch_plan(batch: &Batch, rows_per_statement: usize, prepared: bool) -> Vec<RowStatement> {
    let mut out = Plan { list: Vec::new(), chunk: rows_per_statement.max(1), prepared, times: TimeCache::default() };
    out.table(0, &batch.assets, asset_values);
    out.table(1, &batch.symbols, symbol_values);
    out.table(2, &batch.accounts, account_values);
    out.table(3, &batch.balances, balance_values);
    out.table(4, &batch.ledger, ledger_values);
    out.table(5, &batch.orders, order_values);
    out.table(6, &batch.trades, trade_values);
    out.table(7, &batch.deposits, deposit_values);
    out.table(8, &batch.withdrawals, withdrawal_values);
    out.table(9, &batch.transfers, transfer_values);
    out.list
}

struct Plan {
    list: Vec<RowStatement>,
    chunk: usize,
    prepared: bool,
    times: TimeCache,
}

impl Plan {
    fn table<R>(&mut self, table: usize, rows: &[R], values: fn(&mut Values, &R)) {
        let sql = &TABLE_SQL[table];
        let max = sql.max_rows(self.chunk);
        let mut rest = rows;
        if self.prepared {
            let mut size = max;
            while size >= MIN_PREPARED_ROWS {
                while rest.len() >= size {
                    let (chunk, tail) = rest.split_at(size);
                    self.params(table, chunk, values);
                    rest = tail;
                }
                // The largest power of two below the current size.
                size = if size.is_power_of_two() { size / 2 } else { size.next_power_of_two() / 2 };
            }
        }
        for chunk in rest.chunks(max) {
            self.text(sql, chunk, values);
        }
    }

    fn text<R>(&mut self, sql: &TableSql, rows: &[R], values: fn(&mut Values, &R)) {
        let mut text = String::with_capacity(sql.prefix.len() + sql.suffix.len() + rows.len() * 240);
        text.push_str(&sql.prefix);
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push('(');
            values(&mut Values { out: Out::Text { sql: &mut text, first: true }, times: &mut self.times }, row);
            text.push(')');
        }
        text.push_str(&sql.suffix);
        self.list.push(RowStatement::Text(text));
    }

    fn params<R>(&mut self, table: usize, rows: &[R], values: fn(&mut Values, &R)) {
        let mut params = Vec::with_capacity(rows.len() * TABLE_SQL[table].columns);
        for row in rows {
            values(&mut Values { out: Out::Params(&mut params), times: &mut self.times }, row);
        }
        debug_assert_eq!(params.len(), rows.len() * TABLE_SQL[table].columns);
        self.list.push(RowStatement::Prepared { table, rows: rows.len(), params });
    }
}

/// `DATETIME(6)` literals of recent stamps (rows of one record share one).
#[derive(Default)]
struct TimeCache {
    ts_ns: u64,
    text: String,
}

impl TimeCache {
    fn get(&mut self, ts_ns: u64) -> &str {
        if self.text.is_empty() || self.ts_ns != ts_ns {
            self.ts_ns = ts_ns;
            self.text = utc_datetime_micros(ts_ns);
        }
        &self.text
    }
}

enum Out<'a> {
    /// Literals appended to a statement's text, comma separated.
    Text { sql: &'a mut String, first: bool },
    /// Parameters of a prepared statement (binary protocol).
    Params(&'a mut Vec<Value>),
}

/// Writes the values of one row.
struct Values<'a> {
    out: Out<'a>,
    times: &'a mut TimeCache,
}

impl Values<'_> {
    /// The text to append to (after a separator), or `None` for parameters.
    fn text(&mut self) -> Option<&mut String> {
        match &mut self.out {
            Out::Text { sql, first } => {
                if !*first {
                    sql.push(',');
                }
                *first = false;
                Some(sql)
            }
            Out::Params(_) => None,
        }
    }

    fn push(&mut self, value: Value) {
        if let Out::Params(params) = &mut self.out {
            params.push(value);
        }
    }

    fn int(&mut self, value: impl Into<u64>) -> &mut Self {
        let value = value.into();
        match self.text() {
            Some(sql) => {
                let _ = write!(sql, "{value}");
            }
            None => self.push(Value::UInt(value)),
        }
        self
    }

    fn amount(&mut self, amount: Amount) -> &mut Self {
        match self.text() {
            Some(sql) => push_decimal(sql, amount),
            None => {
                let mut text = String::with_capacity(24);
                push_decimal(&mut text, amount);
                self.push(Value::Bytes(text.into_bytes()));
            }
        }
        self
    }

    fn time(&mut self, ts_ns: u64) -> &mut Self {
        let stamp = self.times.get(ts_ns).to_string();
        match self.text() {
            Some(sql) => {
                sql.push('\'');
                sql.push_str(&stamp);
                sql.push('\'');
            }
            None => self.push(Value::Bytes(stamp.into_bytes())),
        }
        self
    }

    /// Text made by this module only (an account path of ids and slashes), never user input.
    fn path(&mut self, path: &str) -> &mut Self {
        debug_assert!(path.bytes().all(|b| b.is_ascii_digit() || b == b'/'));
        match self.text() {
            Some(sql) => {
                sql.push('\'');
                sql.push_str(path);
                sql.push('\'');
            }
            None => self.push(Value::Bytes(path.as_bytes().to_vec())),
        }
        self
    }
}

/// An exact decimal literal (`-12.345000`) of an amount, without going through a float or a
/// `Decimal`: MySQL reads an unquoted literal with a point as an exact DECIMAL.
pub fn push_decimal(sql: &mut String, amount: Amount) {
    if amount.units < 0 {
        sql.push('-');
    }
    let magnitude = amount.units.unsigned_abs();
    if amount.scale == 0 {
        let _ = write!(sql, "{magnitude}");
    } else {
        let factor = 10u64.pow(u32::from(amount.scale.min(19)));
        let width = usize::from(amount.scale);
        if amount.scale >= 19 {
            let _ = write!(sql, "0.{magnitude:0width$}");
        } else {
            let _ = write!(sql, "{}.{:0width$}", magnitude / factor, magnitude % factor);
        }
    }
}

fn asset_values(v: &mut Values, r: &AssetRow) {
    v.int(r.asset).int(r.scale).int(r.origin.seq).time(r.origin.ts_ns);
}

fn symbol_values(v: &mut Values, r: &SymbolRow) {
    v.int(r.symbol).int(r.base).int(r.quote);
    v.amount(r.tick_size).amount(r.lot_size).amount(r.min_qty).amount(r.min_notional).amount(r.max_order_qty);
    v.int(r.maker_fee_ppm).int(r.taker_fee_ppm).int(r.price_band_bps).int(r.status.as_u8());
    v.int(r.origin.seq).time(r.origin.ts_ns);
}

fn account_values(v: &mut Values, r: &AccountRow) {
    v.int(r.account).int(r.info.parent).int(r.info.owner).path(&r.info.path).int(r.info.status.as_u8());
    v.int(r.created.seq).time(r.created.ts_ns).int(r.updated.seq).time(r.updated.ts_ns);
}

fn balance_values(v: &mut Values, r: &BalanceRow) {
    v.int(r.account).int(r.asset).amount(r.available).amount(r.held).int(r.origin.seq).time(r.origin.ts_ns);
}

fn ledger_values(v: &mut Values, r: &LedgerRow) {
    v.int(r.origin.seq).int(r.origin.idx).int(r.account).int(r.asset).int(r.kind.as_u8());
    v.amount(r.available_delta).amount(r.held_delta).amount(r.available_after).amount(r.held_after);
    v.int(r.ref_kind.as_u8()).int(r.ref_id).time(r.origin.ts_ns);
}

fn order_values(v: &mut Values, r: &OrderLatest) {
    let o = &r.report;
    v.int(o.order_id).int(o.client_order_id).int(o.account).int(o.symbol);
    v.int(o.side.as_u8()).int(o.order_type.as_u8()).int(o.tif.as_u8());
    v.amount(o.price).amount(o.qty).amount(o.filled_qty).amount(o.remaining_qty);
    v.amount(o.filled_quote).amount(o.fees_paid);
    v.int(o.status.as_u8()).int(o.exec.as_u8());
    v.int(r.first_seen.seq).time(r.first_seen.ts_ns).int(o.origin.seq).time(o.origin.ts_ns);
}

fn trade_values(v: &mut Values, r: &TradeRow) {
    v.int(r.trade_id).int(r.symbol).amount(r.price).amount(r.qty).amount(r.quote_qty);
    v.int(r.maker_order).int(r.taker_order).int(r.maker_account).int(r.taker_account);
    v.int(r.maker_side.as_u8()).amount(r.maker_fee).amount(r.taker_fee);
    v.int(r.origin.seq).int(r.origin.idx).time(r.origin.ts_ns);
}

fn deposit_values(v: &mut Values, r: &DepositRow) {
    v.int(r.origin.seq).int(r.origin.idx).int(r.account).int(r.asset).amount(r.amount).int(r.external_ref);
    v.time(r.origin.ts_ns);
}

fn withdrawal_values(v: &mut Values, r: &WithdrawalRow) {
    v.int(r.withdrawal_id).int(r.account).int(r.asset).amount(r.amount).int(r.client_ref).int(r.status.as_u8());
    v.int(r.first_seen.seq).time(r.first_seen.ts_ns).int(r.origin.seq).time(r.origin.ts_ns);
}

fn transfer_values(v: &mut Values, r: &TransferRow) {
    v.int(r.origin.seq).int(r.origin.idx).int(r.from).int(r.to).int(r.asset).amount(r.amount).int(r.client_ref);
    v.time(r.origin.ts_ns);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Command, Engine};
    use crate::replicate::BatchBuilder;

    fn decimal(units: i64, scale: u8) -> String {
        let mut s = String::new();
        push_decimal(&mut s, Amount::new(units, scale));
        s
    }

    #[test]
    fn decimals_are_exact_and_parse_back() {
        assert_eq!(decimal(-12_345_000, 6), "-12.345000");
        assert_eq!(decimal(5, 8), "0.00000005");
        assert_eq!(decimal(-5, 8), "-0.00000005");
        assert_eq!(decimal(0, 6), "0.000000");
        assert_eq!(decimal(42, 0), "42");
        assert_eq!(decimal(i64::MIN, 0), "-9223372036854775808");
        assert_eq!(decimal(i64::MIN, 18), "-9.223372036854775808");
        assert_eq!(decimal(i64::MAX, 18), "9.223372036854775807");
        for scale in 0..=18u8 {
            for units in [0i64, 1, -1, 999, -1_000_001, i64::MAX, i64::MIN, 123_456_789_012_345] {
                let text = decimal(units, scale);
                assert_eq!(parse_minor(&text, scale), Some(units), "{text} at {scale}");
                assert_eq!(text, Amount::new(units, scale).to_decimal_string(), "agrees with rust_decimal");
                // As the server prints a DECIMAL(38,18) column.
                let wide = if scale == 0 {
                    format!("{text}.{}", "0".repeat(18))
                } else {
                    text + &"0".repeat(18 - scale as usize)
                };
                assert_eq!(parse_minor(&wide, scale), Some(units), "{wide} at {scale}");
            }
        }
        assert_eq!(parse_minor("1.0000001", 6), None, "finer than the scale");
        assert_eq!(parse_minor("9223372036854775808", 0), None, "past i64");
        assert_eq!(parse_minor("12345678901234567890123.000000000000000000", 0), None);
        assert_eq!(parse_minor("1e5", 0), None);
        assert_eq!(parse_minor("", 0), None);
        assert_eq!(parse_minor("-", 0), None);
        assert_eq!(parse_minor(".5", 1), Some(5));
    }

    /// The ODKU clauses: facts rewrite, current state is guarded with the guard column last,
    /// creation stamps are never updated.
    #[test]
    fn upsert_clauses_never_go_backwards() {
        let orders = ORDERS.on_duplicate();
        assert!(orders.ends_with("updated_seq = GREATEST(updated_seq, VALUES(updated_seq))"), "{orders}");
        assert!(!orders.contains("created_seq =") && !orders.contains("created_at ="), "{orders}");
        assert!(orders.contains("status = IF(VALUES(updated_seq) >= updated_seq, VALUES(status), status)"));
        assert!(!orders.contains(" order_id = "), "the key is not updated");
        let balances = BALANCES.on_duplicate();
        assert!(balances.ends_with("last_seq = GREATEST(last_seq, VALUES(last_seq))"), "{balances}");
        assert_eq!(balances.matches("IF(").count(), 3, "{balances}");
        let ledger = LEDGER.on_duplicate();
        assert!(ledger.contains("held_after = VALUES(held_after)") && !ledger.contains("idx ="), "{ledger}");
        assert_eq!(ASSETS.on_duplicate(), " ON DUPLICATE KEY UPDATE asset_id = asset_id");
        assert!(WITHDRAWALS.on_duplicate().ends_with("updated_seq = GREATEST(updated_seq, VALUES(updated_seq))"));
    }

    #[test]
    fn statements_are_chunked_and_hold_only_numbers_and_stamps() {
        let commands: Vec<Command> = crate::scenario::scripted_session();
        let mut engine = Engine::new();
        let mut builder = BatchBuilder::new(Catalog::default());
        let mut events = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            events.clear();
            let seq = i as u64 + 1;
            engine.apply(seq, crate::scenario::timestamp_ns(i), command, &mut events);
            builder.add_record(seq, crate::scenario::timestamp_ns(i), &events).unwrap();
        }
        let batch = builder.take();
        let statements = batch_statements(&batch, 3);
        let ledger: Vec<&String> = statements.iter().filter(|s| s.starts_with("INSERT INTO ledger_entries")).collect();
        assert_eq!(ledger.len(), batch.ledger.len().div_ceil(3));
        let tuples: usize = ledger.iter().map(|s| s.matches("),(").count() + 1).sum();
        assert_eq!(tuples, batch.ledger.len());
        assert!(!statements.iter().any(|s| s.starts_with("INSERT INTO order_events")));
        let first = &statements[0];
        assert!(first.starts_with("INSERT INTO assets (asset_id, scale, created_seq, created_at) VALUES (1,8,1,'2023-11-14 22:13:20.000000')"), "{first}");
        for sql in &statements {
            let values = &sql[sql.find(" VALUES ").unwrap()..sql.find(" ON DUPLICATE").unwrap()];
            assert!(
                values.bytes().all(|b| b.is_ascii_digit() || b" VALUES(),.-':/".contains(&b)),
                "only numbers, stamps and paths: {values}"
            );
        }
        let checkpoint = checkpoint_statement(0, &batch);
        assert!(
            checkpoint.contains(&format!("SET last_seq = {}", batch.last_seq))
                && checkpoint.ends_with("AND last_seq = 0")
        );
    }

    /// Prepared shapes: full statements, then powers of two down to 64 rows, the rest as text;
    /// every row once, in order, with one parameter per column.
    #[test]
    fn prepared_plans_cover_every_row_once_in_few_shapes() {
        let row = |i: u64| LedgerRow {
            origin: crate::replicate::rows::Origin { seq: i + 1, idx: 0, ts_ns: 1_700_000_000_000_000_000 + i },
            account: i,
            asset: 2,
            kind: crate::engine::LedgerKind::Hold,
            available_delta: Amount::new(-(i as i64), 6),
            held_delta: Amount::new(i as i64, 6),
            available_after: Amount::new(0, 6),
            held_after: Amount::new(i as i64, 6),
            ref_kind: crate::engine::RefKind::Order,
            ref_id: i,
        };
        let batch = Batch { ledger: (0..2_500).map(row).collect(), ..Batch::default() };
        let plan = batch_plan(&batch, 1_000, true);
        let shapes: Vec<(bool, usize)> = plan
            .iter()
            .map(|s| match s {
                RowStatement::Prepared { table, rows, params } => {
                    assert_eq!((*table, params.len()), (4, rows * 12));
                    (true, *rows)
                }
                RowStatement::Text(sql) => (false, sql.matches("),(").count() + 1),
            })
            .collect();
        assert_eq!(shapes, [(true, 1000), (true, 1000), (true, 256), (true, 128), (true, 64), (false, 52)]);
        let mut ids = Vec::new();
        for statement in &plan {
            if let RowStatement::Prepared { params, .. } = statement {
                ids.extend(params.chunks(12).map(|p| p[0].clone()));
            }
        }
        assert_eq!(ids.len(), 2_448);
        assert!(ids.iter().enumerate().all(|(i, v)| *v == Value::UInt(i as u64 + 1)));
        let text = batch_statements(&batch, 1_000);
        assert_eq!(text.len(), 3);
        assert_eq!(TABLE_SQL[4].placeholders(2).matches('?').count(), 24);
        assert_eq!(TABLE_SQL[5].max_rows(100_000), 65_535 / 19);
    }

    #[test]
    fn urls_must_name_a_plain_database() {
        let name = |url: &str| database_name(&Opts::from_url(url).unwrap());
        assert_eq!(name("mysql://root@127.0.0.1:3306/seqd_1").unwrap(), "seqd_1");
        assert!(matches!(name("mysql://root@127.0.0.1:3306/"), Err(SinkError::Fatal(_))));
        assert!(matches!(name("mysql://root@127.0.0.1:3306/a%60b"), Err(SinkError::Fatal(_))));
    }
}
