//! Test-only fault injection. The hooks do something only in a build with the
//! `fault-injection` cargo feature, which the test builds turn on (the dev-dependency of the
//! package on itself, see Cargo.toml) and `cargo build` never does; otherwise each hook is an
//! empty inline function. A fault is armed by an environment variable of the process, read
//! once, so only whoever starts the process can arm it; nothing a client sends can.
//!
//! | variable | fault |
//! |---|---|
//! | `SEQD_FAULT_PANIC_AT_SEQ=N` | applying command N panics, on the processor thread and in every replay (recovery, `seqd replay`), as an engine bug would |
//! | `SEQD_FAULT_RESPONDER_PANIC_AT_SEQ=N` | the responder panics before delivering the result of command N |
//! | `SEQD_FAULT_STALL_JOURNALER_AT_SEQ=N` | the journaler stops for good before appending command N (a hung disk) |
//! | `SEQD_FAULT_RECOVERY_DELAY_MS=N` | `seqd run` waits N ms before recovering (a long recovery: `/readyz` is 503 meanwhile) |

use crate::engine::Seq;

#[cfg(feature = "fault-injection")]
mod armed {
    use crate::engine::Seq;
    use std::sync::OnceLock;
    use std::time::Duration;

    struct Faults {
        panic_at_seq: Option<Seq>,
        responder_panic_at_seq: Option<Seq>,
        stall_journaler_at_seq: Option<Seq>,
        recovery_delay_ms: Option<u64>,
    }

    fn faults() -> &'static Faults {
        static FAULTS: OnceLock<Faults> = OnceLock::new();
        FAULTS.get_or_init(|| {
            let seq = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
            Faults {
                panic_at_seq: seq("SEQD_FAULT_PANIC_AT_SEQ"),
                responder_panic_at_seq: seq("SEQD_FAULT_RESPONDER_PANIC_AT_SEQ"),
                stall_journaler_at_seq: seq("SEQD_FAULT_STALL_JOURNALER_AT_SEQ"),
                recovery_delay_ms: seq("SEQD_FAULT_RECOVERY_DELAY_MS"),
            }
        })
    }

    pub fn before_apply(seq: Seq) {
        if faults().panic_at_seq == Some(seq) {
            panic!("injected fault: command {seq} panics (SEQD_FAULT_PANIC_AT_SEQ)");
        }
    }

    pub fn before_deliver(seq: Seq) {
        if faults().responder_panic_at_seq == Some(seq) {
            panic!("injected fault: the responder panics at {seq} (SEQD_FAULT_RESPONDER_PANIC_AT_SEQ)");
        }
    }

    pub fn before_recovery() {
        if let Some(ms) = faults().recovery_delay_ms {
            tracing::warn!("injected fault: recovery waits {ms} ms (SEQD_FAULT_RECOVERY_DELAY_MS)");
            std::thread::sleep(Duration::from_millis(ms));
        }
    }

    pub fn before_journal(seq: Seq) {
        if faults().stall_journaler_at_seq == Some(seq) {
            tracing::warn!("injected fault: the journaler stalls at {seq} (SEQD_FAULT_STALL_JOURNALER_AT_SEQ)");
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
}

/// Called just before a command is applied (processor thread, replay).
#[inline(always)]
pub fn before_apply(seq: Seq) {
    #[cfg(feature = "fault-injection")]
    armed::before_apply(seq);
    let _ = seq;
}

/// Called by the responder just before it delivers a result.
#[inline(always)]
pub fn before_deliver(seq: Seq) {
    #[cfg(feature = "fault-injection")]
    armed::before_deliver(seq);
    let _ = seq;
}

/// Called by `seqd run` just before it recovers the data directory.
#[inline(always)]
pub fn before_recovery() {
    #[cfg(feature = "fault-injection")]
    armed::before_recovery();
}

/// Called by the journaler just before it appends a command.
#[inline(always)]
pub fn before_journal(seq: Seq) {
    #[cfg(feature = "fault-injection")]
    armed::before_journal(seq);
    let _ = seq;
}

/// The message of a caught panic (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}
