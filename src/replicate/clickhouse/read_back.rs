//! Reading the ClickHouse mirror back: the checkpoint and the catalog at `open`, and the state
//! at its checkpoint for `seqd reconcile` ([`Mirror::read_state`]), through `FINAL`.

use clickhouse::Row;
use serde::Deserialize;

use super::schema::{AccountCh, AssetCh, SymbolCh};
use super::{quote_literal, ClickHouseSink, SINK_NAME};
use crate::engine::{AccountId, AccountStatus, AssetId, OrderId, OrderStatus, Seq, Side, SymbolId};
use crate::replicate::reconcile::{Mirror, MirrorOrder, MirrorState};
use crate::replicate::rows::{AccountInfo, Amount, Catalog};
use crate::replicate::SinkError;

impl ClickHouseSink {
    pub(super) async fn read_checkpoint(&self) -> Result<Seq, SinkError> {
        let name = quote_literal(SINK_NAME);
        self.fetch_one(&format!("SELECT max(last_seq) FROM replicator_checkpoint FINAL WHERE sink = {name}")).await
    }

    /// Reference data as the mirror holds it. Rows newer than the checkpoint (a batch whose
    /// checkpoint was not written) are harmless: reference rows only change through events that
    /// the re-sent records carry again.
    pub(super) async fn read_catalog(&mut self) -> Result<Catalog, SinkError> {
        let mut catalog = Catalog::default();
        let assets: Vec<AssetCh> = self.fetch_all("SELECT ?fields FROM assets FINAL").await?;
        for asset in assets {
            catalog.asset_scales.insert(AssetId(asset.asset), asset.scale);
        }
        let symbols: Vec<SymbolCh> = self.fetch_all("SELECT ?fields FROM symbols FINAL").await?;
        for symbol in symbols {
            catalog.symbols.insert(SymbolId(symbol.symbol), (AssetId(symbol.base), AssetId(symbol.quote)));
        }
        let accounts: Vec<AccountCh> = self.fetch_all("SELECT ?fields FROM accounts FINAL").await?;
        self.account_created.clear();
        for account in accounts {
            let status = AccountStatus::from_u8(account.status as u8).ok_or_else(|| {
                SinkError::fatal(format!("account {} has status {} in ClickHouse", account.account, account.status))
            })?;
            self.account_created.insert(AccountId(account.account), (account.created_seq, account.created_ts_ns));
            let info =
                AccountInfo { parent: AccountId(account.parent), owner: account.owner, path: account.path, status };
            catalog.accounts.insert(AccountId(account.account), info);
        }
        Ok(catalog)
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
            let scale = *catalog.asset_scales.get(&AssetId(row.asset)).ok_or_else(|| {
                SinkError::fatal(format!("ClickHouse ledger refers to asset {}, which assets lacks", row.asset))
            })?;
            let units = |raw: i128| minor_units(raw, scale, "ledger_entries");
            let key = (AccountId(row.account), AssetId(row.asset));
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
            let (base, quote) = *catalog.symbols.get(&SymbolId(row.symbol)).ok_or_else(|| {
                SinkError::fatal(format!(
                    "ClickHouse order {} is in symbol {}, which symbols lacks",
                    row.order_id, row.symbol
                ))
            })?;
            let scale = |asset| {
                catalog.asset_scales.get(&asset).copied().ok_or_else(|| {
                    SinkError::fatal(format!(
                        "ClickHouse symbol {} refers to asset {asset}, which assets lacks",
                        row.symbol
                    ))
                })
            };
            let (base_scale, quote_scale) = (scale(base)?, scale(quote)?);
            let enum_error =
                || SinkError::fatal(format!("ClickHouse order {} has an unknown enum value", row.order_id));
            let order = MirrorOrder {
                account: AccountId(row.account),
                symbol: SymbolId(row.symbol),
                side: Side::from_u8(row.side as u8).ok_or_else(enum_error)?,
                status: OrderStatus::from_u8(row.status as u8).ok_or_else(enum_error)?,
                price: minor_units(row.price, quote_scale, "order_events")?,
                remaining_qty: minor_units(row.remaining_qty, base_scale, "order_events")?,
                filled_qty: minor_units(row.filled_qty, base_scale, "order_events")?,
            };
            state.open_orders.insert(OrderId(row.order_id), order);
        }
        Ok(state)
    }
}

fn minor_units(raw: i128, scale: u8, table: &str) -> Result<i64, SinkError> {
    Amount::from_mirror_units(raw, scale).map(|a| a.units).ok_or_else(|| {
        SinkError::fatal(format!(
            "ClickHouse {table} holds {raw}e-18, not a whole number of minor units at scale {scale}"
        ))
    })
}

/// Runs a request under a time limit; every failure of it is transient (the server is down,

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
