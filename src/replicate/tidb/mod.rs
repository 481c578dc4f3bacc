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
//!
//! Files: [`schema`] (the tables, each declared once, and the versioned DDL), [`encode`] (a
//! batch's rows as statements), [`read_back`] (the checkpoint, catalog and state read back).

mod encode;
mod read_back;
mod schema;

use std::collections::HashMap;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Params, Row, Statement};

pub use encode::{batch_plan, batch_statements, checkpoint_statement, prepared_sql, push_decimal, RowStatement};
use read_back::open_on;
pub use read_back::parse_minor;
use schema::TABLE_SQL;

use super::{Batch, BatchLimits, Resume, Sink, SinkError};
use crate::engine::Seq;

/// The checkpoint key, log and metric label of this sink.
pub const SINK_NAME: &str = "tidb";

/// Version of the schema this binary writes. A mirror with a newer version is refused.
pub const SCHEMA_VERSION: u32 = 2;

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
    /// Test-only fault (`fault-injection` builds): every Nth write fails just before `COMMIT`.
    #[cfg(feature = "fault-injection")]
    abort_before_commit: fault::EveryNth,
}

impl TidbSink {
    pub fn new(config: TidbConfig) -> TidbSink {
        TidbSink {
            config,
            conn: None,
            checkpoint: None,
            prepared: HashMap::new(),
            #[cfg(feature = "fault-injection")]
            abort_before_commit: fault::EveryNth::default(),
        }
    }

    pub fn config(&self) -> &TidbConfig {
        &self.config
    }

    /// Connects to the URL's database, creating it when `create` is set.
    async fn connect(&self, create: bool) -> Result<Conn, SinkError> {
        let opts = Opts::from_url(&self.config.url)
            .map_err(|e| SinkError::Fatal(Box::new(TidbError::new("url", mysql_async::Error::Url(e)))))?;
        let database = database_name(&opts)?;
        let opts = OptsBuilder::from_opts(opts)
            .db_name(None::<String>)
            .tcp_keepalive(Some(Duration::from_secs(10)))
            .stmt_cache_size(0);
        let timeout = self.config.connect_timeout;
        let mut conn = match tokio::time::timeout(timeout, Conn::new(opts)).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(classify("connecting", e)),
            Err(_) => return Err(SinkError::transient(format!("connecting: no answer within {timeout:?}"))),
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

    /// Whether this write is one the test-only fault fails before its `COMMIT` (never in a
    /// build without the `fault-injection` feature).
    fn abort_before_commit_now(&mut self) -> bool {
        #[cfg(feature = "fault-injection")]
        return self.abort_before_commit.next();
        #[cfg(not(feature = "fault-injection"))]
        false
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
            return Err(SinkError::transient("tidb: not connected (open first)"));
        };
        if batch.first_seq != checkpoint + 1 || batch.last_seq < batch.first_seq {
            self.disconnect().await;
            abandon(conn).await;
            return Err(SinkError::fatal(format!(
                "tidb: batch {}..={} does not follow the mirror's checkpoint {checkpoint}",
                batch.first_seq, batch.last_seq
            )));
        }
        let abort = self.abort_before_commit_now();
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

// ---------------------------------------------------------------------------------------------
// Connection-level steps (each takes the connection; the caller drops it on any error).

/// Strict mode (an out-of-range value is an error, never a clamp), UTC, bounded lock waits.
const SESSION_SETUP: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,\
ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION', time_zone = '+00:00', innodb_lock_wait_timeout = 20";

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
        return Err(SinkError::transient(format!(
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
                            Err(_) => return Err(SinkError::transient(format!("tidb: prepare took over {timeout:?}"))),
                        };
                        prepared.insert((table, rows), statement.clone());
                        statement
                    }
                };
                match tokio::time::timeout(timeout, conn.exec_drop(&statement, Params::Positional(params))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(classify(statement_head(&TABLE_SQL[table].prefix), e)),
                    Err(_) => return Err(SinkError::transient(format!("tidb: an insert took over {timeout:?}"))),
                }
            }
        }
    }
    if abort_before_commit {
        // Only in `fault-injection` builds (`abort_before_commit_now`): the transaction's rows
        // are written, the connection is dropped without its `COMMIT`.
        return Err(SinkError::transient("tidb: injected failure before COMMIT"));
    }
    exec(conn, timeout, "COMMIT").await?;
    Ok(())
}

/// Runs a statement; returns the affected-row count.
pub(super) async fn exec(conn: &mut Conn, timeout: Duration, sql: &str) -> Result<u64, SinkError> {
    match tokio::time::timeout(timeout, conn.query_drop(sql)).await {
        Ok(Ok(())) => Ok(conn.affected_rows()),
        Ok(Err(e)) => Err(classify(statement_head(sql), e)),
        Err(_) => Err(SinkError::transient(format!("tidb: {} took longer than {timeout:?}", statement_head(sql)))),
    }
}

