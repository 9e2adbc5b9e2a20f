//! The controller loop: watch -> store -> (debounced) compile -> hand the result to the caller
//! -> write status while leader.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sniway_compile::Compiled;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::kinds::{self, Kind};
use crate::lease::{Leadership, LeaseOptions};
use crate::provision::ProvisionOptions;
use crate::provisioner::{
    ProvisionInput, ProvisionReport, Provisioner, dataplane_status, managed_selector,
    missing_dataplanes, provision_loop, statuses_of,
};
use crate::snapshot::{SnapshotOptions, compile_snapshot};
use crate::status::{STATUS_KINDS, StatusWriter, WriteReport};
use crate::store::{Change, ObjectKey, Store};
use crate::watch::Watches;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// How snapshots are compiled.
    pub snapshot: SnapshotOptions,
    /// The kinds watched (all of them, cluster-wide).
    pub kinds: Vec<Kind>,
    /// A compile waits for this long without changes...
    pub quiet: Duration,
    /// ...but no longer than this after the first change.
    pub max_delay: Duration,
    /// Whether to write status at all (a data plane serving one Gateway leaves that to the
    /// controller).
    pub write_status: bool,
    /// Leader election for status writing; `None`: this replica always writes.
    pub lease: Option<LeaseOptions>,
    /// After a failed status write, the next attempt comes this much later at most.
    pub retry_failed_writes: Duration,
    /// Every status pass's report is sent here (for observing the controller, e.g. in tests).
    pub reports: Option<mpsc::UnboundedSender<WriteReport>>,
    /// The statuses of every status pass, as they are written (with the provisioned data
    /// planes' `Programmed` and addresses), for a live status view.
    pub statuses: Option<watch::Sender<Option<Arc<Compiled>>>>,
    /// Provision a data plane per Gateway served, while leader (the same Lease as status), and
    /// make statuses follow the data planes (addresses from their Services, `Programmed` from
    /// their Deployments). `None`: no provisioning (`--serve` mode, or a data plane), and the
    /// compile's own `Programmed` and addresses stand.
    pub provision: Option<ProvisionOptions>,
    /// After a failed provisioning pass, the next attempt comes after a backoff doubling up to
    /// this.
    pub retry_failed_provisioning: Duration,
    /// Every provisioning pass's report is sent here (for observing the controller).
    pub provision_reports: Option<mpsc::UnboundedSender<ProvisionReport>>,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        ControllerOptions {
            snapshot: SnapshotOptions::default(),
            kinds: kinds::WATCHED.to_vec(),
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            write_status: true,
            lease: None,
            retry_failed_writes: Duration::from_secs(5),
            reports: None,
            statuses: None,
            provision: None,
            retry_failed_provisioning: Duration::from_secs(30),
            provision_reports: None,
        }
    }
}

/// What the status writer works from: a compile and the objects' current state.
#[derive(Clone)]
struct StatusInput {
    compiled: Arc<Compiled>,
    objects: Arc<BTreeMap<ObjectKey, Value>>,
}

