//! The edge between decimal amounts (protocol, configuration, databases) and the integer minor
//! units of the hot path. Conversions are exact or fail: nothing is ever rounded silently.

use rust_decimal::Decimal;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{value} has more than {scale} decimal places")]
    TooPrecise { value: Decimal, scale: u8 },
    #[error("{value} does not fit in 64-bit minor units at scale {scale}")]
    OutOfRange { value: Decimal, scale: u8 },
    #[error("scale {0} is larger than 18")]
    BadScale(u8),
}

/// Converts a decimal amount to minor units of an asset with `scale` decimal places
/// (`to_minor(1.5, 6) == 1_500_000`). Fails rather than rounds.
pub fn to_minor(value: Decimal, scale: u8) -> Result<i64, MoneyError> {
    if scale > 18 {
        return Err(MoneyError::BadScale(scale));
    }
    let factor = Decimal::from(10i64.pow(scale as u32));
    let scaled = value.checked_mul(factor).ok_or(MoneyError::OutOfRange { value, scale })?;
    if !scaled.fract().is_zero() {
        return Err(MoneyError::TooPrecise { value, scale });
    }
    i64::try_from(scaled.trunc()).map_err(|_| MoneyError::OutOfRange { value, scale })
}

/// Converts minor units back to a decimal with exactly `scale` decimal places.
pub fn from_minor(minor: i64, scale: u8) -> Decimal {
    Decimal::from_i128_with_scale(minor as i128, scale as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn converts_exactly_both_ways() {
        assert_eq!(to_minor(d("1.5"), 6), Ok(1_500_000));
        assert_eq!(to_minor(d("-0.00000001"), 8), Ok(-1));
        assert_eq!(to_minor(d("42"), 0), Ok(42));
        assert_eq!(from_minor(1_500_000, 6).to_string(), "1.500000");
        assert_eq!(from_minor(-1, 8), d("-0.00000001"));
        for minor in [0i64, 1, -7, 123_456_789, i64::MAX, i64::MIN] {
            assert_eq!(to_minor(from_minor(minor, 8), 8), Ok(minor));
        }
    }

    #[test]
    fn refuses_to_round_or_overflow() {
        assert_eq!(to_minor(d("0.0000001"), 6), Err(MoneyError::TooPrecise { value: d("0.0000001"), scale: 6 }));
        assert!(matches!(to_minor(d("100000000000"), 18), Err(MoneyError::OutOfRange { .. })));
        assert_eq!(to_minor(d("1"), 19), Err(MoneyError::BadScale(19)));
    }
}
