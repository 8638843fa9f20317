//! A fixed-window rate limiter keyed by client IP (or another key, such as a user id), in
//! memory. Enough for one control plane. Its memory is bounded: past [`MAX_KEYS`] keys, the
//! expired windows are dropped and, if that is not enough (a flood of fresh keys — many
//! addresses), the older half of the windows goes too; the work is amortised, never a scan
//! per request. IPv6 clients are counted per /64, which one host usually holds whole.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Keys one limiter keeps at most.
pub const MAX_KEYS: usize = 50_000;

/// The key a client address is counted under: IPv4 as is, IPv6 by its /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        v4 => v4,
    }
}

#[derive(Debug)]
pub struct RateLimiter<K = IpAddr> {
    limit: u32,
    window: Duration,
    hits: Mutex<HashMap<K, (Instant, u32)>>,
}

impl<K: Eq + Hash> RateLimiter<K> {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, hits: Mutex::new(HashMap::new()) }
    }

    /// `Err(seconds to wait)` when `key` already has `limit` hits in its window; counts
    /// nothing (for limits on failures: check first, [`RateLimiter::check`] each failure).
    pub fn exhausted(&self, key: &K) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(hits) = self.hits.lock() else { return Ok(()) };
        match hits.get(key) {
            Some((start, count)) if now.duration_since(*start) < self.window && *count >= self.limit => {
                Err(self.window.saturating_sub(now.duration_since(*start)).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts a hit; `Err(seconds to wait)` when over the limit.
    pub fn check(&self, key: K) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(mut hits) = self.hits.lock() else { return Ok(()) };
        if hits.len() >= MAX_KEYS && !hits.contains_key(&key) {
            hits.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if hits.len() >= MAX_KEYS / 2 {
                // Still full of live windows: keep the newer half.
                let mut starts: Vec<Instant> = hits.values().map(|(start, _)| *start).collect();
                let (_, median, _) = starts.select_nth_unstable(hits.len() / 2);
                let median = *median;
                hits.retain(|_, (start, _)| *start > median);
            }
        }
        let entry = hits.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 += 1;
        if entry.1 > self.limit {
            let wait = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(wait.as_secs().max(1));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn hits_over_the_limit_wait_for_the_next_window() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(limiter.check(ip).is_ok());
        }
        assert_eq!(limiter.check(ip), Err(60));
        assert!(limiter.check([10, 0, 0, 2].into()).is_ok(), "other clients are not affected");
        assert_eq!(limiter.exhausted(&ip), Err(60), "exhausted reports without counting");
        assert_eq!(limiter.exhausted(&[10, 0, 0, 2].into()), Ok(()));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limiter.check(ip).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_fresh_keys_keeps_memory_bounded_and_recent_clients_counted() {
        let limiter = RateLimiter::new(3, Duration::from_secs(60));
        for i in 0..(3 * MAX_KEYS as u64) {
            let _ = limiter.check(i);
            if i % 1000 == 0 {
                tokio::time::advance(Duration::from_millis(1)).await;
            }
        }
        let kept = limiter.hits.lock().expect("lock").len();
        assert!(kept <= MAX_KEYS, "{kept} keys kept");
        // A client seen last is still counted: its window survived the evictions.
        let last = 3 * MAX_KEYS as u64 - 1;
        for _ in 0..2 {
            let _ = limiter.check(last);
        }
        assert!(limiter.check(last).is_err());
    }

    #[test]
    fn ipv6_clients_are_counted_per_64_and_mapped_v4_as_v4() {
        let a = client_key("2001:db8:1:2:aaaa::1".parse().expect("ip"));
        let b = client_key("2001:db8:1:2:bbbb::9".parse().expect("ip"));
        assert_eq!(a, b);
        assert_ne!(a, client_key("2001:db8:1:3::1".parse().expect("ip")));
        assert_eq!(client_key("::ffff:10.0.0.1".parse().expect("ip")), IpAddr::from([10, 0, 0, 1]));
    }
}
