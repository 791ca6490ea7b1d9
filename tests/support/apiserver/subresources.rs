//! Subresources that are not an object's own fields: `pods/exec`, `pods/attach`,
//! `pods/portforward` (CONNECT), `pods/binding`, `pods/eviction` and
//! `serviceaccounts/token` (CREATE of a Binding, an Eviction, a TokenRequest). Each passes the
//! admission chain the way the real API server sends it, then is answered as a control plane
//! without kubelets answers (checked against a v1.36 kube-apiserver):
//!
//! - CONNECT: `kind` is `PodExecOptions` / `PodAttachOptions` / `PodPortForwardOptions` (group
//!   "" v1), `object` those options built from the query (`command` is always present, null
//!   when none was given; flags only when true), `options` null, `name` the pod. Admission comes
//!   first, then the pod lookup (404), the container check, then 400 `pod <name> does not have a
//!   host assigned` for an unscheduled pod; a scheduled one fails at the (absent) node.
//! - TokenRequest: the mutating webhooks see `metadata` with only the namespace, `spec` as sent
//!   with `expirationSeconds` defaulted to 3600, and an empty `status`; the service account must
//!   exist (404 after mutating admission); the validating webhooks see `metadata.name` (the
//!   service account), its uid, a creation time and the default audience; the bound object is
//!   checked after admission. The answer carries an unsigned JWT-shaped token.
//! - Binding sets `spec.nodeName` (409 when already bound); Eviction deletes the pod (no
//!   PodDisruptionBudgets); neither write is admitted again as a pod UPDATE/DELETE.

use bytes::Bytes;
use http::{Method, Response};
use serde_json::{Value, json};

use super::admission::{self, Attributes};
use super::http::{Body, lock};
use super::resource::{POD, SECRET, SERVICE_ACCOUNT};
use super::status::ApiError;
use super::store::now;
use super::writes::{Write, parse_body, respond, write_options};

/// The audience tokens get when a TokenRequest names none (the server's `--api-audiences`).
pub const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc";

