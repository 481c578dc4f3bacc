//! Canonical encoding of the whole state: the state hash, and the body of a snapshot.
//!
//! The encoding visits everything in id or priority order, never in memory-layout or hash-map
//! order, and leaves out what is derived (indexes, subtree totals, slab positions). Two states
//! with the same meaning therefore encode to the same bytes, whatever history produced them.
//! `Engine::decode_state` rebuilds the derived parts, so `decode(encode(s))` encodes to the
//! very same bytes and behaves the same under every later command.

use super::book::{Book, Order, NIL};
use super::command::SymbolSpec;
use super::state::{Account, Asset, AssetTotals, Balance, Engine, Symbol, Withdrawal};
use super::types::*;
use std::collections::BTreeMap;

/// Bumped whenever the encoding changes; part of the hashed bytes.
pub const STATE_ENCODING_VERSION: u32 = 1;

struct Encoder<'a>(&'a mut Vec<u8>);

impl Encoder<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i128(&mut self, v: i128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }
}

impl Engine {
    /// Appends the canonical encoding of the state to `out`.
    pub fn encode_state(&self, out: &mut Vec<u8>) {
        let mut e = Encoder(out);
        e.0.extend_from_slice(b"SEQDSTATE");
        e.u32(STATE_ENCODING_VERSION);
        e.u64(self.last_seq);
        e.u64(self.last_timestamp_ns);
        e.u64(self.last_trade_id);
        self.encode_assets(&mut e);
        self.encode_symbols(&mut e);
        self.encode_accounts(&mut e);
        self.encode_orders(&mut e);
        self.encode_funds_records(&mut e);
    }

    /// BLAKE3 of the canonical encoding: equal on any two replicas fed the same commands.
    pub fn state_hash(&self) -> [u8; 32] {
        let mut bytes = Vec::with_capacity(4096);
        self.encode_state(&mut bytes);
        *blake3::hash(&bytes).as_bytes()
    }

