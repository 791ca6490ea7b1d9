//! Webhook registration and matching: MutatingWebhookConfiguration and
//! ValidatingWebhookConfiguration objects (admissionregistration.k8s.io/v1) read from YAML, and
//! the decision whether one webhook is called for a request.
//!
//! Matching follows k8s.io/apiserver's `rules.Matcher`, `namespace.Matcher` and
//! `object.Matcher`: a rule matches on operation, API group, version, `resource` or
//! `resource/subresource` (`*`, `*/*`, `pods/*`, `*/status` as upstream splits them) and scope;
//! the namespace selector is matched against the labels of the request's namespace (the new
//! labels when a namespace itself is created or updated; cluster-scoped requests always match;
//! a namespace's request carries its own name as namespace, as upstream's does); the object
//! selector against the labels of `object` or `oldObject`. `matchConditions` are CEL upstream;
//! here a small subset of CEL is understood (see [`Condition`]) and anything else is refused at
//! registration, so a configuration never silently matches differently.
//!
//! `matchPolicy: Equivalent` would also send requests made through another version of the same
//! resource (converted). The stand-in serves each resource in one version only, so `Exact` and
//! `Equivalent` match the same requests here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::selector::LabelSelector;
use crate::support::webhook::{HttpVersion, WebhookClient};

/// Whether a failed call (unreachable, timed out, invalid answer) fails the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

/// One `rules[]` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub operations: Vec<String>,
    pub api_groups: Vec<String>,
    pub api_versions: Vec<String>,
    pub resources: Vec<String>,
    /// `*` (default), `Cluster` or `Namespaced`.
    pub scope: String,
}

/// What a rule is matched against: the request's operation and resource.
#[derive(Clone, Copy, Debug)]
pub struct RuleTarget<'a> {
    pub operation: &'a str,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    /// `""` for the object itself.
    pub subresource: &'a str,
    /// `""` for cluster-scoped requests.
    pub namespace: &'a str,
}

