//! Applying a job's rendered CiliumNetworkPolicy before the admission is answered.
//!
//! The admission pipeline sees one small object-safe trait, [`PolicyStore`]. The cluster
//! implementation, [`KubePolicyStore`], uses server-side apply with sparkward as the field
//! manager, the whole exchange bounded by `policy.applyTimeout`; transient failures (409, 429,
//! 5xx, transport) are retried with a short backoff while time remains, refusals (other 4xx) are
//! not. [`CollectingPolicyStore`] keeps policies in memory for `sparkward review`; the local-mode
//! file store lives in `k8s::local`. Every failure is an [`ApplyError`] whose message tells the
//! kubectl user what failed, that nothing was admitted, and that submitting again is safe.

use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use tokio::time::Instant;

use crate::core::cilium::{self, CiliumNetworkPolicy};

/// Field manager of every server-side apply sparkward makes.
pub const FIELD_MANAGER: &str = "sparkward";

pub use crate::admission::store::{ApplyError, PolicyStore};

/// The namespace and name of a policy, or why it cannot be applied.
pub(crate) fn target(policy: &CiliumNetworkPolicy) -> Result<(String, String), ApplyError> {
    let namespace = policy.metadata.namespace.clone().unwrap_or_default();
    let name = policy.metadata.name.clone().unwrap_or_default();
    if namespace.is_empty() || name.is_empty() {
        return Err(ApplyError::Invalid {
            namespace,
            name,
            reason: "the policy has no name or namespace (a sparkward bug)".into(),
        });
    }
    Ok((namespace, name))
}

/// The `ciliumnetworkpolicies.cilium.io/v2` resource.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: "cilium.io".into(),
        version: "v2".into(),
        api_version: cilium::API_VERSION.into(),
        kind: cilium::KIND.into(),
        plural: "ciliumnetworkpolicies".into(),
    }
}

/// Retry schedule for transient API failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait before the second attempt; doubled after each failure.
    pub initial: Duration,
    /// Longest wait between attempts.
    pub max: Duration,
    /// Most attempts in total, the first included.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: 5,
        }
    }
}

/// Server-side apply against the Kubernetes API.
#[derive(Clone)]
pub struct KubePolicyStore {
    client: Client,
    timeout: Duration,
    backoff: Backoff,
}

impl KubePolicyStore {
    /// `apply_timeout` bounds each `apply` as a whole, retries included.
    pub fn new(client: Client, apply_timeout: Duration) -> Self {
        Self {
            client,
            timeout: apply_timeout,
            backoff: Backoff::default(),
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    async fn apply_policy(&self, policy: &CiliumNetworkPolicy) -> Result<(), ApplyError> {
        let (namespace, name) = target(policy)?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &namespace, &api_resource());
        // Strict field validation: a cluster whose CRD lacks a field we send answers 422
        // instead of pruning it, which could silently change what the policy allows.
        let params = PatchParams::apply(FIELD_MANAGER)
            .force()
            .validation_strict();
        let patch = Patch::Apply(policy);
        let deadline = Instant::now() + self.timeout;
        let mut delay = self.backoff.initial;
        let mut attempts = 0;
        let mut last_error = None;
        loop {
            attempts += 1;
            let call = api.patch(&name, &params, &patch);
            let err = match tokio::time::timeout_at(deadline, call).await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(err)) => err,
                Err(_) => {
                    return Err(ApplyError::Timeout {
                        namespace,
                        name,
                        after: self.timeout,
                        last_error,
                    });
                }
            };
            let (detail, retry_after) = match classify(err) {
                Failure::Retry {
                    detail,
                    retry_after,
                } => (detail, retry_after),
                Failure::Rejected {
                    status,
                    reason,
                    message,
                } => {
                    return Err(ApplyError::Rejected {
                        namespace,
                        name,
                        status,
                        reason,
                        message,
                    });
                }
                Failure::Forbidden { status, message } => {
                    return Err(ApplyError::Forbidden {
                        namespace,
                        name,
                        status,
                        message,
                    });
                }
                Failure::Fatal(error) => {
                    return Err(ApplyError::Unavailable {
                        namespace,
                        name,
                        attempts,
                        error,
                    });
                }
            };
            let wait = delay.max(retry_after);
            if attempts >= self.backoff.max_attempts || Instant::now() + wait >= deadline {
                return Err(ApplyError::Unavailable {
                    namespace,
                    name,
                    attempts,
                    error: detail,
                });
            }
            tracing::debug!(attempts, error = %detail, "retrying policy apply");
            last_error = Some(detail);
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(self.backoff.max);
        }
    }
}

