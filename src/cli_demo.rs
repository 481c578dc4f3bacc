//! `seqd demo`: a scripted session on a fresh engine, printed for a person.

use rust_decimal::Decimal;
use seqd::engine::*;
use seqd::money::from_minor;
use seqd::workload::{BTC, BTC_USDT, LOT, TICK, USDT};

const BTC_SCALE: u8 = 8;
const USDT_SCALE: u8 = 6;

fn usdt(units: i64) -> i64 {
    units * 1_000_000
}

fn btc_lots(lots: i64) -> i64 {
    lots * LOT
}

fn limit(account: AccountId, side: Side, price_usdt: i64, lots: i64, tif: TimeInForce) -> Command {
    Command::PlaceOrder(NewOrder {
        account,
        symbol: BTC_USDT,
        client_order_id: 0,
        side,
        order_type: OrderType::Limit,
        tif,
        stp: StpMode::CancelIncoming,
        price: usdt(price_usdt),
        stop_price: 0,
        qty: btc_lots(lots),
        quote_budget: 0,
    })
}

/// The session: a fund (1) with two strategy sub-accounts (11, 12) trades against a market
/// maker (2); a withdrawal, a transfer, a stop order and a cancel along the way.
fn script() -> Vec<Command> {
    vec![
        Command::CreateAsset {
            asset: BTC,
            scale: BTC_SCALE,
        },
        Command::CreateAsset {
            asset: USDT,
            scale: USDT_SCALE,
        },
        Command::CreateSymbol(SymbolSpec {
            symbol: BTC_USDT,
            base: BTC,
            quote: USDT,
            tick_size: TICK,
            lot_size: LOT,
            min_qty: LOT,
            min_notional: usdt(1),
            max_order_qty: btc_lots(100_000),
            maker_fee_ppm: 1_000,
            taker_fee_ppm: 2_000,
            price_band_bps: 1_000,
        }),
        Command::CreateAccount {
            account: 1,
            parent: 0,
            owner: 100,
        },
        Command::CreateAccount {
            account: 11,
            parent: 1,
            owner: 100,
        },
        Command::CreateAccount {
            account: 12,
            parent: 1,
            owner: 100,
        },
        Command::CreateAccount {
            account: 2,
            parent: 0,
            owner: 200,
        },
        Command::Deposit {
            account: 1,
            asset: USDT,
            amount: usdt(1_000_000),
            external_ref: 9001,
        },
        Command::Deposit {
            account: 2,
            asset: BTC,
            amount: 50 * 100_000_000,
            external_ref: 9002,
        },
        Command::Deposit {
            account: 2,
            asset: BTC,
            amount: 50 * 100_000_000,
            external_ref: 9002,
        },
        Command::Transfer {
            from: 1,
            to: 11,
            asset: USDT,
            amount: usdt(400_000),
            client_ref: 1,
        },
        Command::Transfer {
            from: 1,
            to: 2,
            asset: USDT,
            amount: usdt(1),
            client_ref: 2,
        },
        limit(2, Side::Sell, 30_000, 10_000, TimeInForce::Gtc),
        limit(2, Side::Sell, 30_010, 10_000, TimeInForce::Gtc),
        Command::PlaceOrder(NewOrder {
            account: 11,
            symbol: BTC_USDT,
            client_order_id: 77,
            side: Side::Buy,
            order_type: OrderType::StopMarket,
            tif: TimeInForce::Ioc,
            stp: StpMode::CancelIncoming,
            price: 0,
            stop_price: usdt(30_005),
            qty: btc_lots(5_000),
            quote_budget: usdt(20_000),
        }),
        limit(11, Side::Buy, 30_010, 15_000, TimeInForce::Ioc),
        limit(11, Side::Buy, 29_000, 2_000, TimeInForce::Gtc),
        Command::WithdrawRequest {
            account: 11,
            asset: BTC,
            amount: 100_000_000,
            client_ref: 5,
        },
        Command::CancelAll {
            account: 11,
            symbol: 0,
        },
    ]
}

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
    for (i, command) in script().iter().enumerate() {
        events.clear();
        engine.apply(
            i as Seq + 1,
            1_700_000_000_000_000_000 + i as u64,
            command,
            &mut events,
        );
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
                    println!(
                        "command {} rejected: {reason:?} (code {})",
                        i + 1,
                        reason.code()
                    );
                }
                _ if print_events => println!("seq {}: {event:?}", i + 1),
                _ => {}
            }
        }
        engine
            .check_invariants()
            .expect("the demo keeps every invariant");
    }
    println!("\nbalances (available / held):");
    for account in [1, 11, 12, 2] {
        for b in engine.balances(account).unwrap_or_default() {
            let scale = scale_of(b.asset);
            let name = if b.asset == BTC { "BTC" } else { "USDT" };
            println!(
                "  account {account:>3} {name:<4} {} / {}",
                decimal(b.available, scale),
                decimal(b.held, scale)
            );
        }
    }
    println!(
        "subtree totals of fund account 1: {} USDT, {} BTC",
        decimal(engine.subtree_total(1, USDT).unwrap_or(0), USDT_SCALE),
        decimal(engine.subtree_total(1, BTC).unwrap_or(0), BTC_SCALE)
    );
    let fees = engine
        .asset_totals(USDT)
        .map(|t| t.fees_collected)
        .unwrap_or(0);
    println!("fees collected: {} USDT", decimal(fees, USDT_SCALE));
    let (bids, asks) = engine.depth(BTC_USDT, 5).unwrap_or_default();
    for level in asks.iter().rev() {
        println!(
            "  ask {} x {}",
            decimal(level.price, USDT_SCALE),
            decimal(level.qty, BTC_SCALE)
        );
    }
    for level in &bids {
        println!(
            "  bid {} x {}",
            decimal(level.price, USDT_SCALE),
            decimal(level.qty, BTC_SCALE)
        );
    }
    println!(
        "{} commands, {trades} trades, {rejections} rejections, state hash {}",
        engine.last_seq(),
        engine.state_hash_hex()
    );
}