    pub fn state_hash_hex(&self) -> String {
        self.state_hash().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn encode_assets(&self, e: &mut Encoder) {
        let by_id: BTreeMap<_, _> = self.assets.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
        e.len(by_id.len());
        for (id, idx) in by_id {
            let t = self.totals[idx];
            e.u32(id);
            e.u8(self.assets[idx].scale);
            e.i128(t.deposited);
            e.i128(t.withdrawn);
            e.i64(t.fees_collected);
        }
    }

    fn encode_symbols(&self, e: &mut Encoder) {
        let by_id: BTreeMap<_, _> = self.symbols.iter().map(|s| (s.spec.symbol, s)).collect();
        e.len(by_id.len());
        for (id, s) in by_id {
            let spec = &s.spec;
            e.u32(id);
            e.u32(spec.base);
            e.u32(spec.quote);
            for v in [spec.tick_size, spec.lot_size, spec.min_qty, spec.min_notional, spec.max_order_qty] {
                e.i64(v);
            }
            e.u32(spec.maker_fee_ppm);
            e.u32(spec.taker_fee_ppm);
            e.u32(spec.price_band_bps);
            e.u8(s.status.as_u8());
            e.i64(s.last_price_ticks);
            // Queue order is state: two books with the same orders in another order differ.
            for levels in [&s.book.bids, &s.book.asks] {
                e.len(levels.len());
                for (price, level) in levels.iter_ascending() {
                    e.i64(price);
                    e.len(level.count as usize);
                    let mut slot = level.head;
                    while slot != super::book::NIL {
                        let o = self.orders.get(slot);
                        e.u64(o.id);
                        slot = o.next;
                    }
                }
            }
            for stops in [&s.book.stop_buys, &s.book.stop_sells] {
                e.len(stops.len());
                for &(stop, id) in stops {
                    e.i64(stop);
                    e.u64(id);
                }
            }
        }
    }

    fn encode_accounts(&self, e: &mut Encoder) {
        let by_id: BTreeMap<_, _> = self.accounts.iter().map(|a| (a.id, a)).collect();
        e.len(by_id.len());
        for (id, a) in by_id {
            e.u64(id);
            e.u64(a.parent);
            e.u64(a.owner);
            e.u8(a.status.as_u8());
            let balances: BTreeMap<_, _> = a
                .balances
                .iter()
                .enumerate()
                .filter(|(_, b)| b.available != 0 || b.held != 0)
                .map(|(asset_idx, b)| (self.assets[asset_idx].id, *b))
                .collect();
            e.len(balances.len());
            for (asset, b) in balances {
                e.u32(asset);
                e.i64(b.available);
                e.i64(b.held);
            }
        }
    }

    fn encode_orders(&self, e: &mut Encoder) {
        let by_id: BTreeMap<_, _> = self.order_index.iter().map(|(&id, &slot)| (id, slot)).collect();
        e.len(by_id.len());
        for (id, slot) in by_id {
            let o = self.orders.get(slot);
            e.u64(id);
            e.u64(self.accounts[o.account_idx as usize].id);
            e.u32(self.symbols[o.symbol_idx as usize].spec.symbol);
            e.u64(o.client_order_id);
            for b in [o.side.as_u8(), o.order_type.as_u8(), o.tif.as_u8(), o.stp.as_u8(), o.status.as_u8()] {
                e.u8(b);
            }
            e.u8(o.triggered as u8);
            e.u8(o.resting as u8);
            for v in [o.price_ticks, o.stop_ticks, o.qty_lots, o.filled_lots, o.filled_quote, o.fees_paid, o.held] {
                e.i64(v);
            }
            e.u32(o.fee_cap_ppm);
        }
    }

    fn encode_funds_records(&self, e: &mut Encoder) {
        e.len(self.withdrawals.len());
        for (&id, w) in &self.withdrawals {
            e.u64(id);
            e.u64(w.account);
            e.u32(w.asset);
            e.i64(w.amount);
            e.u64(w.client_ref);
            e.u8(w.status.as_u8());
        }
        for refs in [&self.withdrawal_refs, &self.transfer_refs] {
            e.len(refs.len());
            for &(account, client_ref) in refs {
                e.u64(account);
                e.u64(client_ref);
            }
        }
        e.len(self.deposit_refs.len());
        for &r in &self.deposit_refs {
            e.u64(r);
        }
    }
}

/// Why a state encoding could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateDecodeError {
    #[error("state encoding truncated at byte {0}")]
    Truncated(usize),
    #[error("not a state encoding (bad magic)")]
    BadMagic,
    #[error("state encoding version {0} is not supported (this build reads {STATE_ENCODING_VERSION})")]
    Version(u32),
    #[error("state encoding is inconsistent: {0}")]
    Inconsistent(String),
    #[error("{0} trailing bytes after the state")]
    Trailing(usize),
}

/// Reads the canonical encoding, failing on truncation instead of panicking.
struct Decoder<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Decoder<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], StateDecodeError> {
        let end = self
            .at
            .checked_add(N)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(StateDecodeError::Truncated(self.at))?;
        let out = self.bytes[self.at..end].try_into().expect("slice of length N");
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, StateDecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, StateDecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, StateDecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, StateDecodeError> {
        Ok(i64::from_le_bytes(self.take()?))
    }
    fn i128(&mut self) -> Result<i128, StateDecodeError> {
        Ok(i128::from_le_bytes(self.take()?))
    }
    /// A collection length, bounded by the bytes left so garbage cannot ask for huge buffers.
    fn len(&mut self) -> Result<usize, StateDecodeError> {
        let n = self.u64()?;
        if n > (self.bytes.len() - self.at) as u64 {
            return Err(StateDecodeError::Truncated(self.at));
        }
        Ok(n as usize)
    }
    fn enum_u8<T>(&mut self, what: &str, decode: fn(u8) -> Option<T>) -> Result<T, StateDecodeError> {
        let v = self.u8()?;
        decode(v).ok_or_else(|| inconsistent(format!("bad {what} byte {v}")))
    }
}

fn inconsistent(message: String) -> StateDecodeError {
    StateDecodeError::Inconsistent(message)
}

/// What the encoding says about a symbol's book before orders are loaded.
struct BookLayout {
    levels: [Vec<(i64, Vec<OrderId>)>; 2],
    stops: [Vec<(i64, OrderId)>; 2],
}

