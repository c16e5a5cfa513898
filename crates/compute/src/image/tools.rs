//! The host tools the build runs: finding them (also in the sbin directories a non-root
//! `$PATH` lacks), checking up front that all are there so a build does not fail halfway for a
//! missing package, and running them with errors that say which Debian package to install.
//! Nothing here installs anything on the host.

use super::ImageError;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Fails with [`ImageError::ToolMissing`] unless every tool the build runs is installed.
pub(super) fn check_tools() -> Result<(), ImageError> {
    let mut tools = vec![
        ("apt-get", "apt"),
        ("apt-cache", "apt"),
        ("dpkg-deb", "dpkg"),
        ("mke2fs", "e2fsprogs"),
        ("qemu-img", "qemu-utils"),
    ];
    if !is_root() {
        tools.push(("debugfs", "e2fsprogs"));
    }
    for (tool, package) in tools {
        if find_in_path(tool).is_none() {
            return Err(ImageError::ToolMissing { tool: tool.to_string(), package });
        }
    }
    Ok(())
}

/// Where `tool` is: on `$PATH`, or in the sbin directories a non-root `$PATH` may lack.
pub fn find_in_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].iter().map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command for a host tool, found also in the sbin directories a non-root `$PATH` may lack.
pub(super) fn tool(name: &str) -> Command {
    Command::new(find_in_path(name).unwrap_or_else(|| PathBuf::from(name)))
}

/// Runs a command to completion; a missing program becomes [`ImageError::ToolMissing`].
pub(super) fn run(cmd: &mut Command, what: &str, package: &'static str) -> Result<Output, ImageError> {
    cmd.stdin(Stdio::null()).output().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            let prog = Path::new(cmd.get_program()).file_name().unwrap_or_default().to_string_lossy().into_owned();
            ImageError::ToolMissing { tool: prog, package }
        } else {
            ImageError::io(format!("running {what}"), e)
        }
    })
}

/// What a failed tool said (its stderr, else its stdout), trimmed to the last 1,500 characters.
pub(super) fn stderr_of(o: &Output) -> String {
    let s = String::from_utf8_lossy(&o.stderr);
    let s = s.trim();
    let s = if s.is_empty() { String::from_utf8_lossy(&o.stdout).trim().to_string() } else { s.to_string() };
    // The end says what went wrong; keep the message short.
    let chars: Vec<char> = s.chars().collect();
    if chars.len() > 1500 {
        format!("…{}", chars[chars.len() - 1500..].iter().collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn output(stdout: &str, stderr: &str) -> Output {
        Output { status: std::process::ExitStatus::from_raw(1 << 8), stdout: stdout.into(), stderr: stderr.into() }
    }

    #[test]
    fn stderr_of_falls_back_to_stdout_and_keeps_the_end() {
        assert_eq!(stderr_of(&output("out\n", " err \n")), "err");
        assert_eq!(stderr_of(&output(" out \n", "\n")), "out");
        let long = format!("{}{}", "a".repeat(10), "é".repeat(1500));
        assert_eq!(stderr_of(&output("", &long)), format!("…{}", "é".repeat(1500)));
    }
}
