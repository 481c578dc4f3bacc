//! Reading the TiDB mirror back: the checkpoint and catalog at `open`, and the whole state at
//! its checkpoint for `seqd reconcile` ([`Mirror::read_state`]), in one transaction each;
//! cells parsed exactly (decimals to minor units without floats), anything else refused.

use std::time::Duration;

use mysql_async::{Conn, Row, Value};

use super::schema::migrate;
use super::{abandon, exec, query, TidbSink, SCHEMA_VERSION, SINK_NAME};
use crate::engine::{AccountId, AccountStatus, AssetId, OrderId, OrderStatus, Seq, Side, SymbolId};
use crate::replicate::reconcile::{Mirror, MirrorOrder, MirrorState};
use crate::replicate::rows::{AccountInfo, MIRROR_SCALE};
use crate::replicate::{Catalog, Resume, SinkError};

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

pub(super) async fn open_on(conn: &mut Conn, timeout: Duration) -> Result<Resume, SinkError> {
    migrate(conn, timeout).await?;
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
        return Err(SinkError::fatal(format!(
            "tidb: the mirror holds rows of seq {newest_row}, past its checkpoint {last_seq}: it was written \
             outside a replicator transaction or its checkpoint was moved back; rebuild it"
        )));
    }
    let catalog = catalog_from_rows(&assets, &symbols, &accounts)?;
    Ok(Resume { last_seq, catalog })
}

pub(super) async fn read_state_on(conn: &mut Conn, timeout: Duration) -> Result<MirrorState, SinkError> {
    let version = schema_version(conn, timeout).await?;
    match version {
        None => return Err(SinkError::Fatal("tidb: the database holds no seqd mirror (no schema_version)".into())),
        Some(v) if v > SCHEMA_VERSION => {
            return Err(SinkError::fatal(format!(
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
        let s = scale(AssetId(asset))?;
        state.balances.insert((AccountId(account), AssetId(asset)), (cell_minor(row, 2, s)?, cell_minor(row, 3, s)?));
    }
    for row in &sums {
        let (account, asset) = (cell_u64(row, 0)?, cell_u32(row, 1)?);
        let s = scale(AssetId(asset))?;
        state
            .ledger_sums
            .insert((AccountId(account), AssetId(asset)), (cell_minor(row, 2, s)?, cell_minor(row, 3, s)?));
    }
    for row in &orders {
        let symbol: SymbolId = SymbolId(cell_u32(row, 2)?);
        let (base, quote) =
            *catalog.symbols.get(&symbol).ok_or_else(|| bad(format!("an order refers to unknown symbol {symbol}")))?;
        let (base_scale, quote_scale) = (scale(base)?, scale(quote)?);
        let side = Side::from_u8(cell_u8(row, 3)?).ok_or_else(|| bad("unknown side code".into()))?;
        let status = OrderStatus::from_u8(cell_u8(row, 4)?).ok_or_else(|| bad("unknown order status code".into()))?;
        let order = MirrorOrder {
            account: AccountId(cell_u64(row, 1)?),
            symbol,
            side,
            status,
            price: cell_minor(row, 5, quote_scale)?,
            remaining_qty: cell_minor(row, 6, base_scale)?,
            filled_qty: cell_minor(row, 7, base_scale)?,
        };
        state.open_orders.insert(OrderId(cell_u64(row, 0)?), order);
    }
    Ok(state)
}

pub(super) async fn schema_version(conn: &mut Conn, timeout: Duration) -> Result<Option<u32>, SinkError> {
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

fn bad(message: String) -> SinkError {
    SinkError::fatal(format!("tidb: mirror content is not what seqd writes: {message}"))
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
        catalog.asset_scales.insert(AssetId(asset), scale);
    }
    for row in symbols {
        let (symbol, base, quote) = (cell_u32(row, 0)?, cell_u32(row, 1)?, cell_u32(row, 2)?);
        if !catalog.asset_scales.contains_key(&AssetId(base)) || !catalog.asset_scales.contains_key(&AssetId(quote)) {
            return Err(bad(format!("symbol {symbol} trades assets {base}/{quote}, not both in the assets table")));
        }
        catalog.symbols.insert(SymbolId(symbol), (AssetId(base), AssetId(quote)));
    }
    for row in accounts {
        let account = cell_u64(row, 0)?;
        let status = AccountStatus::from_u8(cell_u8(row, 4)?)
            .ok_or_else(|| bad(format!("account {account} has an unknown status code")))?;
        let info = AccountInfo {
            parent: AccountId(cell_u64(row, 1)?),
            owner: cell_u64(row, 2)?,
            path: cell_text(row, 3)?,
            status,
        };
        catalog.accounts.insert(AccountId(account), info);
    }
    for (&account, info) in &catalog.accounts {
        if info.parent != AccountId::NONE && !catalog.accounts.contains_key(&info.parent) {
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
