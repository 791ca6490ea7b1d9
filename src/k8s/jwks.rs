//! The identity provider's key set, kept fresh in the background: the I/O edge around the pure
//! [`KeySet`] and [`verify_token`].
//!
//! - `current()` is a lock-free read (`ArcSwapOption`), so reviews never wait on a fetch.
//! - `run()` fetches at start and then every `refresh`; a failed fetch keeps the last good set
//!   and retries sooner, with exponential backoff capped below the refresh interval.
//! - `verify()` fails closed: no key set yet means `KeysUnavailable`. A token signed with a key
//!   the set does not have triggers one re-fetch (the provider may have rotated), at most once
//!   per refresh interval; concurrent callers wait for the same in-flight fetch instead of
//!   starting their own, so a burst of forged kids costs the provider one request.
//! - All fetches are serialised, so an older answer never overwrites a newer one.
//!
//! HTTPS only, through hyper-rustls with the web PKI roots plus the optional `caFile`; each fetch
//! is bounded in time (5 s) and size (1 MiB), and anything but `200` with a usable JWKS counts as
//! a failed fetch.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::config::{IdentityConfig, JwksSource};
use crate::core::identity::{IdentityError, VerifiedIdentity, verify_token};
use crate::core::keys::{KeySet, KeysError};

/// Upper bound for one fetch: connect, TLS, request and body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS accepted (real ones are a few KiB).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;
/// First retry delay after a failed fetch; doubles up to [`MAX_RETRY`] (and never beyond the
/// refresh interval).
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);

/// Why the key set could not be loaded. The cache logs these and keeps the last good set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JwksError {
    #[error("JWKS url '{url}' is not a valid URL: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("failed to read the JWKS CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("failed to set up TLS for the JWKS url: {0}")]
    Tls(String),
    #[error("failed to fetch the JWKS from {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("the JWKS endpoint {url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("fetching the JWKS from {url} took longer than {}s", FETCH_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("the JWKS from {origin} is larger than {limit} bytes")]
    TooLarge { origin: String, limit: usize },
    #[error("failed to read the JWKS file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the JWKS from {origin} is unusable: {error}")]
    Keys { origin: String, error: KeysError },
}

/// One successfully loaded key set.
#[derive(Debug)]
pub struct LoadedKeys {
    pub keys: KeySet,
    /// Wall-clock time of the fetch, for logs and status pages.
    pub fetched_at: SystemTime,
    loaded: Instant,
}

impl LoadedKeys {
    /// How long ago these keys were fetched.
    pub fn age(&self) -> Duration {
        self.loaded.elapsed()
    }
}

/// Fetch outcomes, read by the metrics module.
#[derive(Debug, Default)]
pub struct JwksStats {
    successes: AtomicU64,
    failures: AtomicU64,
    kid_refetches: AtomicU64,
}

impl JwksStats {
    /// Fetches that produced a usable key set.
    pub fn fetch_successes(&self) -> u64 {
        self.successes.load(Ordering::Relaxed)
    }
    /// Fetches that failed (network, status, size, timeout, unusable JWKS).
    pub fn fetch_failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
    /// Fetches started because a token named an unknown key (or no key set was loaded).
    pub fn kid_refetches(&self) -> u64 {
        self.kid_refetches.load(Ordering::Relaxed)
    }
}

type HttpsClient = Client<HttpsConnector<HttpConnector>, Empty<Bytes>>;

enum Fetcher {
    Http {
        // Boxed: the client is large and there is one per cache.
        client: Box<HttpsClient>,
        uri: http::Uri,
        url: String,
    },
    File {
        path: PathBuf,
    },
}

struct Inner {
    fetcher: Fetcher,
    refresh: Duration,
    current: ArcSwapOption<LoadedKeys>,
    /// Serialises fetches (periodic and on demand).
    fetch_lock: Mutex<()>,
    /// Completed fetch attempts, successful or not; lets a waiting caller see that a fetch
    /// happened after it looked, so it does not start another.
    attempts: AtomicU64,
    /// When the last on-demand fetch started; held across that fetch so callers coalesce.
    kid_refetch: Mutex<Option<Instant>>,
    last_error: ArcSwapOption<JwksError>,
    stats: JwksStats,
}

/// The shared, cheaply cloneable key cache.
#[derive(Clone)]
pub struct JwksCache {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache")
            .field("origin", &self.origin())
            .field("ready", &self.ready())
            .finish_non_exhaustive()
    }
}

impl JwksCache {
    /// Builds the cache (and, for a URL, its HTTPS client); loads nothing yet.
    pub fn new(source: JwksSource) -> Result<Self, JwksError> {
        let refresh = source.refresh();
        let fetcher = match source {
            JwksSource::Url { url, ca_file, .. } => {
                let uri: http::Uri =
                    url.parse()
                        .map_err(|e: http::uri::InvalidUri| JwksError::BadUrl {
                            url: url.clone(),
                            reason: e.to_string(),
                        })?;
                if uri.scheme_str() != Some("https") {
                    return Err(JwksError::BadUrl {
                        url,
                        reason: "only https:// is allowed".into(),
                    });
                }
                Fetcher::Http {
                    client: Box::new(https_client(ca_file.as_deref())?),
                    uri,
                    url,
                }
            }
            JwksSource::File { path, .. } => Fetcher::File { path },
        };
        Ok(Self {
            inner: Arc::new(Inner {
                fetcher,
                refresh,
                current: ArcSwapOption::empty(),
                fetch_lock: Mutex::new(()),
                attempts: AtomicU64::new(0),
                kid_refetch: Mutex::new(None),
                last_error: ArcSwapOption::empty(),
                stats: JwksStats::default(),
            }),
        })
    }

