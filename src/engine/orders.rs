//! Order entry: validation and funds holds for place, cancel, cancel-all and amend. Matching
//! itself lives in `matching.rs`.

use super::accounts::index_u32;
use super::book::{Order, NIL};
use super::command::NewOrder;
use super::event::Event;
use super::limits::{ACCOUNT_OPEN_ORDERS_MAX, SYMBOL_ORDERS_MAX, SYMBOL_STOPS_MAX};
use super::state::{Engine, Symbol, PPM};
use super::types::*;
use super::Verdict;

/// Quote minor units for `lots` at `price_ticks`; `None` if it does not fit an i64.
pub(crate) fn notional(symbol: &Symbol, price_ticks: i64, lots: i64) -> Option<i64> {
    // Two i64 factors always fit an i128; the third may not.
    let n = (i128::from(price_ticks) * i128::from(lots)).checked_mul(i128::from(symbol.quote_per_tick_lot))?;
    i64::try_from(n).ok()
}

/// Fee on a notional at a rate in parts per million, rounded down (so a hold computed at the
/// highest rate always covers the fees of any split into partial fills).
pub(crate) fn fee(notional: i64, rate_ppm: u32) -> i64 {
    // i64 when the product fits (every realistic notional): i128 division is a library call.
    match notional.checked_mul(i64::from(rate_ppm)) {
        Some(product) => product / PPM,
        // Rates are below PPM (checked in the symbol spec), so the fee is below the notional.
        None => i64::try_from(i128::from(notional) * i128::from(rate_ppm) / i128::from(PPM))
            .expect("a fee is below its notional"),
    }
}

/// Quote minor units a buy of `lots` at `price_ticks` must hold: notional plus the highest fee.
pub(crate) fn buy_hold(symbol: &Symbol, price_ticks: i64, lots: i64, fee_cap_ppm: u32) -> Option<i64> {
    let n = notional(symbol, price_ticks, lots)?;
    n.checked_add(fee(n, fee_cap_ppm))
}

pub(crate) fn max_fee_ppm(symbol: &Symbol) -> u32 {
    symbol.spec.maker_fee_ppm.max(symbol.spec.taker_fee_ppm)
}

/// Is `price_ticks` within the symbol's band around the last trade price?
fn within_band(symbol: &Symbol, price_ticks: i64) -> bool {
    let band_bps = i128::from(symbol.spec.price_band_bps);
    let last = i128::from(symbol.last_price_ticks);
    if band_bps == 0 || last == 0 {
        return true;
    }
    (price_ticks as i128 - last).abs() * 10_000 <= last * band_bps
}

/// Would a stop at `stop_ticks` fire at the last price?
pub(crate) fn stop_fires(side: Side, stop_ticks: i64, last_price_ticks: i64) -> bool {
    last_price_ticks != 0
        && match side {
            Side::Buy => last_price_ticks >= stop_ticks,
            Side::Sell => last_price_ticks <= stop_ticks,
        }
}

/// Converts a price in quote minor units to ticks, checking it is positive and on the tick.
fn price_to_ticks(symbol: &Symbol, price: i64) -> Result<i64, RejectReason> {
    if price <= 0 {
        return Err(RejectReason::InvalidPrice);
    }
    if price % symbol.spec.tick_size != 0 {
        return Err(RejectReason::PriceNotOnTick);
    }
    Ok(price / symbol.spec.tick_size)
}

/// Converts a quantity in base minor units to lots, checking the symbol's size limits.
fn qty_to_lots(symbol: &Symbol, qty: i64) -> Result<i64, RejectReason> {
    if qty <= 0 {
        return Err(RejectReason::InvalidQuantity);
    }
    if qty % symbol.spec.lot_size != 0 {
        return Err(RejectReason::QuantityNotOnLot);
    }
    if qty < symbol.spec.min_qty {
        return Err(RejectReason::BelowMinQuantity);
    }
    if qty > symbol.spec.max_order_qty {
        return Err(RejectReason::AboveMaxQuantity);
    }
    Ok(qty / symbol.spec.lot_size)
}

fn check_combination(o: &NewOrder) -> Verdict {
    let valid = match o.order_type {
        OrderType::Market | OrderType::StopMarket => o.tif == TimeInForce::Ioc,
        OrderType::StopLimit => o.tif != TimeInForce::PostOnly,
        OrderType::Limit => true,
    };
    if valid {
        Ok(())
    } else {
        Err(RejectReason::InvalidOrderCombination)
    }
}

