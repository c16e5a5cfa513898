//! Per-disk performance limits: Alibaba Cloud's published maximum IOPS and throughput of each
//! disk category, as functions of the disk's size, and the token-bucket limiter the disk
//! server applies to every request. Pure: time is passed in.
//!
//! The formulas are those of Alibaba Cloud's "Block storage performance" page
//! (<https://www.alibabacloud.com/help/en/ecs/user-guide/block-storage-performance>, the
//! cloud disk table; capacity in GiB):
//!
//! | category | max IOPS | max throughput (MB/s) |
//! |---|---|---|
//! | `cloud_essd` PL0 | min{1,800 + 12 × capacity, 10,000} | min{100 + 0.25 × capacity, 180} |
//! | `cloud_essd` PL1 | min{1,800 + 50 × capacity, 50,000} | min{120 + 0.5 × capacity, 350} |
//! | `cloud_essd` PL2 | min{1,800 + 50 × capacity, 100,000} | min{120 + 0.5 × capacity, 750} |
//! | `cloud_essd` PL3 | min{1,800 + 50 × capacity, 1,000,000} | min{120 + 0.5 × capacity, 4,000} |
//! | `cloud_ssd` | min{1,800 + 30 × capacity, 25,000} | min{120 + 0.5 × capacity, 300} |
//! | `cloud_efficiency` | min{1,800 + 8 × capacity, 5,000} | min{100 + 0.15 × capacity, 140} |
//! | `cloud` (basic) | "several hundred" | 30 to 40 |
//!
//! Checked so far against pages the search tool could reach: PL1's pair on the ESSD AutoPL
//! page (<https://www.alibabacloud.com/help/en/ecs/user-guide/essd-autopl-disks>: its
//! baseline, "min{1,800 + 50 × Capacity, 50,000}" IOPS and "min{120 + 0.5 × Capacity, 350}"
//! MB/s, is a PL1 ESSD's), and the IOPS caps of PL1, PL2 and PL3 (50,000, 100,000,
//! 1,000,000) on the ModifyDiskSpec API page. The excerpts of the block storage page did not
//! reach its table, so the other figures are to be re-checked there. The basic disk has no
//! formula, only those ranges: feitian takes the low ends, 300 IOPS and 30 MB/s. Capacity
//! ranges per category and level (PL2 from 461 GiB, PL3 from 1,261 GiB …) are the API's
//! validation, not this module's. MB here is 2^20 bytes, as Alibaba's own conversions
//! ("16 KB × IOPS / 1,024") count.

use std::time::{Duration, Instant};

/// An ESSD performance level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerformanceLevel {
    Pl0,
    Pl1,
    Pl2,
    Pl3,
}

/// A disk category, as the API spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    /// `cloud`: the basic disk.
    Cloud,
    /// `cloud_efficiency`: the ultra disk.
    CloudEfficiency,
    /// `cloud_ssd`: the standard SSD.
    CloudSsd,
    /// `cloud_essd` at a performance level.
    CloudEssd(PerformanceLevel),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QosError {
    #[error("unknown disk category {0}")]
    UnknownCategory(String),
    #[error("unknown performance level {0}")]
    UnknownPerformanceLevel(String),
}

impl Category {
    /// From the API's `Category` and `PerformanceLevel` (ESSDs default to PL1, as the API
    /// does; the level is ignored for other categories).
    pub fn parse(category: &str, level: Option<&str>) -> Result<Category, QosError> {
        Ok(match category {
            "cloud" => Category::Cloud,
            "cloud_efficiency" => Category::CloudEfficiency,
            "cloud_ssd" => Category::CloudSsd,
            "cloud_essd" => Category::CloudEssd(match level.unwrap_or("PL1") {
                "PL0" => PerformanceLevel::Pl0,
                "PL1" => PerformanceLevel::Pl1,
                "PL2" => PerformanceLevel::Pl2,
                "PL3" => PerformanceLevel::Pl3,
                other => return Err(QosError::UnknownPerformanceLevel(other.to_string())),
            }),
            other => return Err(QosError::UnknownCategory(other.to_string())),
        })
    }

