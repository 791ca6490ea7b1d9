//! The write verbs through the admission chain, in the order the real API server's handlers
//! and generic registry run them:
//!
//! - create (POST, and server-side apply to a missing object): the decoded object goes to the
//!   mutating webhooks *before* the registry's `BeforeCreate`, so they see no `uid`, no
//!   `creationTimestamp` and, for `generateName`, no name (`request.name` is empty); then the
//!   name is generated, `uid`/`creationTimestamp`/`generation` set and the object validated;
//!   then the validating webhooks see that final object; then it is stored (409 AlreadyExists
//!   is found only then, as etcd's create finds it).
//! - update (PUT and every PATCH type, on the object or on `status`/`ephemeralcontainers`):
//!   `object` is the new object after the body or patch is applied, `oldObject` the stored one,
//!   `options` UpdateOptions (a PATCH is admitted as an UPDATE, as upstream's patcher does);
//!   the validating webhooks see the object as it will be stored; when the stored object
//!   changed meanwhile, the whole update starts over, as `GuaranteedUpdate` retries.
//! - delete: `oldObject` is the stored object, `object` null, `options` the DeleteOptions;
//!   mutating webhooks are called too (a patch from them fails the request). The real registry
//!   may call the webhooks more than once for a graceful pod deletion; here each is called once.
//!
//! Seeding through `FakeApiServer::insert` and the built-in garbage collector bypass admission.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use serde_json::{Value, json};

use super::admission::{self, Attributes};
use super::http::{Body, Shared, json_response, lock};
use super::resource::{Resource, Target};
use super::status::ApiError;
use super::store::{Outcome, PatchKind, Plan, Store, WriteCtx};
use super::user::User;

/// How often an update is retried when the stored object changes under it.
const RETRIES: usize = 8;

/// One write request, with who sent it.
pub(crate) struct Write<'a> {
    pub shared: &'a Arc<Shared>,
    pub target: &'a Target,
    pub query: &'a HashMap<String, String>,
    pub user: User,
    pub ctx: WriteCtx,
}

/// `CreateOptions` / `UpdateOptions` as the real server sends them in `request.options`.
pub(crate) fn write_options(kind: &str, query: &HashMap<String, String>, dry_run: bool) -> Value {
    let mut options = json!({ "kind": kind, "apiVersion": "meta.k8s.io/v1" });
    if dry_run {
        options["dryRun"] = json!(["All"]);
    }
    for field in ["fieldManager", "fieldValidation"] {
        if let Some(v) = query.get(field).filter(|v| !v.is_empty()) {
            options[field] = json!(v);
        }
    }
    options
}

/// A response with the webhooks' warnings as `Warning: 299 - "..."` headers.
pub(crate) fn respond(code: u16, body: &Value, warnings: &[String]) -> Response<Body> {
    let mut response = json_response(code, body);
    for w in warnings {
        let text = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(v) = http::HeaderValue::from_str(&text) {
            response.headers_mut().append(http::header::WARNING, v);
        }
    }
    response
}

pub(crate) fn parse_body(body: &Bytes, resource: &Resource) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            resource.kind, resource.version, resource.kind
        ))
    })
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

