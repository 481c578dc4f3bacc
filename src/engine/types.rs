//! Identifiers, enums and the order state machine shared by commands, events and state.
//!
//! Units: every amount is an `i64` count of an asset's minor units (USDT scale 6: 1 = 0.000001
//! USDT). A price is quote minor units per one whole base unit (10^base_scale base minor units).
//! Inside the book prices are kept in ticks and quantities in lots, so notionals are exact; those
//! are their own types (`Ticks`, `Lots`) in `units.rs`, with the only conversions.

use std::fmt;

/// `Debug` and `Display` of a newtype print the bare number, so dumps, logs and invariant
/// messages read as they did when the ids and units were plain integers.
macro_rules! print_as_number {
    ($name:ident) => {
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}
pub(crate) use print_as_number;

/// Declares an identifier newtype. The ids are all plain integers on the wire and in the state,
/// and several commands take two of them side by side (`CancelOrder { account, order_id }`), so
/// a distinct type per id makes a swapped argument a compile error. `repr(transparent)` keeps
/// the layout of the integer, so the newtypes cost nothing on the hot path and every encoding
/// stays byte-identical. `Debug` and `Display` print the bare number, so dumps and logs read as
/// they did.
macro_rules! id_newtype {
    ($(#[$meta:meta])* $name:ident($inner:ty)) => {
        $(#[$meta])*
        // `Deserialize` for the config file, which names account ids (principal grants).
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
        #[serde(transparent)]
        #[repr(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The integer as it is encoded on the wire and in the journal.
            #[inline(always)]
            pub const fn get(self) -> $inner {
                self.0
            }

            /// The largest id (an upper bound for ranges over ordered keys).
            pub const MAX: $name = $name(<$inner>::MAX);
        }

        /// Widening to `u64`, which the replication rows and SQL parameters use for every id.
        impl From<$name> for u64 {
            #[inline(always)]
            fn from(id: $name) -> u64 {
                u64::from(id.0)
            }
        }

        print_as_number!($name);
    };
}

id_newtype!(
    /// Account identifier chosen by the admin that creates the account. 0 means "none".
    AccountId(u64)
);
id_newtype!(
    /// Asset identifier chosen by the admin. 0 is reserved.
    AssetId(u32)
);
id_newtype!(
    /// Symbol (trading pair) identifier chosen by the admin. 0 means "all symbols" where allowed.
    SymbolId(u32)
);
id_newtype!(
    /// Order identifier: the sequence number of the command that placed the order.
    OrderId(u64)
);
id_newtype!(
    /// Trade identifier: a counter in the state, incremented per fill.
    TradeId(u64)
);

impl AccountId {
    /// No account: the `parent` of a root account.
    pub const NONE: AccountId = AccountId(0);
}

impl AssetId {
    /// Reserved: never an asset.
    pub const NONE: AssetId = AssetId(0);
}

impl SymbolId {
    /// Every symbol, where a command or query allows it (`CancelAll`).
    pub const ALL: SymbolId = SymbolId(0);
}

impl OrderId {
    /// No order (sequences start at 1): a counterparty's order hidden from a trade's viewer.
    pub const NONE: OrderId = OrderId(0);

    /// The order placed by the command at `seq`.
    #[inline(always)]
    pub const fn from_seq(seq: Seq) -> OrderId {
        OrderId(seq)
    }
}

/// Bytes of a [`Code`].
pub const CODE_BYTES: usize = 16;

/// The name people use for an asset (`BTC`) or a symbol (`BTC/USDT`): up to 16 ASCII bytes,
/// left-aligned and padded with zero bytes, so that it stays fixed-size in commands, events and
/// the journal. All zeros is the empty code (an asset or symbol created without one). A valid
/// non-empty code is 1..=16 bytes of `[A-Z0-9._-]` (a symbol's may also hold `/`, conventionally
/// `BASE/QUOTE`) followed only by zero padding. Ordered by bytes, so a sorted set of codes is
/// the same on every replica.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Code(pub [u8; CODE_BYTES]);

/// Which rule a code follows: an asset's code may not hold `/` (so `BASE/QUOTE` reads one way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeOf {
    Asset,
    Symbol,
}

impl Code {
    pub const EMPTY: Code = Code([0; CODE_BYTES]);

    /// The code of `text` if it is a valid non-empty code of `of`; `None` otherwise.
    pub fn parse(text: &str, of: CodeOf) -> Option<Code> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > CODE_BYTES {
            return None;
        }
        let mut code = Code::EMPTY;
        code.0[..bytes.len()].copy_from_slice(bytes);
        code.is_valid(of).then_some(code)
    }

    pub fn is_empty(&self) -> bool {
        self.0 == [0; CODE_BYTES]
    }

    /// Bytes before the zero padding.
    pub fn len(&self) -> usize {
        self.0.iter().position(|&b| b == 0).unwrap_or(CODE_BYTES)
    }

    /// Whether this is a valid non-empty code of `of` (see the type's documentation).
    pub fn is_valid(&self, of: CodeOf) -> bool {
        let len = self.len();
        let allowed = |b: u8| {
            b.is_ascii_uppercase()
                || b.is_ascii_digit()
                || matches!(b, b'.' | b'_' | b'-')
                || (b == b'/' && of == CodeOf::Symbol)
        };
        len > 0 && self.0[..len].iter().all(|&b| allowed(b)) && self.0[len..].iter().all(|&b| b == 0)
    }

    /// The code as text; an invalid code (never stored by the engine) shows its bytes escaped.
    pub fn as_string(&self) -> String {
        self.0[..self.len()].escape_ascii().to_string()
    }
}

