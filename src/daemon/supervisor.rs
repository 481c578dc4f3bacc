//! The supervisor: until a signal or a failure, checks the pipeline's threads, pets systemd's
//! watchdog and keeps `STATUS=` current. The only place that pets the watchdog.

use super::notify::{status_line, systemd_notify, watchdog_interval};
use super::Observed;
use crate::pipeline::health::{self, StallDetector};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How often the supervisor looks at the pipeline.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(100);
/// How often `STATUS=` is refreshed while serving.
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Why the serving loop ended.
#[derive(Debug)]
pub(super) enum Stop {
    /// SIGTERM or SIGINT: the graceful path.
    Signal,
    /// A pipeline thread failed or stalled, or the gateway's accept loop ended.
    Failed(String),
}

/// Until SIGTERM or SIGINT, or a failure: checks the pipeline every `SUPERVISE_INTERVAL`, pets
/// systemd's watchdog while it is healthy and keeps `STATUS=` current. The watchdog is petted
/// from this loop only, so a failed or stalled pipeline, or a blocked gateway runtime, stops
/// the petting and systemd restarts the daemon.
pub(super) async fn supervise(
    observed: &Observed,
    stall_limit: Duration,
    mut accept_loop: tokio::task::JoinHandle<()>,
) -> Stop {
    let stats = &*observed.pipeline;
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    let mut tick = tokio::time::interval(SUPERVISE_INTERVAL);
    let mut stalls = StallDetector::new(stall_limit);
    let watchdog_interval = watchdog_interval();
    let (mut last_pet, mut last_status) = (Instant::now(), None::<(Instant, String)>);
    loop {
        tokio::select! {
            _ = terminate.recv() => return Stop::Signal,
            _ = tokio::signal::ctrl_c() => return Stop::Signal,
            ended = &mut accept_loop => {
                let what = match ended {
                    Ok(()) => "ended".to_string(),
                    Err(e) => format!("ended: {e}"),
                };
                stats.fail("gateway accept loop", &what);
                return Stop::Failed(stats.failure().unwrap_or("gateway accept loop ended").to_string());
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some(stall) = stalls.observe(health::progress(stats), now) {
                    stats.fail(stall.thread, &stall.what);
                }
                if let Some(reason) = stats.failure() {
                    return Stop::Failed(reason.to_string());
                }
                if watchdog_interval.is_some_and(|interval| now.duration_since(last_pet) >= interval) {
                    systemd_notify("WATCHDOG=1");
                    last_pet = now;
                }
                let status = status_line(&format!(
                    "serving: seq {}, {} connections",
                    stats.durable_seq.load(Ordering::Acquire),
                    observed.router.connections()
                ));
                let due = last_status.as_ref().is_none_or(|(at, sent)| *sent != status && now.duration_since(*at) >= STATUS_INTERVAL);
                if due {
                    systemd_notify(&status);
                    last_status = Some((now, status));
                }
            }
        }
    }
}
