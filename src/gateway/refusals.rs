//! Connections the gateway refuses before the protocol starts: TLS handshakes that fail (no
//! client certificate, a certificate the CA did not sign or that is expired, not for client
//! authentication, or has no usable common name) and valid certificates whose principal is
//! not configured. Each refusal is counted per cause (the metric
//! `seqd_gateway_connections_refused_total{cause=...}`) and logged at warn with the peer
//! address and the reason, at most one line per cause per [`LOG_INTERVAL_NS`], the next line
//! saying how many were not logged: a scanner or a misconfigured client retrying in a loop
//! cannot flood the log, and an operator still sees that it happens and from where.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// At most one log line per cause in this many nanoseconds.
pub const LOG_INTERVAL_NS: u64 = 1_000_000_000;

/// Why a connection was refused; each is a `cause` label of the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalCause {
    /// The client presented no certificate (TLS alert `certificate_required`).
    NoCertificate,
    /// The client's certificate was refused: unknown issuer, expired or not yet valid, bad
    /// signature, not for client authentication, or no single common name.
    BadCertificate,
    /// Any other failed handshake: wrong ALPN or TLS version, timeout, reset, a QUIC error.
    Handshake,
    /// A valid certificate whose principal (common name) is not in `[[principals]]`.
    UnknownPrincipal,
}

impl RefusalCause {
    pub const ALL: [RefusalCause; 4] = [
        RefusalCause::NoCertificate,
        RefusalCause::BadCertificate,
        RefusalCause::Handshake,
        RefusalCause::UnknownPrincipal,
    ];

    /// The metric's `cause` label.
    pub fn label(self) -> &'static str {
        match self {
            RefusalCause::NoCertificate => "no_certificate",
            RefusalCause::BadCertificate => "bad_certificate",
            RefusalCause::Handshake => "handshake",
            RefusalCause::UnknownPrincipal => "unknown_principal",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The cause of a failed server-side QUIC handshake, from the TLS alert it carries.
    pub fn of_handshake_error(error: &quinn::ConnectionError) -> RefusalCause {
        match error {
            quinn::ConnectionError::TransportError(transport) => Self::of_transport_error(u64::from(transport.code)),
            _ => RefusalCause::Handshake,
        }
    }

    /// The cause of a QUIC transport error `code` that ended a handshake.
    pub fn of_transport_error(code: u64) -> RefusalCause {
        // QUIC carries a TLS alert as the transport error 0x100 + alert (RFC 9001 §4.8).
        if code & !0xff != 0x100 {
            return RefusalCause::Handshake;
        }
        match code & 0xff {
            116 => RefusalCause::NoCertificate, // certificate_required
            // bad_certificate, unsupported_certificate, certificate_revoked, certificate_expired,
            // certificate_unknown, unknown_ca, access_denied, decrypt_error (bad signature)
            42 | 43 | 44 | 45 | 46 | 48 | 49 | 51 => RefusalCause::BadCertificate,
            _ => RefusalCause::Handshake,
        }
    }
}

/// Log rate limit of one cause: whether to log now, and how many lines were held back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogWindow {
    last_logged_ns: Option<u64>,
    suppressed: u64,
}

