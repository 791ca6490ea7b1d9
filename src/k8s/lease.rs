//! Leader election over a `coordination.k8s.io/v1` Lease, so one replica at a time runs the
//! lifecycle controller.
//!
//! The record holds `holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime` and
//! `leaseTransitions`; every write is a create (409 = someone else created it first) or a replace
//! carrying the `resourceVersion` that was read (409 = someone else wrote in between). Expiry is
//! judged the way client-go judges it, on the local monotonic clock and not on the timestamps in
//! the record, so clock skew between nodes cannot shorten a lease: a candidate takes a held lease
//! only after seeing the same record, unchanged, for a whole lease duration.
//!
//! Timings for a lease duration `D` ([`Timings`]): the holder renews every `D/3` and steps down
//! when no renewal has succeeded within `2D/3` of the last successful one (a failed renewal steps
//! down at once); candidates poll every `min(D/5, 2s)`. A holder always stops before another
//! replica may start: the candidate's `D` counts from when it saw the holder's last renewal,
//! which is later than when the holder sent it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

/// Which Lease, and for how long a holder keeps it without renewing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub duration: Duration,
}

/// The schedule derived from a lease duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How long after the last successful renewal the holder renews again.
    pub renew_every: Duration,
    /// How long after the last successful renewal the holder gives up leading.
    pub renew_deadline: Duration,
    /// How often a candidate tries to acquire.
    pub retry_every: Duration,
}