    /// The current key set and when it was fetched, if one was ever loaded. Lock-free.
    pub fn current(&self) -> Option<Arc<LoadedKeys>> {
        self.inner.current.load_full()
    }

    /// Whether a key set has been loaded (for /readyz).
    pub fn ready(&self) -> bool {
        self.inner.current.load().is_some()
    }

    /// Age of the current key set (for /readyz and a metric).
    pub fn age(&self) -> Option<Duration> {
        self.inner.current.load().as_ref().map(|k| k.age())
    }

    /// The error of the last fetch, if it failed.
    pub fn last_error(&self) -> Option<Arc<JwksError>> {
        self.inner.last_error.load_full()
    }

    pub fn stats(&self) -> &JwksStats {
        &self.inner.stats
    }

    /// Where the keys come from, for messages.
    pub fn origin(&self) -> String {
        match &self.inner.fetcher {
            Fetcher::Http { url, .. } => url.clone(),
            Fetcher::File { path } => path.display().to_string(),
        }
    }

    /// Fetches once now and swaps the new set in; on failure the previous set stays.
    pub async fn refresh(&self) -> Result<Arc<LoadedKeys>, JwksError> {
        let _one_at_a_time = self.inner.fetch_lock.lock().await;
        self.fetch_and_store().await
    }

    async fn fetch_and_store(&self) -> Result<Arc<LoadedKeys>, JwksError> {
        let origin = self.origin();
        let outcome = self.fetch().await.and_then(|bytes| {
            KeySet::from_jwks_json(&bytes).map_err(|error| JwksError::Keys {
                origin: origin.clone(),
                error,
            })
        });
        self.inner.attempts.fetch_add(1, Ordering::AcqRel);
        match outcome {
            Ok(keys) => {
                // Debug, not warn: providers routinely publish encryption keys next to signing
                // keys (Keycloak's RSA-OAEP key), which would warn on every refresh.
                for skipped in keys.skipped() {
                    tracing::debug!(jwks = %origin, "{skipped}");
                }
                tracing::info!(
                    jwks = %origin,
                    keys = keys.len(),
                    skipped = keys.skipped().len(),
                    "loaded the identity provider's keys"
                );
                let loaded = Arc::new(LoadedKeys {
                    keys,
                    fetched_at: SystemTime::now(),
                    loaded: Instant::now(),
                });
                self.inner.current.store(Some(Arc::clone(&loaded)));
                self.inner.last_error.store(None);
                self.inner.stats.successes.fetch_add(1, Ordering::Relaxed);
                Ok(loaded)
            }
            Err(err) => {
                tracing::warn!(
                    jwks = %origin,
                    have_keys = self.ready(),
                    "failed to load the identity provider's keys: {err}"
                );
                self.inner.last_error.store(Some(Arc::new(err.clone())));
                self.inner.stats.failures.fetch_add(1, Ordering::Relaxed);
                Err(err)
            }
        }
    }

    async fn fetch(&self) -> Result<Bytes, JwksError> {
        match &self.inner.fetcher {
            Fetcher::Http { client, uri, url } => {
                match tokio::time::timeout(FETCH_TIMEOUT, fetch_url(client, uri, url)).await {
                    Ok(result) => result,
                    Err(_) => Err(JwksError::Timeout { url: url.clone() }),
                }
            }
            Fetcher::File { path } => read_file(path).await,
        }
    }

