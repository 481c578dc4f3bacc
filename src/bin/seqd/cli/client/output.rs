//! What `seqd client` prints: aligned tables for people, JSON (`--json`) for scripts, from one
//! description of each answer so the two never say different things.

use super::refdata::Catalog;
use seqd::engine::{AccountId, AssetId, Event, OrderId, OrderReport, Side, SymbolId, Trade, TradeId};
use serde_json::{json, Map, Value};

/// One value of a table: numbers stay numbers in JSON; decimals are strings (exact).
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Int(i128),
    Text(String),
}

impl Cell {
    fn human(&self) -> String {
        match self {
            Cell::Int(v) => v.to_string(),
            Cell::Text(t) => t.clone(),
        }
    }
    fn json(&self) -> Value {
        match self {
            Cell::Int(v) => i64::try_from(*v).map_or_else(|_| json!(v.to_string()), |v| json!(v)),
            Cell::Text(t) => json!(t),
        }
    }
}

/// Integers and ids, as a table cell.
pub trait IntCell {
    fn to_i128(self) -> i128;
}

macro_rules! int_cell {
    ($($t:ty),*) => { $(impl IntCell for $t { fn to_i128(self) -> i128 { self.into() } })* };
}
int_cell!(u8, u16, u32, u64, i32, i64);

macro_rules! id_cell {
    ($($t:ty),*) => { $(impl IntCell for $t { fn to_i128(self) -> i128 { self.0.into() } })* };
}
id_cell!(AccountId, AssetId, SymbolId, OrderId, TradeId);

pub fn int(v: impl IntCell) -> Cell {
    Cell::Int(v.to_i128())
}

pub fn text(v: impl Into<String>) -> Cell {
    Cell::Text(v.into())
}

/// Rows under named columns. Column names are snake_case: the JSON keys, upper-cased with
/// spaces as headers.
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: &[&'static str]) -> Table {
        Table { columns: columns.to_vec(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    /// Aligned columns: numbers right-aligned, text left-aligned, two spaces apart.
    pub fn render(&self) -> String {
        let headers: Vec<String> = self.columns.iter().map(|c| c.replace('_', " ").to_uppercase()).collect();
        let cells: Vec<Vec<String>> = self.rows.iter().map(|r| r.iter().map(Cell::human).collect()).collect();
        let widths: Vec<usize> = (0..headers.len())
            .map(|i| cells.iter().map(|r| r[i].chars().count()).chain([headers[i].len()]).max().unwrap_or(0))
            .collect();
        let right: Vec<bool> =
            (0..headers.len()).map(|i| !self.rows.is_empty() && self.rows.iter().all(|r| is_numeric(&r[i]))).collect();
        let line = |values: &[String]| {
            let padded: Vec<String> = values
                .iter()
                .enumerate()
                .map(
                    |(i, v)| {
                        if right[i] {
                            format!("{v:>w$}", w = widths[i])
                        } else {
                            format!("{v:<w$}", w = widths[i])
                        }
                    },
                )
                .collect();
            padded.join("  ").trim_end().to_string()
        };
        let mut out = line(&headers);
        for row in &cells {
            out.push('\n');
            out.push_str(&line(row));
        }
        out
    }

    pub fn json_rows(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|row| {
                    let object: Map<String, Value> =
                        self.columns.iter().zip(row).map(|(c, v)| (c.to_string(), v.json())).collect();
                    Value::Object(object)
                })
                .collect(),
        )
    }
}

fn is_numeric(cell: &Cell) -> bool {
    match cell {
        Cell::Int(_) => true,
        Cell::Text(t) => !t.is_empty() && t.parse::<rust_decimal::Decimal>().is_ok(),
    }
}

/// An event as (name, fields): a row of the events table and an object in JSON.
pub fn describe(event: &Event, catalog: &Catalog) -> (&'static str, Vec<(&'static str, Cell)>) {
    let amount = |minor: i64, asset| text(catalog.show(minor, catalog.scale(asset)));
    match *event {
        Event::Rejected { reason } => {
            ("rejected", vec![("code", int(reason.code())), ("reason", text(format!("{reason:?}")))])
        }
        Event::AssetCreated { asset, scale } => ("asset_created", vec![("asset", int(asset)), ("scale", int(scale))]),
        Event::AssetCode { asset, code } => {
            ("asset_code", vec![("asset", int(asset)), ("code", text(code.as_string()))])
        }
        Event::SymbolUpdated { spec, status } => (
            "symbol_updated",
            vec![
                ("symbol", int(spec.symbol)),
                ("base", text(catalog.asset_name(spec.base))),
                ("quote", text(catalog.asset_name(spec.quote))),
                ("status", text(format!("{status:?}").to_lowercase())),
            ],
        ),
        Event::SymbolCode { symbol, code } => {
            ("symbol_code", vec![("symbol", int(symbol)), ("code", text(code.as_string()))])
        }
        Event::AccountCreated { account, parent, owner } => {
            ("account_created", vec![("account", int(account)), ("parent", int(parent)), ("owner", int(owner))])
        }
        Event::AccountStatusChanged { account, status } => {
            ("account_status", vec![("account", int(account)), ("status", text(format!("{status:?}").to_lowercase()))])
        }
        Event::Ledger(e) => (
            "ledger",
            vec![
                ("account", int(e.account)),
                ("asset", text(catalog.asset_name(e.asset))),
                ("kind", text(format!("{:?}", e.kind).to_lowercase())),
                ("available_delta", amount(e.available_delta, e.asset)),
                ("held_delta", amount(e.held_delta, e.asset)),
                ("available", amount(e.available_after, e.asset)),
                ("held", amount(e.held_after, e.asset)),
            ],
        ),
        Event::DepositCredited { account, asset, amount: a, external_ref } => (
            "deposit",
            vec![
                ("account", int(account)),
                ("asset", text(catalog.asset_name(asset))),
                ("amount", amount(a, asset)),
                ("external_ref", int(external_ref)),
            ],
        ),
        Event::WithdrawalUpdated { withdrawal_id, account, asset, amount: a, client_ref, status } => (
            "withdrawal",
            vec![
                ("withdrawal_id", int(withdrawal_id)),
                ("account", int(account)),
                ("asset", text(catalog.asset_name(asset))),
                ("amount", amount(a, asset)),
                ("client_ref", int(client_ref)),
                ("status", text(format!("{status:?}").to_lowercase())),
            ],
        ),
        Event::Transferred { from, to, asset, amount: a, client_ref } => (
            "transfer",
            vec![
                ("from", int(from)),
                ("to", int(to)),
                ("asset", text(catalog.asset_name(asset))),
                ("amount", amount(a, asset)),
                ("client_ref", int(client_ref)),
            ],
        ),
        Event::Order(report) => ("order", order_fields(&report, catalog)),
        Event::Trade(trade) => ("trade", trade_fields(&trade, catalog)),
    }
}

pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

/// An order report's fields, prices and quantities at the symbol's scales.
pub fn order_fields(o: &OrderReport, catalog: &Catalog) -> Vec<(&'static str, Cell)> {
    let (base, quote) = catalog.symbol_scales(o.symbol);
    let kebab = |debug: String| {
        debug.chars().fold(String::new(), |mut s, c| {
            if c.is_uppercase() && !s.is_empty() {
                s.push('-');
            }
            s.push(c.to_ascii_lowercase());
            s
        })
    };
    vec![
        ("order_id", int(o.order_id)),
        ("account", int(o.account)),
        ("symbol", text(catalog.symbol_name(o.symbol))),
        ("client_order_id", int(o.client_order_id)),
        ("exec", text(kebab(format!("{:?}", o.exec)))),
        ("status", text(kebab(format!("{:?}", o.status)))),
        ("side", text(side_name(o.side))),
        ("type", text(kebab(format!("{:?}", o.order_type)))),
        ("tif", text(format!("{:?}", o.tif).to_lowercase())),
        ("price", text(catalog.show(o.price, quote))),
        ("stop_price", text(catalog.show(o.stop_price, quote))),
        ("qty", text(catalog.show(o.qty, base))),
        ("filled", text(catalog.show(o.filled_qty, base))),
        ("remaining", text(catalog.show(o.remaining_qty, base))),
        ("filled_quote", text(catalog.show(o.filled_quote, quote))),
        ("fees", text(catalog.show(o.fees_paid, quote))),
    ]
}

fn trade_fields(t: &Trade, catalog: &Catalog) -> Vec<(&'static str, Cell)> {
    let (base, quote) = catalog.symbol_scales(t.symbol);
    vec![
        ("trade_id", int(t.trade_id)),
        ("symbol", text(catalog.symbol_name(t.symbol))),
        ("price", text(catalog.show(t.price, quote))),
        ("qty", text(catalog.show(t.qty, base))),
        ("quote_qty", text(catalog.show(t.quote_qty, quote))),
        ("maker_side", text(side_name(t.maker_side))),
        ("maker_order", int(t.maker_order)),
        ("taker_order", int(t.taker_order)),
        ("maker_account", int(t.maker_account)),
        ("taker_account", int(t.taker_account)),
        ("maker_fee", text(catalog.show(t.maker_fee, quote))),
        ("taker_fee", text(catalog.show(t.taker_fee, quote))),
    ]
}

/// Events as a two-column table (event, its fields as `name value` pairs) or JSON objects.
pub fn events_table(events: &[Event], catalog: &Catalog) -> (Table, Value) {
    let mut table = Table::new(&["event", "detail"]);
    let mut objects = Vec::new();
    for event in events {
        let (name, fields) = describe(event, catalog);
        let detail: Vec<String> =
            fields.iter().map(|(k, v)| format!("{} {}", k.replace('_', " "), v.human())).collect();
        table.push(vec![text(name), text(detail.join(", "))]);
        let mut object = Map::new();
        object.insert("event".into(), json!(name));
        object.extend(fields.into_iter().map(|(k, v)| (k.to_string(), v.json())));
        objects.push(Value::Object(object));
    }
    (table, Value::Array(objects))
}

/// A table of one kind of record (orders) from their field lists.
pub fn records_table(records: Vec<Vec<(&'static str, Cell)>>, empty_columns: &[&'static str]) -> Table {
    let columns: Vec<&'static str> =
        records.first().map_or(empty_columns.to_vec(), |r| r.iter().map(|(k, _)| *k).collect());
    let mut table = Table::new(&columns);
    for record in records {
        table.push(record.into_iter().map(|(_, v)| v).collect());
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_numbers_right_and_text_left_and_json_keeps_types() {
        let mut table = Table::new(&["asset", "available", "code"]);
        table.push(vec![int(1), text("1.5"), text("BTC")]);
        table.push(vec![int(20), text("30000.25"), text("USDT")]);
        assert_eq!(table.render(), "ASSET  AVAILABLE  CODE\n    1        1.5  BTC\n   20   30000.25  USDT");
        assert_eq!(
            table.json_rows(),
            json!([{"asset": 1, "available": "1.5", "code": "BTC"}, {"asset": 20, "available": "30000.25", "code": "USDT"}])
        );
    }
}
