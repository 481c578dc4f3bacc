//! Public market data end to end over real QUIC on loopback (`docs/PROTOCOL.md` §12): the
//! `seqd run` binary, a subscriber and two traders, then the `seqd client watch` CLI.

#[path = "common/daemon.rs"]
mod daemon;

use daemon::*;
use seqd::client::Client;
use seqd::engine::{AccountId, DepthLevel, Event, Side, SymbolId, TradeId};
use seqd::protocol::{BookEvent, DepthBook, DepthUpdate, GatewayError, L2Book, MarketTrade, Message};
use std::io::{BufRead, BufReader};
use std::process::{Command as Process, Stdio};
use std::time::Duration;

const USDT_30000: i64 = 30_000_000_000;
const USDT_29990: i64 = 29_990_000_000;
const USDT_29000: i64 = 29_000_000_000;

fn level(price: i64, qty: i64, orders: u32) -> DepthLevel {
    DepthLevel { price, qty, orders }
}

/// Reads pushes until the market data of `BTC_USDT` reaches `md_seq`; returns them (other
/// pushes, the watcher's own accounts' `Events`, are skipped).
async fn market_data_until(client: &mut Client, md_seq: u64) -> Vec<Message> {
    let mut seen = Vec::new();
    loop {
        let (request_id, message) = tokio::time::timeout(Duration::from_secs(10), client.next_message())
            .await
            .unwrap_or_else(|_| panic!("no market data up to {md_seq}; got {seen:?}"))
            .unwrap();
        let at = match &message {
            Message::MarketTrade(t) => t.md_seq,
            Message::DepthUpdate(u) => u.md_seq,
            Message::Events { .. } => continue,
            other => panic!("unexpected {other:?} (request {request_id})"),
        };
        assert_eq!(request_id, 0, "market data is pushed with request id 0");
        seen.push(message);
        if at >= md_seq {
            return seen;
        }
    }
}

fn update(md_seq: u64, side: Side, price: i64, qty: i64, orders: u32) -> Message {
    Message::DepthUpdate(DepthUpdate { symbol: SymbolId(BTC_USDT), md_seq, side, price, qty, orders })
}

#[test]
fn a_subscriber_sees_the_snapshot_then_every_trade_and_depth_change_in_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    runtime().block_on(async {
        let mut admin = daemon.client("admin").await;
        set_up_venue(&mut admin).await;
        let mut trader1 = daemon.client("trader1").await;
        let mut trader2 = daemon.client("trader2").await;
        // Two bids rest before anyone subscribes: md_seq 1 and 2.
        trader1.command(limit(1, Side::Buy, USDT_30000, 50_000_000)).await.unwrap();
        trader1.command(limit(1, Side::Buy, USDT_29990, 10_000_000)).await.unwrap();

        // The watcher is public: any principal, here trader1 on a connection of its own.
        let mut watcher = daemon.client("trader1").await;
        assert_eq!(
            refused(watcher.subscribe(SymbolId(99)).await),
            GatewayError::NotFound.code(),
            "an unknown symbol is 940"
        );
        let snapshot = watcher.subscribe(SymbolId(BTC_USDT)).await.unwrap();
        assert_eq!(
            snapshot,
            DepthBook {
                symbol: SymbolId(BTC_USDT),
                book_seq: 2,
                more: false,
                bids: vec![level(USDT_30000, 50_000_000, 1), level(USDT_29990, 10_000_000, 1)],
                asks: vec![],
            }
        );
        let mut book = L2Book::new(SymbolId(BTC_USDT));
        assert_eq!(book.on_message(&Message::DepthSnapshot(snapshot)), BookEvent::Synced { book_seq: 2 });

        // trader2 sells 0.2 BTC into the best bid, then 0.5 BTC through both bids (0.1 rests).
        let first = trader2.command(limit(2, Side::Sell, USDT_30000, 20_000_000)).await.unwrap();
        let second = trader2.command(limit(2, Side::Sell, USDT_29990, 50_000_000)).await.unwrap();
        trader1.command(limit(1, Side::Buy, USDT_29000, 20_000_000)).await.unwrap();
        let trade_ids: Vec<u64> = [&first, &second]
            .iter()
            .flat_map(|o| o.events.iter())
            .filter_map(|e| if let Event::Trade(t) = e { Some(t.trade_id.0) } else { None })
            .collect();
        assert_eq!(trade_ids.len(), 3);

        let trade = |md_seq, trade_id, price: i64, qty: i64| {
            Message::MarketTrade(MarketTrade {
                symbol: SymbolId(BTC_USDT),
                md_seq,
                trade_id,
                timestamp_ns: 0,
                price,
                qty,
                quote_qty: (price as i128 * qty as i128 / 100_000_000) as i64,
                taker_side: Side::Sell,
            })
        };
        let mut seen = market_data_until(&mut watcher, 10).await;
        for message in &mut seen {
            if let Message::MarketTrade(t) = message {
                assert!(t.timestamp_ns > 0, "a trade carries its command's time");
                t.timestamp_ns = 0;
            }
        }
        assert_eq!(
            seen,
            vec![
                trade(3, TradeId(trade_ids[0]), USDT_30000, 20_000_000),
                update(4, Side::Buy, USDT_30000, 30_000_000, 1),
                trade(5, TradeId(trade_ids[1]), USDT_30000, 30_000_000),
                trade(6, TradeId(trade_ids[2]), USDT_29990, 10_000_000),
                update(7, Side::Buy, USDT_30000, 0, 0),
                update(8, Side::Buy, USDT_29990, 0, 0),
                update(9, Side::Sell, USDT_29990, 10_000_000, 1),
                update(10, Side::Buy, USDT_29000, 20_000_000, 1),
            ]
        );
        for message in &seen {
            assert!(matches!(book.on_message(message), BookEvent::Applied { .. }), "{message:?}");
        }

        // The rebuilt book is the engine's, and a depth answer names the same md_seq.
        let depth = watcher.request_all(&Message::QueryDepth { symbol: SymbolId(BTC_USDT), levels: 0 }).await.unwrap();
        let Message::Depth(depth) = depth else { panic!("expected Depth, got {depth:?}") };
        assert_eq!(depth.book_seq, 10);
        assert_eq!((depth.bids.clone(), depth.asks.clone()), book.depth(usize::MAX));
        assert_eq!(
            book.depth(usize::MAX),
            (vec![level(USDT_29000, 20_000_000, 1)], vec![level(USDT_29990, 10_000_000, 1)])
        );

        // After Unsubscribed nothing of the symbol follows: a cancel (md_seq 11) reaches the
        // watcher only inside the next snapshot, which is queued behind any earlier update.
        watcher.unsubscribe(SymbolId(BTC_USDT)).await.unwrap();
        assert!(watcher.take_pushes().iter().all(|m| matches!(m, Message::Events { .. })));
        let resting = trader1.request(&Message::QueryOpenOrders { account: AccountId(1) }).await.unwrap();
        let Message::OpenOrders { orders, .. } = resting else { panic!("{resting:?}") };
        trader1
            .command(seqd::engine::Command::CancelOrder { account: AccountId(1), order_id: orders[0].order_id })
            .await
            .unwrap();
        let again = watcher.subscribe(SymbolId(BTC_USDT)).await.unwrap();
        assert_eq!((again.book_seq, again.bids.len(), again.asks.len()), (11, 0, 1));
        assert!(
            watcher.take_pushes().iter().all(|m| matches!(m, Message::Events { .. })),
            "no market data between Unsubscribed and the new snapshot"
        );
        for client in [admin, trader1, trader2, watcher] {
            client.close().await;
        }
    });
    daemon.stop();
}