    /// The maximum IOPS and throughput of a disk of this category and `capacity_gib`.
    pub fn limits(self, capacity_gib: u64) -> Limits {
        let c = capacity_gib;
        // (base IOPS, IOPS per GiB, IOPS cap, base MB/s, hundredths of MB/s per GiB, MB/s cap)
        let (iops0, iops_per, iops_max, mbps0, mbps_per_100, mbps_max) = match self {
            Category::Cloud => return Limits { iops: 300, bytes_per_sec: 30 * MB },
            Category::CloudEfficiency => (1_800, 8, 5_000, 100, 15, 140),
            Category::CloudSsd => (1_800, 30, 25_000, 120, 50, 300),
            Category::CloudEssd(PerformanceLevel::Pl0) => (1_800, 12, 10_000, 100, 25, 180),
            Category::CloudEssd(PerformanceLevel::Pl1) => (1_800, 50, 50_000, 120, 50, 350),
            Category::CloudEssd(PerformanceLevel::Pl2) => (1_800, 50, 100_000, 120, 50, 750),
            Category::CloudEssd(PerformanceLevel::Pl3) => (1_800, 50, 1_000_000, 120, 50, 4_000),
        };
        let iops = c.saturating_mul(iops_per).saturating_add(iops0).min(iops_max);
        // Throughput in hundredths of MB/s, then bytes, so that 0.15 × capacity stays exact.
        let centi = c.saturating_mul(mbps_per_100).saturating_add(mbps0 * 100).min(mbps_max * 100);
        Limits { iops, bytes_per_sec: centi.saturating_mul(MB) / 100 }
    }
}

const MB: u64 = 1 << 20;

/// A disk's ceilings: operations and bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub iops: u64,
    pub bytes_per_sec: u64,
}

/// A token bucket that may go into debt: a request always takes its tokens at once and is
/// told how long to wait before it runs, so a request larger than the bucket (a 32 MiB write
/// on a 30 MB/s disk) is delayed, never refused, and concurrent requests queue in order.
#[derive(Debug, Clone)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A bucket of `rate` per second holding at most one second's worth (the burst a guest
    /// gets after being idle), starting full.
    fn new(rate: u64, now: Instant) -> Bucket {
        let rate = rate.max(1) as f64;
        Bucket { rate, capacity: rate, tokens: rate, last: now }
    }

    fn take(&mut self, now: Instant, n: u64) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity) - n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The per-disk limiter: one bucket of operations, one of bytes.
#[derive(Debug, Clone)]
pub struct Limiter {
    ops: Bucket,
    bytes: Bucket,
}

impl Limiter {
    pub fn new(limits: Limits, now: Instant) -> Limiter {
        Limiter { ops: Bucket::new(limits.iops, now), bytes: Bucket::new(limits.bytes_per_sec, now) }
    }

