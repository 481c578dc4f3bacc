//! The order store (a slab with a free list, so placing an order does not allocate once warm)
//! and the per-symbol book: per side, price levels in a sorted vector with the best price last,
//! each level an intrusive FIFO list of slab slots (time priority); plus the untriggered stops.

use super::types::*;
use super::units::{Lots, Ticks};
use std::collections::BTreeSet;

/// "No slot" in the intrusive lists.
pub const NIL: u32 = u32::MAX;

/// A live order. Sizes are in lots and prices in ticks of its symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub account_idx: u32,
    pub symbol_idx: u32,
    pub client_order_id: u64,
    pub side: Side,
    pub order_type: OrderType,
    pub tif: TimeInForce,
    pub stp: StpMode,
    pub status: OrderStatus,
    /// False while a stop order waits for its trigger; true for every other order.
    pub triggered: bool,
    /// True while the order sits in a price level of the book.
    pub resting: bool,
    pub price_ticks: Ticks,
    pub stop_ticks: Ticks,
    pub qty_lots: Lots,
    pub filled_lots: Lots,
    /// Quote minor units exchanged so far, fees excluded.
    pub filled_quote: i64,
    pub fees_paid: i64,
    /// Funds this order reserves: quote minor units for a buy, base minor units for a sell.
    /// For a market buy this is what is left of its quote budget.
    pub held: i64,
    /// The highest fee rate this order can be charged (the symbol's rate when it was placed
    /// or re-priced), so its hold always covers its fees even if the symbol's fees go up.
    pub fee_cap_ppm: u32,
    pub prev: u32,
    pub next: u32,
    /// Index of this order in its account's `open_orders`.
    pub account_pos: u32,
}

impl Order {
    /// An order of `id` with every other field zero, empty or the first of its kind, linked to
    /// nothing: what a decoder or a test fills in with `..Order::blank(id)`.
    pub fn blank(id: OrderId) -> Order {
        Order {
            id,
            account_idx: 0,
            symbol_idx: 0,
            client_order_id: 0,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            stp: StpMode::CancelIncoming,
            status: OrderStatus::New,
            triggered: false,
            resting: false,
            price_ticks: Ticks::ZERO,
            stop_ticks: Ticks::ZERO,
            qty_lots: Lots::ZERO,
            filled_lots: Lots::ZERO,
            filled_quote: 0,
            fees_paid: 0,
            held: 0,
            fee_cap_ppm: 0,
            prev: NIL,
            next: NIL,
            account_pos: 0,
        }
    }

    pub fn remaining_lots(&self) -> Lots {
        // Fills stop at the quantity (asserted in `fill`) and neither is negative.
        self.qty_lots.checked_sub(self.filled_lots).expect("filled lots are within the quantity")
    }
}

/// Slab of live orders; a slot is reused after its order ends. A free slot holds an order with
/// id 0 (ids are sequences, never 0), which makes a double free or a use after free visible in
/// O(1).
#[derive(Clone, Debug, Default)]
pub struct OrderSlab {
    pub slots: Vec<Order>,
    free: Vec<u32>,
}

/// The id a free slot's order carries.
const FREE_SLOT_ID: OrderId = OrderId::NONE;

impl OrderSlab {
    pub fn insert(&mut self, order: Order) -> u32 {
        assert_ne!(order.id, FREE_SLOT_ID, "an order's id is its sequence, never 0");
        if let Some(slot) = self.free.pop() {
            let free = &mut self.slots[slot as usize];
            assert_eq!(free.id, FREE_SLOT_ID, "slot {slot} on the free list holds order {}", free.id);
            *free = order;
            slot
        } else {
            self.slots.push(order);
            u32::try_from(self.slots.len() - 1).expect("live orders are bounded far below 2^32 by the limits")
        }
    }

    pub fn remove(&mut self, slot: u32) {
        let order = &mut self.slots[slot as usize];
        // A second free would hand the slot to two orders.
        assert_ne!(order.id, FREE_SLOT_ID, "slot {slot} freed twice");
        order.id = FREE_SLOT_ID;
        self.free.push(slot);
    }

