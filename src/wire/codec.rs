//! Fixed-layout binary encoding of commands and events: the payload of journal records and of
//! protocol frames. Little-endian, no padding, no varints: a decoder in any language is a list
//! of fixed offsets (see `journal/FORMAT.md`).
//!
//! A command is (kind: u16, payload); the kind travels in the journal record header or the frame
//! header. An event list is a sequence of (tag: u8, length: u16, body) so a reader can skip tags
//! it does not know. Decoding checks lengths and every enum byte and never panics.
//!
//! The file is over 800 lines only with its tests (each layout byte by byte, the split of long
//! event lists): every encoder sits beside its decoder, as the tables of FORMAT.md §10 do.

use crate::cursor::{ByteReader, ByteWriter, ReadError};
use crate::engine::*;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unknown command kind {0}")]
    UnknownCommandKind(u16),
    #[error("command kind {kind} needs {expected} payload bytes, got {got}")]
    BadLength { kind: u16, expected: usize, got: usize },
    #[error("invalid value {value} for field {field}")]
    BadEnum { field: &'static str, value: u16 },
    #[error("event list truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown event tag {0}")]
    UnknownEventTag(u8),
    #[error("{0} bytes after the end of a record")]
    TrailingBytes(usize),
    #[error("bad split-record manifest: {0}")]
    BadManifest(&'static str),
    #[error("a keyed record with request key 0 (a command without a key has its own kind)")]
    ZeroRequestKey,
}

/// Every command and event has a fixed length checked before its fields are read, so a
/// truncated read or trailing bytes inside one would be a wrong length table; enum bytes are
/// the peer's (or the disk's) fault.
impl From<ReadError> for CodecError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated { at, .. } => CodecError::Truncated(at),
            ReadError::BadValue { field, value, .. } => CodecError::BadEnum { field, value: u16::from(value) },
            ReadError::Trailing { extra } => CodecError::TrailingBytes(extra),
        }
    }
}

/// Command kinds: stable numbers, never reused.
pub mod kind {
    pub const CREATE_ASSET: u16 = 1;
    pub const CREATE_SYMBOL: u16 = 2;
    pub const UPDATE_SYMBOL: u16 = 3;
    pub const SET_SYMBOL_STATUS: u16 = 4;
    pub const CREATE_ACCOUNT: u16 = 5;
    pub const SET_ACCOUNT_STATUS: u16 = 6;
    pub const DEPOSIT: u16 = 7;
    pub const WITHDRAW_REQUEST: u16 = 8;
    pub const WITHDRAW_APPROVE: u16 = 9;
    pub const WITHDRAW_REJECT: u16 = 10;
    pub const TRANSFER: u16 = 11;
    pub const PLACE_ORDER: u16 = 12;
    pub const CANCEL_ORDER: u16 = 13;
    pub const CANCEL_BY_CLIENT_ID: u16 = 14;
    pub const CANCEL_ALL: u16 = 15;
    pub const AMEND_ORDER: u16 = 16;
    pub const CREATE_ASSET_WITH_CODE: u16 = 17;
    pub const CREATE_SYMBOL_WITH_CODE: u16 = 18;
    /// Not a command kind: the input-journal record of a command sent with a request key
    /// (`encode_input`). Never a protocol `Command` kind (`decode_command` refuses it).
    pub const KEYED: u16 = 19;
}

/// Bytes of an encoded `SymbolSpec`.
pub const SYMBOL_SPEC_LEN: usize = 4 * 3 + 8 * 5 + 4 * 3;
const NEW_ORDER_LEN: usize = 8 + 4 + 8 + 4 + 8 * 4;

/// Payload length of each command kind.
pub fn command_payload_len(kind: u16) -> Option<usize> {
    Some(match kind {
        kind::CREATE_ASSET => 4 + 1,
        kind::CREATE_SYMBOL | kind::UPDATE_SYMBOL => SYMBOL_SPEC_LEN,
        kind::SET_SYMBOL_STATUS => 4 + 1,
        kind::CREATE_ACCOUNT => 8 * 3,
        kind::SET_ACCOUNT_STATUS => 8 + 1,
        kind::DEPOSIT | kind::WITHDRAW_REQUEST => 8 + 4 + 8 + 8,
        kind::WITHDRAW_APPROVE | kind::WITHDRAW_REJECT => 8,
        kind::TRANSFER => 8 + 8 + 4 + 8 + 8,
        kind::PLACE_ORDER => NEW_ORDER_LEN,
        kind::CANCEL_ORDER | kind::CANCEL_BY_CLIENT_ID => 8 + 8,
        kind::CANCEL_ALL => 8 + 4,
        kind::AMEND_ORDER => 8 * 4,
        kind::CREATE_ASSET_WITH_CODE => 4 + 1 + CODE_BYTES,
        kind::CREATE_SYMBOL_WITH_CODE => SYMBOL_SPEC_LEN + CODE_BYTES,
        _ => return None,
    })
}

/// Appends a `SymbolSpec` as FORMAT.md §10.1 lays it out (the protocol's `Symbols` reuses it).
pub fn write_spec(w: &mut ByteWriter, s: &SymbolSpec) {
    w.u32(s.symbol.0).u32(s.base.0).u32(s.quote.0);
    w.i64(s.tick_size).i64(s.lot_size).i64(s.min_qty).i64(s.min_notional).i64(s.max_order_qty);
    w.u32(s.maker_fee_ppm).u32(s.taker_fee_ppm).u32(s.price_band_bps);
}

/// A code's 16 bytes as they are: validity is the engine's rule (a reject reason), not the
/// codec's, so a journaled command with a bad code replays to the same rejection.
fn read_code(r: &mut ByteReader) -> Result<Code, CodecError> {
    Ok(Code(r.array::<CODE_BYTES>()?))
}

/// Reads a `SymbolSpec` as `write_spec` lays it out (the protocol's `Symbols` reuses it).
pub fn read_spec(r: &mut ByteReader) -> Result<SymbolSpec, ReadError> {
    Ok(SymbolSpec {
        symbol: SymbolId(r.u32()?),
        base: AssetId(r.u32()?),
        quote: AssetId(r.u32()?),
        tick_size: r.i64()?,
        lot_size: r.i64()?,
        min_qty: r.i64()?,
        min_notional: r.i64()?,
        max_order_qty: r.i64()?,
        maker_fee_ppm: r.u32()?,
        taker_fee_ppm: r.u32()?,
        price_band_bps: r.u32()?,
    })
}

