//! `seqd demo`: the scripted session (`seqd::testkit::scenario`) on a fresh engine, printed for a person.

use rust_decimal::Decimal;
use seqd::engine::*;
use seqd::testkit::scenario::{scripted_session, timestamp_ns, BTC_SCALE, USDT_SCALE};
use seqd::testkit::workload::{BTC, BTC_USDT, USDT};
use seqd::wire::money::from_minor;

fn decimal(minor: i64, scale: u8) -> Decimal {
    from_minor(minor, scale)
}

fn scale_of(asset: AssetId) -> u8 {
    if asset == BTC {
        BTC_SCALE
    } else {
        USDT_SCALE
    }
}

pub fn run(print_events: bool) {
    let mut engine = Engine::new();
    let mut events = Vec::new();
    let (mut trades, mut rejections) = (0, 0);
    for (i, command) in scripted_session().iter().enumerate() {
        events.clear();
        engine.apply(i as Seq + 1, timestamp_ns(i), command, &mut events);
        for event in &events {
            match event {
                Event::Trade(t) => {
                    trades += 1;
                    println!(
                        "trade #{}: {} BTC at {} USDT, taker order {} (account {}), maker order {} (account {})",
                        t.trade_id,
                        decimal(t.qty, BTC_SCALE),
                        decimal(t.price, USDT_SCALE),
                        t.taker_order,
                        t.taker_account,
                        t.maker_order,
                        t.maker_account
                    );
                }
                Event::Rejected { reason } => {
                    rejections += 1;
                    println!("command {} rejected: {reason:?} (code {})", i + 1, reason.code());
                }
                _ if print_events => println!("seq {}: {event:?}", i + 1),
                _ => {}
            }
        }
        engine.check_invariants().expect("the demo keeps every invariant");
    }
    println!("\nbalances (available / held):");
    for account in [1, 11, 12, 2] {
        for b in engine.balances(AccountId(account)).unwrap_or_default() {
            let scale = scale_of(b.asset);
            let name = if b.asset == BTC { "BTC" } else { "USDT" };
            println!("  account {account:>3} {name:<4} {} / {}", decimal(b.available, scale), decimal(b.held, scale));
        }
    }
    println!(
        "subtree totals of fund account 1: {} USDT, {} BTC",
        decimal(engine.subtree_total(AccountId(1), USDT).unwrap_or(0), USDT_SCALE),
        decimal(engine.subtree_total(AccountId(1), BTC).unwrap_or(0), BTC_SCALE)
    );
    let fees = engine.asset_totals(USDT).map(|t| t.fees_collected).unwrap_or(0);
    println!("fees collected: {} USDT", decimal(fees, USDT_SCALE));
    let (bids, asks) = engine.depth(BTC_USDT, 5).unwrap_or_default();
    for level in asks.iter().rev() {
        println!("  ask {} x {}", decimal(level.price, USDT_SCALE), decimal(level.qty, BTC_SCALE));
    }
    for level in &bids {
        println!("  bid {} x {}", decimal(level.price, USDT_SCALE), decimal(level.qty, BTC_SCALE));
    }
    println!(
        "{} commands, {trades} trades, {rejections} rejections, state hash {}",
        engine.last_seq(),
        engine.state_hash_hex()
    );
}
