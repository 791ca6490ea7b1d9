//! Watch-backed lookups for admission: metadata-only reflectors of SparkApplications and
//! ScheduledSparkApplications, and a reflector of job pods stripped to their metadata and
//! `spec.nodeName` (the kubelet's rights and TokenRequests need the node), so the common pod
//! admission (an executor whose creator is an admitted driver), ownership checks and CONNECT
//! reviews cost no API round trip.
//!
//! Trust rules: a cache that has not completed its first list is not trusted; a miss (or an
//! unsynced cache) falls through to a direct API read, whose 404 is the only "absent" answer.
//! Hits are safe to trust because the identity record of an admitted object cannot be changed
//! afterwards (the validating webhook forbids it).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use tokio_util::sync::CancellationToken;

use crate::admission::{Lookup, LookupError, PodInfo};
use crate::core::labels::JOB_ID_LABEL;
use crate::core::objects::{Meta, OwnerRef};
use crate::k8s::{scheduled_spark_application_resource, spark_application_resource};

/// How long a direct API read may take before the lookup fails (and the review is denied).
const DIRECT_READ_TIMEOUT: Duration = Duration::from_secs(3);

type MetaStore<K> = Store<PartialObjectMeta<K>>;

/// Metadata caches backed by watches, with direct reads on a miss.
#[derive(Clone)]
pub struct KubeLookup {
    client: Client,
    pods: Store<Pod>,
    apps: MetaStore<DynamicObject>,
    scheduled: MetaStore<DynamicObject>,
    namespaces: MetaStore<Namespace>,
    synced: Arc<[AtomicBool; 4]>,
    reachable: Arc<AtomicBool>,
}

const PODS: usize = 0;
const APPS: usize = 1;
const SCHEDULED: usize = 2;
const NAMESPACES: usize = 3;

impl KubeLookup {
    /// Starts the reflectors (on the current tokio runtime) and returns the lookup.
    pub fn start(client: Client, shutdown: CancellationToken) -> Self {
        let synced = Arc::new([
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
            AtomicBool::new(false),
        ]);
        let pods = spawn_pod_reflector(
            Api::all(client.clone()),
            watcher::Config::default().labels(JOB_ID_LABEL),
            synced.clone(),
            shutdown.clone(),
        );
        let app_res = spark_application_resource();
        let apps = spawn_reflector::<DynamicObject>(
            Api::all_with(client.clone(), &app_res),
            app_res,
            watcher::Config::default(),
            synced.clone(),
            APPS,
            shutdown.clone(),
        );
        let sched_res = scheduled_spark_application_resource();
        let scheduled = spawn_reflector::<DynamicObject>(
            Api::all_with(client.clone(), &sched_res),
            sched_res,
            watcher::Config::default(),
            synced.clone(),
            SCHEDULED,
            shutdown.clone(),
        );
        let namespaces = spawn_reflector::<Namespace>(
            Api::all(client.clone()),
            (),
            watcher::Config::default(),
            synced.clone(),
            NAMESPACES,
            shutdown.clone(),
        );
        let reachable = Arc::new(AtomicBool::new(false));
        spawn_reachability(client.clone(), reachable.clone(), shutdown);
        Self {
            client,
            pods,
            apps,
            scheduled,
            namespaces,
            synced,
            reachable,
        }
    }

    /// A SparkApplication or ScheduledSparkApplication: from its cache, else from the API.
    async fn custom_resource(
        &self,
        which: usize,
        res: kube::core::ApiResource,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Meta>, LookupError> {
        let store = if which == APPS {
            &self.apps
        } else {
            &self.scheduled
        };
        let key = ObjectRef::new_with(name, res.clone()).within(namespace);
        if let Some(hit) = self.cached(which, store, key) {
            return Ok(Some(hit));
        }
        let api = Api::<DynamicObject>::namespaced_with(self.client.clone(), namespace, &res);
        direct(api, &res.kind, namespace, name).await
    }

    /// Whether every cache completed its first list.
    pub fn is_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::Relaxed))
    }

    /// Whether the API server answered the last health check.
    pub fn is_reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn cached<K>(
        &self,
        which: usize,
        store: &MetaStore<K>,
        key: ObjectRef<PartialObjectMeta<K>>,
    ) -> Option<Meta>
    where
        K: Resource + Clone + 'static,
        K::DynamicType: Clone + Eq + std::hash::Hash,
    {
        if !self.synced[which].load(Ordering::Relaxed) {
            return None;
        }
        store.get(&key).map(|o| meta_from(&o.metadata))
    }
}

/// Checks the API server's `/version` every 15 s (every 2 s while it is down).
fn spawn_reachability(client: Client, reachable: Arc<AtomicBool>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let ok = matches!(
                tokio::time::timeout(Duration::from_secs(5), client.apiserver_version()).await,
                Ok(Ok(_))
            );
            if ok != reachable.swap(ok, Ordering::Relaxed) {
                if ok {
                    tracing::info!("Kubernetes API server reachable");
                } else {
                    tracing::error!("Kubernetes API server not reachable: reviews are denied");
                }
            } else if !ok {
                tracing::warn!("Kubernetes API server still not reachable");
            }
            let wait = Duration::from_secs(if ok { 15 } else { 2 });
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    });
}

