//! Tests of the binary client protocol (`seqd::protocol`) through its public API only: every
//! message round-trips through real frames, the decoder survives any split, coalescing or
//! garbage, each bad input lands in the right error class, and the limits follow a fake clock.

use seqd::engine::*;
use seqd::protocol::*;
use seqd::testkit::samples::{every_command, every_event, order_report, spec, trade};
use seqd::testkit::workload::{exchange_core_mix, SplitMix64, WorkloadSpec};
use seqd::wire::codec;
use std::collections::BTreeSet;

const MAX: u32 = DEFAULT_MAX_FRAME_BYTES;

fn book() -> DepthBook {
    DepthBook {
        symbol: SymbolId(9),
        book_seq: 1234,
        more: false,
        bids: vec![DepthLevel { price: 30_000, qty: 10, orders: 2 }, DepthLevel { price: 29_997, qty: 4, orders: 1 }],
        asks: vec![DepthLevel { price: 30_003, qty: 1, orders: 1 }],
    }
}

/// A message of every type (every command kind, every event kind), with edge values.
fn samples() -> Vec<Message> {
    let mut messages = vec![Message::Hello { protocol_version: PROTOCOL_VERSION }];
    messages.extend(every_command().into_iter().map(Message::Command));
    messages.extend([
        Message::KeyedCommand { request_key: u64::MAX, command: every_command()[11] },
        Message::KeyedCommand {
            request_key: 1,
            command: Command::CancelOrder { account: AccountId(7), order_id: OrderId(42) },
        },
    ]);
    messages.extend([
        Message::Ping,
        Message::QueryBalances { account: AccountId(11) },
        Message::QuerySubtreeTotals { account: AccountId(10) },
        Message::QueryOrder { order_id: OrderId(u64::MAX) },
        Message::QueryOpenOrders { account: AccountId(11) },
        Message::QueryDepth { symbol: SymbolId(9), levels: 20 },
        Message::Subscribe { symbol: SymbolId(9) },
        Message::Unsubscribe { symbol: SymbolId(u32::MAX) },
        Message::Welcome(Welcome {
            protocol_version: 1,
            max_frame_bytes: MAX,
            max_in_flight: 1024,
            rate_per_sec: 10_000,
            burst: 1_000,
            principal: "desk-7/market-maker ü".to_owned(),
        }),
        Message::Accepted { seq: 42 },
        Message::Events { seq: 42, more: false, events: every_event() },
        Message::Events { seq: 43, more: true, events: vec![] },
        Message::Error { code: GatewayError::Busy.code(), message: "input ring full".to_owned() },
        Message::Error { code: 999, message: String::new() },
        Message::Pong,
        Message::Balances {
            account: AccountId(11),
            seq: 42,
            more: false,
            balances: vec![
                BalanceView { asset: AssetId(1), available: 5, held: 0 },
                BalanceView { asset: AssetId(2), available: i64::MAX, held: 7 },
            ],
        },
        Message::SubtreeTotals {
            account: AccountId(10),
            seq: 42,
            more: false,
            totals: vec![AssetTotal { asset: AssetId(1), total: 5 }, AssetTotal { asset: AssetId(2), total: 99 }],
        },
        Message::OrderInfo { seq: 42, order: order_report(OrderId(8)) },
        Message::OpenOrders {
            account: AccountId(11),
            seq: 42,
            more: false,
            orders: vec![order_report(OrderId(8)), order_report(OrderId(9))],
        },
        Message::OpenOrders { account: AccountId(11), seq: 42, more: false, orders: vec![] },
        Message::Depth(book()),
        Message::DepthSnapshot(DepthBook { more: true, ..book() }),
        Message::MarketTrade(MarketTrade::from_trade(17, 1_700_000_000_000_000_000, &trade())),
        Message::DepthUpdate(DepthUpdate {
            symbol: SymbolId(9),
            md_seq: 18,
            side: Side::Sell,
            price: 30_003,
            qty: 0,
            orders: 0,
        }),
        Message::Unsubscribed { symbol: SymbolId(9) },
        Message::ListAssets,
        Message::ListSymbols,
        Message::QueryWithdrawal { withdrawal_id: 77 },
        Message::Assets {
            seq: 42,
            more: false,
            assets: vec![
                AssetView { asset: AssetId(1), scale: 8, code: Code::parse("BTC", CodeOf::Asset).unwrap() },
                AssetView { asset: AssetId(2), scale: 6, code: Code::EMPTY },
            ],
        },
        Message::Symbols {
            seq: 42,
            more: true,
            symbols: vec![SymbolView {
                spec: spec(),
                status: SymbolStatus::Halted,
                code: Code::parse("BTC/USDT", CodeOf::Symbol).unwrap(),
            }],
        },
        Message::WithdrawalInfo {
            seq: 42,
            withdrawal_id: 77,
            withdrawal: Withdrawal {
                account: AccountId(11),
                asset: AssetId(2),
                amount: 5,
                client_ref: 3,
                status: WithdrawalStatus::Pending,
            },
        },
    ]);
    messages
}

