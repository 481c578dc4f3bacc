//! The invariant checker: every invariant ARCHITECTURE.md lists ("Invariants"), checked over
//! the whole state, and when debug builds run it.
//!
//! `check_invariants` is O(size of the state). It runs in the tests, after decoding a snapshot,
//! and in debug builds at the end of `Engine::apply` (`check_after_command`): after every
//! command while the state is small, and on a deterministic sample of commands beyond that, so
//! a debug run of a large state stays linear in its commands. The ledger audit (invariant 6) is
//! incremental and runs after every command in debug builds.

use super::book::NIL;
#[cfg(debug_assertions)]
use super::event::Event;
use super::state::Engine;
use super::types::*;
use super::units::Lots;

/// The invariants of ARCHITECTURE.md, numbered as there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invariant {
    /// 1. No balance is negative.
    NonNegative = 1,
    /// 2. Per asset: balances + fees collected = deposits - withdrawals.
    Conservation = 2,
    /// 3. Every `held` is exactly what live orders and pending withdrawals reserve.
    Holds = 3,
    /// 4. No book is crossed; levels agree with their orders; stop sets with the stops.
    Books = 4,
    /// 5. Every subtree total is the account's own total plus its descendants'.
    SubtreeTotals = 5,
    /// 6. The ledger stream of each (account, asset) sums to its balance (debug builds).
    Ledger = 6,
    /// 7. Determinism, the part a single state can show: every derived structure (indexes,
    ///    slab, positions, counts, paths) agrees with the canonical state the hash covers.
    Derived = 7,
}

/// A broken invariant, described for a person. Any occurrence is an engine bug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvariantError {
    pub invariant: Invariant,
    pub message: String,
}

impl std::fmt::Display for InvariantError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invariant {} ({:?}) broken: {}", self.invariant as u8, self.invariant, self.message)
    }
}

impl std::error::Error for InvariantError {}

fn broken<T>(invariant: Invariant, message: String) -> Result<T, InvariantError> {
    Err(InvariantError { invariant, message })
}

/// In debug builds `apply` runs `check_invariants` after the commands whose sequence is a
/// multiple of `check_period(size)` (`size` from `Engine::check_size`): a power of two near
/// `size / CHECK_SIZE_PER_COMMAND`, so 1 (every command) while the size is below twice this.
/// The checks then cost about `CHECK_SIZE_PER_COMMAND` units per command whatever the state's
/// size (the 10k-order and million-account limit tests stay linear; the value trades debug test
/// time against how often a large state is checked: BENCHMARKS.md, "Assertions in the engine").
/// Deterministic: it depends on the sequence and the state only.
#[cfg_attr(not(debug_assertions), allow(dead_code))] // used by debug builds' `apply`
pub const CHECK_SIZE_PER_COMMAND: usize = 64;

/// Commands between two full checks for a state of `size` units (1 while small).
#[cfg_attr(not(debug_assertions), allow(dead_code))]
pub fn check_period(size: usize) -> u64 {
    (size / CHECK_SIZE_PER_COMMAND).max(1).next_power_of_two() as u64
}

/// Running sums of the ledger stream per (account index, asset index): what invariant 6
/// compares the balances with. Kept only in debug builds (it costs a hash lookup per ledger
/// entry); release builds leave invariant 6 to the tests, which sum the events themselves.
#[cfg(debug_assertions)]
#[derive(Clone, Debug, Default)]
pub(crate) struct LedgerAudit {
    sums: rustc_hash::FxHashMap<(u32, u32), super::state::Balance>,
}

impl Engine {
    /// Checks every invariant of the state; O(size of state). See ARCHITECTURE.md, "Invariants".
    pub fn check_invariants(&self) -> Result<(), InvariantError> {
        self.check_derived()?;
        self.check_conservation_and_holds()?;
        self.check_subtree_totals()?;
        self.check_books()?;
        self.check_ledger()
    }