impl Engine {
    /// Rebuilds an engine from `encode_state` bytes (a snapshot body).
    pub fn decode_state(bytes: &[u8]) -> Result<Engine, StateDecodeError> {
        let mut d = Decoder { bytes, at: 0 };
        if d.take::<9>()? != *b"SEQDSTATE" {
            return Err(StateDecodeError::BadMagic);
        }
        let version = d.u32()?;
        if version != STATE_ENCODING_VERSION {
            return Err(StateDecodeError::Version(version));
        }
        let mut engine = Engine::new();
        engine.last_seq = d.u64()?;
        engine.last_timestamp_ns = d.u64()?;
        engine.last_trade_id = d.u64()?;
        engine.decode_assets(&mut d)?;
        let layouts = engine.decode_symbols(&mut d)?;
        engine.decode_accounts(&mut d)?;
        engine.decode_orders(&mut d)?;
        engine.decode_funds_records(&mut d)?;
        engine.rebuild_books(layouts)?;
        if d.at != bytes.len() {
            return Err(StateDecodeError::Trailing(bytes.len() - d.at));
        }
        engine.check_invariants().map_err(|e| inconsistent(e.to_string()))?;
        Ok(engine)
    }

    fn decode_assets(&mut self, d: &mut Decoder) -> Result<(), StateDecodeError> {
        for _ in 0..d.len()? {
            let id = d.u32()?;
            let scale = d.u8()?;
            if scale > super::state::MAX_ASSET_SCALE {
                return Err(inconsistent(format!("asset {id} has scale {scale}")));
            }
            let totals = AssetTotals { deposited: d.i128()?, withdrawn: d.i128()?, fees_collected: d.i64()? };
            self.asset_index.insert(id, self.assets.len() as u32);
            self.assets.push(Asset { id, scale });
            self.totals.push(totals);
        }
        Ok(())
    }

    fn decode_symbols(&mut self, d: &mut Decoder) -> Result<Vec<BookLayout>, StateDecodeError> {
        let mut layouts = Vec::new();
        for _ in 0..d.len()? {
            let spec = SymbolSpec {
                symbol: d.u32()?,
                base: d.u32()?,
                quote: d.u32()?,
                tick_size: d.i64()?,
                lot_size: d.i64()?,
                min_qty: d.i64()?,
                min_notional: d.i64()?,
                max_order_qty: d.i64()?,
                maker_fee_ppm: d.u32()?,
                taker_fee_ppm: d.u32()?,
                price_band_bps: d.u32()?,
            };
            let status = d.enum_u8("symbol status", SymbolStatus::from_u8)?;
            let last_price_ticks = d.i64()?;
            let mut layout = BookLayout { levels: [Vec::new(), Vec::new()], stops: [Vec::new(), Vec::new()] };
            for side_levels in layout.levels.iter_mut() {
                for _ in 0..d.len()? {
                    let price = d.i64()?;
                    let ids = (0..d.len()?).map(|_| d.u64()).collect::<Result<Vec<_>, _>>()?;
                    side_levels.push((price, ids));
                }
            }
            for side_stops in layout.stops.iter_mut() {
                for _ in 0..d.len()? {
                    side_stops.push((d.i64()?, d.u64()?));
                }
            }
            let base_idx =
                self.asset_idx(spec.base).map_err(|_| inconsistent(format!("symbol {} has no base", spec.symbol)))?;
            let quote_idx =
                self.asset_idx(spec.quote).map_err(|_| inconsistent(format!("symbol {} has no quote", spec.symbol)))?;
            let base_unit = 10i128.pow(self.assets[base_idx as usize].scale as u32);
            let quote_per_tick_lot = (spec.tick_size as i128 * spec.lot_size as i128 / base_unit) as i64;
            self.symbol_index.insert(spec.symbol, self.symbols.len() as u32);
            self.symbols.push(Symbol {
                spec,
                status,
                base_idx,
                quote_idx,
                quote_per_tick_lot,
                last_price_ticks,
                book: Book::default(),
            });
            layouts.push(layout);
        }
        Ok(layouts)
    }

