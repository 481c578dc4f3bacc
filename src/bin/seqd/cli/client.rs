//! `seqd client ...`: a person at a terminal talking to a running daemon.
//!
//! Amounts, prices and quantities are integer minor units (the units of `journal/FORMAT.md`),
//! unless the asset's scale is given (`--scale`, `--base-scale`, `--quote-scale`): they are then
//! decimals in whole units (`1.5` BTC), converted exactly; more decimal places than the scale is
//! an error, never rounded. The protocol has no query for an asset's scale, so the person says it.

use clap::{Args, Subcommand};
use rust_decimal::Decimal;
use seqd::client::{Client, ClientError};
use seqd::engine::{
    AccountId, AssetId, Command, DepthLevel, NewOrder, OrderId, OrderType, Side, StpMode, SymbolId, TimeInForce,
};
use seqd::protocol::{BookEvent, L2Book, Message};
use seqd::wire::money::{from_minor, to_minor};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::str::FromStr;

/// The scales of a symbol's assets, when amounts are typed or printed as decimals.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct SymbolScales {
    /// Scale of the base asset: quantities are decimals in whole base units (`0.25` BTC).
    #[arg(long)]
    base_scale: Option<u8>,
    /// Scale of the quote asset: prices are decimals in whole quote units per whole base unit.
    #[arg(long)]
    quote_scale: Option<u8>,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Round trip to the daemon.
    Ping,
    /// Balances of an account.
    Balances { account: u64 },
    /// Totals of an account's subtree per asset.
    Subtree { account: u64 },
    /// Live orders of an account.
    Orders { account: u64 },
    /// Book depth of a symbol.
    Depth {
        symbol: u32,
        #[arg(long, default_value_t = 10)]
        levels: u16,
    },
    /// Admin: create an asset with a scale (decimal places).
    CreateAsset { asset: u32, scale: u8 },
    /// Admin: create an account (parent 0 = a root).
    CreateAccount {
        account: u64,
        #[arg(long, default_value_t = 0)]
        parent: u64,
        #[arg(long)]
        owner: u64,
    },
    /// Admin: credit a deposit, once per external reference.
    Deposit {
        account: u64,
        asset: u32,
        /// Minor units, or with --scale a decimal in whole units.
        amount: String,
        external_ref: u64,
        /// The asset's scale: AMOUNT is then a decimal in whole units (`1.5`).
        #[arg(long)]
        scale: Option<u8>,
    },
    /// Place a limit order (time in force gtc, ioc, fok or post-only).
    Place {
        account: u64,
        symbol: u32,
        side: String,
        /// Quote minor units per whole base unit, or with --quote-scale a decimal.
        price: String,
        /// Base minor units, or with --base-scale a decimal.
        qty: String,
        #[arg(long, default_value_t = 0)]
        client_order_id: u64,
        #[arg(long, default_value = "gtc")]
        tif: String,
        #[command(flatten)]
        scales: SymbolScales,
    },
    /// Cancel an order.
    Cancel { account: u64, order_id: u64 },
    /// Follow a symbol's public market data: its trades and depth changes, as they happen.
    Watch {
        symbol: u32,
        /// Stop after this many trades and depth updates (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
        /// With the scales, prices and quantities are printed as decimals.
        #[command(flatten)]
        scales: SymbolScales,
    },
}

/// An amount typed by a person: integer minor units, or, given the asset's scale, a decimal in
/// whole units converted exactly (`1.5` at scale 8 is 150000000; `1.123456789` is refused).
fn parse_amount(what: &str, text: &str, scale: Option<u8>, scale_flag: &str) -> Result<i64, String> {
    match scale {
        None => text.parse().map_err(|_| {
            if Decimal::from_str(text).is_ok() {
                format!("{what} {text:?} is not an integer number of minor units (give the scale with {scale_flag} to write a decimal)")
            } else {
                format!("{what} {text:?} is not a number")
            }
        }),
        Some(scale) => {
            let value = Decimal::from_str(text).map_err(|_| format!("{what} {text:?} is not a decimal number"))?;
            to_minor(value, scale).map_err(|e| format!("{what}: {e}"))
        }
    }
}

/// Minor units for a person: a decimal when the scale is known.
fn show(minor: i64, scale: Option<u8>) -> String {
    match scale {
        Some(scale) => from_minor(minor, scale).to_string(),
        None => minor.to_string(),
    }
}

