//! Flow control: token buckets that pace bytes, and the scheduler that shares a server's
//! bandwidth between client writes and re-replication.
//!
//! # Why
//!
//! When a chunkserver dies, every chunk it held is short of a replica at once. Copying them
//! all as fast as possible would saturate the surviving servers' disks and links: a repair
//! storm that stalls client writes, and can make healthy servers miss heartbeats, which
//! looks like more failures and starts more repair. The talk's lessons: flow control,
//! always, and when a replica is lost both re-replication and new writes progress.
//!
//! # Policy: clients first, repair with a floor and a ceiling
//!
//! A [`Scheduler`] is given a budget of `total` bytes per second (what this server should
//! move: a little below what its disk or link sustains, so that queues form here and not
//! below). The budget is split into two reserved shares, each a token bucket that only its
//! own kind draws from: repair's floor, `repair_min`, and the rest, `total - repair_min`,
//! for clients. Neither kind can take the other's reserved share, so when both have more
//! to send than the budget, repair still gets `repair_min` (a chunk down to one replica
//! does get its copy) and clients still get `total - repair_min` (repair never starves
//! writes).
//!
//! A share its owner does not use is lent, not wasted: tokens that overflow a full bucket
//! (which happens only when its owner is not keeping up with the refill, i.e. has nothing
//! to send) go to a shared spare pool, which either kind draws from when its own bucket is
//! short. So a kind alone gets the whole budget, with one exception: every repair
//! admission also takes from a ceiling bucket at `repair_max`, so repair never exceeds
//! `repair_max` (plus one burst) however idle the clients are. That is the storm guard, and
//! it leaves headroom for client writes that arrive while repair is running flat out.
//!
//! Rejected alternatives: strict priority for clients (repair starves under sustained
//! writes, and a chunk stays one failure from loss), and a fixed split (a kind alone is
//! capped below the budget for nothing).
//!
//! A request is admitted whole or not at all, and never larger than the burst: callers
//! move data in pieces (e.g. 64 KiB to 1 MiB). A refusal says how long to wait. If the
//! kind's own share and the spare pool together were short, that is the time until its
//! own bucket alone holds enough (and, for repair, the ceiling too); nobody else draws
//! from those, so the same request then succeeds. If only repair's ceiling was short, it
//! is the time until the ceiling holds enough, counting on the spare tokens being still
//! there; should the clients take them meanwhile, the next wait is of the first kind. So
//! a request is refused at most twice in a row. A caller may also retry sooner and get in
//! on spare tokens.
//!
//! # Time and units
//!
//! Times are `Duration`s since any fixed origin (the caller's monotonic clock start);
//! nothing here reads a clock. A time before the previous one counts as no time passing.
//! Tokens are kept in byte-nanoseconds (bytes × 10⁹) as `u128`, so refill is exact integer
//! arithmetic, with no rounding drift at any rate.

use std::time::Duration;

/// Token units per byte: a bucket refilling at `rate` bytes per second gains `rate` units
/// per nanosecond.
const UNITS_PER_BYTE: u128 = 1_000_000_000;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not now: the same request succeeds after this long (see the module docs).
    #[error("over the rate limit: retry in {0:?}")]
    Wait(Duration),
    /// Never: larger than the burst, so no bucket can ever hold enough. Split it.
    #[error("{bytes} bytes can never be admitted at once: at most {max} (split the transfer)")]
    TooLarge { bytes: u64, max: u64 },
}

/// A limiter or scheduler configuration that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("the rate must be above 0 bytes per second")]
    ZeroRate,
    #[error("the burst must be above 0 bytes")]
    ZeroBurst,
    /// Repair's floor must be above 0 (or repair can starve) and below the total (or
    /// clients can).
    #[error("repair's floor ({repair_min} B/s) must be above 0 and below the total ({total} B/s)")]
    RepairFloor { repair_min: u64, total: u64 },
    #[error(
        "repair's ceiling ({repair_max} B/s) must be between its floor ({repair_min} B/s) and the total ({total} B/s)"
    )]
    RepairCeiling { repair_min: u64, repair_max: u64, total: u64 },
}

/// A token bucket: `rate` bytes per second, holding at most `burst` bytes' worth.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Bucket {
    rate: u64,
    cap: u128,
    tokens: u128,
    /// When it was last refilled; `None` until first used.
    last: Option<Duration>,
}

