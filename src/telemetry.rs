//! Observability: Prometheus metrics (registered into an injected registry, fixed `&'static str`
//! label values so cardinality stays bounded), logging setup, and the audit stream.
//!
//! The audit stream is separate from the diagnostic log: one JSON object per admission decision
//! (or lifecycle action), written to stdout or a file, never containing a token.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub webhook: &'static str,
    pub kind: &'static str,
    pub operation: &'static str,
    pub decision: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub webhook: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LifecycleLabels {
    pub action: &'static str,
    pub outcome: &'static str,
}

/// Why an HTTP request was rejected before a review could be decided.
pub const REJECT_REASONS: [&str; 7] = [
    "not_found",
    "method",
    "content_type",
    "too_large",
    "timeout",
    "bad_request",
    "memory",
];

/// Why the webhook port closed a connection before or between requests.
pub const SHED_REASONS: [&str; 3] = ["handshake_timeout", "handshake_failed", "idle_timeout"];

fn latency_histogram() -> Histogram {
    // 100 µs .. ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Every metric sparkward exports.
#[derive(Clone)]
pub struct Metrics {
    pub reviews: Family<ReviewLabels, Counter>,
    pub review_duration: Family<LatencyLabels, Histogram>,
    pub token_verification_duration: Histogram,
    pub policy_apply_duration: Family<OutcomeLabels, Histogram>,
    pub in_flight: Gauge,
    /// Tasks alive in the tokio runtime, sampled when /metrics is scraped.
    pub runtime_tasks: Gauge,
    pub http_rejected: Family<RejectLabels, Counter>,
    /// Connections open on the webhook port (TLS handshake included).
    pub connections_open: Gauge,
    /// Memory the requests in flight are counted as holding (`server.maxMemoryInFlight`).
    pub review_memory: Gauge,
    /// Connections the webhook port closed because the client was too slow or idle.
    pub connections_shed: Family<RejectLabels, Counter>,
    pub tls_reloads: Family<OutcomeLabels, Counter>,
    pub tls_cert_expiry: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub lifecycle_actions: Family<LifecycleLabels, Counter>,
    pub config_reloads: Family<OutcomeLabels, Counter>,
    pub stamp_key_reloads: Family<OutcomeLabels, Counter>,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reviews: Family::default(),
            review_duration: Family::new_with_constructor(latency_histogram),
            token_verification_duration: latency_histogram(),
            policy_apply_duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            runtime_tasks: Gauge::default(),
            http_rejected: Family::default(),
            connections_open: Gauge::default(),
            review_memory: Gauge::default(),
            connections_shed: Family::default(),
            tls_reloads: Family::default(),
            tls_cert_expiry: Gauge::default(),
            lifecycle_actions: Family::default(),
            config_reloads: Family::default(),
            stamp_key_reloads: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("sparkward");
        r.register(
            "reviews",
            "Admission reviews answered, by webhook, kind, operation, decision and reason",
            m.reviews.clone(),
        );
        r.register_with_unit(
            "review_duration",
            "Time to decide one admission review",
            Unit::Seconds,
            m.review_duration.clone(),
        );
        r.register_with_unit(
            "token_verification_duration",
            "Time to verify a submitter token (including a JWKS re-fetch on an unknown kid)",
            Unit::Seconds,
            m.token_verification_duration.clone(),
        );
        r.register_with_unit(
            "policy_apply_duration",
            "Time to apply a job's CiliumNetworkPolicy, by outcome",
            Unit::Seconds,
            m.policy_apply_duration.clone(),
        );
        r.register(
            "reviews_in_flight",
            "Admission reviews being decided now",
            m.in_flight.clone(),
        );
        r.register(
            "runtime_tasks",
            "Tasks alive in the async runtime (sampled at scrape time)",
            m.runtime_tasks.clone(),
        );
        r.register(
            "http_rejected",
            "HTTP requests rejected before a review could be decided, by reason",
            m.http_rejected.clone(),
        );
        r.register(
            "connections_open",
            "Connections open on the webhook port, TLS handshakes included",
            m.connections_open.clone(),
        );
        r.register_with_unit(
            "review_memory",
            "Memory the requests in flight are counted as holding against server.maxMemoryInFlight",
            Unit::Bytes,
            m.review_memory.clone(),
        );
        r.register(
            "connections_shed",
            "Webhook connections closed because the client was too slow or idle, by reason",
            m.connections_shed.clone(),
        );
        r.register(
            "tls_reloads",
            "Serving certificate reloads, by outcome",
            m.tls_reloads.clone(),
        );
        r.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the serving certificate in use expires (seconds since the epoch)",
            m.tls_cert_expiry.clone(),
        );
        r.register(
            "lifecycle_actions",
            "Policy lifecycle actions (adopt, end, reap), by outcome",
            m.lifecycle_actions.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads, by outcome",
            m.config_reloads.clone(),
        );
        r.register(
            "stamp_key_reloads",
            "Stamp key file reloads, by outcome",
            m.stamp_key_reloads.clone(),
        );
        // Series that alerts watch start at zero, so `increase()` and `rate()` see the first
        // event instead of a series appearing from nothing.
        for outcome in ["success", "failure"] {
            drop(m.tls_reloads.get_or_create(&OutcomeLabels { outcome }));
            drop(m.config_reloads.get_or_create(&OutcomeLabels { outcome }));
            drop(
                m.stamp_key_reloads
                    .get_or_create(&OutcomeLabels { outcome }),
            );
            drop(
                m.policy_apply_duration
                    .get_or_create(&OutcomeLabels { outcome }),
            );
        }
        for reason in REJECT_REASONS {
            drop(m.http_rejected.get_or_create(&RejectLabels { reason }));
        }
        for reason in SHED_REASONS {
            drop(m.connections_shed.get_or_create(&RejectLabels { reason }));
        }
        for action in ["adopt", "end", "reap"] {
            for outcome in ["success", "failure", "gone"] {
                drop(
                    m.lifecycle_actions
                        .get_or_create(&LifecycleLabels { action, outcome }),
                );
            }
        }
        m
    }

    pub fn observe_review(
        &self,
        webhook: &'static str,
        kind: &str,
        operation: &'static str,
        allowed: bool,
        reason: &'static str,
        elapsed: Duration,
    ) {
        let kind = kind_label(kind);
        self.reviews
            .get_or_create(&ReviewLabels {
                webhook,
                kind,
                operation,
                decision: if allowed { "allowed" } else { "denied" },
                reason,
            })
            .inc();
        self.review_duration
            .get_or_create(&LatencyLabels { webhook, kind })
            .observe(elapsed.as_secs_f64());
    }

    pub fn reject(&self, reason: &'static str) {
        self.http_rejected
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    /// Counts a connection closed for `reason` (one of [`SHED_REASONS`]).
    pub fn shed(&self, reason: &'static str) {
        self.connections_shed
            .get_or_create(&RejectLabels { reason })
            .inc();
    }
}

