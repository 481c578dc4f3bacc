//! Canonical encoding of the whole state: the state hash, and the body of a snapshot.
//!
//! The encoding visits everything in id or priority order, never in memory-layout or hash-map
//! order, and leaves out what is derived (indexes, subtree totals, slab positions). Two states
//! with the same meaning therefore encode to the same bytes, whatever history produced them.
//! `Engine::decode_state` rebuilds the derived parts, so `decode(encode(s))` encodes to the
//! very same bytes and behaves the same under every later command.
//!
//! The file is over 800 lines only with its tests (every truncation and flipped byte of a
//! snapshot, every limit): encoding and the validating decoder stay together, field beside field.

use super::accounts::index_u32;
use super::book::{Book, Order};
use super::command::SymbolSpec;
use super::limits::*;
use super::request_keys::RequestKey;
use super::state::{Account, Asset, AssetTotals, Balance, Engine, Symbol, Withdrawal, PPM};
use super::types::*;
use super::units::{Lots, Ticks};
use crate::cursor::{ByteReader, ByteWriter, ReadError};
use std::collections::{BTreeMap, BTreeSet};

/// Bumped whenever the encoding changes; part of the hashed bytes. Version 2 appends the codes
/// of assets and symbols (a section after the funds records); version 3 appends, after the
/// codes section (which may then be empty), the request-key window. Each state is written in
/// the oldest version that can hold it: a state with no code and no request key as version 1,
/// one with codes and no request key as version 2. So every state reached before codes (or
/// request keys) existed keeps its bytes and its state hash (the golden journals' recorded
/// hashes stay valid), and each state still has exactly one encoding.
pub const STATE_ENCODING_VERSION: u32 = 3;
/// The version written for a state with codes but no request key.
pub const STATE_ENCODING_VERSION_WITHOUT_REQUEST_KEYS: u32 = 2;
/// The version written for a state without codes and without request keys.
pub const STATE_ENCODING_VERSION_WITHOUT_CODES: u32 = 1;

/// The snapshot's own field kinds on top of the byte cursor: collection lengths.
trait StateWriter {
    fn len(&mut self, n: usize);
    fn flagged_len(&mut self, n: usize, flag: bool);
}

impl StateWriter for ByteWriter<'_> {
    fn len(&mut self, n: usize) {
        self.u64(u64::try_from(n).expect("usize fits u64"));
    }
    /// A length with a flag in its top bit (lengths are far below 2^63).
    fn flagged_len(&mut self, n: usize, flag: bool) {
        let n = u64::try_from(n).expect("usize fits u64");
        self.u64(n | (u64::from(flag) << 63));
    }
}

impl Engine {
    /// Appends the canonical encoding of the state to `out`.
    pub fn encode_state(&self, out: &mut Vec<u8>) {
        let mut e = ByteWriter(out);
        e.bytes(b"SEQDSTATE");
        let has_codes = !self.asset_codes.is_empty() || !self.symbol_codes.is_empty();
        let has_request_keys = !self.request_keys.is_empty();
        e.u32(match (has_codes, has_request_keys) {
            (_, true) => STATE_ENCODING_VERSION,
            (true, false) => STATE_ENCODING_VERSION_WITHOUT_REQUEST_KEYS,
            (false, false) => STATE_ENCODING_VERSION_WITHOUT_CODES,
        });
        e.u64(self.last_seq);
        e.u64(self.last_timestamp_ns);
        e.u64(self.last_trade_id.0);
        self.encode_assets(&mut e);
        self.encode_symbols(&mut e);
        self.encode_accounts(&mut e);
        self.encode_orders(&mut e);
        self.encode_funds_records(&mut e);
        if has_codes || has_request_keys {
            self.encode_codes(&mut e);
        }
        if has_request_keys {
            self.encode_request_keys(&mut e);
        }
    }

    /// The request-key window of version 3, oldest first (its own order, which is state: it
    /// says which key is forgotten next): count, then (account u64, request key u64, seq u64).
    fn encode_request_keys(&self, e: &mut ByteWriter) {
        e.len(self.request_keys.len());
        for entry in self.request_keys.iter() {
            e.u64(entry.account.0);
            e.u64(entry.key);
            e.u64(entry.seq);
        }
    }

    /// The non-empty codes: (asset id, code) by asset id, then (symbol id, code) by symbol id.
    fn encode_codes(&self, e: &mut ByteWriter) {
        let assets: BTreeMap<u32, Code> =
            self.assets.iter().filter(|a| !a.code.is_empty()).map(|a| (a.id.0, a.code)).collect();
        let symbols: BTreeMap<u32, Code> =
            self.symbols.iter().filter(|s| !s.code.is_empty()).map(|s| (s.spec.symbol.0, s.code)).collect();
        for codes in [assets, symbols] {
            e.len(codes.len());
            for (id, code) in codes {
                e.u32(id);
                e.bytes(&code.0);
            }
        }
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

    fn encode_assets(&self, e: &mut ByteWriter) {
        let by_id: BTreeMap<_, _> = self.assets.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
        e.len(by_id.len());
        for (id, idx) in by_id {
            let t = self.totals[idx];
            e.u32(id.0);
            e.u8(self.assets[idx].scale);
            e.i128(t.deposited);
            e.i128(t.withdrawn);
            e.i64(t.fees_collected);
        }
    }

    fn encode_symbols(&self, e: &mut ByteWriter) {
        let by_id: BTreeMap<_, _> = self.symbols.iter().map(|s| (s.spec.symbol, s)).collect();
        e.len(by_id.len());
        for (id, s) in by_id {
            let spec = &s.spec;
            e.u32(id.0);
            e.u32(spec.base.0);
            e.u32(spec.quote.0);
            for v in [spec.tick_size, spec.lot_size, spec.min_qty, spec.min_notional, spec.max_order_qty] {
                e.i64(v);
            }
            e.u32(spec.maker_fee_ppm);
            e.u32(spec.taker_fee_ppm);
            e.u32(spec.price_band_bps);
            e.u8(s.status.as_u8());
            e.i64(s.last_price_ticks.get());
            // Queue order is state: two books with the same orders in another order differ.
            for levels in [&s.book.bids, &s.book.asks] {
                e.len(levels.len());
                for (price, level) in levels.iter_ascending() {
                    e.i64(price.get());
                    e.len(usize::try_from(level.count).expect("u32 fits usize"));
                    let mut slot = level.head;
                    while slot != super::book::NIL {
                        let o = self.orders.get(slot);
                        e.u64(o.id.0);
                        slot = o.next;
                    }
                }
            }
            for stops in [&s.book.stop_buys, &s.book.stop_sells] {
                e.len(stops.len());
                for &(stop, id) in stops {
                    e.i64(stop.get());
                    e.u64(id.0);
                }
            }
        }
    }

    fn encode_accounts(&self, e: &mut ByteWriter) {
        let by_id: BTreeMap<_, _> = self.accounts.iter().map(|a| (a.id, a)).collect();
        e.len(by_id.len());
        for (id, a) in by_id {
            e.u64(id.0);
            e.u64(a.parent.0);
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
                e.u32(asset.0);
                e.i64(b.available);
                e.i64(b.held);
            }
        }
    }

