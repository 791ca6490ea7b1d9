//! Wiring: turns the command line into running components. The only module that knows about all
//! the others; everything here is glue, not decisions.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use rustls::crypto::CryptoProvider;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::admission::store::SecretStore;
use crate::admission::{Keyring, Lookup, Mode, NoIdentity, Pipeline, Verifier};
use crate::certs;
use crate::cli::{
    CertsArgs, CheckConfigArgs, Cli, Command, ReviewArgs, ReviewMode, ServeArgs, TokenArgs,
};
use crate::config::{AuditOutput, Config, IdentityConfig, JwksSource};
use crate::core::stamp::StampKeys;
use crate::devidp::{DEV_ISSUER, DevIdp};
use crate::k8s::cache::KubeLookup;
use crate::k8s::jwks::JwksCache;
use crate::k8s::lease::holder_identity;
use crate::k8s::lifecycle::{Lifecycle, LifecycleSettings};
use crate::k8s::local::LocalPolicyStore;
use crate::k8s::policy::{CollectingPolicyStore, KubePolicyStore, PolicyStore};
use crate::k8s::secrets::{CollectingSecretStore, KubeSecretStore, LocalSecretStore};
use crate::k8s::state::ClusterState;
use crate::server::service::{MemoryBudget, WebhookState};
use crate::server::tls::{self, CertPaths, CertStore};
use crate::server::{self, ConnLimits, Readiness};
use crate::shutdown;
use crate::stamp_keys;
use crate::telemetry::{self, AuditSink, Metrics};