impl PolicyStore for KubePolicyStore {
    fn apply<'a>(
        &'a self,
        policy: &'a CiliumNetworkPolicy,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(self.apply_policy(policy))
    }
}

enum Failure {
    /// Transient: worth another attempt.
    Retry {
        detail: String,
        retry_after: Duration,
    },
    Rejected {
        status: u16,
        reason: String,
        message: String,
    },
    Forbidden {
        status: u16,
        message: String,
    },
    /// Not an API answer and not transport: another attempt would fail the same way.
    Fatal(String),
}

fn classify(err: kube::Error) -> Failure {
    match err {
        kube::Error::Api(status) => {
            let retry_after = status.details.as_ref().map_or(0, |d| d.retry_after_seconds);
            match status.code {
                401 | 403 => Failure::Forbidden {
                    status: status.code,
                    message: status.message,
                },
                409 | 429 => Failure::Retry {
                    detail: format!("{} {}: {}", status.code, status.reason, status.message),
                    retry_after: Duration::from_secs(u64::from(retry_after)),
                },
                code @ 400..=499 => Failure::Rejected {
                    status: code,
                    reason: status.reason,
                    message: status.message,
                },
                // 5xx, and answers without a usable code.
                code => Failure::Retry {
                    detail: format!("{code} {}: {}", status.reason, status.message),
                    retry_after: Duration::from_secs(u64::from(retry_after)),
                },
            }
        }
        kube::Error::HyperError(e) => Failure::Retry {
            detail: format!("connection to the Kubernetes API failed: {e}"),
            retry_after: Duration::ZERO,
        },
        kube::Error::Service(e) => Failure::Retry {
            detail: format!("connection to the Kubernetes API failed: {e}"),
            retry_after: Duration::ZERO,
        },
        // The answer could not be read; apply is idempotent, so asking again is safe.
        kube::Error::SerdeError(e) => Failure::Retry {
            detail: format!("unreadable answer from the Kubernetes API: {e}"),
            retry_after: Duration::ZERO,
        },
        other => Failure::Fatal(other.to_string()),
    }
}

/// Keeps applied policies in memory: the offline `sparkward review` prints them. Applying the
/// same namespace/name again replaces the earlier copy, as server-side apply would.
#[derive(Debug, Default)]
pub struct CollectingPolicyStore {
    applied: Mutex<Vec<CiliumNetworkPolicy>>,
}

