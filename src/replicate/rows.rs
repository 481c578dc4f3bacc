//! Events to mirror rows: the part of replication that knows the domain and nothing about any
//! database. Pure and deterministic: the same event-log records give the same rows.
//!
//! Amounts stay integer minor units with their asset's scale ([`Amount`]); each sink turns them
//! into its column type (`DECIMAL(38,18)` for TiDB, a raw `Decimal(38,18)` for ClickHouse).
//! The scale of every asset and the base/quote of every symbol come from the [`Catalog`], which
//! the sink reads back from its own tables at start and which the builder extends as reference
//! data events go by.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::engine::{
    AccountId, AccountStatus, AssetId, Event, ExecKind, LedgerEntry, LedgerKind, OrderId, OrderReport, OrderStatus,
    OrderType, RefKind, Seq, Side, SymbolId, SymbolStatus, TimeInForce, Trade, TradeId, WithdrawalStatus,
};

/// Scale of the money columns in both mirrors (`DECIMAL(38,18)` in TiDB, `Decimal(38,18)` in
/// ClickHouse: 38 digits so that an i64 amount of a scale-0 asset fits).
pub const MIRROR_SCALE: u8 = 18;

/// An exact amount: `units` minor units of an asset with `scale` decimal places.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Amount {
    pub units: i64,
    pub scale: u8,
}

impl Amount {
    pub fn new(units: i64, scale: u8) -> Amount {
        Amount { units, scale }
    }

    /// Exact decimal text, e.g. `12.345000` for 12345000 units at scale 6.
    pub fn to_decimal_string(self) -> String {
        self.to_decimal().to_string()
    }

    pub fn to_decimal(self) -> Decimal {
        crate::wire::money::from_minor(self.units, self.scale)
    }

    /// The value times 10^`MIRROR_SCALE`: the raw integer of a `Decimal(38,18)` column.
    /// Exact: an i64 times 10^18 fits an i128 many times over.
    pub fn to_mirror_units(self) -> i128 {
        debug_assert!(self.scale <= MIRROR_SCALE);
        self.units as i128 * 10i128.pow(u32::from(MIRROR_SCALE - self.scale))
    }

    /// Inverse of [`Amount::to_mirror_units`]; `None` when the value has more decimals than
    /// `scale` or does not fit an i64 (a mirror row that no engine could have written).
    pub fn from_mirror_units(raw: i128, scale: u8) -> Option<Amount> {
        let factor = 10i128.pow(u32::from(MIRROR_SCALE.checked_sub(scale)?));
        if raw % factor != 0 {
            return None;
        }
        Some(Amount { units: i64::try_from(raw / factor).ok()?, scale })
    }
}

/// Where a row came from: the event log record's sequence and stamp, and the event's index in
/// it. (seq, idx) is an event's identity and the mirrors' idempotency key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Origin {
    pub seq: Seq,
    pub idx: u32,
    /// Wall-clock time stamped at sequencing, nanoseconds since the Unix epoch (UTC).
    pub ts_ns: u64,
}

/// What a mirror needs to know about an account to write its full row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountInfo {
    pub parent: AccountId,
    pub owner: u64,
    /// Materialized path of account ids from the root, e.g. `/1/12/120`.
    pub path: String,
    pub status: AccountStatus,
}

/// Reference data as of a mirror's checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    pub asset_scales: BTreeMap<AssetId, u8>,
    /// Symbol -> (base, quote).
    pub symbols: BTreeMap<SymbolId, (AssetId, AssetId)>,
    pub accounts: BTreeMap<AccountId, AccountInfo>,
}

impl Catalog {
    fn scale(&self, asset: AssetId) -> Result<u8, RowError> {
        self.asset_scales.get(&asset).copied().ok_or(RowError::UnknownAsset(asset))
    }

    fn pair(&self, symbol: SymbolId) -> Result<(u8, u8), RowError> {
        let (base, quote) = *self.symbols.get(&symbol).ok_or(RowError::UnknownSymbol(symbol))?;
        Ok((self.scale(base)?, self.scale(quote)?))
    }

    /// Path of a new account under `parent` (0 = a root).
    pub fn child_path(&self, parent: AccountId, account: AccountId) -> String {
        match self.accounts.get(&parent) {
            Some(info) if parent != AccountId::NONE => format!("{}/{}", info.path, account),
            _ => format!("/{account}"),
        }
    }
}

