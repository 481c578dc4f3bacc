//! Writing messages as frames, splitting long lists over several frames.
//!
//! A list answer (events of one command, balances, subtree totals, open orders, a depth book)
//! can be longer than one frame: a cancel-all of a thousand orders emits thousands of events.
//! [`encode_frames`] then writes it as consecutive frames with the same request id and subject,
//! every one but the last with `more` set; the receiver concatenates the lists.

use super::error::EncodeError;
use super::frame::{begin_frame, end_frame, HEADER_BYTES};
use super::message::*;
use super::PROTOCOL_VERSION;
use crate::cursor::ByteWriter;
use crate::engine::{DepthLevel, Event, Seq};

/// Writes `message` as exactly one frame of the current version ([`PROTOCOL_VERSION`]). Fails
/// (leaving `out` as it was) if it does not fit.
pub fn encode_frame(
    request_id: u64,
    message: &Message,
    max_frame_bytes: u32,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    encode_frame_as(PROTOCOL_VERSION, request_id, message, max_frame_bytes, out)
}

/// Writes `message` as exactly one frame of protocol `version`, laid out as that version
/// defines it (a version-1 order report has no `stop_price`).
pub fn encode_frame_as(
    version: u8,
    request_id: u64,
    message: &Message,
    max_frame_bytes: u32,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let start = begin_frame(out, version, message.msg_type(), request_id);
    if let Err(error) = message.encode_payload_as(version, out) {
        out.truncate(start);
        return Err(error);
    }
    end_frame(out, start, max_frame_bytes)
}

/// Writes `message` as one frame, or as several if it is a list answer too long for one, in the
/// current version. Returns the number of frames. On error `out` is left as it was.
pub fn encode_frames(
    request_id: u64,
    message: &Message,
    max_frame_bytes: u32,
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    encode_frames_as(PROTOCOL_VERSION, request_id, message, max_frame_bytes, out)
}