impl CollectingPolicyStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The policies applied so far, in first-applied order.
    pub fn policies(&self) -> Vec<CiliumNetworkPolicy> {
        self.lock().clone()
    }

    /// Removes and returns the policies applied so far.
    pub fn take(&self) -> Vec<CiliumNetworkPolicy> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<CiliumNetworkPolicy>> {
        // A panic elsewhere cannot leave a Vec half-written; keep going with its contents.
        self.applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl PolicyStore for CollectingPolicyStore {
    fn apply<'a>(
        &'a self,
        policy: &'a CiliumNetworkPolicy,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            let key = target(policy)?;
            let mut applied = self.lock();
            match applied
                .iter_mut()
                .find(|p| target(p).is_ok_and(|k| k == key))
            {
                Some(existing) => *existing = policy.clone(),
                None => applied.push(policy.clone()),
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::{Request, Response};
    use http_body_util::BodyExt;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::client::Body;
    use serde_json::{Value, json};

    use super::*;
    use crate::core::cilium::{EgressRule, EndpointSelector, Entity, Rule};

    const NAME: &str = "sparkward-sj-abcdefghijklmnopqrst";

    fn mk_policy() -> CiliumNetworkPolicy {
        CiliumNetworkPolicy {
            api_version: cilium::API_VERSION.into(),
            kind: cilium::KIND.into(),
            metadata: ObjectMeta {
                name: Some(NAME.into()),
                namespace: Some("team-a".into()),
                ..ObjectMeta::default()
            },
            spec: None,
            specs: vec![Rule {
                endpoint_selector: Some(EndpointSelector::labels([("app", "x")])),
                egress: vec![EgressRule {
                    to_entities: Some(vec![Entity::World]),
                    ..EgressRule::default()
                }],
                ..Rule::default()
            }],
        }
    }

    /// One scripted answer of the fake API server.
    enum Step {
        /// Answer with this status; success echoes the request body, errors send a Status.
        Answer(u16),
        /// Answer 200 only after this long.
        Slow(Duration),
    }

    struct Seen {
        method: String,
        uri: String,
        content_type: String,
        body: Value,
    }

    fn status_body(code: u16) -> Vec<u8> {
        let reason = match code {
            409 => "Conflict",
            422 => "Invalid",
            403 => "Forbidden",
            429 => "TooManyRequests",
            _ => "InternalError",
        };
        serde_json::to_vec(&json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("scripted {code}"), "reason": reason, "code": code
        }))
        .unwrap()
    }

    /// A store talking to a scripted API; the returned list fills with the requests seen.
    fn mk_store(timeout: Duration, script: Vec<Step>) -> (KubePolicyStore, Arc<Mutex<Vec<Seen>>>) {
        let (svc, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for step in script {
                let Some((req, send)) = handle.next_request().await else {
                    return;
                };
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes().to_vec();
                log.lock().unwrap().push(Seen {
                    method: parts.method.to_string(),
                    uri: parts.uri.to_string(),
                    content_type: parts.headers[http::header::CONTENT_TYPE]
                        .to_str()
                        .unwrap()
                        .to_string(),
                    body: serde_json::from_slice(&body).unwrap(),
                });
                let (code, reply) = match step {
                    Step::Answer(200) => (200, body),
                    Step::Answer(code) => (code, status_body(code)),
                    Step::Slow(wait) => {
                        tokio::time::sleep(wait).await;
                        (200, body)
                    }
                };
                let resp = Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(reply))
                    .unwrap();
                send.send_response(resp);
            }
        });
        let client = Client::new(svc, "default");
        let store = KubePolicyStore::new(client, timeout).with_backoff(Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(40),
            max_attempts: 4,
        });
        (store, seen)
    }

    #[tokio::test]
    async fn applies_with_server_side_apply() {
        let (store, seen) = mk_store(Duration::from_secs(5), vec![Step::Answer(200)]);
        let policy = mk_policy();
        assert_eq!(store.apply(&policy).await, Ok(()));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "PATCH");
        assert!(
            seen[0].uri.starts_with(&format!(
                "/apis/cilium.io/v2/namespaces/team-a/ciliumnetworkpolicies/{NAME}?"
            )),
            "{}",
            seen[0].uri
        );
        for param in [
            "fieldManager=sparkward",
            "force=true",
            "fieldValidation=Strict",
        ] {
            assert!(seen[0].uri.contains(param), "{} lacks {param}", seen[0].uri);
        }
        assert_eq!(seen[0].content_type, "application/apply-patch+yaml");
        assert_eq!(seen[0].body, serde_json::to_value(&policy).unwrap());
    }

    #[tokio::test]
    async fn retries_server_errors_and_conflicts() {
        for first in [500, 503, 409, 429] {
            let (store, seen) = mk_store(
                Duration::from_secs(5),
                vec![Step::Answer(first), Step::Answer(200)],
            );
            assert_eq!(store.apply(&mk_policy()).await, Ok(()), "{first}");
            assert_eq!(seen.lock().unwrap().len(), 2, "{first}");
        }
    }

    #[tokio::test]
    async fn does_not_retry_a_rejection() {
        let (store, seen) = mk_store(
            Duration::from_secs(5),
            vec![Step::Answer(422), Step::Answer(200)],
        );
        let err = store.apply(&mk_policy()).await.unwrap_err();
        assert_eq!(
            err,
            ApplyError::Rejected {
                namespace: "team-a".into(),
                name: NAME.into(),
                status: 422,
                reason: "Invalid".into(),
                message: "scripted 422".into(),
            }
        );
        assert_eq!(err.code(), "rejected");
        assert_eq!(seen.lock().unwrap().len(), 1);
        let text = err.to_string();
        for part in [
            NAME,
            "team-a",
            "rejected it (422 Invalid: scripted 422)",
            "nothing was admitted",
            "retrying the submission is safe",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
    }

    #[tokio::test]
    async fn forbidden_is_not_retried() {
        let (store, seen) = mk_store(Duration::from_secs(5), vec![Step::Answer(403)]);
        let err = store.apply(&mk_policy()).await.unwrap_err();
        assert_eq!(err.code(), "forbidden");
        assert!(err.to_string().contains("RBAC"), "{err}");
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt() {
        let script = (0..4).map(|_| Step::Answer(500)).collect();
        let (store, seen) = mk_store(Duration::from_secs(5), script);
        let err = store.apply(&mk_policy()).await.unwrap_err();
        assert!(
            matches!(&err, ApplyError::Unavailable { attempts: 4, error, .. } if error.contains("scripted 500")),
            "{err:?}"
        );
        assert_eq!(err.code(), "unavailable");
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_slow_api_times_out_within_the_apply_timeout() {
        let timeout = Duration::from_millis(200);
        let (store, _seen) = mk_store(timeout, vec![Step::Slow(Duration::from_secs(5))]);
        let started = std::time::Instant::now();
        let err = store.apply(&mk_policy()).await.unwrap_err();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "took {took:?}");
        assert_eq!(
            err,
            ApplyError::Timeout {
                namespace: "team-a".into(),
                name: NAME.into(),
                after: timeout,
                last_error: None,
            }
        );
        assert_eq!(err.code(), "timeout");
        assert!(err.to_string().contains("within 200ms"), "{err}");
    }

    #[tokio::test]
    async fn a_timeout_reports_the_last_error() {
        let timeout = Duration::from_millis(300);
        let (store, _seen) = mk_store(
            timeout,
            vec![Step::Answer(503), Step::Slow(Duration::from_secs(5))],
        );
        let err = store.apply(&mk_policy()).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("(last error: 503 InternalError: scripted 503)"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_policy_without_a_name_is_invalid() {
        let (store, seen) = mk_store(Duration::from_secs(1), vec![]);
        let mut policy = mk_policy();
        policy.metadata.name = None;
        assert_eq!(store.apply(&policy).await.unwrap_err().code(), "invalid");
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn collecting_store_keeps_one_copy_per_policy() {
        let store = CollectingPolicyStore::new();
        let dyn_store: &dyn PolicyStore = &store;
        let mut a = mk_policy();
        dyn_store.apply(&a).await.unwrap();
        a.specs[0].description = Some("second".into());
        dyn_store.apply(&a).await.unwrap();
        let mut b = mk_policy();
        b.metadata.name = Some("other".into());
        dyn_store.apply(&b).await.unwrap();
        let got = store.policies();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].specs[0].description.as_deref(), Some("second"));
        assert_eq!(store.take().len(), 2);
        assert!(store.policies().is_empty());
    }
}