/// Every message type number the protocol defines.
const ALL_TYPES: [u8; 31] = {
    use msg_type::*;
    [
        HELLO,
        COMMAND,
        PING,
        KEYED_COMMAND,
        QUERY_BALANCES,
        QUERY_SUBTREE_TOTALS,
        QUERY_ORDER,
        QUERY_OPEN_ORDERS,
        QUERY_DEPTH,
        LIST_ASSETS,
        LIST_SYMBOLS,
        QUERY_WITHDRAWAL,
        SUBSCRIBE,
        UNSUBSCRIBE,
        WELCOME,
        ACCEPTED,
        EVENTS,
        ERROR,
        PONG,
        BALANCES,
        SUBTREE_TOTALS,
        ORDER_INFO,
        OPEN_ORDERS,
        DEPTH,
        ASSETS,
        SYMBOLS,
        WITHDRAWAL_INFO,
        DEPTH_SNAPSHOT,
        MARKET_TRADE,
        DEPTH_UPDATE,
        UNSUBSCRIBED,
    ]
};

/// The samples as one byte stream, request ids 1, 2, 3, ...
fn sample_stream() -> (Vec<u8>, Vec<(u64, Message)>) {
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for (i, message) in samples().into_iter().enumerate() {
        let request_id = i as u64 + 1;
        encode_frame(request_id, &message, MAX, &mut bytes).unwrap();
        expected.push((request_id, message));
    }
    (bytes, expected)
}

/// Feeds `chunks` in order and decodes every frame; panics on any error.
fn decode_chunks<'a>(decoder: &mut FrameDecoder, chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<(u64, Message)> {
    let mut out = Vec::new();
    for mut chunk in chunks {
        while let Some(frame) = decoder.decode(&mut chunk).unwrap() {
            out.push((frame.request_id, Message::decode(&frame).unwrap()));
        }
        assert!(chunk.is_empty(), "the decoder stops only when the chunk is used up");
    }
    decoder.finish().unwrap();
    out
}

fn frame_bytes(version: u8, msg_type: u8, flags: u16, request_id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = ((HEADER_BYTES - 4 + payload.len()) as u32).to_le_bytes().to_vec();
    out.push(version);
    out.push(msg_type);
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

fn payload_of(message: &Message) -> Vec<u8> {
    let mut payload = Vec::new();
    message.encode_payload(&mut payload).unwrap();
    payload
}

#[test]
fn every_message_type_round_trips() {
    let samples = samples();
    let types: BTreeSet<u8> = samples.iter().map(Message::msg_type).collect();
    assert_eq!(types, ALL_TYPES.into_iter().collect(), "samples cover every message type");
    let kinds: BTreeSet<u16> =
        every_command().iter().map(|c| codec::encode_command(c, &mut Vec::new())).collect::<BTreeSet<_>>();
    assert_eq!(kinds, (1..=18).collect(), "samples cover every command kind");

    for (i, message) in samples.iter().enumerate() {
        let mut bytes = Vec::new();
        encode_frame(i as u64, message, MAX, &mut bytes).unwrap();
        let mut input = &bytes[..];
        let mut decoder = FrameDecoder::default();
        let frame = decoder.decode(&mut input).unwrap().expect("a whole frame");
        assert_eq!(
            (frame.version, frame.msg_type, frame.flags, frame.request_id),
            (PROTOCOL_VERSION, message.msg_type(), 0, i as u64)
        );
        assert_eq!(&Message::decode(&frame).unwrap(), message);
        let by_direction = match message.direction() {
            Direction::ClientToServer => Message::decode_from_client(&frame),
            Direction::ServerToClient => Message::decode_from_server(&frame),
        };
        assert_eq!(&by_direction.unwrap(), message);
        assert!(input.is_empty());
    }
}

#[test]
fn direction_is_enforced() {
    for message in samples() {
        let mut bytes = Vec::new();
        encode_frame(1, &message, MAX, &mut bytes).unwrap();
        let mut decoder = FrameDecoder::default();
        let frame = decoder.decode(&mut &bytes[..]).unwrap().unwrap();
        let wrong = match message.direction() {
            Direction::ClientToServer => Message::decode_from_server(&frame),
            Direction::ServerToClient => Message::decode_from_client(&frame),
        };
        let error = wrong.unwrap_err();
        assert_eq!(error, MessageError::WrongDirection { msg_type: message.msg_type() });
        assert_eq!(error.gateway_error(), GatewayError::UnknownMessageType);
    }
}

#[test]
fn command_payloads_are_the_codec_bytes_and_decode_to_engine_commands() {
    let workload = exchange_core_mix(WorkloadSpec { accounts: 20, resting_orders: 50, commands: 2_000, seed: 7 });
    let mut engine = Engine::new();
    let mut events = Vec::new();
    for (i, command) in workload.setup.iter().chain(&workload.commands).enumerate() {
        let mut codec_payload = Vec::new();
        let kind = codec::encode_command(command, &mut codec_payload);
        let payload = payload_of(&Message::Command(*command));
        assert_eq!(payload[..2], kind.to_le_bytes());
        assert_eq!(payload[2..], codec_payload[..]);
        assert_eq!(Message::decode_payload(msg_type::COMMAND, &payload), Ok(Message::Command(*command)));

        events.clear();
        let seq = i as Seq + 1;
        engine.apply(seq, 0, command, &mut events);
        let message = Message::Events { seq, more: false, events: events.clone() };
        let payload = payload_of(&message);
        let mut record = Vec::new();
        codec::encode_event_record(&events, &mut record);
        assert_eq!(payload[..8], seq.to_le_bytes());
        assert_eq!(payload[8], 0);
        assert_eq!(payload[9..], record[..], "the events are the event-log record payload");
        assert_eq!(Message::decode_payload(msg_type::EVENTS, &payload), Ok(message));
    }
}

#[test]
fn the_stream_split_at_every_byte_gives_the_same_frames() {
    let (bytes, expected) = sample_stream();
    for cut in 0..=bytes.len() {
        let mut decoder = FrameDecoder::default();
        let got = decode_chunks(&mut decoder, [&bytes[..cut], &bytes[cut..]]);
        assert_eq!(got, expected, "split at byte {cut}");
    }
    let mut decoder = FrameDecoder::default();
    assert_eq!(decode_chunks(&mut decoder, bytes.chunks(1)), expected, "one byte at a time");
}

#[test]
fn random_chunkings_and_many_coalesced_frames_give_the_same_frames() {
    let (one, expected_one) = sample_stream();
    let copies = 300;
    let bytes = one.repeat(copies);
    let expected: Vec<(u64, Message)> = (0..copies).flat_map(|_| expected_one.iter().cloned()).collect();

    let mut decoder = FrameDecoder::default();
    assert_eq!(decode_chunks(&mut decoder, [&bytes[..]]), expected, "all frames coalesced in one read");

    let mut rng = SplitMix64::new(1);
    for _ in 0..20 {
        let mut chunks = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at((rng.below(3_000) as usize + 1).min(rest.len()));
            chunks.push(chunk);
            rest = tail;
        }
        let mut decoder = FrameDecoder::default();
        assert_eq!(decode_chunks(&mut decoder, chunks), expected);
    }
}