    /// Slots holding a live order: O(slots), for the invariant checker.
    pub fn live_count(&self) -> usize {
        let live = self.slots.iter().filter(|o| o.id != FREE_SLOT_ID).count();
        debug_assert_eq!(live + self.free.len(), self.slots.len(), "the free list and the free slots disagree");
        live
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &Order {
        let order = &self.slots[slot as usize];
        debug_assert_ne!(order.id, FREE_SLOT_ID, "slot {slot} read after it was freed");
        order
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut Order {
        let order = &mut self.slots[slot as usize];
        debug_assert_ne!(order.id, FREE_SLOT_ID, "slot {slot} written after it was freed");
        order
    }
}

/// One price level: a FIFO of orders at the same price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub head: u32,
    pub tail: u32,
    pub total_lots: Lots,
    pub count: u32,
}

/// The price levels of one side, sorted so that the best price is last: ascending for bids,
/// descending for asks. Most activity is near the touch, so inserting or removing a level
/// moves only the few entries better than it, finding the best is O(1), and once the vectors
/// have grown nothing allocates (a `BTreeMap` allocates and frees nodes as levels come and go).
#[derive(Clone, Debug)]
pub struct PriceLevels {
    side: Side,
    prices: Vec<Ticks>,
    levels: Vec<Level>,
}

impl PriceLevels {
    pub fn new(side: Side) -> PriceLevels {
        PriceLevels { side, prices: Vec::new(), levels: Vec::new() }
    }

    /// Where `price` is, or would be inserted, in this side's order.
    fn search(&self, price: Ticks) -> Result<usize, usize> {
        match self.side {
            Side::Buy => self.prices.binary_search(&price),
            Side::Sell => self.prices.binary_search_by(|p| price.cmp(p)),
        }
    }

