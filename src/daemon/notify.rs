//! systemd's notification protocol (`sd_notify`): READY, STATUS, STOPPING, WATCHDOG, sent on
//! the socket named by `NOTIFY_SOCKET` when run as a `Type=notify` service.

use std::sync::OnceLock;
use std::time::Duration;

/// Longest wait for room in systemd's notification queue, per message.
const NOTIFY_SEND_TIMEOUT: Duration = Duration::from_millis(100);

/// The `STATUS=` line systemd shows in `systemctl status`.
pub(super) fn status_line(status: &str) -> String {
    format!("STATUS={status}")
}

/// systemd's notification socket (`NOTIFY_SOCKET`), opened once.
struct Notifier {
    socket: std::os::unix::net::UnixDatagram,
    addr: std::os::unix::net::SocketAddr,
}

impl Notifier {
    fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET")?.to_string_lossy().into_owned();
        let addr = match path.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abstract_name.as_bytes())
            }
            None => std::os::unix::net::SocketAddr::from_pathname(&path),
        };
        let opened = addr.and_then(|addr| {
            let socket = std::os::unix::net::UnixDatagram::unbound()?;
            // A full receive queue (a slow reader) must not hold up the supervisor for long.
            socket.set_write_timeout(Some(NOTIFY_SEND_TIMEOUT))?;
            Ok(Notifier { socket, addr })
        });
        opened.map_err(|e| tracing::warn!("sd_notify: {path}: {e}")).ok()
    }
}

/// Sends a state line to systemd when run as a `Type=notify` service (no-op otherwise).
pub(super) fn systemd_notify(state: &str) {
    static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
    let Some(notifier) = NOTIFIER.get_or_init(Notifier::from_env) else { return };
    if let Err(e) = notifier.socket.send_to_addr(state.as_bytes(), &notifier.addr) {
        tracing::warn!("sd_notify {state}: {e}");
    }
}

/// Half of systemd's watchdog timeout (`WATCHDOG_USEC`), when the watchdog is on for this
/// process (`WATCHDOG_PID`, if set, is ours).
pub(super) fn watchdog_interval() -> Option<Duration> {
    let usec = std::env::var("WATCHDOG_USEC").ok()?.parse::<u64>().ok()?;
    let for_us =
        std::env::var("WATCHDOG_PID").ok().is_none_or(|pid| pid.parse::<u32>().ok() == Some(std::process::id()));
    (for_us && usec > 0).then(|| Duration::from_micros(usec / 2))
}