pub(super) async fn query(conn: &mut Conn, timeout: Duration, sql: &str) -> Result<Vec<Row>, SinkError> {
    match tokio::time::timeout(timeout, conn.query::<Row, _>(sql)).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(e)) => Err(classify(statement_head(sql), e)),
        Err(_) => Err(SinkError::transient(format!("tidb: {} took longer than {timeout:?}", statement_head(sql)))),
    }
}

/// Closes a connection whose state is unknown (mid-transaction, timed out): the server rolls
/// back whatever it had not committed. Bounded, so a hung server cannot hold us here.
pub(super) async fn abandon(conn: Conn) {
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
    let error = TidbError::new(what, e);
    if error.is_fatal() {
        SinkError::Fatal(Box::new(error))
    } else {
        SinkError::Transient(Box::new(error))
    }
}

/// An error of the MySQL client or server, with what the sink was doing and the server's error
/// number (MySQL error code) when the server answered with one.
#[derive(Debug, thiserror::Error)]
#[error("tidb: {what}: {source}")]
pub struct TidbError {
    pub what: String,
    /// The server's error number (`1146`: table does not exist), `None` for client-side errors
    /// (I/O, protocol, URL).
    pub server_code: Option<u16>,
    #[source]
    pub source: mysql_async::Error,
}

impl TidbError {
    fn new(what: &str, source: mysql_async::Error) -> TidbError {
        let server_code = match &source {
            mysql_async::Error::Server(server) => Some(server.code),
            _ => None,
        };
        TidbError { what: what.to_string(), server_code, source }
    }

    /// Retrying cannot cure it: one of [`FATAL_SERVER_CODES`], or a malformed URL. Anything
    /// else (I/O, a deadlock, a lock wait timeout, a server going away) is transient.
    pub fn is_fatal(&self) -> bool {
        self.server_code.is_some_and(|code| FATAL_SERVER_CODES.contains(&code))
            || matches!(self.source, mysql_async::Error::Url(_))
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
        Err(SinkError::fatal(format!(
            "tidb url must name a database of letters, digits, '_' or '$' (mysql://host:port/seqd), got {name:?}"
        )))
    }
}

/// Test-only faults of the write path (`fault-injection` builds only: the feature the test
/// builds turn on, see Cargo.toml); a production build has neither the setter nor the field.
#[cfg(feature = "fault-injection")]
mod fault {
    /// Fires on every `every`th call (never while `every` is 0).
    #[derive(Default)]
    pub(super) struct EveryNth {
        pub every: u64,
        calls: u64,
    }

    impl EveryNth {
        pub fn next(&mut self) -> bool {
            self.calls += 1;
            self.every > 0 && self.calls.is_multiple_of(self.every)
        }
    }
}

#[cfg(feature = "fault-injection")]
impl TidbSink {
    /// Every `every`th write writes its rows, then fails with a transient error and drops the
    /// connection instead of committing (0: never). Tests only.
    pub fn abort_before_commit_every(mut self, every: u64) -> TidbSink {
        self.abort_before_commit.every = every;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_name_a_plain_database() {
        let name = |url: &str| database_name(&Opts::from_url(url).unwrap());
        assert_eq!(name("mysql://root@127.0.0.1:3306/seqd_1").unwrap(), "seqd_1");
        assert!(matches!(name("mysql://root@127.0.0.1:3306/"), Err(SinkError::Fatal(_))));
        assert!(matches!(name("mysql://root@127.0.0.1:3306/a%60b"), Err(SinkError::Fatal(_))));
    }

    fn server_error(code: u16) -> mysql_async::Error {
        let server = mysql_async::ServerError { code, message: format!("error {code}"), state: "HY000".into() };
        mysql_async::Error::Server(server)
    }

    /// The server's error number is kept in the error, and decides fatal against transient.
    #[test]
    fn server_codes_are_kept_and_classify() {
        for (code, fatal) in [(1146, true), (1064, true), (8004, true), (1213, false), (1205, false), (2013, false)] {
            let error = classify("inserting", server_error(code));
            assert_eq!(matches!(error, SinkError::Fatal(_)), fatal, "code {code}");
            let cause = match &error {
                SinkError::Fatal(cause) | SinkError::Transient(cause) => cause,
            };
            let tidb = cause.downcast_ref::<TidbError>().expect("a TidbError");
            assert_eq!(tidb.server_code, Some(code));
            assert!(std::error::Error::source(tidb).is_some(), "the client's error is the source");
            assert!(error.to_string().starts_with("tidb: inserting: "), "{error}");
        }
    }
}