/// A placement that passed every check: what to store and how much to hold.
struct Accepted {
    price_ticks: i64,
    stop_ticks: i64,
    qty_lots: i64,
    hold_amount: i64,
    hold_asset_idx: u32,
    fee_cap_ppm: u32,
}

impl Engine {
    fn validate_place(&self, account_idx: u32, symbol_idx: u32, o: &NewOrder) -> Result<Accepted, RejectReason> {
        let symbol = &self.symbols[symbol_idx as usize];
        if symbol.status == SymbolStatus::Halted {
            return Err(RejectReason::SymbolHalted);
        }
        check_combination(o)?;
        let qty_lots = qty_to_lots(symbol, o.qty)?;
        let is_limit = !o.order_type.is_market();
        let price_ticks = if is_limit { price_to_ticks(symbol, o.price)? } else { 0 };
        if is_limit {
            if !within_band(symbol, price_ticks) {
                return Err(RejectReason::PriceOutOfBand);
            }
            let n = notional(symbol, price_ticks, qty_lots).ok_or(RejectReason::Overflow)?;
            if n < symbol.spec.min_notional {
                return Err(RejectReason::BelowMinNotional);
            }
        }
        let stop_ticks = if o.order_type.is_stop() { price_to_ticks(symbol, o.stop_price)? } else { 0 };
        if o.order_type.is_stop() && stop_fires(o.side, stop_ticks, symbol.last_price_ticks) {
            return Err(RejectReason::StopWouldTriggerImmediately);
        }
        if o.client_order_id != 0 && self.client_order_ids.contains_key(&(account_idx, o.client_order_id)) {
            return Err(RejectReason::DuplicateClientOrderId);
        }
        self.check_order_limits(account_idx, symbol, o)?;
        let fee_cap_ppm = max_fee_ppm(symbol);
        let (hold_asset_idx, hold_amount) = match (o.side, is_limit) {
            (Side::Buy, true) => {
                (symbol.quote_idx, buy_hold(symbol, price_ticks, qty_lots, fee_cap_ppm).ok_or(RejectReason::Overflow)?)
            }
            (Side::Buy, false) if o.quote_budget <= 0 => return Err(RejectReason::InvalidBudget),
            (Side::Buy, false) => (symbol.quote_idx, o.quote_budget),
            (Side::Sell, _) => (symbol.base_idx, o.qty),
        };
        if self.balance(account_idx, hold_asset_idx).available < hold_amount {
            return Err(RejectReason::InsufficientFunds);
        }
        if o.tif == TimeInForce::PostOnly && self.would_take(symbol, o.side, price_ticks) {
            return Err(RejectReason::PostOnlyWouldTake);
        }
        Ok(Accepted { price_ticks, stop_ticks, qty_lots, hold_amount, hold_asset_idx, fee_cap_ppm })
    }

    /// The limits on live orders (see `limits`), for an order that may stay live: a stop (it
    /// waits for its trigger) or a GTC or post-only limit order (it may rest). Market, IOC and
    /// FOK orders end within their command, so they never count.
    fn check_order_limits(&self, account_idx: u32, symbol: &Symbol, o: &NewOrder) -> Verdict {
        let is_stop = o.order_type.is_stop();
        let may_rest = o.order_type == OrderType::Limit && matches!(o.tif, TimeInForce::Gtc | TimeInForce::PostOnly);
        if !is_stop && !may_rest {
            return Ok(());
        }
        if self.accounts[account_idx as usize].open_orders.len() >= ACCOUNT_OPEN_ORDERS_MAX {
            return Err(RejectReason::TooManyOpenOrders);
        }
        let book = &symbol.book;
        if book.resting_count() + book.stop_count() >= SYMBOL_ORDERS_MAX {
            return Err(RejectReason::SymbolOrdersFull);
        }
        if is_stop && book.stop_count() >= SYMBOL_STOPS_MAX {
            return Err(RejectReason::TooManyStops);
        }
        Ok(())
    }

    /// Would a limit order at `price_ticks` on `side` meet the opposite side of the book?
    fn would_take(&self, symbol: &Symbol, side: Side, price_ticks: i64) -> bool {
        match symbol.book.best_opposite(side) {
            Some((best, _)) => match side {
                Side::Buy => best <= price_ticks,
                Side::Sell => best >= price_ticks,
            },
            None => false,
        }
    }