/// Appends the command's payload to `out` and returns its kind.
pub fn encode_command(command: &Command, out: &mut Vec<u8>) -> u16 {
    let start = out.len();
    let kind = write_command(command, out);
    // The documented length (FORMAT.md §10.1), which decoding requires exactly.
    assert_eq!(Some(out.len() - start), command_payload_len(kind), "command kind {kind} encoded to a wrong length");
    kind
}

fn write_command(command: &Command, out: &mut Vec<u8>) -> u16 {
    let w = &mut ByteWriter(out);
    match *command {
        Command::CreateAsset { asset, scale } => {
            w.u32(asset.0).u8(scale);
            kind::CREATE_ASSET
        }
        Command::CreateSymbol(spec) => {
            write_spec(w, &spec);
            kind::CREATE_SYMBOL
        }
        Command::CreateAssetWithCode { asset, scale, code } => {
            w.u32(asset.0).u8(scale).bytes(&code.0);
            kind::CREATE_ASSET_WITH_CODE
        }
        Command::CreateSymbolWithCode { spec, code } => {
            write_spec(w, &spec);
            w.bytes(&code.0);
            kind::CREATE_SYMBOL_WITH_CODE
        }
        Command::UpdateSymbol(spec) => {
            write_spec(w, &spec);
            kind::UPDATE_SYMBOL
        }
        Command::SetSymbolStatus { symbol, status } => {
            w.u32(symbol.0).u8(status.as_u8());
            kind::SET_SYMBOL_STATUS
        }
        Command::CreateAccount { account, parent, owner } => {
            w.u64(account.0).u64(parent.0).u64(owner);
            kind::CREATE_ACCOUNT
        }
        Command::SetAccountStatus { account, status } => {
            w.u64(account.0).u8(status.as_u8());
            kind::SET_ACCOUNT_STATUS
        }
        Command::Deposit { account, asset, amount, external_ref } => {
            w.u64(account.0).u32(asset.0).i64(amount).u64(external_ref);
            kind::DEPOSIT
        }
        Command::WithdrawRequest { account, asset, amount, client_ref } => {
            w.u64(account.0).u32(asset.0).i64(amount).u64(client_ref);
            kind::WITHDRAW_REQUEST
        }
        Command::WithdrawApprove { withdrawal_id } => {
            w.u64(withdrawal_id);
            kind::WITHDRAW_APPROVE
        }
        Command::WithdrawReject { withdrawal_id } => {
            w.u64(withdrawal_id);
            kind::WITHDRAW_REJECT
        }
        Command::Transfer { from, to, asset, amount, client_ref } => {
            w.u64(from.0).u64(to.0).u32(asset.0).i64(amount).u64(client_ref);
            kind::TRANSFER
        }
        Command::PlaceOrder(o) => {
            w.u64(o.account.0).u32(o.symbol.0).u64(o.client_order_id);
            w.u8(o.side.as_u8()).u8(o.order_type.as_u8()).u8(o.tif.as_u8()).u8(o.stp.as_u8());
            w.i64(o.price).i64(o.stop_price).i64(o.qty).i64(o.quote_budget);
            kind::PLACE_ORDER
        }
        Command::CancelOrder { account, order_id } => {
            w.u64(account.0).u64(order_id.0);
            kind::CANCEL_ORDER
        }
        Command::CancelByClientId { account, client_order_id } => {
            w.u64(account.0).u64(client_order_id);
            kind::CANCEL_BY_CLIENT_ID
        }
        Command::CancelAll { account, symbol } => {
            w.u64(account.0).u32(symbol.0);
            kind::CANCEL_ALL
        }
        Command::AmendOrder { account, order_id, price, qty } => {
            w.u64(account.0).u64(order_id.0).i64(price).i64(qty);
            kind::AMEND_ORDER
        }
    }
}

/// Decodes a command payload of the given kind. The payload length must be exact.
pub fn decode_command(kind: u16, payload: &[u8]) -> Result<Command, CodecError> {
    let expected = command_payload_len(kind).ok_or(CodecError::UnknownCommandKind(kind))?;
    if payload.len() != expected {
        return Err(CodecError::BadLength { kind, expected, got: payload.len() });
    }
    let r = &mut ByteReader::new(payload);
    let command = match kind {
        kind::CREATE_ASSET => Command::CreateAsset { asset: AssetId(r.u32()?), scale: r.u8()? },
        kind::CREATE_SYMBOL => Command::CreateSymbol(read_spec(r)?),
        kind::UPDATE_SYMBOL => Command::UpdateSymbol(read_spec(r)?),
        kind::CREATE_ASSET_WITH_CODE => {
            Command::CreateAssetWithCode { asset: AssetId(r.u32()?), scale: r.u8()?, code: read_code(r)? }
        }
        kind::CREATE_SYMBOL_WITH_CODE => Command::CreateSymbolWithCode { spec: read_spec(r)?, code: read_code(r)? },
        kind::SET_SYMBOL_STATUS => Command::SetSymbolStatus {
            symbol: SymbolId(r.u32()?),
            status: r.enum_u8("symbol_status", SymbolStatus::from_u8)?,
        },
        kind::CREATE_ACCOUNT => {
            Command::CreateAccount { account: AccountId(r.u64()?), parent: AccountId(r.u64()?), owner: r.u64()? }
        }
        kind::SET_ACCOUNT_STATUS => Command::SetAccountStatus {
            account: AccountId(r.u64()?),
            status: r.enum_u8("account_status", AccountStatus::from_u8)?,
        },
        kind::DEPOSIT => Command::Deposit {
            account: AccountId(r.u64()?),
            asset: AssetId(r.u32()?),
            amount: r.i64()?,
            external_ref: r.u64()?,
        },
        kind::WITHDRAW_REQUEST => Command::WithdrawRequest {
            account: AccountId(r.u64()?),
            asset: AssetId(r.u32()?),
            amount: r.i64()?,
            client_ref: r.u64()?,
        },
        kind::WITHDRAW_APPROVE => Command::WithdrawApprove { withdrawal_id: r.u64()? },
        kind::WITHDRAW_REJECT => Command::WithdrawReject { withdrawal_id: r.u64()? },
        kind::TRANSFER => Command::Transfer {
            from: AccountId(r.u64()?),
            to: AccountId(r.u64()?),
            asset: AssetId(r.u32()?),
            amount: r.i64()?,
            client_ref: r.u64()?,
        },
        kind::PLACE_ORDER => Command::PlaceOrder(NewOrder {
            account: AccountId(r.u64()?),
            symbol: SymbolId(r.u32()?),
            client_order_id: r.u64()?,
            side: r.enum_u8("side", Side::from_u8)?,
            order_type: r.enum_u8("order_type", OrderType::from_u8)?,
            tif: r.enum_u8("tif", TimeInForce::from_u8)?,
            stp: r.enum_u8("stp", StpMode::from_u8)?,
            price: r.i64()?,
            stop_price: r.i64()?,
            qty: r.i64()?,
            quote_budget: r.i64()?,
        }),
        kind::CANCEL_ORDER => Command::CancelOrder { account: AccountId(r.u64()?), order_id: OrderId(r.u64()?) },
        kind::CANCEL_BY_CLIENT_ID => {
            Command::CancelByClientId { account: AccountId(r.u64()?), client_order_id: r.u64()? }
        }
        kind::CANCEL_ALL => Command::CancelAll { account: AccountId(r.u64()?), symbol: SymbolId(r.u32()?) },
        kind::AMEND_ORDER => Command::AmendOrder {
            account: AccountId(r.u64()?),
            order_id: OrderId(r.u64()?),
            price: r.i64()?,
            qty: r.i64()?,
        },
        _ => unreachable!("kind checked by command_payload_len"),
    };
    r.finish()?;
    Ok(command)
}