fn any_or(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

impl Rule {
    fn parse(v: &Value) -> Result<Self, String> {
        let strings = |field: &str| -> Vec<String> {
            v[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        };
        let rule = Self {
            operations: strings("operations"),
            api_groups: strings("apiGroups"),
            api_versions: strings("apiVersions"),
            resources: strings("resources"),
            scope: v["scope"].as_str().unwrap_or("*").to_string(),
        };
        for op in &rule.operations {
            if !["*", "CREATE", "UPDATE", "DELETE", "CONNECT"].contains(&op.as_str()) {
                return Err(format!("rules[].operations: unsupported value {op:?}"));
            }
        }
        if !["*", "Cluster", "Namespaced"].contains(&rule.scope.as_str()) {
            return Err(format!("rules[].scope: unsupported value {:?}", rule.scope));
        }
        Ok(rule)
    }

    /// Whether this rule covers the request (upstream `rules.Matcher.Matches`).
    pub fn matches(&self, t: &RuleTarget<'_>) -> bool {
        // A namespace object is cluster-scoped although its request carries its own name as
        // the namespace.
        let namespace_object = (t.group, t.version, t.resource) == ("", "v1", "namespaces");
        let scope = match self.scope.as_str() {
            "Cluster" => namespace_object || t.namespace.is_empty(),
            "Namespaced" => !namespace_object && !t.namespace.is_empty(),
            _ => true,
        };
        let resource = self.resources.iter().any(|r| {
            let (res, sub) = r.split_once('/').unwrap_or((r.as_str(), ""));
            (res == "*" || res == t.resource) && (sub == "*" || sub == t.subresource)
        });
        scope
            && resource
            && any_or(&self.operations, t.operation)
            && any_or(&self.api_groups, t.group)
            && any_or(&self.api_versions, t.version)
    }
}

/// One registered webhook, from a mutating or validating configuration.
#[derive(Clone)]
pub struct Webhook {
    /// The configuration's `metadata.name`.
    pub configuration: String,
    pub name: String,
    pub mutating: bool,
    /// Where reviews are POSTed (without the `?timeout=` the server appends).
    pub url: String,
    pub rules: Vec<Rule>,
    pub namespace_selector: LabelSelector,
    pub object_selector: LabelSelector,
    pub match_conditions: Vec<(String, Condition)>,
    pub failure_policy: FailurePolicy,
    /// `None`, `NoneOnDryRun` (the only values v1 accepts).
    pub side_effects: String,
    pub timeout: Duration,
    /// `reinvocationPolicy: IfNeeded` (mutating only).
    pub reinvoke_if_needed: bool,
    pub(crate) client: WebhookClient,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("configuration", &self.configuration)
            .field("name", &self.name)
            .field("mutating", &self.mutating)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Where `clientConfig.service` references point instead (no Services or kube-proxy here).
#[derive(Clone, Debug)]
pub struct WebhookTarget {
    /// `https://127.0.0.1:PORT`: a service reference becomes this URL plus its `path`.
    pub base_url: String,
    /// The CA that signed the webhook's serving certificate (when the configuration carries no
    /// `caBundle`).
    pub ca_pem: String,
}

/// One registered configuration: (mutating, name) and its webhooks in order.
type Configuration = ((bool, String), Vec<Arc<Webhook>>);

/// The registered configurations, mutating and validating.
#[derive(Default)]
pub(crate) struct Registry {
    configurations: Vec<Configuration>,
    /// One client (and so one keep-alive pool) per CA and endpoint.
    clients: HashMap<(String, String), WebhookClient>,
}

/// Splits `https://host:port/path` into the origin and the path.
pub(crate) fn split_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("webhook URL {url:?} must use https"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((format!("https://{authority}"), path.to_string()))
}

impl Registry {
    /// Registers (or replaces, by kind and name) one configuration object.
    pub(crate) fn install(&mut self, config: &Value, target: &WebhookTarget) -> Result<(), String> {
        let mutating = match (config["apiVersion"].as_str(), config["kind"].as_str()) {
            (Some("admissionregistration.k8s.io/v1"), Some("MutatingWebhookConfiguration")) => true,
            (Some("admissionregistration.k8s.io/v1"), Some("ValidatingWebhookConfiguration")) => {
                false
            }
            (v, k) => {
                return Err(format!(
                    "not an admissionregistration.k8s.io/v1 webhook configuration: {v:?} {k:?}"
                ));
            }
        };
        let configuration = config["metadata"]["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or("metadata.name is required")?
            .to_string();
        let mut webhooks = Vec::new();
        for (i, hook) in config["webhooks"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let webhook = self
                .parse_webhook(hook, &configuration, mutating, target)
                .map_err(|e| format!("{configuration}: webhooks[{i}]: {e}"))?;
            webhooks.push(Arc::new(webhook));
        }
        let key = (mutating, configuration);
        self.configurations.retain(|(k, _)| *k != key);
        self.configurations.push((key, webhooks));
        // Upstream sorts configurations by name; webhooks keep their order inside one.
        self.configurations.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(())
    }

    fn parse_webhook(
        &mut self,
        hook: &Value,
        configuration: &str,
        mutating: bool,
        target: &WebhookTarget,
    ) -> Result<Webhook, String> {
        let name = hook["name"]
            .as_str()
            .filter(|n| n.contains('.'))
            .ok_or("name must be a fully qualified name (with a dot)")?
            .to_string();
        let versions: Vec<&str> = hook["admissionReviewVersions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !versions.contains(&"v1") {
            return Err(format!(
                "admissionReviewVersions {versions:?}: the stand-in only sends v1"
            ));
        }
        let client_config = &hook["clientConfig"];
        let url = match (client_config["url"].as_str(), &client_config["service"]) {
            (Some(url), _) => url.to_string(),
            (None, service) if service.is_object() => format!(
                "{}{}",
                target.base_url.trim_end_matches('/'),
                service["path"].as_str().unwrap_or("/")
            ),
            _ => return Err("clientConfig needs a url or a service".into()),
        };
        let ca_pem = match client_config["caBundle"].as_str() {
            Some(b64) if !b64.is_empty() => {
                use base64::Engine;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("clientConfig.caBundle is not base64: {e}"))?;
                String::from_utf8(bytes).map_err(|e| format!("clientConfig.caBundle: {e}"))?
            }
            _ => target.ca_pem.clone(),
        };
        let (origin, _) = split_url(&url)?;
        let client = self
            .clients
            .entry((ca_pem.clone(), origin.clone()))
            .or_insert_with(|| WebhookClient::new(&ca_pem, None, HttpVersion::Http1, origin))
            .clone();
        let rules = hook["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Rule::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let side_effects = hook["sideEffects"].as_str().unwrap_or("").to_string();
        if !["None", "NoneOnDryRun"].contains(&side_effects.as_str()) {
            return Err(format!(
                "sideEffects {side_effects:?}: v1 accepts None or NoneOnDryRun"
            ));
        }
        let failure_policy = match hook["failurePolicy"].as_str() {
            None | Some("Fail") => FailurePolicy::Fail,
            Some("Ignore") => FailurePolicy::Ignore,
            Some(other) => return Err(format!("failurePolicy {other:?}")),
        };
        let reinvoke_if_needed = match hook["reinvocationPolicy"].as_str() {
            None | Some("Never") => false,
            Some("IfNeeded") if mutating => true,
            Some(other) => return Err(format!("reinvocationPolicy {other:?}")),
        };
        match hook["matchPolicy"].as_str() {
            None | Some("Equivalent") | Some("Exact") => {}
            Some(other) => return Err(format!("matchPolicy {other:?}")),
        }
        let timeout = hook["timeoutSeconds"].as_u64().unwrap_or(10);
        if !(1..=30).contains(&timeout) {
            return Err(format!("timeoutSeconds {timeout}: must be 1 to 30"));
        }
        let match_conditions = hook["matchConditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let name = c["name"].as_str().unwrap_or("").to_string();
                let expression = c["expression"].as_str().unwrap_or("");
                Condition::parse(expression)
                    .map(|cond| (name.clone(), cond))
                    .map_err(|e| format!("matchConditions[{name}]: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Webhook {
            configuration: configuration.to_string(),
            name,
            mutating,
            url,
            rules,
            namespace_selector: LabelSelector::from_spec(&hook["namespaceSelector"])?,
            object_selector: LabelSelector::from_spec(&hook["objectSelector"])?,
            match_conditions,
            failure_policy,
            side_effects,
            timeout: Duration::from_secs(timeout),
            reinvoke_if_needed,
            client,
        })
    }

    /// Webhooks of one kind, configurations sorted by name.
    pub(crate) fn webhooks(&self, mutating: bool) -> Vec<Arc<Webhook>> {
        self.configurations
            .iter()
            .filter(|((m, _), _)| *m == mutating)
            .flat_map(|(_, hooks)| hooks.iter().cloned())
            .collect()
    }

    pub(crate) fn clear(&mut self) {
        self.configurations.clear();
    }
}

/// Why a webhook is not called, or could not be decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Skip {
    /// No rule, selector or condition matched: the webhook is not called.
    NoMatch,
    /// A match condition could not be evaluated: the failure policy decides.
    ConditionError(String),
}

impl Webhook {
    /// Whether to call this webhook for `request` (the review's `request` object, which holds
    /// `object`, `oldObject` and `userInfo`); `namespace_labels` are the labels of the request's
    /// namespace (ignored for cluster-scoped requests other than namespaces).
    pub(crate) fn should_call(
        &self,
        target: &RuleTarget<'_>,
        namespace_labels: &Value,
        request: &Value,
    ) -> Result<(), Skip> {
        if !self.rules.iter().any(|r| r.matches(target)) {
            return Err(Skip::NoMatch);
        }
        let writes_namespace = target.resource == "namespaces"
            && target.subresource.is_empty()
            && matches!(target.operation, "CREATE" | "UPDATE");
        let namespace_matches = if writes_namespace {
            // The namespace being written: its new labels (the stored ones otherwise).
            self.namespace_selector
                .matches_labels(&request["object"]["metadata"]["labels"])
        } else if target.namespace.is_empty() {
            true
        } else {
            self.namespace_selector.matches_labels(namespace_labels)
        };
        if !namespace_matches {
            return Err(Skip::NoMatch);
        }
        if !self.object_selector.is_empty() {
            let labelled = |o: &Value| {
                o.is_object()
                    && self
                        .object_selector
                        .matches_labels(&o["metadata"]["labels"])
            };
            if !labelled(&request["object"]) && !labelled(&request["oldObject"]) {
                return Err(Skip::NoMatch);
            }
        }
        for (name, condition) in &self.match_conditions {
            match condition.eval(request) {
                Ok(true) => {}
                Ok(false) => return Err(Skip::NoMatch),
                Err(e) => {
                    return Err(Skip::ConditionError(format!(
                        "failed to evaluate match condition {name:?}: {e}"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A `matchConditions` expression in the CEL subset the stand-in evaluates: string, boolean and
/// list literals; the variables `request`, `object` and `oldObject` with `.field` and
/// `["key"]` access; `==`, `!=`, `in`, `!`, `&&`, `||`, parentheses and `has(path)`. A path
/// that does not exist is an evaluation error ("no such key"), as in CEL.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    Literal(Value),
    Path(String, Vec<String>),
    Has(String, Vec<String>),
    List(Vec<Condition>),
    Not(Box<Condition>),
    Equals(Box<Condition>, Box<Condition>, bool),
    In(Box<Condition>, Box<Condition>),
    And(Box<Condition>, Box<Condition>),
    Or(Box<Condition>, Box<Condition>),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Sym(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '\'' || c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string".into()),
                    Some(&q) if q == c => break,
                    Some('\\') => {
                        s.push(*chars.get(i + 1).ok_or("unterminated string")?);
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Token::Str(s));
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while chars
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let sym = ["==", "!=", "&&", "||"]
            .into_iter()
            .find(|s| two == *s)
            .or_else(|| {
                ["!", "(", ")", "[", "]", ".", ","]
                    .into_iter()
                    .find(|s| s.starts_with(c))
            })
            .ok_or_else(|| format!("unsupported character {c:?}"))?;
        i += sym.len();
        out.push(Token::Sym(sym));
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, sym: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Sym(s)) if *s == sym);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, sym: &str) -> Result<(), String> {
        if self.eat(sym) {
            Ok(())
        } else {
            Err(format!("expected {sym:?} at token {}", self.pos))
        }
    }

    fn or(&mut self) -> Result<Condition, String> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, String> {
        let mut left = self.comparison()?;
        while self.eat("&&") {
            left = Condition::And(Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Condition, String> {
        let left = self.unary()?;
        if self.eat("==") {
            return Ok(Condition::Equals(
                Box::new(left),
                Box::new(self.unary()?),
                true,
            ));
        }
        if self.eat("!=") {
            return Ok(Condition::Equals(
                Box::new(left),
                Box::new(self.unary()?),
                false,
            ));
        }
        if self.peek() == Some(&Token::Ident("in".into())) {
            self.pos += 1;
            return Ok(Condition::In(Box::new(left), Box::new(self.unary()?)));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, String> {
        if self.eat("!") {
            return Ok(Condition::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            self.expect(")")?;
            return Ok(inner);
        }
        if self.eat("[") {
            let mut items = Vec::new();
            if !self.eat("]") {
                loop {
                    items.push(self.or()?);
                    if self.eat("]") {
                        break;
                    }
                    self.expect(",")?;
                }
            }
            return Ok(Condition::List(items));
        }
        match self.peek().cloned() {
            Some(Token::Str(s)) => {
                self.pos += 1;
                Ok(Condition::Literal(Value::String(s)))
            }
            Some(Token::Ident(word)) if word == "true" || word == "false" => {
                self.pos += 1;
                Ok(Condition::Literal(Value::Bool(word == "true")))
            }
            Some(Token::Ident(word)) if word == "has" => {
                self.pos += 1;
                self.expect("(")?;
                let Condition::Path(root, path) = self.path()? else {
                    return Err("has() takes a field path".into());
                };
                self.expect(")")?;
                Ok(Condition::Has(root, path))
            }
            Some(Token::Ident(_)) => self.path(),
            other => Err(format!("unexpected {other:?}")),
        }
    }

    fn path(&mut self) -> Result<Condition, String> {
        let Some(Token::Ident(root)) = self.peek().cloned() else {
            return Err("expected a variable".into());
        };
        if !["request", "object", "oldObject"].contains(&root.as_str()) {
            return Err(format!("unknown variable {root:?}"));
        }
        self.pos += 1;
        let mut path = Vec::new();
        loop {
            if self.eat(".") {
                match self.peek().cloned() {
                    Some(Token::Ident(field)) => {
                        self.pos += 1;
                        path.push(field);
                    }
                    other => return Err(format!("expected a field name, got {other:?}")),
                }
            } else if self.eat("[") {
                match self.peek().cloned() {
                    Some(Token::Str(key)) => {
                        self.pos += 1;
                        path.push(key);
                    }
                    other => return Err(format!("expected a string key, got {other:?}")),
                }
                self.expect("]")?;
            } else {
                return Ok(Condition::Path(root, path));
            }
        }
    }
}

impl Condition {
    /// Parses an expression; anything outside the subset is an error.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let mut parser = Parser {
            tokens: tokenize(expression)?,
            pos: 0,
        };
        let condition = parser.or()?;
        if parser.pos != parser.tokens.len() {
            return Err(format!(
                "unsupported expression (the stand-in understands a CEL subset): {expression}"
            ));
        }
        Ok(condition)
    }

    fn resolve<'a>(request: &'a Value, root: &str, path: &[String]) -> Option<&'a Value> {
        let start = match root {
            "request" => request,
            "object" => &request["object"],
            _ => &request["oldObject"],
        };
        path.iter().try_fold(start, |v, key| match v {
            Value::Object(m) => m.get(key),
            _ => None,
        })
    }

    fn value(&self, request: &Value) -> Result<Value, String> {
        match self {
            Condition::Literal(v) => Ok(v.clone()),
            Condition::Path(root, path) => Self::resolve(request, root, path)
                .cloned()
                .ok_or_else(|| format!("no such key: {root}.{}", path.join("."))),
            Condition::List(items) => items
                .iter()
                .map(|i| i.value(request))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => other.eval(request).map(Value::Bool),
        }
    }

    /// Evaluates against an admission review's `request` object.
    pub fn eval(&self, request: &Value) -> Result<bool, String> {
        match self {
            Condition::Not(inner) => inner.eval(request).map(|b| !b),
            Condition::And(a, b) => Ok(a.eval(request)? && b.eval(request)?),
            Condition::Or(a, b) => Ok(a.eval(request)? || b.eval(request)?),
            Condition::Equals(a, b, equal) => {
                Ok((a.value(request)? == b.value(request)?) == *equal)
            }
            Condition::In(item, collection) => {
                let item = item.value(request)?;
                match collection.value(request)? {
                    Value::Array(items) => Ok(items.contains(&item)),
                    Value::Object(map) => Ok(item.as_str().is_some_and(|k| map.contains_key(k))),
                    other => Err(format!("'in' needs a list or map, got {other}")),
                }
            }
            Condition::Has(root, path) => Ok(Self::resolve(request, root, path).is_some()),
            Condition::Literal(Value::Bool(b)) => Ok(*b),
            Condition::Path(..) => match self.value(request)? {
                Value::Bool(b) => Ok(b),
                other => Err(format!("expected a bool, got {other}")),
            },
            other => Err(format!("not a condition: {other:?}")),
        }
    }
}