/// Runs one command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).await.map(|_| ExitCode::SUCCESS),
        Command::Review(args) => review(args).await,
        Command::Certs(args) => make_certs(args),
        Command::CheckConfig(args) => Ok(check_config(args)),
        Command::Token(args) => token(args),
        Command::StampKey(args) => {
            println!("{}", stamp_keys::new_line(&args.id)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

// ---------------------------------------------------------------------------------------------
// check-config, certs
// ---------------------------------------------------------------------------------------------

fn check_config(args: CheckConfigArgs) -> ExitCode {
    match Config::load(&args.file) {
        Ok(c) => {
            let rules: usize = c.policy.scopes.values().map(Vec::len).sum();
            println!(
                "{}: valid ({} scopes, {} egress rules; identity {})",
                args.file.display(),
                c.policy.scopes.len(),
                rules,
                c.identity
                    .as_ref()
                    .map_or("not configured".to_string(), |i| format!(
                        "issuer {}",
                        i.issuer
                    ))
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: {e}", args.file.display());
            ExitCode::FAILURE
        }
    }
}

/// `sparkward token`: a development token, refused when the config names a real provider.
fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    if let Some(identity) = config.identity.as_ref().filter(|i| i.issuer != DEV_ISSUER) {
        bail!(
            "the configuration trusts the identity provider {}: get a token from it (sparkward \
             token only signs for local mode's development provider, {DEV_ISSUER})",
            identity.issuer
        );
    }
    if args.sub.trim().is_empty() {
        bail!("--sub must name the subject (the user the token is for)");
    }
    let scopes: Vec<String> = args
        .scopes
        .iter()
        .flat_map(|s| s.split_whitespace())
        .map(str::to_string)
        .collect();
    let idp = DevIdp::ensure(&args.dev_cert_dir)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("{}", idp.token(args.sub.trim(), &scopes, args.ttl, now)?);
    Ok(ExitCode::SUCCESS)
}

fn make_certs(args: CertsArgs) -> anyhow::Result<ExitCode> {
    let generated = certs::generate(&args.dns, args.days)?;
    let files = certs::write(&args.out, &generated)?;
    eprintln!(
        "wrote {}, {} and {}",
        files.ca.display(),
        files.cert.display(),
        files.key.display()
    );
    println!("{}", certs::ca_bundle(&generated.ca_pem));
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// review (offline)
// ---------------------------------------------------------------------------------------------

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

fn load_state(path: Option<&Path>) -> anyhow::Result<ClusterState> {
    match path {
        None => Ok(ClusterState::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("failed to read cluster state {}", p.display()))?;
            ClusterState::parse(&text)
                .with_context(|| format!("cluster state {} is unusable", p.display()))
        }
    }
}

async fn offline_verifier(
    config: &Config,
    jwks_override: Option<&Path>,
) -> anyhow::Result<Arc<dyn Verifier>> {
    let Some(identity) = &config.identity else {
        return Ok(Arc::new(NoIdentity));
    };
    let source = match jwks_override {
        Some(path) => JwksSource::File {
            path: path.to_path_buf(),
            refresh: identity.jwks.refresh(),
        },
        None => identity.jwks.clone(),
    };
    let cache = JwksCache::new(source).context("failed to set up the JWKS source")?;
    // One fetch; a failure leaves the cache empty and token reviews are denied (fail closed).
    if let Err(e) = cache.refresh().await {
        eprintln!("warning: could not load the JWKS: {e}");
    }
    Ok(Arc::new(cache))
}

async fn review(args: ReviewArgs) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load_config(args.config.as_deref())?);
    let state = load_state(args.cluster_state.as_deref())?;
    let body = match args.review.as_deref() {
        None => read_stdin()?,
        Some(p) if p == Path::new("-") => read_stdin()?,
        Some(p) => std::fs::read(p).with_context(|| format!("failed to read {}", p.display()))?,
    };
    let verifier = offline_verifier(&config, args.jwks.as_deref()).await?;
    let stamp_keys = match &args.stamp_keys {
        Some(path) => Keyring::new(stamp_keys::load(path).map_err(anyhow::Error::msg)?),
        None => Keyring::new(
            stamp_keys::load(&config.stamp.key_file).or_else(|_| offline_stamp_keys())?,
        ),
    };
    let secrets = Arc::new(CollectingSecretStore::default());
    let pipeline = Pipeline {
        config,
        verifier,
        lookup: Arc::new(state),
        policies: Arc::new(CollectingPolicyStore::default()),
        secrets: secrets.clone(),
        stamp_keys,
        metrics: None,
    };
    let mode = match args.mode {
        ReviewMode::Mutate => Mode::Mutate,
        ReviewMode::Validate => Mode::Validate,
    };
    let outcome = match pipeline.review(mode, &body).await {
        Ok(o) => o,
        Err(message) => {
            eprintln!("error: the input is not a usable AdmissionReview: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let response = outcome.response();
    let patched = match (&outcome.decision, object_of(&body)) {
        (Ok(allowed), Some(mut object)) => {
            json_patch::patch(&mut object, &allowed.patch)
                .context("the patch does not apply to the object (a sparkward bug)")?;
            object
        }
        _ => Value::Null,
    };
    let (policies, secrets): (_, Vec<Value>) = if outcome.facts.dry_run {
        (Vec::new(), Vec::new())
    } else {
        (
            outcome.policies.clone(),
            // Every object the review would create; the Secret without its data.
            outcome.secrets.iter().map(|s| s.manifest(false)).collect(),
        )
    };
    let doc = json!({
        "admissionReview": response.into_review(),
        "patchedObject": patched,
        "ciliumNetworkPolicies": policies,
        "secrets": secrets,
    });
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(ExitCode::SUCCESS)
}

/// The fixed key offline reviews use when no key file is given: public, so no cluster may ever
/// trust it (a cluster's key comes from its own Secret); it only lets an offline validate run
/// accept what an offline mutate run stamped.
fn offline_stamp_keys() -> anyhow::Result<StampKeys> {
    let seed: [u8; 32] = Sha256::digest(b"sparkward offline review stamp key").into();
    StampKeys::parse(&StampKeys::line_for("offline", &seed)).map_err(anyhow::Error::msg)
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin()
        .read_to_end(&mut buf)
        .context("failed to read the review from stdin")?;
    Ok(buf)
}

fn object_of(body: &[u8]) -> Option<Value> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let obj = v.get("request")?.get("object")?;
    (!obj.is_null()).then(|| obj.clone())
}

// ---------------------------------------------------------------------------------------------
// serve
// ---------------------------------------------------------------------------------------------

/// Whether any Kubernetes configuration exists: in-cluster service account environment, or a
/// kubeconfig (`KUBECONFIG` or `~/.kube/config`). A present but broken or unreachable
/// configuration is NOT local mode: that would admit pods without policies.
fn kube_config_present() -> bool {
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return true;
    }
    if let Some(paths) = std::env::var_os("KUBECONFIG")
        && std::env::split_paths(&paths).any(|p| !p.as_os_str().is_empty())
    {
        return true;
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".kube").join("config"))
        .is_some_and(|p| p.exists())
}

