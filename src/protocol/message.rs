//! Messages: what a frame's `msg_type` and payload mean, and their fixed little-endian layouts.
//!
//! Commands and events are not re-specified here: a `Command` payload is `kind: u16` followed
//! by exactly `codec::encode_command`'s bytes, and every list of events (including order
//! reports in query answers) is `codec`'s event list layout (`journal/FORMAT.md` §10).
//! The byte tables of every message are in `docs/PROTOCOL.md`.
//!
//! The file is over 800 lines (about 860 without its tests) because each message's writer sits
//! next to its reader, one pair per layout, for the 40-odd message types of version 2; split by
//! direction, a layout's two halves would live in two files and drift apart.

use super::error::{EncodeError, GatewayError, MessageError, PayloadError};
use super::frame::Frame;
use super::wire::{put_count_u16, put_string, truncate_utf8, PayloadReader};
use super::PROTOCOL_VERSION;
use crate::cursor::{ByteReader, ByteWriter};
use crate::engine::{
    AccountId, AssetId, AssetView, BalanceView, Code, Command, DepthLevel, Event, OrderId, OrderReport, Seq, Side,
    SymbolId, SymbolStatus, SymbolView, TradeId, Withdrawal, WithdrawalStatus, CODE_BYTES,
};
use crate::wire::codec;

/// Longest principal name in `Welcome`, in UTF-8 bytes.
pub const MAX_PRINCIPAL_BYTES: usize = 256;
/// Longest `Error` message text, in UTF-8 bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 512;

/// Message type numbers: stable, never reused. Client-to-server types have the high bit clear,
/// server-to-client types have it set.
pub mod msg_type {
    pub const HELLO: u8 = 0x01;
    pub const COMMAND: u8 = 0x02;
    pub const PING: u8 = 0x03;
    pub const KEYED_COMMAND: u8 = 0x04;
    pub const QUERY_BALANCES: u8 = 0x10;
    pub const QUERY_SUBTREE_TOTALS: u8 = 0x11;
    pub const QUERY_ORDER: u8 = 0x12;
    pub const QUERY_OPEN_ORDERS: u8 = 0x13;
    pub const QUERY_DEPTH: u8 = 0x14;
    pub const LIST_ASSETS: u8 = 0x15;
    pub const LIST_SYMBOLS: u8 = 0x16;
    pub const QUERY_WITHDRAWAL: u8 = 0x17;
    pub const SUBSCRIBE: u8 = 0x20;
    pub const UNSUBSCRIBE: u8 = 0x21;

    pub const WELCOME: u8 = 0x81;
    pub const ACCEPTED: u8 = 0x82;
    pub const EVENTS: u8 = 0x83;
    pub const ERROR: u8 = 0x84;
    pub const PONG: u8 = 0x85;
    pub const BALANCES: u8 = 0x90;
    pub const SUBTREE_TOTALS: u8 = 0x91;
    pub const ORDER_INFO: u8 = 0x92;
    pub const OPEN_ORDERS: u8 = 0x93;
    pub const DEPTH: u8 = 0x94;
    pub const ASSETS: u8 = 0x95;
    pub const SYMBOLS: u8 = 0x96;
    pub const WITHDRAWAL_INFO: u8 = 0x97;

    /// Whether a message type exists in protocol `version` (types 0x04, 0x15-0x17 and
    /// 0x95-0x97 are version 2's).
    pub fn exists_in(msg_type: u8, version: u8) -> bool {
        version >= 2
            || !matches!(
                msg_type,
                KEYED_COMMAND | LIST_ASSETS | LIST_SYMBOLS | QUERY_WITHDRAWAL | ASSETS | SYMBOLS | WITHDRAWAL_INFO
            )
    }
    pub const DEPTH_SNAPSHOT: u8 = 0xA0;
    pub const MARKET_TRADE: u8 = 0xA1;
    pub const DEPTH_UPDATE: u8 = 0xA2;
    pub const UNSUBSCRIBED: u8 = 0xA3;
}

/// Which way a message type travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    pub fn of(msg_type: u8) -> Direction {
        if msg_type & 0x80 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        }
    }
}

/// Bytes of one `BalanceView` in `Balances`: asset u32, available i64, held i64.
pub const BALANCE_BYTES: usize = 4 + 8 + 8;
/// Bytes of one `AssetTotal` in `SubtreeTotals`: asset u32, total i64.
pub const ASSET_TOTAL_BYTES: usize = 4 + 8;
/// Bytes of one `DepthLevel`: price i64, qty i64, orders u32.
pub const DEPTH_LEVEL_BYTES: usize = 8 + 8 + 4;
/// Bytes of one order report in an event list: tag u8, length u16, 90-byte body.
pub const ORDER_EVENT_BYTES: usize = 1 + 2 + codec::ORDER_BODY_LEN;
/// Bytes of one asset in `Assets`: asset u32, scale u8, code.
pub const ASSET_BYTES: usize = 4 + 1 + CODE_BYTES;
/// Bytes of one symbol in `Symbols`: the 64-byte spec, status u8, code.
pub const SYMBOL_BYTES: usize = codec::SYMBOL_SPEC_LEN + 1 + CODE_BYTES;
/// Payload bytes before the list in `Assets` and `Symbols`: seq, more, count u16.
pub(crate) const REFERENCE_LIST_FIXED_BYTES: usize = 8 + 1 + 2;
/// Payload bytes before the list in `Balances` and `SubtreeTotals`: account, seq, more, count.
pub(crate) const ACCOUNT_LIST_FIXED_BYTES: usize = 8 + 8 + 1 + 2;
/// Payload bytes before the orders in `OpenOrders`: account, seq, more, count u32.
pub(crate) const OPEN_ORDERS_FIXED_BYTES: usize = 8 + 8 + 1 + 4;
/// Payload bytes of `Depth` besides its levels: symbol, book_seq, more, two counts.
pub(crate) const DEPTH_FIXED_BYTES: usize = 4 + 8 + 1 + 2 + 2;

