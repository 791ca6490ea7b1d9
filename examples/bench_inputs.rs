//! Writes the benchmark inputs (benches/inputs) to a directory for `scripts/bench-load`:
//! `config.yaml`, `jwks.json`, `state.json` (the admitted driver pod), `executor-review.json`,
//! `app-review-rs256.json` and `app-review-es256.json` (dry run: the policy is rendered, not
//! applied). Tokens are valid for two hours.
//!
//! `cargo run --release --example bench_inputs -- DIR`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/inputs/mod.rs"]
mod inputs;

use std::path::PathBuf;

use inputs::SigningKey;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: bench_inputs DIR"));
    std::fs::create_dir_all(&dir).expect("create the output directory");
    let dir = dir.canonicalize().expect("output directory");
    let (rs, es) = (SigningKey::rs256(), SigningKey::es256());
    let jwks_path = dir.join("jwks.json");
    let files: [(&str, Vec<u8>); 6] = [
        ("jwks.json", inputs::jwks(&[&rs, &es])),
        (
            "config.yaml",
            inputs::config_yaml(jwks_path.to_str().expect("utf-8 path")).into_bytes(),
        ),
        ("state.json", inputs::cluster_state().into_bytes()),
        ("executor-review.json", inputs::executor_review()),
        (
            "app-review-rs256.json",
            inputs::app_review(&rs.token(7200), true),
        ),
        (
            "app-review-es256.json",
            inputs::app_review(&es.token(7200), true),
        ),
    ];
    for (name, bytes) in files {
        std::fs::write(dir.join(name), &bytes).expect("write an input file");
        println!("{name}: {} bytes", bytes.len());
    }
}
