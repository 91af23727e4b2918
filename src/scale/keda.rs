//! A model of KEDA's Kafka scaler driving a Kubernetes HPA, the policy shoal has to beat.
//!
//! - The scaler's metric is the total lag over all partitions, stuck ones included, capped at
//!   `partitions × lagThreshold` (`allowIdleConsumers: false`), so desired ≤ partitions.
//! - The HPA syncs every 15 s with an `AverageValue` target of `lagThreshold`:
//!   `desired = ceil(metric / lagThreshold)`, unless `|metric / (lagThreshold × current) − 1|
//!   ≤ 0.1` (the tolerance), in which case it keeps `current`.
//! - Scale-down is stabilised over 300 s: the HPA takes the highest recommendation of the last
//!   300 s. Scale-up is limited to max(100 %, 4 pods) per 15 s.
//! - KEDA's own loop polls every 30 s and handles 0 ↔ 1: with `minReplicaCount = 0` it
//!   activates on lag above the activation threshold (0) and deactivates after the 300 s
//!   cooldown without lag.
//!
//! The metric is read fresh at each HPA sync (KEDA's metrics server queries the scaler on each
//! request unless metric caching is enabled).

use std::collections::VecDeque;

pub const HPA_SYNC_SECONDS: u64 = 15;
pub const POLLING_SECONDS: u64 = 30;
pub const TOLERANCE: f64 = 0.1;
pub const SCALE_DOWN_WINDOW_SECONDS: u64 = 300;
pub const COOLDOWN_SECONDS: u64 = 300;

#[derive(Debug, Clone)]
pub struct Keda {
    pub partitions: u32,
    pub lag_threshold: f64,
    pub min: u32,
    pub max: u32,
    /// The HPA's spec replicas, which the scale decisions set.
    pub current: u32,
    /// Recommendations of the last 300 s, for scale-down stabilisation.
    recommendations: VecDeque<(u64, u32)>,
    last_active: Option<u64>,
}

impl Keda {
    pub fn new(partitions: u32, lag_threshold: f64, min: u32, max: u32) -> Keda {
        Keda {
            partitions,
            lag_threshold: lag_threshold.max(f64::MIN_POSITIVE),
            min,
            max,
            current: min,
            recommendations: VecDeque::new(),
            last_active: None,
        }
    }

    /// The scaler's metric: total lag, capped at partitions × lagThreshold.
    pub fn metric(&self, total_lag: f64) -> f64 {
        total_lag.min(f64::from(self.partitions) * self.lag_threshold)
    }

    /// The HPA's raw recommendation for this metric (tolerance applied), before stabilisation
    /// and rate limits.
    pub fn recommend(&self, metric: f64) -> u32 {
        let current = self.current;
        if current == 0 {
            return 0;
        }
        let ratio = metric / (self.lag_threshold * f64::from(current));
        if (ratio - 1.0).abs() <= TOLERANCE {
            current
        } else {
            (metric / self.lag_threshold).ceil() as u32
        }
    }

    /// Runs whatever KEDA and the HPA do at second `t` with this total lag, and returns the
    /// desired count afterwards.
    pub fn step(&mut self, t: u64, total_lag: f64) -> u32 {
        let metric = self.metric(total_lag);
        if t % POLLING_SECONDS == 0 {
            let active = total_lag > 0.0;
            if active {
                self.last_active = Some(t);
            }
            if self.min == 0 {
                if self.current == 0 && active {
                    self.current = 1;
                    self.recommendations.clear();
                    return self.current;
                }
                let idle_for = t.saturating_sub(self.last_active.unwrap_or(0));
                if self.current > 0 && !active && idle_for > COOLDOWN_SECONDS {
                    self.current = 0;
                    self.recommendations.clear();
                    return self.current;
                }
            }
        }
        if t % HPA_SYNC_SECONDS != 0 || self.current == 0 {
            return self.current;
        }
        let raw = self.recommend(metric);
        self.recommendations.push_back((t, raw));
        while self
            .recommendations
            .front()
            .is_some_and(|&(at, _)| at + SCALE_DOWN_WINDOW_SECONDS <= t)
        {
            self.recommendations.pop_front();
        }
        let current = self.current;
        let stabilised = if raw < current {
            self.recommendations
                .iter()
                .map(|&(_, r)| r)
                .max()
                .unwrap_or(raw)
                .min(current)
        } else {
            raw
        };
        let up_limit = (current * 2).max(current + 4);
        let floor = self.min.max(1);
        let cap = self.max.max(floor);
        self.current = stabilised.min(up_limit).clamp(floor, cap);
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_leaves_it_one_short_of_the_target() {
        // 9 replicas, threshold 1000, lag 9800: the target is ceil(9.8) = 10, but 9800 / 9000
        // = 1.089 is within the tolerance, so the HPA stays at 9 for as long as the lag does.
        let mut k = Keda::new(12, 1000.0, 1, 12);
        k.current = 9;
        for t in (0..600).step_by(15) {
            assert_eq!(k.step(t, 9800.0), 9);
        }
        assert_eq!(k.step(600, 9901.0), 10);
    }

    #[test]
    fn scale_down_waits_for_the_stabilisation_window() {
        let mut k = Keda::new(12, 1000.0, 1, 12);
        k.current = 6;
        assert_eq!(k.step(0, 6000.0), 6);
        // The lag is gone at 15 s, but the 6 recommended at 0 s holds for 300 s.
        for t in (15..300).step_by(15) {
            assert_eq!(k.step(t, 0.0), 6, "at {t}s");
        }
        assert_eq!(k.step(300, 0.0), 1);
    }

    #[test]
    fn scale_up_is_limited_per_sync() {
        let mut k = Keda::new(24, 1000.0, 1, 24);
        assert_eq!(k.step(0, 24_000.0), 5, "1 + 4 pods");
        assert_eq!(k.step(15, 24_000.0), 10, "100 %");
        assert_eq!(k.step(30, 24_000.0), 20);
        assert_eq!(k.step(45, 24_000.0), 24);
    }

    #[test]
    fn stuck_lag_drives_it_to_the_partition_cap() {
        let mut k = Keda::new(12, 1000.0, 1, 20);
        let mut n = 0;
        for t in (0..120).step_by(15) {
            n = k.step(t, 1e9);
        }
        assert_eq!(n, 12);
    }

    #[test]
    fn activates_from_zero_on_the_polling_loop_and_cools_down() {
        let mut k = Keda::new(12, 1000.0, 0, 12);
        assert_eq!(k.step(15, 50.0), 0, "only the 30 s poll activates");
        assert_eq!(k.step(30, 50.0), 1);
        assert_eq!(k.step(60, 0.0), 1);
        assert_eq!(
            k.step(330, 0.0),
            1,
            "cooldown counts from the last lag at 30 s"
        );
        assert_eq!(k.step(360, 0.0), 0);
    }
}
