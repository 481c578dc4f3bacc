//! Helpers shared by the engine tests: the units of the test venues, applying a command as the
//! next one with the invariants checked, and the state of an engine without its clock (what a
//! rejected command must leave unchanged).
#![allow(dead_code)]

use seqd::engine::{Command, Engine, Event, Seq};

/// Whole USDT in minor units (scale 6); also a price in USDT per whole coin.
pub const fn usdt(n: i64) -> i64 {
    n * 1_000_000
}
/// Hundredths of a USDT (the ticks of the test symbols).
pub const fn cents(n: i64) -> i64 {
    n * 10_000
}
/// Whole coins (scale 8).
pub const fn coins(n: i64) -> i64 {
    n * 100_000_000
}
/// Thousandths of a coin.
pub const fn milli(n: i64) -> i64 {
    n * 100_000
}
/// Ten-thousandths of a coin (the lots of the test symbols).
pub const fn lots(n: i64) -> i64 {
    n * 10_000
}

/// Applies `command` as the next command (sequence `*seq + 1`, timestamp `ns_per_seq` times the
/// sequence), then checks every invariant, panicking with the command that broke one.
pub fn apply_checked(engine: &mut Engine, seq: &mut Seq, ns_per_seq: u64, command: &Command) -> Vec<Event> {
    apply_checked_keyed(engine, seq, ns_per_seq, 0, command)
}

/// `apply_checked` with a request key (`Engine::apply_keyed`; 0 is no key).
pub fn apply_checked_keyed(
    engine: &mut Engine,
    seq: &mut Seq,
    ns_per_seq: u64,
    request_key: u64,
    command: &Command,
) -> Vec<Event> {
    *seq += 1;
    let mut events = Vec::new();
    engine.apply_keyed(*seq, *seq * ns_per_seq, request_key, command, &mut events);
    if let Err(e) = engine.check_invariants() {
        panic!("after {command:?}: {e}");
    }
    events
}

/// The engine's full `Debug` text with the clock (`last_seq`, `last_timestamp_ns`) blanked: a
/// rejected command advances the clock and must change nothing else.
pub fn state_without_clock(engine: &Engine) -> String {
    let mut text = format!("{engine:?}");
    for (key, value) in [("last_seq: ", engine.last_seq()), ("last_timestamp_ns: ", engine.last_timestamp_ns())] {
        let start = text.find(key).expect("Engine's Debug shows its clock") + key.len();
        let end = start + text[start..].find(|c: char| !c.is_ascii_digit()).unwrap();
        assert_eq!(text[start..end], value.to_string(), "blanking {key}");
        text.replace_range(start..end, "_");
    }
    text
}

/// Where two `state_without_clock` texts first differ, with some context on either side.
pub fn first_difference(before: &str, after: &str) -> String {
    let at = before.bytes().zip(after.bytes()).take_while(|(a, b)| a == b).count();
    let window = |s: &str| s.get(at.saturating_sub(80)..(at + 80).min(s.len())).unwrap_or("").to_string();
    format!("\n before: …{}…\n after:  …{}…", window(before), window(after))
}