/// The server's answer to `Hello`: who the client is and the limits it must respect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Welcome {
    /// The protocol version both sides now speak.
    pub protocol_version: u8,
    /// Largest frame either side may send, length field included.
    pub max_frame_bytes: u32,
    /// Commands the client may have unanswered at once (0 = no limit).
    pub max_in_flight: u32,
    /// Sustained requests per second (0 = no limit).
    pub rate_per_sec: u32,
    /// Requests the client may send at once after being idle (token bucket size).
    pub burst: u32,
    /// The principal the client certificate maps to.
    pub principal: String,
}

/// An account subtree's total (available + held, descendants included) of one asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssetTotal {
    pub asset: AssetId,
    pub total: i64,
}

/// A symbol's book, aggregated by price level: the answer to `QueryDepth` and the market-data
/// snapshot. Every `MarketTrade` and `DepthUpdate` of the symbol with `md_seq <= book_seq` is
/// already reflected in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepthBook {
    pub symbol: SymbolId,
    pub book_seq: u64,
    /// More frames of this book follow under the same request id.
    pub more: bool,
    /// Best (highest) price first.
    pub bids: Vec<DepthLevel>,
    /// Best (lowest) price first.
    pub asks: Vec<DepthLevel>,
}

/// A public trade: no accounts, no order ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketTrade {
    pub symbol: SymbolId,
    pub md_seq: u64,
    pub trade_id: TradeId,
    /// The sequencer's timestamp of the command that traded (Unix ns).
    pub timestamp_ns: u64,
    pub price: i64,
    pub qty: i64,
    pub quote_qty: i64,
    /// The aggressor's side.
    pub taker_side: Side,
}

impl MarketTrade {
    pub fn from_trade(md_seq: u64, timestamp_ns: u64, trade: &crate::engine::Trade) -> MarketTrade {
        MarketTrade {
            symbol: trade.symbol,
            md_seq,
            trade_id: trade.trade_id,
            timestamp_ns,
            price: trade.price,
            qty: trade.qty,
            quote_qty: trade.quote_qty,
            taker_side: trade.maker_side.opposite(),
        }
    }
}

/// A price level's new aggregate after a change; `qty` 0 means the level is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DepthUpdate {
    pub symbol: SymbolId,
    pub md_seq: u64,
    pub side: Side,
    pub price: i64,
    pub qty: i64,
    pub orders: u32,
}

/// Every protocol message. The frame header carries the type and the request id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    // Client to server.
    /// First frame of a connection; `protocol_version` is the highest version the client speaks.
    Hello {
        protocol_version: u8,
    },
    Command(Command),
    /// Version 2: a command with the client's request key (never 0), answered like `Command`.
    /// The engine applies a command at most once per (acting account, request key) while it
    /// remembers the key (PROTOCOL.md, "Request keys and retries"): resend a command whose
    /// answer was lost with the same key.
    KeyedCommand {
        request_key: u64,
        command: Command,
    },
    Ping,
    QueryBalances {
        account: AccountId,
    },
    QuerySubtreeTotals {
        account: AccountId,
    },
    QueryOrder {
        order_id: OrderId,
    },
    QueryOpenOrders {
        account: AccountId,
    },
    /// `levels` per side; 0 means the whole book.
    QueryDepth {
        symbol: SymbolId,
        levels: u16,
    },
    Subscribe {
        symbol: SymbolId,
    },
    Unsubscribe {
        symbol: SymbolId,
    },
    /// Version 2: every asset with its scale and code.
    ListAssets,
    /// Version 2: every symbol with its spec, status and code.
    ListSymbols,
    /// Version 2: a withdrawal's state.
    QueryWithdrawal {
        withdrawal_id: u64,
    },

    // Server to client.
    Welcome(Welcome),
    /// The command has sequence `seq` and is durable.
    Accepted {
        seq: Seq,
    },
    /// Events of the command with sequence `seq` (an execution-report push when request id is 0).
    Events {
        seq: Seq,
        more: bool,
        events: Vec<Event>,
    },
    /// `code` is a `GatewayError` code.
    Error {
        code: u16,
        message: String,
    },
    Pong,
    Balances {
        account: AccountId,
        seq: Seq,
        more: bool,
        balances: Vec<BalanceView>,
    },
    SubtreeTotals {
        account: AccountId,
        seq: Seq,
        more: bool,
        totals: Vec<AssetTotal>,
    },
    OrderInfo {
        seq: Seq,
        order: OrderReport,
    },
    OpenOrders {
        account: AccountId,
        seq: Seq,
        more: bool,
        orders: Vec<OrderReport>,
    },
    Depth(DepthBook),
    DepthSnapshot(DepthBook),
    MarketTrade(MarketTrade),
    DepthUpdate(DepthUpdate),
    Unsubscribed {
        symbol: SymbolId,
    },
    Assets {
        seq: Seq,
        more: bool,
        assets: Vec<AssetView>,
    },
    Symbols {
        seq: Seq,
        more: bool,
        symbols: Vec<SymbolView>,
    },
    WithdrawalInfo {
        seq: Seq,
        withdrawal_id: u64,
        withdrawal: Withdrawal,
    },
}