    /// Charges one operation of `bytes` at `now`; returns how long it must wait to stay
    /// within both limits.
    pub fn admit(&mut self, now: Instant, bytes: u64) -> Duration {
        let ops = self.ops.take(now, 1);
        let b = if bytes == 0 { Duration::ZERO } else { self.bytes.take(now, bytes) };
        ops.max(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn essd(pl: &str) -> Category {
        Category::parse("cloud_essd", Some(pl)).unwrap()
    }

    #[test]
    fn categories_parse() {
        assert_eq!(Category::parse("cloud_essd", None), Ok(Category::CloudEssd(PerformanceLevel::Pl1)));
        assert_eq!(Category::parse("cloud_ssd", Some("PL3")), Ok(Category::CloudSsd));
        assert!(matches!(Category::parse("cloud_essd", Some("PL4")), Err(QosError::UnknownPerformanceLevel(_))));
        assert!(matches!(Category::parse("cloud_auto", None), Err(QosError::UnknownCategory(_))));
    }

    #[test]
    fn formulas_at_small_sizes() {
        // 40 GiB, the common system disk.
        assert_eq!(essd("PL0").limits(40), Limits { iops: 2_280, bytes_per_sec: 110 * MB });
        assert_eq!(essd("PL1").limits(40), Limits { iops: 3_800, bytes_per_sec: 140 * MB });
        assert_eq!(Category::CloudSsd.limits(40), Limits { iops: 3_000, bytes_per_sec: 140 * MB });
        assert_eq!(Category::CloudEfficiency.limits(40), Limits { iops: 2_120, bytes_per_sec: 106 * MB });
        assert_eq!(Category::Cloud.limits(40), Limits { iops: 300, bytes_per_sec: 30 * MB });
        // 0.15 MB/s per GiB stays exact: 100 + 0.15 × 10 = 101.5 MB/s.
        assert_eq!(Category::CloudEfficiency.limits(10).bytes_per_sec, 101 * MB + MB / 2);
    }

    #[test]
    fn formulas_reach_their_caps() {
        assert_eq!(essd("PL1").limits(964), Limits { iops: 50_000, bytes_per_sec: 350 * MB });
        assert_eq!(essd("PL2").limits(2_000), Limits { iops: 100_000, bytes_per_sec: 750 * MB });
        assert_eq!(essd("PL3").limits(32_768), Limits { iops: 1_000_000, bytes_per_sec: 4_000 * MB });
        assert_eq!(essd("PL3").limits(19_964), Limits { iops: 1_000_000, bytes_per_sec: 4_000 * MB });
        assert_eq!(essd("PL0").limits(1_000), Limits { iops: 10_000, bytes_per_sec: 180 * MB });
        assert_eq!(Category::CloudSsd.limits(800), Limits { iops: 25_000, bytes_per_sec: 300 * MB });
        assert_eq!(Category::CloudEfficiency.limits(2_000), Limits { iops: 5_000, bytes_per_sec: 140 * MB });
        assert_eq!(essd("PL3").limits(u64::MAX).iops, 1_000_000);
    }

    #[test]
    fn a_full_bucket_admits_a_second_of_burst_then_paces() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits { iops: 100, bytes_per_sec: 1 << 30 }, t0);
        for _ in 0..100 {
            assert_eq!(l.admit(t0, 4096), Duration::ZERO);
        }
        // The 101st waits a hundredth of a second, the 102nd two.
        assert_eq!(l.admit(t0, 4096), Duration::from_millis(10));
        assert_eq!(l.admit(t0, 4096), Duration::from_millis(20));
        // Half a second later 50 tokens came back, 2 of them owed.
        let t1 = t0 + Duration::from_millis(500);
        for _ in 0..48 {
            assert_eq!(l.admit(t1, 4096), Duration::ZERO);
        }
        assert!(l.admit(t1, 4096) > Duration::ZERO);
    }

    #[test]
    fn bytes_are_limited_and_big_requests_are_delayed_not_refused() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits { iops: 1_000_000, bytes_per_sec: 30 * MB }, t0);
        // 32 MiB on a 30 MiB/s disk: the full bucket covers 30, the rest is 2/30 of a second.
        let wait = l.admit(t0, 32 * MB);
        assert!((wait.as_secs_f64() - 2.0 / 30.0).abs() < 1e-6, "{wait:?}");
        // Flushes and trims (zero bytes) are charged only an operation.
        assert_eq!(l.admit(t0, 0), Duration::ZERO);
    }

    #[test]
    fn idle_time_refills_only_up_to_one_second() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Limits { iops: 10, bytes_per_sec: 1 << 30 }, t0);
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..10 {
            assert_eq!(l.admit(later, 1), Duration::ZERO);
        }
        assert_eq!(l.admit(later, 1), Duration::from_millis(100));
        // Time going backwards (a caller's clock read out of order) takes nothing.
        assert_eq!(l.admit(t0, 1), Duration::from_millis(200));
    }
}
