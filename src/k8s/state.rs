//! Cluster state from a file: the objects `sparkward review --cluster-state` and
//! `sparkward serve --local --cluster-state` resolve lookups against, in place of the API server.
//!
//! Accepted: a multi-document YAML stream, a JSON array, or a `v1` `List` (or any `*List` with
//! `items`), each holding SparkApplications, ScheduledSparkApplications, Pods and
//! CiliumNetworkPolicies. Objects of other kinds are ignored; objects without a name are an error.

use std::collections::HashMap;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::admission::{Lookup, LookupError, PodInfo};
use crate::core::objects::{Meta, MetaOnly};

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StateError {
    #[error("cluster state is neither JSON nor YAML: {0}")]
    Parse(String),
    #[error("cluster state object #{index} ({kind}) has no metadata.name")]
    Unnamed { index: usize, kind: String },
    #[error("cluster state object #{index} is not a Kubernetes object (no kind)")]
    NoKind { index: usize },
}

/// Objects by (kind, namespace, name).
#[derive(Debug, Default, Clone)]
pub struct ClusterState {
    objects: HashMap<(String, String, String), Value>,
    /// The metadata view of each object, read once when it is added (as the API server's
    /// metadata caches hold it), or why it could not be read. A lookup clones it, like
    /// `KubeLookup` does, instead of deserialising the object again.
    metas: HashMap<(String, String, String), Result<Meta, String>>,
}

impl ClusterState {
    /// Parses a state file's text.
    pub fn parse(text: &str) -> Result<Self, StateError> {
        // JSON first (an array, a List or one object); anything else is a YAML stream, which
        // also covers JSON documents separated by `---`.
        let docs: Vec<Value> = match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => items,
            Ok(v) => vec![v],
            Err(_) => serde_saphyr::from_slice_multiple::<Value>(text.as_bytes())
                .map_err(|e| StateError::Parse(e.to_string()))?,
        };
        let mut flat = Vec::new();
        for doc in docs {
            match doc {
                Value::Null => {}
                Value::Object(ref m)
                    if m.get("kind")
                        .and_then(Value::as_str)
                        .is_some_and(|k| k.ends_with("List"))
                        && m.get("items").is_some_and(Value::is_array) =>
                {
                    if let Some(Value::Array(items)) = m.get("items") {
                        flat.extend(items.iter().cloned());
                    }
                }
                other => flat.push(other),
            }
        }
        let mut state = Self::default();
        for (index, obj) in flat.into_iter().enumerate() {
            state.insert_at(index, obj)?;
        }
        Ok(state)
    }

    fn insert_at(&mut self, index: usize, obj: Value) -> Result<(), StateError> {
        let kind = obj
            .get("kind")
            .and_then(Value::as_str)
            .ok_or(StateError::NoKind { index })?
            .to_string();
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| StateError::Unnamed {
                index,
                kind: kind.clone(),
            })?
            .to_string();
        let namespace = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let meta = <MetaOnly as serde::Deserialize>::deserialize(&obj)
            .map(|m| m.metadata)
            .map_err(|e| e.to_string());
        let key = (kind, namespace, name);
        self.metas.insert(key.clone(), meta);
        self.objects.insert(key, obj);
        Ok(())
    }

    /// Adds or replaces an object.
    pub fn insert(&mut self, obj: Value) -> Result<(), StateError> {
        let index = self.objects.len();
        self.insert_at(index, obj)
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(&(kind.to_string(), namespace.to_string(), name.to_string()))
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    fn meta(&self, kind: &str, namespace: &str, name: &str) -> Result<Option<Meta>, LookupError> {
        let key = (kind.to_string(), namespace.to_string(), name.to_string());
        match self.metas.get(&key) {
            None => Ok(None),
            Some(Ok(meta)) => Ok(Some(meta.clone())),
            Some(Err(e)) => Err(LookupError(format!(
                "{kind} {namespace}/{name} in the cluster state: {e}"
            ))),
        }
    }
}

impl Lookup for ClusterState {
    fn spark_application<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Meta>, LookupError>> {
        Box::pin(async move { self.meta("SparkApplication", namespace, name) })
    }

    fn scheduled_spark_application<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Meta>, LookupError>> {
        Box::pin(async move { self.meta("ScheduledSparkApplication", namespace, name) })
    }

    fn pod<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<PodInfo>, LookupError>> {
        Box::pin(async move {
            let node_name = self
                .get("Pod", namespace, name)
                .and_then(|p| p.pointer("/spec/nodeName"))
                .and_then(Value::as_str)
                .map(str::to_string);
            Ok(self
                .meta("Pod", namespace, name)?
                .map(|meta| PodInfo { meta, node_name }))
        })
    }

    /// Namespaces missing from the state file have no labels (the default profile applies),
    /// as local mode and offline reviews have no cluster to ask.
    fn namespace_labels<'a>(
        &'a self,
        namespace: &'a str,
    ) -> BoxFuture<'a, Result<Option<std::collections::BTreeMap<String, String>>, LookupError>>
    {
        Box::pin(async move {
            Ok(Some(
                self.meta("Namespace", "default", namespace)?
                    .or(self.meta("Namespace", "", namespace)?)
                    .and_then(|m| m.labels)
                    .unwrap_or_default(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = r#"{"apiVersion":"sparkoperator.k8s.io/v1beta2","kind":"SparkApplication","metadata":{"name":"a","namespace":"ns","labels":{"x":"y"}}}"#;
    const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns","uid":"u"},"spec":{"nodeName":"n1"}}"#;

    #[test]
    fn reads_all_three_formats() {
        let yaml = format!("{APP}\n---\n{POD}\n");
        let array = format!("[{APP},{POD}]");
        let list = format!(r#"{{"apiVersion":"v1","kind":"List","items":[{APP},{POD}]}}"#);
        for text in [yaml, array, list] {
            let s = ClusterState::parse(&text).unwrap();
            assert_eq!(s.len(), 2, "{text}");
            assert!(s.get("SparkApplication", "ns", "a").is_some());
            assert!(s.get("Pod", "ns", "p").is_some());
        }
    }

    #[test]
    fn yaml_block_style_works() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: ns\n---\n";
        assert_eq!(ClusterState::parse(text).unwrap().len(), 1);
    }

    #[test]
    fn unnamed_object_is_an_error() {
        let err = ClusterState::parse(r#"[{"kind":"Pod","metadata":{}}]"#).unwrap_err();
        assert!(matches!(err, StateError::Unnamed { index: 0, .. }));
    }

    #[tokio::test]
    async fn lookups_return_metadata() {
        let s = ClusterState::parse(&format!("[{APP},{POD}]")).unwrap();
        let pod = s.pod("ns", "p").await.unwrap().unwrap();
        assert_eq!(pod.meta.uid.as_deref(), Some("u"));
        assert_eq!(pod.node_name.as_deref(), Some("n1"));
        assert!(s.pod("ns", "missing").await.unwrap().is_none());
        let app = s.spark_application("ns", "a").await.unwrap().unwrap();
        assert_eq!(app.label("x"), Some("y"));
    }
}
