//! The Prometheus endpoint (`metrics.listen`): the pipeline's, the gateway's and the
//! replicators' counters in the text exposition format.

use super::Observed;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Prometheus text exposition of the pipeline's and the replicators' counters.
pub(super) fn metrics_text(observed: &Observed) -> String {
    let (stats, router) = (&*observed.pipeline, &*observed.router);
    let durable = stats.durable_seq.load(Ordering::Acquire);
    let applied = stats.applied_seq.load(Ordering::Acquire);
    let logged = stats.events_logged_seq.load(Ordering::Acquire);
    let delivered = stats.delivered_seq.load(Ordering::Acquire);
    let mut text = String::new();
    let mut metric = |name: &str, help: &str, kind: &str, value: u64| {
        text.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"));
    };
    metric("seqd_durable_seq", "Highest input sequence that is durable.", "counter", durable);
    metric("seqd_applied_seq", "Highest sequence applied by the processor.", "counter", applied);
    metric("seqd_events_logged_seq", "Highest sequence written to the event log.", "counter", logged);
    metric("seqd_delivered_seq", "Highest sequence delivered to clients.", "counter", delivered);
    metric(
        "seqd_journal_lag_commands",
        "Applied but not yet durable commands.",
        "gauge",
        applied.saturating_sub(durable),
    );
    metric("seqd_connections", "Open client connections.", "gauge", router.connections() as u64);
    metric(
        "seqd_pipeline_failed",
        "1 if a pipeline thread failed.",
        "gauge",
        stats.failed.load(Ordering::Acquire) as u64,
    );
    text.push_str(&observed.refusals.metrics_text());
    text.push_str(&crate::replicate::service::metrics_text(&observed.replicators));
    text
}

pub(super) async fn serve_metrics(listener: tokio::net::TcpListener, observed: Arc<Observed>) {
    while let Ok((mut socket, _)) = listener.accept().await {
        let body = metrics_text(&observed);
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        });
    }
}
