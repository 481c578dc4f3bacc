//! Reference data: assets and symbols, created and changed by admin commands.

use super::book::Book;
use super::command::SymbolSpec;
use super::event::Event;
use super::state::{Asset, AssetTotals, Engine, Symbol, MAX_ASSET_SCALE, PPM};
use super::types::*;
use super::Verdict;

impl Engine {
    pub(crate) fn asset_idx(&self, asset: AssetId) -> Result<u32, RejectReason> {
        self.asset_index.get(&asset).copied().ok_or(RejectReason::UnknownAsset)
    }

    pub(crate) fn symbol_idx(&self, symbol: SymbolId) -> Result<u32, RejectReason> {
        self.symbol_index.get(&symbol).copied().ok_or(RejectReason::UnknownSymbol)
    }

    pub(crate) fn create_asset(&mut self, asset: AssetId, scale: u8, out: &mut Vec<Event>) -> Verdict {
        if asset == 0 {
            return Err(RejectReason::UnknownAsset);
        }
        if self.asset_index.contains_key(&asset) {
            return Err(RejectReason::AssetExists);
        }
        if scale > MAX_ASSET_SCALE {
            return Err(RejectReason::InvalidScale);
        }
        self.asset_index.insert(asset, self.assets.len() as u32);
        self.assets.push(Asset { id: asset, scale });
        self.totals.push(AssetTotals::default());
        out.push(Event::AssetCreated { asset, scale });
        Ok(())
    }

    /// Checks a spec and returns (base index, quote index, quote units per tick-lot).
    fn validate_symbol_spec(&self, spec: &SymbolSpec) -> Result<(u32, u32, i64), RejectReason> {
        let base_idx = self.asset_idx(spec.base)?;
        let quote_idx = self.asset_idx(spec.quote)?;
        let sizes_valid = spec.base != spec.quote
            && spec.tick_size > 0
            && spec.lot_size > 0
            && spec.min_qty >= 0
            && spec.min_notional >= 0
            && spec.max_order_qty >= spec.lot_size
            && (spec.maker_fee_ppm as i64) < PPM
            && (spec.taker_fee_ppm as i64) < PPM;
        if !sizes_valid {
            return Err(RejectReason::InvalidSymbolSpec);
        }
        // One lot at one tick must be a whole number of quote minor units, so that every
        // notional is an exact integer: tick * lot must be a multiple of 10^base_scale.
        let base_unit = 10i128.pow(self.assets[base_idx as usize].scale as u32);
        let tick_lot = spec.tick_size as i128 * spec.lot_size as i128;
        if tick_lot % base_unit != 0 || tick_lot / base_unit > i64::MAX as i128 {
            return Err(RejectReason::InvalidSymbolSpec);
        }
        Ok((base_idx, quote_idx, (tick_lot / base_unit) as i64))
    }

    pub(crate) fn create_symbol(&mut self, spec: &SymbolSpec, out: &mut Vec<Event>) -> Verdict {
        if spec.symbol == 0 {
            return Err(RejectReason::InvalidSymbolSpec);
        }
        if self.symbol_index.contains_key(&spec.symbol) {
            return Err(RejectReason::SymbolExists);
        }
        let (base_idx, quote_idx, quote_per_tick_lot) = self.validate_symbol_spec(spec)?;
        self.symbol_index.insert(spec.symbol, self.symbols.len() as u32);
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