impl Bucket {
    /// A full bucket: the first burst is free, as after a long idle period.
    fn full(rate: u64, burst: u64) -> Bucket {
        let cap = units(burst);
        Bucket { rate, cap, tokens: cap, last: None }
    }

    /// Adds what accrued since the last refill, and returns what overflowed the cap.
    fn refill(&mut self, now: Duration) -> u128 {
        let elapsed = match self.last {
            Some(last) if now > last => (now - last).as_nanos(),
            Some(_) => return 0,
            None => 0,
        };
        self.last = Some(now);
        let tokens = self.tokens.saturating_add(elapsed.saturating_mul(u128::from(self.rate)));
        let overflow = tokens.saturating_sub(self.cap);
        self.tokens = tokens.min(self.cap);
        overflow
    }

    /// How long until this bucket alone holds `need`, if nobody takes from it.
    fn wait_for(&self, need: u128) -> Duration {
        let deficit = need.saturating_sub(self.tokens);
        // Rates are checked non-zero at construction; max(1) keeps this total anyway.
        let nanos = deficit.div_ceil(u128::from(self.rate.max(1)));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

fn units(bytes: u64) -> u128 {
    u128::from(bytes) * UNITS_PER_BYTE
}

/// Paces one kind of traffic to a rate: a token bucket that refills at
/// `rate_bytes_per_sec` and holds at most `burst` bytes. Starts full.
///
/// Over any interval of length `t`, what it admits is at most `rate × t + burst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimiter {
    bucket: Bucket,
    burst: u64,
}

impl RateLimiter {
    pub fn new(rate_bytes_per_sec: u64, burst: u64) -> Result<RateLimiter, FlowError> {
        if rate_bytes_per_sec == 0 {
            return Err(FlowError::ZeroRate);
        }
        if burst == 0 {
            return Err(FlowError::ZeroBurst);
        }
        Ok(RateLimiter { bucket: Bucket::full(rate_bytes_per_sec, burst), burst })
    }

    pub fn rate_bytes_per_sec(&self) -> u64 {
        self.bucket.rate
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Takes `bytes` at time `now` if the bucket holds them; otherwise says how long until
    /// it will.
    pub fn try_take(&mut self, now: Duration, bytes: u64) -> Result<(), Refusal> {
        if bytes > self.burst {
            return Err(Refusal::TooLarge { bytes, max: self.burst });
        }
        self.bucket.refill(now);
        let need = units(bytes);
        if self.bucket.tokens >= need {
            self.bucket.tokens -= need;
            Ok(())
        } else {
            Err(Refusal::Wait(self.bucket.wait_for(need)))
        }
    }
}

/// Which kind of traffic a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Traffic {
    /// A client's append.
    Client,
    /// A re-replication copy.
    Repair,
}

/// A [`Scheduler`]'s budget, in bytes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// Everything this server should move.
    pub total: u64,
    /// Repair's floor: what it gets however busy the clients are. Clients' reserved share
    /// is the rest of `total`.
    pub repair_min: u64,
    /// Repair's ceiling: what it never exceeds (beyond one burst), however idle the clients.
    pub repair_max: u64,
    /// Each bucket's depth, and so the largest request admitted at once.
    pub burst: u64,
}

impl FlowConfig {
    fn validate(&self) -> Result<(), FlowError> {
        let FlowConfig { total, repair_min, repair_max, burst } = *self;
        if total == 0 {
            return Err(FlowError::ZeroRate);
        }
        if burst == 0 {
            return Err(FlowError::ZeroBurst);
        }
        if repair_min == 0 || repair_min >= total {
            return Err(FlowError::RepairFloor { repair_min, total });
        }
        if repair_max < repair_min || repair_max > total {
            return Err(FlowError::RepairCeiling { repair_min, repair_max, total });
        }
        Ok(())
    }
}

/// Shares one server's bandwidth between client writes and repair (see the module docs for
/// the policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduler {
    config: FlowConfig,
    /// Clients' reserved share: `total - repair_min`.
    client: Bucket,
    /// Repair's reserved share: `repair_min`.
    repair: Bucket,
    /// Repair's cap: `repair_max`. Its overflow is simply dropped.
    ceiling: Bucket,
    /// What the reserved shares' owners left unused, for either kind; at most one burst.
    spare: u128,
    admitted_client: u64,
    admitted_repair: u64,
}