    pub(crate) fn place_order(&mut self, seq: Seq, o: &NewOrder, out: &mut Vec<Event>) -> Verdict {
        let account_idx = self.active_account_idx(o.account)?;
        let symbol_idx = self.symbol_idx(o.symbol)?;
        let accepted = self.validate_place(account_idx, symbol_idx, o)?;

        let order = Order {
            id: OrderId::from_seq(seq),
            account_idx,
            symbol_idx,
            client_order_id: o.client_order_id,
            side: o.side,
            order_type: o.order_type,
            tif: o.tif,
            stp: o.stp,
            status: OrderStatus::New,
            triggered: !o.order_type.is_stop(),
            resting: false,
            price_ticks: accepted.price_ticks,
            stop_ticks: accepted.stop_ticks,
            qty_lots: accepted.qty_lots,
            filled_lots: 0,
            filled_quote: 0,
            fees_paid: 0,
            held: accepted.hold_amount,
            fee_cap_ppm: accepted.fee_cap_ppm,
            prev: NIL,
            next: NIL,
            account_pos: 0,
        };
        let slot = self.orders.insert(order);
        // An order's id is its command's sequence: never indexed before.
        let previous = self.order_index.insert(OrderId::from_seq(seq), slot);
        assert!(previous.is_none(), "order id {seq} used twice");
        if o.client_order_id != 0 {
            // `validate_place` refused a client order id in use.
            let previous = self.client_order_ids.insert((account_idx, o.client_order_id), OrderId::from_seq(seq));
            assert!(previous.is_none(), "client order id {} used twice", o.client_order_id);
        }
        let open_orders = &mut self.accounts[account_idx as usize].open_orders;
        self.orders.get_mut(slot).account_pos = index_u32(open_orders.len());
        open_orders.push(slot);
        // An order that may stay live was checked against the limit; one that ends within this
        // command (market, IOC, FOK) may pass it by itself, for the command's length.
        assert!(open_orders.len() <= ACCOUNT_OPEN_ORDERS_MAX + 1, "account over its open-order limit");
        self.hold(account_idx, accepted.hold_asset_idx, accepted.hold_amount, RefKind::Order, seq, out);
        out.push(Event::Order(self.report(slot, ExecKind::New)));

        if o.order_type.is_stop() {
            let inserted = self.symbols[symbol_idx as usize]
                .book
                .stops_mut(o.side)
                .insert((accepted.stop_ticks, OrderId::from_seq(seq)));
            assert!(inserted, "stop {seq} waits twice");
            return Ok(());
        }
        self.execute_taker(slot, out);
        self.trigger_stops(symbol_idx, out);
        Ok(())
    }

    /// The slot of a live order owned by `account_idx`; other accounts' orders look unknown.
    fn owned_order_slot(&self, account_idx: u32, order_id: OrderId) -> Result<u32, RejectReason> {
        match self.order_index.get(&order_id) {
            Some(&slot) if self.orders.get(slot).account_idx == account_idx => Ok(slot),
            _ => Err(RejectReason::UnknownOrder),
        }
    }

    pub(crate) fn cancel_order(&mut self, account: AccountId, order_id: OrderId, out: &mut Vec<Event>) -> Verdict {
        let account_idx = self.account_idx(account)?;
        let slot = self.owned_order_slot(account_idx, order_id)?;
        self.cancel_slot(slot, out);
        Ok(())
    }

    pub(crate) fn cancel_by_client_id(
        &mut self,
        account: AccountId,
        client_order_id: u64,
        out: &mut Vec<Event>,
    ) -> Verdict {
        let account_idx = self.account_idx(account)?;
        let order_id = *self.client_order_ids.get(&(account_idx, client_order_id)).ok_or(RejectReason::UnknownOrder)?;
        let slot = self.owned_order_slot(account_idx, order_id)?;
        self.cancel_slot(slot, out);
        Ok(())
    }

    /// Cancels the account's live orders (of one symbol, or all when `symbol` is 0) in order-id
    /// order, so the events are the same on every replica.
    pub(crate) fn cancel_all(&mut self, account: AccountId, symbol: SymbolId, out: &mut Vec<Event>) -> Verdict {
        let account_idx = self.account_idx(account)?;
        let symbol_filter = if symbol == SymbolId::ALL { None } else { Some(self.symbol_idx(symbol)?) };
        let mut ids = std::mem::take(&mut self.scratch_orders);
        ids.clear();
        for &slot in &self.accounts[account_idx as usize].open_orders {
            let o = self.orders.get(slot);
            if symbol_filter.is_none_or(|s| s == o.symbol_idx) {
                ids.push(o.id);
            }
        }
        ids.sort_unstable();
        for &id in &ids {
            let slot = self.order_index[&id];
            self.cancel_slot(slot, out);
        }
        self.scratch_orders = ids;
        Ok(())
    }