#[test]
fn the_decoder_never_buffers_more_than_one_frame() {
    let (bytes, _) = sample_stream();
    let mut decoder = FrameDecoder::default();
    let mut input = &bytes[..];
    let mut frames = 0;
    while let Some(frame) = decoder.decode(&mut input).unwrap() {
        assert!(frame.frame_bytes() <= MAX as usize);
        frames += 1;
    }
    assert_eq!(frames, samples().len(), "one call, one frame, input left for the next call");
    assert_eq!(decoder.buffered_bytes(), 0);
}

#[test]
fn oversized_and_impossible_lengths_lose_framing() {
    let cases: [(u32, FrameError); 4] = [
        (0, FrameError::LengthTooShort { length: 0, min: 12 }),
        (11, FrameError::LengthTooShort { length: 11, min: 12 }),
        (MAX - 3, FrameError::TooLarge { frame_bytes: MAX as u64 + 1, max_frame_bytes: MAX }),
        (u32::MAX, FrameError::TooLarge { frame_bytes: u32::MAX as u64 + 4, max_frame_bytes: MAX }),
    ];
    for (length, expected) in cases {
        // After a good frame, byte by byte: the error comes as soon as the length is known.
        let mut bytes = Vec::new();
        encode_frame(1, &Message::Ping, MAX, &mut bytes).unwrap();
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes.extend_from_slice(&[0; 64]);
        let mut decoder = FrameDecoder::default();
        let mut results = Vec::new();
        for mut chunk in bytes.chunks(1) {
            loop {
                match decoder.decode(&mut chunk) {
                    Ok(Some(frame)) => results.push(Ok(Message::decode(&frame).unwrap())),
                    Ok(None) => break,
                    Err(error) => {
                        results.push(Err(error));
                        break;
                    }
                }
            }
        }
        assert_eq!(results[0], Ok(Message::Ping));
        assert_eq!(results[1], Err(expected.clone()), "length {length}");
        assert!(results[2..].iter().all(|r| *r == Err(expected.clone())), "framing stays lost");
        assert_eq!(decoder.finish(), Err(expected.clone()));
        let close = expected.close_code();
        assert_eq!(close, if length < 12 { 900 } else { 901 });
    }
}

#[test]
fn a_stream_ending_mid_frame_is_truncated() {
    let mut bytes = Vec::new();
    encode_frame(1, &Message::QueryBalances { account: AccountId(1) }, MAX, &mut bytes).unwrap();
    for cut in 1..bytes.len() {
        let mut decoder = FrameDecoder::default();
        assert_eq!(decoder.decode(&mut &bytes[..cut]), Ok(None));
        let error = decoder.finish().unwrap_err();
        assert_eq!(error, FrameError::TruncatedAtClose { buffered_bytes: cut });
        assert_eq!(error.gateway_error(), GatewayError::MalformedFrame);
    }
}

