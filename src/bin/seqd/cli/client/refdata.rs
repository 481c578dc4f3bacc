//! The reference data a person's words are read against: assets and symbols fetched from the
//! daemon (`ListAssets`, `ListSymbols`), so that `BTC`, `BTC/USDT` and `1.5` mean what they
//! say. Amounts are decimals at the asset's scale, converted exactly (never rounded), or
//! integer minor units with `--minor`.

use rust_decimal::Decimal;
use seqd::client::Client;
use seqd::engine::{AssetId, AssetView, SymbolId, SymbolView};
use seqd::wire::money::{from_minor, to_minor};
use std::str::FromStr;

pub struct Catalog {
    pub assets: Vec<AssetView>,
    pub symbols: Vec<SymbolView>,
    /// Amounts are typed and shown as integer minor units.
    pub minor: bool,
}

impl Catalog {
    pub async fn fetch(client: &mut Client, minor: bool) -> Result<Catalog, String> {
        let assets = client.list_assets().await.map_err(|e| format!("reading the assets: {e}"))?;
        let symbols = client.list_symbols().await.map_err(|e| format!("reading the symbols: {e}"))?;
        Ok(Catalog { assets, symbols, minor })
    }

    /// An asset by code (any case) or id.
    pub fn asset(&self, text: &str) -> Result<AssetView, String> {
        let found = match text.parse::<u32>() {
            Ok(id) => self.assets.iter().find(|a| a.asset == AssetId(id)),
            Err(_) => self.assets.iter().find(|a| a.code.as_string().eq_ignore_ascii_case(text)),
        };
        found.copied().ok_or_else(|| format!("unknown asset {text:?} (see `seqd client assets`)"))
    }

    /// A symbol by code (any case) or id.
    pub fn symbol(&self, text: &str) -> Result<SymbolView, String> {
        let found = match text.parse::<u32>() {
            Ok(id) => self.symbols.iter().find(|s| s.spec.symbol == SymbolId(id)),
            Err(_) => self.symbols.iter().find(|s| s.code.as_string().eq_ignore_ascii_case(text)),
        };
        found.copied().ok_or_else(|| format!("unknown symbol {text:?} (see `seqd client symbols`)"))
    }

    pub fn scale(&self, asset: AssetId) -> Option<u8> {
        self.assets.iter().find(|a| a.asset == asset).map(|a| a.scale)
    }

    /// An asset's code, or its id when it has none.
    pub fn asset_name(&self, asset: AssetId) -> String {
        match self.assets.iter().find(|a| a.asset == asset) {
            Some(a) if !a.code.is_empty() => a.code.as_string(),
            _ => asset.to_string(),
        }
    }

    pub fn symbol_name(&self, symbol: SymbolId) -> String {
        match self.symbols.iter().find(|s| s.spec.symbol == symbol) {
            Some(s) if !s.code.is_empty() => s.code.as_string(),
            _ => symbol.to_string(),
        }
    }

    /// The scales of a symbol's (base, quote) assets.
    pub fn symbol_scales(&self, symbol: SymbolId) -> (Option<u8>, Option<u8>) {
        match self.symbols.iter().find(|s| s.spec.symbol == symbol) {
            Some(s) => (self.scale(s.spec.base), self.scale(s.spec.quote)),
            None => (None, None),
        }
    }

    /// An amount typed by a person, in minor units of an asset with `scale`.
    pub fn parse(&self, what: &str, text: &str, scale: u8) -> Result<i64, String> {
        parse_amount(what, text, if self.minor { None } else { Some(scale) })
    }

    /// Minor units for a person: a decimal at the scale (trailing zeros dropped), or the integer
    /// with `--minor` or when the scale is unknown.
    pub fn show(&self, minor: i64, scale: Option<u8>) -> String {
        match scale {
            Some(scale) if !self.minor => show_decimal(minor, scale),
            _ => minor.to_string(),
        }
    }
}

/// `text` as minor units: an integer when `scale` is `None` (`--minor`), else a decimal in whole
/// units converted exactly (`1.5` at scale 8 is 150000000; `1.123456789` is refused).
pub fn parse_amount(what: &str, text: &str, scale: Option<u8>) -> Result<i64, String> {
    match scale {
        None => text.parse().map_err(|_| format!("{what} {text:?} is not an integer number of minor units (--minor)")),
        Some(scale) => {
            let value = Decimal::from_str(text).map_err(|_| format!("{what} {text:?} is not a decimal number"))?;
            to_minor(value, scale).map_err(|e| format!("{what}: {e}"))
        }
    }
}

pub fn show_decimal(minor: i64, scale: u8) -> String {
    from_minor(minor, scale).normalize().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use seqd::engine::{Code, CodeOf};

    fn btc_usdt(minor: bool) -> Catalog {
        let code = |text| Code::parse(text, CodeOf::Asset).unwrap();
        Catalog {
            assets: vec![
                AssetView { asset: AssetId(1), scale: 8, code: code("BTC") },
                AssetView { asset: AssetId(2), scale: 6, code: code("USDT") },
                AssetView { asset: AssetId(3), scale: 2, code: Code::EMPTY },
            ],
            symbols: vec![],
            minor,
        }
    }

    #[test]
    fn assets_are_found_by_code_or_id_and_amounts_are_exact_decimals_or_minor_units() {
        let catalog = btc_usdt(false);
        assert_eq!(catalog.asset("btc").unwrap().asset, AssetId(1));
        assert_eq!(catalog.asset("2").unwrap().code.as_string(), "USDT");
        assert!(catalog.asset("ETH").unwrap_err().contains("unknown asset"));
        assert_eq!(
            (catalog.asset_name(AssetId(3)), catalog.asset_name(AssetId(1))),
            ("3".to_string(), "BTC".to_string())
        );
        assert_eq!(catalog.parse("qty", "1.5", 8), Ok(150_000_000));
        assert_eq!(catalog.parse("price", "30000.25", 6), Ok(30_000_250_000));
        assert_eq!(
            catalog.parse("qty", "0.123456789", 8),
            Err("qty: 0.123456789 has more than 8 decimal places".to_string())
        );
        assert!(catalog.parse("qty", "99999999999999", 8).unwrap_err().contains("does not fit"));
        assert!(catalog.parse("qty", "abc", 8).is_err());
        assert_eq!(catalog.show(150_000_000, Some(8)), "1.5");
        assert_eq!(catalog.show(-5, Some(2)), "-0.05");
        assert_eq!(catalog.show(42, None), "42");
        let minor = btc_usdt(true);
        assert_eq!(minor.parse("qty", "150000000", 8), Ok(150_000_000));
        assert!(minor.parse("qty", "1.5", 8).unwrap_err().contains("--minor"));
        assert_eq!(minor.show(150_000_000, Some(8)), "150000000");
    }
}
