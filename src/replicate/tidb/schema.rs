//! The TiDB mirror's tables, each declared once: its columns (name, SQL type, and how the value
//! is taken from a row of [`super::super::rows`]), its indexes and its upsert rule. The DDL, the
//! column list of the `INSERT` statements, the `ON DUPLICATE KEY UPDATE` clause and the values of
//! a row are all generated from that one declaration.
//!
//! The generated DDL is the schema of version [`super::SCHEMA_VERSION`]: a change to a column or
//! an index is a new schema version (and a migration), never an edit of version 1 (the test
//! `ddl_is_schema_version_1` holds the exact text existing mirrors were created with).

use std::sync::LazyLock;
use std::time::Duration;

use mysql_async::Conn;

use super::encode::Values;
use super::read_back::schema_version;
use super::{exec, SCHEMA_VERSION, SINK_NAME};
use crate::replicate::rows::{
    AccountRow, AssetRow, BalanceRow, CodeRow, DepositRow, LedgerRow, OrderLatest, SymbolRow, TradeRow, TransferRow,
    WithdrawalRow,
};
use crate::replicate::SinkError;

const TABLE_OPTIONS: &str = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

/// Money: `DECIMAL(38,18)` holds every i64 amount at every scale 0..=18 exactly (19 integer
/// digits at scale 0 plus 18 decimals) and matches ClickHouse's `Decimal(38,18)`.
const MONEY: &str = "DECIMAL(38,18) NOT NULL";
const SEQ: &str = "BIGINT UNSIGNED NOT NULL";
const SEQ_KEY: &str = "BIGINT UNSIGNED NOT NULL PRIMARY KEY";
const TIME: &str = "DATETIME(6) NOT NULL";
const CODE: &str = "TINYINT UNSIGNED NOT NULL";
const U32: &str = "INT UNSIGNED NOT NULL";
const U32_KEY: &str = "INT UNSIGNED NOT NULL PRIMARY KEY";
const U64: &str = "BIGINT UNSIGNED NOT NULL";
const U64_KEY: &str = "BIGINT UNSIGNED NOT NULL PRIMARY KEY";

/// `CREATE TABLE IF NOT EXISTS` of a table: its columns, then its indexes, then the options.
fn create_sql<'a>(name: &str, columns: impl Iterator<Item = (&'a str, &'a str)>, indexes: &[&str]) -> String {
    let mut parts: Vec<String> = columns.map(|(column, sql_type)| format!("{column} {sql_type}")).collect();
    parts.extend(indexes.iter().map(|index| index.to_string()));
    format!("CREATE TABLE IF NOT EXISTS {name} ({}) {TABLE_OPTIONS}", parts.join(", "))
}

/// A table the sink writes by hand-made statements only (no row type).
pub(super) struct PlainTable {
    pub name: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
}

impl PlainTable {
    pub fn create_sql(&self) -> String {
        create_sql(self.name, self.columns.iter().copied(), &[])
    }
}

pub(super) const SCHEMA_VERSION_TABLE: PlainTable =
    PlainTable { name: "schema_version", columns: &[("version", U32_KEY), ("applied_at", TIME)] };

pub(super) const CHECKPOINT_TABLE: PlainTable = PlainTable {
    name: "replicator_checkpoint",
    columns: &[
        ("sink", "VARCHAR(64) NOT NULL PRIMARY KEY"),
        ("last_seq", SEQ),
        ("last_record_at", "DATETIME(6) NULL"),
        ("updated_at", TIME),
    ],
};

/// How a re-sent row with an existing key is applied.
pub(super) enum Rule {
    /// An append-only fact: the same key always carries the same values; rewrite them.
    Fact,
    /// Never changes once written (assets).
    Immutable,
    /// Current state: every column follows the incoming row only if it is at least as new
    /// (`guard` seq); `insert_only` columns (creation stamps) are never updated.
    State { guard: &'static str, insert_only: &'static [&'static str] },
}

/// One column of a table of rows `R`.
pub(super) struct Column<R> {
    pub name: &'static str,
    pub sql_type: &'static str,
    /// Writes this column's value of a row.
    pub value: fn(&mut Values, &R),
}

/// A table of rows `R`: everything the sink knows about it.
pub(super) struct Table<R: 'static> {
    /// Index in [`TABLE_SQL`] (the prepared-statement cache is keyed by it).
    pub slot: usize,
    pub name: &'static str,
    pub columns: &'static [Column<R>],
    /// Secondary indexes and composite primary keys, after the columns in the DDL.
    pub indexes: &'static [&'static str],
    /// The first `key` columns are the primary key.
    pub key: usize,
    pub rule: Rule,
}