/// [`encode_frames`] in protocol `version`.
pub fn encode_frames_as(
    version: u8,
    request_id: u64,
    message: &Message,
    max_frame_bytes: u32,
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    let start = out.len();
    let parts = Parts { version, request_id, max_frame_bytes, msg_type: message.msg_type() };
    let result = match message {
        Message::Events { seq, more, events } => {
            if events.iter().all(|e| event_exists_in(e, version)) {
                parts.events(out, *seq, *more, events)
            } else {
                let events: Vec<Event> = events.iter().filter(|e| event_exists_in(e, version)).copied().collect();
                parts.events(out, *seq, *more, &events)
            }
        }
        Message::Assets { seq, more, assets } => {
            let per_frame = parts.items_per_frame(REFERENCE_LIST_FIXED_BYTES, ASSET_BYTES, u16::MAX as usize);
            parts.fixed_size(out, assets, per_frame, *more, |out, part, more| put_assets(out, *seq, more, part))
        }
        Message::Symbols { seq, more, symbols } => {
            let per_frame = parts.items_per_frame(REFERENCE_LIST_FIXED_BYTES, SYMBOL_BYTES, u16::MAX as usize);
            parts.fixed_size(out, symbols, per_frame, *more, |out, part, more| put_symbols(out, *seq, more, part))
        }
        Message::Balances { account, seq, more, balances } => {
            let per_frame = parts.items_per_frame(ACCOUNT_LIST_FIXED_BYTES, BALANCE_BYTES, u16::MAX as usize);
            parts.fixed_size(out, balances, per_frame, *more, |out, part, more| {
                put_balances(out, *account, *seq, more, part)
            })
        }
        Message::SubtreeTotals { account, seq, more, totals } => {
            let per_frame = parts.items_per_frame(ACCOUNT_LIST_FIXED_BYTES, ASSET_TOTAL_BYTES, u16::MAX as usize);
            parts.fixed_size(out, totals, per_frame, *more, |out, part, more| {
                put_totals(out, *account, *seq, more, part)
            })
        }
        Message::OpenOrders { account, seq, more, orders } => {
            let per_frame =
                parts.items_per_frame(OPEN_ORDERS_FIXED_BYTES, order_event_bytes(version), u32::MAX as usize);
            parts.fixed_size(out, orders, per_frame, *more, |out, part, more| {
                put_open_orders(out, *account, *seq, more, part, version);
                Ok(())
            })
        }
        Message::Depth(book) | Message::DepthSnapshot(book) => parts.depth(out, book),
        _ => encode_frame_as(version, request_id, message, max_frame_bytes, out).map(|()| 1),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// What every frame of one split message shares.
struct Parts {
    version: u8,
    request_id: u64,
    max_frame_bytes: u32,
    msg_type: u8,
}

impl Parts {
    /// How many fixed-size items fit in one frame next to the header and the fixed fields.
    /// At least 1: `MIN_MAX_FRAME_BYTES` leaves room for one item of every list.
    fn items_per_frame(&self, fixed_bytes: usize, item_bytes: usize, count_max: usize) -> usize {
        let room = (self.max_frame_bytes as usize).saturating_sub(HEADER_BYTES + fixed_bytes);
        (room / item_bytes).clamp(1, count_max)
    }

    fn frame(
        &self,
        out: &mut Vec<u8>,
        write_payload: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let start = begin_frame(out, self.version, self.msg_type, self.request_id);
        write_payload(out)?;
        end_frame(out, start, self.max_frame_bytes)
    }

    /// One frame per `per_frame` items (one frame for an empty list). `more` is set on every
    /// frame but the last, which carries the message's own `more`.
    fn fixed_size<T>(
        &self,
        out: &mut Vec<u8>,
        items: &[T],
        per_frame: usize,
        last_more: bool,
        put: impl Fn(&mut Vec<u8>, &[T], bool) -> Result<(), EncodeError>,
    ) -> Result<usize, EncodeError> {
        let frames = items.len().div_ceil(per_frame).max(1);
        for index in 0..frames {
            let part = &items[(index * per_frame).min(items.len())..((index + 1) * per_frame).min(items.len())];
            let more = index + 1 < frames || last_more;
            self.frame(out, |out| put(out, part, more))?;
        }
        Ok(frames)
    }

    /// A book's bids then asks, as many levels per frame as fit; each frame carries its share
    /// of each side.
    fn depth(&self, out: &mut Vec<u8>, book: &DepthBook) -> Result<usize, EncodeError> {
        let per_frame = self.items_per_frame(DEPTH_FIXED_BYTES, DEPTH_LEVEL_BYTES, u16::MAX as usize);
        let (mut bids, mut asks): (&[DepthLevel], &[DepthLevel]) = (&book.bids, &book.asks);
        let mut frames = 0;
        loop {
            let bid_count = bids.len().min(per_frame);
            let ask_count = asks.len().min(per_frame - bid_count);
            let ((bid_part, bid_rest), (ask_part, ask_rest)) = (bids.split_at(bid_count), asks.split_at(ask_count));
            (bids, asks) = (bid_rest, ask_rest);
            let more = !bids.is_empty() || !asks.is_empty() || book.more;
            self.frame(out, |out| put_depth(out, book.symbol, book.book_seq, more, bid_part, ask_part))?;
            frames += 1;
            if bids.is_empty() && asks.is_empty() {
                return Ok(frames);
            }
        }
    }

    /// Events vary in size, so each frame takes events until the next one would not fit.
    fn events(&self, out: &mut Vec<u8>, seq: Seq, last_more: bool, events: &[Event]) -> Result<usize, EncodeError> {
        let mut rest = events;
        let mut frames = 0;
        loop {
            let start = begin_frame(out, self.version, self.msg_type, self.request_id);
            ByteWriter(out).u64(seq);
            let more_at = out.len();
            ByteWriter(out).u8(0).u32(0);
            let taken = self.append_fitting_events(out, start, rest);
            if taken == 0 && !rest.is_empty() {
                let frame_bytes = out.len() - start;
                return Err(EncodeError::TooLarge { frame_bytes, max_frame_bytes: self.max_frame_bytes });
            }
            rest = &rest[taken..];
            out[more_at] = u8::from(!rest.is_empty() || last_more);
            out[more_at + 1..more_at + 5].copy_from_slice(&(taken as u32).to_le_bytes());
            end_frame(out, start, self.max_frame_bytes)?;
            frames += 1;
            if rest.is_empty() {
                return Ok(frames);
            }
        }
    }

    /// Appends events while the frame begun at `start` stays within the maximum.
    fn append_fitting_events(&self, out: &mut Vec<u8>, start: usize, events: &[Event]) -> usize {
        for (taken, event) in events.iter().enumerate() {
            let before = out.len();
            put_event(out, event, self.version);
            if out.len() - start > self.max_frame_bytes as usize {
                out.truncate(before);
                return taken;
            }
        }
        events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AccountId, AssetId, BalanceView, RejectReason, SymbolId};
    use crate::protocol::frame::{FrameDecoder, MIN_MAX_FRAME_BYTES};

    fn decode_all(bytes: &[u8], max_frame_bytes: u32) -> Vec<(u64, Message)> {
        let mut decoder = FrameDecoder::new(max_frame_bytes);
        let mut input = bytes;
        let mut messages = Vec::new();
        while let Some(frame) = decoder.decode(&mut input).unwrap() {
            assert!(frame.frame_bytes() <= max_frame_bytes as usize);
            messages.push((frame.request_id, Message::decode(&frame).unwrap()));
        }
        messages
    }

    fn reassemble(parts: Vec<(u64, Message)>) -> Message {
        let mut parts = parts.into_iter();
        let (request_id, mut whole) = parts.next().unwrap();
        for (id, part) in parts {
            assert_eq!(id, request_id);
            whole.continue_with(part).unwrap();
        }
        assert!(!whole.more());
        whole
    }

    #[test]
    fn a_long_event_list_is_split_and_reassembles() {
        let events: Vec<Event> =
            (0..500).map(|i| Event::Rejected { reason: RejectReason::ALL[i % RejectReason::ALL.len()] }).collect();
        let message = Message::Events { seq: 42, more: false, events };
        let mut out = Vec::new();
        let frames = encode_frames(9, &message, MIN_MAX_FRAME_BYTES, &mut out).unwrap();
        assert_eq!(frames, 500usize.div_ceil((1024 - 16 - 13) / 5));
        let parts = decode_all(&out, MIN_MAX_FRAME_BYTES);
        assert_eq!(parts.len(), frames);
        assert_eq!(reassemble(parts), message);
        assert!(encode_frame(9, &message, MIN_MAX_FRAME_BYTES, &mut out).is_err(), "one frame cannot hold it");
    }

    /// Every symbol the engine may hold (`SYMBOLS_MAX`) and every asset, over the smallest
    /// frames, and a withdrawal: each decodes to what was sent.
    #[test]
    fn reference_lists_are_split_and_reassemble_and_a_withdrawal_round_trips() {
        use crate::engine::limits::{ASSETS_MAX, SYMBOLS_MAX};
        use crate::engine::*;
        let code = |i: usize| Code::parse(&format!("C{i}"), CodeOf::Symbol).unwrap();
        let spec = |i: usize| SymbolSpec {
            symbol: SymbolId(i as u32 + 1),
            base: AssetId(1),
            quote: AssetId(2),
            tick_size: 1 + i as i64,
            lot_size: 2,
            min_qty: 3,
            min_notional: 4,
            max_order_qty: i64::MAX,
            maker_fee_ppm: 5,
            taker_fee_ppm: 6,
            price_band_bps: 7,
        };
        let symbols = (0..SYMBOLS_MAX)
            .map(|i| SymbolView { spec: spec(i), status: SymbolStatus::from_u8((i % 2) as u8).unwrap(), code: code(i) })
            .collect();
        let assets = (0..ASSETS_MAX)
            .map(|i| AssetView { asset: AssetId(i as u32 + 1), scale: (i % 19) as u8, code: code(i) })
            .collect();
        let withdrawal = Withdrawal {
            account: AccountId(7),
            asset: AssetId(2),
            amount: 99,
            client_ref: 3,
            status: WithdrawalStatus::Rejected,
        };
        for message in [
            Message::Symbols { seq: 5, more: false, symbols },
            Message::Assets { seq: 5, more: false, assets },
            Message::WithdrawalInfo { seq: 6, withdrawal_id: 4, withdrawal },
            Message::ListAssets,
            Message::ListSymbols,
            Message::QueryWithdrawal { withdrawal_id: u64::MAX },
        ] {
            let mut out = Vec::new();
            encode_frames(9, &message, MIN_MAX_FRAME_BYTES, &mut out).unwrap();
            assert_eq!(reassemble(decode_all(&out, MIN_MAX_FRAME_BYTES)), message);
        }
    }

    /// Version 1 has neither the reference queries nor the coded commands nor the code events.
    #[test]
    fn version_1_frames_refuse_what_version_2_added_and_drop_code_events() {
        use crate::engine::{Code, CodeOf, Command};
        use crate::protocol::GatewayError;
        let decode_v1 = |message: &Message| {
            let mut out = Vec::new();
            encode_frame_as(1, 3, message, MIN_MAX_FRAME_BYTES, &mut out).unwrap();
            let mut decoder = FrameDecoder::new(MIN_MAX_FRAME_BYTES);
            let frame = decoder.decode(&mut &out[..]).unwrap().unwrap();
            Message::decode(&frame).map_err(|e| e.gateway_error())
        };
        for message in [Message::ListAssets, Message::ListSymbols, Message::QueryWithdrawal { withdrawal_id: 1 }] {
            assert_eq!(decode_v1(&message), Err(GatewayError::UnknownMessageType), "{message:?}");
        }
        let code = Code::parse("BTC", CodeOf::Asset).unwrap();
        let coded = Message::Command(Command::CreateAssetWithCode { asset: AssetId(1), scale: 8, code });
        assert_eq!(decode_v1(&coded), Err(GatewayError::MalformedFrame));
        let plain = Message::Command(Command::CreateAsset { asset: AssetId(1), scale: 8 });
        assert_eq!(decode_v1(&plain), Ok(plain));
        let events =
            vec![Event::AssetCreated { asset: AssetId(1), scale: 8 }, Event::AssetCode { asset: AssetId(1), code }];
        let pushed = Message::Events { seq: 1, more: false, events: events.clone() };
        let (mut v1, mut v2) = (Vec::new(), Vec::new());
        encode_frames_as(1, 0, &pushed, MIN_MAX_FRAME_BYTES, &mut v1).unwrap();
        encode_frames_as(2, 0, &pushed, MIN_MAX_FRAME_BYTES, &mut v2).unwrap();
        let decode = |bytes: &[u8]| reassemble(decode_all(bytes, MIN_MAX_FRAME_BYTES));
        assert_eq!(decode(&v1), Message::Events { seq: 1, more: false, events: events[..1].to_vec() });
        assert_eq!(decode(&v2), pushed);
    }

    #[test]
    fn a_short_message_is_one_frame_identical_to_encode_frame() {
        let message = Message::Events { seq: 1, more: false, events: vec![] };
        let (mut split, mut single) = (Vec::new(), Vec::new());
        assert_eq!(encode_frames(3, &message, MIN_MAX_FRAME_BYTES, &mut split), Ok(1));
        encode_frame(3, &message, MIN_MAX_FRAME_BYTES, &mut single).unwrap();
        assert_eq!(split, single);
    }

    #[test]
    fn a_deep_book_is_split_and_reassembles() {
        let level = |i: i64| DepthLevel { price: 1000 + i, qty: i + 1, orders: i as u32 };
        let book = DepthBook {
            symbol: SymbolId(3),
            book_seq: 77,
            more: false,
            bids: (0..100).map(level).collect(),
            asks: (0..30).map(level).collect(),
        };
        for message in [Message::Depth(book.clone()), Message::DepthSnapshot(book)] {
            let mut out = Vec::new();
            let frames = encode_frames(0, &message, MIN_MAX_FRAME_BYTES, &mut out).unwrap();
            assert_eq!(frames, 130usize.div_ceil((1024 - 16 - 17) / 20));
            assert_eq!(reassemble(decode_all(&out, MIN_MAX_FRAME_BYTES)), message);
        }
    }

    #[test]
    fn long_balance_lists_are_split_and_empty_lists_are_one_frame() {
        let balances: Vec<BalanceView> =
            (0..200).map(|i| BalanceView { asset: AssetId(i), available: i as i64, held: 1 }).collect();
        let message = Message::Balances { account: AccountId(5), seq: 9, more: false, balances };
        let mut out = Vec::new();
        assert_eq!(encode_frames(1, &message, MIN_MAX_FRAME_BYTES, &mut out), Ok(200usize.div_ceil(49)));
        assert_eq!(reassemble(decode_all(&out, MIN_MAX_FRAME_BYTES)), message);

        let empty = Message::OpenOrders { account: AccountId(5), seq: 9, more: false, orders: vec![] };
        out.clear();
        assert_eq!(encode_frames(1, &empty, MIN_MAX_FRAME_BYTES, &mut out), Ok(1));
        assert_eq!(reassemble(decode_all(&out, MIN_MAX_FRAME_BYTES)), empty);
    }

    #[test]
    fn an_encoding_error_leaves_the_output_untouched() {
        let mut out = vec![1, 2, 3];
        let too_long = Message::Error { code: 900, message: "x".repeat(MAX_ERROR_MESSAGE_BYTES + 1) };
        assert!(matches!(
            encode_frames(1, &too_long, MIN_MAX_FRAME_BYTES, &mut out),
            Err(EncodeError::StringTooLong { .. })
        ));
        assert_eq!(out, [1, 2, 3]);
    }
}
