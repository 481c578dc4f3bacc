//! Reference data: assets and symbols, created and changed by admin commands.

use super::accounts::index_u32;
use super::book::Book;
use super::command::SymbolSpec;
use super::event::Event;
use super::limits::{ASSETS_MAX, SYMBOLS_MAX};
use super::state::{Asset, AssetTotals, Engine, Symbol, MAX_ASSET_SCALE, PPM};
use super::types::*;
use super::units::Ticks;
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

    /// An empty code is allowed (commands of protocol version 1 and old journals carry none);
    /// a non-empty one must be valid and not taken by another asset.
    fn check_new_code(codes: &rustc_hash::FxHashMap<Code, u32>, code: Code, of: CodeOf) -> Verdict {
        if code.is_empty() {
            return Ok(());
        }
        if !code.is_valid(of) {
            return Err(RejectReason::InvalidCode);
        }
        if codes.contains_key(&code) {
            return Err(RejectReason::CodeExists);
        }
        Ok(())
    }

    pub(crate) fn create_asset(&mut self, asset: AssetId, scale: u8, code: Code, out: &mut Vec<Event>) -> Verdict {
        if asset == AssetId::NONE {
            return Err(RejectReason::UnknownAsset);
        }
        if self.asset_index.contains_key(&asset) {
            return Err(RejectReason::AssetExists);
        }
        if scale > MAX_ASSET_SCALE {
            return Err(RejectReason::InvalidScale);
        }
        Self::check_new_code(&self.asset_codes, code, CodeOf::Asset)?;
        if self.assets.len() >= ASSETS_MAX {
            return Err(RejectReason::TooManyAssets);
        }
        let idx = index_u32(self.assets.len());
        let previous = self.asset_index.insert(asset, idx);
        assert!(previous.is_none(), "asset {asset} indexed twice");
        self.assets.push(Asset { id: asset, scale, code });
        self.totals.push(AssetTotals::default());
        // Totals are per asset, by the same index.
        assert_eq!(self.assets.len(), self.totals.len());
        out.push(Event::AssetCreated { asset, scale });
        if !code.is_empty() {
            self.asset_codes.insert(code, idx);
            out.push(Event::AssetCode { asset, code });
        }
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

    pub(crate) fn create_symbol(&mut self, spec: &SymbolSpec, code: Code, out: &mut Vec<Event>) -> Verdict {
        if spec.symbol == SymbolId(0) {
            return Err(RejectReason::InvalidSymbolSpec);
        }
        if self.symbol_index.contains_key(&spec.symbol) {
            return Err(RejectReason::SymbolExists);
        }
        let (base_idx, quote_idx, quote_per_tick_lot) = self.validate_symbol_spec(spec)?;
        Self::check_new_code(&self.symbol_codes, code, CodeOf::Symbol)?;
        if self.symbols.len() >= SYMBOLS_MAX {
            return Err(RejectReason::TooManySymbols);
        }
        let idx = index_u32(self.symbols.len());
        let previous = self.symbol_index.insert(spec.symbol, idx);
        assert!(previous.is_none(), "symbol {} indexed twice", spec.symbol);
        self.symbols.push(Symbol {
            spec: *spec,
            status: SymbolStatus::Trading,
            base_idx,
            quote_idx,
            quote_per_tick_lot,
            last_price_ticks: Ticks::ZERO,
            book: Book::default(),
            code,
        });
        out.push(Event::SymbolUpdated { spec: *spec, status: SymbolStatus::Trading });
        if !code.is_empty() {
            self.symbol_codes.insert(code, idx);
            out.push(Event::SymbolCode { symbol: spec.symbol, code });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Command;
    use crate::testkit::workload::btc_usdt_spec;

    fn code(text: &str, of: CodeOf) -> Code {
        Code::parse(text, of).unwrap_or_else(|| panic!("{text} is a valid {of:?} code"))
    }

    fn apply(engine: &mut Engine, command: Command) -> Vec<Event> {
        let mut events = Vec::new();
        engine.apply(engine.last_seq + 1, 0, &command, &mut events);
        events
    }

    fn rejected(reason: RejectReason) -> Vec<Event> {
        vec![Event::Rejected { reason }]
    }

    #[test]
    fn codes_have_one_documented_form() {
        for text in ["BTC", "USDT", "A", "0123456789ABCDEF", "X.Y_Z-1"] {
            assert!(Code::parse(text, CodeOf::Asset).is_some(), "{text}");
        }
        assert_eq!(code("BTC/USDT", CodeOf::Symbol).as_string(), "BTC/USDT");
        for text in ["", "btc", "B C", "BTC/USDT", "0123456789ABCDEFG", "É", "A\0B"] {
            assert_eq!(Code::parse(text, CodeOf::Asset), None, "{text:?}");
        }
        // Bytes after the zero padding, or a gap inside it, make a code invalid.
        let mut gap = code("AB", CodeOf::Asset);
        gap.0[3] = b'C';
        assert!(!gap.is_valid(CodeOf::Asset));
        assert!(!Code::EMPTY.is_valid(CodeOf::Asset) && Code::EMPTY.is_empty());
    }

    #[test]
    fn a_coded_asset_gets_its_code_event_and_an_invalid_or_taken_code_is_refused() {
        let mut engine = Engine::new();
        let btc = code("BTC", CodeOf::Asset);
        assert_eq!(
            apply(&mut engine, Command::CreateAssetWithCode { asset: AssetId(1), scale: 8, code: btc }),
            [Event::AssetCreated { asset: AssetId(1), scale: 8 }, Event::AssetCode { asset: AssetId(1), code: btc }]
        );
        let taken = Command::CreateAssetWithCode { asset: AssetId(2), scale: 6, code: btc };
        assert_eq!(apply(&mut engine, taken), rejected(RejectReason::CodeExists));
        let mut lower = Code::EMPTY;
        lower.0[..4].copy_from_slice(b"usdt");
        let invalid = Command::CreateAssetWithCode { asset: AssetId(2), scale: 6, code: lower };
        assert_eq!(apply(&mut engine, invalid), rejected(RejectReason::InvalidCode));
        let slash = Command::CreateAssetWithCode { asset: AssetId(2), scale: 6, code: code("A/B", CodeOf::Symbol) };
        assert_eq!(apply(&mut engine, slash), rejected(RejectReason::InvalidCode));
        // Refusals left nothing behind: asset 2 and its code are still free.
        let usdt = code("USDT", CodeOf::Asset);
        apply(&mut engine, Command::CreateAssetWithCode { asset: AssetId(2), scale: 6, code: usdt });
        // Without a code (a version-1 client, an old journal): no code event, no code.
        assert_eq!(
            apply(&mut engine, Command::CreateAsset { asset: AssetId(3), scale: 2 }),
            [Event::AssetCreated { asset: AssetId(3), scale: 2 }]
        );
        let codes: Vec<Code> = engine.asset_views().iter().map(|a| a.code).collect();
        assert_eq!(codes, [btc, usdt, Code::EMPTY]);
        engine.check_invariants().unwrap();
    }

    #[test]
    fn symbol_codes_are_unique_among_symbols_only_and_survive_updates() {
        let mut engine = Engine::new();
        apply(
            &mut engine,
            Command::CreateAssetWithCode { asset: AssetId(1), scale: 8, code: code("BTC", CodeOf::Asset) },
        );
        apply(&mut engine, Command::CreateAsset { asset: AssetId(2), scale: 6 });
        let pair = code("BTC/USDT", CodeOf::Symbol);
        let spec =
            SymbolSpec { symbol: SymbolId(1), base: AssetId(1), quote: AssetId(2), ..btc_usdt_spec(1_000, 2_000) };
        assert_eq!(
            apply(&mut engine, Command::CreateSymbolWithCode { spec, code: pair }),
            [
                Event::SymbolUpdated { spec, status: SymbolStatus::Trading },
                Event::SymbolCode { symbol: SymbolId(1), code: pair }
            ]
        );
        let second = SymbolSpec { symbol: SymbolId(2), ..spec };
        let taken = Command::CreateSymbolWithCode { spec: second, code: pair };
        assert_eq!(apply(&mut engine, taken), rejected(RejectReason::CodeExists));
        // A symbol may have an asset's code: the two are separate namespaces.
        let btc = Command::CreateSymbolWithCode { spec: second, code: code("BTC", CodeOf::Symbol) };
        assert_eq!(apply(&mut engine, btc).len(), 2);
        // A bad spec is reported before the code is looked at.
        let bad = SymbolSpec { symbol: SymbolId(3), tick_size: 0, ..spec };
        assert_eq!(
            apply(&mut engine, Command::CreateSymbolWithCode { spec: bad, code: pair }),
            rejected(RejectReason::InvalidSymbolSpec)
        );
        apply(&mut engine, Command::UpdateSymbol(SymbolSpec { maker_fee_ppm: 7, ..spec }));
        apply(&mut engine, Command::SetSymbolStatus { symbol: SymbolId(1), status: SymbolStatus::Halted });
        let view = engine.symbol_views()[0];
        assert_eq!((view.code, view.status, view.spec.maker_fee_ppm), (pair, SymbolStatus::Halted, 7));
        engine.check_invariants().unwrap();
    }
}