#[test]
fn frame_level_errors_let_the_stream_continue() {
    let good = frame_bytes(1, msg_type::PING, 0, 1, &[]);
    let bad_kind = {
        let mut payload = 99u16.to_le_bytes().to_vec();
        payload.extend_from_slice(&[0; 16]);
        payload
    };
    let bad_side = {
        let mut payload = payload_of(&Message::Command(every_command()[11]));
        payload[2 + 20] = 9; // PlaceOrder side byte
        payload
    };
    let short_cancel =
        payload_of(&Message::Command(Command::CancelOrder { account: AccountId(1), order_id: OrderId(2) }))[..10]
            .to_vec();
    let keyed_cancel = payload_of(&Message::KeyedCommand {
        request_key: 5,
        command: Command::CancelOrder { account: AccountId(1), order_id: OrderId(2) },
    });
    let zero_key = [&[0; 8][..], &keyed_cancel[8..]].concat();
    let cases: Vec<(Vec<u8>, MessageError, GatewayError)> = vec![
        (
            frame_bytes(1, 0x7F, 0, 2, &[1, 2, 3]),
            MessageError::UnknownType { msg_type: 0x7F },
            GatewayError::UnknownMessageType,
        ),
        (
            frame_bytes(1, 0xFF, 0, 2, &[]),
            MessageError::UnknownType { msg_type: 0xFF },
            GatewayError::UnknownMessageType,
        ),
        (
            frame_bytes(1, msg_type::COMMAND, 0, 2, &bad_kind),
            MessageError::BadPayload {
                msg_type: msg_type::COMMAND,
                error: PayloadError::Codec(codec::CodecError::UnknownCommandKind(99)),
            },
            GatewayError::MalformedFrame,
        ),
        (
            frame_bytes(1, msg_type::COMMAND, 0, 2, &bad_side),
            MessageError::BadPayload {
                msg_type: msg_type::COMMAND,
                error: PayloadError::Codec(codec::CodecError::BadEnum { field: "side", value: 9 }),
            },
            GatewayError::MalformedFrame,
        ),
        (
            frame_bytes(1, msg_type::COMMAND, 0, 2, &short_cancel),
            MessageError::BadPayload {
                msg_type: msg_type::COMMAND,
                error: PayloadError::Codec(codec::CodecError::BadLength { kind: 13, expected: 16, got: 8 }),
            },
            GatewayError::MalformedFrame,
        ),
        (
            frame_bytes(1, msg_type::PING, 0, 2, &[0]),
            MessageError::BadPayload { msg_type: msg_type::PING, error: PayloadError::TrailingBytes { extra: 1 } },
            GatewayError::MalformedFrame,
        ),
        // A keyed command is version 2's: a version-1 frame of its type is an unknown type.
        (
            frame_bytes(1, msg_type::KEYED_COMMAND, 0, 2, &keyed_cancel),
            MessageError::UnknownType { msg_type: msg_type::KEYED_COMMAND },
            GatewayError::UnknownMessageType,
        ),
        (
            frame_bytes(2, msg_type::KEYED_COMMAND, 0, 2, &zero_key),
            MessageError::BadPayload {
                msg_type: msg_type::KEYED_COMMAND,
                error: PayloadError::BadValue { field: "request_key", value: 0 },
            },
            GatewayError::MalformedFrame,
        ),
        (
            frame_bytes(1, msg_type::PING, 4, 2, &[]),
            MessageError::ReservedFlags { flags: 4 },
            GatewayError::MalformedFrame,
        ),
        (
            frame_bytes(PROTOCOL_VERSION + 1, msg_type::PING, 0, 2, &[]),
            MessageError::UnsupportedVersion { version: PROTOCOL_VERSION + 1 },
            GatewayError::UnsupportedVersion,
        ),
    ];
    for (bad, expected, code) in cases {
        let stream = [good.clone(), bad, good.clone()].concat();
        let mut decoder = FrameDecoder::default();
        let mut input = &stream[..];
        let mut results = Vec::new();
        while let Some(frame) = decoder.decode(&mut input).unwrap() {
            results.push((frame.request_id, Message::decode(&frame)));
        }
        assert_eq!(results.len(), 3, "the frame after a bad one is still read");
        assert_eq!(results[0], (1, Ok(Message::Ping)));
        assert_eq!(results[1], (2, Err(expected.clone())), "the error names the frame's request id");
        assert_eq!(results[2], (1, Ok(Message::Ping)));
        assert_eq!(expected.gateway_error(), code);
        assert_eq!(expected.closes_connection(), code == GatewayError::UnsupportedVersion);
    }
}

#[test]
fn every_truncated_or_extended_payload_is_a_payload_error() {
    for message in samples() {
        let payload = payload_of(&message);
        let msg_type = message.msg_type();
        for len in 0..payload.len() {
            let result = Message::decode_payload(msg_type, &payload[..len]);
            assert!(
                matches!(result, Err(MessageError::BadPayload { .. })),
                "{message:?} cut to {len} bytes gave {result:?}"
            );
            assert_eq!(result.unwrap_err().gateway_error(), GatewayError::MalformedFrame);
        }
        let longer = [&payload[..], &[0]].concat();
        assert!(
            matches!(Message::decode_payload(msg_type, &longer), Err(MessageError::BadPayload { .. })),
            "{message:?} with a trailing byte"
        );
    }
}

