//! Peak resident memory of this process, for the benchmark's memory column (Linux; elsewhere
//! the figures are simply absent).

/// Restarts the peak count from the current resident size (Linux ≥ 4.0: writing 5 to
/// `/proc/self/clear_refs` resets `VmHWM`). Returns whether it could.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The most memory resident at once since the start or the last [`reset_peak`], in MiB.
pub fn peak_resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_kib(&status, "VmHWM:").map(|kib| kib as f64 / 1024.0)
}

/// The value of a `Name:   1234 kB` line of `/proc/<pid>/status`.
fn parse_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].trim().strip_suffix("kB")?.trim().parse().ok()
}

/// Memory this process can still take, in bytes: the least of the system's available memory
/// (`MemAvailable`) and what is left under a cgroup limit (containers, systemd slices). `None`
/// where it cannot be told (not Linux).
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let mut available = parse_kib(&meminfo, "MemAvailable:")? * 1024;
    // cgroup v2, then v1: the limit of this process's group minus what the group uses.
    let read_u64 = |p: &str| std::fs::read_to_string(p).ok().and_then(|t| t.trim().parse::<u64>().ok());
    let limits = [
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ];
    for (limit, usage) in limits {
        if let (Some(limit), Some(usage)) = (read_u64(limit), read_u64(usage)) {
            available = available.min(limit.saturating_sub(usage));
            break;
        }
    }
    Some(available)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_peak_line_of_a_status_file() {
        let status = "Name:\tx\nVmPeak:\t  900 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n";
        assert_eq!(parse_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(parse_kib(status, "VmSwap:"), None);
        assert_eq!(parse_kib("VmHWM: lots\n", "VmHWM:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_peak_follows_a_large_allocation() {
        // (Another test may reset the peak meanwhile; the peak still covers what is resident.)
        let big = vec![1u8; 64 << 20];
        std::hint::black_box(&big);
        assert!(peak_resident_mib().unwrap() >= 64.0, "64 MiB touched");
    }
}