impl Message {
    pub fn msg_type(&self) -> u8 {
        use msg_type::*;
        match self {
            Message::Hello { .. } => HELLO,
            Message::Command(_) => COMMAND,
            Message::KeyedCommand { .. } => KEYED_COMMAND,
            Message::Ping => PING,
            Message::QueryBalances { .. } => QUERY_BALANCES,
            Message::QuerySubtreeTotals { .. } => QUERY_SUBTREE_TOTALS,
            Message::QueryOrder { .. } => QUERY_ORDER,
            Message::QueryOpenOrders { .. } => QUERY_OPEN_ORDERS,
            Message::QueryDepth { .. } => QUERY_DEPTH,
            Message::Subscribe { .. } => SUBSCRIBE,
            Message::Unsubscribe { .. } => UNSUBSCRIBE,
            Message::Welcome(_) => WELCOME,
            Message::Accepted { .. } => ACCEPTED,
            Message::Events { .. } => EVENTS,
            Message::Error { .. } => ERROR,
            Message::Pong => PONG,
            Message::Balances { .. } => BALANCES,
            Message::SubtreeTotals { .. } => SUBTREE_TOTALS,
            Message::OrderInfo { .. } => ORDER_INFO,
            Message::OpenOrders { .. } => OPEN_ORDERS,
            Message::Depth(_) => DEPTH,
            Message::DepthSnapshot(_) => DEPTH_SNAPSHOT,
            Message::MarketTrade(_) => MARKET_TRADE,
            Message::DepthUpdate(_) => DEPTH_UPDATE,
            Message::Unsubscribed { .. } => UNSUBSCRIBED,
            Message::ListAssets => LIST_ASSETS,
            Message::ListSymbols => LIST_SYMBOLS,
            Message::QueryWithdrawal { .. } => QUERY_WITHDRAWAL,
            Message::Assets { .. } => ASSETS,
            Message::Symbols { .. } => SYMBOLS,
            Message::WithdrawalInfo { .. } => WITHDRAWAL_INFO,
        }
    }

    pub fn direction(&self) -> Direction {
        Direction::of(self.msg_type())
    }

    /// An `Error` for a gateway error, its text the description plus `detail`, cut to fit.
    pub fn error(error: GatewayError, detail: &str) -> Message {
        let text = if detail.is_empty() {
            error.description().to_owned()
        } else {
            format!("{}: {detail}", error.description())
        };
        Message::Error { code: error.code(), message: truncate_utf8(&text, MAX_ERROR_MESSAGE_BYTES).to_owned() }
    }

    /// True when this frame's list continues in the next frame with the same request id.
    pub fn more(&self) -> bool {
        match self {
            Message::Events { more, .. }
            | Message::Balances { more, .. }
            | Message::SubtreeTotals { more, .. }
            | Message::OpenOrders { more, .. }
            | Message::Assets { more, .. }
            | Message::Symbols { more, .. } => *more,
            Message::Depth(book) | Message::DepthSnapshot(book) => book.more,
            _ => false,
        }
    }

    /// Appends a continuation frame's lists to this message (for a receiver reassembling a
    /// split answer). Gives `part` back if it does not continue this message: another type,
    /// another subject or sequence, or this message had `more` unset.
    pub fn continue_with(&mut self, part: Message) -> Result<(), Message> {
        if !self.more() {
            return Err(part);
        }
        match (self, part) {
            (Message::Events { seq, more, events }, Message::Events { seq: s, more: m, events: e }) if *seq == s => {
                events.extend(e);
                *more = m;
            }
            (
                Message::Balances { account, seq, more, balances },
                Message::Balances { account: a, seq: s, more: m, balances: b },
            ) if (*account, *seq) == (a, s) => {
                balances.extend(b);
                *more = m;
            }
            (
                Message::SubtreeTotals { account, seq, more, totals },
                Message::SubtreeTotals { account: a, seq: s, more: m, totals: t },
            ) if (*account, *seq) == (a, s) => {
                totals.extend(t);
                *more = m;
            }
            (
                Message::OpenOrders { account, seq, more, orders },
                Message::OpenOrders { account: a, seq: s, more: m, orders: o },
            ) if (*account, *seq) == (a, s) => {
                orders.extend(o);
                *more = m;
            }
            (Message::Assets { seq, more, assets }, Message::Assets { seq: s, more: m, assets: a }) if *seq == s => {
                assets.extend(a);
                *more = m;
            }
            (Message::Symbols { seq, more, symbols }, Message::Symbols { seq: s, more: m, symbols: l })
                if *seq == s =>
            {
                symbols.extend(l);
                *more = m;
            }
            (Message::Depth(book), Message::Depth(next))
            | (Message::DepthSnapshot(book), Message::DepthSnapshot(next))
                if (book.symbol, book.book_seq) == (next.symbol, next.book_seq) =>
            {
                book.bids.extend(next.bids);
                book.asks.extend(next.asks);
                book.more = next.more;
            }
            (_, part) => return Err(part),
        }
        Ok(())
    }