/// Bytes of a keyed record's payload before its command's payload: request key u64, kind u16.
pub const KEYED_HEADER_BYTES: usize = 8 + 2;

/// Appends the input-journal payload of a command sent with `request_key` and returns the
/// record kind (`journal/FORMAT.md` §10.1). Key 0 (no key): the command's own kind and payload,
/// byte for byte what was written before request keys existed. Otherwise kind 19 (`KEYED`):
/// the key, the command's kind, then its payload.
pub fn encode_input(command: &Command, request_key: u64, out: &mut Vec<u8>) -> u16 {
    if request_key == 0 {
        return encode_command(command, out);
    }
    ByteWriter(out).u64(request_key);
    let kind_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let kind = encode_command(command, out);
    out[kind_at..kind_at + 2].copy_from_slice(&kind.to_le_bytes());
    kind::KEYED
}

/// Decodes an input-journal record into (request key, command); the key is 0 for a record of a
/// command kind. A keyed record must hold a non-zero key and exactly one command (never another
/// keyed record).
pub fn decode_input(kind: u16, payload: &[u8]) -> Result<(u64, Command), CodecError> {
    if kind != kind::KEYED {
        return Ok((0, decode_command(kind, payload)?));
    }
    if payload.len() < KEYED_HEADER_BYTES {
        let (expected, got) = (KEYED_HEADER_BYTES, payload.len());
        return Err(CodecError::BadLength { kind, expected, got });
    }
    let r = &mut ByteReader::new(payload);
    let (request_key, inner_kind) = (r.u64()?, r.u16()?);
    if request_key == 0 {
        return Err(CodecError::ZeroRequestKey);
    }
    // `decode_command` knows no kind 19: a keyed record inside a keyed record is refused there.
    Ok((request_key, decode_command(inner_kind, r.rest())?))
}

/// Event tags: stable numbers, never reused.
pub mod tag {
    pub const REJECTED: u8 = 1;
    pub const ASSET_CREATED: u8 = 2;
    pub const SYMBOL_UPDATED: u8 = 3;
    pub const ACCOUNT_CREATED: u8 = 4;
    pub const ACCOUNT_STATUS_CHANGED: u8 = 5;
    pub const LEDGER: u8 = 6;
    pub const DEPOSIT_CREDITED: u8 = 7;
    pub const WITHDRAWAL_UPDATED: u8 = 8;
    pub const TRANSFERRED: u8 = 9;
    pub const ORDER: u8 = 10;
    pub const TRADE: u8 = 11;
    pub const ASSET_CODE: u8 = 12;
    pub const SYMBOL_CODE: u8 = 13;
}

/// Body of an `Order` event: ids, six enum bytes, then seven i64 fields ending with `stop_price`.
pub const ORDER_BODY_LEN: usize = 8 + 8 + 4 + 8 + 6 + 8 * 7;

/// The `Order` body written before `stop_price` was appended (`journal/FORMAT.md` §10.2): event
/// logs of earlier versions hold it, so readers accept it, with `stop_price` 0.
pub const ORDER_BODY_LEN_WITHOUT_STOP_PRICE: usize = ORDER_BODY_LEN - 8;

/// Encoded bytes of the largest event (tag, length, body): an `Order` event.
pub const EVENT_BYTES_MAX: usize = 3 + ORDER_BODY_LEN;

/// Largest event-record payload any single command can produce: the count, then at most
/// `EVENTS_PER_COMMAND_MAX` events of at most `EVENT_BYTES_MAX` bytes (about 14 MB).
pub const EVENT_RECORD_BYTES_MAX: usize = 4 + EVENTS_PER_COMMAND_MAX * EVENT_BYTES_MAX;

fn event_body_len(tag: u8) -> Option<usize> {
    Some(match tag {
        tag::REJECTED => 2,
        tag::ASSET_CREATED => 4 + 1,
        tag::SYMBOL_UPDATED => SYMBOL_SPEC_LEN + 1,
        tag::ACCOUNT_CREATED => 8 * 3,
        tag::ACCOUNT_STATUS_CHANGED => 8 + 1,
        tag::LEDGER => 8 + 4 + 1 + 8 * 4 + 1 + 8,
        tag::DEPOSIT_CREDITED => 8 + 4 + 8 + 8,
        tag::WITHDRAWAL_UPDATED => 8 + 8 + 4 + 8 + 8 + 1,
        tag::TRANSFERRED => 8 + 8 + 4 + 8 + 8,
        tag::ORDER => ORDER_BODY_LEN,
        tag::TRADE => 8 + 4 + 8 * 3 + 8 * 4 + 1 + 8 * 2,
        tag::ASSET_CODE | tag::SYMBOL_CODE => 4 + CODE_BYTES,
        _ => return None,
    })
}