/// Runs until `shutdown` completes: every compile is handed to `sink`, which may take
/// `compiled.table` (the binary installs it into the data plane) and amend the statuses (e.g. a
/// listener whose socket could not be bound); statuses are then written while leader, and the
/// Lease is released at the end.
pub async fn run<F>(
    client: kube_client::Client,
    opts: ControllerOptions,
    mut sink: F,
    shutdown: impl Future<Output = ()>,
) where
    F: FnMut(&mut Compiled),
{
    let (mut watches, mut events) =
        Watches::start(client.clone(), &opts.kinds, opts.snapshot.gateway.as_ref());
    let mut store = Store::new(&opts.kinds);
    let mut view_kinds = STATUS_KINDS.to_vec();
    if opts.provision.is_some() {
        // The provisioned Deployments' availability feeds status only.
        watches.watch_labelled(&kinds::DEPLOYMENT, &managed_selector());
        store.observe(kinds::DEPLOYMENT);
        view_kinds.extend([kinds::SERVICE, kinds::DEPLOYMENT]);
    }

    let leadership = if opts.write_status || opts.provision.is_some() {
        opts.lease.clone().map(|l| Leadership::start(client.clone(), l))
    } else {
        None
    };
    let (_always, always_rx) = watch::channel(true);
    let is_leader = leadership.as_ref().map(Leadership::is_leader).unwrap_or(always_rx);
    let (status_tx, status_rx) = watch::channel::<Option<StatusInput>>(None);
    let writer = opts.write_status.then(|| {
        tokio::spawn(write_loop(
            StatusWriter::new(client.clone()),
            status_rx,
            is_leader.clone(),
            opts.reports.clone(),
            opts.retry_failed_writes,
        ))
    });
    let (provision_tx, provision_rx) = watch::channel::<Option<ProvisionInput>>(None);
    let provisioner = opts.provision.clone().map(|p| {
        tokio::spawn(provision_loop(
            Provisioner::new(client, p),
            provision_rx,
            is_leader,
            opts.provision_reports.clone(),
            Duration::from_millis(200).min(opts.retry_failed_provisioning),
            opts.retry_failed_provisioning,
        ))
    });

    let mut last: Option<Arc<Compiled>> = None;
    let mut warned: BTreeSet<String> = BTreeSet::new();
    // (first change, last change) of the pending batch, and whether it needs a compile.
    let mut pending: Option<(Instant, Instant)> = None;
    let mut needs_compile = false;
    tokio::pin!(shutdown);
    loop {
        let deadline =
            pending.map(|(first, latest)| (latest + opts.quiet).min(first + opts.max_delay));
        tokio::select! {
            _ = &mut shutdown => break,
            ev = events.recv() => {
                let Some((id, ev)) = ev else { break };
                let mut change = store.apply(&id, ev);
                if change == Change::Spec {
                    let secrets = watches.sync_secrets(&mut store);
                    let config_maps = watches.sync_config_maps(&mut store);
                    if secrets == Change::Spec || config_maps == Change::Spec {
                        change = Change::Spec;
                    }
                }
                if change != Change::None {
                    let now = Instant::now();
                    pending = Some((pending.map_or(now, |(f, _)| f), now));
                    needs_compile |= change == Change::Spec;
                }
            }
            _ = sleep_until(deadline) => {
                pending = None;
                if !store.ready() {
                    // The first list of some stream is still coming; its InitDone re-arms.
                    continue;
                }
                if needs_compile || last.is_none() {
                    needs_compile = false;
                    let mut compiled = compile_snapshot(&store, &opts.snapshot);
                    // Each warning once, when it first appears, not at every compile.
                    let now: BTreeSet<String> = compiled.warnings.iter().cloned().collect();
                    for w in now.difference(&warned) {
                        tracing::warn!("{w}");
                    }
                    warned = now;
                    sink(&mut compiled);
                    last = Some(Arc::new(compiled));
                }
                if let Some(compiled) = &last {
                    let objects = store.view(&view_kinds);
                    if provisioner.is_some() {
                        // Every pass, not only after a compile: a data plane deleted by hand
                        // is applied again.
                        let missing = Arc::new(missing_dataplanes(compiled, &objects));
                        provision_tx.send_replace(Some((compiled.clone(), missing)));
                    }
                    let compiled = match &opts.provision {
                        Some(p) => {
                            let mut amended = statuses_of(compiled);
                            dataplane_status(&mut amended, &objects, p);
                            Arc::new(amended)
                        }
                        None => compiled.clone(),
                    };
                    if let Some(view) = &opts.statuses {
                        view.send_replace(Some(compiled.clone()));
                    }
                    let objects = Arc::new(objects);
                    status_tx.send_replace(Some(StatusInput { compiled, objects }));
                }
            }
        }
    }
    drop(status_tx);
    drop(provision_tx);
    if let Some(writer) = writer {
        let _ = writer.await;
    }
    if let Some(p) = provisioner {
        let _ = p.await;
    }
    if let Some(l) = leadership {
        l.release().await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn write_loop(
    mut writer: StatusWriter,
    mut input: watch::Receiver<Option<StatusInput>>,
    mut leader: watch::Receiver<bool>,
    reports: Option<mpsc::UnboundedSender<WriteReport>>,
    retry: Duration,
) {
    let mut was_leader = false;
    loop {
        let is_leader = *leader.borrow_and_update();
        let mut failed = false;
        if is_leader {
            if !was_leader {
                // Newly leading: whatever differs is written, whoever wrote before.
                writer.forget();
            }
            let latest = input.borrow_and_update().clone();
            if let Some(inp) = latest {
                let report = writer.write(&inp.compiled, &inp.objects).await;
                failed = !report.failed.is_empty();
                if let Some(r) = &reports {
                    let _ = r.send(report);
                }
            }
        }
        was_leader = is_leader;
        tokio::select! {
            r = input.changed() => if r.is_err() { return },
            r = leader.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(retry), if failed => {}
        }
    }
}