    fn encode_orders(&self, e: &mut ByteWriter) {
        let by_id: BTreeMap<_, _> = self.order_index.iter().map(|(&id, &slot)| (id, slot)).collect();
        e.len(by_id.len());
        for (id, slot) in by_id {
            let o = self.orders.get(slot);
            e.u64(id.0);
            e.u64(self.accounts[o.account_idx as usize].id.0);
            e.u32(self.symbols[o.symbol_idx as usize].spec.symbol.0);
            e.u64(o.client_order_id);
            for b in [o.side.as_u8(), o.order_type.as_u8(), o.tif.as_u8(), o.stp.as_u8(), o.status.as_u8()] {
                e.u8(b);
            }
            e.u8(o.triggered as u8);
            e.u8(o.resting as u8);
            for v in [o.price_ticks.get(), o.stop_ticks.get(), o.qty_lots.get(), o.filled_lots.get()] {
                e.i64(v);
            }
            for v in [o.filled_quote, o.fees_paid, o.held] {
                e.i64(v);
            }
            e.u32(o.fee_cap_ppm);
        }
    }

    fn encode_funds_records(&self, e: &mut ByteWriter) {
        e.len(self.withdrawals.len());
        for (&id, w) in &self.withdrawals {
            e.u64(id);
            e.u64(w.account.0);
            e.u32(w.asset.0);
            e.i64(w.amount);
            e.u64(w.client_ref);
            e.u8(w.status.as_u8());
        }
        // A reference window's floor exists only once the window has forgotten a reference. Its
        // presence is the top bit of the window's length, and the floors follow the window, so a
        // state whose windows never filled encodes (and hashes) exactly as before windows existed,
        // and the encoding stays self-delimiting (no optional tail a truncation could cut off).
        for (refs, floors) in
            [(&self.withdrawal_refs, &self.withdrawal_ref_floors), (&self.transfer_refs, &self.transfer_ref_floors)]
        {
            e.flagged_len(refs.len(), !floors.is_empty());
            for &(account, client_ref) in refs {
                e.u64(account.0);
                e.u64(client_ref);
            }
            if !floors.is_empty() {
                e.len(floors.len());
                for (&account, &floor) in floors {
                    e.u64(account.0);
                    e.u64(floor);
                }
            }
        }
        e.flagged_len(self.deposit_refs.len(), self.deposit_ref_floor.is_some());
        for &r in &self.deposit_refs {
            e.u64(r);
        }
        if let Some(floor) = self.deposit_ref_floor {
            e.u64(floor);
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
    #[error("state encoding version {0} is not supported (this build reads 1 to {STATE_ENCODING_VERSION})")]
    Version(u32),
    #[error("state encoding is inconsistent: {0}")]
    Inconsistent(String),
    #[error("{0} trailing bytes after the state")]
    Trailing(usize),
}

impl From<ReadError> for StateDecodeError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Truncated { at, .. } => StateDecodeError::Truncated(at),
            ReadError::BadValue { field, value, .. } => inconsistent(format!("bad {field} byte {value}")),
            ReadError::Trailing { extra } => StateDecodeError::Trailing(extra),
        }
    }
}

/// Reads of the snapshot's collection lengths.
trait StateReader {
    /// A collection length: at most `max` (the limit on what it counts), and bounded by the
    /// bytes left so garbage cannot ask for huge buffers.
    fn len(&mut self, what: &str, max: usize) -> Result<usize, StateDecodeError>;
    /// A length with a flag in its top bit (`StateWriter::flagged_len`).
    fn flagged_len(&mut self, what: &str, max: usize) -> Result<(usize, bool), StateDecodeError>;
}

impl StateReader for ByteReader<'_> {
    fn len(&mut self, what: &str, max: usize) -> Result<usize, StateDecodeError> {
        let at = self.position();
        let n = self.u64()?;
        bounded_len(self, at, n, what, max)
    }
    fn flagged_len(&mut self, what: &str, max: usize) -> Result<(usize, bool), StateDecodeError> {
        let at = self.position();
        let raw = self.u64()?;
        let n = bounded_len(self, at, raw & !(1 << 63), what, max)?;
        Ok((n, raw >> 63 == 1))
    }
}

/// `n`, read at `at`, as a length: no more than the bytes left after it and at most `max`.
fn bounded_len(d: &ByteReader, at: usize, n: u64, what: &str, max: usize) -> Result<usize, StateDecodeError> {
    if n > d.remaining() as u64 {
        return Err(StateDecodeError::Truncated(at));
    }
    let n = usize::try_from(n).map_err(|_| StateDecodeError::Truncated(at))?;
    ensure(n <= max, || format!("{n} {what}, more than the limit {max}"))?;
    Ok(n)
}

fn inconsistent(message: String) -> StateDecodeError {
    StateDecodeError::Inconsistent(message)
}

/// `Ok` if `condition` holds, else the error `message()` describes.
fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), StateDecodeError> {
    if condition {
        Ok(())
    } else {
        Err(inconsistent(message()))
    }
}

/// Checks that ids come in strictly increasing order (the canonical order of the encoding).
struct Ascending<T>(Option<T>);

impl<T: PartialOrd + Copy + std::fmt::Debug> Ascending<T> {
    fn next(&mut self, what: &str, value: T) -> Result<(), StateDecodeError> {
        if let Some(previous) = self.0 {
            ensure(previous < value, || format!("{what} {value:?} after {previous:?}: not in canonical order"))?;
        }
        self.0 = Some(value);
        Ok(())
    }
}

/// What the encoding says about a symbol's book before orders are loaded.
struct BookLayout {
    levels: [Vec<(i64, Vec<OrderId>)>; 2],
    stops: [Vec<(i64, OrderId)>; 2],
}

/// Per-order state that is checked once the books are rebuilt.
struct DecodedOrder {
    resting: bool,
}

