//! Creating a job's RPC Secret before the admission is answered (the [`SecretStore`]s).
//!
//! In a cluster ([`KubeSecretStore`]): one create (POST) with sparkward as the field manager,
//! bounded by `policy.applyTimeout`, transient failures retried; `409 AlreadyExists` means a
//! retried call of the same request already created it, which is success (the Secret is
//! immutable and is never overwritten). sparkward never reads Secrets: its RBAC grants
//! create, patch (adoption) and delete only. Local mode writes the Secret without its data;
//! `sparkward review` collects them.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::time::Instant;

use crate::admission::store::{ApplyError, SecretStore};
use crate::core::spark::RpcSecret;
use crate::k8s::policy::FIELD_MANAGER;

/// Creates Secrets through the API.
#[derive(Clone)]
pub struct KubeSecretStore {
    client: Client,
    timeout: Duration,
}

impl KubeSecretStore {
    pub fn new(client: Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    async fn create_once(&self, secret: &RpcSecret) -> Result<(), ApplyError> {
        let object: Secret =
            serde_json::from_value(secret.manifest(true)).map_err(|e| ApplyError::Invalid {
                namespace: secret.namespace.clone(),
                name: secret.name.clone(),
                reason: format!("the Secret could not be built (a sparkward bug): {e}"),
            })?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &secret.namespace);
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PostParams::default()
        };
        let started = Instant::now();
        let mut attempts = 0u32;
        let mut backoff = Duration::from_millis(50);
        let mut last = String::new();
        while started.elapsed() < self.timeout {
            attempts += 1;
            let left = self.timeout.saturating_sub(started.elapsed());
            let result = tokio::time::timeout(left, api.create(&params, &object)).await;
            let err = match result {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(kube::Error::Api(s))) if s.code == 409 => return Ok(()),
                Ok(Err(kube::Error::Api(s))) if s.code == 401 || s.code == 403 => {
                    return Err(ApplyError::Forbidden {
                        namespace: secret.namespace.clone(),
                        name: secret.name.clone(),
                        status: s.code,
                        message: s.message,
                    });
                }
                Ok(Err(kube::Error::Api(s))) if (400..500).contains(&s.code) && s.code != 429 => {
                    return Err(ApplyError::Rejected {
                        namespace: secret.namespace.clone(),
                        name: secret.name.clone(),
                        status: s.code,
                        reason: s.reason,
                        message: s.message,
                    });
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer in time".to_string(),
            };
            last = err;
            tokio::time::sleep(backoff.min(self.timeout.saturating_sub(started.elapsed()))).await;
            backoff = (backoff * 2).min(Duration::from_millis(800));
        }
        Err(if attempts > 1 {
            ApplyError::Unavailable {
                namespace: secret.namespace.clone(),
                name: secret.name.clone(),
                attempts,
                error: last,
            }
        } else {
            ApplyError::Timeout {
                namespace: secret.namespace.clone(),
                name: secret.name.clone(),
                after: self.timeout,
                last_error: (!last.is_empty()).then_some(last),
            }
        })
    }
}

impl SecretStore for KubeSecretStore {
    fn create<'a>(&'a self, secret: &'a RpcSecret) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(self.create_once(secret))
    }
}

/// Local mode: the Secret written as YAML, without its data, next to the job's policy
/// (`<dir>/<namespace>/<name>.yaml`).
#[derive(Debug)]
pub struct LocalSecretStore {
    dir: PathBuf,
}

impl LocalSecretStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
}

impl SecretStore for LocalSecretStore {
    fn create<'a>(&'a self, secret: &'a RpcSecret) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            let fail = |error: String| ApplyError::Write {
                namespace: secret.namespace.clone(),
                name: secret.name.clone(),
                path: self.dir.display().to_string(),
                error,
            };
            let ok =
                |p: &str| !p.is_empty() && p != "." && p != ".." && !p.contains(['/', '\\', '\0']);
            if !ok(&secret.namespace) || !ok(&secret.name) {
                return Err(fail("not usable as a file name".into()));
            }
            let dir = self.dir.join(&secret.namespace);
            let yaml = serde_saphyr::to_string(&secret.manifest(false))
                .map_err(|e| fail(e.to_string()))?;
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| fail(e.to_string()))?;
            tokio::fs::write(dir.join(format!("{}.yaml", secret.name)), yaml)
                .await
                .map_err(|e| fail(e.to_string()))?;
            Ok(())
        })
    }
}

/// Keeps created Secrets in memory (without their data being shown anywhere) for
/// `sparkward review`.
#[derive(Debug, Default)]
pub struct CollectingSecretStore {
    created: Mutex<Vec<RpcSecret>>,
}

impl CollectingSecretStore {
    pub fn secrets(&self) -> Vec<RpcSecret> {
        self.created
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl SecretStore for CollectingSecretStore {
    fn create<'a>(&'a self, secret: &'a RpcSecret) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            let mut created = self
                .created
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !created
                .iter()
                .any(|s| s.namespace == secret.namespace && s.name == secret.name)
            {
                created.push(secret.clone());
            }
            Ok(())
        })
    }
}
