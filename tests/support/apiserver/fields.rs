//! Field ownership ("managedFields") and server-side apply, simplified: ownership is tracked per
//! leaf path of maps, lists are atomic, and only the parts of an object that SSA manages are
//! tracked (everything but apiVersion/kind/status, and from metadata only labels, annotations,
//! ownerReferences and finalizers; on the `status` subresource only `.status`).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// A path of map keys from the object root, e.g. `["metadata", "labels", "app"]`.
pub(crate) type FieldPath = Vec<String>;
pub(crate) type FieldSet = BTreeSet<FieldPath>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operation {
    Apply,
    Update,
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ManagedEntry {
    pub manager: String,
    pub operation: Operation,
    /// `Some("status")` for writes through the status subresource.
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

/// A field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Conflict {
    pub manager: String,
    pub path: FieldPath,
}

/// Who writes, through which subresource, when.
pub(crate) struct Writer<'a> {
    pub manager: &'a str,
    pub subresource: Option<&'a str>,
    pub api_version: &'a str,
    pub now: &'a str,
    /// Whether `.status` is a subresource (then the main resource does not own it).
    pub status_is_subresource: bool,
}

/// The part of an object that ownership is tracked for.
pub(crate) fn tracked(object: &Value, writer: &Writer<'_>) -> Value {
    let mut out = Map::new();
    let Some(map) = object.as_object() else {
        return Value::Object(out);
    };
    if writer.subresource == Some("status") {
        if let Some(status) = map.get("status") {
            out.insert("status".into(), status.clone());
        }
        return Value::Object(out);
    }
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" => {}
            "status" if writer.status_is_subresource => {}
            "metadata" => {
                let mut meta = Map::new();
                for k in ["labels", "annotations", "ownerReferences", "finalizers"] {
                    if let Some(v) = value.get(k) {
                        meta.insert(k.into(), v.clone());
                    }
                }
                out.insert(key.clone(), Value::Object(meta));
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// Leaf paths of a value: non-empty maps are descended, everything else (lists included) is a
/// leaf; `null`s and empty maps own nothing.
pub(crate) fn leaves(value: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        match v {
            Value::Null => {}
            Value::Object(m) if m.is_empty() => {}
            Value::Object(m) => {
                for (k, child) in m {
                    path.push(k.clone());
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ if !path.is_empty() => {
                out.insert(path.clone());
            }
            _ => {}
        }
    }
    let mut out = FieldSet::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

pub(crate) fn get_path<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, k| v.as_object()?.get(k))
}

fn set_path(value: &mut Value, path: &[String], new: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cursor = value;
    for key in parents {
        if !cursor.is_object() {
            *cursor = Value::Object(Map::new());
        }
        let Some(map) = cursor.as_object_mut() else {
            return;
        };
        cursor = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !cursor.is_object() {
            *cursor = Value::Object(Map::new());
        }
    }
    if let Some(map) = cursor.as_object_mut() {
        map.insert(last.clone(), new);
    }
}

/// Removes a path and then any map it leaves empty (but never `metadata` itself).
fn remove_path(value: &mut Value, path: &[String]) {
    for depth in (1..=path.len()).rev() {
        let (parent, key) = (&path[..depth - 1], &path[depth - 1]);
        let Some(map) = get_path_mut(value, parent).and_then(Value::as_object_mut) else {
            return;
        };
        let remove = depth == path.len()
            || map
                .get(key)
                .is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
        if !remove || (depth == 1 && key == "metadata") {
            return;
        }
        map.remove(key);
    }
}

fn get_path_mut<'a>(value: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter()
        .try_fold(value, |v, k| v.as_object_mut()?.get_mut(k))
}

fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn same_slot(e: &ManagedEntry, writer: &Writer<'_>, operation: Operation) -> bool {
    e.manager == writer.manager
        && e.operation == operation
        && e.subresource.as_deref() == writer.subresource
}

/// A non-apply write (create, update, patch): the writer takes every field it changed from
/// whoever owned it, and fields it removed are owned by nobody.
pub(crate) fn record_update(
    managers: &mut Vec<ManagedEntry>,
    old: Option<&Value>,
    new: &Value,
    writer: &Writer<'_>,
) {
    let new_t = tracked(new, writer);
    let old_t = old.map(|o| tracked(o, writer));
    let changed: FieldSet = leaves(&new_t)
        .into_iter()
        .filter(|p| old_t.as_ref().and_then(|o| get_path(o, p)) != get_path(&new_t, p))
        .collect();
    let removed: FieldSet = old_t
        .as_ref()
        .map(leaves)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| get_path(&new_t, p).is_none())
        .collect();
    for entry in managers.iter_mut() {
        if entry.subresource.as_deref() != writer.subresource {
            continue;
        }
        entry
            .fields
            .retain(|f| !changed.iter().chain(removed.iter()).any(|c| overlaps(f, c)));
    }
    if !changed.is_empty() {
        match managers
            .iter_mut()
            .find(|e| same_slot(e, writer, Operation::Update))
        {
            Some(entry) => {
                entry.fields.extend(changed);
                entry.time = writer.now.to_string();
            }
            None => managers.push(ManagedEntry {
                manager: writer.manager.to_string(),
                operation: Operation::Update,
                subresource: writer.subresource.map(str::to_string),
                api_version: writer.api_version.to_string(),
                time: writer.now.to_string(),
                fields: changed,
            }),
        }
    }
    managers.retain(|e| !e.fields.is_empty());
}

