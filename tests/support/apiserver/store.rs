//! The stand-in's state: objects, the global resourceVersion, field ownership and the event log
//! that watches read. Pure and synchronous (the HTTP layer holds it behind a mutex); every verb
//! here behaves like the real API server's for the same request.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{BuildHasher, Hasher};

use serde_json::{Map, Value, json};

use super::fields::{self, ManagedEntry, Writer};
use super::resource::{NAMESPACE, POD, RESOURCES, Resource, SECRET};
use super::selector::Selectors;
use super::status::ApiError;
use super::validate;
use crate::support::upstream::{Violation, try_crd_validator};

type Key = (&'static str, &'static str, String, String);

#[derive(Clone, Debug)]
struct Stored {
    /// The object as stored, without `metadata.managedFields` (rendered from `managers`).
    object: Value,
    managers: Vec<ManagedEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change, as watches replay it.
#[derive(Clone, Debug)]
pub(crate) struct Logged {
    pub rv: u64,
    pub resource: Resource,
    pub namespace: String,
    pub kind: EventType,
    /// The object after the change (for DELETED: its last state, with the deletion's version).
    pub object: Value,
    /// The object before the change, so selector watches can turn a MODIFIED that leaves the
    /// selection into a DELETED, as the real watch cache does.
    pub previous: Option<Value>,
}

/// How a patch body is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

/// Who writes, how.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteCtx {
    /// `fieldManager`, or the one derived from the User-Agent for non-apply writes.
    pub manager: String,
    /// Whether `fieldManager` was given explicitly (apply requires it).
    pub explicit_manager: bool,
    pub dry_run: bool,
    pub subresource: Option<String>,
    pub force: bool,
}

/// What a write did, so the HTTP layer can pick 200/201/202.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Created,
    Updated,
    /// DELETE of an object with finalizers: marked, still there.
    Pending,
    Removed,
}

/// How a write changes field ownership.
#[derive(Clone, Debug)]
pub(crate) enum Ownership {
    /// An update by the request's manager (ownership of what it changed).
    Update,
    /// Ownership computed by server-side apply.
    Set(Vec<ManagedEntry>),
}

/// What a write request turns into before admission.
#[derive(Clone, Debug)]
pub(crate) enum Plan {
    /// The new object (what mutating webhooks see as `object`) and the stored one (`oldObject`).
    Update {
        object: Value,
        old: Value,
        ownership: Ownership,
    },
    /// An apply to a missing object: a create, with the ownership apply computed.
    Create {
        object: Value,
        managers: Vec<ManagedEntry>,
    },
}

/// A write checked and completed but not stored yet: its object is what validating webhooks see.
#[derive(Clone, Debug)]
pub(crate) struct Prepared {
    resource: Resource,
    key: Key,
    /// The stored state it was prepared from (`None` for a create).
    old: Option<Stored>,
    new: Stored,
    /// An update that leaves a deleted object with no finalizers: it is removed.
    finished: bool,
}

impl Prepared {
    /// The object as it will be stored (with `managedFields`).
    pub(crate) fn object(&self) -> Value {
        render(&self.new)
    }
}

pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<Key, Stored>,
    log: VecDeque<Logged>,
    log_capacity: usize,
    /// Events with a resourceVersion up to this one are gone from the log.
    compacted: u64,
    rng: u64,
    /// Whether dependents whose owners are all gone are deleted (the real garbage collector).
    garbage_collection: bool,
}

pub(crate) fn now() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    time::OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_default()
}

fn key(resource: &Resource, namespace: Option<&str>, name: &str) -> Key {
    let ns = if resource.namespaced {
        namespace.unwrap_or("")
    } else {
        ""
    };
    (
        resource.group,
        resource.plural,
        ns.to_string(),
        name.to_string(),
    )
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    object["metadata"][field].as_str()
}

fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        None => unreachable!("metadata was just made an object"),
    }
}