    fn decode_accounts(&mut self, d: &mut Decoder) -> Result<(), StateDecodeError> {
        let asset_count = self.assets.len();
        for _ in 0..d.len()? {
            let (id, parent, owner) = (d.u64()?, d.u64()?, d.u64()?);
            let status = d.enum_u8("account status", AccountStatus::from_u8)?;
            let mut balances = vec![Balance::default(); asset_count];
            for _ in 0..d.len()? {
                let asset = d.u32()?;
                let idx = self
                    .asset_idx(asset)
                    .map_err(|_| inconsistent(format!("account {id} holds unknown asset {asset}")))?;
                balances[idx as usize] = Balance { available: d.i64()?, held: d.i64()? };
            }
            self.account_index.insert(id, self.accounts.len() as u32);
            self.accounts.push(Account {
                id,
                parent,
                owner,
                status,
                ancestors: Vec::new(),
                balances,
                subtree_totals: vec![0; asset_count],
                open_orders: Vec::new(),
            });
        }
        // Parents may have larger ids than their children, so paths are built after all exist.
        for idx in 0..self.accounts.len() {
            let mut path = Vec::new();
            let mut parent = self.accounts[idx].parent;
            while parent != 0 {
                let parent_idx =
                    self.account_idx(parent).map_err(|_| inconsistent(format!("unknown parent {parent}")))?;
                if path.len() > super::state::MAX_TREE_DEPTH {
                    return Err(inconsistent(format!(
                        "account tree of {} is cyclic or too deep",
                        self.accounts[idx].id
                    )));
                }
                path.push(parent_idx);
                parent = self.accounts[parent_idx as usize].parent;
            }
            path.reverse();
            for asset_idx in 0..asset_count {
                let total = self.accounts[idx].balances[asset_idx].total();
                self.accounts[idx].subtree_totals[asset_idx] += total;
                for &ancestor in &path {
                    self.accounts[ancestor as usize].subtree_totals[asset_idx] += total;
                }
            }
            self.accounts[idx].ancestors = path;
        }
        Ok(())
    }

    fn decode_orders(&mut self, d: &mut Decoder) -> Result<(), StateDecodeError> {
        for _ in 0..d.len()? {
            let id = d.u64()?;
            let account = d.u64()?;
            let symbol = d.u32()?;
            let account_idx =
                self.account_idx(account).map_err(|_| inconsistent(format!("order {id} has unknown account")))?;
            let symbol_idx =
                self.symbol_idx(symbol).map_err(|_| inconsistent(format!("order {id} has unknown symbol")))?;
            let client_order_id = d.u64()?;
            let mut order = Order {
                id,
                account_idx,
                symbol_idx,
                client_order_id,
                side: d.enum_u8("side", Side::from_u8)?,
                order_type: d.enum_u8("order type", OrderType::from_u8)?,
                tif: d.enum_u8("tif", TimeInForce::from_u8)?,
                stp: d.enum_u8("stp", StpMode::from_u8)?,
                status: d.enum_u8("order status", OrderStatus::from_u8)?,
                triggered: d.u8()? != 0,
                resting: false,
                price_ticks: 0,
                stop_ticks: 0,
                qty_lots: 0,
                filled_lots: 0,
                filled_quote: 0,
                fees_paid: 0,
                held: 0,
                fee_cap_ppm: 0,
                prev: NIL,
                next: NIL,
                account_pos: 0,
            };
            let _resting = d.u8()?; // re-derived when the books are rebuilt
            order.price_ticks = d.i64()?;
            order.stop_ticks = d.i64()?;
            order.qty_lots = d.i64()?;
            order.filled_lots = d.i64()?;
            order.filled_quote = d.i64()?;
            order.fees_paid = d.i64()?;
            order.held = d.i64()?;
            order.fee_cap_ppm = d.u32()?;
            let slot = self.orders.insert(order);
            self.order_index.insert(id, slot);
            if client_order_id != 0 {
                self.client_order_ids.insert((account_idx, client_order_id), id);
            }
            let open_orders = &mut self.accounts[account_idx as usize].open_orders;
            self.orders.get_mut(slot).account_pos = open_orders.len() as u32;
            open_orders.push(slot);
        }
        Ok(())
    }

