//! Names of the databases the replicator tests create on a shared server. Every name carries the
//! run that owns it, `seqd_test_<host>_<pid>_…`, so that `tools/services.sh` can drop exactly the
//! databases of one run (`--drop-run`) and, for leftovers, only those whose owner process on this
//! host is gone, never another run's or another machine's. The same rule is written out in
//! tools/services.sh (`run_id`); the two must agree.

use std::sync::atomic::{AtomicUsize, Ordering};

/// The longest host part of a run id, so that names stay under MySQL's 64-character limit.
pub const HOST_CHARS_MAX: usize = 16;
/// The longest `kind` a test may pass to [`database_name`]: with the longest run id and a
/// counter of up to six digits the name stays within 64.
pub const KIND_CHARS_MAX: usize = 18;

/// The run this process belongs to: `SEQD_TEST_RUN` when tools/test.sh set it (its own host and
/// pid, so the run is everything it started), otherwise this host and this process's pid.
pub fn run_id() -> String {
    match std::env::var("SEQD_TEST_RUN") {
        Ok(run) if is_run_id(&run) => run,
        _ => format!("{}_{}", host_tag(&hostname()), std::process::id()),
    }
}

/// `seqd_test_<run>_<kind>_<n>`: unique within the process by a counter, across processes by the
/// pid in the run id. `kind` is lower-case letters, digits and `_`, at most [`KIND_CHARS_MAX`].
pub fn database_name(kind: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    assert!(
        kind.len() <= KIND_CHARS_MAX && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "test database kind {kind:?}: lower-case letters, digits and _, at most {KIND_CHARS_MAX}"
    );
    format!("seqd_test_{}_{kind}_{}", run_id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The host part: the host name's lower-case letters and digits, at most [`HOST_CHARS_MAX`]
/// (`host` if none are left). tools/services.sh computes the same.
pub fn host_tag(hostname: &str) -> String {
    let tag: String = hostname
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        .take(HOST_CHARS_MAX)
        .collect();
    if tag.is_empty() {
        "host".to_string()
    } else {
        tag
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string()
}

/// `<host tag>_<pid>` as [`run_id`] builds it.
fn is_run_id(run: &str) -> bool {
    match run.split_once('_') {
        Some((host, pid)) => {
            (1..=HOST_CHARS_MAX).contains(&host.len())
                && host.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && !pid.is_empty()
                && pid.len() <= 10
                && pid.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_tag_keeps_letters_and_digits_lower_cased_and_bounded() {
        assert_eq!(host_tag("CI-Runner.example.com"), "cirunnerexamplec");
        assert_eq!(host_tag("vm"), "vm");
        assert_eq!(host_tag("--"), "host");
    }

    #[test]
    fn run_ids_from_the_environment_must_have_the_shape_services_sh_parses() {
        assert!(is_run_id("vm_1234"));
        assert!(!is_run_id("vm"));
        assert!(!is_run_id("vm_12a"));
        assert!(!is_run_id("VM_1"));
        assert!(!is_run_id("x_"));
    }

    #[test]
    fn names_start_with_the_run_and_fit_mysql() {
        let name = database_name("tidb_bench_tables");
        assert!(name.starts_with(&format!("seqd_test_{}_tidb_bench_tables_", run_id())));
        let run = format!("{}_{}", "h".repeat(HOST_CHARS_MAX), "9".repeat(10));
        assert!(is_run_id(&run));
        let longest = format!("seqd_test_{run}_{}_{}", "k".repeat(KIND_CHARS_MAX), 999_999);
        assert!(longest.len() <= 64, "{}", longest.len());
    }
}