impl Engine {
    /// Rebuilds an engine from `encode_state` bytes (a snapshot body).
    ///
    /// Everything read is validated as the engine itself would have left it: ids known and in
    /// canonical order, enums valid, amounts in range, counts within the limits, books and stop
    /// sets consistent with the orders, and finally every invariant (`check_invariants`). Bad
    /// input is an error, never a panic, and never a state the engine could not have reached.
    pub fn decode_state(bytes: &[u8]) -> Result<Engine, StateDecodeError> {
        let mut d = ByteReader::new(bytes);
        if d.array::<9>()? != *b"SEQDSTATE" {
            return Err(StateDecodeError::BadMagic);
        }
        let version = d.u32()?;
        if !(STATE_ENCODING_VERSION_WITHOUT_CODES..=STATE_ENCODING_VERSION).contains(&version) {
            return Err(StateDecodeError::Version(version));
        }
        let mut engine = Engine::new();
        engine.last_seq = d.u64()?;
        engine.last_timestamp_ns = d.u64()?;
        engine.last_trade_id = TradeId(d.u64()?);
        engine.decode_assets(&mut d)?;
        let layouts = engine.decode_symbols(&mut d)?;
        engine.decode_accounts(&mut d)?;
        let decoded_orders = engine.decode_orders(&mut d)?;
        engine.decode_funds_records(&mut d)?;
        engine.rebuild_books(layouts, &decoded_orders)?;
        if version >= STATE_ENCODING_VERSION_WITHOUT_REQUEST_KEYS {
            // Version 2 exists only for a state with codes; in version 3 it may have none.
            engine.decode_codes(&mut d, version == STATE_ENCODING_VERSION_WITHOUT_REQUEST_KEYS)?;
        }
        if version == STATE_ENCODING_VERSION {
            engine.decode_request_keys(&mut d)?;
        }
        d.finish()?;
        #[cfg(debug_assertions)]
        engine.reset_ledger_audit();
        engine.check_invariants().map_err(|e| inconsistent(e.to_string()))?;
        Ok(engine)
    }

    /// The request-key window of version 3: within the limit, not empty (a state without
    /// request keys is written in an older version), keys not 0, sequences strictly increasing
    /// up to `last_seq`, and no (account, key) pair twice.
    fn decode_request_keys(&mut self, d: &mut ByteReader) -> Result<(), StateDecodeError> {
        let count = d.len("request keys", REQUEST_KEYS_KEPT)?;
        ensure(count > 0, || "a version-3 state without request keys".to_string())?;
        let mut seqs = Ascending(None);
        for _ in 0..count {
            let entry = RequestKey { account: AccountId(d.u64()?), key: d.u64()?, seq: d.u64()? };
            seqs.next("request key seq", entry.seq)?;
            ensure(entry.key != 0 && entry.seq != 0 && entry.seq <= self.last_seq, || {
                format!("request key entry {entry:?} (last seq {})", self.last_seq)
            })?;
            ensure(!self.request_keys.contains(entry.account, entry.key), || {
                format!("request key {} of account {} kept twice", entry.key, entry.account)
            })?;
            self.request_keys.remember(entry, REQUEST_KEYS_KEPT);
        }
        Ok(())
    }

    /// The codes section of versions 2 and 3: ids known and ascending, codes valid and unique,
    /// and in version 2 at least one code (a state without codes or request keys is written as
    /// version 1).
    fn decode_codes(&mut self, d: &mut ByteReader, at_least_one: bool) -> Result<(), StateDecodeError> {
        for of in [CodeOf::Asset, CodeOf::Symbol] {
            let max = if of == CodeOf::Asset { ASSETS_MAX } else { SYMBOLS_MAX };
            let mut ids = Ascending(None);
            for _ in 0..d.len("codes", max)? {
                let id = d.u32()?;
                ids.next("code of", id)?;
                let code = Code(d.array::<CODE_BYTES>()?);
                ensure(code.is_valid(of), || format!("{of:?} {id} has invalid code {code}"))?;
                let (index, codes) = match of {
                    CodeOf::Asset => (self.asset_index.get(&AssetId(id)), &mut self.asset_codes),
                    CodeOf::Symbol => (self.symbol_index.get(&SymbolId(id)), &mut self.symbol_codes),
                };
                let idx = *index.ok_or_else(|| inconsistent(format!("code {code} of unknown {of:?} {id}")))?;
                ensure(codes.insert(code, idx).is_none(), || format!("code {code} given twice"))?;
                match of {
                    CodeOf::Asset => self.assets[idx as usize].code = code,
                    CodeOf::Symbol => self.symbols[idx as usize].code = code,
                }
            }
        }
        ensure(!at_least_one || !self.asset_codes.is_empty() || !self.symbol_codes.is_empty(), || {
            "a version-2 state without codes".to_string()
        })
    }

    fn decode_assets(&mut self, d: &mut ByteReader) -> Result<(), StateDecodeError> {
        let mut ids = Ascending(None);
        for _ in 0..d.len("assets", ASSETS_MAX)? {
            let id = d.u32()?;
            ids.next("asset", id)?;
            ensure(id != 0, || "asset id 0".to_string())?;
            let scale = d.u8()?;
            ensure(scale <= super::state::MAX_ASSET_SCALE, || format!("asset {id} has scale {scale}"))?;
            let totals = AssetTotals { deposited: d.i128()?, withdrawn: d.i128()?, fees_collected: d.i64()? };
            let supply = totals.deposited.checked_sub(totals.withdrawn);
            ensure(
                totals.withdrawn >= 0
                    && supply.is_some_and(|s| (0..=i128::from(i64::MAX)).contains(&s))
                    && (0..=supply.unwrap_or(0)).contains(&i128::from(totals.fees_collected)),
                || format!("asset {id} has impossible totals {totals:?}"),
            )?;
            self.asset_index.insert(AssetId(id), index_u32(self.assets.len()));
            self.assets.push(Asset { id: AssetId(id), scale, code: Code::EMPTY });
            self.totals.push(totals);
        }
        Ok(())
    }

