//! Command-line interface (DESIGN.md, "Command line"). Parsing only: `app.rs` turns these into
//! validated settings and runs them.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "sparkward",
    version,
    about = "Admission webhook that ties every Spark job to its submitter's verified identity, \
             hardens its pods and gives it its own CiliumNetworkPolicy"
)]
pub struct Cli {
    /// Log format for diagnostics on stderr (audit lines are always JSON).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Json, env = "SPARKWARD_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the webhook: HTTPS /mutate and /validate, plain HTTP /healthz, /readyz, /metrics.
    Serve(ServeArgs),
    /// Run the admission pipeline offline on one AdmissionReview and print the result as JSON.
    Review(ReviewArgs),
    /// Generate a CA and a serving certificate for development and tests.
    Certs(CertsArgs),
    /// Validate a configuration file, including every scope rule.
    CheckConfig(CheckConfigArgs),
    /// Print a new stamp key line (`id:base64`) for the Secret sparkward-stamp-keys.
    StampKey(StampKeyArgs),
    /// Local mode only: print a token signed by the development identity provider.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The token's subject (with the local mode's requester binding, the user named in the
    /// review).
    #[arg(long)]
    pub sub: String,

    /// Granted scopes (repeat, or space-separated).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,

    /// Lifetime of the token.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub ttl: std::time::Duration,

    /// The configuration sparkward runs with; a token is refused when it names a real
    /// identity provider.
    #[arg(long, env = "SPARKWARD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Where local mode keeps its development certificates and identity provider.
    #[arg(long, default_value = "certs/dev")]
    pub dev_cert_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct StampKeyArgs {
    /// Key id: 1-16 characters of a-z, 0-9 and '-'; stamps name the key they were made with.
    #[arg(long, default_value = "k1")]
    pub id: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file (YAML); reloaded when it changes.
    #[arg(long, env = "SPARKWARD_CONFIG")]
    pub config: Option<PathBuf>,

    /// Serving certificate chain (PEM); reloaded when it changes.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Serving private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM).
    #[arg(long)]
    pub client_ca: Option<PathBuf>,

    /// Address of the HTTPS webhook port.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,

    /// Address of the plain-HTTP /healthz, /readyz and /metrics port.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,

    /// Run without a Kubernetes API: dev certificates, policies written as files. Also chosen
    /// automatically when no Kubernetes configuration exists at all.
    #[arg(long)]
    pub local: bool,

    /// Local mode: directory the job policies are written to.
    #[arg(long, default_value = "local-policies")]
    pub policy_dir: PathBuf,

    /// Local mode: directory for generated development certificates.
    #[arg(long, default_value = "certs/dev")]
    pub dev_cert_dir: PathBuf,

    /// Local mode: existing objects (SparkApplications, Pods) that lookups resolve against, as
    /// a YAML stream, a JSON array or a v1 List.
    #[arg(long)]
    pub cluster_state: Option<PathBuf>,

    /// How often the certificate and config files are checked for changes.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub reload_interval: std::time::Duration,

    /// Development and tests only: how often the lifecycle controller reconciles while it
    /// leads (the configuration's graces and lease duration cannot make a 5 s tick shorter).
    #[arg(long, hide = true, default_value = "5s", value_parser = parse_duration)]
    pub lifecycle_tick: std::time::Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReviewMode {
    Mutate,
    Validate,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// Configuration file (YAML).
    #[arg(long)]
    pub config: Option<PathBuf>,

    /// Existing objects (SparkApplications, ScheduledSparkApplications, Pods, CNPs) for the
    /// lookups the server would make: a YAML stream, a JSON array or a v1 List.
    #[arg(long)]
    pub cluster_state: Option<PathBuf>,

    /// Which webhook to run.
    #[arg(long, value_enum, default_value_t = ReviewMode::Mutate)]
    pub mode: ReviewMode,

    /// Use this JWKS file instead of the config's identity.jwks source.
    #[arg(long)]
    pub jwks: Option<PathBuf>,

    /// Stamp key file to make and check stamps with (default: the config's stamp.keyFile when
    /// it is readable, otherwise a fixed offline key that no cluster trusts, so that a
    /// `--mode validate` run accepts what an earlier offline mutate run stamped).
    #[arg(long)]
    pub stamp_keys: Option<PathBuf>,

    /// The AdmissionReview (JSON); `-` or nothing reads stdin.
    pub review: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Output directory for ca.crt, tls.crt and tls.key.
    #[arg(long)]
    pub out: PathBuf,

    /// DNS names (and IP addresses) of the serving certificate.
    #[arg(long = "dns", required = true, num_args = 1..)]
    pub dns: Vec<String>,

    /// Validity of the serving certificate in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// The configuration file to check.
    pub file: PathBuf,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    crate::config::HumanDuration::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults_match_the_design() {
        let cli = Cli::try_parse_from(["sparkward", "serve"]).unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(s.listen.to_string(), "0.0.0.0:8443");
        assert_eq!(s.metrics_listen.to_string(), "0.0.0.0:9090");
        assert!(!s.local);
    }

    #[test]
    fn tls_cert_needs_key() {
        assert!(Cli::try_parse_from(["sparkward", "serve", "--tls-cert", "a"]).is_err());
    }
}
