//! What `/proc/self` says about this process (Linux): CPU time, memory, file descriptors,
//! threads and start time. Read by the `process_*` metrics at each scrape and by `lanehub bench`.

/// Linux reports CPU times in /proc in USER_HZ ticks, fixed at 100 by the kernel ABI.
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says about this process; `None` where it cannot tell (other systems).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads every figure.
    pub fn read() -> ProcessStats {
        let mut stats = ProcessStats::cpu_and_memory();
        stats.max_fds = read("/proc/self/limits").as_deref().and_then(parse_max_fds);
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64);
        stats
    }

    /// CPU time, memory, threads and start time only: two small files.
    pub fn cpu_and_memory() -> ProcessStats {
        let mut stats = ProcessStats::default();
        if let Some(stat) = read("/proc/self/stat") {
            let boot_time = read("/proc/stat").as_deref().and_then(parse_boot_time);
            parse_stat(&stat, boot_time, &mut stats);
        }
        if let Some(status) = read("/proc/self/status") {
            stats.resident_bytes = status_kib(&status, "VmRSS:").map(|kib| kib * 1024);
        }
        stats
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Reads `/proc/self/stat`: CPU ticks, threads, start time and virtual size.
fn parse_stat(stat: &str, boot_time: Option<u64>, stats: &mut ProcessStats) {
    // The command name (field 2) may contain spaces and parentheses: fields restart after the
    // last ')'. Index 0 below is field 3 (state).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        stats.cpu_seconds = Some((utime + stime) as f64 / USER_HZ);
    }
    stats.threads = field(20);
    stats.virtual_bytes = field(23);
    if let (Some(start_ticks), Some(boot)) = (field(22), boot_time) {
        stats.start_time_seconds = Some(boot as f64 + start_ticks as f64 / USER_HZ);
    }
}

/// `btime` in `/proc/stat`: the boot time in Unix seconds.
fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `Key:   1234 kB` line of `/proc/self/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        // A command name with spaces and a ')' must not shift the fields.
        let stat = "4242 (lane hub) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
        let mut stats = ProcessStats::default();
        parse_stat(stat, Some(1_700_000_000), &mut stats);
        assert_eq!(stats.cpu_seconds, Some(3.0));
        assert_eq!(stats.threads, Some(7));
        assert_eq!(stats.virtual_bytes, Some(104_857_600));
        assert_eq!(stats.start_time_seconds, Some(1_700_000_123.45));
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            status_kib("Name:\tlanehub\nVmRSS:\t   20480 kB\n", "VmRSS:"),
            Some(20_480)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(parse_max_fds("garbage"), None);
    }
}
