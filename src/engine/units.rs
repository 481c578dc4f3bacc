//! The book's units as newtypes: `Ticks` (a price as a count of the symbol's ticks) and `Lots`
//! (a quantity as a count of its lots), and the only conversions between them and the minor
//! units of commands and events (`SymbolSpec::price_to_ticks` and friends, below).
//!
//! Inside the book a price of 3 ticks and a price of 3 quote minor units are both `3`, and so are
//! 3 lots and 3 base minor units; a mix-up is a silent factor of `tick_size` or `lot_size`. With a
//! distinct type each, such a mix-up is a compile error, and every crossing between units goes
//! through one checked function here. There is no `Add`/`Sub`/`Mul` impl (a plain operator on an
//! `i64` wraps in release builds): arithmetic is `checked_*`, returning `None` on overflow, and the
//! caller picks the reject (`RejectReason::Overflow`) or the assertion.

use super::command::SymbolSpec;
use super::types::print_as_number;
use std::fmt;

/// Declares a unit newtype over `i64`. `repr(transparent)` keeps the integer's layout (and the
/// state encoding writes `get()`, so it stays byte-identical); `Debug` and `Display` print the
/// bare number, so dumps and invariant messages read as they did.
macro_rules! unit_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const ZERO: $name = $name(0);

            /// A count of this unit (from the state encoding, a computed count, or a literal in a
            /// test). Converting from minor units is `SymbolSpec`'s job, never this; crate-private,
            /// so outside the engine a count only comes out of a conversion.
            #[inline(always)]
            pub(crate) const fn new(count: i64) -> $name {
                $name(count)
            }

            /// The count, as the state encoding writes it.
            #[inline(always)]
            pub const fn get(self) -> i64 {
                self.0
            }

            #[inline(always)]
            pub const fn is_positive(self) -> bool {
                self.0 > 0
            }

            #[inline(always)]
            pub fn checked_add(self, other: $name) -> Option<$name> {
                self.0.checked_add(other.0).map($name)
            }

            #[inline(always)]
            pub fn checked_sub(self, other: $name) -> Option<$name> {
                self.0.checked_sub(other.0).map($name)
            }

            /// For sums that are only compared with a bound, where saturating cannot change the answer.
            #[inline(always)]
            pub fn saturating_add(self, other: $name) -> $name {
                $name(self.0.saturating_add(other.0))
            }
        }

        print_as_number!($name);
    };
}

unit_newtype!(
    /// A price as a count of the symbol's ticks (`tick_size` quote minor units per whole base
    /// unit each). 0 means "no price" (market orders, orders that are not stops, no trade yet).
    Ticks
);
unit_newtype!(
    /// A quantity as a count of the symbol's lots (`lot_size` base minor units each).
    Lots
);

/// The only conversions between the book's units and minor units. Each is exact or `None`:
/// minor units to ticks or lots when the amount is a whole number of them, back when the product
/// fits an i64. A spec's `tick_size` and `lot_size` are positive (`validate_symbol_spec`).
impl SymbolSpec {
    /// `price` (quote minor units per whole base unit) in ticks; `None` unless it is on the tick.
    #[inline]
    pub fn price_to_ticks(&self, price: i64) -> Option<Ticks> {
        (self.tick_size > 0 && price % self.tick_size == 0).then(|| Ticks(price / self.tick_size))
    }

    /// `ticks` in quote minor units per whole base unit; `None` if that passes i64.
    #[inline]
    pub fn ticks_to_price(&self, ticks: Ticks) -> Option<i64> {
        ticks.0.checked_mul(self.tick_size)
    }

    /// `qty` (base minor units) in lots; `None` unless it is a whole number of lots.
    #[inline]
    pub fn qty_to_lots(&self, qty: i64) -> Option<Lots> {
        (self.lot_size > 0 && qty % self.lot_size == 0).then(|| Lots(qty / self.lot_size))
    }

    /// `lots` in base minor units; `None` if that passes i64.
    #[inline]
    pub fn lots_to_qty(&self, lots: Lots) -> Option<i64> {
        lots.0.checked_mul(self.lot_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AssetId, SymbolId};

    fn spec(tick_size: i64, lot_size: i64) -> SymbolSpec {
        SymbolSpec {
            symbol: SymbolId(1),
            base: AssetId(1),
            quote: AssetId(2),
            tick_size,
            lot_size,
            min_qty: 0,
            min_notional: 0,
            max_order_qty: lot_size,
            maker_fee_ppm: 0,
            taker_fee_ppm: 0,
            price_band_bps: 0,
        }
    }

    #[test]
    fn conversions_are_exact_or_none() {
        let s = spec(100, 1_000);
        assert_eq!(s.price_to_ticks(12_300), Some(Ticks::new(123)));
        assert_eq!(s.price_to_ticks(12_345), None, "off the tick");
        assert_eq!(s.ticks_to_price(Ticks::new(123)), Some(12_300));
        assert_eq!(s.ticks_to_price(Ticks::new(i64::MAX / 10)), None, "passes i64");
        assert_eq!(s.qty_to_lots(7_000), Some(Lots::new(7)));
        assert_eq!(s.qty_to_lots(7_001), None, "off the lot");
        assert_eq!(s.lots_to_qty(Lots::new(7)), Some(7_000));
        assert_eq!(s.lots_to_qty(Lots::new(i64::MAX)), None, "passes i64");
        // A spec that was never validated cannot divide by zero.
        assert_eq!(spec(0, 0).price_to_ticks(5), None);
        assert_eq!(spec(0, 0).qty_to_lots(5), None);
    }

    #[test]
    fn arithmetic_is_checked() {
        let max = Lots::new(i64::MAX);
        assert_eq!(max.checked_add(Lots::new(1)), None);
        assert_eq!(max.saturating_add(Lots::new(1)), max);
        assert_eq!(Lots::new(i64::MIN).checked_sub(Lots::new(1)), None);
        assert_eq!(Lots::new(5).checked_sub(Lots::new(2)), Some(Lots::new(3)));
        assert_eq!(Ticks::new(2).checked_add(Ticks::new(3)), Some(Ticks::new(5)));
        assert_eq!(format!("{:?} {}", Ticks::new(42), Lots::new(-7)), "42 -7");
    }
}