/// Appends one event as (tag, body length, body).
pub fn encode_event(event: &Event, out: &mut Vec<u8>) {
    let tag = event_tag(event);
    let len = event_body_len(tag).expect("every event has a length");
    let start = out.len();
    let w = &mut ByteWriter(out);
    w.u8(tag).u16(len as u16);
    match *event {
        Event::Rejected { reason } => {
            w.u16(reason.code());
        }
        Event::AssetCreated { asset, scale } => {
            w.u32(asset.0).u8(scale);
        }
        Event::SymbolUpdated { spec, status } => {
            write_spec(w, &spec);
            w.u8(status.as_u8());
        }
        Event::AccountCreated { account, parent, owner } => {
            w.u64(account.0).u64(parent.0).u64(owner);
        }
        Event::AssetCode { asset: AssetId(id), code } | Event::SymbolCode { symbol: SymbolId(id), code } => {
            w.u32(id).bytes(&code.0);
        }
        Event::AccountStatusChanged { account, status } => {
            w.u64(account.0).u8(status.as_u8());
        }
        Event::Ledger(e) => {
            w.u64(e.account.0).u32(e.asset.0).u8(e.kind.as_u8());
            w.i64(e.available_delta).i64(e.held_delta).i64(e.available_after).i64(e.held_after);
            w.u8(e.ref_kind.as_u8()).u64(e.ref_id);
        }
        Event::DepositCredited { account, asset, amount, external_ref } => {
            w.u64(account.0).u32(asset.0).i64(amount).u64(external_ref);
        }
        Event::WithdrawalUpdated { withdrawal_id, account, asset, amount, client_ref, status } => {
            w.u64(withdrawal_id).u64(account.0).u32(asset.0).i64(amount).u64(client_ref).u8(status.as_u8());
        }
        Event::Transferred { from, to, asset, amount, client_ref } => {
            w.u64(from.0).u64(to.0).u32(asset.0).i64(amount).u64(client_ref);
        }
        Event::Order(o) => {
            w.u64(o.order_id.0).u64(o.account.0).u32(o.symbol.0).u64(o.client_order_id);
            w.u8(o.exec.as_u8())
                .u8(o.status.as_u8())
                .u8(o.side.as_u8())
                .u8(o.order_type.as_u8())
                .u8(o.tif.as_u8())
                .u8(0);
            w.i64(o.price).i64(o.qty).i64(o.filled_qty).i64(o.remaining_qty).i64(o.filled_quote).i64(o.fees_paid);
            w.i64(o.stop_price);
        }
        Event::Trade(t) => {
            w.u64(t.trade_id.0).u32(t.symbol.0).i64(t.price).i64(t.qty).i64(t.quote_qty);
            w.u64(t.maker_order.0).u64(t.taker_order.0).u64(t.maker_account.0).u64(t.taker_account.0);
            w.u8(t.maker_side.as_u8()).i64(t.maker_fee).i64(t.taker_fee);
        }
    }
    // Tag, length and exactly the documented body (FORMAT.md §10.2): a reader skips by it.
    assert_eq!(out.len() - start, 3 + len, "event tag {tag} encoded to a wrong length");
}

fn event_tag(event: &Event) -> u8 {
    match event {
        Event::Rejected { .. } => tag::REJECTED,
        Event::AssetCreated { .. } => tag::ASSET_CREATED,
        Event::SymbolUpdated { .. } => tag::SYMBOL_UPDATED,
        Event::AccountCreated { .. } => tag::ACCOUNT_CREATED,
        Event::AccountStatusChanged { .. } => tag::ACCOUNT_STATUS_CHANGED,
        Event::Ledger(_) => tag::LEDGER,
        Event::DepositCredited { .. } => tag::DEPOSIT_CREDITED,
        Event::WithdrawalUpdated { .. } => tag::WITHDRAWAL_UPDATED,
        Event::Transferred { .. } => tag::TRANSFERRED,
        Event::Order(_) => tag::ORDER,
        Event::Trade(_) => tag::TRADE,
        Event::AssetCode { .. } => tag::ASSET_CODE,
        Event::SymbolCode { .. } => tag::SYMBOL_CODE,
    }
}

/// Appends a command's whole event list.
pub fn encode_events(events: &[Event], out: &mut Vec<u8>) {
    for event in events {
        encode_event(event, out);
    }
}