    fn decode_symbols(&mut self, d: &mut ByteReader) -> Result<Vec<BookLayout>, StateDecodeError> {
        let mut layouts = Vec::new();
        let mut ids = Ascending(None);
        for _ in 0..d.len("symbols", SYMBOLS_MAX)? {
            let spec = SymbolSpec {
                symbol: SymbolId(d.u32()?),
                base: AssetId(d.u32()?),
                quote: AssetId(d.u32()?),
                tick_size: d.i64()?,
                lot_size: d.i64()?,
                min_qty: d.i64()?,
                min_notional: d.i64()?,
                max_order_qty: d.i64()?,
                maker_fee_ppm: d.u32()?,
                taker_fee_ppm: d.u32()?,
                price_band_bps: d.u32()?,
            };
            let id = spec.symbol;
            ids.next("symbol", id)?;
            ensure(id != SymbolId(0), || "symbol id 0".to_string())?;
            let (base_idx, quote_idx, quote_per_tick_lot) =
                self.validate_symbol_spec(&spec).map_err(|r| inconsistent(format!("symbol {id}: {r:?}")))?;
            let status = d.enum_u8("symbol status", SymbolStatus::from_u8)?;
            let last_price_ticks = Ticks::new(d.i64()?);
            // A last price is a maker's price: it converts back to quote units.
            ensure(last_price_ticks >= Ticks::ZERO && spec.ticks_to_price(last_price_ticks).is_some(), || {
                format!("symbol {id} has last price {last_price_ticks} ticks")
            })?;
            let mut layout = BookLayout { levels: [Vec::new(), Vec::new()], stops: [Vec::new(), Vec::new()] };
            for side_levels in layout.levels.iter_mut() {
                let mut prices = Ascending(None);
                for _ in 0..d.len("price levels", SYMBOL_ORDERS_MAX)? {
                    let price = d.i64()?;
                    prices.next("level price", price)?;
                    ensure(price > 0, || format!("symbol {id} has a level at {price}"))?;
                    let count = d.len("orders in a level", SYMBOL_ORDERS_MAX)?;
                    ensure(count > 0, || format!("symbol {id} has an empty level at {price}"))?;
                    let ids = (0..count).map(|_| d.u64().map(OrderId)).collect::<Result<Vec<_>, _>>()?;
                    side_levels.push((price, ids));
                }
            }
            for side_stops in layout.stops.iter_mut() {
                let mut entries = Ascending(None);
                for _ in 0..d.len("stops", SYMBOL_STOPS_MAX)? {
                    let entry = (d.i64()?, OrderId(d.u64()?));
                    entries.next("stop", entry)?;
                    side_stops.push(entry);
                }
            }
            self.symbol_index.insert(id, index_u32(self.symbols.len()));
            self.symbols.push(Symbol {
                spec,
                status,
                base_idx,
                quote_idx,
                quote_per_tick_lot,
                last_price_ticks,
                book: Book::default(),
                code: Code::EMPTY,
            });
            layouts.push(layout);
        }
        Ok(layouts)
    }

    fn decode_accounts(&mut self, d: &mut ByteReader) -> Result<(), StateDecodeError> {
        let asset_count = self.assets.len();
        let mut ids = Ascending(None);
        for _ in 0..d.len("accounts", ACCOUNTS_MAX)? {
            let (id, parent, owner) = (d.u64()?, d.u64()?, d.u64()?);
            ids.next("account", id)?;
            ensure(id != 0 && parent != id, || format!("account {id} with parent {parent}"))?;
            let status = d.enum_u8("account status", AccountStatus::from_u8)?;
            let mut balances = vec![Balance::default(); asset_count];
            let mut assets = Ascending(None);
            for _ in 0..d.len("balances", asset_count)? {
                let asset = d.u32()?;
                assets.next("balance asset", asset)?;
                let idx = self
                    .asset_idx(AssetId(asset))
                    .map_err(|_| inconsistent(format!("account {id} holds unknown asset {asset}")))?;
                let b = Balance { available: d.i64()?, held: d.i64()? };
                ensure(b.available >= 0 && b.held >= 0 && (b.available != 0 || b.held != 0), || {
                    format!("account {id} has balance {b:?} of asset {asset}")
                })?;
                ensure(b.available.checked_add(b.held).is_some(), || format!("account {id} balance overflows"))?;
                balances[idx as usize] = b;
            }
            self.account_index.insert(AccountId(id), index_u32(self.accounts.len()));
            self.accounts.push(Account {
                id: AccountId(id),
                parent: AccountId(parent),
                owner,
                status,
                ancestors: Vec::new(),
                balances,
                subtree_totals: vec![0; asset_count],
                open_orders: Vec::new(),
                pending_withdrawals: 0,
            });
        }
        // Parents may have larger ids than their children, so paths are built after all exist.
        for idx in 0..self.accounts.len() {
            let mut path = Vec::new();
            let mut parent = self.accounts[idx].parent;
            while parent != AccountId::NONE {
                let parent_idx =
                    self.account_idx(parent).map_err(|_| inconsistent(format!("unknown parent {parent}")))?;
                ensure(path.len() < super::state::MAX_TREE_DEPTH, || {
                    format!("account tree of {} is cyclic or too deep", self.accounts[idx].id)
                })?;
                path.push(parent_idx);
                parent = self.accounts[parent_idx as usize].parent;
            }
            path.reverse();
            if let Some(&parent_idx) = path.last() {
                let (account, parent) = (&self.accounts[idx], &self.accounts[parent_idx as usize]);
                ensure(account.owner == parent.owner, || format!("account {} has another owner", account.id))?;
            }
            for asset_idx in 0..asset_count {
                let total = self.accounts[idx].balances[asset_idx].total();
                for &account in path.iter().chain(std::iter::once(&index_u32(idx))) {
                    let sum = &mut self.accounts[account as usize].subtree_totals[asset_idx];
                    *sum = sum.checked_add(total).ok_or_else(|| inconsistent("subtree total overflows".into()))?;
                }
            }
            self.accounts[idx].ancestors = path;
        }
        Ok(())
    }

    fn decode_orders(&mut self, d: &mut ByteReader) -> Result<Vec<DecodedOrder>, StateDecodeError> {
        let mut decoded = Vec::new();
        let mut ids = Ascending(None);
        let order_count_max = SYMBOL_ORDERS_MAX.saturating_mul(self.symbols.len());
        for _ in 0..d.len("orders", order_count_max)? {
            let id = d.u64()?;
            ids.next("order", id)?;
            ensure(id != 0 && id <= self.last_seq, || format!("order id {id} after seq {}", self.last_seq))?;
            let account = d.u64()?;
            let symbol = d.u32()?;
            let account_idx = self
                .account_idx(AccountId(account))
                .map_err(|_| inconsistent(format!("order {id} has unknown account")))?;
            let symbol_idx = self
                .symbol_idx(SymbolId(symbol))
                .map_err(|_| inconsistent(format!("order {id} has unknown symbol")))?;
            let client_order_id = d.u64()?;
            let mut order = Order {
                account_idx,
                symbol_idx,
                client_order_id,
                side: d.enum_u8("side", Side::from_u8)?,
                order_type: d.enum_u8("order type", OrderType::from_u8)?,
                tif: d.enum_u8("tif", TimeInForce::from_u8)?,
                stp: d.enum_u8("stp", StpMode::from_u8)?,
                status: d.enum_u8("order status", OrderStatus::from_u8)?,
                triggered: d.bool("triggered")?,
                ..Order::blank(OrderId(id))
            };
            let resting = d.bool("resting")?; // checked against the books once they are rebuilt
            order.price_ticks = Ticks::new(d.i64()?);
            order.stop_ticks = Ticks::new(d.i64()?);
            order.qty_lots = Lots::new(d.i64()?);
            order.filled_lots = Lots::new(d.i64()?);
            order.filled_quote = d.i64()?;
            order.fees_paid = d.i64()?;
            order.held = d.i64()?;
            order.fee_cap_ppm = d.u32()?;
            self.check_decoded_order(&order, resting)?;
            let slot = self.orders.insert(order);
            self.order_index.insert(OrderId(id), slot);
            if client_order_id != 0 {
                let previous = self.client_order_ids.insert((account_idx, client_order_id), OrderId(id));
                ensure(previous.is_none(), || format!("client order id {client_order_id} used twice"))?;
            }
            let open_orders = &mut self.accounts[account_idx as usize].open_orders;
            ensure(open_orders.len() < ACCOUNT_OPEN_ORDERS_MAX, || format!("account {account} has too many orders"))?;
            self.orders.get_mut(slot).account_pos = index_u32(open_orders.len());
            open_orders.push(slot);
            decoded.push(DecodedOrder { resting });
        }
        Ok(decoded)
    }