#[test]
fn bad_field_values_are_payload_errors() {
    let mut welcome = payload_of(&samples().into_iter().find(|m| m.msg_type() == msg_type::WELCOME).unwrap());
    let name_at = 1 + 4 * 4 + 2;
    welcome[name_at] = 0xFF; // not UTF-8
    assert_eq!(
        Message::decode_payload(msg_type::WELCOME, &welcome),
        Err(MessageError::BadPayload {
            msg_type: msg_type::WELCOME,
            error: PayloadError::BadUtf8 { field: "principal" }
        })
    );

    let mut long_error = 900u16.to_le_bytes().to_vec();
    long_error.extend_from_slice(&(MAX_ERROR_MESSAGE_BYTES as u16 + 1).to_le_bytes());
    long_error.resize(long_error.len() + MAX_ERROR_MESSAGE_BYTES + 1, b'x');
    assert!(matches!(
        Message::decode_payload(msg_type::ERROR, &long_error),
        Err(MessageError::BadPayload { error: PayloadError::TooLong { field: "message", .. }, .. })
    ));

    let mut events = payload_of(&Message::Events { seq: 1, more: false, events: vec![] });
    events[8] = 2; // `more` must be 0 or 1
    assert!(matches!(
        Message::decode_payload(msg_type::EVENTS, &events),
        Err(MessageError::BadPayload { error: PayloadError::BadValue { field: "more", value: 2 }, .. })
    ));

    let mut update = payload_of(&Message::DepthUpdate(DepthUpdate {
        symbol: SymbolId(1),
        md_seq: 1,
        side: Side::Buy,
        price: 1,
        qty: 1,
        orders: 1,
    }));
    update[12] = 2; // side
    assert!(matches!(
        Message::decode_payload(msg_type::DEPTH_UPDATE, &update),
        Err(MessageError::BadPayload { error: PayloadError::BadValue { field: "side", value: 2 }, .. })
    ));

    let mut balances = payload_of(&Message::Balances { account: AccountId(1), seq: 1, more: false, balances: vec![] });
    balances[17..19].copy_from_slice(&u16::MAX.to_le_bytes()); // a count the payload cannot hold
    assert!(matches!(
        Message::decode_payload(msg_type::BALANCES, &balances),
        Err(MessageError::BadPayload { error: PayloadError::Truncated { .. }, .. })
    ));
}

/// What the first frame of `bytes` must decode to, worked out from the length field alone.
#[derive(Debug, PartialEq)]
enum Expect {
    NeedMore,
    Frame(usize),
    Lost(GatewayError),
}

fn expect_first_frame(bytes: &[u8]) -> Expect {
    if bytes.len() < 4 {
        return Expect::NeedMore;
    }
    let length = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as u64;
    if length < 12 {
        Expect::Lost(GatewayError::MalformedFrame)
    } else if length + 4 > MAX as u64 {
        Expect::Lost(GatewayError::FrameTooLarge)
    } else if (bytes.len() as u64) < length + 4 {
        Expect::NeedMore
    } else {
        Expect::Frame(length as usize + 4)
    }
}

/// Random input of three shapes: plain random bytes (mostly bad lengths); a frame-shaped
/// header (sane length, version 1, a known type) over a random payload; and a valid sample
/// frame with a few random bytes changed after the length field, so the message decoders see
/// plenty of almost-valid payloads.
fn random_input(rng: &mut SplitMix64, samples: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(3) {
        0 => {
            let len = rng.below(300) as usize;
            random_bytes(rng, len)
        }
        1 => {
            let len = HEADER_BYTES + rng.below(300) as usize;
            let mut bytes = random_bytes(rng, len);
            let declared = if rng.below(4) == 0 { len + rng.below(8) as usize } else { len };
            bytes[..4].copy_from_slice(&((declared - 4) as u32).to_le_bytes());
            bytes[4] = PROTOCOL_VERSION;
            bytes[5] = ALL_TYPES[rng.below(ALL_TYPES.len() as u64) as usize];
            bytes[6..8].copy_from_slice(&0u16.to_le_bytes());
            bytes
        }
        _ => {
            let mut bytes = samples[rng.below(samples.len() as u64) as usize].clone();
            for _ in 0..rng.below(4) {
                let at = 4 + rng.below(bytes.len() as u64 - 4) as usize;
                bytes[at] = rng.next_u64() as u8;
            }
            bytes
        }
    }
}

fn random_bytes(rng: &mut SplitMix64, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next_u64() as u8).collect()
}

/// Each sample message as one frame.
fn sample_frames() -> Vec<Vec<u8>> {
    samples()
        .iter()
        .map(|message| {
            let mut bytes = Vec::new();
            encode_frame(7, message, MAX, &mut bytes).unwrap();
            bytes
        })
        .collect()
}

/// The class of error a frame that does not decode must give, checked in header order.
fn check_error_class(frame: &Frame, error: &MessageError) {
    let expected_class = if !seqd::protocol::is_supported_version(frame.version) {
        GatewayError::UnsupportedVersion
    } else if frame.flags != 0
        || (ALL_TYPES.contains(&frame.msg_type) && msg_type::exists_in(frame.msg_type, frame.version))
    {
        GatewayError::MalformedFrame
    } else {
        GatewayError::UnknownMessageType
    };
    assert_eq!(error.gateway_error(), expected_class, "{frame:?}: {error}");
    assert_eq!(error.closes_connection(), expected_class == GatewayError::UnsupportedVersion);
}

#[test]
fn random_bytes_never_panic_and_land_in_the_right_error_class() {
    let mut rng = SplitMix64::new(2024);
    let samples = sample_frames();
    let (mut frames, mut decoded) = (0, 0);
    for _ in 0..100_000 {
        let bytes = random_input(&mut rng, &samples);
        let mut decoder = FrameDecoder::default();
        let mut input = &bytes[..];
        let expected = expect_first_frame(&bytes);
        match decoder.decode(&mut input) {
            Ok(None) => {
                assert_eq!(expected, Expect::NeedMore);
                let truncated = decoder.finish();
                assert_eq!(truncated.is_err(), !bytes.is_empty());
            }
            Err(error) => assert_eq!(Expect::Lost(error.gateway_error()), expected),
            Ok(Some(frame)) => {
                assert_eq!(expected, Expect::Frame(frame.frame_bytes()));
                frames += 1;
                match Message::decode(&frame) {
                    Ok(message) => {
                        decoded += 1;
                        // A decoded message re-encodes to something that decodes to it again.
                        let payload = payload_of(&message);
                        assert_eq!(Message::decode_payload(frame.msg_type, &payload), Ok(message));
                    }
                    Err(error) => check_error_class(&frame, &error),
                }
            }
        }
    }
    assert!(frames > 50_000, "enough inputs were whole frames: {frames}");
    assert!(decoded > 10_000, "enough inputs were valid messages: {decoded}");
}