impl Scheduler {
    pub fn new(config: FlowConfig) -> Result<Scheduler, FlowError> {
        config.validate()?;
        Ok(Scheduler {
            config,
            client: Bucket::full(config.total - config.repair_min, config.burst),
            repair: Bucket::full(config.repair_min, config.burst),
            ceiling: Bucket::full(config.repair_max, config.burst),
            spare: 0,
            admitted_client: 0,
            admitted_repair: 0,
        })
    }

    pub fn config(&self) -> FlowConfig {
        self.config
    }

    /// Bytes admitted so far of one kind (for metrics).
    pub fn admitted(&self, kind: Traffic) -> u64 {
        match kind {
            Traffic::Client => self.admitted_client,
            Traffic::Repair => self.admitted_repair,
        }
    }

    /// Admits `bytes` of `kind` at time `now`, or says how long to wait.
    pub fn admit(&mut self, now: Duration, kind: Traffic, bytes: u64) -> Result<(), Refusal> {
        if bytes > self.config.burst {
            return Err(Refusal::TooLarge { bytes, max: self.config.burst });
        }
        self.refill(now);
        let need = units(bytes);
        let (own, ceiling) = match kind {
            Traffic::Client => (&mut self.client, None),
            Traffic::Repair => (&mut self.repair, Some(&mut self.ceiling)),
        };
        let own_ok = own.tokens.saturating_add(self.spare) >= need;
        let ceiling_ok = ceiling.as_ref().is_none_or(|ceiling| ceiling.tokens >= need);
        if !own_ok || !ceiling_ok {
            let own_wait = if own_ok { Duration::ZERO } else { own.wait_for(need) };
            let ceiling_wait = match ceiling {
                Some(ceiling) if !ceiling_ok => ceiling.wait_for(need),
                _ => Duration::ZERO,
            };
            return Err(Refusal::Wait(own_wait.max(ceiling_wait)));
        }
        // Own share first; borrow from the spare pool only what is missing.
        let from_own = own.tokens.min(need);
        own.tokens -= from_own;
        self.spare -= need - from_own;
        if let Some(ceiling) = ceiling {
            ceiling.tokens -= need;
        }
        let admitted = match kind {
            Traffic::Client => &mut self.admitted_client,
            Traffic::Repair => &mut self.admitted_repair,
        };
        *admitted = admitted.saturating_add(bytes);
        Ok(())
    }

