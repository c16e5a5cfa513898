//! Running the host's network tools (`ip`, `nft`) and entering namespaces.
//!
//! feitian drives iproute2 and nftables through their command-line tools rather than raw
//! netlink: the tools are what an operator reads and debugs with, every step they take can be
//! replayed by hand, and `nft -f` applies a whole ruleset in one transaction.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{0}")]
    Setup(String),
}

impl NetError {
    pub fn setup(msg: impl Into<String>) -> NetError {
        NetError::Setup(msg.into())
    }
}

fn describe(program: &str, args: &[&str]) -> String {
    std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ")
}

/// Runs a tool to completion; its stderr becomes the error.
pub fn run(program: &str, args: &[&str]) -> Result<String, NetError> {
    run_with_input(program, args, None)
}

/// Runs a tool with `input` on its stdin (for `nft -f -`).
pub fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> Result<String, NetError> {
    let mut cmd = Command::new(program);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().map_err(|e| NetError::Command {
        command: describe(program, args),
        detail: format!("{e} (is {program} installed? `feitian doctor` says what to install)"),
    })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).map_err(|e| NetError::Command {
            command: describe(program, args),
            detail: format!("cannot write its input: {e}"),
        })?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NetError::Command { command: describe(program, args), detail: e.to_string() })?;
    if !out.status.success() {
        return Err(NetError::Command {
            command: describe(program, args),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip ARGS` inside namespace `ns` (`ip -n NS ...`).
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String, NetError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Applies an nftables script inside namespace `ns`, in one transaction.
pub fn nft_in(ns: &str, script: &str) -> Result<(), NetError> {
    run_with_input("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(script)).map(|_| ())
}

/// Sets sysctls inside namespace `ns`.
pub fn sysctl_in(ns: &str, settings: &[&str]) -> Result<(), NetError> {
    let mut args = vec!["netns", "exec", ns, "sysctl", "-q", "-w"];
    args.extend_from_slice(settings);
    run("ip", &args).map(|_| ())
}

/// Where `ip netns` keeps a namespace's handle.
pub fn netns_path(ns: &str) -> std::path::PathBuf {
    std::path::Path::new("/var/run/netns").join(ns)
}

/// Runs `f` on a fresh thread that has entered namespace `ns`. Sockets made by `f` stay in
/// that namespace for their whole life, whichever thread later uses them.
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, NetError> {
    let path = netns_path(ns);
    let file =
        std::fs::File::open(&path).map_err(|e| NetError::setup(format!("cannot open {}: {e}", path.display())))?;
    let ns_name = ns.to_owned();
    std::thread::spawn(move || {
        // SAFETY: setns on a descriptor we own; it only changes this thread's namespace, and
        // the thread ends with `f`.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(NetError::setup(format!(
                "cannot enter namespace {ns_name}: {}",
                std::io::Error::last_os_error()
            )));
        }
        f().map_err(|e| NetError::setup(format!("in namespace {ns_name}: {e}")))
    })
    .join()
    .map_err(|_| NetError::setup("a namespace thread panicked"))?
}