/// `seqd client` as a person runs it, with the daemon's development certificates.
fn cli(daemon: &Daemon, principal: &str, args: &[&str]) -> Process {
    let mut process = Process::new(env!("CARGO_BIN_EXE_seqd"));
    process
        .args(["client", "--addr", &daemon.addr.to_string(), "--certs", daemon.certs().to_str().unwrap()])
        .args(["--principal", principal])
        .args(args)
        .env("RUST_LOG", "error");
    process
}

#[test]
fn the_watch_command_prints_the_trades_and_depth_changes_and_orders_take_decimals() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    runtime().block_on(async {
        let mut admin = daemon.client("admin").await;
        set_up_venue(&mut admin).await;
        admin.command(limit(1, Side::Buy, USDT_30000, 50_000_000)).await.unwrap();
    });
    let scales = ["--base-scale", "8", "--quote-scale", "6"];
    let mut watch =
        cli(&daemon, "trader1", &["watch", "1", "--count", "2"]).args(scales).stdout(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert_eq!(first, "symbol 1 book_seq 1: 1 bids, 0 asks");

    // More decimal places than BTC's scale: refused by the CLI, nothing is sent.
    let too_precise =
        cli(&daemon, "trader2", &["place", "2", "1", "sell", "30000", "0.123456789"]).args(scales).output().unwrap();
    assert!(!too_precise.status.success());
    let stderr = String::from_utf8_lossy(&too_precise.stderr);
    assert!(stderr.contains("qty: 0.123456789 has more than 8 decimal places"), "{stderr}");
    let no_scale = cli(&daemon, "trader2", &["place", "2", "1", "sell", "30000", "0.2"]).output().unwrap();
    assert!(!no_scale.status.success() && String::from_utf8_lossy(&no_scale.stderr).contains("--base-scale"));
    // 0.2 BTC at 30,000 USDT, typed as decimals: exactly 20000000 and 30000000000 minor units.
    let sell = cli(&daemon, "trader2", &["place", "2", "1", "sell", "30000", "0.2"]).args(scales).output().unwrap();
    assert!(sell.status.success(), "{}", String::from_utf8_lossy(&sell.stderr));

    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    assert!(watch.wait().unwrap().success());
    assert_eq!(
        rest,
        vec![
            "  best bid 0.50000000 x 30000.000000 | best ask -".to_string(),
            "md 2 trade 1: sell 0.20000000 @ 30000.000000 (quote 6000.000000)".to_string(),
            "md 3 bid 30000.000000 -> qty 0.30000000 orders 1".to_string(),
            "  best bid 0.30000000 x 30000.000000 | best ask -".to_string(),
        ]
    );
    daemon.stop();
}
