//! The market-data feed: the public books ([`MarketData`]) and who subscribed to which symbol.
//!
//! The responder thread calls [`MarketFeed::observe`] with every durable command's events; the
//! resulting `MarketTrade`/`DepthUpdate` frames of a symbol are encoded once and handed to each
//! subscriber's market-data queue (a channel separate from the connection's answers). A
//! connection task calls [`MarketFeed::subscribe`], which under the same lock takes the
//! snapshot and registers the subscriber, so the snapshot is queued before any update newer
//! than its `book_seq` and after every older one.
//!
//! A slow subscriber is never waited for and never disconnected for market data: when its
//! queue is full its updates are dropped (the client sees the gap in `md_seq`) and, as soon as
//! the queue has room again, it gets an unsolicited `DepthSnapshot` (request id 0) and the
//! updates after it.

use super::market_data::{symbol_of, MarketData};
use crate::engine::{Engine, Event, SymbolId};
use crate::protocol::{encode_frame_as, encode_frames_as, Message, MIN_MAX_FRAME_BYTES, PROTOCOL_VERSION};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Encoded frames for a connection's market-data queue (shared by every subscriber of a symbol).
pub type MarketFrames = Arc<[u8]>;

/// Entries (one per command and symbol, or one snapshot) a connection's market-data queue holds.
pub const MARKET_QUEUE: usize = 4_096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    #[error("unknown symbol")]
    UnknownSymbol,
    #[error("the connection's market-data queue is full")]
    Busy,
}

struct Subscriber {
    tx: mpsc::Sender<MarketFrames>,
    max_frame_bytes: u32,
    /// The connection's protocol version (the frame headers it is sent).
    version: u8,
    /// Updates were dropped; a snapshot is due once the queue has room.
    stale: bool,
}

#[derive(Default)]
struct FeedState {
    data: MarketData,
    /// Symbol -> connection id -> subscriber.
    subscribers: BTreeMap<SymbolId, BTreeMap<u64, Subscriber>>,
    stale: usize,
    messages: Vec<Message>,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    pub subscriptions: usize,
    pub stale: usize,
}

#[derive(Default)]
pub struct MarketFeed {
    state: Mutex<FeedState>,
}

impl MarketFeed {
    /// Starts from a recovered engine's books (called before the first `observe`).
    pub fn seed(&self, engine: &Engine) {
        self.lock().data = MarketData::from_engine(engine);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.state.lock().expect("market feed lock")
    }

    /// Follows one durable command's events and pushes its market data to subscribers; then
    /// resynchronises stale subscribers whose queue has room. Never blocks.
    pub fn observe(&self, timestamp_ns: u64, events: &[Event]) {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.messages.clear();
        state.data.apply(timestamp_ns, events, &mut state.messages);
        let mut start = 0;
        while start < state.messages.len() {
            let symbol = symbol_of(&state.messages[start]).expect("market data has a symbol");
            let end = start + state.messages[start..].iter().take_while(|m| symbol_of(m) == Some(symbol)).count();
            if let Some(subscribers) = state.subscribers.get_mut(&symbol) {
                push(subscribers, &state.messages[start..end], &mut state.stale);
            }
            start = end;
        }
        if state.stale > 0 {
            state.resync();
        }
    }

    /// The symbol's current `md_seq` (0 for an unknown symbol): the `book_seq` of an answer
    /// that reflects every command delivered so far.
    pub fn md_seq(&self, symbol: SymbolId) -> u64 {
        self.lock().data.md_seq(symbol).unwrap_or(0)
    }

    /// Registers (or re-registers) `connection` for `symbol` and queues the snapshot, under
    /// `request_id`, ahead of every later update.
    pub fn subscribe(
        &self,
        connection: u64,
        request_id: u64,
        symbol: SymbolId,
        tx: &mpsc::Sender<MarketFrames>,
        max_frame_bytes: u32,
        version: u8,
    ) -> Result<(), SubscribeError> {
        let mut state = self.lock();
        let snapshot = state.data.snapshot(symbol).ok_or(SubscribeError::UnknownSymbol)?;
        let frames = encode_snapshot(request_id, snapshot, max_frame_bytes, version);
        tx.try_send(frames).map_err(|_| SubscribeError::Busy)?;
        let subscriber = Subscriber { tx: tx.clone(), max_frame_bytes, version, stale: false };
        if let Some(old) = state.subscribers.entry(symbol).or_default().insert(connection, subscriber) {
            state.stale -= old.stale as usize;
        }
        Ok(())
    }