fn parse_bool(v: &str) -> bool {
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// The options object a CONNECT request is admitted with, from its query parameters.
fn connect_options(sub: &str, pairs: &[(String, String)]) -> Result<Value, ApiError> {
    let values = |name: &str| -> Vec<&str> {
        pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let last = |name: &str| values(name).last().map(|v| v.to_string());
    let kind = match sub {
        "exec" => "PodExecOptions",
        "attach" => "PodAttachOptions",
        _ => "PodPortForwardOptions",
    };
    let mut object = json!({ "kind": kind, "apiVersion": "v1" });
    if sub == "portforward" {
        let ports = values("ports")
            .into_iter()
            .flat_map(|v| v.split(','))
            .map(|p| {
                p.trim()
                    .parse::<u16>()
                    .map_err(|e| ApiError::bad_request(format!("invalid port {p:?} in query: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if !ports.is_empty() {
            object["ports"] = json!(ports);
        }
        return Ok(object);
    }
    for flag in ["stdin", "stdout", "stderr", "tty"] {
        if last(flag).as_deref().is_some_and(parse_bool) {
            object[flag] = json!(true);
        }
    }
    if let Some(container) = last("container").filter(|c| !c.is_empty()) {
        object["container"] = json!(container);
    }
    if sub == "exec" {
        let command = values("command");
        object["command"] = if command.is_empty() {
            Value::Null
        } else {
            json!(command)
        };
    }
    Ok(object)
}

fn container_names(pod: &Value, field: &str) -> Vec<String> {
    pod["spec"][field]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

fn success(code: u16) -> Value {
    json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code })
}

/// Checks `apiVersion`/`kind` of a subresource body and fills in the namespace.
fn subresource_body(
    body: &Bytes,
    api_versions: &[&str],
    kind: &str,
    namespace: &str,
) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("{kind} cannot be handled as a {kind}: {e}")))?;
    let given = object["apiVersion"].as_str().unwrap_or("");
    if !api_versions.contains(&given) || object["kind"] != kind {
        return Err(ApiError::bad_request(format!(
            "the body must be a {kind} ({}), got {given} {}",
            api_versions.join(" or "),
            object["kind"]
        )));
    }
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"]["namespace"] = json!(namespace);
    Ok(object)
}

impl Write<'_> {
    /// Routes a request for a special subresource.
    pub(crate) async fn subresource(
        &self,
        method: &Method,
        pairs: &[(String, String)],
        body: &Bytes,
    ) -> Result<Response<Body>, ApiError> {
        let sub = self.target.subresource.as_deref().unwrap_or("");
        match (sub, method) {
            ("exec" | "attach" | "portforward", &Method::GET | &Method::POST) => {
                self.connect(sub, pairs).await
            }
            ("binding", &Method::POST) => self.binding(body).await,
            ("eviction", &Method::POST) => self.eviction(body).await,
            ("token", &Method::POST) => self.token_request(body).await,
            _ => Err(ApiError::method_not_allowed()),
        }
    }

    fn pod_name(&self) -> String {
        self.target.name.clone().unwrap_or_default()
    }

    async fn connect(
        &self,
        sub: &str,
        pairs: &[(String, String)],
    ) -> Result<Response<Body>, ApiError> {
        let name = self.pod_name();
        let options = connect_options(sub, pairs)?;
        let mut attrs = Attributes::new(
            "CONNECT",
            POD,
            Some(sub.to_string()),
            self.target.namespace.as_deref(),
            &self.user,
        );
        attrs.kind.2 = options["kind"].as_str().unwrap_or("").to_string();
        attrs.name = name.clone();
        attrs.object = options;
        let mut warnings = Vec::new();
        admission::mutate(self.shared, &mut attrs, &mut warnings).await?;
        admission::validate(self.shared, &attrs, &mut warnings).await?;
        let pod = lock(&self.shared.store).get(&POD, self.target.namespace.as_deref(), &name)?;
        if sub != "portforward" {
            let containers = container_names(&pod, "containers");
            match attrs.object["container"].as_str() {
                Some(c) => {
                    let known = containers
                        .iter()
                        .chain(&container_names(&pod, "initContainers"))
                        .chain(&container_names(&pod, "ephemeralContainers"))
                        .any(|n| n == c);
                    if !known {
                        return Err(ApiError::bad_request(format!(
                            "container {c} is not valid for pod {name}"
                        )));
                    }
                }
                None if containers.len() > 1 => {
                    return Err(ApiError::bad_request(format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        containers.join(" ")
                    )));
                }
                None => {}
            }
        }
        match pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            None => Err(ApiError::bad_request(format!(
                "pod {name} does not have a host assigned"
            ))),
            // What v1.36 answered for a pod bound to a node that does not exist.
            Some(node) => Err(ApiError::new(
                404,
                "NotFound",
                format!("pods \"{node}\" not found"),
            )),
        }
    }

    async fn binding(&self, body: &Bytes) -> Result<Response<Body>, ApiError> {
        let name = self.pod_name();
        let namespace = self.target.namespace.clone().unwrap_or_default();
        let object = subresource_body(body, &["v1"], "Binding", &namespace)?;
        let mut attrs = Attributes::new(
            "CREATE",
            POD,
            Some("binding".into()),
            Some(&namespace),
            &self.user,
        );
        attrs.kind.2 = "Binding".into();
        attrs.name = name.clone();
        attrs.object = object;
        attrs.options = write_options("CreateOptions", self.query, self.ctx.dry_run);
        attrs.dry_run = self.ctx.dry_run;
        let mut warnings = Vec::new();
        admission::mutate(self.shared, &mut attrs, &mut warnings).await?;
        admission::validate(self.shared, &attrs, &mut warnings).await?;
        let node = attrs.object["target"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string();
        {
            let mut store = lock(&self.shared.store);
            let mut pod = store.get(&POD, Some(&namespace), &name)?;
            if let Some(bound) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
                let mut error = ApiError::conflict(&POD, &name, "");
                error.message = format!(
                    "Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{bound}\""
                );
                return Err(error);
            }
            pod["spec"]["nodeName"] = json!(node);
            store.replace(&POD, Some(&namespace), &name, pod, &self.ctx)?;
        }
        self.shared.notify();
        Ok(respond(201, &success(201), &warnings))
    }

    async fn eviction(&self, body: &Bytes) -> Result<Response<Body>, ApiError> {
        let name = self.pod_name();
        let namespace = self.target.namespace.clone().unwrap_or_default();
        let object = subresource_body(
            body,
            &["policy/v1", "policy/v1beta1"],
            "Eviction",
            &namespace,
        )?;
        let version = object["apiVersion"]
            .as_str()
            .and_then(|v| v.split_once('/'))
            .map_or("v1", |(_, v)| v)
            .to_string();
        let mut attrs = Attributes::new(
            "CREATE",
            POD,
            Some("eviction".into()),
            Some(&namespace),
            &self.user,
        );
        attrs.kind = ("policy".into(), version, "Eviction".into());
        attrs.name = name.clone();
        attrs.object = object;
        attrs.options = write_options("CreateOptions", self.query, self.ctx.dry_run);
        attrs.dry_run = self.ctx.dry_run;
        let mut warnings = Vec::new();
        admission::mutate(self.shared, &mut attrs, &mut warnings).await?;
        admission::validate(self.shared, &attrs, &mut warnings).await?;
        let options = attrs.object["deleteOptions"].clone();
        let options = if options.is_object() {
            options
        } else {
            json!({})
        };
        lock(&self.shared.store).delete(
            &POD,
            Some(&namespace),
            &name,
            &options,
            self.ctx.dry_run,
        )?;
        self.shared.notify();
        Ok(respond(201, &success(201), &warnings))
    }

    async fn token_request(&self, body: &Bytes) -> Result<Response<Body>, ApiError> {
        let account = self.pod_name();
        let namespace = self.target.namespace.clone().unwrap_or_default();
        let sent = subresource_body(
            body,
            &["authentication.k8s.io/v1"],
            "TokenRequest",
            &namespace,
        )?;
        let spec = &sent["spec"];
        let expiration = spec["expirationSeconds"].as_i64().unwrap_or(3600);
        let mut attrs = Attributes::new(
            "CREATE",
            SERVICE_ACCOUNT,
            Some("token".into()),
            Some(&namespace),
            &self.user,
        );
        attrs.kind = (
            "authentication.k8s.io".into(),
            "v1".into(),
            "TokenRequest".into(),
        );
        attrs.name = account.clone();
        attrs.object = json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": { "namespace": namespace },
            "spec": {
                "audiences": spec["audiences"],
                "expirationSeconds": expiration,
                "boundObjectRef": spec["boundObjectRef"],
            },
            "status": { "token": "", "expirationTimestamp": null },
        });
        attrs.options = write_options("CreateOptions", self.query, self.ctx.dry_run);
        attrs.dry_run = self.ctx.dry_run;
        let mut warnings = Vec::new();
        admission::mutate(self.shared, &mut attrs, &mut warnings).await?;
        let sa = lock(&self.shared.store).get(&SERVICE_ACCOUNT, Some(&namespace), &account)?;
        let expiration = attrs.object["spec"]["expirationSeconds"]
            .as_i64()
            .unwrap_or(3600);
        if expiration < 600 {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                &account,
                &[crate::support::upstream::Violation {
                    field: "spec.expirationSeconds".into(),
                    reason: "FieldValueInvalid",
                    message: format!(
                        "Invalid value: {expiration}: may not specify a duration less than 10 minutes"
                    ),
                }],
            ));
        }
        let created = now();
        attrs.object["metadata"] = json!({
            "name": account,
            "namespace": namespace,
            "uid": sa["metadata"]["uid"],
            "creationTimestamp": created,
        });
        if attrs.object["spec"]["audiences"]
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            attrs.object["spec"]["audiences"] = json!([DEFAULT_AUDIENCE]);
        }
        admission::validate(self.shared, &attrs, &mut warnings).await?;
        let bound = attrs.object["spec"]["boundObjectRef"].clone();
        let pod = self.check_bound_object(&bound, &namespace, &account)?;
        let expires = time::OffsetDateTime::now_utc() + time::Duration::seconds(expiration);
        let format =
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let mut answer = attrs.object.clone();
        answer["status"] = json!({
            "token": fake_token(&namespace, &account, &sa, &answer["spec"], pod.as_ref(), expires),
            "expirationTimestamp": expires.format(&format).unwrap_or_default(),
        });
        Ok(respond(201, &answer, &warnings))
    }

    /// The object a token is bound to must exist, have the given uid and, for a pod, run as the
    /// service account the token is for. Returns the pod.
    fn check_bound_object(
        &self,
        bound: &Value,
        namespace: &str,
        account: &str,
    ) -> Result<Option<Value>, ApiError> {
        if !bound.is_object() {
            return Ok(None);
        }
        let kind = bound["kind"].as_str().unwrap_or("");
        let name = bound["name"].as_str().unwrap_or("");
        let resource = match kind {
            "Pod" => POD,
            "Secret" => SECRET,
            other => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind a token to a {other} here: the stand-in binds tokens to Pods and Secrets"
                )));
            }
        };
        let object = lock(&self.shared.store).get(&resource, Some(namespace), name)?;
        let uid = object["metadata"]["uid"].as_str().unwrap_or("");
        if let Some(expected) = bound["uid"].as_str().filter(|u| !u.is_empty())
            && expected != uid
        {
            return Err(ApiError {
                details: Some(json!({ "name": name, "kind": kind })),
                ..ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {kind} \"{name}\": the UID in the bound object reference ({expected}) does not match the UID in record. The object might have been deleted and then recreated"
                    ),
                )
            });
        }
        if resource == POD {
            let runs_as = object["spec"]["serviceAccountName"]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or("default");
            if runs_as != account {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount \"{account}\" to pod running with different serviceaccount name."
                )));
            }
            return Ok(Some(object));
        }
        Ok(None)
    }
}

/// An unsigned token with the claims a real projected service-account token carries.
fn fake_token(
    namespace: &str,
    account: &str,
    sa: &Value,
    spec: &Value,
    pod: Option<&Value>,
    expires: time::OffsetDateTime,
) -> String {
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(v).unwrap_or_default())
    };
    let issued = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut k8s = json!({
        "namespace": namespace,
        "serviceaccount": { "name": account, "uid": sa["metadata"]["uid"] },
    });
    if let Some(pod) = pod {
        k8s["pod"] = json!({ "name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"] });
    }
    let claims = json!({
        "aud": spec["audiences"],
        "exp": expires.unix_timestamp(),
        "iat": issued,
        "nbf": issued,
        "iss": DEFAULT_AUDIENCE,
        "kubernetes.io": k8s,
        "sub": format!("system:serviceaccount:{namespace}:{account}"),
    });
    format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "kid": "standin" })),
        b64(&claims)
    )
}