#[test]
fn random_streams_decode_the_same_however_they_are_chunked() {
    let mut rng = SplitMix64::new(99);
    let samples = sample_frames();
    for _ in 0..2_000 {
        let stream: Vec<u8> = (0..4).flat_map(|_| random_input(&mut rng, &samples)).collect();
        let whole = outcomes(&mut [&stream[..]].into_iter());
        let mut chunks = Vec::new();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at((rng.below(40) as usize).min(rest.len()));
            chunks.push(chunk);
            rest = tail;
        }
        assert_eq!(outcomes(&mut chunks.into_iter()), whole);
    }
}

/// Every frame's (request id, decode result).
type FrameOutcomes = Vec<(u64, Result<Message, MessageError>)>;

/// Every frame's outcome, then the framing error that ended the stream, if any.
fn outcomes(chunks: &mut dyn Iterator<Item = &[u8]>) -> (FrameOutcomes, Option<FrameError>) {
    let mut decoder = FrameDecoder::default();
    let mut frames = Vec::new();
    for mut chunk in chunks {
        loop {
            match decoder.decode(&mut chunk) {
                Ok(Some(frame)) => frames.push((frame.request_id, Message::decode(&frame))),
                Ok(None) => break,
                Err(error) => return (frames, Some(error)),
            }
        }
    }
    (frames, decoder.finish().err())
}

#[test]
fn long_answers_split_over_frames_and_reassemble() {
    let events: Vec<Event> = (0..3_000).flat_map(|_| every_event()).collect();
    let orders: Vec<OrderReport> = (0..2_000).map(|id| order_report(OrderId(id))).collect();
    let levels: Vec<DepthLevel> = (0..5_000).map(|i| DepthLevel { price: i, qty: i + 1, orders: 1 }).collect();
    let long = [
        Message::Events { seq: 8, more: false, events },
        Message::OpenOrders { account: AccountId(11), seq: 8, more: false, orders },
        Message::DepthSnapshot(DepthBook {
            symbol: SymbolId(9),
            book_seq: 3,
            more: false,
            bids: levels.clone(),
            asks: levels,
        }),
    ];
    for message in long {
        assert!(matches!(encode_frame(5, &message, MAX, &mut Vec::new()), Err(EncodeError::TooLarge { .. })));
        let mut bytes = Vec::new();
        let frames = encode_frames(5, &message, MAX, &mut bytes).unwrap();
        assert!(frames > 1);
        let mut decoder = FrameDecoder::default();
        let mut parts = decode_chunks(&mut decoder, [&bytes[..]]).into_iter();
        let (_, mut whole) = parts.next().unwrap();
        let mut count = 1;
        for (request_id, part) in parts {
            assert_eq!(request_id, 5);
            whole.continue_with(part).unwrap();
            count += 1;
        }
        assert_eq!(count, frames);
        assert_eq!(whole, message);
    }
}

#[test]
fn gateway_codes_are_stable() {
    let expected = [
        (GatewayError::MalformedFrame, 900),
        (GatewayError::FrameTooLarge, 901),
        (GatewayError::UnknownMessageType, 902),
        (GatewayError::UnsupportedVersion, 903),
        (GatewayError::HelloRequired, 904),
        (GatewayError::BadRequest, 905),
        (GatewayError::Unauthorized, 910),
        (GatewayError::AdminOnly, 911),
        (GatewayError::Busy, 920),
        (GatewayError::RateLimited, 921),
        (GatewayError::TooManyInFlight, 922),
        (GatewayError::ShuttingDown, 930),
        (GatewayError::NotLeader, 931),
        (GatewayError::NotFound, 940),
    ];
    assert_eq!(expected.len(), GatewayError::ALL.len());
    for (error, code) in expected {
        assert_eq!(error.code(), code);
        assert_eq!(GatewayError::from_code(code), Some(error));
    }
    for code in 0..=u16::MAX {
        if let Some(error) = GatewayError::from_code(code) {
            assert!(RejectReason::from_code(code).is_none(), "{error:?} clashes with an engine code");
        }
    }
}

#[test]
fn a_fake_clock_drives_the_rate_limit_exactly() {
    const MS: u64 = 1_000_000;
    let config = LimitsConfig { max_in_flight: 0, rate_per_sec: 10_000, burst: 1_000 };
    let mut limits = ConnectionLimits::new(config, 0);
    let (mut admitted, mut refused) = (0u64, 0u64);
    // 20 requests per ms for 10 s: twice the rate.
    for ms in 0..=10_000 {
        for request in 0..20 {
            match limits.admit_request(ms * 20 + request, ms * MS) {
                Ok(()) => admitted += 1,
                Err(error) => {
                    assert_eq!(error, GatewayError::RateLimited);
                    refused += 1;
                }
            }
        }
    }
    assert_eq!(admitted, 1_000 + 10_000 * 10, "the burst plus exactly rate x 10 s");
    assert_eq!(admitted + refused, 20 * 10_001);
}

