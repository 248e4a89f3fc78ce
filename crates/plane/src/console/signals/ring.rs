//! The last 15 minutes of each Service's signals, computed from successive Envoy
//! samples. Memory is bounded: at most [`MAX_SERVICES`] rings of at most
//! `WINDOW / interval + 2` points, six `f32`s each (10 s sampling: about 2 KB per
//! Service, 4 MB at the cap).
use std::collections::{HashMap, VecDeque};

use super::{Series, ServiceSignals, prom_text::Counters};

pub const WINDOW_SECS: i64 = 15 * 60;
/// Services tracked at once; more are counted in [`Rings::untracked`], not stored.
pub const MAX_SERVICES: usize = 2000;

/// Request rate, error ratio (5xx of the requests answered), p50 and p99 latency (ms),
/// 429s/s, 401+403s/s; NaN when there was nothing to measure (no requests: no ratio,
/// no latency).
pub type Values = [f32; 6];

#[derive(Clone, Copy, Debug)]
struct Point {
    t: i64,
    v: Values,
}

pub struct Rings {
    rings: HashMap<String, VecDeque<Point>>,
    capacity: usize,
    /// Services seen but not stored because [`MAX_SERVICES`] were already tracked.
    pub untracked: usize,
}

impl Rings {
    pub fn new(interval_secs: u64) -> Self {
        let capacity = (WINDOW_SECS as u64 / interval_secs.max(1) + 2).min(2000) as usize;
        Self {
            rings: HashMap::new(),
            capacity,
            untracked: 0,
        }
    }

    /// Adds one point per Service at `t` (unix seconds) and forgets what left the window.
    pub fn record(&mut self, t: i64, points: HashMap<String, Values>) {
        self.untracked = 0;
        for (service, v) in points {
            if !self.rings.contains_key(&service) && self.rings.len() >= MAX_SERVICES {
                self.untracked += 1;
                continue;
            }
            let ring = self.rings.entry(service).or_default();
            ring.push_back(Point { t, v });
            while ring.len() > self.capacity {
                ring.pop_front();
            }
        }
        for ring in self.rings.values_mut() {
            while ring.front().is_some_and(|p| t - p.t > WINDOW_SECS) {
                ring.pop_front();
            }
        }
        self.rings.retain(|_, r| !r.is_empty());
    }

    pub fn len(&self) -> usize {
        self.rings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rings.is_empty()
    }

    pub fn points(&self) -> usize {
        self.rings.values().map(VecDeque::len).sum()
    }

    pub fn signals(&self) -> Vec<ServiceSignals> {
        self.rings
            .iter()
            .map(|(service, ring)| {
                let series: [Series; 6] = std::array::from_fn(|i| {
                    ring.iter().map(|p| (p.t, f64::from(p.v[i]))).collect()
                });
                ServiceSignals {
                    service: service.clone(),
                    series,
                }
            })
            .collect()
    }
}

/// `current - previous` for a counter; a counter that went down was reset (Envoy
/// restarted), so all of `current` is new.
fn delta(previous: f64, current: f64) -> f64 {
    if current >= previous {
        current - previous
    } else {
        current
    }
}

/// One Envoy's change for one Service over `seconds`.
pub struct Change {
    pub counters: Counters,
    pub seconds: f64,
}

pub fn change(previous: Option<&Counters>, current: &Counters, seconds: f64) -> Change {
    let zero = Counters::default();
    let p = previous.unwrap_or(&zero);
    // A histogram that went down was reset as a whole.
    let reset = p.latency.last().map_or(0.0, |b| b.1) > current.latency.last().map_or(0.0, |b| b.1);
    let latency = current
        .latency
        .iter()
        .map(|&(le, count)| {
            let before = if reset {
                0.0
            } else {
                p.latency.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1)
            };
            (le, delta(before, count))
        })
        .collect();
    Change {
        counters: Counters {
            requests: delta(p.requests, current.requests),
            completed: delta(p.completed, current.completed),
            errors_5xx: delta(p.errors_5xx, current.errors_5xx),
            status_429: delta(p.status_429, current.status_429),
            status_401_403: delta(p.status_401_403, current.status_401_403),
            latency,
        },
        seconds,
    }
}