/// Server-side apply of `config` over `live` (`None`: the object is created from `config`).
/// Returns the merged object and the new ownership, or the conflicts when `force` is false.
pub(crate) fn apply(
    live: Option<&Value>,
    managers: &[ManagedEntry],
    config: &Value,
    force: bool,
    writer: &Writer<'_>,
) -> Result<(Value, Vec<ManagedEntry>), Vec<Conflict>> {
    let config_t = tracked(config, writer);
    let config_leaves = leaves(&config_t);
    let Some(live) = live else {
        let entry = ManagedEntry {
            manager: writer.manager.to_string(),
            operation: Operation::Apply,
            subresource: writer.subresource.map(str::to_string),
            api_version: writer.api_version.to_string(),
            time: writer.now.to_string(),
            fields: config_leaves,
        };
        return Ok((config.clone(), vec![entry]));
    };
    let live_t = tracked(live, writer);
    let mine = |e: &ManagedEntry| same_slot(e, writer, Operation::Apply);
    let others = || {
        managers
            .iter()
            .filter(move |e| !mine(e) && e.subresource.as_deref() == writer.subresource)
    };

    let mut conflicts = Vec::new();
    for path in &config_leaves {
        if get_path(&live_t, path) == get_path(&config_t, path) {
            continue;
        }
        for entry in others() {
            if entry.fields.iter().any(|f| overlaps(f, path)) {
                conflicts.push(Conflict {
                    manager: entry.manager.clone(),
                    path: path.clone(),
                });
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }

    let mut merged = live.clone();
    let previous = managers
        .iter()
        .find(|e| mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for path in previous.difference(&config_leaves) {
        if !others().any(|e| e.fields.contains(path)) {
            remove_path(&mut merged, path);
        }
    }
    for path in &config_leaves {
        if let Some(v) = get_path(&config_t, path) {
            set_path(&mut merged, path, v.clone());
        }
    }

    let mut next: Vec<ManagedEntry> = managers.to_vec();
    if force {
        for entry in next
            .iter_mut()
            .filter(|e| !mine(e) && e.subresource.as_deref() == writer.subresource)
        {
            entry
                .fields
                .retain(|f| !conflicts.iter().any(|c| overlaps(f, &c.path)));
        }
    }
    match next.iter_mut().find(|e| mine(e)) {
        Some(entry) if entry.fields == config_leaves => {}
        Some(entry) => {
            entry.fields = config_leaves;
            entry.time = writer.now.to_string();
        }
        None => next.push(ManagedEntry {
            manager: writer.manager.to_string(),
            operation: Operation::Apply,
            subresource: writer.subresource.map(str::to_string),
            api_version: writer.api_version.to_string(),
            time: writer.now.to_string(),
            fields: config_leaves,
        }),
    }
    next.retain(|e| !e.fields.is_empty());
    Ok((merged, next))
}

/// `metadata.managedFields` as the API server renders it (FieldsV1, `f:` keys).
pub(crate) fn render(managers: &[ManagedEntry]) -> Value {
    let entries: Vec<Value> = managers
        .iter()
        .map(|e| {
            let mut tree = Value::Object(Map::new());
            for path in &e.fields {
                let prefixed: Vec<String> = path.iter().map(|k| format!("f:{k}")).collect();
                set_path(&mut tree, &prefixed, json!({}));
            }
            let mut v = json!({
                "manager": e.manager,
                "operation": match e.operation { Operation::Apply => "Apply", Operation::Update => "Update" },
                "apiVersion": e.api_version,
                "time": e.time,
                "fieldsType": "FieldsV1",
                "fieldsV1": tree,
            });
            if let Some(sub) = &e.subresource {
                v["subresource"] = json!(sub);
            }
            v
        })
        .collect();
    Value::Array(entries)
}

/// The 409 message of a failed apply, in the real API's words.
pub(crate) fn conflict_message(conflicts: &[Conflict], api_version: &str) -> (String, Vec<Value>) {
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {api_version}: .{}",
                c.manager,
                c.path.join(".")
            )
        })
        .collect();
    let causes = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{}\" using {api_version}", c.manager),
                "field": format!(".{}", c.path.join(".")),
            })
        })
        .collect();
    let message = match lines.as_slice() {
        [one] => format!("Apply failed with 1 conflict: {one}"),
        many => format!(
            "Apply failed with {} conflicts: {}",
            many.len(),
            many.join("\n")
        ),
    };
    (message, causes)
}
