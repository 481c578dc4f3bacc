//! The ClickHouse mirror's tables, each declared once with [`mirror_table!`]: a column is its
//! name, its Rust and ClickHouse types and how its value is taken from a row of
//! [`crate::replicate::rows`]; the DDL, the column list of the inserts, the Native encoding and
//! the schema check at `open` all come from that one declaration.
//!
//! The generated DDL is the schema of version [`SCHEMA_VERSION`]: a change to a table is a new
//! version (and a migration), never an edit of version 1 (the test `ddl_is_schema_version_1`
//! holds the exact text existing mirrors were created with).

use std::collections::{BTreeMap, BTreeSet};

use clickhouse::Row;
use serde::Deserialize;

use super::encode::{mirror_table, NativeRow, NativeValue};
use super::{quote_identifier, quote_literal, seconds, version, ClickHouseSink, SCHEMA_VERSION, SINK_NAME};
use crate::engine::Seq;
use crate::replicate::rows::{
    AccountRow, AssetRow, BalanceRow, DepositRow, LedgerRow, OrderRow, SymbolRow, TradeRow, TransferRow, WithdrawalRow,
};
use crate::replicate::SinkError;

impl ClickHouseSink {
    /// Creates the database and tables if missing; refuses a newer or different schema.
    pub(super) async fn prepare_schema(&self) -> Result<(), SinkError> {
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
            let now = (crate::replicate::now_ns() / 1_000_000_000) as u32;
            self.insert::<_, SchemaVersionRow>(&[(SCHEMA_VERSION, now)]).await?;
        }
        Ok(())
    }

    /// The mirror's schema version; newer than this binary's is fatal.
    pub(super) async fn check_version(&self) -> Result<u32, SinkError> {
        let found: u32 = self.fetch_one("SELECT max(version) FROM schema_version").await?;
        if found > SCHEMA_VERSION {
            return Err(SinkError::fatal(format!(
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
                return Err(SinkError::fatal(format!(
                    "ClickHouse table {}.{} does not have the columns this binary writes: found {:?}, expected {:?}",
                    self.config.database, table.name, actual, expected
                )));
            }
        }
        Ok(())
    }
}

pub(crate) struct Table {
    pub name: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
    pub engine: &'static str,
    pub partition_by: Option<&'static str>,
    pub order_by: &'static str,
}

impl Table {
    pub fn create_sql(&self) -> String {
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
pub(crate) const FACT: &str = "ReplacingMergeTree";
const STATE: &str = "ReplacingMergeTree(version)";

mirror_table! {
    #[derive(Clone, Copy)]
    SCHEMA_VERSION_TABLE = "schema_version", engine: FACT, partition_by: None, order_by: "version";
    struct SchemaVersionRow from |r: &(u32, u32)| {
        version: u32 = "UInt32" => r.0,
        applied_time: u32 = TIME => r.1,
    }
}

mirror_table! {
    /// The checkpoint row of a batch: its last seq and that record's stamp.
    CHECKPOINT = "replicator_checkpoint", engine: "ReplacingMergeTree(last_seq)", partition_by: None, order_by: "sink";
    struct CheckpointCh from |r: &(Seq, u64)| {
        sink: String = "String" => SINK_NAME.to_string(),
        last_seq: u64 = "UInt64" => r.0,
        time: u32 = TIME => seconds(r.1),
        ts_ns: u64 = "UInt64" => r.1,
    }
}

mirror_table! {
    #[derive(Row, Deserialize)]
    ASSETS = "assets", engine: STATE, partition_by: None, order_by: "asset";
    struct AssetCh from |r: &AssetRow| state_last r.origin; {
        asset: u32 = "UInt32" => r.asset.0,
        scale: u8 = "UInt8" => r.scale,
    }
}

mirror_table! {
    #[derive(Row, Deserialize)]
    SYMBOLS = "symbols", engine: STATE, partition_by: None, order_by: "symbol";
    struct SymbolCh from |r: &SymbolRow| state_last r.origin; {
        symbol: u32 = "UInt32" => r.symbol.0,
        base: u32 = "UInt32" => r.base.0,
        quote: u32 = "UInt32" => r.quote.0,
        tick_size: i128 = MONEY => r.tick_size.to_mirror_units(),
        lot_size: i128 = MONEY => r.lot_size.to_mirror_units(),
        min_qty: i128 = MONEY => r.min_qty.to_mirror_units(),
        min_notional: i128 = MONEY => r.min_notional.to_mirror_units(),
        max_order_qty: i128 = MONEY => r.max_order_qty.to_mirror_units(),
        maker_fee_ppm: u32 = "UInt32" => r.maker_fee_ppm,
        taker_fee_ppm: u32 = "UInt32" => r.taker_fee_ppm,
        price_band_bps: u32 = "UInt32" => r.price_band_bps,
        status: i8 = SYMBOL_STATUS => r.status.as_u8() as i8,
    }
}

/// An account row with the creation stamp the mirror already holds for it (an account row
/// written for a status change keeps its creation time).
pub(crate) struct AccountAt<'a> {
    pub row: &'a AccountRow,
    pub created_seq: Seq,
    pub created_ts_ns: u64,
}

mirror_table! {
    #[derive(Row, Deserialize)]
    ACCOUNTS = "accounts", engine: STATE, partition_by: None, order_by: "account";
    struct AccountCh from |a: &AccountAt<'_>| state_last a.row.updated; {
        account: u64 = "UInt64" => a.row.account.0,
        parent: u64 = "UInt64" => a.row.info.parent.0,
        owner: u64 = "UInt64" => a.row.info.owner,
        path: String = "String" => a.row.info.path.clone(),
        status: i8 = ACCOUNT_STATUS => a.row.info.status.as_u8() as i8,
        created_seq: u64 = "UInt64" => a.created_seq,
        created_time: u32 = TIME => seconds(a.created_ts_ns),
        created_ts_ns: u64 = "UInt64" => a.created_ts_ns,
    }
}

mirror_table! {
    BALANCES = "balances", engine: STATE, partition_by: None, order_by: "(account, asset)";
    struct BalanceCh from |r: &BalanceRow| state_last r.origin; {
        account: u64 = "UInt64" => r.account.0,
        asset: u32 = "UInt32" => r.asset.0,
        available: i128 = MONEY => r.available.to_mirror_units(),
        held: i128 = MONEY => r.held.to_mirror_units(),
    }
}

mirror_table! {
    WITHDRAWALS = "withdrawals", engine: STATE, partition_by: None, order_by: "withdrawal_id";
    struct WithdrawalCh from |r: &WithdrawalRow| state_last r.origin; {
        withdrawal_id: u64 = "UInt64" => r.withdrawal_id,
        account: u64 = "UInt64" => r.account.0,
        asset: u32 = "UInt32" => r.asset.0,
        amount: i128 = MONEY => r.amount.to_mirror_units(),
        client_ref: u64 = "UInt64" => r.client_ref,
        status: i8 = WITHDRAWAL_STATUS => r.status.as_u8() as i8,
    }
}

mirror_table! {
    LEDGER = "ledger_entries", engine: FACT, partition_by: MONTHLY, order_by: "(seq, idx)";
    struct LedgerCh from |r: &LedgerRow| event_first r.origin; {
        account: u64 = "UInt64" => r.account.0,
        asset: u32 = "UInt32" => r.asset.0,
        kind: i8 = LEDGER_KIND => r.kind.as_u8() as i8,
        available_delta: i128 = MONEY => r.available_delta.to_mirror_units(),
        held_delta: i128 = MONEY => r.held_delta.to_mirror_units(),
        available_after: i128 = MONEY => r.available_after.to_mirror_units(),
        held_after: i128 = MONEY => r.held_after.to_mirror_units(),
        ref_kind: i8 = REF_KIND => r.ref_kind.as_u8() as i8,
        ref_id: u64 = "UInt64" => r.ref_id,
    }
}

mirror_table! {
    ORDER_EVENTS = "order_events", engine: FACT, partition_by: MONTHLY, order_by: "(seq, idx)";
    struct OrderEventCh from |r: &OrderRow| event_first r.origin; {
        order_id: u64 = "UInt64" => r.order_id.0,
        account: u64 = "UInt64" => r.account.0,
        symbol: u32 = "UInt32" => r.symbol.0,
        client_order_id: u64 = "UInt64" => r.client_order_id,
        exec: i8 = EXEC_KIND => r.exec.as_u8() as i8,
        status: i8 = ORDER_STATUS => r.status.as_u8() as i8,
        side: i8 = SIDE => r.side.as_u8() as i8,
        order_type: i8 = ORDER_TYPE => r.order_type.as_u8() as i8,
        tif: i8 = TIF => r.tif.as_u8() as i8,
        price: i128 = MONEY => r.price.to_mirror_units(),
        qty: i128 = MONEY => r.qty.to_mirror_units(),
        filled_qty: i128 = MONEY => r.filled_qty.to_mirror_units(),
        remaining_qty: i128 = MONEY => r.remaining_qty.to_mirror_units(),
        filled_quote: i128 = MONEY => r.filled_quote.to_mirror_units(),
        fees_paid: i128 = MONEY => r.fees_paid.to_mirror_units(),
    }
}

mirror_table! {
    TRADES = "trades", engine: FACT, partition_by: MONTHLY, order_by: "(symbol, trade_id)";
    struct TradeCh from |r: &TradeRow| {
        trade_id: u64 = "UInt64" => r.trade_id.0,
        symbol: u32 = "UInt32" => r.symbol.0,
        seq: u64 = "UInt64" => r.origin.seq,
        idx: u32 = "UInt32" => r.origin.idx,
        time: u32 = TIME => seconds(r.origin.ts_ns),
        ts_ns: u64 = "UInt64" => r.origin.ts_ns,
        price: i128 = MONEY => r.price.to_mirror_units(),
        qty: i128 = MONEY => r.qty.to_mirror_units(),
        quote_qty: i128 = MONEY => r.quote_qty.to_mirror_units(),
        maker_order: u64 = "UInt64" => r.maker_order.0,
        taker_order: u64 = "UInt64" => r.taker_order.0,
        maker_account: u64 = "UInt64" => r.maker_account.0,
        taker_account: u64 = "UInt64" => r.taker_account.0,
        maker_side: i8 = SIDE => r.maker_side.as_u8() as i8,
        maker_fee: i128 = MONEY => r.maker_fee.to_mirror_units(),
        taker_fee: i128 = MONEY => r.taker_fee.to_mirror_units(),
    }
}

mirror_table! {
    DEPOSITS = "deposits", engine: FACT, partition_by: MONTHLY, order_by: "(seq, idx)";
    struct DepositCh from |r: &DepositRow| event_first r.origin; {
        account: u64 = "UInt64" => r.account.0,
        asset: u32 = "UInt32" => r.asset.0,
        amount: i128 = MONEY => r.amount.to_mirror_units(),
        external_ref: u64 = "UInt64" => r.external_ref,
    }
}

mirror_table! {
    TRANSFERS = "transfers", engine: FACT, partition_by: MONTHLY, order_by: "(seq, idx)";
    struct TransferCh from |r: &TransferRow| event_first r.origin; {
        from_account: u64 = "UInt64" => r.from.0,
        to_account: u64 = "UInt64" => r.to.0,
        asset: u32 = "UInt32" => r.asset.0,
        amount: i128 = MONEY => r.amount.to_mirror_units(),
        client_ref: u64 = "UInt64" => r.client_ref,
    }
}

/// Every table but `schema_version`, in the order they are created.
pub(crate) const TABLES: &[Table] =
    &[CHECKPOINT, ASSETS, SYMBOLS, ACCOUNTS, BALANCES, WITHDRAWALS, LEDGER, ORDER_EVENTS, TRADES, DEPOSITS, TRANSFERS];

/// Names of the tables the sink writes (all `ReplacingMergeTree`), for tools and tests.
pub fn table_names() -> impl Iterator<Item = &'static str> {
    std::iter::once(SCHEMA_VERSION_TABLE.name).chain(TABLES.iter().map(|t| t.name))
}