fn decode_event_body(tag: u8, r: &mut ByteReader) -> Result<Event, CodecError> {
    Ok(match tag {
        tag::REJECTED => {
            let code = r.u16()?;
            Event::Rejected {
                reason: RejectReason::from_code(code).ok_or(CodecError::BadEnum { field: "reason", value: code })?,
            }
        }
        tag::ASSET_CREATED => Event::AssetCreated { asset: AssetId(r.u32()?), scale: r.u8()? },
        tag::SYMBOL_UPDATED => {
            Event::SymbolUpdated { spec: read_spec(r)?, status: r.enum_u8("symbol_status", SymbolStatus::from_u8)? }
        }
        tag::ACCOUNT_CREATED => {
            Event::AccountCreated { account: AccountId(r.u64()?), parent: AccountId(r.u64()?), owner: r.u64()? }
        }
        tag::ASSET_CODE => Event::AssetCode { asset: AssetId(r.u32()?), code: read_code(r)? },
        tag::SYMBOL_CODE => Event::SymbolCode { symbol: SymbolId(r.u32()?), code: read_code(r)? },
        tag::ACCOUNT_STATUS_CHANGED => Event::AccountStatusChanged {
            account: AccountId(r.u64()?),
            status: r.enum_u8("account_status", AccountStatus::from_u8)?,
        },
        tag::LEDGER => Event::Ledger(LedgerEntry {
            account: AccountId(r.u64()?),
            asset: AssetId(r.u32()?),
            kind: r.enum_u8("ledger_kind", LedgerKind::from_u8)?,
            available_delta: r.i64()?,
            held_delta: r.i64()?,
            available_after: r.i64()?,
            held_after: r.i64()?,
            ref_kind: r.enum_u8("ref_kind", RefKind::from_u8)?,
            ref_id: r.u64()?,
        }),
        tag::DEPOSIT_CREDITED => Event::DepositCredited {
            account: AccountId(r.u64()?),
            asset: AssetId(r.u32()?),
            amount: r.i64()?,
            external_ref: r.u64()?,
        },
        tag::WITHDRAWAL_UPDATED => Event::WithdrawalUpdated {
            withdrawal_id: r.u64()?,
            account: AccountId(r.u64()?),
            asset: AssetId(r.u32()?),
            amount: r.i64()?,
            client_ref: r.u64()?,
            status: r.enum_u8("withdrawal_status", WithdrawalStatus::from_u8)?,
        },
        tag::TRANSFERRED => Event::Transferred {
            from: AccountId(r.u64()?),
            to: AccountId(r.u64()?),
            asset: AssetId(r.u32()?),
            amount: r.i64()?,
            client_ref: r.u64()?,
        },
        tag::ORDER => {
            let (order_id, account, symbol, client_order_id) = (r.u64()?, r.u64()?, r.u32()?, r.u64()?);
            let exec = r.enum_u8("exec", ExecKind::from_u8)?;
            let status = r.enum_u8("status", OrderStatus::from_u8)?;
            let side = r.enum_u8("side", Side::from_u8)?;
            let order_type = r.enum_u8("order_type", OrderType::from_u8)?;
            let tif = r.enum_u8("tif", TimeInForce::from_u8)?;
            r.u8()?;
            Event::Order(OrderReport {
                order_id: OrderId(order_id),
                account: AccountId(account),
                symbol: SymbolId(symbol),
                client_order_id,
                exec,
                status,
                side,
                order_type,
                tif,
                price: r.i64()?,
                qty: r.i64()?,
                filled_qty: r.i64()?,
                remaining_qty: r.i64()?,
                filled_quote: r.i64()?,
                fees_paid: r.i64()?,
                stop_price: if r.remaining() >= 8 { r.i64()? } else { 0 },
            })
        }
        tag::TRADE => Event::Trade(Trade {
            trade_id: TradeId(r.u64()?),
            symbol: SymbolId(r.u32()?),
            price: r.i64()?,
            qty: r.i64()?,
            quote_qty: r.i64()?,
            maker_order: OrderId(r.u64()?),
            taker_order: OrderId(r.u64()?),
            maker_account: AccountId(r.u64()?),
            taker_account: AccountId(r.u64()?),
            maker_side: r.enum_u8("maker_side", Side::from_u8)?,
            maker_fee: r.i64()?,
            taker_fee: r.i64()?,
        }),
        other => return Err(CodecError::UnknownEventTag(other)),
    })
}

/// Decodes a command's event list, appending to `out`.
pub fn decode_events(bytes: &[u8], out: &mut Vec<Event>) -> Result<(), CodecError> {
    let r = &mut ByteReader::new(bytes);
    while r.remaining() > 0 {
        // A cut event is reported at its start, whichever of its parts is cut.
        let at = r.position();
        let truncated = |_| CodecError::Truncated(at);
        let tag = r.u8()?;
        let len = r.u16().map_err(truncated)? as usize;
        let body = r.bytes(len).map_err(truncated)?;
        let expected = event_body_len(tag).ok_or(CodecError::UnknownEventTag(tag))?;
        let legacy_order = tag == tag::ORDER && len == ORDER_BODY_LEN_WITHOUT_STOP_PRICE;
        if len != expected && !legacy_order {
            return Err(CodecError::BadLength { kind: tag as u16, expected, got: len });
        }
        let body = &mut ByteReader::new(body);
        out.push(decode_event_body(tag, body)?);
        body.finish()?;
    }
    Ok(())
}

/// Record kind of an event-log record holding a command's whole event list (one per command,
/// same sequence as its input record).
pub const EVENTS_RECORD_KIND: u16 = 0x8000;
/// Record kind of an event-log record whose event list was split into parts
/// (`journal/FORMAT.md` 10.3): the payload is a [`SplitManifest`]; the events are in the parts log.
pub const EVENTS_SPLIT_RECORD_KIND: u16 = 0x8001;
/// Record kind of a record of the parts log (`events/parts/`): one part of a split event list.
pub const EVENTS_PART_RECORD_KIND: u16 = 0x8002;

/// Largest payload of any event-log record (whole list, manifest or part). Fixed, so where a
/// list is split depends on its events alone, never on the segment size or on where the
/// segment happens to be. Half of the smallest segment the daemon accepts (16 KiB), so a
/// record always fits an empty segment with room to spare; large enough that only lists of
/// more than about 88 events (a sweep of about ten fills) are split, small enough that the
/// power-loss tests' 16 KiB segments roll often.
pub const MAX_EVENT_RECORD_PAYLOAD_BYTES: usize = 8 * 1024;

/// Bytes before the events of a whole-list record: the event count (u32).
const EVENT_RECORD_HEADER_BYTES: usize = 4;
/// Bytes before the events of a part: seq u64, part index u32, event count u32.
pub const PART_HEADER_BYTES: usize = 16;
/// Payload length of a split record (the manifest).
pub const SPLIT_MANIFEST_BYTES: usize = 56;

/// Encoded size of one event (tag, length, body), from the fixed body lengths.
fn encoded_event_len(event: &Event) -> usize {
    3 + event_body_len(event_tag(event)).expect("every event has a length")
}

/// Encodes one event-log record payload: the event count (u32), then the events. The count
/// keeps the payload non-empty for a command with no events and lets readers check it.
pub fn encode_event_record(events: &[Event], out: &mut Vec<u8>) {
    ByteWriter(out).u32(events.len() as u32);
    encode_events(events, out);
}

/// Decodes an event-log record payload, appending to `out`.
pub fn decode_event_record(payload: &[u8], out: &mut Vec<Event>) -> Result<(), CodecError> {
    let r = &mut ByteReader::new(payload);
    let count = r.u32()? as usize;
    let before = out.len();
    decode_events(r.rest(), out)?;
    if out.len() - before != count {
        return Err(CodecError::BadLength { kind: EVENTS_RECORD_KIND, expected: count, got: out.len() - before });
    }
    Ok(())
}

/// Whether a command's events fit one whole-list record, or must be split into parts.
pub fn event_list_fits_one_record(events: &[Event]) -> bool {
    let mut len_bytes = EVENT_RECORD_HEADER_BYTES;
    for event in events {
        len_bytes += encoded_event_len(event);
        if len_bytes > MAX_EVENT_RECORD_PAYLOAD_BYTES {
            return false;
        }
    }
    true
}