fn parse_side(side: &str) -> Result<Side, String> {
    match side {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        other => Err(format!("side must be buy or sell, not {other:?}")),
    }
}

fn parse_tif(tif: &str) -> Result<TimeInForce, String> {
    match tif {
        "gtc" => Ok(TimeInForce::Gtc),
        "ioc" => Ok(TimeInForce::Ioc),
        "fok" => Ok(TimeInForce::Fok),
        "post-only" => Ok(TimeInForce::PostOnly),
        other => Err(format!("tif must be gtc, ioc, fok or post-only, not {other:?}")),
    }
}

fn command_of(request: &ClientCommand) -> Result<Option<Command>, String> {
    Ok(Some(match *request {
        ClientCommand::CreateAsset { asset, scale } => Command::CreateAsset { asset: AssetId(asset), scale },
        ClientCommand::CreateAccount { account, parent, owner } => {
            Command::CreateAccount { account: AccountId(account), parent: AccountId(parent), owner }
        }
        ClientCommand::Deposit { account, asset, ref amount, external_ref, scale } => {
            let amount = parse_amount("amount", amount, scale, "--scale")?;
            Command::Deposit { account: AccountId(account), asset: AssetId(asset), amount, external_ref }
        }
        ClientCommand::Place { account, symbol, ref side, ref price, ref qty, client_order_id, ref tif, scales } => {
            Command::PlaceOrder(NewOrder {
                account: AccountId(account),
                symbol: SymbolId(symbol),
                client_order_id,
                side: parse_side(side)?,
                order_type: OrderType::Limit,
                tif: parse_tif(tif)?,
                stp: StpMode::CancelIncoming,
                price: parse_amount("price", price, scales.quote_scale, "--quote-scale")?,
                stop_price: 0,
                qty: parse_amount("qty", qty, scales.base_scale, "--base-scale")?,
                quote_budget: 0,
            })
        }
        ClientCommand::Cancel { account, order_id } => {
            Command::CancelOrder { account: AccountId(account), order_id: OrderId(order_id) }
        }
        _ => return Ok(None),
    }))
}

fn query_of(request: &ClientCommand) -> Message {
    match *request {
        ClientCommand::Balances { account } => Message::QueryBalances { account: AccountId(account) },
        ClientCommand::Subtree { account } => Message::QuerySubtreeTotals { account: AccountId(account) },
        ClientCommand::Orders { account } => Message::QueryOpenOrders { account: AccountId(account) },
        ClientCommand::Depth { symbol, levels } => Message::QueryDepth { symbol: SymbolId(symbol), levels },
        _ => Message::Ping,
    }
}