#[test]
fn in_flight_commands_are_bounded_until_answered() {
    let config = LimitsConfig { max_in_flight: 3, rate_per_sec: 0, burst: 0 };
    let mut limits = ConnectionLimits::new(config, 0);
    let mut waiting = std::collections::VecDeque::new();
    let mut refusals = 0;
    for request in 0..1_000u64 {
        match limits.admit_command(request + 1, request) {
            Ok(()) => waiting.push_back(request),
            Err(error) => {
                assert_eq!(error, GatewayError::TooManyInFlight);
                refusals += 1;
            }
        }
        assert!(limits.in_flight() <= 3);
        assert_eq!(limits.in_flight() as usize, waiting.len());
        if request % 2 == 0 {
            if let Some(oldest) = waiting.pop_front() {
                limits.command_answered(oldest + 1); // the oldest command's Accepted went out
            }
        }
    }
    assert!(refusals > 0 && waiting.len() <= 3);
}

/// The hex examples of `docs/PROTOCOL.md` §15, byte for byte.
#[test]
fn the_documented_examples_are_exact() {
    let hex = |s: &str| -> Vec<u8> { s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect() };
    let cases = [
        (1, Message::Ping, "0c 00 00 00 01 03 00 00 01 00 00 00 00 00 00 00"),
        (
            2,
            Message::Command(Command::CancelOrder { account: AccountId(7), order_id: OrderId(42) }),
            "1e 00 00 00 01 02 00 00 02 00 00 00 00 00 00 00 0d 00
             07 00 00 00 00 00 00 00 2a 00 00 00 00 00 00 00",
        ),
        (2, Message::Accepted { seq: 1000 }, "14 00 00 00 01 82 00 00 02 00 00 00 00 00 00 00 e8 03 00 00 00 00 00 00"),
        (
            2,
            Message::Events {
                seq: 1000,
                more: false,
                events: vec![Event::Rejected { reason: RejectReason::UnknownOrder }],
            },
            "1e 00 00 00 01 83 00 00 02 00 00 00 00 00 00 00 e8 03 00 00 00 00 00 00 00 01 00 00 00 01 02 00 91 01",
        ),
    ];
    // The document's examples are version-1 frames (byte 4); a version-2 frame differs only there.
    for (request_id, message, expected) in cases {
        let mut bytes = Vec::new();
        encode_frame_as(1, request_id, &message, MAX, &mut bytes).unwrap();
        assert_eq!(bytes, hex(expected), "{message:?}");
        encode_frame_as(2, request_id, &message, MAX, &mut bytes).unwrap();
        let (v1, v2) = bytes.split_at(hex(expected).len());
        assert_eq!((v2[4], &v2[..4], &v2[5..]), (2, &v1[..4], &v1[5..]));
    }
}

/// Every code and message type is in the tables of `docs/PROTOCOL.md`.
#[test]
fn the_protocol_document_lists_every_code_and_type() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).unwrap();
    for reason in RejectReason::ALL {
        assert!(doc.contains(&format!("| {} | {reason:?} |", reason.code())), "{reason:?} missing");
    }
    for error in GatewayError::ALL {
        assert!(doc.contains(&format!("| {} | {error:?} |", error.code())), "{error:?} missing");
    }
    for message in samples() {
        let row = format!("| 0x{:02X} | ", message.msg_type());
        assert!(doc.contains(&row), "message type {row} missing");
    }
}

// ------------------------------------------------------------------------------------------
// The handshake and request ids (PROTOCOL.md §4, §5, §6)
// ------------------------------------------------------------------------------------------

fn welcome() -> Welcome {
    Welcome {
        protocol_version: PROTOCOL_VERSION,
        max_frame_bytes: 65_536,
        max_in_flight: 8,
        rate_per_sec: 100,
        burst: 100,
        principal: "trader1".into(),
    }
}

fn error_code(step: &Step) -> Option<u16> {
    match step {
        Step::Answer(Message::Error { code, .. }) => Some(*code),
        _ => None,
    }
}

#[test]
fn a_frame_before_hello_is_answered_904_and_closes() {
    for message in
        [Message::Ping, Message::QueryBalances { account: AccountId(1) }, Message::Subscribe { symbol: SymbolId(1) }]
    {
        let mut handshake = Handshake::default();
        let step = handshake.on_message(1, message.clone(), welcome);
        assert_eq!(step, Step::Close(GatewayError::HelloRequired, "the first request must be Hello"), "{message:?}");
        assert!(!handshake.is_welcomed());
    }
}

