//! The `frame_decoder` fuzz target's checks (`seqd::protocol::fuzz_check`) on stable Rust:
//! every input of the checked-in corpus `fuzz/corpus/frame_decoder/`, then seeded mutations of
//! them (bit flips, boundary bytes, truncations, duplicated and spliced ranges). cargo-fuzz
//! needs nightly, which CI does not have; this keeps the target's properties checked on every
//! run. `cargo test --test fuzz_corpus -- --ignored write_corpus` rewrites the seed corpus.

use seqd::engine::{AccountId, AssetId, Command, NewOrder, OrderId, OrderType, Side, StpMode, SymbolId, TimeInForce};
use seqd::protocol::fuzz_check::check_frame_stream;
use seqd::protocol::{encode_frame, Message, MIN_MAX_FRAME_BYTES, PROTOCOL_VERSION};
use seqd::storage::disk::SplitMix64;
use std::path::PathBuf;

/// Mutations tried per corpus input on each run.
const MUTATIONS_PER_INPUT: usize = 400;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frame_decoder")
}

fn corpus() -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(corpus_dir()).expect("the corpus folder").map(|entry| entry.unwrap().path()).collect();
    paths.sort();
    paths.into_iter().map(|path| std::fs::read(path).unwrap()).collect()
}

/// seqd's SplitMix64: a fixed seed gives the same mutations on every run and machine.
struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n.max(1) as u64) as usize
    }
}

fn mutate(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(out.len());
        match rng.below(6) {
            0 if !out.is_empty() => out[at] ^= 1 << rng.below(8),
            1 if !out.is_empty() => out[at] = [0x00, 0x01, 0x7F, 0x80, 0xFF][rng.below(5)],
            2 => out.truncate(at),
            3 if !out.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(out.len());
                let copy = out[at..end].to_vec();
                let to = rng.below(out.len());
                out.splice(to..to, copy);
            }
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(64)).min(other.len());
                out.splice(at..at, other[from..end].iter().copied());
            }
            _ => out.extend(std::iter::repeat_n(0xFF, rng.below(8))),
        }
    }
    out
}

#[test]
fn corpus_inputs_pass_the_fuzz_checks() {
    let inputs = corpus();
    assert!(inputs.len() >= 10, "the seed corpus is missing: {}", corpus_dir().display());
    for input in &inputs {
        check_frame_stream(input);
    }
}

#[test]
fn seeded_mutations_of_the_corpus_pass_the_fuzz_checks() {
    let inputs = corpus();
    let mut rng = Rng(SplitMix64::new(0x5EED_F0CC));
    for (index, input) in inputs.iter().enumerate() {
        let other = &inputs[(index + 1) % inputs.len()];
        for _ in 0..MUTATIONS_PER_INPUT {
            let mutated = mutate(input, other, &mut rng);
            let result = std::panic::catch_unwind(|| check_frame_stream(&mutated));
            assert!(result.is_ok(), "fuzz check failed on a mutation of corpus input {index}: {mutated:02x?}");
        }
    }
}

/// The seed corpus: a chunk-size byte, then frames of several message types.
#[test]
#[ignore = "rewrites the checked-in corpus"]
fn write_corpus() {
    let order = NewOrder {
        account: AccountId(1),
        symbol: SymbolId(1),
        client_order_id: 7,
        side: Side::Buy,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        stp: StpMode::CancelIncoming,
        price: 30_000,
        stop_price: 0,
        qty: 5,
        quote_budget: 0,
    };
    let streams: Vec<Vec<Message>> = vec![
        vec![Message::Hello { protocol_version: PROTOCOL_VERSION }],
        vec![Message::Hello { protocol_version: PROTOCOL_VERSION }, Message::Ping, Message::Ping],
        vec![Message::Command(Command::CreateAsset { asset: AssetId(1), scale: 8 })],
        vec![Message::Command(Command::Deposit {
            account: AccountId(1),
            asset: AssetId(2),
            amount: i64::MAX,
            external_ref: 9,
        })],
        vec![Message::Command(Command::PlaceOrder(order))],
        vec![Message::Command(Command::CancelAll { account: AccountId(1), symbol: SymbolId::ALL })],
        vec![Message::Command(Command::AmendOrder { account: AccountId(1), order_id: OrderId(2), price: 3, qty: 4 })],
        vec![
            Message::QueryBalances { account: AccountId(11) },
            Message::QueryDepth { symbol: SymbolId(1), levels: 20 },
        ],
        vec![Message::QueryOpenOrders { account: AccountId(3) }, Message::QueryOrder { order_id: OrderId(u64::MAX) }],
        vec![Message::Subscribe { symbol: SymbolId(1) }, Message::Unsubscribe { symbol: SymbolId(1) }],
        vec![Message::Accepted { seq: 42 }, Message::Pong],
        vec![Message::Error { code: 920, message: "input ring full".to_owned() }],
        vec![
            Message::KeyedCommand { request_key: 0x5EED_0000_0000_0001, command: Command::PlaceOrder(order) },
            Message::KeyedCommand {
                request_key: u64::MAX,
                command: Command::CancelOrder { account: AccountId(1), order_id: OrderId(2) },
            },
        ],
    ];
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (index, messages) in streams.iter().enumerate() {
        let mut bytes = vec![(index * 37 % 256) as u8];
        for (request_id, message) in messages.iter().enumerate() {
            encode_frame(request_id as u64 + 1, message, MIN_MAX_FRAME_BYTES, &mut bytes).unwrap();
        }
        std::fs::write(corpus_dir().join(format!("seed-{index:02}")), bytes).unwrap();
    }
}
