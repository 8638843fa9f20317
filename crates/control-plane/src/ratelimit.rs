//! Rate limits keyed by client address (or another key, such as a user id), in memory, over
//! `governor`'s GCRA: `limit` requests at once, then one more every `window / limit`. Over
//! it, the caller gets the seconds to wait (for `Retry-After`).
//!
//! Memory: a key is kept while its state differs from a fresh one — at most `window` after its
//! last request, usually far less. The map's size is looked at every 256 requests; whenever it
//! has doubled past [`PRUNE_FROM`] keys, those indistinguishable from fresh are dropped (never a
//! scan per request), so a flood of fresh keys (many addresses) costs memory in proportion to
//! its request rate, not its length. IPv6 clients are counted per /64, which one host usually
//! holds whole.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter as Gcra};

/// Below this many keys nothing is pruned.
pub const PRUNE_FROM: usize = 10_000;
/// The map's size is looked at once per this many requests (counting all its shards costs
/// more than a check).
const SIZE_EVERY: usize = 256;

/// Over a limit: the whole seconds to wait before the next request passes (`Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

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

pub struct RateLimiter<K = IpAddr, C: Clock = DefaultClock>
where
    K: Hash + Eq + Clone,
{
    limiter: Gcra<K, DashMapStateStore<K>, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// The size at which stale keys are dropped next.
    prune_at: AtomicUsize,
    /// Requests counted, to look at the size every [`SIZE_EVERY`].
    calls: AtomicUsize,
}

impl<K: Hash + Eq + Clone, C: Clock> std::fmt::Debug for RateLimiter<K, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("keys", &self.limiter.len()).finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `limit` requests per `window` per key.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self::with_clock(limit, window, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock + Clone> RateLimiter<K, C> {
    pub fn with_clock(limit: u32, window: Duration, clock: C) -> Self {
        let burst = NonZeroU32::new(limit).unwrap_or(NonZeroU32::MIN);
        let period =
            window.checked_div(burst.get()).filter(|p| !p.is_zero()).unwrap_or(Duration::from_nanos(1));
        let quota = Quota::with_period(period).unwrap_or(Quota::per_second(burst)).allow_burst(burst);
        let limiter = Gcra::dashmap_with_clock(quota, clock.clone());
        Self { limiter, clock, prune_at: AtomicUsize::new(PRUNE_FROM), calls: AtomicUsize::new(0) }
    }

    /// Counts a request; `Err` with the time to wait when over the limit.
    pub fn check(&self, key: K) -> Result<(), RetryAfter> {
        if self.calls.fetch_add(1, Ordering::Relaxed).is_multiple_of(SIZE_EVERY) {
            self.prune_if_grown();
        }
        self.limiter.check_key(&key).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            RetryAfter((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
        })
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }

    fn prune_if_grown(&self) {
        let at = self.prune_at.load(Ordering::Relaxed);
        if self.limiter.len() < at {
            return;
        }
        // One caller prunes; the others go on.
        if self.prune_at.compare_exchange(at, usize::MAX, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return;
        }
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let next = (self.limiter.len() * 2).max(PRUNE_FROM);
        self.prune_at.store(next, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_burst_of_the_limit_passes_and_the_next_request_waits_for_a_slot() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(3, Duration::from_secs(60), clock.clone());
        let ip: IpAddr = [10, 0, 0, 1].into();
        for _ in 0..3 {
            assert!(limiter.check(ip).is_ok());
        }
        assert_eq!(limiter.check(ip), Err(RetryAfter(20)), "one slot comes back every 60/3 s");
        assert!(limiter.check([10, 0, 0, 2].into()).is_ok(), "other clients are not affected");
        clock.advance(Duration::from_secs(19));
        assert_eq!(limiter.check(ip), Err(RetryAfter(1)));
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check(ip).is_ok());
        assert!(limiter.check(ip).is_err());
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limiter.check(ip).is_ok(), "a whole window later, a whole burst again");
        }
    }

    #[test]
    fn a_flood_of_fresh_keys_costs_memory_by_its_rate_and_recent_clients_stay_counted() {
        // 10,000 new addresses a second against 30 a minute each: a key one request made is
        // indistinguishable from fresh 2 × 2 s later, so about 40,000 are live at a time, and
        // the pruning (whenever the map doubles) keeps at most twice that — whatever the
        // flood's length (a million keys here).
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::with_clock(30, Duration::from_secs(60), clock.clone());
        let mut most = 0;
        for i in 0..1_000_000u64 {
            let _ = limiter.check(i);
            if i % 10 == 0 {
                clock.advance(Duration::from_millis(1));
            }
            most = most.max(limiter.len());
        }
        assert!(most <= 2 * 40_000 + PRUNE_FROM + SIZE_EVERY, "{most} keys held at most");
        // A client that used its burst just now is still counted.
        let last = u64::MAX;
        for _ in 0..30 {
            assert!(limiter.check(last).is_ok());
        }
        for i in 0..300_000u64 {
            let _ = limiter.check(2_000_000 + i);
        }
        assert!(limiter.check(last).is_err(), "its state survived the pruning");
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