    /// Appends the payload (everything after the frame header) in the current version.
    pub fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.encode_payload_as(PROTOCOL_VERSION, out)
    }

    /// Appends the payload as protocol `version` lays it out (§4: only order reports differ).
    pub fn encode_payload_as(&self, version: u8, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let w = &mut ByteWriter(out);
        match self {
            Message::Hello { protocol_version } => {
                w.u8(*protocol_version);
            }
            Message::Command(command) => put_command(out, command),
            Message::KeyedCommand { request_key, command } => {
                w.u64(*request_key);
                put_command(out, command);
            }
            Message::Ping | Message::Pong | Message::ListAssets | Message::ListSymbols => {}
            Message::QueryWithdrawal { withdrawal_id } => {
                w.u64(*withdrawal_id);
            }
            Message::Assets { seq, more, assets } => put_assets(out, *seq, *more, assets)?,
            Message::Symbols { seq, more, symbols } => put_symbols(out, *seq, *more, symbols)?,
            Message::WithdrawalInfo { seq, withdrawal_id, withdrawal: x } => {
                w.u64(*seq).u64(*withdrawal_id).u64(x.account.0).u32(x.asset.0).i64(x.amount).u64(x.client_ref);
                w.u8(x.status.as_u8());
            }
            Message::QueryBalances { account }
            | Message::QuerySubtreeTotals { account }
            | Message::QueryOpenOrders { account } => {
                w.u64(account.0);
            }
            Message::QueryOrder { order_id } => {
                w.u64(order_id.0);
            }
            Message::QueryDepth { symbol, levels } => {
                w.u32(symbol.0).u16(*levels);
            }
            Message::Subscribe { symbol } | Message::Unsubscribe { symbol } | Message::Unsubscribed { symbol } => {
                w.u32(symbol.0);
            }
            Message::Welcome(welcome) => put_welcome(out, welcome)?,
            Message::Accepted { seq } => {
                w.u64(*seq);
            }
            Message::Events { seq, more, events } => put_events(out, *seq, *more, events, version),
            Message::Error { code, message } => {
                w.u16(*code);
                put_string(out, "message", message, MAX_ERROR_MESSAGE_BYTES)?;
            }
            Message::Balances { account, seq, more, balances } => put_balances(out, *account, *seq, *more, balances)?,
            Message::SubtreeTotals { account, seq, more, totals } => put_totals(out, *account, *seq, *more, totals)?,
            Message::OrderInfo { seq, order } => {
                w.u64(*seq);
                put_event(out, &Event::Order(*order), version);
            }
            Message::OpenOrders { account, seq, more, orders } => {
                put_open_orders(out, *account, *seq, *more, orders, version)
            }
            Message::Depth(book) | Message::DepthSnapshot(book) => {
                put_depth(out, book.symbol, book.book_seq, book.more, &book.bids, &book.asks)?
            }
            Message::MarketTrade(t) => {
                w.u32(t.symbol.0).u64(t.md_seq).u64(t.trade_id.0).u64(t.timestamp_ns);
                w.i64(t.price).i64(t.qty).i64(t.quote_qty).u8(t.taker_side.as_u8());
            }
            Message::DepthUpdate(u) => {
                w.u32(u.symbol.0).u64(u.md_seq).u8(u.side.as_u8()).i64(u.price).i64(u.qty).u32(u.orders);
            }
        }
        Ok(())
    }

    /// Decodes a frame of either direction. Checks the header's version and flags first, and
    /// that the message type and command kind exist in the frame's version (§4).
    pub fn decode(frame: &Frame) -> Result<Message, MessageError> {
        if !super::is_supported_version(frame.version) {
            return Err(MessageError::UnsupportedVersion { version: frame.version });
        }
        if frame.flags != 0 {
            return Err(MessageError::ReservedFlags { flags: frame.flags });
        }
        if !msg_type::exists_in(frame.msg_type, frame.version) {
            return Err(MessageError::UnknownType { msg_type: frame.msg_type });
        }
        let message = Message::decode_payload(frame.msg_type, frame.payload)?;
        if let Message::Command(command) = &message {
            if frame.version < 2 && command_has_code(command) {
                let kind = u16::from_le_bytes([frame.payload[0], frame.payload[1]]);
                let error = PayloadError::Codec(codec::CodecError::UnknownCommandKind(kind));
                return Err(MessageError::BadPayload { msg_type: frame.msg_type, error });
            }
        }
        Ok(message)
    }

    /// Decodes a frame received by the server: server-to-client types are refused.
    pub fn decode_from_client(frame: &Frame) -> Result<Message, MessageError> {
        Message::decode_expecting(frame, Direction::ClientToServer)
    }

    /// Decodes a frame received by a client: client-to-server types are refused.
    pub fn decode_from_server(frame: &Frame) -> Result<Message, MessageError> {
        Message::decode_expecting(frame, Direction::ServerToClient)
    }

    fn decode_expecting(frame: &Frame, direction: Direction) -> Result<Message, MessageError> {
        let message = Message::decode(frame)?;
        if message.direction() != direction {
            return Err(MessageError::WrongDirection { msg_type: frame.msg_type });
        }
        Ok(message)
    }

    /// Decodes a payload of the given message type (the header already checked).
    pub fn decode_payload(msg_type: u8, payload: &[u8]) -> Result<Message, MessageError> {
        let bad_payload = |error: PayloadError| MessageError::BadPayload { msg_type, error };
        let mut cursor = ByteReader::new(payload);
        let message = read_message(msg_type, &mut cursor).map_err(bad_payload)?;
        let message = message.ok_or(MessageError::UnknownType { msg_type })?;
        cursor.finish().map_err(|e| bad_payload(e.into()))?;
        Ok(message)
    }
}

