//! Reference data: assets and symbols, created and changed by admin commands.

use super::accounts::index_u32;
use super::book::Book;
use super::command::SymbolSpec;
use super::event::Event;
use super::limits::{ASSETS_MAX, SYMBOLS_MAX};
use super::state::{Asset, AssetTotals, Engine, Symbol, MAX_ASSET_SCALE, PPM};
use super::types::*;
use super::Verdict;

/// Quote minor units one lot exchanges at a price of one tick: `tick * lot / 10^base_scale`.
/// `None` unless it is a whole number of quote minor units (so that every notional is an exact
/// integer) that fits an i64. `tick` and `lot` are positive and `base_scale` at most 18.
pub(crate) fn quote_per_tick_lot(spec: &SymbolSpec, base_scale: u8) -> Option<i64> {
    let base_unit = 10i128.checked_pow(u32::from(base_scale))?;
    // Both factors are below 2^63, so the product is below 2^126 and fits an i128.
    let tick_lot = i128::from(spec.tick_size) * i128::from(spec.lot_size);
    if tick_lot <= 0 || tick_lot % base_unit != 0 {
        return None;
    }
    i64::try_from(tick_lot / base_unit).ok()
}

impl Engine {
    pub(crate) fn asset_idx(&self, asset: AssetId) -> Result<u32, RejectReason> {
        self.asset_index.get(&asset).copied().ok_or(RejectReason::UnknownAsset)
    }

    pub(crate) fn symbol_idx(&self, symbol: SymbolId) -> Result<u32, RejectReason> {
        self.symbol_index.get(&symbol).copied().ok_or(RejectReason::UnknownSymbol)
    }

    pub(crate) fn create_asset(&mut self, asset: AssetId, scale: u8, out: &mut Vec<Event>) -> Verdict {
        if asset == AssetId::NONE {
            return Err(RejectReason::UnknownAsset);
        }
        if self.asset_index.contains_key(&asset) {
            return Err(RejectReason::AssetExists);
        }
        if scale > MAX_ASSET_SCALE {
            return Err(RejectReason::InvalidScale);
        }
        if self.assets.len() >= ASSETS_MAX {
            return Err(RejectReason::TooManyAssets);
        }
        let previous = self.asset_index.insert(asset, index_u32(self.assets.len()));
        assert!(previous.is_none(), "asset {asset} indexed twice");
        self.assets.push(Asset { id: asset, scale });
        self.totals.push(AssetTotals::default());
        // Totals are per asset, by the same index.
        assert_eq!(self.assets.len(), self.totals.len());
        out.push(Event::AssetCreated { asset, scale });
        Ok(())
    }

    /// Checks a spec and returns (base index, quote index, quote units per tick-lot).
    pub(crate) fn validate_symbol_spec(&self, spec: &SymbolSpec) -> Result<(u32, u32, i64), RejectReason> {
        let base_idx = self.asset_idx(spec.base)?;
        let quote_idx = self.asset_idx(spec.quote)?;
        let sizes_valid = spec.base != spec.quote
            && spec.tick_size > 0
            && spec.lot_size > 0
            && spec.min_qty >= 0
            && spec.min_notional >= 0
            && spec.max_order_qty >= spec.lot_size
            && i64::from(spec.maker_fee_ppm) < PPM
            && i64::from(spec.taker_fee_ppm) < PPM;
        if !sizes_valid {
            return Err(RejectReason::InvalidSymbolSpec);
        }
        // One lot at one tick must be a whole number of quote minor units, so that every
        // notional is an exact integer: tick * lot must be a multiple of 10^base_scale.
        let quote_per_tick_lot =
            quote_per_tick_lot(spec, self.assets[base_idx as usize].scale).ok_or(RejectReason::InvalidSymbolSpec)?;
        Ok((base_idx, quote_idx, quote_per_tick_lot))
    }

    pub(crate) fn create_symbol(&mut self, spec: &SymbolSpec, out: &mut Vec<Event>) -> Verdict {
        if spec.symbol == SymbolId(0) {
            return Err(RejectReason::InvalidSymbolSpec);
        }
        if self.symbol_index.contains_key(&spec.symbol) {
            return Err(RejectReason::SymbolExists);
        }
        let (base_idx, quote_idx, quote_per_tick_lot) = self.validate_symbol_spec(spec)?;
        if self.symbols.len() >= SYMBOLS_MAX {
            return Err(RejectReason::TooManySymbols);
        }
        let previous = self.symbol_index.insert(spec.symbol, index_u32(self.symbols.len()));
        assert!(previous.is_none(), "symbol {} indexed twice", spec.symbol);
        self.symbols.push(Symbol {
            spec: *spec,
            status: SymbolStatus::Trading,
            base_idx,
            quote_idx,
            quote_per_tick_lot,
            last_price_ticks: 0,
            book: Book::default(),
        });
        out.push(Event::SymbolUpdated { spec: *spec, status: SymbolStatus::Trading });
        Ok(())
    }

    pub(crate) fn update_symbol(&mut self, spec: &SymbolSpec, out: &mut Vec<Event>) -> Verdict {
        let idx = self.symbol_idx(spec.symbol)? as usize;
        let current = self.symbols[idx].spec;
        let fixed_fields_kept = current.base == spec.base
            && current.quote == spec.quote
            && current.tick_size == spec.tick_size
            && current.lot_size == spec.lot_size;
        if !fixed_fields_kept {
            return Err(RejectReason::InvalidSymbolSpec);
        }
        self.validate_symbol_spec(spec)?;
        let symbol = &mut self.symbols[idx];
        symbol.spec = *spec;
        out.push(Event::SymbolUpdated { spec: *spec, status: symbol.status });
        Ok(())
    }

    pub(crate) fn set_symbol_status(
        &mut self,
        symbol: SymbolId,
        status: SymbolStatus,
        out: &mut Vec<Event>,
    ) -> Verdict {
        let idx = self.symbol_idx(symbol)? as usize;
        let symbol = &mut self.symbols[idx];
        symbol.status = status;
        out.push(Event::SymbolUpdated { spec: symbol.spec, status });
        Ok(())
    }
}