    /// No more market data of `symbol` for `connection` is queued after this returns.
    pub fn unsubscribe(&self, connection: u64, symbol: SymbolId) {
        let mut state = self.lock();
        let Some(subscribers) = state.subscribers.get_mut(&symbol) else { return };
        let removed = subscribers.remove(&connection);
        if subscribers.is_empty() {
            state.subscribers.remove(&symbol);
        }
        if let Some(old) = removed {
            state.stale -= old.stale as usize;
        }
    }

    /// Drops every subscription of a closed connection.
    pub fn remove_connection(&self, connection: u64) {
        let mut state = self.lock();
        let mut stale = 0;
        state.subscribers.retain(|_, subscribers| {
            if let Some(old) = subscribers.remove(&connection) {
                stale += old.stale as usize;
            }
            !subscribers.is_empty()
        });
        state.stale -= stale;
    }

    pub fn stats(&self) -> FeedStats {
        let state = self.lock();
        FeedStats { subscriptions: state.subscribers.values().map(BTreeMap::len).sum(), stale: state.stale }
    }
}

/// Sends one command's messages of one symbol to its live subscribers; a full queue makes the
/// subscriber stale, a closed one removes it.
fn push(subscribers: &mut BTreeMap<u64, Subscriber>, messages: &[Message], stale: &mut usize) {
    if subscribers.values().all(|s| s.stale) {
        return;
    }
    // Encoded once per protocol version among the subscribers (the layouts are the same; the
    // frame header carries the connection's version).
    let mut frames_by_version: [Option<MarketFrames>; PROTOCOL_VERSION as usize + 1] = Default::default();
    subscribers.retain(|_, subscriber| {
        if subscriber.stale {
            return true;
        }
        let frames = frames_by_version[subscriber.version as usize].get_or_insert_with(|| {
            let mut frames = Vec::with_capacity(messages.len() * 72);
            for message in messages {
                // MarketTrade and DepthUpdate frames are far below the smallest allowed frame size.
                encode_frame_as(subscriber.version, 0, message, MIN_MAX_FRAME_BYTES, &mut frames)
                    .expect("a market-data frame fits");
            }
            frames.into()
        });
        match subscriber.tx.try_send(frames.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                subscriber.stale = true;
                *stale += 1;
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

fn encode_snapshot(
    request_id: u64,
    snapshot: crate::protocol::DepthBook,
    max_frame_bytes: u32,
    version: u8,
) -> MarketFrames {
    let mut frames = Vec::new();
    encode_frames_as(version, request_id, &Message::DepthSnapshot(snapshot), max_frame_bytes, &mut frames)
        .expect("a snapshot splits into frames");
    frames.into()
}

impl FeedState {
    /// Sends a fresh snapshot (request id 0) to each stale subscriber whose queue has room.
    fn resync(&mut self) {
        for (&symbol, subscribers) in self.subscribers.iter_mut() {
            for subscriber in subscribers.values_mut().filter(|s| s.stale) {
                // A closed queue is forgotten when its connection ends (`remove_connection`).
                // Half the queue free: the reader is keeping up again.
                if subscriber.tx.is_closed() || subscriber.tx.capacity() < subscriber.tx.max_capacity() / 2 {
                    continue;
                }
                let snapshot = self.data.snapshot(symbol).expect("a subscribed symbol exists");
                if subscriber
                    .tx
                    .try_send(encode_snapshot(0, snapshot, subscriber.max_frame_bytes, subscriber.version))
                    .is_ok()
                {
                    subscriber.stale = false;
                    self.stale -= 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AccountId, AssetId, Command, NewOrder, OrderType, Side, StpMode, SymbolSpec, TimeInForce};
    use crate::protocol::{BookEvent, FrameDecoder, L2Book, DEFAULT_MAX_FRAME_BYTES};

    struct Venue {
        engine: Engine,
        seq: u64,
    }

    impl Venue {
        fn new() -> Venue {
            let mut venue = Venue { engine: Engine::new(), seq: 0 };
            venue.run(Command::CreateAsset { asset: AssetId(1), scale: 8 });
            venue.run(Command::CreateAsset { asset: AssetId(2), scale: 6 });
            venue.run(Command::CreateSymbol(SymbolSpec {
                max_order_qty: 100_000_000,
                ..crate::testkit::workload::btc_usdt_spec(0, 0)
            }));
            venue.run(Command::CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 });
            venue.run(Command::Deposit {
                account: AccountId(1),
                asset: AssetId(2),
                amount: 1_000_000_000_000,
                external_ref: 1,
            });
            venue
        }

        fn run(&mut self, command: Command) -> Vec<Event> {
            let mut events = Vec::new();
            self.seq += 1;
            self.engine.apply(self.seq, self.seq, &command, &mut events);
            events
        }

        /// A bid that adds a new level: one `DepthUpdate`.
        fn bid(&mut self, ticks: i64) -> Vec<Event> {
            self.run(Command::PlaceOrder(NewOrder {
                account: AccountId(1),
                symbol: SymbolId(1),
                client_order_id: 0,
                side: Side::Buy,
                order_type: OrderType::Limit,
                tif: TimeInForce::Gtc,
                stp: StpMode::CancelIncoming,
                price: ticks * 10_000,
                stop_price: 0,
                qty: 10_000,
                quote_budget: 0,
            }))
        }
    }

    /// Decodes every queued entry: (request id, message).
    fn drain(rx: &mut mpsc::Receiver<MarketFrames>) -> Vec<(u64, Message)> {
        let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES);
        let mut messages = Vec::new();
        while let Ok(frames) = rx.try_recv() {
            let mut bytes = &frames[..];
            while let Some(frame) = decoder.decode(&mut bytes).unwrap() {
                messages.push((frame.request_id, Message::decode_from_server(&frame).unwrap()));
            }
        }
        messages
    }

    #[test]
    fn a_subscriber_gets_its_snapshot_then_the_updates_and_nothing_after_unsubscribing() {
        let mut venue = Venue::new();
        venue.bid(1_000);
        let feed = MarketFeed::default();
        feed.seed(&venue.engine);
        let (tx, mut rx) = mpsc::channel(16);
        assert_eq!(
            feed.subscribe(7, 3, SymbolId(2), &tx, DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION),
            Err(SubscribeError::UnknownSymbol)
        );
        feed.subscribe(7, 3, SymbolId(1), &tx, DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION).unwrap();
        let events = venue.bid(999);
        feed.observe(venue.seq, &events);
        let messages = drain(&mut rx);
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            matches!(&messages[0], (3, Message::DepthSnapshot(book)) if book.book_seq == 0 && book.bids.len() == 1)
        );
        assert!(matches!(&messages[1], (0, Message::DepthUpdate(u)) if u.md_seq == 1 && u.price == 9_990_000));
        assert_eq!(feed.stats(), FeedStats { subscriptions: 1, stale: 0 });
        feed.unsubscribe(7, SymbolId(1));
        let events = venue.bid(998);
        feed.observe(venue.seq, &events);
        assert!(drain(&mut rx).is_empty());
        assert_eq!(feed.md_seq(SymbolId(1)), 2);
        feed.subscribe(7, 4, SymbolId(1), &tx, DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION).unwrap();
        feed.remove_connection(7);
        assert_eq!(feed.stats(), FeedStats { subscriptions: 0, stale: 0 });
    }

    #[test]
    fn a_slow_subscriber_loses_updates_then_is_resynchronised_by_a_snapshot() {
        let mut venue = Venue::new();
        let feed = MarketFeed::default();
        feed.seed(&venue.engine);
        let (tx, mut rx) = mpsc::channel(4);
        feed.subscribe(7, 1, SymbolId(1), &tx, DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION).unwrap();
        // Snapshot + 3 updates fill the queue; the next 5 updates are dropped.
        for ticks in 0..8 {
            let events = venue.bid(1_000 - ticks);
            feed.observe(venue.seq, &events);
        }
        assert_eq!(feed.stats(), FeedStats { subscriptions: 1, stale: 1 });
        let mut book = L2Book::new(SymbolId(1));
        for (_, message) in drain(&mut rx) {
            assert!(!matches!(book.on_message(&message), BookEvent::Gap { .. }));
        }
        assert_eq!(book.md_seq(), Some(3));
        // The reader caught up: the next command brings a snapshot instead of its update.
        let events = venue.bid(900);
        feed.observe(venue.seq, &events);
        assert_eq!(feed.stats(), FeedStats { subscriptions: 1, stale: 0 });
        let messages = drain(&mut rx);
        assert!(matches!(&messages[..], [(0, Message::DepthSnapshot(b))] if b.book_seq == 9), "{messages:?}");
        assert_eq!(book.on_message(&messages[0].1), BookEvent::Synced { book_seq: 9 });
        assert_eq!(book.depth(usize::MAX), venue.engine.depth(SymbolId(1), usize::MAX).unwrap());
        // And the updates continue after it.
        let events = venue.bid(899);
        feed.observe(venue.seq, &events);
        let messages = drain(&mut rx);
        assert_eq!(messages.len(), 1);
        assert_eq!(book.on_message(&messages[0].1), BookEvent::Applied { md_seq: 10 });
        assert_eq!(book.depth(usize::MAX), venue.engine.depth(SymbolId(1), usize::MAX).unwrap());
    }
}
