//! Endpoint selection within a backend (`BackendPolicy` `loadBalancer`), over the endpoints a
//! caller finds eligible (usable, and not yet tried by this connection).
//!
//! - RoundRobin: each endpoint in turn, from the backend's cursor (kept across tables); an
//!   ineligible endpoint is skipped for the next one.
//! - LeastConnections: the eligible endpoint with the fewest open connections; ties go to the
//!   first from the cursor, so equal endpoints take turns.
//! - PowerOfTwoChoices: of two endpoints drawn at random, the eligible one with fewer open
//!   connections (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing", 2001);
//!   when neither drawn is eligible, least connections among the eligible ones.
//!
//! None allocates or locks: a pick is a few atomic loads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sniway_model::settings::LoadBalancer;

use crate::health::EndpointState;

/// The index of the endpoint to use, or `None` when none is eligible.
pub(crate) fn pick(
    lb: LoadBalancer,
    endpoints: &[Arc<EndpointState>],
    cursor: &AtomicUsize,
    eligible: impl Fn(&EndpointState) -> bool,
) -> Option<usize> {
    let n = endpoints.len();
    if n == 0 {
        return None;
    }
    match lb {
        LoadBalancer::RoundRobin => {
            let start = cursor.fetch_add(1, Ordering::Relaxed) % n;
            (0..n).map(|k| (start + k) % n).find(|&i| eligible(&endpoints[i]))
        }
        LoadBalancer::LeastConnections => {
            let start = cursor.fetch_add(1, Ordering::Relaxed) % n;
            least(endpoints, start, &eligible)
        }
        LoadBalancer::PowerOfTwoChoices => {
            if n == 1 {
                return eligible(&endpoints[0]).then_some(0);
            }
            let a = fastrand::usize(..n);
            let mut b = fastrand::usize(..n - 1);
            if b >= a {
                b += 1;
            }
            let load = |i: usize| endpoints[i].active.load(Ordering::Relaxed);
            match (eligible(&endpoints[a]), eligible(&endpoints[b])) {
                (true, true) => Some(if load(b) < load(a) { b } else { a }),
                (true, false) => Some(a),
                (false, true) => Some(b),
                (false, false) => least(endpoints, a, &eligible),
            }
        }
    }
}

/// The eligible endpoint with the fewest open connections, the first from `start` on ties.
fn least(
    endpoints: &[Arc<EndpointState>],
    start: usize,
    eligible: &impl Fn(&EndpointState) -> bool,
) -> Option<usize> {
    let n = endpoints.len();
    (0..n)
        .map(|k| (start + k) % n)
        .filter(|&i| eligible(&endpoints[i]))
        .min_by_key(|&i| endpoints[i].active.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::EndpointGuard;

    fn endpoints(n: u16) -> Vec<Arc<EndpointState>> {
        (0..n)
            .map(|i| {
                Arc::new(EndpointState::detached(
                    format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                ))
            })
            .collect()
    }

    #[test]
    fn round_robin_takes_each_endpoint_in_turn_and_skips_ineligible_ones() {
        let eps = endpoints(3);
        let cursor = AtomicUsize::new(0);
        let picks: Vec<_> = (0..6)
            .map(|_| pick(LoadBalancer::RoundRobin, &eps, &cursor, |_| true).unwrap())
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        let skip = eps[1].addr;
        let picks: Vec<_> = (0..6)
            .map(|_| pick(LoadBalancer::RoundRobin, &eps, &cursor, |e| e.addr != skip).unwrap())
            .collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert!(pick(LoadBalancer::RoundRobin, &eps, &cursor, |_| false).is_none());
    }

    #[test]
    fn least_connections_takes_the_least_loaded_endpoint() {
        let eps = endpoints(3);
        let cursor = AtomicUsize::new(0);
        let _a = EndpointGuard::new(Arc::clone(&eps[0]));
        let _b = EndpointGuard::new(Arc::clone(&eps[1]));
        let _c = EndpointGuard::new(Arc::clone(&eps[1]));
        for _ in 0..5 {
            assert_eq!(pick(LoadBalancer::LeastConnections, &eps, &cursor, |_| true), Some(2));
        }
        let third = eps[2].addr;
        assert_eq!(
            pick(LoadBalancer::LeastConnections, &eps, &cursor, |e| e.addr != third),
            Some(0)
        );
    }

    #[test]
    fn least_connections_spreads_equal_endpoints() {
        let eps = endpoints(4);
        let cursor = AtomicUsize::new(0);
        let mut seen = [0; 4];
        for _ in 0..8 {
            seen[pick(LoadBalancer::LeastConnections, &eps, &cursor, |_| true).unwrap()] += 1;
        }
        assert_eq!(seen, [2, 2, 2, 2]);
    }

    #[test]
    fn power_of_two_choices_never_takes_the_most_loaded_of_two_and_only_eligible_ones() {
        let eps = endpoints(2);
        let cursor = AtomicUsize::new(0);
        let _g: Vec<_> = (0..3).map(|_| EndpointGuard::new(Arc::clone(&eps[0]))).collect();
        for _ in 0..50 {
            assert_eq!(pick(LoadBalancer::PowerOfTwoChoices, &eps, &cursor, |_| true), Some(1));
        }
        let eps = endpoints(5);
        let only = eps[3].addr;
        for _ in 0..50 {
            assert_eq!(
                pick(LoadBalancer::PowerOfTwoChoices, &eps, &cursor, |e| e.addr == only),
                Some(3)
            );
        }
    }
}