impl Timings {
    pub fn for_duration(duration: Duration) -> Self {
        Self {
            renew_every: duration / 3,
            renew_deadline: duration * 2 / 3,
            retry_every: (duration / 5).min(Duration::from_secs(2)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the Lease API call failed: {0}")]
    Api(#[from] kube::Error),
    #[error("another holder changed Lease {namespace}/{name} (409 Conflict)")]
    Conflict { namespace: String, name: String },
    #[error("the Lease API call timed out")]
    Timeout,
}

/// The last record a candidate saw, and when it first saw it (local clock).
#[derive(Debug, Clone)]
struct Observed {
    key: (String, String),
    resource_version: Option<String>,
    since: Instant,
}

/// One replica's side of the election.
pub struct Elector {
    client: Client,
    identity: String,
    observed: Option<Observed>,
    /// The Lease as last written by us while we hold it.
    held: Option<Lease>,
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

fn duration_seconds(d: Duration) -> i32 {
    // Whole seconds, rounded up, at least one: a shorter record would expire early for others.
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Elector {
    pub fn new(client: Client, identity: String) -> Self {
        Self {
            client,
            identity,
            observed: None,
            held: None,
        }
    }

    fn api(&self, namespace: &str) -> Api<Lease> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// One attempt to become the holder: `Ok(true)` when we hold the lease afterwards.
    pub async fn try_acquire(&mut self, settings: &LeaseSettings) -> Result<bool, LeaseError> {
        let api = self.api(&settings.namespace);
        let Some(current) = api.get_opt(&settings.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    namespace: Some(settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration_seconds(settings.duration)),
                    acquire_time: Some(now()),
                    renew_time: Some(now()),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.held = Some(created);
                    Ok(true)
                }
                Err(e) if is_conflict(&e) => Ok(false),
                Err(e) => Err(e.into()),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let key = (
            holder.clone().unwrap_or_default(),
            spec.renew_time
                .as_ref()
                .map(|t| t.0.to_string())
                .unwrap_or_default(),
        );
        let rv = current.metadata.resource_version.clone();
        let fresh = self
            .observed
            .as_ref()
            .is_none_or(|o| o.key != key || o.resource_version != rv);
        if fresh {
            self.observed = Some(Observed {
                key,
                resource_version: rv,
                since: Instant::now(),
            });
        }
        let record_duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(settings.duration, Duration::from_secs);
        let mine = holder.as_deref() == Some(self.identity.as_str());
        let expired = self
            .observed
            .as_ref()
            .is_some_and(|o| o.since.elapsed() >= record_duration);
        if holder.is_some() && !mine && !expired {
            return Ok(false);
        }
        let mut next = current;
        let mut spec = spec;
        if !mine {
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration_seconds(settings.duration));
        spec.renew_time = Some(now());
        next.spec = Some(spec);
        match api
            .replace(&settings.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                self.held = Some(written);
                Ok(true)
            }
            Err(e) if is_conflict(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Renews the lease we hold (guarded by the resourceVersion of our last write). Any error
    /// means we no longer know that we hold it: the caller steps down.
    pub async fn renew(&mut self, settings: &LeaseSettings) -> Result<(), LeaseError> {
        let Some(mut lease) = self.held.take() else {
            return Err(LeaseError::Conflict {
                namespace: settings.namespace.clone(),
                name: settings.name.clone(),
            });
        };
        let mut spec = lease.spec.take().unwrap_or_default();
        spec.renew_time = Some(now());
        spec.lease_duration_seconds = Some(duration_seconds(settings.duration));
        lease.spec = Some(spec);
        match self
            .api(&settings.namespace)
            .replace(&settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.held = Some(written);
                Ok(())
            }
            Err(e) if is_conflict(&e) => Err(LeaseError::Conflict {
                namespace: settings.namespace.clone(),
                name: settings.name.clone(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up (clears `holderIdentity`) so a successor need not wait for it to
    /// expire. Only when our last write is still the current record; otherwise there is nothing
    /// of ours to release.
    pub async fn release(&mut self, timeout: Duration) {
        let Some(mut lease) = self.held.take() else {
            return;
        };
        let (Some(name), Some(namespace)) = (
            lease.metadata.name.clone(),
            lease.metadata.namespace.clone(),
        ) else {
            return;
        };
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        let api = self.api(&namespace);
        match tokio::time::timeout(timeout, api.replace(&name, &PostParams::default(), &lease))
            .await
        {
            Ok(Ok(_)) => {
                tracing::info!(lease = %name, namespace = %namespace, "released the lifecycle lease")
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, lease = %name, "could not release the lifecycle lease; it expires on its own")
            }
            Err(_) => {
                tracing::warn!(lease = %name, "releasing the lifecycle lease timed out; it expires on its own")
            }
        }
    }

    /// Forgets that we hold the lease without writing (after a failed renewal).
    pub fn forget(&mut self) {
        self.held = None;
    }
}

/// The holder identity of this process: the pod name (`POD_NAME`, else the hostname) and a
/// random suffix, so two processes with the same name (a restarted container) never mistake
/// each other's lease for their own.
pub fn holder_identity() -> String {
    let base = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sparkward".to_string());
    let mut bytes = [0u8; 5];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: the process id and the clock still tell processes apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mixed = nanos ^ std::process::id().rotate_left(16);
        bytes[..4].copy_from_slice(&mixed.to_le_bytes());
    }
    let suffix = data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase();
    format!("{base}_{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_renew_well_before_expiry() {
        let t = Timings::for_duration(Duration::from_secs(15));
        assert_eq!(t.renew_every, Duration::from_secs(5));
        assert_eq!(t.renew_deadline, Duration::from_secs(10));
        assert_eq!(t.retry_every, Duration::from_secs(2));
        let t = Timings::for_duration(Duration::from_secs(2));
        assert!(t.renew_every < t.renew_deadline);
        assert!(t.renew_deadline < Duration::from_secs(2));
        assert_eq!(t.retry_every, Duration::from_millis(400));
    }

    #[test]
    fn record_durations_round_up_to_whole_seconds() {
        assert_eq!(duration_seconds(Duration::from_secs(15)), 15);
        assert_eq!(duration_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(duration_seconds(Duration::from_millis(10)), 1);
    }

    #[test]
    fn holder_identities_differ_between_processes_of_the_same_pod() {
        let a = holder_identity();
        let b = holder_identity();
        assert_ne!(a, b);
        let (base, suffix) = a.rsplit_once('_').unwrap();
        assert!(!base.is_empty());
        assert_eq!(suffix.len(), 8);
    }
}
