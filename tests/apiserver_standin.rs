//! The stand-in API server, exercised through the real `kube::Client`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::apiserver::*;

#[tokio::test]
async fn serves_version() {
    let api = FakeApiServer::start().await;
    let v = api.client().apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
}