    /// Keeps the key set fresh until `cancel` fires: a fetch at start, then one every refresh
    /// interval; after a failure, retries with backoff (1 s doubling, capped at 60 s and at the
    /// refresh interval) while the last good set stays in use.
    pub async fn run(self, cancel: CancellationToken) {
        let first_retry = FIRST_RETRY.min(self.inner.refresh);
        let max_retry = MAX_RETRY.min(self.inner.refresh);
        let mut retry = first_retry;
        loop {
            let outcome = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                outcome = self.refresh() => outcome,
            };
            let wait = match outcome {
                Ok(_) => {
                    retry = first_retry;
                    self.inner.refresh
                }
                Err(_) => {
                    let wait = retry;
                    retry = (retry * 2).min(max_retry);
                    wait
                }
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Verifies a token against the current keys. Fails closed when no key set is loaded; a
    /// token naming an unknown key gets one (rate-limited, coalesced) re-fetch first.
    pub async fn verify(
        &self,
        token: &str,
        cfg: &IdentityConfig,
        now_unix: u64,
    ) -> Result<VerifiedIdentity, IdentityError> {
        let attempts_seen = self.inner.attempts.load(Ordering::Acquire);
        if let Some(loaded) = self.current() {
            match verify_token(token, &loaded.keys, cfg, now_unix) {
                Err(IdentityError::UnknownKid { .. }) => {}
                decided => return decided,
            }
        }
        self.refetch_after(attempts_seen).await;
        match self.current() {
            Some(loaded) => match verify_token(token, &loaded.keys, cfg, now_unix) {
                // The last fetch failed: the key may be published, we just cannot see it.
                // Saying "the provider does not publish it" would send the user for a new token
                // that fails the same way.
                Err(IdentityError::UnknownKid { kid }) => match self.inner.last_error.load_full() {
                    Some(error) => Err(IdentityError::UnknownKidKeysStale {
                        kid,
                        reason: error.to_string(),
                    }),
                    None => Err(IdentityError::UnknownKid { kid }),
                },
                decided => decided,
            },
            None => Err(IdentityError::KeysUnavailable),
        }
    }

    /// Starts an on-demand fetch unless one completed since the caller looked (`seen`) or one
    /// started less than a refresh interval ago. Callers queue on the lock, so they share the
    /// in-flight fetch.
    async fn refetch_after(&self, seen: u64) {
        let mut last = self.inner.kid_refetch.lock().await;
        if self.inner.attempts.load(Ordering::Acquire) != seen {
            return;
        }
        if last.is_some_and(|at| at.elapsed() < self.inner.refresh) {
            return;
        }
        *last = Some(Instant::now());
        self.inner
            .stats
            .kid_refetches
            .fetch_add(1, Ordering::Relaxed);
        let _one_at_a_time = self.inner.fetch_lock.lock().await;
        // The periodic refresh may have finished while this caller waited for the fetch lock.
        if self.inner.attempts.load(Ordering::Acquire) == seen {
            // Failures are logged and counted inside; the caller decides on what is loaded.
            let _ = self.fetch_and_store().await;
        }
    }
}

/// An HTTPS-only client trusting the web PKI roots and the PEM certificates in `ca_file`.
fn https_client(ca_file: Option<&Path>) -> Result<HttpsClient, JwksError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let ca_error = |reason: String| JwksError::CaFile {
            path: path.display().to_string(),
            reason,
        };
        let mut added = 0;
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| ca_error(e.to_string()))? {
            let cert = cert.map_err(|e| ca_error(e.to_string()))?;
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(ca_error("it contains no PEM certificate".into()));
        }
    }
    // An explicit provider: the client works whether or not a process default is installed.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| JwksError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

async fn fetch_url(client: &HttpsClient, uri: &http::Uri, url: &str) -> Result<Bytes, JwksError> {
    let http_error = |reason: String| JwksError::Http {
        url: url.to_string(),
        reason,
    };
    let request = http::Request::get(uri.clone())
        .header(
            http::header::ACCEPT,
            "application/jwk-set+json, application/json",
        )
        .header(http::header::USER_AGENT, "sparkward")
        .body(Empty::<Bytes>::new())
        .map_err(|e| http_error(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| http_error(error_chain(&e)))?;
    if response.status() != http::StatusCode::OK {
        return Err(JwksError::Status {
            url: url.to_string(),
            status: response.status().as_u16(),
        });
    }
    let too_large = || JwksError::TooLarge {
        origin: url.to_string(),
        limit: MAX_JWKS_BYTES,
    };
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_JWKS_BYTES as u64) {
        return Err(too_large());
    }
    let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                too_large()
            } else {
                http_error(error_chain(e.as_ref()))
            }
        })?;
    Ok(body.to_bytes())
}

async fn read_file(path: &Path) -> Result<Bytes, JwksError> {
    let read_error = |e: std::io::Error| JwksError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let meta = tokio::fs::metadata(path).await.map_err(read_error)?;
    if meta.len() > MAX_JWKS_BYTES as u64 {
        return Err(JwksError::TooLarge {
            origin: path.display().to_string(),
            limit: MAX_JWKS_BYTES,
        });
    }
    let bytes = tokio::fs::read(path).await.map_err(read_error)?;
    Ok(Bytes::from(bytes))
}

/// "client error (Connect): tcp connect error: Connection refused": hyper's top-level errors
/// say little without their sources.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The admission pipeline's view of the cache: verify against the current keys at the current
/// time, then bind the token to the requester.
impl crate::admission::Verifier for JwksCache {
    fn verify<'a>(
        &'a self,
        token: &'a str,
        requester: &'a str,
        cfg: &'a IdentityConfig,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::core::decision::Submitter, crate::core::decision::Reason>,
    > {
        Box::pin(async move {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let identity = JwksCache::verify(self, token, cfg, now)
                .await
                .map_err(crate::core::decision::Reason::from)?;
            crate::core::identity::check_requester(&identity, requester, cfg)
                .map_err(crate::core::decision::Reason::from)?;
            Ok(crate::core::decision::Submitter {
                subject: identity.subject,
                issuer: identity.issuer,
                token_id: identity.token_id,
                scopes: identity.scopes,
            })
        })
    }
}
