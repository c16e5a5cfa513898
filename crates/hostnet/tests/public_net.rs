//! The public namespace and the host's one route to the EIP pool, on the real host: two
//! feitians (two data directories) asking for the same pool. The second is refused before it
//! makes anything, so a refused start leaves nothing of it behind.
//!
//! Needs root and `ip`; without them it prints `SKIPPED` and passes. It routes a pool from the
//! benchmarking range (198.18.0.0/15, never routed on the internet) into a namespace it makes,
//! and removes everything it made, also when it fails.

use feitian_hostnet::host::HostNet;
use std::process::Command;

fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip` (iproute2) is not usable".into()),
    }
}

/// Removes what a `HostNet` made, whatever happens in the test.
struct TornDown<'a>(&'a HostNet);

impl Drop for TornDown<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.teardown() {
            eprintln!("teardown of {} failed: {e}", self.0.prefix());
        }
    }
}

#[test]
fn a_pool_routed_by_another_feitian_is_refused_before_anything_is_made() {
    if let Some(why) = skip_reason() {
        eprintln!("\n*** SKIPPED: public network test: {why} ***\n");
        return;
    }
    let dirs = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let pool = "198.18.251.0/24".parse().expect("pool");
    let first = HostNet::new(dirs.0.path(), pool);
    let second = HostNet::new(dirs.1.path(), pool);
    let _first_down = TornDown(&first);
    let _second_down = TornDown(&second);

    first.ensure_public().expect("the first feitian takes the pool");
    assert!(!first.leftovers().is_empty(), "the first feitian's public namespace and veth exist");
    first.ensure_public().expect("taking it again is idempotent");

    let e = second.ensure_public().expect_err("the pool is routed by the first feitian");
    assert!(e.to_string().contains("already routes the EIP pool"), "{e}");
    assert_eq!(second.leftovers(), Vec::<String>::new(), "a refused start left objects behind");

    first.teardown().expect("teardown");
    assert_eq!(first.leftovers(), Vec::<String>::new());
    // With the first gone, the pool is free for the second.
    second.ensure_public().expect("the pool is free now");
}