impl std::fmt::Debug for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Code({:?})", self.as_string())
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_string())
    }
}

/// Position of a command in the journal, assigned by the sequencer. Starts at 1.
pub type Seq = u64;

macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u8)]
        pub enum $name { $($(#[$vmeta])* $variant = $value),+ }

        impl $name {
            /// Decodes the wire/journal byte; `None` for an unknown value.
            pub fn from_u8(value: u8) -> Option<Self> {
                match value { $($value => Some(Self::$variant),)+ _ => None }
            }
            pub fn as_u8(self) -> u8 { self as u8 }
        }
    };
}

wire_enum!(Side { Buy = 0, Sell = 1 });
wire_enum!(OrderType { Limit = 0, Market = 1, StopLimit = 2, StopMarket = 3 });
wire_enum!(
    /// Post-only is a time in force here: it rests like GTC but is rejected if it would take.
    TimeInForce { Gtc = 0, Ioc = 1, Fok = 2, PostOnly = 3 }
);
wire_enum!(
    /// What happens when an incoming order would match a resting order of the same owner.
    StpMode { CancelResting = 0, CancelIncoming = 1, CancelBoth = 2 }
);
wire_enum!(AccountStatus { Active = 0, Frozen = 1 });
wire_enum!(SymbolStatus { Trading = 0, Halted = 1 });
wire_enum!(WithdrawalStatus { Pending = 0, Approved = 1, Rejected = 2 });
wire_enum!(OrderStatus { New = 0, PartiallyFilled = 1, Filled = 2, Cancelled = 3, Expired = 4, Rejected = 5 });
wire_enum!(
    /// Why a ledger entry exists.
    LedgerKind { Deposit = 0, Withdrawal = 1, Trade = 2, Fee = 3, Transfer = 4, Hold = 5, Release = 6, Adjustment = 7 }
);
wire_enum!(
    /// What a ledger entry's `ref_id` points at.
    RefKind { Order = 0, Trade = 1, Deposit = 2, Withdrawal = 3, Transfer = 4, ClientRef = 5 }
);
wire_enum!(
    /// Why an execution report was emitted.
    ExecKind { New = 0, Trade = 1, Cancelled = 2, Expired = 3, Amended = 4, Triggered = 5 }
);

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

impl OrderType {
    pub fn is_stop(self) -> bool {
        matches!(self, OrderType::StopLimit | OrderType::StopMarket)
    }
    pub fn is_market(self) -> bool {
        matches!(self, OrderType::Market | OrderType::StopMarket)
    }
}

/// The only things that can happen to a live order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderTransition {
    /// A fill; `fully` when nothing remains.
    Fill {
        fully: bool,
    },
    Cancel,
    Expire,
}

impl OrderStatus {
    /// The order state machine: new -> partially filled -> filled | cancelled | expired.
    /// Rejected is only ever a birth state (the order never enters the book). Every
    /// transition not listed here is impossible, and callers treat `None` as a bug.
    pub fn next(self, transition: OrderTransition) -> Option<OrderStatus> {
        use OrderStatus::*;
        use OrderTransition::*;
        match (self, transition) {
            (New | PartiallyFilled, Fill { fully: false }) => Some(PartiallyFilled),
            (New | PartiallyFilled, Fill { fully: true }) => Some(Filled),
            (New | PartiallyFilled, Cancel) => Some(Cancelled),
            (New | PartiallyFilled, Expire) => Some(Expired),
            (Filled | Cancelled | Expired | Rejected, _) => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, OrderStatus::Filled | OrderStatus::Cancelled | OrderStatus::Expired | OrderStatus::Rejected)
    }
}

