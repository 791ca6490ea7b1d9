//! Local mode's [`PolicyStore`]: with no cluster to talk to, each policy is written as YAML to
//! `<dir>/<namespace>/<name>.yaml`, so a developer can read (or `kubectl apply`) what the
//! webhook would have created. Writes are atomic (temporary file in the same directory, then
//! rename), so a reader never sees half a policy, and the same policy twice overwrites one file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;

use crate::core::cilium::CiliumNetworkPolicy;
use crate::k8s::policy::{ApplyError, PolicyStore, target};

/// Writes policies as YAML files below a directory.
#[derive(Debug)]
pub struct LocalPolicyStore {
    dir: PathBuf,
    /// Makes temporary file names unique within this process.
    counter: AtomicU64,
}

impl LocalPolicyStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            counter: AtomicU64::new(0),
        }
    }

    /// The directory policies are written below.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the policy with this namespace and name is written.
    pub fn path_for(&self, namespace: &str, name: &str) -> PathBuf {
        self.dir.join(namespace).join(format!("{name}.yaml"))
    }

    async fn write(&self, policy: &CiliumNetworkPolicy) -> Result<(), ApplyError> {
        let (namespace, name) = target(policy)?;
        // Both come from the API request and the job id; never let them leave the directory.
        for part in [&namespace, &name] {
            if !is_path_component(part) {
                return Err(ApplyError::Invalid {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    reason: format!("'{part}' cannot be used as a file name"),
                });
            }
        }
        let path = self.path_for(&namespace, &name);
        let fail = |error: String| ApplyError::Write {
            namespace: namespace.clone(),
            name: name.clone(),
            path: path.display().to_string(),
            error,
        };
        let yaml = serde_saphyr::to_string(policy).map_err(|e| fail(e.to_string()))?;
        let dir = self.dir.join(&namespace);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let tmp = dir.join(format!(
            ".{name}.yaml.{}.{}.tmp",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        let written = async {
            tokio::fs::write(&tmp, yaml.as_bytes()).await?;
            tokio::fs::rename(&tmp, &path).await
        }
        .await;
        if let Err(e) = written {
            // Best effort: do not leave temporary files behind.
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(fail(e.to_string()));
        }
        tracing::info!(path = %path.display(), "local mode: wrote policy");
        Ok(())
    }
}

fn is_path_component(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && !part.contains(['/', '\\', '\0'])
}

impl PolicyStore for LocalPolicyStore {
    fn apply<'a>(
        &'a self,
        policy: &'a CiliumNetworkPolicy,
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(self.write(policy))
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::core::cilium::{
        self, EgressRule, EndpointSelector, Entity, PortProtocol, PortRule, Protocol, Rule,
    };

    fn mk_policy(namespace: &str, name: &str) -> CiliumNetworkPolicy {
        CiliumNetworkPolicy {
            api_version: cilium::API_VERSION.into(),
            kind: cilium::KIND.into(),
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..ObjectMeta::default()
            },
            spec: None,
            specs: vec![Rule {
                endpoint_selector: Some(EndpointSelector::labels([(
                    "sparkward.io/job-id",
                    "sj-x",
                )])),
                egress: vec![
                    EgressRule {
                        to_entities: Some(vec![Entity::KubeApiserver]),
                        ..EgressRule::default()
                    },
                    EgressRule {
                        to_entities: Some(vec![Entity::World]),
                        to_ports: Some(vec![PortRule {
                            ports: Some(vec![PortProtocol::new(53, Protocol::Udp)]),
                            ..PortRule::default()
                        }]),
                        ..EgressRule::default()
                    },
                ],
                ..Rule::default()
            }],
        }
    }

    #[tokio::test]
    async fn writes_yaml_under_namespace_and_name() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalPolicyStore::new(tmp.path().join("policies"));
        let policy = mk_policy("team-a", "sparkward-sj-x");
        store.apply(&policy).await.unwrap();
        let path = tmp.path().join("policies/team-a/sparkward-sj-x.yaml");
        assert_eq!(store.path_for("team-a", "sparkward-sj-x"), path);
        let text = std::fs::read_to_string(&path).unwrap();
        let back: CiliumNetworkPolicy = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back, policy);
        assert!(text.contains("kube-apiserver"), "{text}");
        // Ports stay strings in YAML, or `kubectl apply -f` of the file would fail the schema.
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            doc["specs"][0]["egress"][1]["toPorts"][0]["ports"][0]["port"],
            serde_json::json!("53")
        );
    }

    #[tokio::test]
    async fn the_same_policy_twice_overwrites_one_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalPolicyStore::new(tmp.path());
        let mut policy = mk_policy("team-a", "p");
        store.apply(&policy).await.unwrap();
        policy.specs[0].description = Some("second version".into());
        store.apply(&policy).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(tmp.path().join("team-a"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, vec!["p.yaml".to_string()], "no temporary files left");
        let text = std::fs::read_to_string(tmp.path().join("team-a/p.yaml")).unwrap();
        assert!(text.contains("second version"), "{text}");
    }

    #[tokio::test]
    async fn refuses_names_that_leave_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let store = LocalPolicyStore::new(tmp.path().join("p"));
        for (ns, name) in [("..", "x"), ("a", "../../etc/x"), ("a/b", "x")] {
            let err = store.apply(&mk_policy(ns, name)).await.unwrap_err();
            assert_eq!(err.code(), "invalid", "{ns}/{name}");
        }
        assert!(!tmp.path().join("p").exists());
    }

    #[tokio::test]
    async fn a_write_failure_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        // A file where the namespace directory should go.
        std::fs::write(tmp.path().join("team-a"), b"not a directory").unwrap();
        let store = LocalPolicyStore::new(tmp.path());
        let err = store.apply(&mk_policy("team-a", "p")).await.unwrap_err();
        assert_eq!(err.code(), "write");
        let text = err.to_string();
        assert!(text.contains("p.yaml"), "{text}");
        assert!(text.contains("retrying the submission is safe"), "{text}");
    }
}