/// An event the catalog cannot place: the mirror misses reference data the engine had. It means
/// the mirror was damaged or belongs to another journal; replication stops rather than guess.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("event refers to asset {0}, which the mirror's catalog does not have")]
    UnknownAsset(AssetId),
    #[error("event refers to symbol {0}, which the mirror's catalog does not have")]
    UnknownSymbol(SymbolId),
    #[error("event refers to account {0}, which the mirror's catalog does not have")]
    UnknownAccount(AccountId),
    #[error("record {seq}: event {idx} could not be replicated: {reason}")]
    Record { seq: Seq, idx: u32, reason: Box<RowError> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetRow {
    pub asset: AssetId,
    pub scale: u8,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SymbolRow {
    pub symbol: SymbolId,
    pub base: AssetId,
    pub quote: AssetId,
    pub tick_size: Amount,
    pub lot_size: Amount,
    pub min_qty: Amount,
    pub min_notional: Amount,
    pub max_order_qty: Amount,
    pub maker_fee_ppm: u32,
    pub taker_fee_ppm: u32,
    pub price_band_bps: u32,
    pub status: SymbolStatus,
    pub origin: Origin,
}

/// The account as it is after this batch; `created` is when it was created if that happened in
/// this batch (an upsert must not overwrite the creation time of an older row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountRow {
    pub account: AccountId,
    pub info: AccountInfo,
    pub created: Origin,
    pub updated: Origin,
}

/// A balance as it is after this batch (the last ledger entry of the batch for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceRow {
    pub account: AccountId,
    pub asset: AssetId,
    pub available: Amount,
    pub held: Amount,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRow {
    pub origin: Origin,
    pub account: AccountId,
    pub asset: AssetId,
    pub kind: LedgerKind,
    pub available_delta: Amount,
    pub held_delta: Amount,
    pub available_after: Amount,
    pub held_after: Amount,
    pub ref_kind: RefKind,
    pub ref_id: u64,
}

/// One execution report, priced in the symbol's assets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRow {
    pub origin: Origin,
    pub order_id: OrderId,
    pub account: AccountId,
    pub symbol: SymbolId,
    pub client_order_id: u64,
    pub exec: ExecKind,
    pub status: OrderStatus,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    /// Limit price in quote units per whole base unit; zero for market orders.
    pub price: Amount,
    pub qty: Amount,
    pub filled_qty: Amount,
    pub remaining_qty: Amount,
    pub filled_quote: Amount,
    pub fees_paid: Amount,
}

/// An order as it is after this batch, with the stamp of its first report in this batch (its
/// creation time when the order was placed in this batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderLatest {
    pub report: OrderRow,
    pub first_seen: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TradeRow {
    pub origin: Origin,
    pub trade_id: TradeId,
    pub symbol: SymbolId,
    pub price: Amount,
    pub qty: Amount,
    pub quote_qty: Amount,
    pub maker_order: OrderId,
    pub taker_order: OrderId,
    pub maker_account: AccountId,
    pub taker_account: AccountId,
    pub maker_side: Side,
    pub maker_fee: Amount,
    pub taker_fee: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepositRow {
    pub origin: Origin,
    pub account: AccountId,
    pub asset: AssetId,
    pub amount: Amount,
    pub external_ref: u64,
}

/// A withdrawal as it is after this batch; `first_seen` as for orders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalRow {
    pub withdrawal_id: u64,
    pub account: AccountId,
    pub asset: AssetId,
    pub amount: Amount,
    pub client_ref: u64,
    pub status: WithdrawalStatus,
    pub origin: Origin,
    pub first_seen: Origin,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRow {
    pub origin: Origin,
    pub from: AccountId,
    pub to: AccountId,
    pub asset: AssetId,
    pub amount: Amount,
    pub client_ref: u64,
}

/// The rows of a run of whole event-log records `first_seq..=last_seq`. Append-only facts keep
/// every row (ledger, order events, trades, deposits, transfers); current-state tables keep one
/// row per key, the newest (accounts, balances, orders, withdrawals, symbols), so a sink writes
/// each key once per batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// First and last record of the batch; `last_seq` is the checkpoint after it.
    pub first_seq: Seq,
    pub last_seq: Seq,
    /// Stamp of every record in the batch, in order (for lag figures).
    pub record_ts_ns: Vec<u64>,
    pub assets: Vec<AssetRow>,
    pub symbols: Vec<SymbolRow>,
    pub accounts: Vec<AccountRow>,
    pub balances: Vec<BalanceRow>,
    pub ledger: Vec<LedgerRow>,
    pub order_events: Vec<OrderRow>,
    pub orders: Vec<OrderLatest>,
    pub trades: Vec<TradeRow>,
    pub deposits: Vec<DepositRow>,
    pub withdrawals: Vec<WithdrawalRow>,
    pub transfers: Vec<TransferRow>,
}