/// The job-pod cache: full pods from the watch, each stripped to its metadata (without
/// managedFields) and `spec.nodeName` before it is stored.
fn spawn_pod_reflector(
    api: Api<Pod>,
    config: watcher::Config,
    synced: Arc<[AtomicBool; 4]>,
    shutdown: CancellationToken,
) -> Store<Pod> {
    let writer = reflector::store::Writer::<Pod>::default();
    let store = writer.as_reader();
    let ready = store.clone();
    let flag = synced.clone();
    tokio::spawn(async move {
        if ready.wait_until_ready().await.is_ok() {
            flag[PODS].store(true, Ordering::Relaxed);
        }
    });
    let stream = reflector::reflector(
        writer,
        watcher(api, config).default_backoff().modify(strip_pod),
    );
    tokio::spawn(drive(stream, shutdown));
    store
}

fn strip_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    let node_name = pod.spec.as_mut().and_then(|s| s.node_name.take());
    pod.spec = node_name.map(|n| k8s_openapi::api::core::v1::PodSpec {
        node_name: Some(n),
        ..Default::default()
    });
    pod.status = None;
}

fn pod_info(pod: &Pod) -> PodInfo {
    PodInfo {
        meta: meta_from(&pod.metadata),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
    }
}

/// Runs a reflector's stream until shutdown.
async fn drive<S, T>(stream: S, shutdown: CancellationToken)
where
    S: futures::Stream<Item = Result<T, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            item = stream.next() => match item {
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!(error = %e, "lookup cache watch failed; retrying"),
                None => return,
            },
        }
    }
}

fn spawn_reflector<K>(
    api: Api<PartialObjectMeta<K>>,
    dyntype: K::DynamicType,
    config: watcher::Config,
    synced: Arc<[AtomicBool; 4]>,
    which: usize,
    shutdown: CancellationToken,
) -> MetaStore<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash + Send + Sync + Unpin,
{
    let writer = reflector::store::Writer::<PartialObjectMeta<K>>::new(dyntype);
    let store = writer.as_reader();
    let ready = store.clone();
    let flag = synced.clone();
    tokio::spawn(async move {
        if ready.wait_until_ready().await.is_ok() {
            flag[which].store(true, Ordering::Relaxed);
        }
    });
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(drive(stream, shutdown));
    store
}

/// Our metadata view of an API object's metadata.
pub fn meta_from(m: &ObjectMeta) -> Meta {
    Meta {
        name: m.name.clone(),
        generate_name: m.generate_name.clone(),
        namespace: m.namespace.clone(),
        uid: m.uid.clone(),
        labels: m.labels.clone(),
        annotations: m.annotations.clone(),
        owner_references: m
            .owner_references
            .iter()
            .flatten()
            .map(|o| OwnerRef {
                api_version: o.api_version.clone(),
                kind: o.kind.clone(),
                name: o.name.clone(),
                uid: o.uid.clone(),
                controller: o.controller,
            })
            .collect(),
    }
}

async fn direct<K>(
    api: Api<K>,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Meta>, LookupError>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match tokio::time::timeout(DIRECT_READ_TIMEOUT, api.get_metadata_opt(name)).await {
        Ok(Ok(found)) => Ok(found.map(|o| meta_from(&o.metadata))),
        Ok(Err(e)) => Err(LookupError(format!("the API server answered: {e}"))),
        Err(_) => Err(LookupError(format!(
            "reading {kind} {namespace}/{name} from the API server timed out after {}s",
            DIRECT_READ_TIMEOUT.as_secs()
        ))),
    }
}

impl Lookup for KubeLookup {
    fn namespace_labels<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::collections::BTreeMap<String, String>>, LookupError>>
    {
        Box::pin(async move {
            // Namespaces exist long before jobs are submitted into them: the synced cache is
            // the answer (reviews are denied while caches are not synced).
            if !self.synced[NAMESPACES].load(Ordering::Relaxed) {
                return Err(LookupError("the namespace cache is not synced yet".into()));
            }
            Ok(self
                .namespaces
                .get(&ObjectRef::new(namespace))
                .map(|n| n.metadata.labels.clone().unwrap_or_default()))
        })
    }

    fn available(&self) -> Result<(), String> {
        if !self.is_reachable() {
            return Err("the Kubernetes API server is not reachable".into());
        }
        if !self.is_synced() {
            return Err("the lookup caches have not finished their first sync".into());
        }
        Ok(())
    }

    fn spark_application<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Meta>, LookupError>> {
        Box::pin(self.custom_resource(APPS, spark_application_resource(), namespace, name))
    }

    fn scheduled_spark_application<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Meta>, LookupError>> {
        Box::pin(self.custom_resource(
            SCHEDULED,
            scheduled_spark_application_resource(),
            namespace,
            name,
        ))
    }

    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodInfo>, LookupError>> {
        Box::pin(async move {
            if self.synced[PODS].load(Ordering::Relaxed)
                && let Some(hit) = self.pods.get(&ObjectRef::new(name).within(namespace))
            {
                return Ok(Some(pod_info(&hit)));
            }
            // A miss: the pod is not a job pod, or the watch has not delivered it yet.
            self.pod_from_api(namespace, name).await
        })
    }

    fn pod_from_api<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodInfo>, LookupError>> {
        Box::pin(async move {
            let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
            match tokio::time::timeout(DIRECT_READ_TIMEOUT, api.get_opt(name)).await {
                Ok(Ok(found)) => Ok(found.map(|p| pod_info(&p))),
                Ok(Err(e)) => Err(LookupError(format!("the API server answered: {e}"))),
                Err(_) => Err(LookupError(format!(
                    "reading Pod {namespace}/{name} from the API server timed out after {}s",
                    DIRECT_READ_TIMEOUT.as_secs()
                ))),
            }
        })
    }
}