/// The split rule: the event ranges of the parts of a list that does not fit one record.
/// Greedy, in list order: an event joins the current part if the part's payload (16-byte part
/// header plus its events) stays within [`MAX_EVENT_RECORD_PAYLOAD_BYTES`], else it starts the
/// next part. A function of the events alone.
pub fn split_event_list(events: &[Event]) -> SplitParts<'_> {
    SplitParts { events, start: 0 }
}

/// Iterator over the event ranges of the parts, see [`split_event_list`].
pub struct SplitParts<'a> {
    events: &'a [Event],
    start: usize,
}

impl Iterator for SplitParts<'_> {
    type Item = std::ops::Range<usize>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.start >= self.events.len() {
            return None;
        }
        let start = self.start;
        let mut len_bytes = PART_HEADER_BYTES;
        let mut end = start;
        while end < self.events.len() {
            let event_len_bytes = encoded_event_len(&self.events[end]);
            // Every event fits an empty part (events are at most a few hundred bytes; tested),
            // so each part takes at least one event.
            if end > start && len_bytes + event_len_bytes > MAX_EVENT_RECORD_PAYLOAD_BYTES {
                break;
            }
            len_bytes += event_len_bytes;
            end += 1;
        }
        self.start = end;
        Some(start..end)
    }
}

/// Encodes one part's payload: the command's seq, the part index, the event count, the events.
pub fn encode_event_part(seq: Seq, index: u32, events: &[Event], out: &mut Vec<u8>) {
    ByteWriter(out).u64(seq).u32(index).u32(events.len() as u32);
    encode_events(events, out);
}

/// A part's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartHeader {
    pub seq: Seq,
    pub index: u32,
    pub event_count: u32,
}

/// Decodes a part's payload, appending its events to `out`.
pub fn decode_event_part(payload: &[u8], out: &mut Vec<Event>) -> Result<PartHeader, CodecError> {
    if payload.len() < PART_HEADER_BYTES {
        return Err(CodecError::Truncated(0));
    }
    let r = &mut ByteReader::new(payload);
    let header = PartHeader { seq: r.u64()?, index: r.u32()?, event_count: r.u32()? };
    let before = out.len();
    decode_events(r.rest(), out)?;
    let got = out.len() - before;
    if got != header.event_count as usize {
        let expected = header.event_count as usize;
        return Err(CodecError::BadLength { kind: EVENTS_PART_RECORD_KIND, expected, got });
    }
    Ok(header)
}

/// The payload of a split record: which parts hold the command's events, and a hash that
/// binds them to this record (so the event log's hash chain covers the parts too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitManifest {
    /// Events of the command, over all parts.
    pub event_count: u64,
    /// Seq, in the parts log, of part 0; part `i` is at `first_part_seq + i`.
    pub first_part_seq: u64,
    /// Number of parts (at least 2).
    pub part_count: u32,
    /// BLAKE3-256 of the parts' payloads, concatenated in part order.
    pub parts_hash: [u8; 32],
}

impl SplitManifest {
    pub fn encode(&self, out: &mut Vec<u8>) {
        ByteWriter(out)
            .u64(self.event_count)
            .u64(self.first_part_seq)
            .u32(self.part_count)
            .u32(0)
            .bytes(&self.parts_hash);
    }