/// Reads one message's fields; `None` for a type that does not exist.
fn read_message(msg_type: u8, c: &mut ByteReader) -> Result<Option<Message>, PayloadError> {
    use msg_type::*;
    Ok(Some(match msg_type {
        HELLO => Message::Hello { protocol_version: c.u8()? },
        COMMAND => Message::Command(read_command(c)?),
        KEYED_COMMAND => {
            let request_key = c.u64()?;
            if request_key == 0 {
                // 0 would mean "no key": a command without a key is sent as `Command`.
                return Err(PayloadError::BadValue { field: "request_key", value: 0 });
            }
            Message::KeyedCommand { request_key, command: read_command(c)? }
        }
        PING => Message::Ping,
        QUERY_BALANCES => Message::QueryBalances { account: AccountId(c.u64()?) },
        QUERY_SUBTREE_TOTALS => Message::QuerySubtreeTotals { account: AccountId(c.u64()?) },
        QUERY_ORDER => Message::QueryOrder { order_id: OrderId(c.u64()?) },
        QUERY_OPEN_ORDERS => Message::QueryOpenOrders { account: AccountId(c.u64()?) },
        QUERY_DEPTH => Message::QueryDepth { symbol: SymbolId(c.u32()?), levels: c.u16()? },
        SUBSCRIBE => Message::Subscribe { symbol: SymbolId(c.u32()?) },
        UNSUBSCRIBE => Message::Unsubscribe { symbol: SymbolId(c.u32()?) },
        WELCOME => Message::Welcome(read_welcome(c)?),
        ACCEPTED => Message::Accepted { seq: c.u64()? },
        EVENTS => {
            let (seq, more) = (c.u64()?, c.bool("more")?);
            let mut events = Vec::new();
            codec::decode_event_record(c.rest(), &mut events)?;
            Message::Events { seq, more, events }
        }
        ERROR => Message::Error { code: c.u16()?, message: c.string("message", MAX_ERROR_MESSAGE_BYTES)? },
        PONG => Message::Pong,
        BALANCES => {
            let (account, seq, more) = (c.u64()?, c.u64()?, c.bool("more")?);
            Message::Balances {
                account: AccountId(account),
                seq,
                more,
                balances: read_list(c, BALANCE_BYTES, read_balance)?,
            }
        }
        SUBTREE_TOTALS => {
            let (account, seq, more) = (c.u64()?, c.u64()?, c.bool("more")?);
            Message::SubtreeTotals {
                account: AccountId(account),
                seq,
                more,
                totals: read_list(c, ASSET_TOTAL_BYTES, read_asset_total)?,
            }
        }
        ORDER_INFO => Message::OrderInfo { seq: c.u64()?, order: read_single_order(c)? },
        OPEN_ORDERS => {
            let (account, seq, more) = (c.u64()?, c.u64()?, c.bool("more")?);
            Message::OpenOrders { account: AccountId(account), seq, more, orders: read_order_list(c)? }
        }
        DEPTH => Message::Depth(read_depth(c)?),
        DEPTH_SNAPSHOT => Message::DepthSnapshot(read_depth(c)?),
        MARKET_TRADE => Message::MarketTrade(MarketTrade {
            symbol: SymbolId(c.u32()?),
            md_seq: c.u64()?,
            trade_id: TradeId(c.u64()?),
            timestamp_ns: c.u64()?,
            price: c.i64()?,
            qty: c.i64()?,
            quote_qty: c.i64()?,
            taker_side: c.enum_u8("taker_side", Side::from_u8)?,
        }),
        DEPTH_UPDATE => Message::DepthUpdate(DepthUpdate {
            symbol: SymbolId(c.u32()?),
            md_seq: c.u64()?,
            side: c.enum_u8("side", Side::from_u8)?,
            price: c.i64()?,
            qty: c.i64()?,
            orders: c.u32()?,
        }),
        UNSUBSCRIBED => Message::Unsubscribed { symbol: SymbolId(c.u32()?) },
        LIST_ASSETS => Message::ListAssets,
        LIST_SYMBOLS => Message::ListSymbols,
        QUERY_WITHDRAWAL => Message::QueryWithdrawal { withdrawal_id: c.u64()? },
        ASSETS => {
            let (seq, more) = (c.u64()?, c.bool("more")?);
            Message::Assets { seq, more, assets: read_list(c, ASSET_BYTES, read_asset)? }
        }
        SYMBOLS => {
            let (seq, more) = (c.u64()?, c.bool("more")?);
            Message::Symbols { seq, more, symbols: read_list(c, SYMBOL_BYTES, read_symbol)? }
        }
        WITHDRAWAL_INFO => {
            let (seq, withdrawal_id) = (c.u64()?, c.u64()?);
            let withdrawal = Withdrawal {
                account: AccountId(c.u64()?),
                asset: AssetId(c.u32()?),
                amount: c.i64()?,
                client_ref: c.u64()?,
                status: c.enum_u8("withdrawal_status", WithdrawalStatus::from_u8)?,
            };
            Message::WithdrawalInfo { seq, withdrawal_id, withdrawal }
        }
        _ => return Ok(None),
    }))
}