/// Dev certificates for local mode: reused when present and loadable, generated otherwise.
fn ensure_dev_certs(dir: &Path, provider: &CryptoProvider) -> anyhow::Result<CertPaths> {
    let files = certs::CertFiles::in_dir(dir);
    let paths = CertPaths {
        cert: files.cert.clone(),
        key: files.key.clone(),
    };
    if tls::load_certified_key(&paths, provider).is_ok() {
        tracing::info!(dir = %dir.display(), "local mode: using existing development certificates");
        return Ok(paths);
    }
    let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
    let generated = certs::generate(&names, 30)?;
    certs::write(dir, &generated)?;
    tracing::info!(dir = %dir.display(), ca = %files.ca.display(),
        "local mode: generated development certificates (trust ca.crt to call the webhook)");
    Ok(paths)
}

/// The JWKS cache in use (replaced when a config reload changes the identity provider).
type JwksSlot = Arc<ArcSwap<Option<Arc<JwksCache>>>>;

/// JWKS metrics, read from the cache in use at scrape time.
#[derive(Debug)]
struct JwksCollector {
    slot: JwksSlot,
}

impl Collector for JwksCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let current = self.slot.load();
        let Some(cache) = current.as_ref().as_ref() else {
            return Ok(());
        };
        let stats = cache.stats();
        let mut refreshes = encoder.encode_descriptor(
            "sparkward_jwks_refreshes",
            "JWKS fetches from the identity provider, by outcome",
            None,
            MetricType::Counter,
        )?;
        for (outcome, value) in [
            ("success", stats.fetch_successes()),
            ("failure", stats.fetch_failures()),
        ] {
            ConstCounter::new(value).encode(refreshes.encode_family(&[("outcome", outcome)])?)?;
        }
        let kid = ConstCounter::new(stats.kid_refetches());
        kid.encode(encoder.encode_descriptor(
            "sparkward_jwks_unknown_kid_refetches",
            "JWKS fetches triggered by a token naming an unknown key",
            None,
            kid.metric_type(),
        )?)?;
        // -1 until a key set was loaded, so an alert can tell "never" from "old".
        let age = ConstGauge::new(cache.age().map_or(-1.0, |a| a.as_secs_f64()));
        age.encode(encoder.encode_descriptor(
            "sparkward_jwks_age_seconds",
            "Age of the JWKS key set in use (-1 when none was loaded)",
            None,
            age.metric_type(),
        )?)
    }
}

/// What `/readyz` checks.
struct AppReadiness {
    shutting_down: AtomicBool,
    jwks: JwksSlot,
    stamp_keys: Keyring,
    cluster: Option<ClusterHealth>,
}

struct ClusterHealth {
    lookup: KubeLookup,
}

impl Readiness for AppReadiness {
    fn check(&self) -> Result<String, Vec<String>> {
        let mut problems = Vec::new();
        let mut summary = vec!["config: loaded".to_string(), "tls: loaded".to_string()];
        if self.shutting_down.load(Ordering::Relaxed) {
            problems.push("shutting down".to_string());
        }
        match self.jwks.load().as_ref() {
            None => summary.push("identity: not configured".into()),
            Some(cache) => match cache.age() {
                Some(age) => summary.push(format!("jwks: loaded {}s ago", age.as_secs())),
                None => problems.push("jwks: no key set loaded yet".into()),
            },
        }
        match self.stamp_keys.current() {
            Ok(keys) => summary.push(format!("stamp keys: {}", keys.describe())),
            Err(why) => problems.push(format!("stamp keys: {why}")),
        }
        match &self.cluster {
            None => summary.push("mode: local (no Kubernetes API)".into()),
            Some(c) => {
                if !c.lookup.is_reachable() {
                    problems.push("kubernetes: API server not reachable".into());
                } else if !c.lookup.is_synced() {
                    problems.push("kubernetes: lookup caches not synced yet".into());
                } else {
                    summary.push("kubernetes: reachable, caches synced".into());
                }
            }
        }
        if problems.is_empty() {
            Ok(summary.join("\n") + "\n")
        } else {
            Err(problems)
        }
    }
}

/// The parts of a pipeline that depend on the config.
struct Components {
    local: bool,
    /// Local mode's development identity provider, used while the config names none.
    dev_identity: Option<IdentityConfig>,
    stamp_keys: Keyring,
    lookup: Arc<dyn Lookup>,
    client: Option<kube::Client>,
    policy_dir: PathBuf,
    metrics: Metrics,
}

