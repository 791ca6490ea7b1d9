//! Writes the benchmark inputs (benches/inputs) to a directory for `scripts/bench-load`:
//! `config.yaml`, `jwks.json`, `state.json` (the admitted driver pod), `executor-review.json`,
//! `app-review-rs256.json` and `app-review-es256.json` (dry run: the policy is rendered, not
//! applied), and for the validating scenarios `update-review.json` (the driver relabels its
//! admitted executor), `status-review.json` (the kubelet writes its status) and
//! `connect-review.json` (the submitter's exec into the driver). The admitted executor is the
//! executor review's object with the patch of `--admitted-patch FILE` applied (the JSON Patch
//! of sparkward's answer, which the script decodes); without it those three are not written.
//! Tokens are valid for two hours.
//!
//! `cargo run --release --example bench_inputs -- DIR`
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../benches/inputs/mod.rs"]
mod inputs;

use std::path::PathBuf;

use inputs::SigningKey;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .expect("usage: bench_inputs DIR [--admitted-patch FILE]"),
    );
    if let (Some("--admitted-patch"), Some(file)) = (args.get(2).map(String::as_str), args.get(3)) {
        let patch: serde_json::Value =
            serde_json::from_slice(&std::fs::read(file).expect("read the patch")).expect("JSON");
        let admitted = inputs::admitted_executor(&patch);
        for (name, bytes) in [
            ("update-review.json", inputs::update_review(&admitted)),
            ("status-review.json", inputs::status_review(&admitted)),
            ("connect-review.json", inputs::connect_review()),
        ] {
            std::fs::write(dir.join(name), &bytes).expect("write an input file");
            println!("{name}: {} bytes", bytes.len());
        }
        return;
    }
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
