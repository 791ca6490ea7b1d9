//! Building AdmissionReview v1 requests the way kube-apiserver sends them.

use serde_json::{Value, json};

/// A review under construction.
#[derive(Clone, Debug)]
pub struct Review {
    pub uid: String,
    pub group: String,
    pub version: String,
    pub kind: String,
    pub resource: String,
    pub sub_resource: Option<String>,
    pub operation: String,
    pub namespace: String,
    pub name: Option<String>,
    pub username: String,
    pub extra: Value,
    pub object: Value,
    pub old_object: Value,
    pub dry_run: bool,
}

fn fresh_uid() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "0000{:04x}-{:04x}-4000-8000-{:012x}",
        std::process::id() & 0xffff,
        N.fetch_add(1, Ordering::Relaxed) & 0xffff,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            & 0xffff_ffff_ffff
    )
}

impl Review {
    /// A review of any kind.
    pub fn new_kind(group: &str, version: &str, kind: &str, resource: &str, object: Value) -> Self {
        Self::new(group, version, kind, resource, object)
    }

    fn new(group: &str, version: &str, kind: &str, resource: &str, object: Value) -> Self {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("spark-jobs")
            .to_string();
        let name = object["metadata"]["name"].as_str().map(str::to_string);
        Self {
            uid: fresh_uid(),
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            resource: resource.into(),
            sub_resource: None,
            operation: "CREATE".into(),
            namespace,
            name,
            username: "oidc:alice".into(),
            extra: json!({}),
            object,
            old_object: Value::Null,
            dry_run: false,
        }
    }

    pub fn pod(object: Value) -> Self {
        Self::new("", "v1", "Pod", "pods", object)
    }

    pub fn spark_app(object: Value) -> Self {
        Self::new(
            "sparkoperator.k8s.io",
            "v1beta2",
            "SparkApplication",
            "sparkapplications",
            object,
        )
    }

    pub fn scheduled_app(object: Value) -> Self {
        Self::new(
            "sparkoperator.k8s.io",
            "v1beta2",
            "ScheduledSparkApplication",
            "scheduledsparkapplications",
            object,
        )
    }

    pub fn cnp(object: Value) -> Self {
        Self::new(
            "cilium.io",
            "v2",
            "CiliumNetworkPolicy",
            "ciliumnetworkpolicies",
            object,
        )
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = uid.into();
        self
    }

    pub fn operation(mut self, op: &str) -> Self {
        self.operation = op.into();
        self
    }

    pub fn update(mut self, old: Value) -> Self {
        self.operation = "UPDATE".into();
        self.old_object = old;
        self
    }

    pub fn delete(mut self) -> Self {
        self.operation = "DELETE".into();
        self.old_object = std::mem::take(&mut self.object);
        self
    }

    pub fn sub_resource(mut self, s: &str) -> Self {
        self.sub_resource = Some(s.into());
        self
    }

    pub fn user(mut self, username: &str) -> Self {
        self.username = username.into();
        self
    }

    /// The requester is a service account whose token is bound to `pod` (name, uid).
    pub fn bound_to_pod(mut self, service_account: &str, pod: &str, pod_uid: &str) -> Self {
        self.username = format!("system:serviceaccount:{}:{service_account}", self.namespace);
        self.extra = json!({
            "authentication.kubernetes.io/pod-name": [pod],
            "authentication.kubernetes.io/pod-uid": [pod_uid],
        });
        self
    }

    /// The review the API server sends to a later webhook of the same request (the validating
    /// webhook, or a re-invocation) once `object` is the object after the mutating webhooks:
    /// everything the same except a fresh uid, as kube-apiserver makes one per webhook call.
    /// A CREATE's object gets what the API server assigns between mutating and validating
    /// admission (a `generateName` resolved, `metadata.uid`, `creationTimestamp`) when
    /// `validating`.
    pub fn next_call(&self, object: Value, validating: bool) -> Self {
        let mut next = self.clone();
        next.uid = fresh_uid();
        next.object = object;
        if validating && self.operation == "CREATE" {
            let meta = &mut next.object["metadata"];
            if meta
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
                && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
            {
                let name = format!("{prefix}{}", &fresh_uid()[..5].replace('-', "x"));
                meta["name"] = json!(name);
                next.name = Some(name);
            }
            if meta.get("uid").is_none() {
                meta["uid"] = json!(fresh_uid());
            }
            if meta.get("creationTimestamp").is_none() {
                meta["creationTimestamp"] = json!("2026-12-01T00:00:00Z");
            }
        }
        next
    }

    pub fn dry_run(mut self) -> Self {
        self.dry_run = true;
        self
    }

    pub fn build(&self) -> Value {
        let mut request = json!({
            "uid": self.uid,
            "kind": {"group": self.group, "version": self.version, "kind": self.kind},
            "resource": {"group": self.group, "version": self.version, "resource": self.resource},
            "requestKind": {"group": self.group, "version": self.version, "kind": self.kind},
            "requestResource": {"group": self.group, "version": self.version, "resource": self.resource},
            "namespace": self.namespace,
            "operation": self.operation,
            "userInfo": {"username": self.username, "uid": "u-1", "groups": ["system:authenticated"], "extra": self.extra},
            "object": self.object,
            "oldObject": self.old_object,
            "dryRun": self.dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        });
        if let Some(name) = &self.name {
            request["name"] = json!(name);
        }
        if let Some(s) = &self.sub_resource {
            request["subResource"] = json!(s);
        }
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request})
    }
}

/// The decoded JSON Patch of a response (empty when none).
pub fn patch_of(review: &Value) -> Vec<Value> {
    use base64::Engine;
    match review["response"]["patch"].as_str() {
        None => Vec::new(),
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("patch is base64");
            serde_json::from_slice(&bytes).expect("patch is JSON")
        }
    }
}

/// Applies a response's patch to the object of its request.
pub fn patched(request: &Value, response: &Value) -> Value {
    let mut obj = request["request"]["object"].clone();
    let ops: json_patch::Patch =
        serde_json::from_value(Value::Array(patch_of(response))).expect("patch ops");
    json_patch::patch(&mut obj, &ops).expect("patch applies");
    obj
}

/// The job id sparkward stamped on an object (asserting it is well-formed).
pub fn job_of(object: &Value) -> String {
    let id = object["metadata"]["labels"]["sparkward.io/job-id"]
        .as_str()
        .unwrap_or_else(|| panic!("no sparkward.io/job-id label on {object}"))
        .to_string();
    assert!(sparkward::core::labels::is_job_id(&id), "{id}");
    id
}

/// The job id an allowed answer reports (its `job-id` audit annotation).
pub fn answered_job(answer: &Value) -> String {
    let id = answer["response"]["auditAnnotations"]["job-id"]
        .as_str()
        .unwrap_or_else(|| panic!("no job-id audit annotation in {answer}"))
        .to_string();
    assert!(sparkward::core::labels::is_job_id(&id), "{id}");
    id
}

/// A minimal pod as spark-submit would create it.
pub fn mk_pod(name: &str, namespace: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"spark-role": "driver"}},
        "spec": {"containers": [{"name": "spark-kubernetes-driver", "image": "apache/spark:4.0.0",
            "args": ["driver"]}], "serviceAccountName": "spark"}
    })
}
