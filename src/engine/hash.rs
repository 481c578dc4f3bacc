//! Canonical encoding of the whole state and its hash.
//!
//! The encoding visits everything in id or priority order, never in memory-layout or hash-map
//! order, and leaves out what is derived (indexes, subtree totals, slab positions). Two states
//! with the same meaning therefore encode to the same bytes, whatever history produced them.

use super::state::Engine;
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
        e.u64(self.next_trade_id);
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
        self.state_hash()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn encode_assets(&self, e: &mut Encoder) {
        let by_id: BTreeMap<_, _> = self
            .assets
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id, i))
            .collect();
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
            for v in [
                spec.tick_size,
                spec.lot_size,
                spec.min_qty,
                spec.min_notional,
                spec.max_order_qty,
            ] {
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
                for (&price, level) in levels {
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
        let by_id: BTreeMap<_, _> = self
            .order_index
            .iter()
            .map(|(&id, &slot)| (id, slot))
            .collect();
        e.len(by_id.len());
        for (id, slot) in by_id {
            let o = self.orders.get(slot);
            e.u64(id);
            e.u64(self.accounts[o.account_idx as usize].id);
            e.u32(self.symbols[o.symbol_idx as usize].spec.symbol);
            e.u64(o.client_order_id);
            for b in [
                o.side.as_u8(),
                o.order_type.as_u8(),
                o.tif.as_u8(),
                o.stp.as_u8(),
                o.status.as_u8(),
            ] {
                e.u8(b);
            }
            e.u8(o.triggered as u8);
            e.u8(o.resting as u8);
            for v in [
                o.price_ticks,
                o.stop_ticks,
                o.qty_lots,
                o.filled_lots,
                o.filled_quote,
                o.fees_paid,
                o.held,
            ] {
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
