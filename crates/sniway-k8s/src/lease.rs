//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's `leaderelection` does
//! it: acquire the Lease when it is absent, released (no holder) or expired (its record
//! unchanged for `leaseDurationSeconds` by this candidate's own clock), renew it periodically, and write it with the read
//! `resourceVersion` so that of two candidates only one wins (the other gets 409 Conflict).
//! A leader that cannot renew within the renew deadline steps down; on shutdown it releases
//! the Lease (clears the holder) so another replica takes over at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kube_client::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::kinds;
use crate::watch::api_resource;

/// Where the Lease is and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (see [`default_identity`]).
    pub identity: String,
    /// `leaseDurationSeconds`: how long a holder's claim lasts without renewal.
    pub lease_duration: Duration,
    /// A leader that has not renewed for this long steps down (less than `lease_duration`).
    pub renew_deadline: Duration,
    /// Between attempts (renewals, or tries to acquire).
    pub retry_period: Duration,
}

impl LeaseOptions {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> LeaseOptions {
        LeaseOptions {
            name: name.into(),
            namespace: namespace.into(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// The pod name (`POD_NAME`, else `HOSTNAME`), else `sniway-PID`.
pub fn default_identity() -> String {
    ["POD_NAME", "HOSTNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| format!("sniway-{}", std::process::id()))
}

/// A running election; [`Leadership::release`] ends it.
pub struct Leadership {
    is_leader: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if self.stop.is_some() {
            self.task.abort();
        }
    }
}

impl Leadership {
    /// Starts campaigning.
    pub fn start(client: kube_client::Client, opts: LeaseOptions) -> Leadership {
        let (tx, rx) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(campaign(client, opts, tx, stop_rx));
        Leadership { is_leader: rx, stop: Some(stop_tx), task }
    }

    /// True while this replica holds the Lease.
    pub fn is_leader(&self) -> watch::Receiver<bool> {
        self.is_leader.clone()
    }

    /// Stops campaigning and, if leading, releases the Lease.
    pub async fn release(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// RFC 3339 with microseconds, as `MicroTime` is written.
fn micro_time(t: SystemTime) -> String {
    let s = sniway_proxy::access_log::rfc3339(t, false);
    let micros = t.duration_since(UNIX_EPOCH).unwrap_or_default().subsec_micros();
    format!("{}.{micros:06}Z", s.trim_end_matches('Z'))
}

fn spec_str<'a>(lease: &'a DynamicObject, field: &str) -> Option<&'a str> {
    lease.data.get("spec").and_then(|s| s.get(field)).and_then(Value::as_str)
}

/// The Lease record as this candidate last saw it change, and when, by its own monotonic
/// clock. As client-go's leader election does, a holder's claim lapses when its record has not
/// changed for `leaseDurationSeconds` as measured here: comparing the holder's `renewTime` with
/// this node's wall clock would let clock skew between nodes make two leaders.
#[derive(Debug, Default)]
struct Observed {
    record: Option<(String, tokio::time::Instant)>,
}

impl Observed {
    /// Whether the holder's claim in `lease` has lapsed at `now`. A record seen for the first
    /// time, or changed since, starts a new lease duration.
    fn lapsed(&mut self, lease: &DynamicObject, now: tokio::time::Instant) -> bool {
        let spec = lease.data.get("spec");
        let field = |f: &str| spec.and_then(|s| s.get(f)).map(Value::to_string).unwrap_or_default();
        let record = format!(
            "{}|{}|{}",
            field("holderIdentity"),
            field("renewTime"),
            field("leaseDurationSeconds")
        );
        let Some(duration) =
            spec.and_then(|s| s.get("leaseDurationSeconds")).and_then(Value::as_u64)
        else {
            return true;
        };
        match &self.record {
            Some((seen, at)) if *seen == record => {
                now.saturating_duration_since(*at) >= Duration::from_secs(duration)
            }
            _ => {
                self.record = Some((record, now));
                false
            }
        }
    }
}

enum Attempt {
    Leading,
    Following,
    /// The API server could not be asked.
    Failed,
}

async fn try_acquire_or_renew(
    api: &Api<DynamicObject>,
    opts: &LeaseOptions,
    observed: &mut Observed,
) -> Attempt {
    let now = SystemTime::now();
    let stamp = micro_time(now);
    let duration = opts.lease_duration.as_secs().max(1);
    let current = match api.get_opt(&opts.name).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "reading the Lease failed");
            return Attempt::Failed;
        }
    };
    let Some(mut lease) = current else {
        let lease: DynamicObject = match serde_json::from_value(json!({
            "apiVersion": kinds::LEASE.api_version(),
            "kind": kinds::LEASE.kind,
            "metadata": {"name": opts.name, "namespace": opts.namespace},
            "spec": {
                "holderIdentity": opts.identity,
                "leaseDurationSeconds": duration,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            },
        })) {
            Ok(l) => l,
            Err(_) => return Attempt::Failed,
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Attempt::Leading,
            Err(kube_client::Error::Api(s)) if s.code == 409 => Attempt::Following,
            Err(e) => {
                tracing::warn!(error = %e, "creating the Lease failed");
                Attempt::Failed
            }
        };
    };
    let holder = spec_str(&lease, "holderIdentity").unwrap_or_default().to_string();
    let spec = lease.data.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut spec = if spec.is_object() { spec } else { json!({}) };
    if holder == opts.identity {
        spec["renewTime"] = json!(stamp);
        spec["leaseDurationSeconds"] = json!(duration);
    } else if holder.is_empty() || observed.lapsed(&lease, tokio::time::Instant::now()) {
        let transitions = spec.get("leaseTransitions").and_then(Value::as_i64).unwrap_or(0);
        spec["holderIdentity"] = json!(opts.identity);
        spec["leaseDurationSeconds"] = json!(duration);
        spec["acquireTime"] = json!(stamp);
        spec["renewTime"] = json!(stamp);
        spec["leaseTransitions"] = json!(transitions + 1);
    } else {
        return Attempt::Following;
    }
    lease.data["spec"] = spec;
    lease.metadata.managed_fields = None;
    match api.replace(&opts.name, &PostParams::default(), &lease).await {
        Ok(_) => Attempt::Leading,
        // Another candidate wrote first.
        Err(kube_client::Error::Api(s)) if s.code == 409 => Attempt::Following,
        Err(e) => {
            tracing::warn!(error = %e, "writing the Lease failed");
            Attempt::Failed
        }
    }
}

async fn release(api: &Api<DynamicObject>, opts: &LeaseOptions) {
    let Ok(Some(mut lease)) = api.get_opt(&opts.name).await else { return };
    if spec_str(&lease, "holderIdentity") != Some(opts.identity.as_str()) {
        return;
    }
    if let Some(spec) = lease.data.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("holderIdentity");
        spec.remove("acquireTime");
        spec.insert("renewTime".into(), json!(micro_time(SystemTime::now())));
        spec.insert("leaseDurationSeconds".into(), json!(1));
    }
    lease.metadata.managed_fields = None;
    if let Err(e) = api.replace(&opts.name, &PostParams::default(), &lease).await {
        tracing::warn!(error = %e, "releasing the Lease failed");
    }
}

