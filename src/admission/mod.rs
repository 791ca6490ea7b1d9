//! Admission: bytes in, decision out, no sockets. `review::Pipeline` runs the whole decision for
//! one AdmissionReview; the HTTPS server and the offline `sparkward review` command both call it,
//! so there is one code path.
//!
//! The pipeline reaches the outside world only through three small traits, implemented in `k8s/`
//! (API server, JWKS) and in local/offline forms: `Verifier` (token → submitter), `Lookup`
//! (admitted SparkApplications and job pods) and the policy store (`store`). The stamp keys
//! arrive through a `Keyring` that the runtime fills and reloads.
//!
//! `review` is the router; each admitted kind has its own module; `job` holds what they share.

mod configmap;
mod connect;
pub mod decode;
mod eviction;
mod job;
mod network_policy;
mod pod;
pub mod respond;
pub mod review;
mod scheduled;
mod secret;
mod spark_app;
pub mod store;
mod token_request;
mod tokens;

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;

use crate::config::IdentityConfig;
use crate::core::decision::{Reason, Submitter};
use crate::core::objects::Meta;
use crate::core::stamp::StampKeys;

pub use review::{Mode, Outcome, Pipeline};

/// The stamp keys in use, or why there are none (the key file is missing or invalid). Shared
/// by every pipeline of one process and swapped whole by the key-file reload loop.
#[derive(Clone)]
pub struct Keyring(Arc<ArcSwap<Result<Arc<StampKeys>, String>>>);

impl Keyring {
    pub fn new(keys: StampKeys) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(Ok(Arc::new(keys)))))
    }

    /// A keyring without keys yet: every review that needs a stamp is denied with `why`.
    pub fn empty(why: impl Into<String>) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(Err(why.into()))))
    }

    pub fn set(&self, keys: StampKeys) {
        self.0.store(Arc::new(Ok(Arc::new(keys))));
    }

    /// Drops the keys (the file disappeared or became invalid and there were none before).
    pub fn clear(&self, why: impl Into<String>) {
        self.0.store(Arc::new(Err(why.into())));
    }

    pub fn current(&self) -> Result<Arc<StampKeys>, String> {
        self.0.load().as_ref().clone()
    }
}

/// Verifies a submitter token and returns who it belongs to and what it grants.
pub trait Verifier: Send + Sync {
    /// Verifies `token` under `cfg` and checks that it belongs to `requester` when requester
    /// binding is enabled. Every failure is a denial reason that names the cause and the fix.
    fn verify<'a>(
        &'a self,
        token: &'a str,
        requester: &'a str,
        cfg: &'a IdentityConfig,
    ) -> BoxFuture<'a, Result<Submitter, Reason>>;
}

/// A lookup failed in a way that must not be read as "absent".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// Reads the metadata of the objects a decision depends on: the SparkApplication a driver pod
/// names, the pod an executor's creator is bound to, the ScheduledSparkApplication a run belongs
/// to. Only metadata is needed (the identity record lives there), so caches can hold metadata
/// only. `Ok(None)` means the object definitely does not exist.
pub trait Lookup: Send + Sync {
    /// Whether lookups can be trusted right now; `Err` says why not (API server unreachable,
    /// caches not synced). While unavailable every review is denied: deciding without the
    /// cluster's view would mean deciding on guesses.
    fn available(&self) -> Result<(), String> {
        Ok(())
    }

    fn spark_application<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Meta>, LookupError>>;

    fn scheduled_spark_application<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Meta>, LookupError>>;

    /// A pod's metadata and the node it is bound to (for the kubelet's rights and its
    /// TokenRequests).
    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodInfo>, LookupError>>;

    /// The pod as the API server has it now, past any cache: for decisions that would let
    /// someone into (or evict, or borrow the identity of) a pod whose name may have been
    /// reused while a watch lagged.
    fn pod_from_api<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodInfo>, LookupError>> {
        self.pod(namespace, name)
    }

    /// A namespace's labels (its Spark security profile is chosen by one). `Ok(None)`: no such
    /// namespace.
    fn namespace_labels<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::collections::BTreeMap<String, String>>, LookupError>>;
}

/// What lookups know of a pod: its metadata and `spec.nodeName`.

#[derive(Debug, Clone, Default)]
pub struct PodInfo {
    pub meta: Meta,
    pub node_name: Option<String>,
}

/// A verifier for configurations without an `identity:` section: every token-dependent review
/// is denied, with a message that says so.
pub struct NoIdentity;

impl Verifier for NoIdentity {
    fn verify<'a>(
        &'a self,
        _token: &'a str,
        _requester: &'a str,
        _cfg: &'a IdentityConfig,
    ) -> BoxFuture<'a, Result<Submitter, Reason>> {
        Box::pin(async { Err(no_identity()) })
    }
}

pub(crate) fn no_identity() -> Reason {
    Reason::Unavailable(
        "sparkward has no identity provider configured (no identity: section in its config), \
         so it cannot verify submitter tokens: ask the platform team to configure one"
            .into(),
    )
}