/// Whether a command is one of the kinds version 2 added (a code; `journal/FORMAT.md` §10.1).
fn command_has_code(command: &Command) -> bool {
    matches!(command, Command::CreateAssetWithCode { .. } | Command::CreateSymbolWithCode { .. })
}

/// Whether an event exists in protocol `version`: the code events (tags 12, 13) are version 2's;
/// a version-1 connection does not get them (its clients know assets and symbols by id).
pub(crate) fn event_exists_in(event: &Event, version: u8) -> bool {
    version >= 2 || !matches!(event, Event::AssetCode { .. } | Event::SymbolCode { .. })
}

pub(crate) fn put_assets(out: &mut Vec<u8>, seq: Seq, more: bool, assets: &[AssetView]) -> Result<(), EncodeError> {
    ByteWriter(out).u64(seq).u8(more as u8);
    put_count_u16(out, "assets", assets.len())?;
    for a in assets {
        ByteWriter(out).u32(a.asset.0).u8(a.scale).bytes(&a.code.0);
    }
    Ok(())
}

fn read_code(c: &mut ByteReader) -> Result<Code, PayloadError> {
    let mut code = Code::EMPTY;
    for byte in code.0.iter_mut() {
        *byte = c.u8()?;
    }
    Ok(code)
}

fn read_asset(c: &mut ByteReader) -> Result<AssetView, PayloadError> {
    Ok(AssetView { asset: AssetId(c.u32()?), scale: c.u8()?, code: read_code(c)? })
}

pub(crate) fn put_symbols(out: &mut Vec<u8>, seq: Seq, more: bool, symbols: &[SymbolView]) -> Result<(), EncodeError> {
    ByteWriter(out).u64(seq).u8(more as u8);
    put_count_u16(out, "symbols", symbols.len())?;
    for s in symbols {
        codec::write_spec(&mut ByteWriter(out), &s.spec);
        ByteWriter(out).u8(s.status.as_u8()).bytes(&s.code.0);
    }
    Ok(())
}

fn read_symbol(c: &mut ByteReader) -> Result<SymbolView, PayloadError> {
    let spec = codec::read_spec(c)?;
    Ok(SymbolView { spec, status: c.enum_u8("symbol_status", SymbolStatus::from_u8)?, code: read_code(c)? })
}

/// `kind: u16` then exactly the codec's payload for that kind.
fn put_command(out: &mut Vec<u8>, command: &Command) {
    let kind_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let kind = codec::encode_command(command, out);
    out[kind_at..kind_at + 2].copy_from_slice(&kind.to_le_bytes());
}

fn read_command(c: &mut ByteReader) -> Result<Command, PayloadError> {
    let kind = c.u16()?;
    Ok(codec::decode_command(kind, c.rest())?)
}

fn put_welcome(out: &mut Vec<u8>, welcome: &Welcome) -> Result<(), EncodeError> {
    ByteWriter(out)
        .u8(welcome.protocol_version)
        .u32(welcome.max_frame_bytes)
        .u32(welcome.max_in_flight)
        .u32(welcome.rate_per_sec)
        .u32(welcome.burst);
    put_string(out, "principal", &welcome.principal, MAX_PRINCIPAL_BYTES)
}

fn read_welcome(c: &mut ByteReader) -> Result<Welcome, PayloadError> {
    Ok(Welcome {
        protocol_version: c.u8()?,
        max_frame_bytes: c.u32()?,
        max_in_flight: c.u32()?,
        rate_per_sec: c.u32()?,
        burst: c.u32()?,
        principal: c.string("principal", MAX_PRINCIPAL_BYTES)?,
    })
}

