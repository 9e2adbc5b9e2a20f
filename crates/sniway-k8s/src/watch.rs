//! The watchers: one `kube-runtime` watcher per kind of [`kinds::WATCHED`] and one per
//! referenced Secret (listener certificates) or ConfigMap (BackendPolicy CA certificates), each
//! with the default backoff, all feeding one channel of events.

use std::collections::{BTreeMap, BTreeSet};

use futures::StreamExt;
use kube_client::api::{Api, ApiResource, DynamicObject};
use kube_client::runtime::WatchStreamExt;
use kube_client::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::kinds::{self, Kind};
use crate::store::{Change, Store, StreamId};

/// One event of one stream.
pub type StreamEvent = (StreamId, Event<DynamicObject>);

/// The `ApiResource` of a kind, from the table (no discovery).
pub fn api_resource(kind: &Kind) -> ApiResource {
    ApiResource {
        group: kind.group.to_string(),
        version: kind.version.to_string(),
        api_version: kind.api_version(),
        kind: kind.kind.to_string(),
        plural: kind.plural.to_string(),
    }
}

fn spawn_stream(
    id: StreamId,
    api: Api<DynamicObject>,
    config: watcher::Config,
    tx: mpsc::UnboundedSender<StreamEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let stream = watcher::watcher(api, config).default_backoff();
        futures::pin_mut!(stream);
        let mut listed = false;
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    listed |= matches!(ev, Event::InitDone);
                    if tx.send((id.clone(), ev)).is_err() {
                        return;
                    }
                }
                // A resource the API server does not serve (its CRD is not installed) has no
                // objects: counted as listed and empty, so the other kinds are served; the
                // watcher keeps trying and picks the kind up once it is installed.
                Err(watcher::Error::InitialListFailed(kube_client::Error::Api(s)))
                    if s.code == 404 && !listed =>
                {
                    tracing::warn!(stream = ?id, "not served by the API server (CRD not installed?); treated as empty");
                    listed = true;
                    for ev in [Event::Init, Event::InitDone] {
                        if tx.send((id.clone(), ev)).is_err() {
                            return;
                        }
                    }
                }
                // The backoff retries; the store keeps serving what it has.
                Err(e) => tracing::warn!(stream = ?id, error = %e, "watch failed; retrying"),
            }
        }
    })
}

/// The running watchers; dropping it stops them.
pub struct Watches {
    client: kube_client::Client,
    tx: mpsc::UnboundedSender<StreamEvent>,
    kinds: Vec<JoinHandle<()>>,
    secrets: BTreeMap<(String, String), JoinHandle<()>>,
    config_maps: BTreeMap<(String, String), JoinHandle<()>>,
    /// Secret and ConfigMap watchers started so far.
    started: u64,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for h in self.kinds.iter().chain(self.secrets.values()).chain(self.config_maps.values()) {
            h.abort();
        }
    }
}

impl Watches {
    /// Starts one cluster-wide watcher per kind; events arrive on the returned receiver. With
    /// `gateway` (a data plane serving one Gateway), Gateways are watched by that name in that
    /// namespace only, so neither the other Gateways nor their Secrets are read.
    pub fn start(
        client: kube_client::Client,
        kinds: &[Kind],
        gateway: Option<&(String, String)>,
    ) -> (Watches, mpsc::UnboundedReceiver<StreamEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handles = kinds
            .iter()
            .map(|k| {
                let (api, config) = match gateway {
                    Some((ns, name)) if k.kind == kinds::GATEWAY.kind => (
                        Api::<DynamicObject>::namespaced_with(client.clone(), ns, &api_resource(k)),
                        watcher::Config::default().fields(&format!("metadata.name={name}")),
                    ),
                    _ => (
                        Api::<DynamicObject>::all_with(client.clone(), &api_resource(k)),
                        watcher::Config::default(),
                    ),
                };
                spawn_stream(StreamId::Kind(k.kind), api, config, tx.clone())
            })
            .collect();
        (
            Watches {
                client,
                tx,
                kinds: handles,
                secrets: BTreeMap::new(),
                config_maps: BTreeMap::new(),
                started: 0,
            },
            rx,
        )
    }

    /// Starts one more cluster-wide watcher, of the objects of `kind` that match the label
    /// `selector` (e.g. the Deployments sniway provisioned); its events carry
    /// `StreamId::Kind(kind.kind)`.
    pub fn watch_labelled(&mut self, kind: &Kind, selector: &str) {
        let api = Api::<DynamicObject>::all_with(self.client.clone(), &api_resource(kind));
        let config = watcher::Config::default().labels(selector);
        let id = StreamId::Kind(kind.kind);
        self.kinds.push(spawn_stream(id, api, config, self.tx.clone()));
    }

    /// Starts a watcher (field selector `metadata.name=NAME` in its namespace) for every Secret
    /// listeners now reference and stops those no longer referenced.
    pub fn sync_secrets(&mut self, store: &mut Store) -> Change {
        let wanted = store.secret_refs();
        self.sync_named(kinds::SECRET, wanted, store)
    }

    /// As [`Watches::sync_secrets`], for the ConfigMaps BackendPolicies name.
    pub fn sync_config_maps(&mut self, store: &mut Store) -> Change {
        let wanted = store.config_map_refs();
        self.sync_named(kinds::CONFIG_MAP, wanted, store)
    }

    fn sync_named(
        &mut self,
        kind: Kind,
        wanted: BTreeSet<(String, String)>,
        store: &mut Store,
    ) -> Change {
        let running = if kind.kind == kinds::CONFIG_MAP.kind {
            &mut self.config_maps
        } else {
            &mut self.secrets
        };
        let mut change = Change::None;
        let gone: Vec<(String, String)> =
            running.keys().filter(|k| !wanted.contains(*k)).cloned().collect();
        for key in gone {
            if let Some(h) = running.remove(&key) {
                h.abort();
            }
            if store.remove_named(kind, &key.0, &key.1) == Change::Spec {
                change = Change::Spec;
            }
        }
        for (ns, name) in wanted {
            if running.contains_key(&(ns.clone(), name.clone())) {
                continue;
            }
            self.started += 1;
            store.add_named(kind, &ns, &name, self.started);
            let api = Api::<DynamicObject>::namespaced_with(
                self.client.clone(),
                &ns,
                &api_resource(&kind),
            );
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            let id = if kind.kind == kinds::CONFIG_MAP.kind {
                StreamId::ConfigMap(ns.clone(), name.clone(), self.started)
            } else {
                StreamId::Secret(ns.clone(), name.clone(), self.started)
            };
            running.insert((ns, name), spawn_stream(id, api, config, self.tx.clone()));
        }
        change
    }

    /// The Secrets watched now.
    pub fn secrets(&self) -> BTreeSet<(String, String)> {
        self.secrets.keys().cloned().collect()
    }
}

impl Watches {
    /// The ConfigMaps watched now.
    pub fn config_maps(&self) -> BTreeSet<(String, String)> {
        self.config_maps.keys().cloned().collect()
    }
}