macro_rules! reject_reasons {
    ($($(#[$vmeta:meta])* $variant:ident = $code:expr),+ $(,)?) => {
        /// Why a command was rejected. The numeric code is part of the protocol and never reused.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[repr(u16)]
        pub enum RejectReason { $($(#[$vmeta])* $variant = $code),+ }

        const REJECT_REASON_COUNT: usize = [$(RejectReason::$variant),+].len();

        /// The reasons numbered 0.. in code order: `RejectReason::index` without a search.
        #[allow(dead_code)] // only its discriminants are read
        enum RejectReasonIndex { $($variant),+ }

        impl RejectReason {
            /// Every reason, in code order (generated with the enum, so it cannot miss one).
            pub const ALL: [RejectReason; REJECT_REASON_COUNT] = [$(RejectReason::$variant),+];

            /// Position of the reason in [`RejectReason::ALL`], for tables indexed by reason.
            pub fn index(self) -> usize {
                match self { $(RejectReason::$variant => RejectReasonIndex::$variant as usize,)+ }
            }

            /// Decodes a wire/journal code; `None` for an unknown code.
            pub fn from_code(code: u16) -> Option<Self> {
                match code { $($code => Some(RejectReason::$variant),)+ _ => None }
            }
        }
    };
}

reject_reasons! {
    // Reference data 1xx (and 111, a repeated request)
    AssetExists = 100,
    UnknownAsset = 101,
    InvalidScale = 102,
    SymbolExists = 103,
    UnknownSymbol = 104,
    InvalidSymbolSpec = 105,
    SymbolHalted = 106,
    /// `ASSETS_MAX` assets exist.
    TooManyAssets = 107,
    /// `SYMBOLS_MAX` symbols exist.
    TooManySymbols = 108,
    /// A code that is not `Code`'s form (asset: `[A-Z0-9._-]`, symbol: also `/`; 1..=16 bytes).
    InvalidCode = 109,
    /// Another asset (for an asset) or symbol (for a symbol) already has this code.
    CodeExists = 110,
    /// A keyed command whose (acting account, request key) the engine remembers: the command
    /// sent first with that key was applied, so this one is not (`REQUEST_KEYS_KEPT`).
    DuplicateRequest = 111,
    // Accounts 2xx
    AccountExists = 200,
    UnknownAccount = 201,
    UnknownParent = 202,
    OwnerMismatch = 203,
    TreeTooDeep = 204,
    AccountFrozen = 205,
    InvalidAccountId = 206,
    /// `ACCOUNTS_MAX` accounts exist.
    TooManyAccounts = 207,
    // Funds 3xx
    InvalidAmount = 300,
    InsufficientFunds = 301,
    Overflow = 302,
    DuplicateDepositRef = 303,
    DuplicateWithdrawalRef = 304,
    UnknownWithdrawal = 305,
    WithdrawalNotPending = 306,
    DuplicateTransferRef = 307,
    SameAccount = 308,
    NotSameTree = 309,
    /// The reference is at or below the largest one its window forgot: it may have been used.
    ReferenceExpired = 310,
    /// The account has `ACCOUNT_PENDING_WITHDRAWALS_MAX` pending withdrawals.
    TooManyPendingWithdrawals = 311,
    // Orders 4xx
    DuplicateClientOrderId = 400,
    UnknownOrder = 401,
    InvalidPrice = 402,
    PriceNotOnTick = 403,
    InvalidQuantity = 404,
    QuantityNotOnLot = 405,
    BelowMinQuantity = 406,
    BelowMinNotional = 407,
    AboveMaxQuantity = 408,
    PriceOutOfBand = 409,
    PostOnlyWouldTake = 410,
    InvalidOrderCombination = 411,
    StopWouldTriggerImmediately = 412,
    AmendNotAllowed = 413,
    InvalidBudget = 414,
    /// The account has `ACCOUNT_OPEN_ORDERS_MAX` live orders.
    TooManyOpenOrders = 415,
    /// The symbol has `SYMBOL_ORDERS_MAX` live orders (resting and waiting stops).
    SymbolOrdersFull = 416,
    /// The symbol has `SYMBOL_STOPS_MAX` stops waiting for their trigger.
    TooManyStops = 417,
}

impl RejectReason {
    pub fn code(self) -> u16 {
        self as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_accept_no_transition() {
        let transitions = [
            OrderTransition::Fill { fully: false },
            OrderTransition::Fill { fully: true },
            OrderTransition::Cancel,
            OrderTransition::Expire,
        ];
        for status in [OrderStatus::Filled, OrderStatus::Cancelled, OrderStatus::Expired, OrderStatus::Rejected] {
            for t in transitions {
                assert_eq!(status.next(t), None, "{status:?} --{t:?}");
            }
        }
        for status in [OrderStatus::New, OrderStatus::PartiallyFilled] {
            assert_eq!(status.next(OrderTransition::Fill { fully: false }), Some(OrderStatus::PartiallyFilled));
            assert_eq!(status.next(OrderTransition::Fill { fully: true }), Some(OrderStatus::Filled));
            assert_eq!(status.next(OrderTransition::Cancel), Some(OrderStatus::Cancelled));
            assert_eq!(status.next(OrderTransition::Expire), Some(OrderStatus::Expired));
        }
    }

    #[test]
    fn enums_round_trip_through_their_wire_byte() {
        for v in 0..=255u8 {
            if let Some(s) = OrderStatus::from_u8(v) {
                assert_eq!(s.as_u8(), v);
            }
            if let Some(s) = LedgerKind::from_u8(v) {
                assert_eq!(s.as_u8(), v);
            }
        }
        assert_eq!(Side::from_u8(2), None);
        for r in RejectReason::ALL {
            assert_eq!(RejectReason::from_code(r.code()), Some(r));
        }
        assert_eq!(RejectReason::from_code(0), None);
        for (i, r) in RejectReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let codes: Vec<u16> = RejectReason::ALL.iter().map(|r| r.code()).collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]), "codes are unique and listed in order");
        assert_eq!(codes.len(), 50);
    }
}