    /// The size the checks walk: balance slots, live orders, withdrawals, symbols, request keys.
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    pub(crate) fn check_size(&self) -> usize {
        self.accounts.len() * self.assets.len().max(1)
            + self.order_index.len()
            + self.withdrawals.len()
            + self.symbols.len()
            + self.request_keys.len()
    }

    /// Debug builds, at the end of `apply`: the incremental ledger audit, then the full check
    /// after every command while the state is small and on a deterministic sample beyond.
    #[cfg(debug_assertions)]
    pub(crate) fn check_after_command(&mut self, events: &[Event]) {
        self.audit_ledger(events);
        if self.last_seq.is_multiple_of(check_period(self.check_size())) {
            if let Err(e) = self.check_invariants() {
                panic!("after command {}: {e}", self.last_seq);
            }
        }
    }

    /// Adds a command's ledger entries to the running sums and checks each entry's "after"
    /// amounts against them: the stream alone must rebuild every balance.
    #[cfg(debug_assertions)]
    fn audit_ledger(&mut self, events: &[Event]) {
        for event in events {
            let Event::Ledger(entry) = event else { continue };
            let (Ok(account_idx), Ok(asset_idx)) = (self.account_idx(entry.account), self.asset_idx(entry.asset))
            else {
                panic!("ledger entry of an unknown account or asset: {entry:?}");
            };
            let sum = self.ledger_audit.sums.entry((account_idx, asset_idx)).or_default();
            sum.available += entry.available_delta;
            sum.held += entry.held_delta;
            assert!(
                sum.available == entry.available_after && sum.held == entry.held_after,
                "the ledger of account {} asset {} sums to {sum:?}, its entry says {entry:?}",
                entry.account,
                entry.asset
            );
        }
    }

    /// After decoding a snapshot: the ledger before it is summarized by the balances.
    #[cfg(debug_assertions)]
    pub(crate) fn reset_ledger_audit(&mut self) {
        self.ledger_audit.sums.clear();
        for (account_idx, account) in self.accounts.iter().enumerate() {
            for (asset_idx, balance) in account.balances.iter().enumerate() {
                if balance.total() != 0 || balance.held != 0 {
                    self.ledger_audit.sums.insert((account_idx as u32, asset_idx as u32), *balance);
                }
            }
        }
    }

    /// Test hook: a ledger line that never happened (a planted bug for invariant 6).
    #[cfg(all(test, debug_assertions))]
    pub(crate) fn corrupt_ledger_audit(&mut self, account_idx: u32, asset_idx: u32, delta: i64) {
        self.ledger_audit.sums.entry((account_idx, asset_idx)).or_default().available += delta;
    }

    /// Invariant 6: every balance equals the sum of its ledger entries (debug builds only).
    fn check_ledger(&self) -> Result<(), InvariantError> {
        #[cfg(debug_assertions)]
        {
            let mut nonzero_sums = 0usize;
            for (account_idx, account) in self.accounts.iter().enumerate() {
                for asset_idx in 0..self.assets.len() {
                    let balance = self.balance(account_idx as u32, asset_idx as u32);
                    let sum = self
                        .ledger_audit
                        .sums
                        .get(&(account_idx as u32, asset_idx as u32))
                        .copied()
                        .unwrap_or_default();
                    if sum != balance {
                        return broken(
                            Invariant::Ledger,
                            format!(
                                "account {} asset {}: balance {balance:?}, its ledger sums to {sum:?}",
                                account.id, self.assets[asset_idx].id
                            ),
                        );
                    }
                    nonzero_sums += usize::from(sum != Default::default());
                }
            }
            // Counting is the same in any order, so walking the map here observes nothing.
            let recorded = self.ledger_audit.sums.values().filter(|s| **s != Default::default()).count();
            if recorded != nonzero_sums {
                return broken(Invariant::Ledger, format!("{recorded} ledgers recorded, {nonzero_sums} balances"));
            }
        }
        Ok(())
    }