    /// Brings every bucket to `now`; the reserved shares' overflow goes to the spare pool.
    fn refill(&mut self, now: Duration) {
        let overflow = self.client.refill(now).saturating_add(self.repair.refill(now));
        self.ceiling.refill(now);
        self.spare = self.spare.saturating_add(overflow).min(units(self.config.burst));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;
    const PIECE: u64 = 64 * 1024;
    const BURST: u64 = 1 << 20;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn config() -> FlowConfig {
        FlowConfig { total: 100 * MB, repair_min: 20 * MB, repair_max: 50 * MB, burst: BURST }
    }

    #[test]
    fn rate_limiter_starts_full_then_paces() {
        let mut limiter = RateLimiter::new(1000, 100).unwrap();
        assert_eq!(limiter.try_take(ms(0), 100), Ok(()));
        assert_eq!(limiter.try_take(ms(0), 10), Err(Refusal::Wait(ms(10))));
        assert_eq!(limiter.try_take(ms(5), 10), Err(Refusal::Wait(ms(5))));
        assert_eq!(limiter.try_take(ms(10), 10), Ok(()));
        // Idle for long: never more than one burst saved up.
        assert_eq!(limiter.try_take(ms(60_000), 100), Ok(()));
        assert!(limiter.try_take(ms(60_000), 1).is_err());
        // Zero bytes always pass.
        assert_eq!(limiter.try_take(ms(60_000), 0), Ok(()));
    }

    #[test]
    fn rate_limiter_refuses_what_can_never_fit() {
        let mut limiter = RateLimiter::new(1000, 100).unwrap();
        assert_eq!(limiter.try_take(ms(0), 101), Err(Refusal::TooLarge { bytes: 101, max: 100 }));
        assert_eq!(RateLimiter::new(0, 100), Err(FlowError::ZeroRate));
        assert_eq!(RateLimiter::new(100, 0), Err(FlowError::ZeroBurst));
    }

    #[test]
    fn time_going_backwards_adds_nothing() {
        let mut limiter = RateLimiter::new(1000, 100).unwrap();
        limiter.try_take(ms(1000), 100).unwrap();
        assert!(limiter.try_take(ms(500), 1).is_err());
        assert!(limiter.try_take(ms(1000), 1).is_err(), "the earlier time did not reset the clock");
        assert_eq!(limiter.try_take(ms(1001), 1), Ok(()));
    }

    #[test]
    fn rate_limiter_over_a_long_run_is_bounded_by_rate_and_burst() {
        let rate = 3 * MB + 7; // not a round number: no rounding drift either
        let mut limiter = RateLimiter::new(rate, BURST).unwrap();
        let mut taken = 0u64;
        let tick = Duration::from_micros(250);
        for step in 0..4 * 60_000u32 {
            let now = tick * step;
            while limiter.try_take(now, PIECE).is_ok() {
                taken += PIECE;
            }
            let allowed = (u128::from(rate) * now.as_nanos() / 1_000_000_000) as u64 + BURST;
            assert!(taken <= allowed, "at {now:?}: {taken} > {allowed}");
        }
        let ideal = rate * 60 + BURST;
        assert!(taken + PIECE >= ideal, "{taken} well below {ideal}");
    }

    #[test]
    fn scheduler_config_is_checked() {
        let bad = |f: fn(&mut FlowConfig)| {
            let mut c = config();
            f(&mut c);
            Scheduler::new(c).unwrap_err()
        };
        assert_eq!(bad(|c| c.total = 0), FlowError::ZeroRate);
        assert_eq!(bad(|c| c.burst = 0), FlowError::ZeroBurst);
        assert!(matches!(bad(|c| c.repair_min = 0), FlowError::RepairFloor { .. }));
        assert!(matches!(bad(|c| c.repair_min = c.total), FlowError::RepairFloor { .. }));
        assert!(matches!(bad(|c| c.repair_max = c.repair_min - 1), FlowError::RepairCeiling { .. }));
        assert!(matches!(bad(|c| c.repair_max = c.total + 1), FlowError::RepairCeiling { .. }));
        let mut equal = config();
        equal.repair_max = equal.repair_min;
        assert!(Scheduler::new(equal).is_ok());
        let mut scheduler = Scheduler::new(config()).unwrap();
        assert_eq!(
            scheduler.admit(ms(0), Traffic::Repair, BURST + 1),
            Err(Refusal::TooLarge { bytes: BURST + 1, max: BURST })
        );
    }

    /// Bytes each kind got in a simulation.
    #[derive(Debug)]
    struct Shares {
        client: u64,
        repair: u64,
    }

    /// Runs `secs` simulated seconds in ticks of `tick`. Each tick, each kind sends
    /// `PIECE`s until refused, within what it offers: `None` is unlimited, `Some(rate)`
    /// bytes per second. `order` decides who asks first in each tick. Checks at every tick
    /// that repair never exceeds its ceiling and the total its budget.
    fn simulate(
        config: FlowConfig,
        secs: u32,
        client_offer: Option<u64>,
        repair_offer: Option<u64>,
        order: impl Fn(u32) -> [Traffic; 2],
    ) -> Shares {
        let mut scheduler = Scheduler::new(config).unwrap();
        let tick = Duration::from_micros(100);
        let mut owed = [0u128; 2]; // bytes offered but not yet sent, for limited offers
        let ticks = secs * 10_000;
        for step in 0..=ticks {
            let now = tick * step;
            for kind in order(step) {
                let (index, offer) = match kind {
                    Traffic::Client => (0, client_offer),
                    Traffic::Repair => (1, repair_offer),
                };
                if let Some(rate) = offer {
                    owed[index] += u128::from(rate) * tick.as_nanos() / 1_000_000_000;
                }
                while offer.is_none() || owed[index] >= u128::from(PIECE) {
                    if scheduler.admit(now, kind, PIECE).is_err() {
                        break;
                    }
                    owed[index] = owed[index].saturating_sub(u128::from(PIECE));
                }
            }
            let at = |rate: u64| (u128::from(rate) * now.as_nanos() / 1_000_000_000) as u64;
            let repair = scheduler.admitted(Traffic::Repair);
            let client = scheduler.admitted(Traffic::Client);
            assert!(repair <= at(config.repair_max) + config.burst, "repair over its ceiling at {now:?}");
            // Two reserved buckets start full; the spare pool starts empty.
            assert!(client + repair <= at(config.total) + 2 * config.burst, "over budget at {now:?}");
        }
        Shares { client: scheduler.admitted(Traffic::Client), repair: scheduler.admitted(Traffic::Repair) }
    }

    fn assert_near(actual: u64, expected: u64, what: &str) {
        let tolerance = expected / 100 + 2 * BURST; // 1%, plus the initial bursts
        assert!(actual.abs_diff(expected) <= tolerance, "{what}: {actual} bytes, expected about {expected}");
    }

    const CLIENT_FIRST: fn(u32) -> [Traffic; 2] = |_| [Traffic::Client, Traffic::Repair];
    const REPAIR_FIRST: fn(u32) -> [Traffic; 2] = |_| [Traffic::Repair, Traffic::Client];
    const ALTERNATE: fn(u32) -> [Traffic; 2] =
        |step| if step % 2 == 0 { [Traffic::Client, Traffic::Repair] } else { [Traffic::Repair, Traffic::Client] };

    /// Both kinds offer more than the whole budget: repair gets its floor, clients the
    /// rest, whoever asks first.
    #[test]
    fn both_saturated_each_gets_its_share() {
        let c = config();
        for order in [CLIENT_FIRST, REPAIR_FIRST, ALTERNATE] {
            let shares = simulate(c, 30, None, None, order);
            assert_near(shares.repair, c.repair_min * 30, "repair");
            assert_near(shares.client, (c.total - c.repair_min) * 30, "client");
        }
    }

    /// Clients idle: repair runs at its ceiling, never above (the storm guard).
    #[test]
    fn repair_alone_is_capped_at_its_ceiling() {
        let c = config();
        let shares = simulate(c, 30, Some(0), None, ALTERNATE);
        assert_near(shares.repair, c.repair_max * 30, "repair");
        assert_eq!(shares.client, 0);
    }

    /// No repair: clients get the whole budget, repair's unused floor included.
    #[test]
    fn clients_alone_get_the_whole_budget() {
        let c = config();
        for order in [CLIENT_FIRST, REPAIR_FIRST] {
            let shares = simulate(c, 30, None, Some(0), order);
            assert_near(shares.client, c.total * 30, "client");
        }
    }

    /// Clients offer less than their share: they get all of it, and repair uses what is
    /// left, up to its ceiling (work-conserving).
    #[test]
    fn repair_uses_what_clients_leave() {
        let c = config();
        let shares = simulate(c, 30, Some(70 * MB), None, ALTERNATE);
        assert_near(shares.client, 70 * MB * 30, "client");
        assert_near(shares.repair, 30 * MB * 30, "repair");
        // Clients nearly idle: repair stops at its ceiling, not at the budget.
        let shares = simulate(c, 30, Some(10 * MB), None, ALTERNATE);
        assert_near(shares.client, 10 * MB * 30, "client");
        assert_near(shares.repair, c.repair_max * 30, "repair");
    }

    /// Repair offers less than its floor: it gets all of it, clients the rest.
    #[test]
    fn clients_use_what_repair_leaves() {
        let c = config();
        let shares = simulate(c, 30, None, Some(5 * MB), ALTERNATE);
        assert_near(shares.repair, 5 * MB * 30, "repair");
        assert_near(shares.client, 95 * MB * 30, "client");
    }

    /// Callers that sleep exactly the wait they are told: both saturated, each still gets its
    /// share, and a request is never refused more than twice in a row (a second time only
    /// when it counted on spare tokens the other kind took meanwhile).
    #[test]
    fn honouring_the_waits_gives_the_same_shares() {
        let c = config();
        let mut scheduler = Scheduler::new(c).unwrap();
        let end = Duration::from_secs(30);
        let mut next = [Duration::ZERO; 2];
        let mut refusals = [0u32; 2];
        let kinds = [Traffic::Client, Traffic::Repair];
        let mut turn = 0;
        loop {
            // The earlier caller goes; on a tie, they take turns.
            turn = if next[0] < next[1] {
                0
            } else if next[1] < next[0] {
                1
            } else {
                1 - turn
            };
            let now = next[turn];
            if now > end {
                break;
            }
            match scheduler.admit(now, kinds[turn], PIECE) {
                Ok(()) => refusals[turn] = 0,
                Err(Refusal::Wait(wait)) => {
                    assert!(wait > Duration::ZERO);
                    refusals[turn] += 1;
                    assert!(refusals[turn] <= 2, "{:?} refused {} times in a row", kinds[turn], refusals[turn]);
                    next[turn] = now + wait;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_near(scheduler.admitted(Traffic::Repair), c.repair_min * 30, "repair");
        assert_near(scheduler.admitted(Traffic::Client), (c.total - c.repair_min) * 30, "client");
    }
}
