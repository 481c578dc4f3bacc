"""seqd: an asyncio Python client for the seqd sequencer (protocol versions 1 and 2, docs/PROTOCOL.md),
and of a seqd cluster (`ClusterClient`: several nodes, following the leader)."""

from .book import Applied, BookEvent, Gap, Ignored, L2Book, Synced
from .client import CONNECT_TIMEOUT_S, Client, CommandResult, ConnectParams, Push, Subscription
from .cluster import FAILOVER_TIMEOUT_S, ClusterClient, LeaderFollower, random_request_key
from .codec import (
    AccountStatus,
    Exec,
    LedgerKind,
    OrderStatus,
    OrderType,
    RefKind,
    Side,
    Stp,
    SymbolSpec,
    SymbolStatus,
    TimeInForce,
    WithdrawalStatus,
)
from .errors import (
    AmountError,
    ConnectionClosed,
    GatewayCode,
    GatewayError,
    ProtocolError,
    Rejected,
    RejectReason,
    SeqdError,
    code_name,
)
from .money import ReferenceData, to_decimal, to_minor

__version__ = "0.1.0"

__all__ = [
    "CONNECT_TIMEOUT_S",
    "FAILOVER_TIMEOUT_S",
    "AccountStatus",
    "AmountError",
    "Applied",
    "BookEvent",
    "Client",
    "ClusterClient",
    "CommandResult",
    "ConnectParams",
    "ConnectionClosed",
    "Exec",
    "Gap",
    "GatewayCode",
    "GatewayError",
    "Ignored",
    "L2Book",
    "LeaderFollower",
    "LedgerKind",
    "OrderStatus",
    "OrderType",
    "ProtocolError",
    "Push",
    "RefKind",
    "ReferenceData",
    "RejectReason",
    "Rejected",
    "SeqdError",
    "Side",
    "Stp",
    "Subscription",
    "SymbolSpec",
    "SymbolStatus",
    "Synced",
    "TimeInForce",
    "WithdrawalStatus",
    "code_name",
    "random_request_key",
    "to_decimal",
    "to_minor",
]