impl Components {
    fn secret_store(&self, config: &Config) -> Arc<dyn SecretStore> {
        match &self.client {
            Some(client) => Arc::new(KubeSecretStore::new(
                client.clone(),
                config.policy.apply_timeout,
            )),
            None => Arc::new(LocalSecretStore::new(self.policy_dir.clone())),
        }
    }

    fn policy_store(&self, config: &Config) -> Arc<dyn PolicyStore> {
        match &self.client {
            Some(client) => Arc::new(KubePolicyStore::new(
                client.clone(),
                config.policy.apply_timeout,
            )),
            None => Arc::new(LocalPolicyStore::new(self.policy_dir.clone())),
        }
    }
}

fn audit_sink(config: &Config) -> anyhow::Result<AuditSink> {
    match &config.audit {
        AuditOutput::Stdout => Ok(AuditSink::stdout()),
        AuditOutput::File(p) => AuditSink::file(p)
            .with_context(|| format!("failed to open the audit file {}", p.display())),
    }
}

/// Starts a JWKS cache for the config's identity source (its refresh task stops with
/// `shutdown`).
fn start_jwks(
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Arc<JwksCache>>> {
    let Some(identity) = &config.identity else {
        return Ok(None);
    };
    let cache = Arc::new(
        JwksCache::new(identity.jwks.clone()).context("failed to set up the JWKS source")?,
    );
    let runner = (*cache).clone();
    let token = shutdown.clone();
    tokio::spawn(async move { runner.run(token).await });
    Ok(Some(cache))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let provider = provider();
    let mut config = load_config(args.config.as_deref())?;
    let local = args.local || !kube_config_present();
    if local {
        tracing::warn!(
            policy_dir = %args.policy_dir.display(),
            "local mode: no Kubernetes API; job policies are written as files, lookups use {}",
            args.cluster_state.as_deref().map_or("no cluster state".to_string(), |p| p.display().to_string())
        );
    }
    // Local mode without an identity provider of its own trusts the development one, so the
    // main job can be tried at once (`sparkward token` signs for it). Never outside local mode.
    let dev_identity = match (local, &config.identity) {
        (true, None) => {
            let idp = DevIdp::ensure(&args.dev_cert_dir)?;
            tracing::warn!(
                issuer = DEV_ISSUER,
                jwks = %idp.jwks_path.display(),
                "local mode: trusting the development identity provider; get a token with `sparkward token --sub NAME --scope SCOPE`"
            );
            Some(idp.identity_config())
        }
        _ => None,
    };
    with_dev_identity(&mut config, dev_identity.as_ref());
    if config.identity.is_none() {
        tracing::warn!(
            "no identity provider configured: every review that needs a submitter token will be denied"
        );
    }

    let cert_paths = match (args.tls_cert.clone(), args.tls_key.clone()) {
        (Some(cert), Some(key)) => CertPaths { cert, key },
        _ if local => ensure_dev_certs(&args.dev_cert_dir, &provider)?,
        _ => {
            bail!("--tls-cert and --tls-key are required outside local mode (see certs/README.md)")
        }
    };
    let cert_store = Arc::new(CertStore::new(tls::load_certified_key(
        &cert_paths,
        &provider,
    )?));
    let tls_config = tls::server_config(
        cert_store.clone(),
        args.client_ca.as_deref(),
        provider.clone(),
    )?;

    let shutdown = CancellationToken::new();
    let background = shutdown.child_token();
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let jwks_slot: JwksSlot = Arc::new(ArcSwap::from_pointee(None));
    registry.register_collector(Box::new(JwksCollector {
        slot: jwks_slot.clone(),
    }));
    let registry = Arc::new(registry);
    if let Some(expiry) = tls::not_after(&cert_store.current()) {
        metrics.tls_cert_expiry.set(expiry as f64);
    }

    let (lookup, client, cluster): (Arc<dyn Lookup>, _, _) = if local {
        (
            Arc::new(load_state(args.cluster_state.as_deref())?),
            None,
            None,
        )
    } else {
        let client = kube::Client::try_default()
            .await
            .context("failed to load the Kubernetes configuration (no local-mode fallback: fix it or pass --local)")?;
        let lookup = KubeLookup::start(client.clone(), background.clone());
        (
            Arc::new(lookup.clone()) as Arc<dyn Lookup>,
            Some(client),
            Some(ClusterHealth { lookup }),
        )
    };
    // Stamp keys: the configured file; in local mode a generated development key when the
    // configured file is not there.
    let stamp_key_path = if local && stamp_keys::load(&config.stamp.key_file).is_err() {
        Some(stamp_keys::ensure_dev_key(&args.dev_cert_dir)?)
    } else {
        None
    };
    let (stamp_ring, stamp_loaded) =
        stamp_keys::keyring(stamp_key_path.as_deref().unwrap_or(&config.stamp.key_file));
    let components = Components {
        local,
        dev_identity,
        stamp_keys: stamp_ring.clone(),
        lookup,
        client,
        policy_dir: args.policy_dir.clone(),
        metrics: metrics.clone(),
    };
    let lifecycle_client = components.client.clone();

    let jwks = start_jwks(&config, &background)?;
    let config = Arc::new(config);
    let pipeline = build_pipeline(&components, config.clone(), jwks.clone());
    jwks_slot.store(Arc::new(jwks));
    let readiness = Arc::new(AppReadiness {
        shutting_down: AtomicBool::new(false),
        jwks: jwks_slot,
        stamp_keys: stamp_ring.clone(),
        cluster,
    });
    let state = Arc::new(WebhookState {
        pipeline: ArcSwap::from_pointee(pipeline),
        metrics: metrics.clone(),
        audit: ArcSwap::from_pointee(audit_sink(&config)?),
        memory: MemoryBudget::new(&metrics),
    });

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.listen))?;
    let probe_listener = TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("failed to listen on {}", args.metrics_listen))?;
    tracing::info!(
        webhook = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        probes = %probe_listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        local, startup_ms = started.elapsed().as_millis() as u64,
        "sparkward serving"
    );

    // Certificate rotation.
    {
        let metrics = metrics.clone();
        tokio::spawn(tls::reload_loop(
            cert_paths,
            cert_store,
            provider.clone(),
            args.reload_interval,
            move |r| {
                let outcome = if r.is_ok() { "success" } else { "failure" };
                metrics
                    .tls_reloads
                    .get_or_create(&telemetry::OutcomeLabels { outcome })
                    .inc();
                if let Some(expiry) = r.ok().and_then(tls::not_after) {
                    metrics.tls_cert_expiry.set(expiry as f64);
                }
            },
            background.clone(),
        ));
    }
    // Stamp key rotation (a fixed development key in local mode, the configured file otherwise).
    {
        let state = state.clone();
        let metrics = metrics.clone();
        tokio::spawn(stamp_keys::reload_loop(
            move || {
                stamp_key_path
                    .clone()
                    .unwrap_or_else(|| state.pipeline.load().config.stamp.key_file.clone())
            },
            stamp_ring,
            stamp_loaded,
            args.reload_interval,
            move |ok| {
                let outcome = if ok { "success" } else { "failure" };
                metrics
                    .stamp_key_reloads
                    .get_or_create(&telemetry::OutcomeLabels { outcome })
                    .inc();
            },
            background.clone(),
        ));
    }
    // Config reload.
    if let Some(path) = args.config.clone() {
        tokio::spawn(config_reload_loop(
            path,
            args.reload_interval,
            components,
            state.clone(),
            readiness.clone(),
            background.clone(),
        ));
    }
    // Probes and metrics.
    let probe_shutdown = CancellationToken::new();
    let probes = {
        let registry = registry.clone();
        let metrics = metrics.clone();
        tokio::spawn(server::serve_probes(
            probe_listener,
            readiness.clone(),
            move || {
                let registry = registry.clone();
                // One atomic read of the runtime's task count, only when scraped.
                let tasks = tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks();
                metrics
                    .runtime_tasks
                    .set(i64::try_from(tasks).unwrap_or(i64::MAX));
                async move {
                    let mut out = String::new();
                    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
                        out = "# failed to encode metrics\n".into();
                    }
                    out
                }
            },
            probe_shutdown.clone(),
        ))
    };

    let lifecycle_state = state.clone();
    let webhook = tokio::spawn(server::serve_webhook(
        listener,
        TlsAcceptor::from(Arc::new(tls_config)),
        state,
        ConnLimits {
            read_timeout: config.server.read_timeout,
            drain_timeout: config.server.drain_timeout,
            idle_timeout: config.server.idle_timeout,
            max_connections: config.server.max_connections,
        },
        shutdown.clone(),
    ));
    let lifecycle = lifecycle_client.map(|client| {
        spawn_lifecycle(
            client,
            lifecycle_state,
            &metrics,
            args.lifecycle_tick,
            background.clone(),
        )
    });

    shutdown::signal().await;
    tracing::info!("shutdown requested: readiness off, draining in-flight reviews");
    readiness.shutting_down.store(true, Ordering::Relaxed);
    shutdown.cancel();
    if let Err(e) = webhook.await {
        tracing::error!(error = %e, "webhook server task failed");
    }
    // The controller releases its Lease on shutdown; give it a moment so a successor need not
    // wait for the Lease to expire.
    if let Some(task) = lifecycle {
        let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
    }
    probe_shutdown.cancel();
    let _ = probes.await;
    tracing::info!("sparkward stopped");
    Ok(())
}