impl Batch {
    pub fn records(&self) -> usize {
        self.record_ts_ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.record_ts_ns.is_empty()
    }

    /// Rows of the append-only tables (the figure the throughput bars count).
    pub fn fact_rows(&self) -> usize {
        self.ledger.len() + self.order_events.len() + self.trades.len() + self.deposits.len() + self.transfers.len()
    }

    /// Every row a sink may write for this batch.
    pub fn total_rows(&self) -> usize {
        self.fact_rows()
            + self.assets.len()
            + self.symbols.len()
            + self.accounts.len()
            + self.balances.len()
            + self.orders.len()
            + self.withdrawals.len()
    }
}

/// Turns event-log records into a [`Batch`], keeping the catalog current.
pub struct BatchBuilder {
    catalog: Catalog,
    batch: Batch,
    /// Key -> index into the batch's current-state vectors.
    account_at: BTreeMap<AccountId, usize>,
    balance_at: BTreeMap<(AccountId, AssetId), usize>,
    order_at: BTreeMap<OrderId, usize>,
    withdrawal_at: BTreeMap<u64, usize>,
    symbol_at: BTreeMap<SymbolId, usize>,
}

impl BatchBuilder {
    pub fn new(catalog: Catalog) -> BatchBuilder {
        BatchBuilder {
            catalog,
            batch: Batch::default(),
            account_at: BTreeMap::new(),
            balance_at: BTreeMap::new(),
            order_at: BTreeMap::new(),
            withdrawal_at: BTreeMap::new(),
            symbol_at: BTreeMap::new(),
        }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// Adds one whole record's events. On error nothing of the record is kept in the catalog
    /// that later records could rely on wrongly; the caller stops replicating.
    pub fn add_record(&mut self, seq: Seq, ts_ns: u64, events: &[Event]) -> Result<(), RowError> {
        if self.batch.is_empty() {
            self.batch.first_seq = seq;
        }
        for (idx, event) in events.iter().enumerate() {
            let origin = Origin { seq, idx: idx as u32, ts_ns };
            self.add_event(origin, event).map_err(|reason| RowError::Record {
                seq,
                idx: idx as u32,
                reason: Box::new(reason),
            })?;
        }
        self.batch.last_seq = seq;
        self.batch.record_ts_ns.push(ts_ns);
        Ok(())
    }

    /// Hands over the batch built so far and starts an empty one.
    pub fn take(&mut self) -> Batch {
        self.account_at.clear();
        self.balance_at.clear();
        self.order_at.clear();
        self.withdrawal_at.clear();
        self.symbol_at.clear();
        std::mem::take(&mut self.batch)
    }

    fn add_event(&mut self, origin: Origin, event: &Event) -> Result<(), RowError> {
        match *event {
            Event::Rejected { .. } => {}
            Event::AssetCreated { asset, scale } => {
                self.catalog.asset_scales.insert(asset, scale);
                self.batch.assets.push(AssetRow { asset, scale, origin });
            }
            Event::SymbolUpdated { spec, status } => self.add_symbol(origin, &spec, status)?,
            Event::AccountCreated { account, parent, owner } => {
                let path = self.catalog.child_path(parent, account);
                let info = AccountInfo { parent, owner, path, status: AccountStatus::Active };
                self.catalog.accounts.insert(account, info);
                self.upsert_account(account, origin, true)?;
            }
            Event::AccountStatusChanged { account, status } => {
                let info = self.catalog.accounts.get_mut(&account).ok_or(RowError::UnknownAccount(account))?;
                info.status = status;
                self.upsert_account(account, origin, false)?;
            }
            Event::Ledger(entry) => self.add_ledger(origin, &entry)?,
            Event::DepositCredited { account, asset, amount, external_ref } => {
                let amount = Amount::new(amount, self.catalog.scale(asset)?);
                self.batch.deposits.push(DepositRow { origin, account, asset, amount, external_ref });
            }
            Event::WithdrawalUpdated { withdrawal_id, account, asset, amount, client_ref, status } => {
                let amount = Amount::new(amount, self.catalog.scale(asset)?);
                let row = WithdrawalRow {
                    withdrawal_id,
                    account,
                    asset,
                    amount,
                    client_ref,
                    status,
                    origin,
                    first_seen: origin,
                };
                upsert(&mut self.batch.withdrawals, &mut self.withdrawal_at, withdrawal_id, row, |old, new| {
                    new.first_seen = old.first_seen
                });
            }
            Event::Transferred { from, to, asset, amount, client_ref } => {
                let amount = Amount::new(amount, self.catalog.scale(asset)?);
                self.batch.transfers.push(TransferRow { origin, from, to, asset, amount, client_ref });
            }
            Event::Order(report) => self.add_order(origin, &report)?,
            Event::Trade(trade) => self.add_trade(origin, &trade)?,
        }
        Ok(())
    }

    fn add_symbol(
        &mut self,
        origin: Origin,
        spec: &crate::engine::SymbolSpec,
        status: SymbolStatus,
    ) -> Result<(), RowError> {
        let base_scale = self.catalog.scale(spec.base)?;
        let quote_scale = self.catalog.scale(spec.quote)?;
        self.catalog.symbols.insert(spec.symbol, (spec.base, spec.quote));
        let row = SymbolRow {
            symbol: spec.symbol,
            base: spec.base,
            quote: spec.quote,
            tick_size: Amount::new(spec.tick_size, quote_scale),
            lot_size: Amount::new(spec.lot_size, base_scale),
            min_qty: Amount::new(spec.min_qty, base_scale),
            min_notional: Amount::new(spec.min_notional, quote_scale),
            max_order_qty: Amount::new(spec.max_order_qty, base_scale),
            maker_fee_ppm: spec.maker_fee_ppm,
            taker_fee_ppm: spec.taker_fee_ppm,
            price_band_bps: spec.price_band_bps,
            status,
            origin,
        };
        upsert(&mut self.batch.symbols, &mut self.symbol_at, spec.symbol, row, |_, _| {});
        Ok(())
    }

    fn upsert_account(&mut self, account: AccountId, origin: Origin, created_now: bool) -> Result<(), RowError> {
        let info = self.catalog.accounts.get(&account).ok_or(RowError::UnknownAccount(account))?.clone();
        // An account created in an earlier batch: `created` is not known here and the sinks do
        // not overwrite it on update; `created_now` rows carry the real creation stamp.
        let row = AccountRow { account, info, created: origin, updated: origin };
        upsert(&mut self.batch.accounts, &mut self.account_at, account, row, |old, new| {
            if !created_now {
                new.created = old.created;
            }
        });
        Ok(())
    }

    fn add_ledger(&mut self, origin: Origin, entry: &LedgerEntry) -> Result<(), RowError> {
        let scale = self.catalog.scale(entry.asset)?;
        let amount = |units| Amount::new(units, scale);
        self.batch.ledger.push(LedgerRow {
            origin,
            account: entry.account,
            asset: entry.asset,
            kind: entry.kind,
            available_delta: amount(entry.available_delta),
            held_delta: amount(entry.held_delta),
            available_after: amount(entry.available_after),
            held_after: amount(entry.held_after),
            ref_kind: entry.ref_kind,
            ref_id: entry.ref_id,
        });
        let balance = BalanceRow {
            account: entry.account,
            asset: entry.asset,
            available: amount(entry.available_after),
            held: amount(entry.held_after),
            origin,
        };
        upsert(&mut self.batch.balances, &mut self.balance_at, (entry.account, entry.asset), balance, |_, _| {});
        Ok(())
    }

    fn add_order(&mut self, origin: Origin, report: &OrderReport) -> Result<(), RowError> {
        let (base_scale, quote_scale) = self.catalog.pair(report.symbol)?;
        let base = |units| Amount::new(units, base_scale);
        let quote = |units| Amount::new(units, quote_scale);
        let row = OrderRow {
            origin,
            order_id: report.order_id,
            account: report.account,
            symbol: report.symbol,
            client_order_id: report.client_order_id,
            exec: report.exec,
            status: report.status,
            side: report.side,
            order_type: report.order_type,
            tif: report.tif,
            price: quote(report.price),
            qty: base(report.qty),
            filled_qty: base(report.filled_qty),
            remaining_qty: base(report.remaining_qty),
            filled_quote: quote(report.filled_quote),
            fees_paid: quote(report.fees_paid),
        };
        let latest = OrderLatest { report: row.clone(), first_seen: origin };
        self.batch.order_events.push(row);
        upsert(&mut self.batch.orders, &mut self.order_at, report.order_id, latest, |old, new| {
            new.first_seen = old.first_seen
        });
        Ok(())
    }

    fn add_trade(&mut self, origin: Origin, trade: &Trade) -> Result<(), RowError> {
        let (base_scale, quote_scale) = self.catalog.pair(trade.symbol)?;
        let quote = |units| Amount::new(units, quote_scale);
        self.batch.trades.push(TradeRow {
            origin,
            trade_id: trade.trade_id,
            symbol: trade.symbol,
            price: quote(trade.price),
            qty: Amount::new(trade.qty, base_scale),
            quote_qty: quote(trade.quote_qty),
            maker_order: trade.maker_order,
            taker_order: trade.taker_order,
            maker_account: trade.maker_account,
            taker_account: trade.taker_account,
            maker_side: trade.maker_side,
            maker_fee: quote(trade.maker_fee),
            taker_fee: quote(trade.taker_fee),
        });
        Ok(())
    }
}

/// Keeps one row per key in `rows` (the newest), remembering where each key's row is.
/// `carry(old, new)` copies what the new row must inherit from the one it replaces.
fn upsert<K: Ord, R>(
    rows: &mut Vec<R>,
    at: &mut BTreeMap<K, usize>,
    key: K,
    mut row: R,
    carry: impl FnOnce(&R, &mut R),
) {
    match at.get(&key) {
        Some(&i) => {
            carry(&rows[i], &mut row);
            rows[i] = row;
        }
        None => {
            at.insert(key, rows.len());
            rows.push(row);
        }
    }
}

/// UTC `YYYY-MM-DD HH:MM:SS.ffffff` for a stamp in nanoseconds: the `DATETIME(6)` literal.
pub fn utc_datetime_micros(ts_ns: u64) -> String {
    let secs = (ts_ns / 1_000_000_000) as i64;
    let micros = (ts_ns % 1_000_000_000) / 1_000;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}", sod / 3600, sod / 60 % 60, sod % 60)
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Command, Engine};

    #[test]
    fn amounts_convert_exactly() {
        let a = Amount::new(-12_345_000, 6);
        assert_eq!(a.to_decimal_string(), "-12.345000");
        assert_eq!(a.to_mirror_units(), -12_345_000_000_000_000_000);
        assert_eq!(Amount::from_mirror_units(a.to_mirror_units(), 6), Some(a));
        assert_eq!(Amount::from_mirror_units(1, 6), None, "a value finer than the asset's scale");
        let max = Amount::new(i64::MAX, 0);
        assert_eq!(Amount::from_mirror_units(max.to_mirror_units(), 0), Some(max));
    }

    #[test]
    fn datetimes_are_utc() {
        assert_eq!(utc_datetime_micros(0), "1970-01-01 00:00:00.000000");
        assert_eq!(utc_datetime_micros(1_700_000_000_123_456_789), "2023-11-14 22:13:20.123456");
        assert_eq!(utc_datetime_micros(951_782_400_000_000_000), "2000-02-29 00:00:00.000000");
    }

    /// The scripted session through the engine, then through the builder in one batch and in
    /// batches of one record: the same facts, and the current-state rows equal the engine's.
    #[test]
    fn builder_rows_match_the_engine() {
        let commands: Vec<Command> = crate::testkit::scenario::scripted_session();
        let mut engine = Engine::new();
        let mut records = Vec::new();
        let mut events = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            events.clear();
            let seq = i as u64 + 1;
            engine.apply(seq, 1_000 + seq, command, &mut events);
            records.push((seq, 1_000 + seq, events.clone()));
        }
        let mut whole = BatchBuilder::new(Catalog::default());
        for (seq, ts, events) in &records {
            whole.add_record(*seq, *ts, events).unwrap();
        }
        let whole_catalog = whole.catalog().clone();
        let whole = whole.take();
        assert_eq!(whole.records(), records.len());
        assert_eq!(whole.last_seq, records.len() as u64);

        let mut one_by_one = BatchBuilder::new(Catalog::default());
        let mut ledger = Vec::new();
        for (seq, ts, events) in &records {
            one_by_one.add_record(*seq, *ts, events).unwrap();
            ledger.extend(one_by_one.take().ledger);
        }
        assert_eq!(ledger, whole.ledger);
        assert_eq!(one_by_one.catalog(), &whole_catalog);

        for balance in &whole.balances {
            let engine_balance = engine.balance_of(balance.account, balance.asset).unwrap();
            assert_eq!((balance.available.units, balance.held.units), (engine_balance.available, engine_balance.held));
        }
        for order in &whole.orders {
            let engine_order = engine.order(order.report.order_id);
            if let Some(engine_order) = engine_order {
                assert_eq!(order.report.remaining_qty.units, engine_order.remaining_qty);
                assert_eq!(order.report.status, engine_order.status);
            }
            assert!(order.first_seen.seq <= order.report.origin.seq);
        }
        let keys: std::collections::BTreeSet<_> = whole.balances.iter().map(|b| (b.account, b.asset)).collect();
        assert_eq!(keys.len(), whole.balances.len(), "one balance row per key");
    }
}