impl Write<'_> {
    fn namespace(&self) -> Option<&str> {
        self.target.namespace.as_deref()
    }

    fn attributes(&self, operation: &'static str) -> Attributes {
        let mut attrs = Attributes::new(
            operation,
            self.target.resource,
            self.target.subresource.clone(),
            self.namespace(),
            &self.user,
        );
        if let Some(name) = &self.target.name {
            attrs.name = name.clone();
        }
        attrs.dry_run = self.ctx.dry_run;
        attrs
    }

    /// POST to a collection.
    pub(crate) async fn create(&self, body: &Bytes) -> Result<Response<Body>, ApiError> {
        let resource = self.target.resource;
        let value = parse_body(body, &resource)?;
        let object =
            lock(&self.shared.store).admission_input_create(&resource, self.namespace(), value)?;
        let mut warnings = Vec::new();
        let created = self.admit_create(object, None, &mut warnings).await?;
        Ok(respond(201, &created, &warnings))
    }

    /// Mutating admission, `BeforeCreate`, validating admission, storage.
    async fn admit_create(
        &self,
        object: Value,
        managers: Option<Vec<super::fields::ManagedEntry>>,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let mut attrs = self.attributes("CREATE");
        attrs.subresource = None;
        attrs.name = name_of(&object);
        attrs.object = object;
        attrs.options = write_options("CreateOptions", self.query, self.ctx.dry_run);
        admission::mutate(self.shared, &mut attrs, warnings).await?;
        let prepared = lock(&self.shared.store).prepare_create(
            &attrs.resource,
            self.namespace(),
            attrs.object.clone(),
            &self.ctx,
            false,
            managers,
        )?;
        attrs.object = prepared.object();
        attrs.name = name_of(&attrs.object);
        admission::validate(self.shared, &attrs, warnings).await?;
        let (created, _) = lock(&self.shared.store).commit_create(prepared, &self.ctx)?;
        self.shared.notify();
        Ok(created)
    }

    /// PUT to an object or a subresource.
    pub(crate) async fn replace(&self, body: &Bytes) -> Result<Response<Body>, ApiError> {
        let resource = self.target.resource;
        let value = parse_body(body, &resource)?;
        let name = self.target.name.clone().unwrap_or_default();
        let (object, _, warnings) = self
            .update(|store: &Store| {
                store.plan_replace(&resource, self.namespace(), &name, value.clone())
            })
            .await?;
        Ok(respond(200, &object, &warnings))
    }

    /// PATCH (merge, strategic merge, JSON patch, server-side apply).
    pub(crate) async fn patch(
        &self,
        kind: PatchKind,
        body: &Bytes,
    ) -> Result<Response<Body>, ApiError> {
        let resource = self.target.resource;
        let name = self.target.name.clone().unwrap_or_default();
        let (object, outcome, warnings) = self
            .update(|store: &Store| {
                store.plan_patch(&resource, self.namespace(), &name, kind, body, &self.ctx)
            })
            .await?;
        let code = if outcome == Outcome::Created {
            201
        } else {
            200
        };
        Ok(respond(code, &object, &warnings))
    }

    /// Plan, admit and store an update, starting over when the object changed meanwhile.
    async fn update(
        &self,
        plan: impl Fn(&Store) -> Result<Plan, ApiError>,
    ) -> Result<(Value, Outcome, Vec<String>), ApiError> {
        let resource = self.target.resource;
        let name = self.target.name.clone().unwrap_or_default();
        for _ in 0..RETRIES {
            let mut warnings = Vec::new();
            let planned = plan(&lock(&self.shared.store))?;
            let (object, old, ownership) = match planned {
                Plan::Create { object, managers } => {
                    let created = self
                        .admit_create(object, Some(managers), &mut warnings)
                        .await?;
                    return Ok((created, Outcome::Created, warnings));
                }
                Plan::Update {
                    object,
                    old,
                    ownership,
                } => (object, old, ownership),
            };
            let mut attrs = self.attributes("UPDATE");
            attrs.object = object;
            attrs.old_object = old;
            attrs.options = write_options("UpdateOptions", self.query, self.ctx.dry_run);
            admission::mutate(self.shared, &mut attrs, &mut warnings).await?;
            let prepared = {
                let store = lock(&self.shared.store);
                // The webhooks saw `old`: if it changed meanwhile, admit again from the start.
                let changed = store
                    .get(&resource, self.namespace(), &name)
                    .is_ok_and(|current| {
                        current["metadata"]["resourceVersion"]
                            != attrs.old_object["metadata"]["resourceVersion"]
                    });
                if changed {
                    continue;
                }
                store.prepare_update(
                    &resource,
                    self.namespace(),
                    &name,
                    attrs.object.clone(),
                    &self.ctx,
                    ownership,
                )?
            };
            attrs.object = prepared.object();
            admission::validate(self.shared, &attrs, &mut warnings).await?;
            let committed = lock(&self.shared.store).commit_prepared_update(prepared, &self.ctx);
            if let Some((object, outcome)) = committed {
                self.shared.notify();
                return Ok((object, outcome, warnings));
            }
        }
        Err(ApiError::stale(&resource, &name))
    }

    /// DELETE of one object, through admission.
    pub(crate) async fn delete(&self, options: &Value) -> Result<Response<Body>, ApiError> {
        let name = self.target.name.clone().unwrap_or_default();
        let mut warnings = Vec::new();
        let (object, outcome) = self.delete_one(&name, options, &mut warnings).await?;
        let code = if outcome == Outcome::Pending {
            202
        } else {
            200
        };
        Ok(respond(code, &object, &warnings))
    }

    /// `options`: the DeleteOptions body (an empty object when none was sent).
    pub(crate) async fn delete_one(
        &self,
        name: &str,
        options: &Value,
        warnings: &mut Vec<String>,
    ) -> Result<(Value, Outcome), ApiError> {
        let resource = self.target.resource;
        let dry_run =
            self.ctx.dry_run || options["dryRun"].as_array().is_some_and(|a| !a.is_empty());
        let mut sent = json!({ "kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1" });
        if let (Some(out), Some(given)) = (sent.as_object_mut(), options.as_object()) {
            for (k, v) in given
                .iter()
                .filter(|(k, _)| *k != "kind" && *k != "apiVersion")
            {
                out.insert(k.clone(), v.clone());
            }
        }
        if dry_run {
            sent["dryRun"] = json!(["All"]);
        }
        for _ in 0..RETRIES {
            let old = lock(&self.shared.store).get(&resource, self.namespace(), name)?;
            let mut attrs = self.attributes("DELETE");
            attrs.name = name.to_string();
            attrs.old_object = old.clone();
            attrs.options = sent.clone();
            attrs.dry_run = dry_run;
            admission::mutate(self.shared, &mut attrs, warnings).await?;
            admission::validate(self.shared, &attrs, warnings).await?;
            let deleted = {
                let mut store = lock(&self.shared.store);
                let current = store.get(&resource, self.namespace(), name)?;
                if current["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"] {
                    continue;
                }
                store.delete(&resource, self.namespace(), name, options, dry_run)?
            };
            self.shared.notify();
            return Ok(deleted);
        }
        Err(ApiError::stale(&resource, name))
    }

    /// DELETE on a collection: each matching object through admission, one by one.
    pub(crate) async fn delete_collection(
        &self,
        names: Vec<(String, String)>,
        options: &Value,
    ) -> Result<(Vec<Value>, Vec<String>), ApiError> {
        let mut warnings = Vec::new();
        let mut items = Vec::new();
        for (namespace, name) in names {
            let target = Target {
                namespace: (!namespace.is_empty()).then_some(namespace),
                name: Some(name.clone()),
                ..self.target.clone()
            };
            let one = Write {
                shared: self.shared,
                target: &target,
                query: self.query,
                user: self.user.clone(),
                ctx: self.ctx.clone(),
            };
            match one.delete_one(&name, options, &mut warnings).await {
                Ok((object, _)) => items.push(object),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok((items, warnings))
    }
}