/// The lifecycle controller (cluster mode only), reading the lifecycle section and the audit
/// sink of the current config at each use, so reloads apply to it.
fn spawn_lifecycle(
    client: kube::Client,
    state: Arc<WebhookState>,
    metrics: &Metrics,
    tick: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let config_state = state.clone();
    let settings =
        LifecycleSettings::new(move || config_state.pipeline.load().config.lifecycle.clone())
            .with_tick(tick);
    let controller = Lifecycle::new(
        client,
        settings,
        metrics.clone(),
        move || state.audit.load_full(),
        holder_identity(),
    );
    tokio::spawn(controller.run(shutdown))
}

fn with_dev_identity(config: &mut Config, dev: Option<&IdentityConfig>) {
    if config.identity.is_none() {
        config.identity = dev.cloned();
    }
}

fn build_pipeline(c: &Components, config: Arc<Config>, jwks: Option<Arc<JwksCache>>) -> Pipeline {
    let verifier: Arc<dyn Verifier> = match jwks {
        Some(cache) => cache,
        None => Arc::new(NoIdentity),
    };
    Pipeline {
        policies: c.policy_store(&config),
        secrets: c.secret_store(&config),
        config,
        verifier,
        lookup: c.lookup.clone(),
        stamp_keys: c.stamp_keys.clone(),
        metrics: Some(c.metrics.clone()),
    }
}

