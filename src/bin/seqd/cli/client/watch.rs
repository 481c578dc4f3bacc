//! `seqd client watch SYMBOL`: a symbol's public trades and depth changes as they happen, with
//! the best bid and ask after each change; resubscribes after a gap in `md_seq`. Ends after
//! `--count` updates or at Ctrl-C, unsubscribing either way.

use super::output::side_name;
use super::refdata::Catalog;
use seqd::client::Client;
use seqd::engine::{Side, SymbolId};
use seqd::protocol::{BookEvent, L2Book, Message};
use serde_json::json;

pub async fn watch(
    client: &mut Client,
    catalog: &Catalog,
    symbol: SymbolId,
    count: Option<u64>,
    json: bool,
) -> Result<(), String> {
    let mut book = L2Book::new(symbol);
    let snapshot = client.subscribe(symbol).await.map_err(|e| e.to_string())?;
    book.on_message(&Message::DepthSnapshot(snapshot.clone()));
    let name = catalog.symbol_name(symbol);
    if json {
        let line = json!({"symbol": name, "book_seq": snapshot.book_seq, "bids": snapshot.bids.len(), "asks": snapshot.asks.len()});
        println!("{line}");
    } else {
        println!("{name} book_seq {}: {} bids, {} asks", snapshot.book_seq, snapshot.bids.len(), snapshot.asks.len());
    }
    print_touch(&book, catalog, json);
    for message in client.take_pushes() {
        book.on_message(&message);
    }
    let mut seen = 0;
    while count.is_none_or(|count| seen < count) {
        let next = tokio::select! {
            next = client.next_message() => next.map_err(|e| e.to_string())?,
            _ = tokio::signal::ctrl_c() => break,
        };
        let (_, message) = next;
        match book.on_message(&message) {
            BookEvent::Applied { .. } => {
                seen += 1;
                print_update(&message, &book, catalog, json);
            }
            BookEvent::Synced { book_seq } => {
                if !json {
                    println!("resynchronised at book_seq {book_seq}");
                }
                print_touch(&book, catalog, json);
            }
            BookEvent::Gap { expected, got } => {
                if !json {
                    println!("gap: expected md {expected}, got {got}; subscribing again");
                }
                client.send(&Message::Subscribe { symbol }).await.map_err(|e| e.to_string())?;
            }
            BookEvent::Ignored => {
                if let Message::Error { code, message } = message {
                    return Err(format!("refused ({code}): {message}"));
                }
            }
        }
    }
    client.unsubscribe(symbol).await.map_err(|e| e.to_string())?;
    Ok(())
}

fn print_update(message: &Message, book: &L2Book, catalog: &Catalog, json: bool) {
    let (base, quote) = catalog.symbol_scales(book.symbol());
    let (qty, price) = (|v| catalog.show(v, base), |v| catalog.show(v, quote));
    match message {
        Message::MarketTrade(t) if json => println!(
            "{}",
            json!({"md_seq": t.md_seq, "trade_id": t.trade_id.0, "taker_side": side_name(t.taker_side),
                   "qty": qty(t.qty), "price": price(t.price), "quote_qty": price(t.quote_qty)})
        ),
        Message::MarketTrade(t) => println!(
            "md {} trade {}: {} {} @ {} (quote {})",
            t.md_seq,
            t.trade_id,
            side_name(t.taker_side),
            qty(t.qty),
            price(t.price),
            price(t.quote_qty)
        ),
        Message::DepthUpdate(u) => {
            let side = if u.side == Side::Buy { "bid" } else { "ask" };
            if json {
                println!(
                    "{}",
                    json!({"md_seq": u.md_seq, "side": side, "price": price(u.price), "qty": qty(u.qty), "orders": u.orders})
                );
            } else {
                println!("md {} {side} {} -> qty {} orders {}", u.md_seq, price(u.price), qty(u.qty), u.orders);
                print_touch(book, catalog, json);
            }
        }
        _ => {}
    }
}

fn print_touch(book: &L2Book, catalog: &Catalog, json: bool) {
    if json {
        return;
    }
    let (base, quote) = catalog.symbol_scales(book.symbol());
    let (bids, asks) = book.depth(1);
    let level = |l: Option<&seqd::engine::DepthLevel>| {
        l.map_or("-".to_string(), |l| format!("{} x {}", catalog.show(l.qty, base), catalog.show(l.price, quote)))
    };
    println!("  best bid {} | best ask {}", level(bids.first()), level(asks.first()));
}