impl<R> Table<R> {
    pub fn create_sql(&self) -> String {
        create_sql(self.name, self.columns.iter().map(|c| (c.name, c.sql_type)), self.indexes)
    }

    pub fn column_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns.iter().map(|c| c.name)
    }

    /// Writes every column's value of `row`, in column order.
    pub fn put(&self, values: &mut Values, row: &R) {
        for column in self.columns {
            (column.value)(values, row);
        }
    }

    fn insert_prefix(&self) -> String {
        format!("INSERT INTO {} ({}) VALUES ", self.name, self.column_names().collect::<Vec<_>>().join(", "))
    }

    /// The `ON DUPLICATE KEY UPDATE` clause. MySQL, MariaDB and TiDB apply its assignments left
    /// to right, and a later one sees the columns an earlier one set: the guard column goes
    /// last so every condition compares with the stored (old) seq.
    pub fn on_duplicate(&self) -> String {
        let rest: Vec<&str> = self.column_names().skip(self.key).collect();
        let assignments: Vec<String> = match self.rule {
            Rule::Fact => rest.iter().map(|c| format!("{c} = VALUES({c})")).collect(),
            Rule::Immutable => vec![format!("{0} = {0}", self.columns[0].name)],
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

    fn sql(&self) -> TableSql {
        TableSql {
            name: self.name,
            columns: self.columns.len(),
            prefix: self.insert_prefix(),
            suffix: self.on_duplicate(),
        }
    }
}

/// A column of `R`; the closure writes its value.
const fn column<R>(name: &'static str, sql_type: &'static str, value: fn(&mut Values, &R)) -> Column<R> {
    Column { name, sql_type, value }
}

pub(super) const ASSETS: Table<AssetRow> = Table {
    slot: 0,
    name: "assets",
    columns: &[
        column("asset_id", U32_KEY, |v, r| v.int(r.asset)),
        column("scale", CODE, |v, r| v.int(r.scale)),
        column("created_seq", SEQ, |v, r| v.int(r.origin.seq)),
        column("created_at", TIME, |v, r| v.time(r.origin.ts_ns)),
    ],
    indexes: &[],
    key: 1,
    rule: Rule::Immutable,
};

pub(super) const SYMBOLS: Table<SymbolRow> = Table {
    slot: 1,
    name: "symbols",
    columns: &[
        column("symbol_id", U32_KEY, |v, r| v.int(r.symbol)),
        column("base_asset_id", U32, |v, r| v.int(r.base)),
        column("quote_asset_id", U32, |v, r| v.int(r.quote)),
        column("tick_size", MONEY, |v, r| v.amount(r.tick_size)),
        column("lot_size", MONEY, |v, r| v.amount(r.lot_size)),
        column("min_qty", MONEY, |v, r| v.amount(r.min_qty)),
        column("min_notional", MONEY, |v, r| v.amount(r.min_notional)),
        column("max_order_qty", MONEY, |v, r| v.amount(r.max_order_qty)),
        column("maker_fee_ppm", U32, |v, r| v.int(r.maker_fee_ppm)),
        column("taker_fee_ppm", U32, |v, r| v.int(r.taker_fee_ppm)),
        column("price_band_bps", U32, |v, r| v.int(r.price_band_bps)),
        column("status", CODE, |v, r| v.int(r.status.as_u8())),
        column("updated_seq", SEQ, |v, r| v.int(r.origin.seq)),
        column("updated_at", TIME, |v, r| v.time(r.origin.ts_ns)),
    ],
    indexes: &[],
    key: 1,
    rule: Rule::State { guard: "updated_seq", insert_only: &[] },
};

/// Schema version 2: the code each coded asset (`kind` 0) and symbol (`kind` 1) was created
/// with. A table of its own rather than columns of `assets` and `symbols`, so that the
/// statements of version 1's tables stay as they were (existing mirrors, pinned below).
pub(super) const CODES: Table<CodeRow> = Table {
    slot: 10,
    name: "reference_codes",
    columns: &[
        column("kind", CODE, |v, r| v.int(r.kind)),
        column("id", U32, |v, r| v.int(r.id)),
        column("code", "VARCHAR(16) NOT NULL", |v, r| v.code(&r.code)),
        column("created_seq", SEQ, |v, r| v.int(r.origin.seq)),
        column("created_at", TIME, |v, r| v.time(r.origin.ts_ns)),
    ],
    indexes: &["PRIMARY KEY (kind, id)", "UNIQUE KEY reference_codes_code (kind, code)"],
    key: 2,
    rule: Rule::Immutable,
};

pub(super) const ACCOUNTS: Table<AccountRow> = Table {
    slot: 2,
    name: "accounts",
    columns: &[
        column("account_id", U64_KEY, |v, r| v.int(r.account)),
        column("parent_id", U64, |v, r| v.int(r.info.parent)),
        column("owner", U64, |v, r| v.int(r.info.owner)),
        column("path", "VARCHAR(512) NOT NULL", |v, r| v.path(&r.info.path)),
        column("status", CODE, |v, r| v.int(r.info.status.as_u8())),
        column("created_seq", SEQ, |v, r| v.int(r.created.seq)),
        column("created_at", TIME, |v, r| v.time(r.created.ts_ns)),
        column("updated_seq", SEQ, |v, r| v.int(r.updated.seq)),
        column("updated_at", TIME, |v, r| v.time(r.updated.ts_ns)),
    ],
    indexes: &["KEY accounts_parent (parent_id)", "KEY accounts_path (path)"],
    key: 1,
    rule: Rule::State { guard: "updated_seq", insert_only: &["created_seq", "created_at"] },
};

pub(super) const BALANCES: Table<BalanceRow> = Table {
    slot: 3,
    name: "balances",
    columns: &[
        column("account_id", U64, |v, r| v.int(r.account)),
        column("asset_id", U32, |v, r| v.int(r.asset)),
        column("available", MONEY, |v, r| v.amount(r.available)),
        column("held", MONEY, |v, r| v.amount(r.held)),
        column("last_seq", SEQ, |v, r| v.int(r.origin.seq)),
        column("updated_at", TIME, |v, r| v.time(r.origin.ts_ns)),
    ],
    indexes: &["PRIMARY KEY (account_id, asset_id)"],
    key: 2,
    rule: Rule::State { guard: "last_seq", insert_only: &[] },
};

pub(super) const LEDGER: Table<LedgerRow> = Table {
    slot: 4,
    name: "ledger_entries",
    columns: &[
        column("seq", SEQ, |v, r| v.int(r.origin.seq)),
        column("idx", U32, |v, r| v.int(r.origin.idx)),
        column("account_id", U64, |v, r| v.int(r.account)),
        column("asset_id", U32, |v, r| v.int(r.asset)),
        column("kind", CODE, |v, r| v.int(r.kind.as_u8())),
        column("available_delta", MONEY, |v, r| v.amount(r.available_delta)),
        column("held_delta", MONEY, |v, r| v.amount(r.held_delta)),
        column("available_after", MONEY, |v, r| v.amount(r.available_after)),
        column("held_after", MONEY, |v, r| v.amount(r.held_after)),
        column("ref_kind", CODE, |v, r| v.int(r.ref_kind.as_u8())),
        column("ref_id", U64, |v, r| v.int(r.ref_id)),
        column("event_time", TIME, |v, r| v.time(r.origin.ts_ns)),
    ],
    indexes: &["PRIMARY KEY (seq, idx)", "KEY ledger_account_asset (account_id, asset_id)"],
    key: 2,
    rule: Rule::Fact,
};

pub(super) const ORDERS: Table<OrderLatest> = Table {
    slot: 5,
    name: "orders",
    columns: &[
        column("order_id", U64_KEY, |v, r| v.int(r.report.order_id)),
        column("client_order_id", U64, |v, r| v.int(r.report.client_order_id)),
        column("account_id", U64, |v, r| v.int(r.report.account)),
        column("symbol_id", U32, |v, r| v.int(r.report.symbol)),
        column("side", CODE, |v, r| v.int(r.report.side.as_u8())),
        column("order_type", CODE, |v, r| v.int(r.report.order_type.as_u8())),
        column("tif", CODE, |v, r| v.int(r.report.tif.as_u8())),
        column("price", MONEY, |v, r| v.amount(r.report.price)),
        column("qty", MONEY, |v, r| v.amount(r.report.qty)),
        column("filled_qty", MONEY, |v, r| v.amount(r.report.filled_qty)),
        column("remaining_qty", MONEY, |v, r| v.amount(r.report.remaining_qty)),
        column("filled_quote", MONEY, |v, r| v.amount(r.report.filled_quote)),
        column("fees_paid", MONEY, |v, r| v.amount(r.report.fees_paid)),
        column("status", CODE, |v, r| v.int(r.report.status.as_u8())),
        column("last_exec", CODE, |v, r| v.int(r.report.exec.as_u8())),
        column("created_seq", SEQ, |v, r| v.int(r.first_seen.seq)),
        column("created_at", TIME, |v, r| v.time(r.first_seen.ts_ns)),
        column("updated_seq", SEQ, |v, r| v.int(r.report.origin.seq)),
        column("updated_at", TIME, |v, r| v.time(r.report.origin.ts_ns)),
    ],
    indexes: &["KEY orders_account_status (account_id, status)"],
    key: 1,
    rule: Rule::State { guard: "updated_seq", insert_only: &["created_seq", "created_at"] },
};

pub(super) const TRADES: Table<TradeRow> = Table {
    slot: 6,
    name: "trades",
    columns: &[
        column("trade_id", U64_KEY, |v, r| v.int(r.trade_id)),
        column("symbol_id", U32, |v, r| v.int(r.symbol)),
        column("price", MONEY, |v, r| v.amount(r.price)),
        column("qty", MONEY, |v, r| v.amount(r.qty)),
        column("quote_qty", MONEY, |v, r| v.amount(r.quote_qty)),
        column("maker_order_id", U64, |v, r| v.int(r.maker_order)),
        column("taker_order_id", U64, |v, r| v.int(r.taker_order)),
        column("maker_account_id", U64, |v, r| v.int(r.maker_account)),
        column("taker_account_id", U64, |v, r| v.int(r.taker_account)),
        column("maker_side", CODE, |v, r| v.int(r.maker_side.as_u8())),
        column("maker_fee", MONEY, |v, r| v.amount(r.maker_fee)),
        column("taker_fee", MONEY, |v, r| v.amount(r.taker_fee)),
        column("seq", SEQ, |v, r| v.int(r.origin.seq)),
        column("idx", U32, |v, r| v.int(r.origin.idx)),
        column("event_time", TIME, |v, r| v.time(r.origin.ts_ns)),
    ],
    indexes: &["KEY trades_maker (maker_account_id)", "KEY trades_taker (taker_account_id)"],
    key: 1,
    rule: Rule::Fact,
};

pub(super) const DEPOSITS: Table<DepositRow> = Table {
    slot: 7,
    name: "deposits",
    columns: &[
        column("seq", SEQ_KEY, |v, r| v.int(r.origin.seq)),
        column("idx", U32, |v, r| v.int(r.origin.idx)),
        column("account_id", U64, |v, r| v.int(r.account)),
        column("asset_id", U32, |v, r| v.int(r.asset)),
        column("amount", MONEY, |v, r| v.amount(r.amount)),
        column("external_ref", U64, |v, r| v.int(r.external_ref)),
        column("event_time", TIME, |v, r| v.time(r.origin.ts_ns)),
    ],
    indexes: &["KEY deposits_account (account_id)"],
    key: 1,
    rule: Rule::Fact,
};

pub(super) const WITHDRAWALS: Table<WithdrawalRow> = Table {
    slot: 8,
    name: "withdrawals",
    columns: &[
        column("withdrawal_id", U64_KEY, |v, r| v.int(r.withdrawal_id)),
        column("account_id", U64, |v, r| v.int(r.account)),
        column("asset_id", U32, |v, r| v.int(r.asset)),
        column("amount", MONEY, |v, r| v.amount(r.amount)),
        column("client_ref", U64, |v, r| v.int(r.client_ref)),
        column("status", CODE, |v, r| v.int(r.status.as_u8())),
        column("requested_seq", SEQ, |v, r| v.int(r.first_seen.seq)),
        column("requested_at", TIME, |v, r| v.time(r.first_seen.ts_ns)),
        column("updated_seq", SEQ, |v, r| v.int(r.origin.seq)),
        column("updated_at", TIME, |v, r| v.time(r.origin.ts_ns)),
    ],
    indexes: &["KEY withdrawals_account_status (account_id, status)"],
    key: 1,
    rule: Rule::State { guard: "updated_seq", insert_only: &["requested_seq", "requested_at"] },
};

pub(super) const TRANSFERS: Table<TransferRow> = Table {
    slot: 9,
    name: "transfers",
    columns: &[
        column("seq", SEQ_KEY, |v, r| v.int(r.origin.seq)),
        column("idx", U32, |v, r| v.int(r.origin.idx)),
        column("from_account_id", U64, |v, r| v.int(r.from)),
        column("to_account_id", U64, |v, r| v.int(r.to)),
        column("asset_id", U32, |v, r| v.int(r.asset)),
        column("amount", MONEY, |v, r| v.amount(r.amount)),
        column("client_ref", U64, |v, r| v.int(r.client_ref)),
        column("event_time", TIME, |v, r| v.time(r.origin.ts_ns)),
    ],
    indexes: &["KEY transfers_from (from_account_id)", "KEY transfers_to (to_account_id)"],
    key: 1,
    rule: Rule::Fact,
};

/// `MIGRATIONS[v - 1]` takes the schema from version `v - 1` to `v`. Each statement is safe to
/// run again (DDL is not transactional: a migration cut short is simply run again).
pub(super) static MIGRATIONS: LazyLock<Vec<Vec<String>>> =
    LazyLock::new(|| vec![schema_v1(), vec![CODES.create_sql()]]);

/// Version 1: every table, the checkpoint first.
fn schema_v1() -> Vec<String> {
    vec![
        CHECKPOINT_TABLE.create_sql(),
        ASSETS.create_sql(),
        SYMBOLS.create_sql(),
        ACCOUNTS.create_sql(),
        BALANCES.create_sql(),
        LEDGER.create_sql(),
        ORDERS.create_sql(),
        TRADES.create_sql(),
        DEPOSITS.create_sql(),
        WITHDRAWALS.create_sql(),
        TRANSFERS.create_sql(),
    ]
}

/// Creates the `schema_version` table, refuses a mirror newer than this binary, and runs every
/// migration from the mirror's version to [`SCHEMA_VERSION`].
pub(super) async fn migrate(conn: &mut Conn, timeout: Duration) -> Result<(), SinkError> {
    exec(conn, timeout, &SCHEMA_VERSION_TABLE.create_sql()).await?;
    let current = schema_version(conn, timeout).await?.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(SinkError::fatal(format!(
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
    Ok(())
}

/// Statement text of a row table, built once.
pub(super) struct TableSql {
    pub name: &'static str,
    pub columns: usize,
    pub prefix: String,
    pub suffix: String,
}

impl TableSql {
    /// A prepared multi-row statement's text: `rows` tuples of placeholders.
    pub fn placeholders(&self, rows: usize) -> String {
        let tuple = format!("({})", vec!["?"; self.columns].join(","));
        format!("{}{}{}", self.prefix, vec![tuple; rows].join(","), self.suffix)
    }

    /// Rows per statement: the configured number, within the protocol's 65,535 placeholders.
    pub fn max_rows(&self, rows_per_statement: usize) -> usize {
        rows_per_statement.clamp(1, 65_535 / self.columns)
    }
}

/// The row tables' statement text by [`Table::slot`].
pub(super) static TABLE_SQL: LazyLock<[TableSql; 11]> = LazyLock::new(|| {
    let sql = [
        ASSETS.sql(),
        SYMBOLS.sql(),
        ACCOUNTS.sql(),
        BALANCES.sql(),
        LEDGER.sql(),
        ORDERS.sql(),
        TRADES.sql(),
        DEPOSITS.sql(),
        WITHDRAWALS.sql(),
        TRANSFERS.sql(),
        CODES.sql(),
    ];
    let slots = [
        ASSETS.slot,
        SYMBOLS.slot,
        ACCOUNTS.slot,
        BALANCES.slot,
        LEDGER.slot,
        ORDERS.slot,
        TRADES.slot,
        DEPOSITS.slot,
        WITHDRAWALS.slot,
        TRANSFERS.slot,
        CODES.slot,
    ];
    assert!(slots.iter().enumerate().all(|(i, slot)| i == *slot), "table slots are their index");
    sql
});

#[cfg(test)]
mod tests {
    use super::*;

    /// The DDL of schema version 1, byte for byte as the mirrors in the field were created with
    /// (the text the hand-written DDL produced before the tables were declared once), and the
    /// statement heads and upsert clauses as they were.
    #[test]
    fn ddl_is_schema_version_1() {
        let mut text = String::new();
        for sql in std::iter::once(SCHEMA_VERSION_TABLE.create_sql()).chain(schema_v1()) {
            text.push_str(&sql);
            text.push('\n');
        }
        // Version 1's tables: the first ten slots (version 2 added `reference_codes`).
        for table in TABLE_SQL.iter().take(10) {
            text.push_str(&table.prefix);
            text.push('|');
            text.push_str(&table.suffix);
            text.push('\n');
        }
        crate::replicate::assert_same_text(&text, include_str!("../testdata/tidb_schema_v1.txt"));
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
}