/// The part of an object whose change bumps `metadata.generation`.
fn spec_part(object: &Value) -> Value {
    let mut v = object.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn render(stored: &Stored) -> Value {
    let mut object = stored.object.clone();
    if !stored.managers.is_empty() {
        meta_mut(&mut object).insert("managedFields".into(), fields::render(&stored.managers));
    }
    object
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    pub(crate) fn new() -> Self {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            | 1;
        let mut store = Self {
            rv: 0,
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            log_capacity: 4096,
            compacted: 0,
            rng: seed,
            garbage_collection: true,
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            // Seeding cannot fail: the names are valid and do not exist yet.
            let _ = store.insert(
                json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } }),
            );
        }
        store
    }

    pub(crate) fn resource_version(&self) -> u64 {
        self.rv
    }

    pub(crate) fn set_log_capacity(&mut self, capacity: usize) {
        self.log_capacity = capacity.max(1);
        self.trim_log();
    }

    /// Forgets every logged event, so a watch from an older resourceVersion gets 410 Gone.
    pub(crate) fn compact(&mut self) {
        self.log.clear();
        self.compacted = self.rv;
    }

    fn trim_log(&mut self) {
        while self.log.len() > self.log_capacity {
            if let Some(e) = self.log.pop_front() {
                self.compacted = e.rv;
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: uniqueness and variety are all that matter here.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn new_uid(&mut self) -> String {
        let (a, b) = (self.next_random(), self.next_random());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    fn generated_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut r = self.next_random();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
                r /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    fn record(
        &mut self,
        resource: Resource,
        kind: EventType,
        object: Value,
        previous: Option<Value>,
    ) {
        let namespace = meta_str(&object, "namespace").unwrap_or("").to_string();
        self.log.push_back(Logged {
            rv: self.rv,
            resource,
            namespace,
            kind,
            object,
            previous,
        });
        self.trim_log();
    }

    /// Events after `rv`, or 410 when some of them were compacted away.
    pub(crate) fn events_after(&self, rv: u64) -> Result<impl Iterator<Item = &Logged>, ApiError> {
        if rv < self.compacted {
            return Err(ApiError::expired(rv, self.compacted));
        }
        Ok(self.log.iter().filter(move |e| e.rv > rv))
    }

    /// Oldest resourceVersion a watch may still start from.
    pub(crate) fn compacted(&self) -> u64 {
        self.compacted
    }

    pub(crate) fn get(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.objects
            .get(&key(resource, namespace, name))
            .map(render)
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    pub(crate) fn list(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        selectors: &Selectors,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|((g, p, ns, _), _)| {
                *g == resource.group
                    && *p == resource.plural
                    && (namespace.is_none()
                        || !resource.namespaced
                        || namespace == Some(ns.as_str()))
            })
            .map(|(_, s)| render(s))
            .filter(|o| selectors.matches(o))
            .collect()
    }

    fn validate(&self, resource: &Resource, object: &mut Value) -> Result<(), ApiError> {
        let mut violations: Vec<Violation> = validate::check_metadata(resource, object);
        violations.extend(validate::check_builtin(resource, object)?);
        if let Some(crd) = resource.crd {
            match try_crd_validator(crd) {
                Ok(Some(validator)) => violations.extend(validator.admit(object)),
                Ok(None) => {}
                Err(e) => return Err(ApiError::internal(e)),
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            let name = meta_str(object, "name").unwrap_or("").to_string();
            Err(ApiError::invalid_object(resource, &name, &violations))
        }
    }

    /// Checks and completes what a client sent: types, metadata, name and namespace against the URL.
    pub(crate) fn incoming(
        resource: &Resource,
        namespace: Option<&str>,
        url_name: Option<&str>,
        body: Value,
        require_types: bool,
    ) -> Result<Value, ApiError> {
        let mut object = match body {
            Value::Object(m) => Value::Object(m),
            other => {
                return Err(ApiError::bad_request(format!(
                    "{} in version \"{}\" cannot be handled as a {}: json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                    resource.kind,
                    resource.version,
                    resource.kind,
                    match other {
                        Value::Array(_) => "array",
                        Value::String(_) => "string",
                        Value::Number(_) => "number",
                        Value::Bool(_) => "bool",
                        _ => "null",
                    }
                )));
            }
        };
        for (field, expected) in [
            ("apiVersion", resource.api_version()),
            ("kind", resource.kind.to_string()),
        ] {
            match object.get(field).and_then(Value::as_str) {
                Some(v) if v == expected => {}
                Some(v) if field == "apiVersion" => {
                    return Err(ApiError::bad_request(format!(
                        "the API version in the data ({v}) does not match the expected API version ({expected})"
                    )));
                }
                Some(v) => {
                    return Err(ApiError::bad_request(format!(
                        "the kind in the data ({v}) does not match the expected kind ({expected})"
                    )));
                }
                None if require_types => {
                    return Err(ApiError::bad_request(format!(
                        "Object '{}' is missing in '{}'",
                        if field == "kind" {
                            "Kind"
                        } else {
                            "apiVersion"
                        },
                        object
                    )));
                }
                None => object[field] = json!(expected),
            }
        }
        if !object["metadata"].is_null() && !object["metadata"].is_object() {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        let meta = meta_mut(&mut object);
        meta.remove("managedFields");
        if resource.namespaced {
            let ns = namespace.unwrap_or("");
            match meta.get("namespace").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        if let Some(url_name) = url_name {
            match meta.get("name").and_then(Value::as_str) {
                Some(given) if !given.is_empty() && given != url_name => {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({given}) does not match the name on the URL ({url_name})"
                    )));
                }
                _ => {
                    meta.insert("name".into(), json!(url_name));
                }
            }
        }
        Ok(object)
    }

    pub(crate) fn check_namespace(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
    ) -> Result<(), ApiError> {
        if !resource.namespaced {
            return Ok(());
        }
        let ns = namespace.unwrap_or("");
        if self.objects.contains_key(&key(&NAMESPACE, None, ns)) {
            Ok(())
        } else {
            Err(ApiError::not_found(&NAMESPACE, ns))
        }
    }

    /// Seeds an object as if a client had created it (same checks), keeping any `.status`.
    pub(crate) fn insert(&mut self, object: Value) -> Result<Value, ApiError> {
        let api_version = object["apiVersion"].as_str().unwrap_or("");
        let kind = object["kind"].as_str().unwrap_or("");
        let resource = RESOURCES
            .into_iter()
            .find(|r| r.api_version() == api_version && r.kind == kind)
            .ok_or_else(|| {
                ApiError::bad_request(format!("no resource served for {api_version} {kind}"))
            })?;
        let namespace = meta_str(&object, "namespace").map(str::to_string);
        let namespace = namespace.or_else(|| resource.namespaced.then(|| "default".to_string()));
        let ctx = WriteCtx {
            manager: "sparkward-tests".into(),
            ..WriteCtx::default()
        };
        self.create_inner(&resource, namespace.as_deref(), object, &ctx, true, None)
            .map(|(v, _)| v)
    }

    /// POST.
    pub(crate) fn create(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        body: Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        self.create_inner(resource, namespace, body, ctx, false, None)
            .map(|(v, _)| v)
    }

    fn create_inner(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        body: Value,
        ctx: &WriteCtx,
        seeding: bool,
        managers: Option<Vec<ManagedEntry>>,
    ) -> Result<(Value, Outcome), ApiError> {
        let object = Self::incoming(resource, namespace, None, body, !seeding)?;
        self.check_namespace(resource, namespace)?;
        let prepared = self.prepare_create(resource, namespace, object, ctx, seeding, managers)?;
        self.commit_create(prepared, ctx)
    }

    /// What a POST's body becomes before admission: checked types, namespace from the URL, no
    /// `managedFields`; 404 when the namespace does not exist (as NamespaceLifecycle answers
    /// before any webhook is called).
    pub(crate) fn admission_input_create(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        body: Value,
    ) -> Result<Value, ApiError> {
        let object = Self::incoming(resource, namespace, None, body, true)?;
        self.check_namespace(resource, namespace)?;
        Ok(object)
    }

    /// The registry's `BeforeCreate` on an admitted object: `generateName` resolved, `uid`,
    /// `creationTimestamp` and `generation` set, server-owned fields cleared, the object
    /// validated and its field ownership recorded. Nothing is stored yet.
    pub(crate) fn prepare_create(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        mut object: Value,
        ctx: &WriteCtx,
        seeding: bool,
        managers: Option<Vec<ManagedEntry>>,
    ) -> Result<Prepared, ApiError> {
        let now = now();
        let generated = match (meta_str(&object, "name"), meta_str(&object, "generateName")) {
            (Some(n), _) if !n.is_empty() => None,
            (_, Some(prefix)) if !prefix.is_empty() => {
                Some(format!("{prefix}{}", self.generated_suffix()))
            }
            _ => None,
        };
        let uid = self.new_uid();
        let meta = meta_mut(&mut object);
        if let Some(name) = generated {
            meta.insert("name".into(), json!(name));
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("creationTimestamp".into(), json!(now));
        meta.insert("generation".into(), json!(1));
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ] {
            meta.remove(field);
        }
        if *resource == NAMESPACE {
            let name = meta.get("name").cloned().unwrap_or(json!(""));
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert("kubernetes.io/metadata.name".into(), name);
            }
        }
        if !seeding
            && resource.status_subresource
            && let Some(m) = object.as_object_mut()
        {
            m.remove("status");
        }
        if *resource == NAMESPACE && (object["spec"].is_object() || object["spec"].is_null()) {
            object["spec"]["finalizers"] = object["spec"]["finalizers"]
                .as_array()
                .map_or(json!(["kubernetes"]), |f| json!(f));
            if object["status"]["phase"].is_null() {
                object["status"] = json!({ "phase": "Active" });
            }
        }
        if *resource == POD && object["status"]["phase"].is_null() {
            object["status"] = json!({ "phase": "Pending" });
        }
        if *resource == SECRET {
            validate::normalize_secret(&mut object);
        }
        self.validate(resource, &mut object)?;
        let name = meta_str(&object, "name").unwrap_or("").to_string();
        let managers = managers.unwrap_or_else(|| {
            let mut m = Vec::new();
            let api_version = resource.api_version();
            let writer = Writer {
                manager: &ctx.manager,
                subresource: None,
                api_version: &api_version,
                now: &now,
                status_is_subresource: resource.status_subresource,
            };
            fields::record_update(&mut m, None, &object, &writer);
            m
        });
        Ok(Prepared {
            resource: *resource,
            key: key(resource, namespace, &name),
            old: None,
            new: Stored { object, managers },
            finished: false,
        })
    }

    /// Stores a prepared create: 409 AlreadyExists when the name is taken (checked at storage,
    /// after validating admission, as etcd's create does).
    pub(crate) fn commit_create(
        &mut self,
        prepared: Prepared,
        ctx: &WriteCtx,
    ) -> Result<(Value, Outcome), ApiError> {
        let Prepared {
            resource,
            key: k,
            new: mut stored,
            ..
        } = prepared;
        if self.objects.contains_key(&k) {
            return Err(ApiError::already_exists(&resource, &k.3));
        }
        if ctx.dry_run {
            return Ok((render(&stored), Outcome::Created));
        }
        self.rv += 1;
        meta_mut(&mut stored.object).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let rendered = render(&stored);
        self.objects.insert(k, stored);
        self.record(resource, EventType::Added, rendered.clone(), None);
        Ok((rendered, Outcome::Created))
    }

    /// PUT (to the object or a subresource).
    pub(crate) fn replace(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        let object = Self::incoming(resource, namespace, Some(name), body, true)?;
        self.commit_update(resource, namespace, name, object, ctx, Ownership::Update)
            .map(|(v, _)| v)
    }

    /// What a PUT's body becomes before admission, with the stored object it replaces
    /// (404 when there is none: nothing is created by an update here).
    pub(crate) fn plan_replace(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        body: Value,
    ) -> Result<Plan, ApiError> {
        let object = Self::incoming(resource, namespace, Some(name), body, true)?;
        let old = self
            .objects
            .get(&key(resource, namespace, name))
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        Ok(Plan::Update {
            object,
            old: render(old),
            ownership: Ownership::Update,
        })
    }

    /// PATCH in any of the four content types; apply may create.
    pub(crate) fn patch(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        ctx: &WriteCtx,
    ) -> Result<(Value, Outcome), ApiError> {
        match self.plan_patch(resource, namespace, name, kind, body, ctx)? {
            Plan::Update {
                object, ownership, ..
            } => self.commit_update(resource, namespace, name, object, ctx, ownership),
            Plan::Create { object, managers } => {
                let prepared =
                    self.prepare_create(resource, namespace, object, ctx, false, Some(managers))?;
                self.commit_create(prepared, ctx)
            }
        }
    }

    /// The object a PATCH produces (before admission): the patched stored object, or, for an
    /// apply to a missing object, the object to create.
    pub(crate) fn plan_patch(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &[u8],
        ctx: &WriteCtx,
    ) -> Result<Plan, ApiError> {
        if kind == PatchKind::Apply {
            return self.plan_apply(resource, namespace, name, body, ctx);
        }
        if ctx.force {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                &[Violation {
                    field: "force".into(),
                    reason: "FieldValueForbidden",
                    message: "Forbidden: may not be specified for non-apply patch".into(),
                }],
            ));
        }
        let current = self
            .objects
            .get(&key(resource, namespace, name))
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let mut doc = current.object.clone();
        match kind {
            PatchKind::Merge | PatchKind::Strategic => {
                let patch: Value = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                if !patch.is_object() {
                    return Err(ApiError::bad_request(
                        "json: cannot unmarshal into Go value of type map[string]interface {}",
                    ));
                }
                json_patch::merge(&mut doc, &patch);
            }
            PatchKind::Json => {
                let patch: json_patch::Patch = serde_json::from_slice(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
                json_patch::patch(&mut doc, &patch.0).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })?;
            }
            PatchKind::Apply => unreachable!("handled above"),
        }
        let object = Self::incoming(resource, namespace, Some(name), doc, true)?;
        Ok(Plan::Update {
            object,
            old: render(current),
            ownership: Ownership::Update,
        })
    }

    fn plan_apply(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        body: &[u8],
        ctx: &WriteCtx,
    ) -> Result<Plan, ApiError> {
        if !ctx.explicit_manager {
            return Err(ApiError::invalid(
                "meta.k8s.io",
                "PatchOptions",
                "",
                &[Violation {
                    field: "fieldManager".into(),
                    reason: "FieldValueRequired",
                    message: "Required value: is required for apply patch".into(),
                }],
            ));
        }
        let config: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                let text = std::str::from_utf8(body)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
                serde_saphyr::from_str(text)
                    .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
            }
        };
        let config = Self::incoming(resource, namespace, Some(name), config, true)?;
        let api_version = resource.api_version();
        let now = now();
        let writer = Writer {
            manager: &ctx.manager,
            subresource: ctx.subresource.as_deref(),
            api_version: &api_version,
            now: &now,
            status_is_subresource: resource.status_subresource,
        };
        let k = key(resource, namespace, name);
        let Some(current) = self.objects.get(&k) else {
            if ctx.subresource.is_some() {
                return Err(ApiError::not_found(resource, name));
            }
            self.check_namespace(resource, namespace)?;
            let (object, managers) = fields::apply(None, &[], &config, ctx.force, &writer)
                .map_err(|_| ApiError::internal("apply to a new object cannot conflict"))?;
            return Ok(Plan::Create { object, managers });
        };
        if let Some(rv) = meta_str(&config, "resourceVersion")
            && !rv.is_empty()
            && Some(rv) != meta_str(&current.object, "resourceVersion")
        {
            return Err(ApiError::stale(resource, name));
        }
        match fields::apply(
            Some(&current.object),
            &current.managers,
            &config,
            ctx.force,
            &writer,
        ) {
            Ok((merged, managers)) => Ok(Plan::Update {
                object: merged,
                old: render(current),
                ownership: Ownership::Set(managers),
            }),
            Err(conflicts) => {
                let (message, causes) = fields::conflict_message(&conflicts, &api_version);
                let mut err = ApiError::new(409, "Conflict", message);
                let mut details =
                    json!({ "name": name, "kind": resource.plural, "causes": causes });
                if !resource.group.is_empty() {
                    details["group"] = json!(resource.group);
                }
                err.details = Some(details);
                Err(err)
            }
        }
    }

    fn commit_update(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        new: Value,
        ctx: &WriteCtx,
        ownership: Ownership,
    ) -> Result<(Value, Outcome), ApiError> {
        let prepared = self.prepare_update(resource, namespace, name, new, ctx, ownership)?;
        match self.commit_prepared_update(prepared, ctx) {
            Some(done) => Ok(done),
            None => Err(ApiError::internal(
                "the object changed under an exclusive lock",
            )),
        }
    }

    /// The registry's `BeforeUpdate` on an admitted object: preconditions, the endpoint's part of
    /// the object (a subresource changes only its own fields), server-owned metadata kept,
    /// validation, generation and field ownership. Nothing is stored yet.
    pub(crate) fn prepare_update(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        mut new: Value,
        ctx: &WriteCtx,
        ownership: Ownership,
    ) -> Result<Prepared, ApiError> {
        let k = key(resource, namespace, name);
        let old = self
            .objects
            .get(&k)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let old_uid = meta_str(&old.object, "uid").unwrap_or("").to_string();
        let old_rv = meta_str(&old.object, "resourceVersion")
            .unwrap_or("")
            .to_string();
        if let Some(uid) = meta_str(&new, "uid")
            && !uid.is_empty()
            && uid != old_uid
        {
            return Err(ApiError::conflict(
                resource,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {old_uid}"
                ),
            ));
        }
        if let Some(rv) = meta_str(&new, "resourceVersion")
            && !rv.is_empty()
            && rv != old_rv
        {
            return Err(ApiError::stale(resource, name));
        }
        // Each endpoint changes only its own part of the object.
        match ctx.subresource.as_deref() {
            Some("status") => {
                let status = new.get("status").cloned();
                // kube-apiserver's podStatusStrategy resets only the spec, the deletion
                // timestamp and the ownerReferences: pods/status also writes labels,
                // annotations and finalizers (hence NodeRestriction's rules for kubelets).
                // Every other status endpoint (custom resources included) writes status alone.
                let pod_metadata = (*resource == POD).then(|| new["metadata"].clone());
                new = old.object.clone();
                match (status, new.as_object_mut()) {
                    (Some(s), Some(m)) => {
                        m.insert("status".into(), s);
                    }
                    (None, Some(m)) => {
                        m.remove("status");
                    }
                    _ => {}
                }
                if let Some(sent) = pod_metadata {
                    let meta = meta_mut(&mut new);
                    for field in ["labels", "annotations", "finalizers"] {
                        match sent.get(field) {
                            Some(v) => meta.insert(field.into(), v.clone()),
                            None => meta.remove(field),
                        };
                    }
                }
            }
            Some("ephemeralcontainers") => {
                let containers = new["spec"].get("ephemeralContainers").cloned();
                new = old.object.clone();
                match containers {
                    Some(c) if new["spec"].is_object() => new["spec"]["ephemeralContainers"] = c,
                    Some(_) => return Err(ApiError::bad_request("spec must be an object")),
                    None => {
                        if let Some(spec) = new["spec"].as_object_mut() {
                            spec.remove("ephemeralContainers");
                        }
                    }
                }
            }
            _ if resource.status_subresource => {
                match (old.object.get("status").cloned(), new.as_object_mut()) {
                    (Some(s), Some(m)) => {
                        m.insert("status".into(), s);
                    }
                    (None, Some(m)) => {
                        m.remove("status");
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        // System-owned metadata is never taken from the client.
        let old_meta = old.object["metadata"].clone();
        let meta = meta_mut(&mut new);
        for field in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(field) {
                Some(v) => meta.insert(field.into(), v.clone()),
                None => meta.remove(field),
            };
        }
        meta.remove("managedFields");
        meta.insert("resourceVersion".into(), json!(old_rv));
        if *resource == NAMESPACE {
            let labels = meta.entry("labels").or_insert_with(|| json!({}));
            if let Some(labels) = labels.as_object_mut() {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        if *resource == SECRET {
            validate::normalize_secret(&mut new);
        }
        self.validate(resource, &mut new)?;
        if spec_part(&old.object) != spec_part(&new) {
            let generation = old.object["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(generation));
        }
        let now = now();
        let api_version = resource.api_version();
        let managers = match ownership {
            Ownership::Set(m) => m,
            Ownership::Update => {
                let mut m = old.managers.clone();
                let writer = Writer {
                    manager: &ctx.manager,
                    subresource: ctx.subresource.as_deref(),
                    api_version: &api_version,
                    now: &now,
                    status_is_subresource: resource.status_subresource,
                };
                fields::record_update(&mut m, Some(&old.object), &new, &writer);
                m
            }
        };
        let finished = !new["metadata"]["deletionTimestamp"].is_null()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        Ok(Prepared {
            resource: *resource,
            key: k,
            old: Some(old),
            new: Stored {
                object: new,
                managers,
            },
            finished,
        })
    }

    /// Stores a prepared update; `None` when the stored object changed since it was prepared
    /// (the caller starts over, as the registry's `GuaranteedUpdate` retries).
    pub(crate) fn commit_prepared_update(
        &mut self,
        prepared: Prepared,
        ctx: &WriteCtx,
    ) -> Option<(Value, Outcome)> {
        let Prepared {
            resource,
            key: k,
            old,
            new: stored,
            finished,
        } = prepared;
        let old = old?;
        let current = self.objects.get(&k)?;
        if meta_str(&current.object, "resourceVersion") != meta_str(&old.object, "resourceVersion")
        {
            return None;
        }
        // The real API server skips writes that change nothing: no new resourceVersion, no event.
        if stored.object == old.object && stored.managers == old.managers {
            return Some((render(&old), Outcome::Updated));
        }
        if ctx.dry_run {
            return Some((render(&stored), Outcome::Updated));
        }
        self.rv += 1;
        let mut stored = stored;
        meta_mut(&mut stored.object).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let rendered = render(&stored);
        let previous = Some(render(&old));
        if finished {
            self.objects.remove(&k);
            self.record(resource, EventType::Deleted, rendered.clone(), previous);
            return Some((rendered, Outcome::Removed));
        }
        self.objects.insert(k, stored);
        self.record(resource, EventType::Modified, rendered.clone(), previous);
        Some((rendered, Outcome::Updated))
    }

    /// DELETE with DeleteOptions (`preconditions.uid` / `preconditions.resourceVersion`, `dryRun`).
    pub(crate) fn delete(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<(Value, Outcome), ApiError> {
        let k = key(resource, namespace, name);
        let current = self
            .objects
            .get(&k)
            .cloned()
            .ok_or_else(|| ApiError::not_found(resource, name))?;
        let preconditions = &options["preconditions"];
        for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
            let actual = meta_str(&current.object, field).unwrap_or("");
            if let Some(expected) = preconditions[field].as_str()
                && expected != actual
            {
                return Err(ApiError::conflict(
                    resource,
                    name,
                    &format!(
                        "Precondition failed: {label} in precondition: {expected}, {label} in object meta: {actual}"
                    ),
                ));
            }
        }
        let dry_run = dry_run || options["dryRun"].as_array().is_some_and(|a| !a.is_empty());
        let has_finalizers = current.object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if !current.object["metadata"]["deletionTimestamp"].is_null() || dry_run {
                return Ok((render(&current), Outcome::Pending));
            }
            let mut stored = current.clone();
            self.rv += 1;
            let meta = meta_mut(&mut stored.object);
            meta.insert("deletionTimestamp".into(), json!(now()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            meta.insert("resourceVersion".into(), json!(self.rv.to_string()));
            let rendered = render(&stored);
            self.objects.insert(k, stored);
            self.record(
                *resource,
                EventType::Modified,
                rendered.clone(),
                Some(render(&current)),
            );
            return Ok((rendered, Outcome::Pending));
        }
        if dry_run {
            return Ok((render(&current), Outcome::Removed));
        }
        if options["propagationPolicy"] == "Orphan"
            && let Some(uid) = meta_str(&current.object, "uid")
        {
            let uid = uid.to_string();
            self.orphan_dependents(&uid);
        }
        Ok((self.remove_now(resource, &k), Outcome::Removed))
    }

    pub(crate) fn set_garbage_collection(&mut self, enabled: bool) {
        self.garbage_collection = enabled;
    }

    /// Background-propagation garbage collection, done at once instead of eventually: every
    /// object whose `ownerReferences` name only uids that no longer exist is deleted (through
    /// DELETE semantics, so finalizers still hold it), repeatedly, so chains of owners cascade.
    pub(crate) fn collect_garbage(&mut self) {
        if !self.garbage_collection {
            return;
        }
        loop {
            let live: std::collections::HashSet<String> = self
                .objects
                .values()
                .filter_map(|s| meta_str(&s.object, "uid").map(str::to_string))
                .collect();
            let orphan = self.objects.iter().find_map(|(k, s)| {
                let owners = s.object["metadata"]["ownerReferences"].as_array()?;
                let all_gone = !owners.is_empty()
                    && owners
                        .iter()
                        .all(|o| o["uid"].as_str().is_none_or(|uid| !live.contains(uid)));
                let pending = !s.object["metadata"]["deletionTimestamp"].is_null();
                (all_gone && !pending).then(|| k.clone())
            });
            let Some(k) = orphan else { return };
            let Some(resource) = RESOURCES
                .into_iter()
                .find(|r| r.group == k.0 && r.plural == k.1)
            else {
                return;
            };
            let ns = (!k.2.is_empty()).then(|| k.2.clone());
            if self
                .delete(&resource, ns.as_deref(), &k.3, &json!({}), false)
                .is_err()
            {
                return;
            }
        }
    }

    /// `propagationPolicy: Orphan`: dependents lose their reference to `uid` instead of being
    /// collected.
    fn orphan_dependents(&mut self, uid: &str) {
        let dependents: Vec<Key> = self
            .objects
            .iter()
            .filter(|(_, s)| {
                s.object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|r| r["uid"] == uid))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in dependents {
            let Some(mut stored) = self.objects.get(&k).cloned() else {
                continue;
            };
            let previous = render(&stored);
            if let Some(owners) = stored.object["metadata"]["ownerReferences"].as_array_mut() {
                owners.retain(|r| r["uid"] != uid);
            }
            let Some(resource) = RESOURCES
                .into_iter()
                .find(|r| r.group == k.0 && r.plural == k.1)
            else {
                continue;
            };
            self.rv += 1;
            meta_mut(&mut stored.object)
                .insert("resourceVersion".into(), json!(self.rv.to_string()));
            let rendered = render(&stored);
            self.objects.insert(k, stored);
            self.record(resource, EventType::Modified, rendered, Some(previous));
        }
    }

    /// Removes an object at once (no finalizers honoured), logging DELETED; a namespace takes
    /// its contents with it (the real namespace controller does this asynchronously).
    fn remove_now(&mut self, resource: &Resource, k: &Key) -> Value {
        let Some(mut stored) = self.objects.remove(k) else {
            return Value::Null;
        };
        let previous = render(&stored);
        self.rv += 1;
        meta_mut(&mut stored.object).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let rendered = render(&stored);
        self.record(
            *resource,
            EventType::Deleted,
            rendered.clone(),
            Some(previous),
        );
        if *resource == NAMESPACE {
            let contained: Vec<Key> = self
                .objects
                .keys()
                .filter(|(_, _, ns, _)| *ns == k.3)
                .cloned()
                .collect();
            for child in contained {
                if let Some(r) = RESOURCES
                    .into_iter()
                    .find(|r| r.group == child.0 && r.plural == child.1)
                {
                    self.remove_now(&r, &child);
                }
            }
        }
        rendered
    }

    /// Test helper: removes an object regardless of finalizers.
    pub(crate) fn remove(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let k = key(resource, namespace, name);
        self.objects
            .contains_key(&k)
            .then(|| self.remove_now(resource, &k))
    }

    /// DELETE on a collection: every matching object, one by one.
    pub(crate) fn delete_collection(
        &mut self,
        resource: &Resource,
        namespace: Option<&str>,
        selectors: &Selectors,
        options: &Value,
        dry_run: bool,
    ) -> Result<Vec<Value>, ApiError> {
        let names: Vec<(String, String)> = self
            .list(resource, namespace, selectors)
            .iter()
            .map(|o| {
                (
                    meta_str(o, "namespace").unwrap_or("").to_string(),
                    meta_str(o, "name").unwrap_or("").to_string(),
                )
            })
            .collect();
        let mut out = Vec::new();
        for (ns, name) in names {
            let ns = (!ns.is_empty()).then_some(ns.as_str());
            out.push(self.delete(resource, ns, &name, options, dry_run)?.0);
        }
        Ok(out)
    }
}
