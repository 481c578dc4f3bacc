//! Matching with price-time priority: the taker loop, fills with fees, self-trade prevention,
//! the end of an order's life, and stop triggers.

use super::accounts::{bounded_add, index_u32};
use super::book::{Level, Order, NIL};
use super::event::{Event, OrderReport, Trade};
use super::limits::COMMAND_MATCHES_MAX;
use super::orders::{buy_hold, fee, notional, stop_fires};
use super::state::{Engine, Symbol, PPM};
use super::types::*;

/// Does a taker at its limit meet a level at `level_price_ticks`? Market orders meet any.
fn crosses(taker: &Order, level_price_ticks: i64) -> bool {
    if taker.order_type.is_market() {
        return true;
    }
    match taker.side {
        Side::Buy => level_price_ticks <= taker.price_ticks,
        Side::Sell => level_price_ticks >= taker.price_ticks,
    }
}

/// Most lots a market buy with `budget` quote minor units (fees included) can take at a price.
fn affordable_lots(symbol: &Symbol, price_ticks: i64, budget: i64, fee_ppm: u32) -> i64 {
    // Both factors are i64, so the product fits an i128.
    let lot_cost = i128::from(price_ticks) * i128::from(symbol.quote_per_tick_lot);
    let budget = i128::from(budget);
    if lot_cost <= 0 || lot_cost > budget {
        return 0;
    }
    // From here lot_cost <= budget < 2^63, and only `lots` with `lots * lot_cost <= budget + lot_cost`
    // are ever priced, so every product below stays under 2^64 * 2^21 and fits an i128.
    let cost = |lots: i128| {
        let n = lots * lot_cost;
        n + n * i128::from(fee_ppm) / i128::from(PPM)
    };
    // Start from the closed-form estimate, then step onto the exact answer (floor rounding of
    // the fee makes the estimate off by at most one or two lots).
    let mut lots = budget * i128::from(PPM) / (lot_cost * (i128::from(PPM) + i128::from(fee_ppm)));
    while lots > 0 && cost(lots) > budget {
        lots -= 1;
    }
    while cost(lots + 1) <= budget {
        lots += 1;
    }
    i64::try_from(lots).expect("at most budget / lot_cost lots, below 2^63")
}

impl Engine {
    fn owner_of(&self, order: &Order) -> u64 {
        self.accounts[order.account_idx as usize].owner
    }

    /// Runs an accepted order against the book, then rests, expires or cancels what is left.
    pub(crate) fn execute_taker(&mut self, slot: u32, out: &mut Vec<Event>) {
        let taker = *self.orders.get(slot);
        if taker.tif == TimeInForce::Fok && !self.fok_fillable(&taker) {
            self.finish_order(slot, OrderTransition::Expire, ExecKind::Expired, out);
            return;
        }
        let taker_owner = self.owner_of(&taker);
        let mut cancel_incoming = false;
        let mut must_expire = false;
        loop {
            let taker = *self.orders.get(slot);
            let symbol = &self.symbols[taker.symbol_idx as usize];
            let Some((level_price, level)) = symbol.book.best_opposite(taker.side) else {
                break;
            };
            if !crosses(&taker, level_price) {
                break;
            }
            // The command's match budget (`limits::COMMAND_MATCHES_MAX`) is spent: the taker
            // ends here like an IOC, whatever its time in force (it cannot rest: it crosses).
            // `must_expire` is set only where the taker still crosses the book.
            if self.matches_used == COMMAND_MATCHES_MAX {
                must_expire = true;
                break;
            }
            self.matches_used += 1;
            assert!(self.matches_used <= COMMAND_MATCHES_MAX);
            let maker_slot = level.head;
            let maker = *self.orders.get(maker_slot);
            if self.owner_of(&maker) == taker_owner {
                match taker.stp {
                    StpMode::CancelResting => {
                        self.cancel_resting(maker_slot, out);
                        continue;
                    }
                    StpMode::CancelIncoming => {}
                    StpMode::CancelBoth => self.cancel_resting(maker_slot, out),
                }
                cancel_incoming = true;
                break;
            }
            let mut lots = taker.remaining_lots().min(maker.remaining_lots());
            if taker.side == Side::Buy && taker.order_type.is_market() {
                let fee_ppm = symbol.spec.taker_fee_ppm.min(taker.fee_cap_ppm);
                lots = lots.min(affordable_lots(symbol, level_price, taker.held, fee_ppm));
                if lots == 0 {
                    break;
                }
            }
            let quote_qty = notional(symbol, level_price, lots).expect("a maker's whole notional was checked at entry");
            // An order's `filled_quote` adds up its fills, which can in principle pass i64 over a
            // long life (quote recycled through the book). Such an order ends before that fill:
            // a maker is cancelled (else it would block its level), a taker stops.
            if maker.filled_quote.checked_add(quote_qty).is_none() {
                self.cancel_resting(maker_slot, out);
                continue;
            }
            if taker.filled_quote.checked_add(quote_qty).is_none() {
                must_expire = true;
                break;
            }
            if self.fill(slot, maker_slot, level_price, lots, quote_qty, out) {
                return;
            }
        }
        let taker = *self.orders.get(slot);
        if cancel_incoming {
            self.finish_order(slot, OrderTransition::Cancel, ExecKind::Cancelled, out);
        } else if must_expire
            || taker.order_type.is_market()
            || matches!(taker.tif, TimeInForce::Ioc | TimeInForce::Fok)
        {
            self.finish_order(slot, OrderTransition::Expire, ExecKind::Expired, out);
        } else {
            self.rest(slot, out);
        }
    }

