//! A batch's rows as statements: multi-row `INSERT ... ON DUPLICATE KEY UPDATE` of each table
//! (prepared with parameters, or SQL text built here from numbers only), and the conditional
//! checkpoint move that opens every write transaction. The values of a row come from its
//! table's declaration in [`super::schema`].

use std::fmt::Write as _;

use mysql_async::Value;

use super::schema::{
    Table, TableSql, ACCOUNTS, ASSETS, BALANCES, DEPOSITS, LEDGER, ORDERS, SYMBOLS, TABLE_SQL, TRADES, TRANSFERS,
    WITHDRAWALS,
};
use super::SINK_NAME;
use crate::engine::Seq;
use crate::replicate::rows::{utc_datetime_micros, Amount};
use crate::replicate::Batch;

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
    (TABLE_SQL[table].name, TABLE_SQL[table].placeholders(rows))
}

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
    out.table(&ASSETS, &batch.assets);
    out.table(&SYMBOLS, &batch.symbols);
    out.table(&ACCOUNTS, &batch.accounts);
    out.table(&BALANCES, &batch.balances);
    out.table(&LEDGER, &batch.ledger);
    out.table(&ORDERS, &batch.orders);
    out.table(&TRADES, &batch.trades);
    out.table(&DEPOSITS, &batch.deposits);
    out.table(&WITHDRAWALS, &batch.withdrawals);
    out.table(&TRANSFERS, &batch.transfers);
    out.list
}

struct Plan {
    list: Vec<RowStatement>,
    chunk: usize,
    prepared: bool,
    times: TimeCache,
}

impl Plan {
    fn table<R>(&mut self, table: &Table<R>, rows: &[R]) {
        let sql = &TABLE_SQL[table.slot];
        let max = sql.max_rows(self.chunk);
        let mut rest = rows;
        if self.prepared {
            let mut size = max;
            while size >= MIN_PREPARED_ROWS {
                while rest.len() >= size {
                    let (chunk, tail) = rest.split_at(size);
                    self.params(table, chunk);
                    rest = tail;
                }
                // The largest power of two below the current size.
                size = if size.is_power_of_two() { size / 2 } else { size.next_power_of_two() / 2 };
            }
        }
        for chunk in rest.chunks(max) {
            self.text(table, sql, chunk);
        }
    }

    fn text<R>(&mut self, table: &Table<R>, sql: &TableSql, rows: &[R]) {
        let mut text = String::with_capacity(sql.prefix.len() + sql.suffix.len() + rows.len() * 240);
        text.push_str(&sql.prefix);
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push('(');
            let mut values = Values { out: Out::Text { sql: &mut text, first: true }, times: &mut self.times };
            table.put(&mut values, row);
            text.push(')');
        }
        text.push_str(&sql.suffix);
        self.list.push(RowStatement::Text(text));
    }

    fn params<R>(&mut self, table: &Table<R>, rows: &[R]) {
        let mut params = Vec::with_capacity(rows.len() * table.columns.len());
        for row in rows {
            table.put(&mut Values { out: Out::Params(&mut params), times: &mut self.times }, row);
        }
        debug_assert_eq!(params.len(), rows.len() * table.columns.len());
        self.list.push(RowStatement::Prepared { table: table.slot, rows: rows.len(), params });
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
pub(super) struct Values<'a> {
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

    pub(super) fn int(&mut self, value: impl Into<u64>) {
        let value = value.into();
        match self.text() {
            Some(sql) => {
                let _ = write!(sql, "{value}");
            }
            None => self.push(Value::UInt(value)),
        }
    }

    pub(super) fn amount(&mut self, amount: Amount) {
        match self.text() {
            Some(sql) => push_decimal(sql, amount),
            None => {
                let mut text = String::with_capacity(24);
                push_decimal(&mut text, amount);
                self.push(Value::Bytes(text.into_bytes()));
            }
        }
    }

    pub(super) fn time(&mut self, ts_ns: u64) {
        let stamp = self.times.get(ts_ns).to_string();
        match self.text() {
            Some(sql) => {
                sql.push('\'');
                sql.push_str(&stamp);
                sql.push('\'');
            }
            None => self.push(Value::Bytes(stamp.into_bytes())),
        }
    }

    /// Text made by this module only (an account path of ids and slashes), never user input.
    pub(super) fn path(&mut self, path: &str) {
        debug_assert!(path.bytes().all(|b| b.is_ascii_digit() || b == b'/'));
        match self.text() {
            Some(sql) => {
                sql.push('\'');
                sql.push_str(path);
                sql.push('\'');
            }
            None => self.push(Value::Bytes(path.as_bytes().to_vec())),
        }
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

#[cfg(test)]
mod tests {
    use super::super::read_back::parse_minor;
    use super::*;
    use crate::engine::{AccountId, AssetId, Command, Engine};
    use crate::replicate::rows::LedgerRow;
    use crate::replicate::{BatchBuilder, Catalog};

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

    #[test]
    fn statements_are_chunked_and_hold_only_numbers_and_stamps() {
        let commands: Vec<Command> = crate::testkit::scenario::scripted_session();
        let mut engine = Engine::new();
        let mut builder = BatchBuilder::new(Catalog::default());
        let mut events = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            events.clear();
            let seq = i as u64 + 1;
            engine.apply(seq, crate::testkit::scenario::timestamp_ns(i), command, &mut events);
            builder.add_record(seq, crate::testkit::scenario::timestamp_ns(i), &events).unwrap();
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
            account: AccountId(i),
            asset: AssetId(2),
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
}
