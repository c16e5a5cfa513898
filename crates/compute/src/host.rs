//! The host's CPUs and memory, as the kernel reports them (for the `qemu` driver: what the
//! host really has; the `sim` driver models a host of configured size instead).

use feitian_agent_api::HostCapacity;

/// `MemTotal` and `MemAvailable` of a `/proc/meminfo` text, in KiB; `None` if either is
/// missing (kernels before 3.14 have no `MemAvailable`: then `MemFree` stands in).
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable").or_else(|| field("MemFree"))?;
    Some((total, available.min(total)))
}

/// This host's capacity, measured now.
pub fn measure() -> std::io::Result<HostCapacity> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    let (total, available) = parse_meminfo(&text)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "/proc/meminfo has no MemTotal"))?;
    let vcpus = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    Ok(HostCapacity { vcpus, memory_mib: total / 1024, memory_available_mib: available / 1024 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_fields() {
        let text = "MemTotal:       24683520 kB\nMemFree:        15008768 kB\nMemAvailable:   23382016 kB\n";
        assert_eq!(parse_meminfo(text), Some((24683520, 23382016)));
        let old = "MemTotal: 1000 kB\nMemFree: 400 kB\n";
        assert_eq!(parse_meminfo(old), Some((1000, 400)), "MemFree stands in for MemAvailable");
        assert_eq!(parse_meminfo("MemFree: 400 kB\n"), None);
        assert_eq!(parse_meminfo("MemTotalX: 5 kB\nMemTotal: 10 kB\nMemAvailable: 20 kB\n"), Some((10, 10)));
    }

    #[test]
    fn this_host_is_measured() {
        let c = measure().expect("/proc/meminfo");
        assert!(c.vcpus >= 1 && c.memory_mib > 0 && c.memory_available_mib <= c.memory_mib, "{c:?}");
    }
}