/// The `CREATE TABLE IF NOT EXISTS` statements of the schema (documentation, tools).
pub fn create_statements() -> Vec<String> {
    std::iter::once(&SCHEMA_VERSION_TABLE).chain(TABLES).map(Table::create_sql).collect()
}

#[derive(Row, Deserialize)]
struct ColumnRow {
    table: String,
    name: String,
    r#type: String,
}

/// `system.columns` spells types with spaces after commas and around `=`; compare without them.
fn normalize_type(ty: &str) -> String {
    ty.chars().filter(|c| !c.is_whitespace()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The DDL of schema version 1, byte for byte as the mirrors in the field were created with
    /// (the text the separate table list produced before each table was declared once).
    #[test]
    fn ddl_is_schema_version_1() {
        let mut text = String::new();
        for sql in create_statements() {
            text.push_str(&sql);
            text.push_str("\n;\n");
        }
        crate::replicate::assert_same_text(&text, include_str!("../testdata/clickhouse_schema_v1.txt"));
    }

    /// Every row type names exactly its table's columns.
    #[test]
    fn row_types_match_their_tables() {
        fn check<T: NativeRow>(table: &Table) {
            let row: BTreeSet<&str> = T::TABLE.columns.iter().map(|(name, _)| *name).collect();
            let columns: BTreeSet<&str> = table.columns.iter().map(|(name, _)| *name).collect();
            assert_eq!(row, columns, "{}", table.name);
            assert_eq!(T::TABLE.columns.len(), T::SIZES.len());
        }
        check::<SchemaVersionRow>(&SCHEMA_VERSION_TABLE);
        check::<CheckpointCh>(&CHECKPOINT);
        check::<AssetCh>(&ASSETS);
        check::<SymbolCh>(&SYMBOLS);
        check::<AccountCh>(&ACCOUNTS);
        check::<BalanceCh>(&BALANCES);
        check::<WithdrawalCh>(&WITHDRAWALS);
        check::<LedgerCh>(&LEDGER);
        check::<OrderEventCh>(&ORDER_EVENTS);
        check::<TradeCh>(&TRADES);
        check::<DepositCh>(&DEPOSITS);
        check::<TransferCh>(&TRANSFERS);
        assert_eq!(TABLES.len(), 11);
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