    pub fn decode(payload: &[u8]) -> Result<SplitManifest, CodecError> {
        if payload.len() != SPLIT_MANIFEST_BYTES {
            let (expected, got) = (SPLIT_MANIFEST_BYTES, payload.len());
            return Err(CodecError::BadLength { kind: EVENTS_SPLIT_RECORD_KIND, expected, got });
        }
        let r = &mut ByteReader::new(payload);
        let (event_count, first_part_seq, part_count, reserved) = (r.u64()?, r.u64()?, r.u32()?, r.u32()?);
        if reserved != 0 {
            return Err(CodecError::BadManifest("reserved bytes are not zero"));
        }
        if part_count < 2 {
            return Err(CodecError::BadManifest("fewer than 2 parts"));
        }
        let parts_hash = r.array()?;
        r.finish()?;
        Ok(SplitManifest { event_count, first_part_seq, part_count, parts_hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::workload::{exchange_core_mix, SplitMix64, WorkloadSpec};

    /// The id newtypes are `repr(transparent)` integers: the payloads are the little-endian
    /// integers FORMAT.md §10.1 lays out, written here by hand (not by the codec), so a newtype
    /// that changed a width or an order would fail here and in the golden journal.
    #[test]
    fn id_newtypes_keep_the_documented_bytes() {
        assert_eq!(std::mem::size_of::<AccountId>(), 8);
        assert_eq!(std::mem::size_of::<OrderId>(), 8);
        assert_eq!(std::mem::size_of::<AssetId>(), 4);
        assert_eq!(std::mem::size_of::<SymbolId>(), 4);
        let cases: [(Command, u16, Vec<u8>); 3] = [
            (
                Command::CancelOrder {
                    account: AccountId(0x0102_0304_0506_0708),
                    order_id: OrderId(0x1112_1314_1516_1718),
                },
                kind::CANCEL_ORDER,
                vec![8, 7, 6, 5, 4, 3, 2, 1, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11],
            ),
            (
                Command::CancelAll { account: AccountId(7), symbol: SymbolId(0x0A0B_0C0D) },
                kind::CANCEL_ALL,
                vec![7, 0, 0, 0, 0, 0, 0, 0, 0x0D, 0x0C, 0x0B, 0x0A],
            ),
            (
                Command::Deposit { account: AccountId(2), asset: AssetId(3), amount: -1, external_ref: 0x99 },
                kind::DEPOSIT,
                [&[2, 0, 0, 0, 0, 0, 0, 0][..], &[3, 0, 0, 0], &[0xFF; 8], &[0x99, 0, 0, 0, 0, 0, 0, 0]].concat(),
            ),
        ];
        for (command, expected_kind, golden) in cases {
            let mut out = Vec::new();
            assert_eq!(encode_command(&command, &mut out), expected_kind);
            assert_eq!(out, golden, "{command:?}");
            assert_eq!(decode_command(expected_kind, &golden).unwrap(), command);
        }
    }

    /// Every command and event of a real workload (plus a demo of each rare kind) round-trips.
    #[test]
    fn workload_commands_and_events_round_trip() {
        let workload = exchange_core_mix(WorkloadSpec { accounts: 20, resting_orders: 50, commands: 3_000, seed: 3 });
        let mut engine = Engine::new();
        let mut events = Vec::new();
        let (mut buf, mut decoded) = (Vec::new(), Vec::new());
        let mut kinds_seen = std::collections::BTreeSet::new();
        for (i, command) in workload.setup.iter().chain(&workload.commands).enumerate() {
            buf.clear();
            let kind = encode_command(command, &mut buf);
            kinds_seen.insert(kind);
            assert_eq!(buf.len(), command_payload_len(kind).unwrap());
            assert_eq!(decode_command(kind, &buf).unwrap(), *command);
            events.clear();
            engine.apply(i as Seq + 1, 0, command, &mut events);
            buf.clear();
            encode_events(&events, &mut buf);
            decoded.clear();
            decode_events(&buf, &mut decoded).unwrap();
            assert_eq!(decoded, events);
        }
        assert!(kinds_seen.len() >= 6, "workload should exercise several kinds: {kinds_seen:?}");
    }

    #[test]
    fn every_command_kind_round_trips() {
        let mut buf = Vec::new();
        for (i, command) in crate::testkit::samples::every_command().into_iter().enumerate() {
            buf.clear();
            let kind = encode_command(&command, &mut buf);
            assert_eq!(kind as usize, i + 1, "kinds are numbered in this order");
            assert_eq!(decode_command(kind, &buf), Ok(command));
            assert!(matches!(decode_command(kind, &buf[..buf.len() - 1]), Err(CodecError::BadLength { .. })));
        }
    }

    /// A keyed record is the key, the command's kind and its payload; a record without a key
    /// is the command's own record, unchanged. Every cut, a zero key and a nested keyed record
    /// are errors.
    #[test]
    fn keyed_input_records_round_trip_and_bad_ones_are_errors() {
        for command in crate::testkit::samples::every_command() {
            let (mut plain, mut keyed) = (Vec::new(), Vec::new());
            let command_kind = encode_command(&command, &mut plain);
            let mut unkeyed = Vec::new();
            assert_eq!(encode_input(&command, 0, &mut unkeyed), command_kind);
            assert_eq!(unkeyed, plain, "no key: the bytes of a command record");
            assert_eq!(decode_input(command_kind, &plain), Ok((0, command)));

            let key = 0x0102_0304_0506_0708;
            assert_eq!(encode_input(&command, key, &mut keyed), kind::KEYED);
            assert_eq!(keyed[..8], key.to_le_bytes());
            assert_eq!(keyed[8..10], command_kind.to_le_bytes());
            assert_eq!(keyed[KEYED_HEADER_BYTES..], plain[..]);
            assert_eq!(decode_input(kind::KEYED, &keyed), Ok((key, command)));
            for cut in 0..keyed.len() {
                assert!(decode_input(kind::KEYED, &keyed[..cut]).is_err(), "{command:?} cut at {cut}");
            }
            assert!(decode_input(kind::KEYED, &[&keyed[..], &[0]].concat()).is_err());
            let mut zero = keyed.clone();
            zero[..8].fill(0);
            assert_eq!(decode_input(kind::KEYED, &zero), Err(CodecError::ZeroRequestKey));
            // A keyed record is not a protocol command kind, and does not nest.
            assert_eq!(decode_command(kind::KEYED, &keyed), Err(CodecError::UnknownCommandKind(kind::KEYED)));
            let mut nested = Vec::new();
            ByteWriter(&mut nested).u64(9).u16(kind::KEYED);
            nested.extend_from_slice(&keyed);
            assert_eq!(decode_input(kind::KEYED, &nested), Err(CodecError::UnknownCommandKind(kind::KEYED)));
        }
    }

    #[test]
    fn every_event_kind_round_trips_and_a_cut_one_is_an_error() {
        for event in crate::testkit::samples::every_event() {
            let mut bytes = Vec::new();
            encode_event(&event, &mut bytes);
            let mut events = Vec::new();
            decode_events(&bytes, &mut events).unwrap();
            assert_eq!(events, [event]);
            assert_eq!(decode_events(&bytes[..bytes.len() - 1], &mut events), Err(CodecError::Truncated(0)));
        }
    }

    /// An event list whose whole-list record payload is exactly `payload_len_bytes` long:
    /// ledger entries, then asset-created (8 bytes encoded) and rejected (5) events.
    fn list_of_record_len(payload_len_bytes: usize) -> Vec<Event> {
        let ledger = |id| {
            Event::Ledger(LedgerEntry {
                account: AccountId(1),
                asset: AssetId(2),
                kind: LedgerKind::Release,
                available_delta: 10,
                held_delta: -10,
                available_after: 10,
                held_after: 0,
                ref_kind: RefKind::Order,
                ref_id: id,
            })
        };
        let ledger_len = encoded_event_len(&ledger(0));
        let mut events = Vec::new();
        let mut left = payload_len_bytes - 4;
        while left >= 28 + ledger_len {
            events.push(ledger(events.len() as u64));
            left -= ledger_len;
        }
        // Any length of 28 or more is 5a + 8b.
        while !left.is_multiple_of(5) {
            events.push(Event::AssetCreated { asset: AssetId(1), scale: 2 });
            left -= 8;
        }
        events.extend((0..left / 5).map(|_| Event::Rejected { reason: RejectReason::InsufficientFunds }));
        let mut record = Vec::new();
        encode_event_record(&events, &mut record);
        assert_eq!(record.len(), payload_len_bytes);
        events
    }

    /// The parts of `events` as encoded payloads, checked against the split rule.
    fn parts_of(events: &[Event]) -> Vec<Vec<u8>> {
        let ranges: Vec<_> = split_event_list(events).collect();
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(events.len()));
        assert!(ranges.windows(2).all(|w| w[0].end == w[1].start && w[0].start < w[0].end), "contiguous, non-empty");
        let mut parts = Vec::new();
        for (index, range) in ranges.iter().enumerate() {
            let mut part = Vec::new();
            encode_event_part(77, index as u32, &events[range.clone()], &mut part);
            assert!(part.len() <= MAX_EVENT_RECORD_PAYLOAD_BYTES);
            // Greedy: the next event would not have fitted this part.
            if let Some(next) = events.get(range.end) {
                assert!(part.len() + encoded_event_len(next) > MAX_EVENT_RECORD_PAYLOAD_BYTES, "part {index} not full");
            }
            parts.push(part);
        }
        parts
    }

    /// Decodes the parts back into one list, checking each header.
    fn reassemble(parts: &[Vec<u8>]) -> Vec<Event> {
        let mut events = Vec::new();
        for (index, part) in parts.iter().enumerate() {
            let header = decode_event_part(part, &mut events).unwrap();
            assert_eq!((header.seq, header.index), (77, index as u32));
        }
        events
    }

    #[test]
    fn a_list_of_exactly_the_maximum_is_one_record() {
        let events = list_of_record_len(MAX_EVENT_RECORD_PAYLOAD_BYTES);
        assert!(event_list_fits_one_record(&events));
        assert!(event_list_fits_one_record(&[]), "an empty list is one 4-byte record");
        let smaller = list_of_record_len(MAX_EVENT_RECORD_PAYLOAD_BYTES - 3);
        assert!(event_list_fits_one_record(&smaller));
    }

    #[test]
    fn one_event_over_the_maximum_is_split_into_two_parts() {
        let mut events = list_of_record_len(MAX_EVENT_RECORD_PAYLOAD_BYTES);
        events.push(Event::Rejected { reason: RejectReason::InsufficientFunds });
        assert!(!event_list_fits_one_record(&events));
        let parts = parts_of(&events);
        assert_eq!(parts.len(), 2);
        assert_eq!(reassemble(&parts), events);
    }

    #[test]
    fn a_long_list_is_split_into_many_full_parts_that_reassemble_in_order() {
        let mut events = list_of_record_len(MAX_EVENT_RECORD_PAYLOAD_BYTES);
        let unit = events.clone();
        for _ in 0..20 {
            events.extend_from_slice(&unit);
        }
        let parts = parts_of(&events);
        assert!(parts.len() >= 21, "{} parts", parts.len());
        assert_eq!(reassemble(&parts), events);
        // The split depends on the events alone: the same list splits the same way.
        assert_eq!(parts_of(&events), parts);
    }

    #[test]
    fn every_event_fits_an_empty_part() {
        for tag in 0..=u8::MAX {
            if let Some(len) = event_body_len(tag) {
                assert!(PART_HEADER_BYTES + 3 + len <= MAX_EVENT_RECORD_PAYLOAD_BYTES, "tag {tag}");
            }
        }
    }

    #[test]
    fn manifests_round_trip_and_bad_ones_are_errors() {
        let manifest = SplitManifest { event_count: 9, first_part_seq: 3, part_count: 2, parts_hash: [7; 32] };
        let mut bytes = Vec::new();
        manifest.encode(&mut bytes);
        assert_eq!(bytes.len(), SPLIT_MANIFEST_BYTES);
        assert_eq!(SplitManifest::decode(&bytes), Ok(manifest));
        assert!(matches!(SplitManifest::decode(&bytes[1..]), Err(CodecError::BadLength { .. })));
        let mut one_part = bytes.clone();
        one_part[16] = 1;
        assert_eq!(SplitManifest::decode(&one_part), Err(CodecError::BadManifest("fewer than 2 parts")));
        let mut reserved = bytes.clone();
        reserved[20] = 1;
        assert!(SplitManifest::decode(&reserved).is_err());
        let mut part = Vec::new();
        encode_event_part(5, 0, &[Event::AssetCreated { asset: AssetId(1), scale: 2 }], &mut part);
        part[12] = 2; // claims two events
        assert!(decode_event_part(&part, &mut Vec::new()).is_err());
        assert_eq!(decode_event_part(&part[..15], &mut Vec::new()), Err(CodecError::Truncated(0)));
    }

    #[test]
    fn no_event_is_longer_than_event_bytes_max() {
        let longest = (0..=u8::MAX).filter_map(event_body_len).max().unwrap();
        assert_eq!(3 + longest, EVENT_BYTES_MAX);
        assert_eq!(EVENT_RECORD_BYTES_MAX, 13_950_376);
    }

    /// An order report written before `stop_price` existed (82-byte body) still decodes, with
    /// `stop_price` 0; any other length of a known tag is an error.
    #[test]
    fn the_order_body_without_stop_price_still_decodes() {
        let report = OrderReport {
            order_id: OrderId(1),
            account: AccountId(2),
            symbol: SymbolId(3),
            client_order_id: 4,
            exec: ExecKind::New,
            status: OrderStatus::New,
            side: Side::Sell,
            order_type: OrderType::StopLimit,
            tif: TimeInForce::Gtc,
            price: 5,
            qty: 6,
            filled_qty: 0,
            remaining_qty: 6,
            filled_quote: 0,
            fees_paid: 0,
            stop_price: 7,
        };
        let mut bytes = Vec::new();
        encode_event(&Event::Order(report), &mut bytes);
        assert_eq!(bytes.len(), 3 + ORDER_BODY_LEN);
        let mut events = Vec::new();
        decode_events(&bytes, &mut events).unwrap();
        assert_eq!(events, vec![Event::Order(report)]);
        // The old layout: the same bytes without the last field, length 82.
        let mut old = bytes[..bytes.len() - 8].to_vec();
        old[1..3].copy_from_slice(&(ORDER_BODY_LEN_WITHOUT_STOP_PRICE as u16).to_le_bytes());
        events.clear();
        decode_events(&old, &mut events).unwrap();
        assert_eq!(events, vec![Event::Order(OrderReport { stop_price: 0, ..report })]);
        let mut odd = bytes[..bytes.len() - 1].to_vec();
        odd[1..3].copy_from_slice(&(ORDER_BODY_LEN as u16 - 1).to_le_bytes());
        assert!(matches!(decode_events(&odd, &mut events), Err(CodecError::BadLength { .. })));
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        let mut rng = SplitMix64::new(42);
        let mut events = Vec::new();
        for _ in 0..20_000 {
            let len = rng.below(80) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let kind = rng.below(20) as u16;
            let _ = decode_command(kind, &bytes);
            let _ = decode_input(kind, &bytes);
            events.clear();
            let _ = decode_events(&bytes, &mut events);
        }
        assert_eq!(decode_command(99, &[]), Err(CodecError::UnknownCommandKind(99)));
        let mut order = vec![0u8; NEW_ORDER_LEN];
        order[20] = 7; // side
        assert_eq!(decode_command(kind::PLACE_ORDER, &order), Err(CodecError::BadEnum { field: "side", value: 7 }));
        assert_eq!(decode_events(&[tag::REJECTED, 2], &mut events), Err(CodecError::Truncated(0)));
    }
}