impl LogWindow {
    /// One more refusal at `now_ns` (monotonic). `Some(suppressed)` when it is to be logged,
    /// with the count of refusals not logged since the previous line; `None` to stay quiet.
    pub fn admit(&mut self, now_ns: u64) -> Option<u64> {
        let due = match self.last_logged_ns {
            None => true,
            // A clock that steps back logs at once rather than staying quiet until it catches up.
            Some(last) => now_ns.checked_sub(last).is_none_or(|elapsed| elapsed >= LOG_INTERVAL_NS),
        };
        if !due {
            self.suppressed += 1;
            return None;
        }
        self.last_logged_ns = Some(now_ns);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Counters and log windows of refused connections, shared by the connection tasks and the
/// metrics endpoint.
#[derive(Debug, Default)]
pub struct Refusals {
    counts: [AtomicU64; 4],
    windows: Mutex<[LogWindow; 4]>,
}

impl Refusals {
    /// Counts a refusal and logs it unless its cause was logged less than a second ago.
    pub fn refuse(&self, cause: RefusalCause, peer: SocketAddr, reason: &str, now_ns: u64) {
        self.counts[cause.index()].fetch_add(1, Ordering::Relaxed);
        let logged = self.windows.lock().expect("refusal log lock")[cause.index()].admit(now_ns);
        if let Some(suppressed) = logged {
            tracing::warn!(cause = cause.label(), %peer, reason, suppressed, "connection refused");
        }
    }

    /// Connections refused for `cause` since the start.
    pub fn count(&self, cause: RefusalCause) -> u64 {
        self.counts[cause.index()].load(Ordering::Relaxed)
    }

    /// The Prometheus text lines of the counter, one sample per cause.
    pub fn metrics_text(&self) -> String {
        let name = "seqd_gateway_connections_refused_total";
        let mut text = format!(
            "# HELP {name} Connections refused before the protocol started, by cause.\n# TYPE {name} counter\n"
        );
        for cause in RefusalCause::ALL {
            text.push_str(&format!("{name}{{cause=\"{}\"}} {}\n", cause.label(), self.count(cause)));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = LOG_INTERVAL_NS;

    #[test]
    fn one_line_per_interval_then_the_count_of_those_held_back() {
        let mut window = LogWindow::default();
        assert_eq!(window.admit(5), Some(0), "the first refusal is logged");
        assert_eq!(window.admit(6), None);
        assert_eq!(window.admit(5 + SECOND - 1), None);
        assert_eq!(window.admit(5 + SECOND), Some(2), "the next line says two were held back");
        assert_eq!(window.admit(5 + 3 * SECOND), Some(0));
        assert_eq!(window.admit(SECOND), Some(0), "a clock that went back does not silence it");
    }

    #[test]
    fn refusals_are_counted_per_cause_and_rendered_for_prometheus() {
        let refusals = Refusals::default();
        let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        for i in 0..3 {
            refusals.refuse(RefusalCause::UnknownPrincipal, peer, "principal \"mallory\" is not configured", i);
        }
        refusals.refuse(RefusalCause::NoCertificate, peer, "no certificate", 0);
        assert_eq!(refusals.count(RefusalCause::UnknownPrincipal), 3, "every refusal counts, logged or not");
        assert_eq!(refusals.count(RefusalCause::NoCertificate), 1);
        assert_eq!(refusals.count(RefusalCause::Handshake), 0);
        let text = refusals.metrics_text();
        assert!(text.contains("# TYPE seqd_gateway_connections_refused_total counter\n"), "{text}");
        assert!(text.contains("seqd_gateway_connections_refused_total{cause=\"unknown_principal\"} 3\n"), "{text}");
        assert!(text.contains("seqd_gateway_connections_refused_total{cause=\"no_certificate\"} 1\n"), "{text}");
        assert!(text.contains("seqd_gateway_connections_refused_total{cause=\"bad_certificate\"} 0\n"), "{text}");
    }

    #[test]
    fn tls_alerts_map_to_causes() {
        let alert = |code: u8| RefusalCause::of_transport_error(u64::from(quinn::TransportErrorCode::crypto(code)));
        assert_eq!(alert(116), RefusalCause::NoCertificate);
        assert_eq!(alert(48), RefusalCause::BadCertificate, "unknown CA");
        assert_eq!(alert(45), RefusalCause::BadCertificate, "expired");
        assert_eq!(alert(120), RefusalCause::Handshake, "no ALPN");
        assert_eq!(RefusalCause::of_transport_error(0x0a), RefusalCause::Handshake, "a QUIC protocol violation");
        assert_eq!(RefusalCause::of_handshake_error(&quinn::ConnectionError::TimedOut), RefusalCause::Handshake);
    }
}