    /// Per asset: balances + fees = deposits - withdrawals; no negative balance; every held
    /// amount is exactly what the account's live orders and pending withdrawals reserve.
    fn check_conservation_and_holds(&self) -> Result<(), InvariantError> {
        let asset_count = self.assets.len();
        // Flat (account, asset) matrices: one allocation per check, not one per account.
        let mut reserved = vec![0i128; self.accounts.len() * asset_count];
        // Slab order: deterministic, and every live slot is an indexed order (`check_derived`).
        for o in self.orders.slots.iter().filter(|o| self.order_index.contains_key(&o.id)) {
            if o.held < 0 || o.status.is_terminal() {
                return broken(Invariant::Holds, format!("order {} is inconsistent: {o:?}", o.id));
            }
            let symbol = &self.symbols[o.symbol_idx as usize];
            let asset_idx = if o.side == Side::Buy { symbol.quote_idx } else { symbol.base_idx };
            reserved[o.account_idx as usize * asset_count + asset_idx as usize] += i128::from(o.held);
        }
        for (id, w) in self.withdrawals.iter().filter(|(_, w)| w.status == WithdrawalStatus::Pending) {
            let (Ok(a), Ok(s)) = (self.account_idx(w.account), self.asset_idx(w.asset)) else {
                return broken(Invariant::Holds, format!("withdrawal {id} names an unknown account or asset"));
            };
            reserved[a as usize * asset_count + s as usize] += i128::from(w.amount);
        }
        let mut sums = vec![0i128; asset_count];
        for (idx, account) in self.accounts.iter().enumerate() {
            for asset_idx in 0..asset_count {
                let b = self.balance(idx as u32, asset_idx as u32);
                if b.available < 0 || b.held < 0 {
                    return broken(
                        Invariant::NonNegative,
                        format!("account {} has a negative balance {b:?}", account.id),
                    );
                }
                let reserved = reserved[idx * asset_count + asset_idx];
                if i128::from(b.held) != reserved {
                    return broken(
                        Invariant::Holds,
                        format!(
                            "account {} asset {} holds {} but its orders and withdrawals reserve {reserved}",
                            account.id, self.assets[asset_idx].id, b.held
                        ),
                    );
                }
                sums[asset_idx] += i128::from(b.available) + i128::from(b.held);
            }
        }
        for (asset_idx, totals) in self.totals.iter().enumerate() {
            if Some(sums[asset_idx] + i128::from(totals.fees_collected))
                != totals.deposited.checked_sub(totals.withdrawn)
            {
                return broken(
                    Invariant::Conservation,
                    format!(
                        "asset {} is not conserved: {} + fees {:?}",
                        self.assets[asset_idx].id, sums[asset_idx], totals
                    ),
                );
            }
        }
        Ok(())
    }