    pub fn len(&self) -> usize {
        self.prices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    pub fn best(&self) -> Option<(Ticks, &Level)> {
        Some((*self.prices.last()?, self.levels.last()?))
    }

    pub fn get_mut(&mut self, price: Ticks) -> Option<&mut Level> {
        let at = self.search(price).ok()?;
        Some(&mut self.levels[at])
    }

    fn get_or_insert(&mut self, price: Ticks) -> &mut Level {
        let at = match self.search(price) {
            Ok(at) => at,
            Err(at) => {
                self.prices.insert(at, price);
                self.levels.insert(at, Level { head: NIL, tail: NIL, total_lots: Lots::ZERO, count: 0 });
                at
            }
        };
        &mut self.levels[at]
    }

    fn remove(&mut self, price: Ticks) {
        if let Ok(at) = self.search(price) {
            self.prices.remove(at);
            self.levels.remove(at);
        }
    }

    /// Levels from the best price outwards.
    pub fn iter_best_first(&self) -> impl Iterator<Item = (Ticks, &Level)> {
        self.prices.iter().copied().zip(self.levels.iter()).rev()
    }

    /// Levels in ascending price, whatever the side (the canonical order of the state encoding).
    pub fn iter_ascending(&self) -> Box<dyn Iterator<Item = (Ticks, &Level)> + '_> {
        let pairs = self.prices.iter().copied().zip(self.levels.iter());
        match self.side {
            Side::Buy => Box::new(pairs),
            Side::Sell => Box::new(pairs.rev()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Book {
    pub bids: PriceLevels,
    pub asks: PriceLevels,
    /// Untriggered buy stops, by (stop price in ticks, order id).
    pub stop_buys: BTreeSet<(Ticks, OrderId)>,
    /// Untriggered sell stops, by (stop price in ticks, order id).
    pub stop_sells: BTreeSet<(Ticks, OrderId)>,
    /// Orders resting in the levels of both sides.
    resting: usize,
}

impl Default for Book {
    fn default() -> Book {
        Book {
            bids: PriceLevels::new(Side::Buy),
            asks: PriceLevels::new(Side::Sell),
            stop_buys: BTreeSet::new(),
            stop_sells: BTreeSet::new(),
            resting: 0,
        }
    }
}

impl Book {
    fn levels_mut(&mut self, side: Side) -> &mut PriceLevels {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    pub fn levels(&self, side: Side) -> &PriceLevels {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    /// The best level a taker on `taker_side` would meet: lowest ask for a buy, highest bid for a sell.
    pub fn best_opposite(&self, taker_side: Side) -> Option<(Ticks, &Level)> {
        self.levels(taker_side.opposite()).best()
    }

    /// Orders resting in the book (both sides).
    pub fn resting_count(&self) -> usize {
        self.resting
    }

    /// Stops waiting for their trigger (both sides).
    pub fn stop_count(&self) -> usize {
        self.stop_buys.len() + self.stop_sells.len()
    }

    pub fn best_bid_ticks(&self) -> Option<Ticks> {
        self.bids.best().map(|(p, _)| p)
    }

    pub fn best_ask_ticks(&self) -> Option<Ticks> {
        self.asks.best().map(|(p, _)| p)
    }

    /// Appends the order in `slot` to the tail of its price level (lowest time priority).
    pub fn push_back(&mut self, slab: &mut OrderSlab, slot: u32) {
        let (side, price, lots) = {
            let o = slab.get(slot);
            // Only a live remainder at a real price rests, and only once.
            assert!(!o.resting && o.prev == NIL && o.next == NIL, "order {} is already in a level", o.id);
            (o.side, o.price_ticks, o.remaining_lots())
        };
        assert!(lots.is_positive() && price.is_positive(), "resting {lots} lots at {price} ticks");
        let level = self.levels_mut(side).get_or_insert(price);
        let old_tail = level.tail;
        {
            let o = slab.get_mut(slot);
            o.prev = old_tail;
            o.next = NIL;
        }
        if old_tail == NIL {
            level.head = slot;
        } else {
            slab.get_mut(old_tail).next = slot;
        }
        level.tail = slot;
        // A level's lots are bounded by what its orders hold: a sell holds its base quantity, a
        // buy at least one quote minor unit per lot, and holds never exceed the asset's supply.
        level.total_lots = level.total_lots.checked_add(lots).expect("level lots are bounded by the supply held");
        level.count += 1;
        self.resting += 1;
    }

    /// Removes the order in `slot` from its price level; drops the level when it empties.
    pub fn unlink(&mut self, slab: &mut OrderSlab, slot: u32) {
        let (side, price, lots, prev, next) = {
            let o = slab.get(slot);
            (o.side, o.price_ticks, o.remaining_lots(), o.prev, o.next)
        };
        let levels = self.levels_mut(side);
        let level = levels.get_mut(price).expect("resting order's level exists");
        if prev == NIL {
            level.head = next;
        } else {
            slab.get_mut(prev).next = next;
        }
        if next == NIL {
            level.tail = prev;
        } else {
            slab.get_mut(next).prev = prev;
        }
        assert!(level.count > 0 && level.total_lots >= lots, "unlinking {lots} lots from a level {level:?}");
        level.total_lots = level.total_lots.checked_sub(lots).expect("checked just above");
        level.count -= 1;
        // A level is empty exactly when its list is.
        assert_eq!(level.count == 0, level.head == NIL, "level count and list disagree: {level:?}");
        if level.count == 0 {
            levels.remove(price);
        }
        self.resting -= 1;
        let o = slab.get_mut(slot);
        o.prev = NIL;
        o.next = NIL;
    }

    /// A resting order shrank in place by `lots` (a fill or an amend down); it keeps its place.
    pub fn reduce_level(&mut self, side: Side, price_ticks: Ticks, lots: Lots) {
        let level = self.levels_mut(side).get_mut(price_ticks).expect("resting order's level exists");
        // A level keeps every order's remainder, so it cannot shrink below zero; it reaches
        // zero only when its last order fills and is unlinked next.
        assert!(
            lots >= Lots::ZERO && level.total_lots >= lots,
            "level at {price_ticks} shrinks by {lots} from {level:?}"
        );
        level.total_lots = level.total_lots.checked_sub(lots).expect("checked just above");
    }

    pub fn stops_mut(&mut self, side: Side) -> &mut BTreeSet<(Ticks, OrderId)> {
        match side {
            Side::Buy => &mut self.stop_buys,
            Side::Sell => &mut self.stop_sells,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: OrderId) -> Order {
        Order {
            stp: StpMode::CancelResting,
            triggered: true,
            price_ticks: Ticks::new(1),
            qty_lots: Lots::new(1),
            ..Order::blank(id)
        }
    }

    #[test]
    fn a_freed_slot_is_reused_once() {
        let mut slab = OrderSlab::default();
        let (a, b) = (slab.insert(order(OrderId(1))), slab.insert(order(OrderId(2))));
        slab.remove(a);
        assert_eq!(slab.live_count(), 1);
        assert_eq!(slab.insert(order(OrderId(3))), a);
        assert_eq!((slab.get(a).id, slab.get(b).id, slab.live_count()), (OrderId(3), OrderId(2), 2));
    }

    #[test]
    #[should_panic(expected = "freed twice")]
    fn a_double_free_stops() {
        let mut slab = OrderSlab::default();
        let slot = slab.insert(order(OrderId(1)));
        slab.remove(slot);
        slab.remove(slot);
    }
}