fn digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

/// Polls the config file; a changed file that validates replaces the pipeline (and the JWKS
/// cache when its source changed); a bad one is logged and the old config kept.
async fn config_reload_loop(
    path: PathBuf,
    interval: Duration,
    components: Components,
    state: Arc<WebhookState>,
    readiness: Arc<AppReadiness>,
    shutdown: CancellationToken,
) {
    let mut seen = digest(&path);
    let mut jwks_shutdown = shutdown.child_token();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        let now = digest(&path);
        if now.is_none() || now == seen {
            continue;
        }
        seen = now;
        let outcome = match Config::load(&path).map(|mut c| {
            with_dev_identity(&mut c, components.dev_identity.as_ref());
            c
        }) {
            Err(e) => {
                tracing::error!(error = %e, path = %path.display(), "new config rejected; keeping the previous one");
                "failure"
            }
            Ok(new) => {
                let old = state.pipeline.load_full().config.clone();
                let jwks = if old.identity.as_ref().map(|i| &i.jwks)
                    == new.identity.as_ref().map(|i| &i.jwks)
                {
                    readiness.jwks.load_full().as_ref().clone()
                } else {
                    jwks_shutdown.cancel();
                    jwks_shutdown = shutdown.child_token();
                    match start_jwks(&new, &jwks_shutdown) {
                        Ok(j) => j,
                        Err(e) => {
                            tracing::error!(error = %e, "new config rejected; keeping the previous one");
                            continue;
                        }
                    }
                };
                if new.audit != old.audit {
                    match audit_sink(&new) {
                        Ok(sink) => state.audit.store(Arc::new(sink)),
                        Err(e) => tracing::error!(error = %e, "audit output unchanged"),
                    }
                }
                readiness.jwks.store(Arc::new(jwks.clone()));
                let pipeline = build_pipeline(&components, Arc::new(new), jwks);
                state.pipeline.store(Arc::new(pipeline));
                tracing::info!(path = %path.display(), local = components.local, "config reloaded");
                "success"
            }
        };
        components
            .metrics
            .config_reloads
            .get_or_create(&telemetry::OutcomeLabels { outcome })
            .inc();
    }
}