    fn decode_funds_records(&mut self, d: &mut Decoder) -> Result<(), StateDecodeError> {
        for _ in 0..d.len()? {
            let id = d.u64()?;
            let w = Withdrawal {
                account: d.u64()?,
                asset: d.u32()?,
                amount: d.i64()?,
                client_ref: d.u64()?,
                status: d.enum_u8("withdrawal status", WithdrawalStatus::from_u8)?,
            };
            self.withdrawals.insert(id, w);
        }
        for _ in 0..d.len()? {
            self.withdrawal_refs.insert((d.u64()?, d.u64()?));
        }
        for _ in 0..d.len()? {
            self.transfer_refs.insert((d.u64()?, d.u64()?));
        }
        for _ in 0..d.len()? {
            self.deposit_refs.insert(d.u64()?);
        }
        Ok(())
    }

    /// Puts the decoded orders back into their levels in the encoded queue order.
    fn rebuild_books(&mut self, layouts: Vec<BookLayout>) -> Result<(), StateDecodeError> {
        for (symbol_idx, layout) in layouts.into_iter().enumerate() {
            for (side, levels) in [Side::Buy, Side::Sell].into_iter().zip(layout.levels) {
                for (price, ids) in levels {
                    for id in ids {
                        let slot = *self
                            .order_index
                            .get(&id)
                            .ok_or_else(|| inconsistent(format!("book names unknown order {id}")))?;
                        let o = self.orders.get(slot);
                        if o.side != side || o.price_ticks != price || o.symbol_idx != symbol_idx as u32 || o.resting {
                            return Err(inconsistent(format!("order {id} is misplaced in the book")));
                        }
                        self.symbols[symbol_idx].book.push_back(&mut self.orders, slot);
                        self.orders.get_mut(slot).resting = true;
                    }
                }
            }
            for (side, stops) in [Side::Buy, Side::Sell].into_iter().zip(layout.stops) {
                self.symbols[symbol_idx].book.stops_mut(side).extend(stops);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{exchange_core_mix, WorkloadSpec};

    #[test]
    fn decoded_state_encodes_identically_and_behaves_identically() {
        let workload = exchange_core_mix(WorkloadSpec { accounts: 30, resting_orders: 80, commands: 4_000, seed: 11 });
        let (mut original, mut seq) = workload.prepared_engine();
        let (first_half, second_half) = workload.commands.split_at(2_000);
        let mut events = Vec::new();
        for command in first_half {
            original.apply(seq, seq * 10, command, &mut events);
            seq += 1;
        }
        let mut bytes = Vec::new();
        original.encode_state(&mut bytes);
        let mut restored = Engine::decode_state(&bytes).expect("own encoding decodes");
        let mut again = Vec::new();
        restored.encode_state(&mut again);
        assert_eq!(again, bytes);
        let (mut events_a, mut events_b) = (Vec::new(), Vec::new());
        for command in second_half {
            events_a.clear();
            events_b.clear();
            original.apply(seq, seq * 10, command, &mut events_a);
            restored.apply(seq, seq * 10, command, &mut events_b);
            assert_eq!(events_a, events_b, "seq {seq}");
            seq += 1;
        }
        assert_eq!(original.state_hash(), restored.state_hash());
    }

    #[test]
    fn damaged_encodings_are_errors_not_panics() {
        let workload = exchange_core_mix(WorkloadSpec { accounts: 5, resting_orders: 10, commands: 100, seed: 2 });
        let (engine, _) = workload.prepared_engine();
        let mut bytes = Vec::new();
        engine.encode_state(&mut bytes);
        for cut in (0..bytes.len()).step_by(7) {
            assert!(Engine::decode_state(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[0] ^= 1;
        assert_eq!(Engine::decode_state(&flipped).err(), Some(StateDecodeError::BadMagic));
        for at in (9..bytes.len()).step_by(5) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            let _ = Engine::decode_state(&damaged); // must not panic; snapshots carry a checksum too
        }
    }
}