async fn campaign(
    client: kube_client::Client,
    opts: LeaseOptions,
    is_leader: watch::Sender<bool>,
    mut stop: oneshot::Receiver<()>,
) {
    let api = Api::<DynamicObject>::namespaced_with(
        client,
        &opts.namespace,
        &api_resource(&kinds::LEASE),
    );
    let mut last_renew: Option<tokio::time::Instant> = None;
    let mut observed = Observed::default();
    loop {
        let leading = match try_acquire_or_renew(&api, &opts, &mut observed).await {
            Attempt::Leading => {
                last_renew = Some(tokio::time::Instant::now());
                true
            }
            Attempt::Following => false,
            // Keep leading until the renew deadline passes.
            Attempt::Failed => last_renew.is_some_and(|t| t.elapsed() < opts.renew_deadline),
        };
        if !leading {
            last_renew = None;
        }
        is_leader.send_if_modified(|l| {
            let changed = *l != leading;
            *l = leading;
            changed
        });
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(opts.retry_period) => {}
        }
    }
    let was_leader = *is_leader.borrow();
    is_leader.send_replace(false);
    if was_leader {
        release(&api, &opts).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micro_times_have_six_fraction_digits_as_kubernetes_writes_them() {
        let t = UNIX_EPOCH + Duration::new(1_796_000_000, 123_456_789);
        assert_eq!(micro_time(t), "2026-11-30T00:53:20.123456Z");
        assert_eq!(
            micro_time(UNIX_EPOCH + Duration::from_secs(1_796_000_000)),
            "2026-11-30T00:53:20.000000Z"
        );
    }

    #[test]
    fn a_claim_lapses_after_its_duration_unchanged_on_this_clock_whatever_its_renew_time() {
        let lease = |holder: &str, renew: &str| -> DynamicObject {
            serde_json::from_value(json!({"metadata": {"name": "l"},
                "spec": {"holderIdentity": holder, "renewTime": renew, "leaseDurationSeconds": 10}}))
            .unwrap()
        };
        let t0 = tokio::time::Instant::now();
        let mut seen = Observed::default();
        // A renewTime far in the past (a holder whose clock is behind) is not lapsed on sight.
        let old = lease("a", "2000-01-01T00:00:00.000000Z");
        assert!(!seen.lapsed(&old, t0));
        assert!(!seen.lapsed(&old, t0 + Duration::from_secs(9)));
        assert!(seen.lapsed(&old, t0 + Duration::from_secs(10)));
        // A renewal starts the duration again.
        let renewed = lease("a", "2000-01-01T00:00:05.000000Z");
        assert!(!seen.lapsed(&renewed, t0 + Duration::from_secs(11)));
        assert!(!seen.lapsed(&renewed, t0 + Duration::from_secs(20)));
        assert!(seen.lapsed(&renewed, t0 + Duration::from_secs(21)));
        // No duration: nothing to wait for.
        let mut fresh = Observed::default();
        let no_duration: DynamicObject = serde_json::from_value(
            json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}),
        )
        .unwrap();
        assert!(fresh.lapsed(&no_duration, t0));
    }
}