    /// A live order as the engine leaves one between commands.
    fn check_decoded_order(&self, o: &Order, resting: bool) -> Result<(), StateDecodeError> {
        let symbol = &self.symbols[o.symbol_idx as usize];
        let is_limit = !o.order_type.is_market();
        let live_place = if resting { o.triggered && is_limit } else { !o.triggered && o.order_type.is_stop() };
        let sizes = o.qty_lots.is_positive()
            && symbol.spec.lots_to_qty(o.qty_lots).is_some()
            && (Lots::ZERO..o.qty_lots).contains(&o.filled_lots)
            && o.filled_quote >= 0
            && (0..=o.filled_quote).contains(&o.fees_paid)
            && o.held >= 0
            && i64::from(o.fee_cap_ppm) < PPM;
        let status = match o.status {
            OrderStatus::New => o.filled_lots == Lots::ZERO,
            OrderStatus::PartiallyFilled => o.filled_lots.is_positive(),
            _ => false,
        };
        let price_ok = |ticks: Ticks, wanted: bool| {
            if wanted {
                ticks.is_positive() && symbol.spec.ticks_to_price(ticks).is_some()
            } else {
                ticks == Ticks::ZERO
            }
        };
        // A resting order's whole notional fits an i64: matching relies on it.
        let prices = price_ok(o.price_ticks, is_limit)
            && price_ok(o.stop_ticks, o.order_type.is_stop())
            && (!is_limit || super::orders::notional(symbol, o.price_ticks, o.qty_lots).is_some());
        // What the order holds covers what it can still spend (fills assert it): a sell holds
        // exactly its remaining quantity, a limit buy at least its remainder's cost at its fee cap.
        let holds = sizes
            && prices
            && match (o.side, is_limit) {
                (Side::Sell, _) => symbol.spec.lots_to_qty(o.remaining_lots()) == Some(o.held),
                (Side::Buy, true) => super::orders::buy_hold(symbol, o.price_ticks, o.remaining_lots(), o.fee_cap_ppm)
                    .is_some_and(|needed| o.held >= needed),
                (Side::Buy, false) => true,
            };
        ensure(live_place && sizes && status && prices && holds, || {
            format!("order {} is not a possible live order: {o:?}", o.id)
        })
    }

    fn decode_funds_records(&mut self, d: &mut ByteReader) -> Result<(), StateDecodeError> {
        let mut ids = Ascending(None);
        let withdrawals_max =
            WITHDRAWALS_DECIDED_KEPT + ACCOUNT_PENDING_WITHDRAWALS_MAX.saturating_mul(self.accounts.len());
        for _ in 0..d.len("withdrawals", withdrawals_max)? {
            let id = d.u64()?;
            ids.next("withdrawal", id)?;
            ensure(id != 0 && id <= self.last_seq, || format!("withdrawal id {id} after seq {}", self.last_seq))?;
            let w = Withdrawal {
                account: AccountId(d.u64()?),
                asset: AssetId(d.u32()?),
                amount: d.i64()?,
                client_ref: d.u64()?,
                status: d.enum_u8("withdrawal status", WithdrawalStatus::from_u8)?,
            };
            let account_idx =
                self.account_idx(w.account).map_err(|_| inconsistent(format!("withdrawal {id}: account")))?;
            self.asset_idx(w.asset).map_err(|_| inconsistent(format!("withdrawal {id}: asset")))?;
            ensure(w.amount > 0, || format!("withdrawal {id} of {}", w.amount))?;
            if w.status == WithdrawalStatus::Pending {
                let pending = &mut self.accounts[account_idx as usize].pending_withdrawals;
                *pending += 1;
                ensure(*pending <= ACCOUNT_PENDING_WITHDRAWALS_MAX, || format!("withdrawal {id}: too many pending"))?;
            } else {
                self.decided_withdrawals.insert(id);
            }
            self.withdrawals.insert(id, w);
        }
        ensure(self.decided_withdrawals.len() <= WITHDRAWALS_DECIDED_KEPT, || "too many decided withdrawals".into())?;
        for transfer in [false, true] {
            let kept_max = if transfer { ACCOUNT_TRANSFER_REFS_KEPT } else { ACCOUNT_WITHDRAWAL_REFS_KEPT };
            let (count, has_floors) = d.flagged_len("references", kept_max.saturating_mul(self.accounts.len()))?;
            let mut entries = Ascending(None);
            let mut run = (AccountId::NONE, 0usize); // (account, references of it so far)
            let mut refs = BTreeSet::new();
            for _ in 0..count {
                let entry = (AccountId(d.u64()?), d.u64()?);
                entries.next("reference", entry)?;
                ensure(self.account_index.contains_key(&entry.0), || {
                    format!("reference of unknown account {}", entry.0)
                })?;
                run = if run.0 == entry.0 { (entry.0, run.1 + 1) } else { (entry.0, 1) };
                ensure(run.1 <= kept_max, || format!("account {} keeps too many references", entry.0))?;
                refs.insert(entry);
            }
            let mut floors = BTreeMap::new();
            if has_floors {
                let mut accounts = Ascending(None);
                for _ in 0..d.len("reference floors", self.accounts.len())? {
                    let (account, floor) = (AccountId(d.u64()?), d.u64()?);
                    accounts.next("floor account", account)?;
                    ensure(self.account_index.contains_key(&account), || {
                        format!("floor of unknown account {account}")
                    })?;
                    let lowest = refs.range((account, 0)..=(account, u64::MAX)).next();
                    ensure(lowest.is_none_or(|&(_, r)| r > floor), || {
                        format!("account {account} keeps a reference at or below its floor")
                    })?;
                    floors.insert(account, floor);
                }
                ensure(!floors.is_empty(), || "an empty list of floors (not canonical)".into())?;
            }
            if transfer {
                (self.transfer_refs, self.transfer_ref_floors) = (refs, floors);
            } else {
                (self.withdrawal_refs, self.withdrawal_ref_floors) = (refs, floors);
            }
        }
        let (count, has_floor) = d.flagged_len("deposit references", DEPOSIT_REFS_KEPT)?;
        let mut refs = Ascending(None);
        for _ in 0..count {
            let r = d.u64()?;
            refs.next("deposit reference", r)?;
            self.deposit_refs.insert(r);
        }
        if has_floor {
            let floor = d.u64()?;
            ensure(self.deposit_refs.first().is_none_or(|&r| r > floor), || {
                "a kept deposit reference is at or below the floor".into()
            })?;
            self.deposit_ref_floor = Some(floor);
        }
        Ok(())
    }