    /// Takes a live order out of the book (or the stop set) and ends it as cancelled.
    fn cancel_slot(&mut self, slot: u32, out: &mut Vec<Event>) {
        self.take_out_of_book(slot);
        self.finish_order(slot, OrderTransition::Cancel, ExecKind::Cancelled, out);
    }

    /// Removes a live order from wherever it waits: its price level or its stop set.
    pub(crate) fn take_out_of_book(&mut self, slot: u32) {
        let o = *self.orders.get(slot);
        let book = &mut self.symbols[o.symbol_idx as usize].book;
        if o.resting {
            book.unlink(&mut self.orders, slot);
            self.orders.get_mut(slot).resting = false;
        } else if !o.triggered {
            let removed = book.stops_mut(o.side).remove(&(o.stop_ticks, o.id));
            assert!(removed, "waiting stop {} is not in its stop set", o.id);
        }
    }

    pub(crate) fn amend_order(
        &mut self,
        account: AccountId,
        order_id: OrderId,
        price: i64,
        qty: i64,
        out: &mut Vec<Event>,
    ) -> Verdict {
        let account_idx = self.active_account_idx(account)?;
        let slot = self.owned_order_slot(account_idx, order_id)?;
        let o = *self.orders.get(slot);
        let symbol = &self.symbols[o.symbol_idx as usize];
        if symbol.status == SymbolStatus::Halted {
            return Err(RejectReason::SymbolHalted);
        }
        if !o.resting {
            return Err(RejectReason::AmendNotAllowed);
        }
        let price_ticks = price_to_ticks(symbol, price)?;
        let qty_lots = qty_to_lots(symbol, qty)?;
        let remaining_lots = qty_lots - o.filled_lots;
        if remaining_lots <= 0 {
            return Err(RejectReason::InvalidQuantity);
        }
        let price_changed = price_ticks != o.price_ticks;
        if price_changed && !within_band(symbol, price_ticks) {
            return Err(RejectReason::PriceOutOfBand);
        }
        let n = notional(symbol, price_ticks, qty_lots).ok_or(RejectReason::Overflow)?;
        if n < symbol.spec.min_notional {
            return Err(RejectReason::BelowMinNotional);
        }
        if price_changed && o.tif == TimeInForce::PostOnly && self.would_take(symbol, o.side, price_ticks) {
            return Err(RejectReason::PostOnlyWouldTake);
        }
        let keeps_priority = !price_changed && qty_lots <= o.qty_lots;
        // A re-priced order is a new commitment, so it takes the symbol's current fee cap.
        let fee_cap_ppm = if keeps_priority { o.fee_cap_ppm } else { max_fee_ppm(symbol) };
        let (hold_asset_idx, held_needed) = match o.side {
            Side::Buy => (
                symbol.quote_idx,
                buy_hold(symbol, price_ticks, remaining_lots, fee_cap_ppm).ok_or(RejectReason::Overflow)?,
            ),
            Side::Sell => (symbol.base_idx, remaining_lots * symbol.spec.lot_size),
        };
        let hold_delta = held_needed - o.held;
        if hold_delta > self.balance(account_idx, hold_asset_idx).available {
            return Err(RejectReason::InsufficientFunds);
        }

        // Validated: from here on the amend happens.
        self.hold(account_idx, hold_asset_idx, hold_delta, RefKind::Order, order_id.0, out);
        if keeps_priority {
            let shrink_lots = o.qty_lots - qty_lots;
            self.symbols[o.symbol_idx as usize].book.reduce_level(o.side, o.price_ticks, shrink_lots);
        } else {
            self.take_out_of_book(slot);
        }
        let order = self.orders.get_mut(slot);
        order.held = held_needed;
        order.fee_cap_ppm = fee_cap_ppm;
        order.qty_lots = qty_lots;
        order.price_ticks = price_ticks;
        out.push(Event::Order(self.report(slot, ExecKind::Amended)));
        if !keeps_priority {
            self.execute_taker(slot, out);
            self.trigger_stops(o.symbol_idx, out);
        }
        Ok(())
    }
}