pub fn run(addr: SocketAddr, certs: &Path, principal: &str, request: ClientCommand) -> ExitCode {
    let read =
        |name: String| std::fs::read(certs.join(&name)).map_err(|e| format!("{}: {e}", certs.join(name).display()));
    let files = (|| {
        Ok::<_, String>((read("ca.pem".into())?, read(format!("{principal}.pem"))?, read(format!("{principal}.key"))?))
    })();
    let (ca, cert, key) = match files {
        Ok(files) => files,
        Err(e) => return fail(&e),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let result: Result<(), String> = runtime.block_on(async {
        let mut client = Client::connect(addr, &ca, &cert, &key).await.map_err(|e| e.to_string())?;
        if let ClientCommand::Watch { symbol, count, scales } = request {
            let watched = watch(&mut client, SymbolId(symbol), count, scales).await;
            client.close().await;
            return watched;
        }
        match command_of(&request)? {
            Some(command) => {
                let outcome = client.command(command).await.map_err(|e| e.to_string())?;
                println!("seq {}", outcome.seq);
                for event in &outcome.events {
                    println!("  {event:?}");
                }
                if let Some(code) = outcome.rejected() {
                    return Err(format!("rejected with code {code}"));
                }
            }
            None => match client.request(&query_of(&request)).await {
                Ok(answer) => println!("{answer:?}"),
                Err(ClientError::Refused { code, message }) => return Err(format!("refused ({code}): {message}")),
                Err(e) => return Err(e.to_string()),
            },
        }
        client.close().await;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

/// Subscribes and prints each trade and depth change with the best bid and ask after it;
/// resubscribes after a gap in `md_seq`.
async fn watch(client: &mut Client, symbol: SymbolId, count: Option<u64>, scales: SymbolScales) -> Result<(), String> {
    let (base, quote) = (scales.base_scale, scales.quote_scale);
    let refused = |e: ClientError| match e {
        ClientError::Refused { code, message } => format!("refused ({code}): {message}"),
        e => e.to_string(),
    };
    let mut book = L2Book::new(symbol);
    let snapshot = client.subscribe(symbol).await.map_err(refused)?;
    book.on_message(&Message::DepthSnapshot(snapshot.clone()));
    println!(
        "symbol {symbol} book_seq {}: {} bids, {} asks",
        snapshot.book_seq,
        snapshot.bids.len(),
        snapshot.asks.len()
    );
    print_touch(&book, scales);
    for message in client.take_pushes() {
        book.on_message(&message);
    }
    let mut seen = 0;
    while count.is_none_or(|count| seen < count) {
        let (_, message) = client.next_message().await.map_err(|e| e.to_string())?;
        match book.on_message(&message) {
            BookEvent::Applied { .. } => {
                seen += 1;
                match message {
                    Message::MarketTrade(t) => println!(
                        "md {} trade {}: {} {} @ {} (quote {})",
                        t.md_seq,
                        t.trade_id,
                        side_name(t.taker_side),
                        show(t.qty, base),
                        show(t.price, quote),
                        show(t.quote_qty, quote)
                    ),
                    Message::DepthUpdate(u) => {
                        let side = if u.side == Side::Buy { "bid" } else { "ask" };
                        let (price, qty) = (show(u.price, quote), show(u.qty, base));
                        println!("md {} {side} {price} -> qty {qty} orders {}", u.md_seq, u.orders);
                        print_touch(&book, scales);
                    }
                    _ => {}
                }
            }
            BookEvent::Synced { book_seq } => {
                println!("resynchronised at book_seq {book_seq}");
                print_touch(&book, scales);
            }
            BookEvent::Gap { expected, got } => {
                println!("gap: expected md {expected}, got {got}; subscribing again");
                client.send(&Message::Subscribe { symbol }).await.map_err(|e| e.to_string())?;
            }
            BookEvent::Ignored => {
                if let Message::Error { code, message } = message {
                    return Err(format!("refused ({code}): {message}"));
                }
            }
        }
    }
    client.unsubscribe(symbol).await.map_err(refused)?;
    Ok(())
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn print_touch(book: &L2Book, scales: SymbolScales) {
    let (bids, asks) = book.depth(1);
    let level = |l: Option<&DepthLevel>| {
        l.map_or("-".to_string(), |l| {
            format!("{} x {}", show(l.qty, scales.base_scale), show(l.price, scales.quote_scale))
        })
    };
    println!("  best bid {} | best ask {}", level(bids.first()), level(asks.first()));
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_minor_units_or_exact_decimals_with_a_scale() {
        assert_eq!(parse_amount("qty", "150000000", None, "--base-scale"), Ok(150_000_000));
        assert_eq!(parse_amount("qty", "1.5", Some(8), "--base-scale"), Ok(150_000_000));
        assert_eq!(parse_amount("qty", "1", Some(8), "--base-scale"), Ok(100_000_000));
        assert_eq!(parse_amount("price", "30000.25", Some(6), "--quote-scale"), Ok(30_000_250_000));
        assert_eq!(parse_amount("price", "0.10", Some(1), "--quote-scale"), Ok(1), "trailing zeros are fine");
        assert_eq!(
            parse_amount("qty", "0.123456789", Some(8), "--base-scale"),
            Err("qty: 0.123456789 has more than 8 decimal places".to_string())
        );
        let without_scale = parse_amount("amount", "1.5", None, "--scale").unwrap_err();
        assert!(without_scale.contains("--scale"), "{without_scale}");
        assert!(parse_amount("amount", "abc", Some(6), "--scale").is_err());
        assert!(parse_amount("amount", "99999999999999", Some(8), "--scale").unwrap_err().contains("does not fit"));
        assert_eq!(show(150_000_000, Some(8)), "1.50000000");
        assert_eq!(show(42, None), "42");
    }
}