    /// Puts the decoded orders back into their levels in the encoded queue order, and checks
    /// that books and stop sets hold exactly the orders that say they are there.
    fn rebuild_books(&mut self, layouts: Vec<BookLayout>, decoded: &[DecodedOrder]) -> Result<(), StateDecodeError> {
        for (symbol_idx, layout) in layouts.into_iter().enumerate() {
            for (side, levels) in [Side::Buy, Side::Sell].into_iter().zip(layout.levels) {
                for (price, ids) in levels {
                    let mut level_lots = Lots::ZERO;
                    for id in ids {
                        let slot = *self
                            .order_index
                            .get(&id)
                            .ok_or_else(|| inconsistent(format!("book names unknown order {id}")))?;
                        let o = self.orders.get(slot);
                        if o.side != side
                            || o.price_ticks != Ticks::new(price)
                            || o.symbol_idx != index_u32(symbol_idx)
                            || o.resting
                        {
                            return Err(inconsistent(format!("order {id} is misplaced in the book")));
                        }
                        // `push_back` adds up the level's lots; they must fit an i64.
                        level_lots = level_lots
                            .checked_add(o.remaining_lots())
                            .ok_or_else(|| inconsistent(format!("level {price} holds too many lots")))?;
                        self.symbols[symbol_idx].book.push_back(&mut self.orders, slot);
                        self.orders.get_mut(slot).resting = true;
                    }
                }
            }
            for (side, stops) in [Side::Buy, Side::Sell].into_iter().zip(layout.stops) {
                for (stop, id) in stops {
                    let o = self.order_index.get(&id).map(|&slot| self.orders.get(slot));
                    ensure(
                        o.is_some_and(|o| {
                            !o.triggered
                                && o.stop_ticks == Ticks::new(stop)
                                && o.side == side
                                && o.symbol_idx == index_u32(symbol_idx)
                        }),
                        || format!("stop entry ({stop}, {id}) has no waiting stop order"),
                    )?;
                    self.symbols[symbol_idx].book.stops_mut(side).insert((Ticks::new(stop), id));
                }
            }
            let book = &self.symbols[symbol_idx].book;
            ensure(book.resting_count() + book.stop_count() <= SYMBOL_ORDERS_MAX, || {
                "too many orders in a symbol".into()
            })?;
        }
        // Each order is where it says it is: resting ones in exactly one level (a second push
        // was refused above), waiting stops in exactly one stop set (stop sets are sets of
        // (price, id) and each entry matched its order's own price).
        let mut waiting = vec![0usize; self.symbols.len()];
        for (&id, &slot) in self.order_index.iter().collect::<BTreeMap<_, _>>() {
            let o = self.orders.get(slot);
            let position = usize::try_from(slot).expect("u32 fits usize");
            ensure(o.resting == decoded[position].resting, || format!("order {id} is not where it says it is"))?;
            if !o.triggered {
                waiting[o.symbol_idx as usize] += 1;
            }
        }
        for (symbol_idx, symbol) in self.symbols.iter().enumerate() {
            ensure(waiting[symbol_idx] == symbol.book.stop_count(), || {
                format!("symbol {} has waiting stops missing from its stop sets", symbol.spec.symbol)
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Command, Event, NewOrder};
    use crate::testkit::workload::{exchange_core_mix, WorkloadSpec};

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

    /// The decoder's checks are exactly as strict as the engine: every state a long random
    /// workload passes through (fills, amends, stops, cancels, withdrawals) decodes.
    #[test]
    fn every_reachable_state_decodes() {
        let workload = exchange_core_mix(WorkloadSpec { accounts: 20, resting_orders: 60, commands: 6_000, seed: 5 });
        let (mut engine, mut seq) = workload.prepared_engine();
        let mut events = Vec::new();
        let mut bytes = Vec::new();
        for (i, command) in workload.commands.iter().enumerate() {
            events.clear();
            engine.apply(seq, seq * 10, command, &mut events);
            seq += 1;
            if i % 37 == 0 {
                bytes.clear();
                engine.encode_state(&mut bytes);
                let decoded = Engine::decode_state(&bytes).unwrap_or_else(|e| panic!("after command {i}: {e}"));
                assert_eq!(decoded.state_hash(), engine.state_hash());
            }
        }
    }

    /// A small state holding one of everything: two assets, a symbol with a last price, an
    /// account tree, balances, resting orders on both sides (one partially filled, one with a
    /// client order id), waiting stops, pending and decided withdrawals, and used references.
    fn small_state() -> Engine {
        use crate::testkit::workload::btc_usdt_spec;
        let mut engine = Engine::new();
        let mut events = Vec::new();
        let order = |account, side, order_type, tif, price, stop_price, qty| NewOrder {
            account,
            symbol: SymbolId(1),
            client_order_id: (price + stop_price + qty) as u64,
            side,
            order_type,
            tif,
            stp: StpMode::CancelIncoming,
            price,
            stop_price,
            qty,
            quote_budget: 0,
        };
        let spec = btc_usdt_spec(1_000, 2_000);
        let tick = spec.tick_size;
        let lot = spec.min_qty.max(spec.lot_size);
        let commands = [
            Command::CreateAsset { asset: AssetId(1), scale: 8 },
            Command::CreateAsset { asset: AssetId(2), scale: 6 },
            Command::CreateSymbol(SymbolSpec { symbol: SymbolId(1), base: AssetId(1), quote: AssetId(2), ..spec }),
            Command::CreateAccount { account: AccountId(1), parent: AccountId::NONE, owner: 1 },
            Command::CreateAccount { account: AccountId(2), parent: AccountId(1), owner: 1 },
            Command::CreateAccount { account: AccountId(3), parent: AccountId::NONE, owner: 3 },
            Command::Deposit { account: AccountId(1), asset: AssetId(2), amount: 1_000_000_000_000, external_ref: 1 },
            Command::Deposit { account: AccountId(3), asset: AssetId(1), amount: 1_000_000_000, external_ref: 2 },
            Command::Transfer {
                from: AccountId(1),
                to: AccountId(2),
                asset: AssetId(2),
                amount: 500_000_000_000,
                client_ref: 1,
            },
            Command::PlaceOrder(order(
                AccountId(2),
                Side::Buy,
                OrderType::Limit,
                TimeInForce::Gtc,
                1_000 * tick,
                0,
                3 * lot,
            )),
            Command::PlaceOrder(order(
                AccountId(3),
                Side::Sell,
                OrderType::Limit,
                TimeInForce::Gtc,
                1_000 * tick,
                0,
                lot,
            )),
            Command::PlaceOrder(order(
                AccountId(3),
                Side::Sell,
                OrderType::Limit,
                TimeInForce::Gtc,
                1_010 * tick,
                0,
                lot,
            )),
            Command::PlaceOrder(order(
                AccountId(1),
                Side::Buy,
                OrderType::StopLimit,
                TimeInForce::Gtc,
                1_020 * tick,
                1_015 * tick,
                lot,
            )),
            Command::PlaceOrder(order(
                AccountId(3),
                Side::Sell,
                OrderType::StopMarket,
                TimeInForce::Ioc,
                0,
                900 * tick,
                lot,
            )),
            Command::WithdrawRequest { account: AccountId(1), asset: AssetId(2), amount: 1_000, client_ref: 7 },
            Command::WithdrawRequest { account: AccountId(1), asset: AssetId(2), amount: 2_000, client_ref: 8 },
            Command::WithdrawApprove { withdrawal_id: 16 },
        ];
        for (i, command) in commands.iter().enumerate() {
            events.clear();
            engine.apply(i as Seq + 1, i as u64 * 1_000, command, &mut events);
            assert!(!matches!(events.as_slice(), [Event::Rejected { .. }]), "{command:?}: {events:?}");
        }
        // A deposit window that has forgotten a reference, so the floors trailer is encoded.
        engine.forget_deposit_refs_over(1);
        assert!(engine.deposit_ref_floor.is_some());
        engine
    }

    /// `small_state` with a coded asset and a coded symbol (two events each), so the version-2
    /// codes section is encoded.
    fn small_state_with_codes() -> Engine {
        use crate::testkit::workload::btc_usdt_spec;
        let mut engine = small_state();
        let code = |text, of| Code::parse(text, of).unwrap();
        let spec =
            SymbolSpec { symbol: SymbolId(2), base: AssetId(3), quote: AssetId(2), ..btc_usdt_spec(1_000, 2_000) };
        let commands = [
            Command::CreateAssetWithCode { asset: AssetId(3), scale: 8, code: code("ETH", CodeOf::Asset) },
            Command::CreateSymbolWithCode { spec, code: code("ETH/USDT", CodeOf::Symbol) },
        ];
        let mut events = Vec::new();
        for (i, command) in commands.iter().enumerate() {
            events.clear();
            engine.apply(engine.last_seq + 1, engine.last_timestamp_ns + i as u64, command, &mut events);
            assert_eq!(events.len(), 2, "{command:?}: {events:?}");
        }
        engine
    }

    #[test]
    fn a_state_without_codes_keeps_version_1_and_one_with_codes_round_trips_as_version_2() {
        let version = |engine: &Engine| {
            let mut bytes = Vec::new();
            engine.encode_state(&mut bytes);
            u32::from_le_bytes(bytes[9..13].try_into().unwrap())
        };
        assert_eq!(version(&small_state()), STATE_ENCODING_VERSION_WITHOUT_CODES);
        let coded = small_state_with_codes();
        assert_eq!(version(&coded), STATE_ENCODING_VERSION_WITHOUT_REQUEST_KEYS);
        let mut bytes = Vec::new();
        coded.encode_state(&mut bytes);
        let decoded = Engine::decode_state(&bytes).unwrap();
        assert_eq!(decoded.asset_views(), coded.asset_views());
        assert_eq!(decoded.symbol_views(), coded.symbol_views());
        assert_eq!(decoded.state_hash(), coded.state_hash());
        // The code index is rebuilt: the code is still taken after decoding.
        let mut events = Vec::new();
        let mut decoded = decoded;
        let again = Command::CreateAssetWithCode {
            asset: AssetId(4),
            scale: 2,
            code: Code::parse("ETH", CodeOf::Asset).unwrap(),
        };
        decoded.apply(decoded.last_seq + 1, decoded.last_timestamp_ns, &again, &mut events);
        assert_eq!(events, [Event::Rejected { reason: RejectReason::CodeExists }]);
    }

    /// `base` after three keyed commands: two applied (remembered, one by an admin command
    /// that names no account) and one rejected (not remembered).
    fn with_request_keys(mut base: Engine) -> Engine {
        let commands = [
            (11, Command::CancelAll { account: AccountId(3), symbol: SymbolId::ALL }),
            (u64::MAX, Command::WithdrawApprove { withdrawal_id: 15 }),
            (12, Command::WithdrawApprove { withdrawal_id: 999 }),
        ];
        let mut events = Vec::new();
        for (key, command) in commands {
            base.apply_keyed(base.last_seq + 1, base.last_timestamp_ns, key, &command, &mut events);
        }
        assert_eq!(base.request_keys.len(), 2, "{events:?}");
        base
    }

    fn encoding(engine: &Engine) -> Vec<u8> {
        let mut bytes = Vec::new();
        engine.encode_state(&mut bytes);
        bytes
    }

    #[test]
    fn a_state_with_request_keys_round_trips_as_version_3() {
        for (base, what) in [(small_state(), "without codes"), (small_state_with_codes(), "with codes")] {
            let keyed = with_request_keys(base);
            let bytes = encoding(&keyed);
            assert_eq!(bytes[9..13], STATE_ENCODING_VERSION.to_le_bytes(), "{what}");
            let mut decoded = Engine::decode_state(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(encoding(&decoded), bytes, "{what}");
            assert_eq!(decoded.state_hash(), keyed.state_hash());
            assert_eq!(decoded.asset_views(), keyed.asset_views());
            // The lookup set is rebuilt: a remembered key is still refused after decoding.
            let mut events = Vec::new();
            let again = Command::CancelAll { account: AccountId(3), symbol: SymbolId::ALL };
            decoded.apply_keyed(decoded.last_seq + 1, decoded.last_timestamp_ns, 11, &again, &mut events);
            assert_eq!(events, [Event::Rejected { reason: RejectReason::DuplicateRequest }]);
        }
    }

    #[test]
    fn every_truncation_or_flipped_byte_of_the_request_keys_is_an_error_or_canonical() {
        let bytes = encoding(&with_request_keys(small_state()));
        for cut in 0..bytes.len() {
            assert!(Engine::decode_state(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // The window is the last 8 + 2 * 24 bytes, after the (empty) codes section.
        let window_at = bytes.len() - 56;
        assert_eq!(bytes[window_at - 16..window_at], [0; 16], "an empty codes section");
        let (mut accepted, mut refused) = (0, 0);
        for at in window_at - 16..bytes.len() {
            for mask in [0x01, 0x20, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= mask;
                match Engine::decode_state(&damaged) {
                    // An account or key flipped to another valid one is another possible state.
                    Ok(engine) => {
                        accepted += 1;
                        assert!(encoding(&engine) == damaged, "byte {at} ^ {mask:#x} decoded to another state");
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        // Accounts and keys may be any value but a key 0; counts and sequences are checked.
        assert!(refused > 0 && accepted > 0, "{refused} refused, {accepted} accepted");
    }

    /// Each rule of the window's decoding: key 0, a sequence out of order or after the last,
    /// a pair twice, an empty version-3 window.
    #[test]
    fn impossible_request_key_windows_are_refused() {
        let bytes = encoding(&with_request_keys(small_state()));
        let window_at = bytes.len() - 56;
        let entry = |i: usize, field: usize| window_at + 8 + 24 * i + 8 * field;
        let set = |bytes: &mut Vec<u8>, at: usize, value: u64| bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
        let last_seq = u64::from_le_bytes(bytes[13..21].try_into().unwrap());
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut zero_key = bytes.clone();
        set(&mut zero_key, entry(0, 1), 0);
        cases.push(("key 0", zero_key));
        let mut after_last = bytes.clone();
        set(&mut after_last, entry(1, 2), last_seq + 1);
        cases.push(("seq after the last", after_last));
        let mut out_of_order = bytes.clone();
        set(&mut out_of_order, entry(1, 2), 1);
        cases.push(("seqs out of order", out_of_order));
        let mut twice = bytes.clone();
        let first_pair = bytes[entry(0, 0)..entry(0, 2)].to_vec();
        twice[entry(1, 0)..entry(1, 2)].copy_from_slice(&first_pair);
        cases.push(("a pair twice", twice));
        let mut empty = bytes[..window_at].to_vec();
        empty.extend_from_slice(&0u64.to_le_bytes());
        cases.push(("an empty window", empty));
        for (what, damaged) in cases {
            assert!(
                matches!(Engine::decode_state(&damaged), Err(StateDecodeError::Inconsistent(_))),
                "{what}: {:?}",
                Engine::decode_state(&damaged).err()
            );
        }
    }

    #[test]
    fn every_truncation_or_flipped_byte_of_a_state_with_codes_is_an_error_or_canonical() {
        let mut bytes = Vec::new();
        small_state_with_codes().encode_state(&mut bytes);
        for cut in 0..bytes.len() {
            assert!(Engine::decode_state(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        // The codes section is the last 2 * 8 + 2 * 20 bytes.
        for at in bytes.len() - 56..bytes.len() {
            for mask in [0x01, 0x20, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= mask;
                if let Ok(engine) = Engine::decode_state(&damaged) {
                    let mut again = Vec::new();
                    engine.encode_state(&mut again);
                    assert!(again == damaged, "byte {at} ^ {mask:#x} decoded to another state");
                }
            }
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut bytes = Vec::new();
        small_state().encode_state(&mut bytes);
        for cut in 0..bytes.len() {
            assert!(Engine::decode_state(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[0] ^= 1;
        assert_eq!(Engine::decode_state(&flipped).err(), Some(StateDecodeError::BadMagic));
    }

    /// Every byte of a small snapshot, flipped in several ways: decoding never panics, and what
    /// it accepts is a state the engine could hold, which encodes back to exactly those bytes
    /// (a flipped timestamp or owner is such a state; a negative balance, a hold that does not
    /// match the orders, an unknown id or a broken book is not).
    #[test]
    fn every_flipped_byte_is_an_error_or_a_canonical_state() {
        let mut bytes = Vec::new();
        small_state().encode_state(&mut bytes);
        let (mut accepted, mut refused) = (0, 0);
        for at in 0..bytes.len() {
            for mask in [0x01, 0x02, 0x10, 0x80, 0xff] {
                let mut damaged = bytes.clone();
                damaged[at] ^= mask;
                match Engine::decode_state(&damaged) {
                    Ok(engine) => {
                        accepted += 1;
                        let mut again = Vec::new();
                        engine.encode_state(&mut again);
                        assert!(again == damaged, "byte {at} ^ {mask:#x} decoded to another state");
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        assert!(refused > accepted, "{refused} refused, {accepted} accepted");
    }

    #[test]
    fn damaged_workload_encodings_are_errors_not_panics() {
        let workload = exchange_core_mix(WorkloadSpec { accounts: 5, resting_orders: 10, commands: 100, seed: 2 });
        let (engine, _) = workload.prepared_engine();
        let mut bytes = Vec::new();
        engine.encode_state(&mut bytes);
        for cut in (0..bytes.len()).step_by(7) {
            assert!(Engine::decode_state(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in (9..bytes.len()).step_by(5) {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            if let Ok(decoded) = Engine::decode_state(&damaged) {
                let mut again = Vec::new();
                decoded.encode_state(&mut again);
                assert!(again == damaged, "byte {at} decoded to another state");
            }
        }
    }

    /// Counts are checked against the limits before anything is built: a body claiming one
    /// asset more than `ASSETS_MAX` (with the bytes to back it) is refused.
    #[test]
    fn counts_above_the_limits_are_refused() {
        let mut bytes = b"SEQDSTATE".to_vec();
        let mut e = ByteWriter(&mut bytes);
        e.u32(STATE_ENCODING_VERSION_WITHOUT_CODES);
        e.u64(0);
        e.u64(0);
        e.u64(0);
        e.len(ASSETS_MAX + 1);
        for id in 1..=ASSETS_MAX as u32 + 1 {
            e.u32(id);
            e.u8(2);
            e.i128(0);
            e.i128(0);
            e.i64(0);
        }
        for _ in 0..7 {
            e.len(0);
        }
        match Engine::decode_state(&bytes) {
            Err(StateDecodeError::Inconsistent(message)) => assert!(message.contains("limit"), "{message}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_negative_balance_or_a_wrong_hold_is_refused() {
        let engine = small_state();
        let mut bytes = Vec::new();
        engine.encode_state(&mut bytes);
        // Account 1's USDT balance: find its (available, held) pair by value and break it.
        let b = engine.balance_of(AccountId(1), AssetId(2)).unwrap();
        let pair: Vec<u8> = [b.available.to_le_bytes(), b.held.to_le_bytes()].concat();
        let at = bytes.windows(16).position(|w| w == pair.as_slice()).expect("the balance is encoded");
        for (available, held) in [(-1, b.held), (b.available, b.held + 1), (b.available, -b.held)] {
            let mut damaged = bytes.clone();
            damaged[at..at + 8].copy_from_slice(&i64::to_le_bytes(available));
            damaged[at + 8..at + 16].copy_from_slice(&i64::to_le_bytes(held));
            assert!(
                matches!(Engine::decode_state(&damaged), Err(StateDecodeError::Inconsistent(_))),
                "{available} / {held}"
            );
        }
    }
}