    /// Each account's subtree total equals its own total plus its descendants'.
    fn check_subtree_totals(&self) -> Result<(), InvariantError> {
        let asset_count = self.assets.len();
        let mut expected = vec![0i128; self.accounts.len() * asset_count];
        for (idx, account) in self.accounts.iter().enumerate() {
            for asset_idx in 0..asset_count {
                let b = self.balance(idx as u32, asset_idx as u32);
                let total = i128::from(b.available) + i128::from(b.held);
                for owner in std::iter::once(idx).chain(account.ancestors.iter().map(|&a| a as usize)) {
                    expected[owner * asset_count + asset_idx] += total;
                }
            }
        }
        for (idx, account) in self.accounts.iter().enumerate() {
            for asset_idx in 0..asset_count {
                let want = expected[idx * asset_count + asset_idx];
                let got = account.subtree_totals.get(asset_idx).copied().unwrap_or(0);
                if i128::from(got) != want {
                    return broken(
                        Invariant::SubtreeTotals,
                        format!(
                            "account {} subtree total of asset #{asset_idx} is {got}, descendants sum to {want}",
                            account.id
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    /// Books are never crossed, and each level's list, count and total match its orders.
    fn check_books(&self) -> Result<(), InvariantError> {
        let books = |message: String| broken(Invariant::Books, message);
        let mut resting = 0usize;
        for symbol in &self.symbols {
            let book = &symbol.book;
            if let (Some(bid), Some(ask)) = (book.best_bid_ticks(), book.best_ask_ticks()) {
                if bid >= ask {
                    return books(format!("symbol {} is crossed: bid {bid} >= ask {ask}", symbol.spec.symbol));
                }
            }
            let mut resting_here = 0usize;
            for (side, levels) in [(Side::Buy, &book.bids), (Side::Sell, &book.asks)] {
                let mut previous_price = None;
                for (price, level) in levels.iter_ascending() {
                    if previous_price.is_some_and(|p| p >= price) {
                        return books(format!("levels of symbol {} are out of order", symbol.spec.symbol));
                    }
                    previous_price = Some(price);
                    let (mut lots, mut count, mut slot, mut prev) = (Lots::ZERO, 0u32, level.head, NIL);
                    while slot != NIL {
                        let o = self.orders.get(slot);
                        if o.side != side
                            || o.price_ticks != price
                            || !o.resting
                            || o.prev != prev
                            || !o.remaining_lots().is_positive()
                        {
                            return books(format!("order {} does not belong at {side:?} {price}: {o:?}", o.id));
                        }
                        // The level's own total is the same sum and fit; a sum that does not is broken.
                        let Some(sum) = lots.checked_add(o.remaining_lots()) else {
                            return books(format!("level {side:?} {price} of symbol {} overflows", symbol.spec.symbol));
                        };
                        lots = sum;
                        count += 1;
                        prev = slot;
                        slot = o.next;
                    }
                    if lots != level.total_lots || count != level.count || prev != level.tail || count == 0 {
                        return books(format!(
                            "level {side:?} {price} of symbol {} disagrees with its orders",
                            symbol.spec.symbol
                        ));
                    }
                    resting_here += count as usize;
                }
            }
            if resting_here != book.resting_count() {
                return books(format!(
                    "symbol {} counts {} resting orders, its levels hold {resting_here}",
                    symbol.spec.symbol,
                    book.resting_count()
                ));
            }
            resting += resting_here;
            for (&(stop, id), side) in
                book.stop_buys.iter().map(|s| (s, Side::Buy)).chain(book.stop_sells.iter().map(|s| (s, Side::Sell)))
            {
                let o = self.order_index.get(&id).map(|&slot| self.orders.get(slot));
                if !o.is_some_and(|o| !o.triggered && o.stop_ticks == stop && o.side == side) {
                    return books(format!("stop entry ({stop}, {id}) has no waiting stop order"));
                }
            }
        }
        let resting_in_index = self.order_index.values().filter(|&&slot| self.orders.get(slot).resting).count();
        if resting != resting_in_index {
            return books(format!("{resting} orders in books but {resting_in_index} marked resting"));
        }
        let waiting = self.order_index.values().filter(|&&slot| !self.orders.get(slot).triggered).count();
        let in_stop_sets: usize = self.symbols.iter().map(|s| s.book.stop_count()).sum();
        if waiting != in_stop_sets {
            return books(format!("{waiting} waiting stops but {in_stop_sets} stop entries"));
        }
        Ok(())
    }

    /// Invariant 7 (the part one state can show): the derived structures `decode_state`
    /// rebuilds agree with the canonical state. Then the state hash covers everything a later
    /// command can depend on, and a replica restored from a snapshot behaves the same.
    /// Every non-empty code is valid and indexed at its owner, and the indexes hold nothing else.
    fn codes_indexed(&self) -> bool {
        let assets = self.assets.iter().map(|a| a.code);
        let symbols = self.symbols.iter().map(|s| s.code);
        let check = |codes: &mut dyn Iterator<Item = Code>, index: &rustc_hash::FxHashMap<Code, u32>, of| {
            let mut count = 0;
            let all_indexed = codes.enumerate().filter(|(_, code)| !code.is_empty()).all(|(i, code)| {
                count += 1;
                code.is_valid(of) && index.get(&code) == Some(&(i as u32))
            });
            all_indexed && count == index.len()
        };
        check(&mut assets.into_iter(), &self.asset_codes, CodeOf::Asset)
            && check(&mut symbols.into_iter(), &self.symbol_codes, CodeOf::Symbol)
    }

    fn check_derived(&self) -> Result<(), InvariantError> {
        let derived = |message: String| broken(Invariant::Derived, message);
        for (what, len, index_len) in [
            ("assets", self.assets.len(), self.asset_index.len()),
            ("symbols", self.symbols.len(), self.symbol_index.len()),
            ("accounts", self.accounts.len(), self.account_index.len()),
        ] {
            if len != index_len {
                return derived(format!("{len} {what} but {index_len} in their index"));
            }
        }
        if self.totals.len() != self.assets.len() {
            return derived(format!("{} assets but {} totals", self.assets.len(), self.totals.len()));
        }
        if self.assets.iter().enumerate().any(|(i, a)| self.asset_idx(a.id) != Ok(i as u32))
            || self.symbols.iter().enumerate().any(|(i, s)| self.symbol_idx(s.spec.symbol) != Ok(i as u32))
        {
            return derived("an asset or symbol index points elsewhere".into());
        }
        if !self.codes_indexed() {
            return derived("the code index of assets or symbols differs from their codes".into());
        }
        let mut pending = vec![0usize; self.accounts.len()];
        for (idx, account) in self.accounts.iter().enumerate() {
            if self.account_idx(account.id) != Ok(idx as u32) {
                return derived(format!("the index of account {} points elsewhere", account.id));
            }
            // The materialized path is the parent chain, root first.
            let parent_path_ok = match account.ancestors.last() {
                None => account.parent == AccountId::NONE,
                Some(&parent_idx) => {
                    let parent = &self.accounts[parent_idx as usize];
                    parent.id == account.parent
                        && parent.ancestors[..] == account.ancestors[..account.ancestors.len() - 1]
                }
            };
            if !parent_path_ok || account.balances.len() != account.subtree_totals.len() {
                return derived(format!("account {} has a wrong path or slot count", account.id));
            }
            for (pos, &slot) in account.open_orders.iter().enumerate() {
                let o = self.orders.get(slot);
                if o.account_idx != idx as u32
                    || o.account_pos as usize != pos
                    || self.order_index.get(&o.id) != Some(&slot)
                {
                    return derived(format!("open order #{pos} of account {} is not its order", account.id));
                }
            }
        }
        let open_orders: usize = self.accounts.iter().map(|a| a.open_orders.len()).sum();
        if open_orders != self.order_index.len() || self.orders.live_count() != self.order_index.len() {
            return derived(format!(
                "{} orders indexed, {open_orders} open in accounts, {} live slab slots",
                self.order_index.len(),
                self.orders.live_count()
            ));
        }
        for (&(account_idx, client_order_id), &order_id) in self.client_order_ids.iter() {
            let slot = self.order_index.get(&order_id).copied();
            if !slot.is_some_and(|slot| {
                let o = self.orders.get(slot);
                o.account_idx == account_idx && o.client_order_id == client_order_id
            }) {
                return derived(format!("client order id {client_order_id} names order {order_id}, not its order"));
            }
        }
        let with_client_ids =
            self.order_index.values().filter(|&&slot| self.orders.get(slot).client_order_id != 0).count();
        if with_client_ids != self.client_order_ids.len() {
            return derived(format!(
                "{with_client_ids} orders with client ids, {} indexed",
                self.client_order_ids.len()
            ));
        }
        let mut decided = 0usize;
        for (id, w) in &self.withdrawals {
            match w.status {
                WithdrawalStatus::Pending => match self.account_idx(w.account) {
                    Ok(idx) => pending[idx as usize] += 1,
                    Err(_) => return derived(format!("withdrawal {id} of an unknown account")),
                },
                _ if self.decided_withdrawals.contains(id) => decided += 1,
                _ => return derived(format!("decided withdrawal {id} is not in the decided list")),
            }
        }
        if decided != self.decided_withdrawals.len() {
            return derived(format!("{} decided ids, {decided} decided withdrawals", self.decided_withdrawals.len()));
        }
        if let Some((idx, account)) =
            self.accounts.iter().enumerate().find(|(idx, a)| a.pending_withdrawals != pending[*idx])
        {
            return derived(format!(
                "account {} counts {} pending withdrawals, has {}",
                account.id, account.pending_withdrawals, pending[idx]
            ));
        }
        if self.matches_used != 0 {
            return derived(format!("{} matches used between commands", self.matches_used));
        }
        // The request-key window: bounded, in sequence order, and its lookup set is its pairs.
        self.request_keys.check(self.last_seq).or_else(derived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Command, Event, NewOrder, SymbolSpec};

    fn apply(engine: &mut Engine, command: Command) -> Vec<Event> {
        let mut events = Vec::new();
        engine.apply(engine.last_seq() + 1, 0, &command, &mut events);
        assert!(!matches!(events[..], [Event::Rejected { .. }]), "{command:?}: {events:?}");
        events
    }

    /// Two assets, a symbol, a parent with a child, a second root; deposits, a resting buy, a
    /// waiting stop sell and a pending withdrawal: every structure the checks walk is non-empty.
    fn venue() -> Engine {
        use Command::*;
        let mut engine = Engine::new();
        apply(&mut engine, CreateAsset { asset: AssetId(1), scale: 0 });
        apply(&mut engine, CreateAsset { asset: AssetId(2), scale: 0 });
        let spec = SymbolSpec {
            symbol: SymbolId(10),
            base: AssetId(1),
            quote: AssetId(2),
            tick_size: 1,
            lot_size: 1,
            min_qty: 0,
            min_notional: 0,
            max_order_qty: 1_000,
            maker_fee_ppm: 0,
            taker_fee_ppm: 0,
            price_band_bps: 0,
        };
        apply(&mut engine, CreateSymbol(spec));
        apply(&mut engine, CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 });
        apply(&mut engine, CreateAccount { account: AccountId(2), parent: AccountId(1), owner: 1 });
        apply(&mut engine, CreateAccount { account: AccountId(3), parent: AccountId::NONE, owner: 3 });
        apply(&mut engine, Deposit { account: AccountId(2), asset: AssetId(2), amount: 1_000, external_ref: 1 });
        apply(&mut engine, Deposit { account: AccountId(3), asset: AssetId(1), amount: 100, external_ref: 2 });
        let order = NewOrder {
            account: AccountId(2),
            symbol: SymbolId(10),
            client_order_id: 5,
            side: Side::Buy,
            order_type: OrderType::Limit,
            tif: TimeInForce::Gtc,
            stp: StpMode::CancelResting,
            price: 10,
            stop_price: 0,
            qty: 5,
            quote_budget: 0,
        };
        apply(&mut engine, PlaceOrder(order));
        let stop = NewOrder {
            account: AccountId(3),
            side: Side::Sell,
            order_type: OrderType::StopLimit,
            price: 8,
            stop_price: 9,
            client_order_id: 0,
            ..order
        };
        apply(&mut engine, PlaceOrder(stop));
        apply(&mut engine, WithdrawRequest { account: AccountId(3), asset: AssetId(1), amount: 10, client_ref: 1 });
        engine.check_invariants().unwrap();
        engine
    }

    /// Plants a bug in a copy of the venue and returns which invariant the checker names.
    fn planted(bug: impl FnOnce(&mut Engine)) -> Invariant {
        let mut engine = venue();
        bug(&mut engine);
        engine.check_invariants().expect_err("the planted bug is found").invariant
    }

    // Release builds keep no ledger sums (see `LedgerAudit`): there the tests sum the events.
    #[cfg(debug_assertions)]
    #[test]
    fn a_balance_moved_without_a_ledger_line_breaks_only_the_ledger() {
        // Account 1 (a root) gets 1 unit of account 3's available base: conservation, holds and
        // subtree totals (kept along both paths by hand) still hold; only the ledger disagrees.
        let found = planted(|e| {
            let (from, to) =
                (e.account_idx(AccountId(3)).unwrap() as usize, e.account_idx(AccountId(1)).unwrap() as usize);
            let asset = e.asset_idx(AssetId(1)).unwrap() as usize;
            e.accounts[from].balances[asset].available -= 1;
            e.accounts[from].subtree_totals[asset] -= 1;
            e.accounts[to].balances[asset].available += 1;
            e.accounts[to].subtree_totals[asset] += 1;
        });
        assert_eq!(found, Invariant::Ledger);
    }

    #[cfg(debug_assertions)]
    #[test]
    fn a_ledger_line_that_never_happened_is_found() {
        let found = planted(|e| e.corrupt_ledger_audit(0, 1, 1));
        assert_eq!(found, Invariant::Ledger);
    }

    #[test]
    fn derived_structures_that_disagree_are_found() {
        let bugs: [fn(&mut Engine); 8] = [
            |e| e.accounts[1].pending_withdrawals += 1,
            |e| e.accounts[2].pending_withdrawals = 0,
            |e| {
                e.client_order_ids.clear();
            },
            |e| e.orders.slots[0].account_pos = 7,
            |e| e.accounts[1].ancestors.clear(),
            |e| {
                e.decided_withdrawals.insert(1);
            },
            |e| {
                e.symbol_index.insert(SymbolId(99), 0);
            },
            |e| {
                let seq = e.last_seq;
                e.request_keys
                    .remember(super::super::request_keys::RequestKey { account: AccountId(1), key: 9, seq }, 10);
                e.request_keys.forget_index();
            },
        ];
        for (i, bug) in bugs.into_iter().enumerate() {
            assert_eq!(planted(bug), Invariant::Derived, "bug #{i}");
        }
    }

    #[test]
    fn each_existing_invariant_names_itself() {
        assert_eq!(planted(|e| e.totals[0].deposited += 1), Invariant::Conservation);
        assert_eq!(
            planted(|e| {
                let slot = e.order_index[&OrderId(9)];
                e.orders.get_mut(slot).held += 1;
            }),
            Invariant::Holds
        );
        assert_eq!(planted(|e| e.accounts[0].subtree_totals[1] += 1), Invariant::SubtreeTotals);
        assert_eq!(
            planted(|e| {
                e.symbols[0].book.stop_sells.clear();
            }),
            Invariant::Books
        );
        assert_eq!(
            planted(|e| {
                let account = e.account_idx(AccountId(3)).unwrap() as usize;
                e.accounts[account].balances[0].available = -1;
            }),
            Invariant::NonNegative
        );
    }

    #[test]
    fn small_states_are_checked_after_every_command_large_ones_on_a_sample() {
        assert_eq!(check_period(0), 1);
        assert_eq!(check_period(CHECK_SIZE_PER_COMMAND), 1);
        assert_eq!(check_period(CHECK_SIZE_PER_COMMAND * 2 - 1), 1);
        assert_eq!(check_period(CHECK_SIZE_PER_COMMAND * 3), 4);
        assert_eq!(check_period(10_000), 256);
        assert_eq!(check_period(2_000_000), 32_768);
    }

    /// Debug builds check after the command: a bug planted between commands stops the next one.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "invariant 2 (Conservation) broken")]
    fn apply_checks_the_invariants_in_debug_builds() {
        let mut engine = venue();
        engine.totals[0].deposited += 1;
        apply(&mut engine, Command::CreateAsset { asset: AssetId(3), scale: 0 });
    }
}