/// Maps a request kind to a fixed label value.
pub fn kind_label(kind: &str) -> &'static str {
    match kind {
        "SparkApplication" => "SparkApplication",
        "ScheduledSparkApplication" => "ScheduledSparkApplication",
        "Pod" => "Pod",
        "CiliumNetworkPolicy" => "CiliumNetworkPolicy",
        "" => "none",
        _ => "other",
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// Installs the tracing subscriber (diagnostic logs on stderr). Level from `RUST_LOG`, default
/// `info`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: keep the first.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Where audit lines go.
pub struct AuditSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl AuditSink {
    pub fn stdout() -> Self {
        Self {
            out: Mutex::new(Box::new(std::io::stdout())),
        }
    }

    pub fn file(path: &Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Self {
            out: Mutex::new(Box::new(f)),
        })
    }

    /// A sink that discards (offline commands).
    pub fn discard() -> Self {
        Self {
            out: Mutex::new(Box::new(std::io::sink())),
        }
    }

    /// Writes one JSON line. Audit failures are logged, never fatal to the review.
    pub fn write<T: Serialize>(&self, record: &T) {
        self.write_json(serde_json::to_vec(record));
    }

    /// Writes one record already encoded as JSON text (a line without its newline).
    pub fn write_json(&self, encoded: Result<Vec<u8>, serde_json::Error>) {
        let mut line = match encoded {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "failed to encode an audit record");
                return;
            }
        };
        line.push(b'\n');
        let mut out = match self.out.lock() {
            Ok(o) => o,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Err(e) = out.write_all(&line).and_then(|_| out.flush()) {
            tracing::error!(error = %e, "failed to write an audit record");
        }
    }
}