#[test]
fn hello_version_0_is_answered_903_and_closes() {
    let mut handshake = Handshake::default();
    match handshake.on_message(1, Message::Hello { protocol_version: 0 }, welcome) {
        Step::Close(error, _) => assert_eq!(error, GatewayError::UnsupportedVersion),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[test]
fn hello_is_welcomed_with_the_highest_version_both_speak() {
    for (version, chosen) in [(1, 1), (2, 2), (7, 2), (u8::MAX, 2)] {
        let mut handshake = Handshake::default();
        let step = handshake.on_message(3, Message::Hello { protocol_version: version }, welcome);
        let expected = Welcome { protocol_version: chosen, ..welcome() };
        assert_eq!(step, Step::Answer(Message::Welcome(expected)), "v{version}");
        assert!(handshake.is_welcomed());
    }
    assert_eq!((chosen_version(0), chosen_version(1), chosen_version(200)), (None, Some(1), Some(2)));
}

/// PROTOCOL.md §4: version 1 lays an order report out without `stop_price` (82-byte body),
/// version 2 with it (90 bytes); everything else is the same, and both decode.
#[test]
fn order_reports_are_laid_out_by_the_connection_version() {
    let order = OrderReport { stop_price: 31_000, ..order_report(OrderId(8)) };
    let answers = [
        Message::OrderInfo { seq: 42, order },
        Message::OpenOrders { account: AccountId(11), seq: 42, more: false, orders: vec![order, order] },
        Message::Events { seq: 42, more: false, events: vec![Event::Order(order), Event::Trade(trade())] },
    ];
    for message in &answers {
        let (mut v1, mut v2) = (Vec::new(), Vec::new());
        encode_frame_as(1, 7, message, MAX, &mut v1).unwrap();
        encode_frame_as(2, 7, message, MAX, &mut v2).unwrap();
        let reports = match message {
            Message::OpenOrders { orders, .. } => orders.len(),
            _ => 1,
        };
        assert_eq!(v2.len() - v1.len(), 8 * reports, "{message:?}");
        assert_eq!((v1[4], v2[4]), (1, 2), "the frame header carries the version");
        let decoded = |bytes: &[u8]| {
            let mut decoder = FrameDecoder::new(MAX);
            let frame = decoder.decode(&mut &bytes[..]).unwrap().unwrap();
            Message::decode_from_server(&frame).unwrap()
        };
        assert_eq!(&decoded(&v2), message);
        let without_stop = |o: &OrderReport| OrderReport { stop_price: 0, ..*o };
        let v1_message = match message.clone() {
            Message::OrderInfo { seq, order } => Message::OrderInfo { seq, order: without_stop(&order) },
            Message::OpenOrders { account, seq, more, orders } => {
                Message::OpenOrders { account, seq, more, orders: orders.iter().map(without_stop).collect() }
            }
            Message::Events { seq, more, events } => Message::Events {
                seq,
                more,
                events: events
                    .into_iter()
                    .map(|e| match e {
                        Event::Order(o) => Event::Order(without_stop(&o)),
                        other => other,
                    })
                    .collect(),
            },
            other => other,
        };
        assert_eq!(decoded(&v1), v1_message);
    }
}

#[test]
fn hello_with_request_id_0_is_answered_905_and_hello_may_follow() {
    let mut handshake = Handshake::default();
    let step = handshake.on_message(0, Message::Hello { protocol_version: 1 }, welcome);
    assert_eq!(error_code(&step), Some(GatewayError::BadRequest.code()), "{step:?}");
    assert!(!handshake.is_welcomed(), "no Welcome with request id 0");
    let step = handshake.on_message(1, Message::Hello { protocol_version: 1 }, welcome);
    assert!(matches!(step, Step::Answer(Message::Welcome(_))), "{step:?}");
}

#[test]
fn after_welcome_requests_need_a_nonzero_id_and_hello_is_not_repeated() {
    let mut handshake = Handshake::default();
    handshake.on_message(1, Message::Hello { protocol_version: 1 }, welcome);
    assert_eq!(handshake.on_message(2, Message::Ping, welcome), Step::Request(Message::Ping));
    let step = handshake.on_message(0, Message::Ping, welcome);
    assert_eq!(error_code(&step), Some(GatewayError::BadRequest.code()), "request id 0: {step:?}");
    let step = handshake.on_message(3, Message::Hello { protocol_version: 1 }, welcome);
    assert_eq!(error_code(&step), Some(GatewayError::BadRequest.code()), "second Hello: {step:?}");
    assert!(handshake.is_welcomed(), "the connection goes on");
}

#[test]
fn a_command_id_in_flight_is_refused_905_until_answered() {
    let mut limits = ConnectionLimits::new(LimitsConfig { max_in_flight: 4, rate_per_sec: 0, burst: 0 }, 0);
    assert_eq!(limits.admit_command(5, 0), Ok(()));
    assert_eq!(limits.admit_command(5, 0), Err(GatewayError::BadRequest));
    assert_eq!(limits.admit_request(5, 0), Err(GatewayError::BadRequest), "a ping or query with its id");
    assert_eq!(limits.in_flight(), 1, "the refused duplicate took no slot");
    limits.command_answered(5);
    assert_eq!(limits.admit_command(5, 0), Ok(()));
}

/// PROTOCOL.md §3, §4: before `Welcome` any spoken version is read; after it, only the chosen one.
#[test]
fn after_welcome_only_the_chosen_version_is_read() {
    let mut handshake = Handshake::default();
    assert_eq!(handshake.check_frame_version(2, 1), None, "before Welcome the decoder decides");
    handshake.on_message(1, Message::Hello { protocol_version: 2 }, welcome);
    assert_eq!(handshake.check_frame_version(2, 2), None);
    let refused = handshake.check_frame_version(1, 2).map(|(error, _)| error);
    assert_eq!(refused, Some(GatewayError::UnsupportedVersion));
}
