//! The `sparkward` binary: install the crypto provider, parse the command line, run.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

// mimalloc instead of glibc's malloc: a review allocates and frees a few hundred small objects
// (typed views, patch operations, JSON output), and glibc's malloc/free were ~30 % of the
// instructions of a review (callgrind, benches/pipeline). See BENCHMARKS.md.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Installed (or linked) as `kubectl-sparkward`, the binary is the kubectl plugin.
    let mut argv = std::env::args();
    if argv
        .next()
        .is_some_and(|a| sparkward::plugin::invoked_as_plugin(&a))
    {
        return sparkward::plugin::main(argv.collect());
    }
    // One process-wide crypto provider (aws-lc-rs) for rustls, kube's client and the JWKS
    // fetcher; with two providers compiled in, rustls would refuse to pick one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = sparkward::cli::Cli::parse();
    sparkward::telemetry::init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(sparkward::app::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "sparkward failed");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
