"""Reason codes (docs/PROTOCOL.md section 13) and the exceptions the SDK raises."""

from __future__ import annotations

from enum import IntEnum


class RejectReason(IntEnum):
    """Engine reason codes (100-499): the `Rejected` event of an accepted command."""

    ASSET_EXISTS = 100
    UNKNOWN_ASSET = 101
    INVALID_SCALE = 102
    SYMBOL_EXISTS = 103
    UNKNOWN_SYMBOL = 104
    INVALID_SYMBOL_SPEC = 105
    SYMBOL_HALTED = 106
    TOO_MANY_ASSETS = 107
    TOO_MANY_SYMBOLS = 108
    INVALID_CODE = 109
    CODE_EXISTS = 110
    DUPLICATE_REQUEST = 111
    ACCOUNT_EXISTS = 200
    UNKNOWN_ACCOUNT = 201
    UNKNOWN_PARENT = 202
    OWNER_MISMATCH = 203
    TREE_TOO_DEEP = 204
    ACCOUNT_FROZEN = 205
    INVALID_ACCOUNT_ID = 206
    TOO_MANY_ACCOUNTS = 207
    INVALID_AMOUNT = 300
    INSUFFICIENT_FUNDS = 301
    OVERFLOW = 302
    DUPLICATE_DEPOSIT_REF = 303
    DUPLICATE_WITHDRAWAL_REF = 304
    UNKNOWN_WITHDRAWAL = 305
    WITHDRAWAL_NOT_PENDING = 306
    DUPLICATE_TRANSFER_REF = 307
    SAME_ACCOUNT = 308
    NOT_SAME_TREE = 309
    REFERENCE_EXPIRED = 310
    TOO_MANY_PENDING_WITHDRAWALS = 311
    DUPLICATE_CLIENT_ORDER_ID = 400
    UNKNOWN_ORDER = 401
    INVALID_PRICE = 402
    PRICE_NOT_ON_TICK = 403
    INVALID_QUANTITY = 404
    QUANTITY_NOT_ON_LOT = 405
    BELOW_MIN_QUANTITY = 406
    BELOW_MIN_NOTIONAL = 407
    ABOVE_MAX_QUANTITY = 408
    PRICE_OUT_OF_BAND = 409
    POST_ONLY_WOULD_TAKE = 410
    INVALID_ORDER_COMBINATION = 411
    STOP_WOULD_TRIGGER_IMMEDIATELY = 412
    AMEND_NOT_ALLOWED = 413
    INVALID_BUDGET = 414
    TOO_MANY_OPEN_ORDERS = 415
    SYMBOL_ORDERS_FULL = 416
    TOO_MANY_STOPS = 417


class GatewayCode(IntEnum):
    """Gateway reason codes (900-999): `Error` frames and connection close codes."""

    MALFORMED_FRAME = 900
    FRAME_TOO_LARGE = 901
    UNKNOWN_MESSAGE_TYPE = 902
    UNSUPPORTED_VERSION = 903
    HELLO_REQUIRED = 904
    BAD_REQUEST = 905
    UNAUTHORIZED = 910
    ADMIN_ONLY = 911
    BUSY = 920
    RATE_LIMITED = 921
    TOO_MANY_IN_FLIGHT = 922
    SHUTTING_DOWN = 930
    NOT_FOUND = 940


#: Gateway codes after which the same request may be sent again after a pause (PROTOCOL.md §10).
RETRYABLE_CODES = frozenset({GatewayCode.BUSY, GatewayCode.RATE_LIMITED, GatewayCode.TOO_MANY_IN_FLIGHT})


def code_name(code: int) -> str:
    """The documented name of a reason code, or "Unknown(N)" for a code this SDK does not know."""
    for enum in (RejectReason, GatewayCode):
        try:
            return enum(code).name
        except ValueError:
            continue
    return f"Unknown({code})"


class SeqdError(Exception):
    """Base class of every error this SDK raises."""


class ProtocolError(SeqdError):
    """The server sent something this SDK cannot decode, or the framing was lost."""


class ConnectionClosed(SeqdError):
    """The connection is closed (by either side); `code` is the QUIC application close code."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        # Codes 0x100-0x1ff are TLS alerts (0x100 + alert), not seqd's codes.
        name = f" {code_name(code)}" if code is not None and code in GatewayCode._value2member_map_ else ""
        super().__init__(f"connection closed (code {code}{name}){': ' + reason if reason else ''}")


class GatewayError(SeqdError):
    """An `Error` frame: the gateway refused the request and nothing was sequenced."""

    def __init__(self, code: int, message: str, request_id: int = 0) -> None:
        self.code = code
        self.name = code_name(code)
        self.message = message
        self.request_id = request_id
        super().__init__(f"gateway error {code} {self.name}: {message}")

    @property
    def retryable(self) -> bool:
        """920, 921 and 922 mean nothing happened: send again after a pause."""
        return self.code in RETRYABLE_CODES


class Rejected(SeqdError):
    """The engine sequenced the command and rejected it (a `Rejected` event); nothing changed."""

    def __init__(self, code: int, seq: int) -> None:
        self.code = code
        self.name = code_name(code)
        self.seq = seq
        super().__init__(f"rejected {code} {self.name} (seq {seq})")


class AmountError(SeqdError, ValueError):
    """A decimal amount that is not a whole number of minor units, or out of range."""