/// The six values from every sampled Envoy's change: rates add up, the ratio and the
/// quantiles are taken over the merged counts.
pub fn values(changes: &[Change]) -> Values {
    let rate = |f: fn(&Counters) -> f64| -> f32 {
        changes
            .iter()
            .filter(|c| c.seconds > 0.0)
            .map(|c| f(&c.counters) / c.seconds)
            .sum::<f64>() as f32
    };
    let answered: f64 = changes.iter().map(|c| c.counters.completed).sum();
    let errors: f64 = changes.iter().map(|c| c.counters.errors_5xx).sum();
    let mut merged: Vec<(f64, f64)> = Vec::new();
    for c in changes {
        for &(le, n) in &c.counters.latency {
            match merged.iter_mut().find(|b| b.0 == le) {
                Some(b) => b.1 += n,
                None => merged.push((le, n)),
            }
        }
    }
    merged.sort_by(|a, b| a.0.total_cmp(&b.0));
    [
        rate(|c| c.requests),
        if answered > 0.0 {
            (errors / answered).min(1.0) as f32
        } else {
            f32::NAN
        },
        quantile(&merged, 0.5) as f32,
        quantile(&merged, 0.99) as f32,
        rate(|c| c.status_429),
        rate(|c| c.status_401_403),
    ]
}

/// The `q` quantile of cumulative buckets (upper bound, count), interpolated inside
/// the bucket as Prometheus' `histogram_quantile` does; NaN without observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return f64::NAN;
    };
    if total <= 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return lower;
            }
            if count == below {
                return le;
            }
            return lower + (le - lower) * (rank - below) / (count - below);
        }
        (lower, below) = (le, count);
    }
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(requests: f64, errors: f64, latency: &[(f64, f64)]) -> Counters {
        Counters {
            requests,
            completed: requests,
            errors_5xx: errors,
            latency: latency.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn rates_ratios_and_quantiles_from_two_envoys() {
        let before = counters(
            100.0,
            0.0,
            &[(10.0, 50.0), (100.0, 100.0), (f64::INFINITY, 100.0)],
        );
        let after = counters(
            200.0,
            10.0,
            &[(10.0, 100.0), (100.0, 200.0), (f64::INFINITY, 200.0)],
        );
        let a = change(Some(&before), &after, 10.0);
        let fresh = counters(
            20.0,
            0.0,
            &[(10.0, 20.0), (100.0, 20.0), (f64::INFINITY, 20.0)],
        );
        let b = change(None, &fresh, 10.0);
        let v = values(&[a, b]);
        assert_eq!(v[0], 12.0, "100 + 20 requests in 10 s");
        assert!((v[1] - 10.0 / 120.0).abs() < 1e-6);
        // 70 of 120 under 10 ms: the median is inside the first bucket.
        assert!(v[2] > 0.0 && v[2] <= 10.0, "{v:?}");
        // p99 lands in (10, 100].
        assert!(v[3] > 10.0 && v[3] <= 100.0, "{v:?}");
    }

    #[test]
    fn a_restarted_envoy_counts_from_zero() {
        let before = counters(1000.0, 5.0, &[(f64::INFINITY, 1000.0)]);
        let after = counters(30.0, 0.0, &[(f64::INFINITY, 30.0)]);
        let c = change(Some(&before), &after, 10.0);
        assert_eq!(c.counters.requests, 30.0);
        assert_eq!(c.counters.latency, vec![(f64::INFINITY, 30.0)]);
    }

    #[test]
    fn no_requests_means_no_ratio_and_no_latency() {
        let c = counters(5.0, 0.0, &[(f64::INFINITY, 5.0)]);
        let v = values(&[change(Some(&c), &c, 10.0)]);
        assert_eq!(v[0], 0.0);
        assert!(v[1].is_nan() && v[2].is_nan() && v[3].is_nan());
    }

    #[test]
    fn quantile_above_the_last_bound_is_the_last_bound() {
        assert_eq!(quantile(&[(10.0, 0.0), (f64::INFINITY, 4.0)], 0.99), 10.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn rings_stay_bounded_in_time_points_and_services() {
        let mut rings = Rings::new(10);
        for i in 0..500 {
            rings.record(i * 10, [("a/b".to_string(), [1.0; 6])].into());
        }
        assert_eq!(rings.points(), (WINDOW_SECS / 10) as usize + 1);
        let flood = (0..MAX_SERVICES + 10)
            .map(|i| (format!("n/s{i}"), [0.0; 6]))
            .collect();
        rings.record(5000, flood);
        assert_eq!(rings.len(), MAX_SERVICES);
        assert!(rings.untracked >= 10);
        // Nothing new for a whole window: everything is forgotten.
        rings.record(5000 + WINDOW_SECS + 1, HashMap::new());
        assert!(rings.is_empty());
    }
}