/// `seq`, `more`, then the codec's event-log record payload (count u32, events).
pub(crate) fn put_events(out: &mut Vec<u8>, seq: Seq, more: bool, events: &[Event], version: u8) {
    let count = events.iter().filter(|e| event_exists_in(e, version)).count();
    ByteWriter(out).u64(seq).u8(more as u8).u32(count as u32);
    for event in events.iter().filter(|e| event_exists_in(e, version)) {
        put_event(out, event, version);
    }
}

/// Appends one event in the layout of protocol `version`: the codec's (`journal/FORMAT.md`
/// §10.2), except that version 1 ends an order report before `stop_price` (an 82-byte body).
pub(crate) fn put_event(out: &mut Vec<u8>, event: &Event, version: u8) {
    let start = out.len();
    codec::encode_event(event, out);
    if version == 1 && matches!(event, Event::Order(_)) {
        let body_len = codec::ORDER_BODY_LEN_WITHOUT_STOP_PRICE;
        out.truncate(start + 3 + body_len);
        out[start + 1..start + 3].copy_from_slice(&(body_len as u16).to_le_bytes());
    }
    // Other events are the codec's own, whose lengths `codec::encode_event` asserts.
    if matches!(event, Event::Order(_)) {
        debug_assert_eq!(out.len() - start, order_event_bytes(version), "the documented length");
    }
}

/// Bytes of one order report event (tag, length, body) in protocol `version`.
pub(crate) fn order_event_bytes(version: u8) -> usize {
    match version {
        1 => 1 + 2 + codec::ORDER_BODY_LEN_WITHOUT_STOP_PRICE,
        _ => ORDER_EVENT_BYTES,
    }
}

pub(crate) fn put_balances(
    out: &mut Vec<u8>,
    account: AccountId,
    seq: Seq,
    more: bool,
    balances: &[BalanceView],
) -> Result<(), EncodeError> {
    ByteWriter(out).u64(account.0).u64(seq).u8(more as u8);
    put_count_u16(out, "balances", balances.len())?;
    for b in balances {
        ByteWriter(out).u32(b.asset.0).i64(b.available).i64(b.held);
    }
    Ok(())
}

fn read_balance(c: &mut ByteReader) -> Result<BalanceView, PayloadError> {
    Ok(BalanceView { asset: AssetId(c.u32()?), available: c.i64()?, held: c.i64()? })
}

pub(crate) fn put_totals(
    out: &mut Vec<u8>,
    account: AccountId,
    seq: Seq,
    more: bool,
    totals: &[AssetTotal],
) -> Result<(), EncodeError> {
    ByteWriter(out).u64(account.0).u64(seq).u8(more as u8);
    put_count_u16(out, "totals", totals.len())?;
    for t in totals {
        ByteWriter(out).u32(t.asset.0).i64(t.total);
    }
    Ok(())
}

fn read_asset_total(c: &mut ByteReader) -> Result<AssetTotal, PayloadError> {
    Ok(AssetTotal { asset: AssetId(c.u32()?), total: c.i64()? })
}

/// Orders as an event-log record of `Event::Order`s: the codec's order report layout.
pub(crate) fn put_open_orders(
    out: &mut Vec<u8>,
    account: AccountId,
    seq: Seq,
    more: bool,
    orders: &[OrderReport],
    version: u8,
) {
    ByteWriter(out).u64(account.0).u64(seq).u8(more as u8).u32(orders.len() as u32);
    for order in orders {
        put_event(out, &Event::Order(*order), version);
    }
}

fn read_order_list(c: &mut ByteReader) -> Result<Vec<OrderReport>, PayloadError> {
    let mut events = Vec::new();
    codec::decode_event_record(c.rest(), &mut events)?;
    events.into_iter().map(into_order).collect()
}

fn read_single_order(c: &mut ByteReader) -> Result<OrderReport, PayloadError> {
    let mut events = Vec::new();
    codec::decode_events(c.rest(), &mut events)?;
    match <[Event; 1]>::try_from(events) {
        Ok([event]) => into_order(event),
        Err(events) => Err(PayloadError::BadValue { field: "order event count", value: events.len() as u64 }),
    }
}

fn into_order(event: Event) -> Result<OrderReport, PayloadError> {
    match event {
        Event::Order(report) => Ok(report),
        _ => Err(PayloadError::NotAnOrder),
    }
}

pub(crate) fn put_depth(
    out: &mut Vec<u8>,
    symbol: SymbolId,
    book_seq: u64,
    more: bool,
    bids: &[DepthLevel],
    asks: &[DepthLevel],
) -> Result<(), EncodeError> {
    ByteWriter(out).u32(symbol.0).u64(book_seq).u8(more as u8);
    put_levels(out, "bids", bids)?;
    put_levels(out, "asks", asks)
}

fn put_levels(out: &mut Vec<u8>, field: &'static str, levels: &[DepthLevel]) -> Result<(), EncodeError> {
    put_count_u16(out, field, levels.len())?;
    for level in levels {
        ByteWriter(out).i64(level.price).i64(level.qty).u32(level.orders);
    }
    Ok(())
}