    /// Can a fill-or-kill order fill completely right now, counting self-trade prevention?
    fn fok_fillable(&self, taker: &Order) -> bool {
        let book = &self.symbols[taker.symbol_idx as usize].book;
        self.fok_scan(taker, book.levels(taker.side.opposite()).iter_best_first())
    }

    fn fok_scan<'a>(&self, taker: &Order, levels: impl Iterator<Item = (i64, &'a Level)>) -> bool {
        let taker_owner = self.owner_of(taker);
        let needed_lots = taker.remaining_lots();
        let mut available_lots: i64 = 0;
        // Each maker visited here is a match of the execution (a fill or a self-trade cancel):
        // an order that needs more than the command has left cannot fill completely.
        let mut matches_left = COMMAND_MATCHES_MAX - self.matches_used;
        for (price, level) in levels {
            if !crosses(taker, price) {
                break;
            }
            let mut slot = level.head;
            while slot != NIL {
                if matches_left == 0 {
                    return false;
                }
                matches_left -= 1;
                let maker = self.orders.get(slot);
                if self.owner_of(maker) == taker_owner {
                    if taker.stp != StpMode::CancelResting {
                        return false;
                    }
                } else {
                    // Only compared with `needed_lots`, so saturating cannot change the answer.
                    available_lots = available_lots.saturating_add(maker.remaining_lots());
                    if available_lots >= needed_lots {
                        return true;
                    }
                }
                slot = maker.next;
            }
        }
        false
    }

    /// Puts the unfilled rest of a limit order in the book, releasing any hold it no longer
    /// needs (a buy that traded below its limit holds more than its remainder costs).
    fn rest(&mut self, slot: u32, out: &mut Vec<Event>) {
        let o = *self.orders.get(slot);
        let symbol = &mut self.symbols[o.symbol_idx as usize];
        symbol.book.push_back(&mut self.orders, slot);
        self.orders.get_mut(slot).resting = true;
        if o.side == Side::Buy {
            let needed =
                buy_hold(symbol, o.price_ticks, o.remaining_lots(), o.fee_cap_ppm).expect("validated at entry");
            let excess = o.held - needed;
            if excess > 0 {
                let quote_idx = symbol.quote_idx;
                self.orders.get_mut(slot).held = needed;
                self.hold(o.account_idx, quote_idx, -excess, RefKind::Order, o.id.0, out);
            }
        }
    }

    fn cancel_resting(&mut self, slot: u32, out: &mut Vec<Event>) {
        self.take_out_of_book(slot);
        self.finish_order(slot, OrderTransition::Cancel, ExecKind::Cancelled, out);
    }

    /// One fill between a taker and the maker at the head of the best level. Moves funds,
    /// charges fees, emits the trade and both execution reports. Returns true when the taker
    /// is completely filled (and so has ended).
    fn fill(
        &mut self,
        taker_slot: u32,
        maker_slot: u32,
        price_ticks: i64,
        lots: i64,
        quote_qty: i64,
        out: &mut Vec<Event>,
    ) -> bool {
        let taker = *self.orders.get(taker_slot);
        let maker = *self.orders.get(maker_slot);
        let symbol = &self.symbols[taker.symbol_idx as usize];
        let (base_idx, quote_idx) = (symbol.base_idx, symbol.quote_idx);
        // At most the order's quantity, an i64 (`qty_to_lots`).
        let base_qty = lots * symbol.spec.lot_size;
        let taker_fee = fee(quote_qty, symbol.spec.taker_fee_ppm.min(taker.fee_cap_ppm));
        let maker_fee = fee(quote_qty, symbol.spec.maker_fee_ppm.min(maker.fee_cap_ppm));
        let trade = Trade {
            trade_id: TradeId(self.last_trade_id.0 + 1),
            symbol: symbol.spec.symbol,
            // The maker's own limit price, an i64 when it was placed.
            price: price_ticks * symbol.spec.tick_size,
            qty: base_qty,
            quote_qty,
            maker_order: maker.id,
            taker_order: taker.id,
            maker_account: self.accounts[maker.account_idx as usize].id,
            taker_account: self.accounts[taker.account_idx as usize].id,
            maker_side: maker.side,
            maker_fee,
            taker_fee,
        };
        self.last_trade_id = trade.trade_id;

        let (buyer, seller, buyer_fee, seller_fee) = if taker.side == Side::Buy {
            (&taker, &maker, taker_fee, maker_fee)
        } else {
            (&maker, &taker, maker_fee, taker_fee)
        };
        let tid = trade.trade_id;
        self.change_balance(buyer.account_idx, quote_idx, LedgerKind::Trade, 0, -quote_qty, RefKind::Trade, tid.0, out);
        self.change_balance(buyer.account_idx, quote_idx, LedgerKind::Fee, 0, -buyer_fee, RefKind::Trade, tid.0, out);
        self.change_balance(buyer.account_idx, base_idx, LedgerKind::Trade, base_qty, 0, RefKind::Trade, tid.0, out);
        self.change_balance(seller.account_idx, base_idx, LedgerKind::Trade, 0, -base_qty, RefKind::Trade, tid.0, out);
        self.change_balance(seller.account_idx, quote_idx, LedgerKind::Trade, quote_qty, 0, RefKind::Trade, tid.0, out);
        self.change_balance(seller.account_idx, quote_idx, LedgerKind::Fee, -seller_fee, 0, RefKind::Trade, tid.0, out);
        let fees = &mut self.totals[quote_idx as usize].fees_collected;
        *fees = bounded_add(*fees, bounded_add(taker_fee, maker_fee));

        for (slot, own_fee) in [(taker_slot, taker_fee), (maker_slot, maker_fee)] {
            let o = self.orders.get_mut(slot);
            // At most the order's quantity; `filled_quote` was checked by the caller, and fees
            // (each below its fill's quote) add up to less than it.
            o.filled_lots += lots;
            o.filled_quote += quote_qty;
            o.fees_paid += own_fee;
            // A buy's hold covers its fills and fees (checked at entry), so the sum fits.
            o.held -= if o.side == Side::Buy { bounded_add(quote_qty, own_fee) } else { base_qty };
            assert!(o.held >= 0, "order {} spent more than it held", o.id);
            assert!(o.filled_lots <= o.qty_lots, "order {} filled past its quantity", o.id);
        }
        let symbol = &mut self.symbols[taker.symbol_idx as usize];
        symbol.book.reduce_level(maker.side, maker.price_ticks, lots);
        symbol.last_price_ticks = price_ticks;
        out.push(Event::Trade(trade));

        self.after_fill(maker_slot, out);
        self.after_fill(taker_slot, out)
    }

    /// Reports a fill on one side; ends the order if nothing remains. Returns true if it ended.
    fn after_fill(&mut self, slot: u32, out: &mut Vec<Event>) -> bool {
        let o = *self.orders.get(slot);
        if o.remaining_lots() == 0 {
            if o.resting {
                self.take_out_of_book(slot);
            }
            self.finish_order(slot, OrderTransition::Fill { fully: true }, ExecKind::Trade, out);
            return true;
        }
        let order = self.orders.get_mut(slot);
        order.status = order.status.next(OrderTransition::Fill { fully: false }).expect("a live order can fill");
        out.push(Event::Order(self.report(slot, ExecKind::Trade)));
        false
    }

    /// Ends a live order that is already out of the book: releases what it still holds,
    /// forgets its ids, reports it, and frees its slot.
    pub(crate) fn finish_order(
        &mut self,
        slot: u32,
        transition: OrderTransition,
        exec: ExecKind,
        out: &mut Vec<Event>,
    ) {
        let o = *self.orders.get(slot);
        // Out of the book and the stop sets first: a freed slot must not stay linked.
        assert!(!o.resting && o.prev == NIL && o.next == NIL, "order {} ends while still in a level", o.id);
        let status = o
            .status
            .next(transition)
            .unwrap_or_else(|| panic!("order {} cannot go {:?} from {:?}", o.id, transition, o.status));
        if o.held > 0 {
            let symbol = &self.symbols[o.symbol_idx as usize];
            let asset_idx = if o.side == Side::Buy { symbol.quote_idx } else { symbol.base_idx };
            self.hold(o.account_idx, asset_idx, -o.held, RefKind::Order, o.id.0, out);
        }
        let order = self.orders.get_mut(slot);
        order.held = 0;
        order.status = status;
        out.push(Event::Order(self.report(slot, exec)));

        // Each index held the order exactly once: what is removed must be this order.
        let indexed = self.order_index.remove(&o.id);
        assert_eq!(indexed, Some(slot), "order {} was not indexed at its slot", o.id);
        if o.client_order_id != 0 {
            let named = self.client_order_ids.remove(&(o.account_idx, o.client_order_id));
            assert_eq!(named, Some(o.id), "client order id {} named another order", o.client_order_id);
        }
        let open_orders = &mut self.accounts[o.account_idx as usize].open_orders;
        let pos = o.account_pos as usize;
        let listed = open_orders.swap_remove(pos);
        assert_eq!(listed, slot, "order {} was not at its place in its account's list", o.id);
        if let Some(&moved) = open_orders.get(pos) {
            self.orders.get_mut(moved).account_pos = index_u32(pos);
        }
        self.orders.remove(slot);
    }

    /// Fires every stop order whose trigger the last trade price has crossed, in order-id
    /// order, and repeats while the fired orders move the price further.
    pub(crate) fn trigger_stops(&mut self, symbol_idx: u32, out: &mut Vec<Event>) {
        let mut fired = std::mem::take(&mut self.scratch_orders);
        loop {
            fired.clear();
            let symbol = &mut self.symbols[symbol_idx as usize];
            let last = symbol.last_price_ticks;
            let stops = &mut symbol.book;
            while let Some(&(stop, id)) = stops.stop_buys.first() {
                if !stop_fires(Side::Buy, stop, last) {
                    break;
                }
                stops.stop_buys.pop_first();
                fired.push(id);
            }
            while let Some(&(stop, id)) = stops.stop_sells.last() {
                if !stop_fires(Side::Sell, stop, last) {
                    break;
                }
                stops.stop_sells.pop_last();
                fired.push(id);
            }
            if fired.is_empty() {
                break;
            }
            fired.sort_unstable();
            for &id in &fired {
                let slot = self.order_index[&id];
                let order = self.orders.get_mut(slot);
                assert!(!order.triggered && !order.resting, "stop {id} fired twice");
                order.triggered = true;
                out.push(Event::Order(self.report(slot, ExecKind::Triggered)));
                self.execute_taker(slot, out);
            }
        }
        self.scratch_orders = fired;
    }

    /// The execution report of the order in `slot` as it is now.
    pub(crate) fn report(&self, slot: u32, exec: ExecKind) -> OrderReport {
        let o = self.orders.get(slot);
        let symbol = &self.symbols[o.symbol_idx as usize];
        let lot = symbol.spec.lot_size;
        OrderReport {
            order_id: o.id,
            account: self.accounts[o.account_idx as usize].id,
            symbol: symbol.spec.symbol,
            client_order_id: o.client_order_id,
            exec,
            status: o.status,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            // Prices and quantities were given in these units and divided exactly on entry.
            price: o.price_ticks * symbol.spec.tick_size,
            stop_price: o.stop_ticks * symbol.spec.tick_size,
            qty: o.qty_lots * lot,
            filled_qty: o.filled_lots * lot,
            remaining_qty: if o.status.is_terminal() { 0 } else { o.remaining_lots() * lot },
            filled_quote: o.filled_quote,
            fees_paid: o.fees_paid,
        }
    }
}
