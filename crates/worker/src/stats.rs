//! Host figures for heartbeats, read from `/proc` and `statvfs` (no sampling library).
//!
//! CPU % is computed between two readings of `/proc/stat`, so the sampler keeps the previous
//! one; the first heartbeat reports the average since boot.

use std::path::Path;

use wisehosting_proto::messages::Heartbeat;

#[derive(Debug, Default)]
pub struct HostSampler {
    previous_cpu: Option<(u64, u64)>,
}

impl HostSampler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every figure except the running containers, which come from podman.
    pub fn sample(&mut self, disk_path: &Path) -> Heartbeat {
        let mut hb = Heartbeat::default();
        if let Some((busy, total)) = read_cpu() {
            let (prev_busy, prev_total) = self.previous_cpu.unwrap_or((0, 0));
            let (d_busy, d_total) = (busy.saturating_sub(prev_busy), total.saturating_sub(prev_total));
            if d_total > 0 {
                hb.cpu_pct = (d_busy as f64 * 100.0 / d_total as f64).clamp(0.0, 100.0);
            }
            self.previous_cpu = Some((busy, total));
        }
        hb.load1 = read_file("/proc/loadavg")
            .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or_default();
        if let Some((total, available)) = read_meminfo() {
            hb.mem_total_bytes = total;
            hb.mem_used_bytes = total.saturating_sub(available);
        }
        if let Ok(fs) = nix::sys::statvfs::statvfs(disk_path) {
            let frsize = fs.fragment_size();
            let blocks = fs.blocks();
            let free = fs.blocks_free();
            hb.disk_total_bytes = blocks * frsize;
            hb.disk_used_bytes = blocks.saturating_sub(free) * frsize;
        }
        if let Some((rx, tx)) = read_net() {
            hb.net_rx_bytes = rx;
            hb.net_tx_bytes = tx;
        }
        hb.uptime_secs = read_file("/proc/uptime")
            .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
            .map_or(0, |secs| secs as u64);
        hb
    }
}

fn read_file(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// (busy, total) jiffies from the first line of `/proc/stat`.
fn read_cpu() -> Option<(u64, u64)> {
    let text = read_file("/proc/stat")?;
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal: idle and iowait are not busy; guest
    // time is already counted in user.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

fn read_meminfo() -> Option<(u64, u64)> {
    let text = read_file("/proc/meminfo")?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    Some((field("MemTotal:")?, field("MemAvailable:")?))
}

/// Received and sent bytes over every interface but loopback.
fn read_net() -> Option<(u64, u64)> {
    let text = read_file("/proc/net/dev")?;
    let mut rx = 0u64;
    let mut tx = 0u64;
    for line in text.lines().skip(2) {
        let Some((iface, data)) = line.split_once(':') else { continue };
        if iface.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = data.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        rx += fields.first().copied().unwrap_or(0);
        tx += fields.get(8).copied().unwrap_or(0);
    }
    Some((rx, tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_reads_real_figures_of_this_host() {
        let mut sampler = HostSampler::new();
        let first = sampler.sample(Path::new("/"));
        // Burn a little CPU so the second reading has a delta.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let hb = sampler.sample(Path::new("/"));
        assert!(hb.mem_total_bytes > 0 && hb.mem_used_bytes > 0 && hb.mem_used_bytes <= hb.mem_total_bytes);
        assert!(hb.disk_total_bytes > 0 && hb.disk_used_bytes <= hb.disk_total_bytes);
        assert!(hb.uptime_secs > 0);
        assert!((0.0..=100.0).contains(&hb.cpu_pct));
        assert!(first.cpu_pct >= 0.0);
        assert!(hb.load1 >= 0.0);
    }
}