fn read_depth(c: &mut ByteReader) -> Result<DepthBook, PayloadError> {
    let (symbol, book_seq, more) = (c.u32()?, c.u64()?, c.bool("more")?);
    let bids = read_list(c, DEPTH_LEVEL_BYTES, read_level)?;
    let asks = read_list(c, DEPTH_LEVEL_BYTES, read_level)?;
    Ok(DepthBook { symbol: SymbolId(symbol), book_seq, more, bids, asks })
}

fn read_level(c: &mut ByteReader) -> Result<DepthLevel, PayloadError> {
    Ok(DepthLevel { price: c.i64()?, qty: c.i64()?, orders: c.u32()? })
}

/// A u16 count then that many fixed-size items.
fn read_list<T>(
    c: &mut ByteReader,
    item_bytes: usize,
    read_item: fn(&mut ByteReader) -> Result<T, PayloadError>,
) -> Result<Vec<T>, PayloadError> {
    let count = c.count_u16(item_bytes)?;
    (0..count).map(|_| read_item(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ExecKind, OrderStatus, OrderType, TimeInForce};

    fn order(order_id: u64) -> OrderReport {
        OrderReport {
            order_id: OrderId(order_id),
            account: AccountId(7),
            symbol: SymbolId(1),
            client_order_id: 3,
            exec: ExecKind::New,
            status: OrderStatus::New,
            side: Side::Sell,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            price: 100,
            qty: 5,
            filled_qty: 0,
            remaining_qty: 5,
            filled_quote: 0,
            fees_paid: 0,
            stop_price: 0,
        }
    }

    #[test]
    fn an_order_report_takes_the_documented_bytes() {
        let mut out = Vec::new();
        codec::encode_event(&Event::Order(order(1)), &mut out);
        assert_eq!(out.len(), ORDER_EVENT_BYTES);
    }

    #[test]
    fn a_command_payload_is_its_kind_then_the_codec_bytes() {
        let command = Command::CancelOrder { account: AccountId(7), order_id: OrderId(9) };
        let mut out = Vec::new();
        Message::Command(command).encode_payload(&mut out).unwrap();
        let mut codec_bytes = Vec::new();
        let kind = codec::encode_command(&command, &mut codec_bytes);
        assert_eq!(out[..2], kind.to_le_bytes());
        assert_eq!(out[2..], codec_bytes[..]);
    }

    #[test]
    fn a_keyed_command_payload_is_the_key_then_a_command_payload() {
        let command = Command::CancelOrder { account: AccountId(7), order_id: OrderId(9) };
        let mut plain = Vec::new();
        Message::Command(command).encode_payload(&mut plain).unwrap();
        let mut keyed = Vec::new();
        let message = Message::KeyedCommand { request_key: u64::MAX - 1, command };
        message.encode_payload(&mut keyed).unwrap();
        assert_eq!(keyed[..8], (u64::MAX - 1).to_le_bytes());
        assert_eq!(keyed[8..], plain[..]);
        assert_eq!(Message::decode_payload(msg_type::KEYED_COMMAND, &keyed), Ok(message));
        keyed[..8].fill(0);
        assert_eq!(
            Message::decode_payload(msg_type::KEYED_COMMAND, &keyed),
            Err(MessageError::BadPayload {
                msg_type: msg_type::KEYED_COMMAND,
                error: PayloadError::BadValue { field: "request_key", value: 0 }
            })
        );
    }

    #[test]
    fn open_orders_must_hold_only_order_reports() {
        let mut out = Vec::new();
        ByteWriter(&mut out).u64(7).u64(1).u8(0);
        codec::encode_event_record(
            &[Event::Order(order(1)), Event::AssetCreated { asset: AssetId(1), scale: 2 }],
            &mut out,
        );
        assert_eq!(
            Message::decode_payload(msg_type::OPEN_ORDERS, &out),
            Err(MessageError::BadPayload { msg_type: msg_type::OPEN_ORDERS, error: PayloadError::NotAnOrder })
        );
    }

    #[test]
    fn an_error_message_is_cut_to_its_bound_on_a_char_boundary() {
        let Message::Error { code, message } = Message::error(GatewayError::Busy, &"é".repeat(1000)) else {
            unreachable!()
        };
        assert_eq!(code, 920);
        assert!(message.len() <= MAX_ERROR_MESSAGE_BYTES && message.starts_with("busy, retry: é"));
    }

    #[test]
    fn continuation_needs_the_same_subject() {
        let mut first = Message::Events { seq: 5, more: true, events: vec![] };
        let other_seq = Message::Events { seq: 6, more: false, events: vec![] };
        assert_eq!(first.continue_with(other_seq.clone()), Err(other_seq));
        assert_eq!(first.continue_with(Message::Pong), Err(Message::Pong));
        let last =
            Message::Events { seq: 5, more: false, events: vec![Event::AssetCreated { asset: AssetId(1), scale: 0 }] };
        assert_eq!(first.continue_with(last.clone()), Ok(()));
        assert_eq!(first, last);
        assert_eq!(first.continue_with(last.clone()), Err(last), "a message without `more` takes no continuation");
    }
}
