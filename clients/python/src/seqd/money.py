"""Decimal amounts <-> integer minor units, by each asset's scale.

Protocol version 1 has no reference-data query, so a client cannot ask an asset's scale. The
`ReferenceData` registry learns scales and symbol specs from the `AssetCreated` and
`SymbolUpdated` events the connection sees (every connection receives them: reference data is
public, PROTOCOL.md §8), and from the caller (`set_asset`, `set_symbol`) for assets and symbols
created before the connection opened.

Conversion rules: an `int` is already minor units and is passed through unchanged; a `Decimal`
(or a `str`, parsed as a Decimal) is whole units, multiplied by 10^scale, and must come out a
whole number of minor units inside `i64`, or `AmountError` is raised (never rounded). A `float`
is refused: it cannot hold most decimal amounts exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from typing import Union

from .codec import I64_MAX, I64_MIN, SymbolSpec, SymbolStatus
from .errors import AmountError

Amount = Union[int, Decimal, str]


def to_minor(value: Amount, scale: int, what: str = "amount") -> int:
    """`value` in minor units: an int as it is, a Decimal or str times 10^scale, exactly."""
    if isinstance(value, bool) or isinstance(value, float):
        raise AmountError(f"{what}: {value!r} is a {type(value).__name__}; use int minor units or Decimal")
    if isinstance(value, int):
        minor = value
    else:
        try:
            d = Decimal(value) if isinstance(value, str) else value
            if not isinstance(d, Decimal) or not d.is_finite():
                raise AmountError(f"{what}: {value!r} is not a finite decimal")
            # Exact arithmetic: a digit the context's precision would drop is an error, not a rounding.
            with localcontext() as ctx:
                ctx.prec = 60
                ctx.traps[Inexact] = True
                scaled = d.scaleb(scale)
        except Inexact:
            raise AmountError(f"{what}: {value!r} has too many digits") from None
        except InvalidOperation:
            raise AmountError(f"{what}: {value!r} is not a decimal number") from None
        if scaled != scaled.to_integral_value():
            raise AmountError(f"{what}: {value} has more than {scale} decimal places (the asset's scale)")
        minor = int(scaled)
    if not I64_MIN <= minor <= I64_MAX:
        raise AmountError(f"{what}: {value} is outside i64 minor units")
    return minor


def to_decimal(minor: int, scale: int) -> Decimal:
    """Minor units as an exact Decimal of whole units."""
    return Decimal(minor).scaleb(-scale)


@dataclass(frozen=True)
class SymbolInfo:
    spec: SymbolSpec
    status: SymbolStatus = SymbolStatus.TRADING


class UnknownReference(AmountError, KeyError):
    """A decimal amount for an asset or symbol whose scale the SDK has not learned."""

    def __str__(self) -> str:
        return str(self.args[0])


class ReferenceData:
    """Asset scales and symbol specs known to this client."""

    def __init__(self) -> None:
        self.asset_scales: dict[int, int] = {}
        self.symbols: dict[int, SymbolInfo] = {}

    def set_asset(self, asset: int, scale: int) -> None:
        self.asset_scales[asset] = scale

    def set_symbol(self, spec: SymbolSpec, status: SymbolStatus = SymbolStatus.TRADING) -> None:
        self.symbols[spec.symbol] = SymbolInfo(spec, status)

    def scale(self, asset: int) -> int:
        try:
            return self.asset_scales[asset]
        except KeyError:
            raise UnknownReference(
                f"asset {asset}: scale unknown (protocol v1 cannot query it: pass it with "
                "set_asset, or give integer minor units)"
            ) from None

    def symbol(self, symbol: int) -> SymbolSpec:
        try:
            return self.symbols[symbol].spec
        except KeyError:
            raise UnknownReference(
                f"symbol {symbol}: spec unknown (protocol v1 cannot query it: pass it with "
                "set_symbol, or give integer minor units)"
            ) from None

    def amount(self, asset: int, value: Amount, what: str = "amount") -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return to_minor(value, 0, what)  # minor units need no scale
        return to_minor(value, self.scale(asset), what)

    def price(self, symbol: int, value: Amount) -> int:
        """A price: quote minor units per whole base unit."""
        if isinstance(value, int) and not isinstance(value, bool):
            return to_minor(value, 0, "price")
        return to_minor(value, self.scale(self.symbol(symbol).quote), "price")

    def qty(self, symbol: int, value: Amount) -> int:
        """A quantity: base minor units."""
        if isinstance(value, int) and not isinstance(value, bool):
            return to_minor(value, 0, "qty")
        return to_minor(value, self.scale(self.symbol(symbol).base), "qty")

    def quote_amount(self, symbol: int, value: Amount) -> int:
        """A quote-asset amount (a market buy's budget)."""
        if isinstance(value, int) and not isinstance(value, bool):
            return to_minor(value, 0, "quote_budget")
        return to_minor(value, self.scale(self.symbol(symbol).quote), "quote_budget")

    def price_decimal(self, symbol: int, price: int) -> Decimal:
        return to_decimal(price, self.scale(self.symbol(symbol).quote))

    def qty_decimal(self, symbol: int, qty: int) -> Decimal:
        return to_decimal(qty, self.scale(self.symbol(symbol).base))

    def amount_decimal(self, asset: int, minor: int) -> Decimal:
        return to_decimal(minor, self.scale(asset))
