//! Hostile clients against the real server over TLS on 127.0.0.1: hundreds of idle and
//! half-open connections (TCP only, a TLS handshake begun and left, a finished handshake and
//! then silence, an HTTP/2 preface and then silence), slow-loris headers and bodies, oversized
//! headers and bodies, and more clients than `server.maxConnections`.
//!
//! What must hold: every such connection is shed by a timeout (the client sees the socket
//! closed, the metrics count it), oversized input gets a 431/413 answer and never takes the
//! server down, the server's memory stays bounded while the attack holds its connections, and
//! a normal review is answered successfully in the middle of it all. No assertion is about
//! time: a wait is only bounded so that a server that never sheds fails instead of hanging.
//! The figures (connections held, RSS, latency of the normal review) are printed for
//! RELIABILITY.md; `SPARKWARD_HOSTILE_CONNS` sets the size of the idle attack (default 400).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::reviews::Review;
use support::webhook::{HttpVersion, Options, Sparkward, client_tls};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A review the pipeline decides without an identity provider and allows (see tests/server.rs).
fn normal_review() -> serde_json::Value {
    Review::cnp(json!({
        "apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
        "metadata": {"name": "team-policy", "namespace": "spark-jobs"},
        "specs": [{"endpointSelector": {}}]
    }))
    .user("system:serviceaccount:kube-system:namespace-controller")
    .build()
}

/// Sends one normal review on a fresh client and asserts it is allowed; returns its latency.
async fn assert_normal_review(s: &Sparkward) -> Duration {
    let client = s.client(HttpVersion::Http1);
    let started = Instant::now();
    let (status, answer) = client.review("/validate", &normal_review()).await;
    let took = started.elapsed();
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    took
}

fn config(extra: &str) -> Options {
    Options {
        config: Some(format!("server:\n{extra}")),
        ..Options::default()
    }
}

/// Resident memory of the server process, in KiB.
fn rss_kib(s: &Sparkward) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// A sample's value from the Prometheus text of `/metrics` (0 when absent).
async fn metric(s: &Sparkward, sample: &str) -> f64 {
    let (_, text) = s.probe("/metrics").await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the server closes `conn` (EOF or a reset), reading and discarding whatever it
/// sends first (such as a 408). Panics if it is still open after `limit`, which only a
/// server that never sheds the connection can cause.
async fn closed_by_server(mut conn: impl AsyncRead + Unpin, limit: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return seen,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {limit:?}; it sent {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
}

fn tls_connector(s: &Sparkward, alpn: &[u8]) -> tokio_rustls::TlsConnector {
    let mut cfg = client_tls(&s.certs.ca_pem, None);
    cfg.alpn_protocols = vec![alpn.to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

async fn tls(s: &Sparkward, alpn: &[u8]) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = TcpStream::connect(s.webhook).await.unwrap();
    tls_connector(s, alpn)
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// The first bytes of a TLS ClientHello record: a handshake begun and never finished.
const PARTIAL_CLIENT_HELLO: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
/// The HTTP/2 connection preface and an empty SETTINGS frame.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

#[tokio::test]
async fn idle_and_half_open_connections_are_shed_while_reviews_are_answered() {
    let total: usize = std::env::var("SPARKWARD_HOSTILE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let s = Sparkward::start(config("  readTimeout: 2s\n  idleTimeout: 3s\n")).await;
    // Warm up (first TLS handshake, first review), then the baseline.
    let calm = assert_normal_review(&s).await;
    let rss_before = rss_kib(&s);

    // Five kinds of dead weight, in equal parts.
    let per = total / 5;
    let mut tcp_only = Vec::new();
    let mut hello_begun = Vec::new();
    for _ in 0..per {
        tcp_only.push(TcpStream::connect(s.webhook).await.unwrap());
        let mut c = TcpStream::connect(s.webhook).await.unwrap();
        c.write_all(PARTIAL_CLIENT_HELLO).await.unwrap();
        hello_begun.push(c);
    }
    let mut tls_silent = Vec::new();
    let mut h2_silent = Vec::new();
    let mut sniff_stalled = Vec::new();
    for _ in 0..per {
        tls_silent.push(tls(&s, b"http/1.1").await);
        let mut h2 = tls(&s, b"h2").await;
        h2.write_all(H2_PREFACE).await.unwrap();
        h2.flush().await.unwrap();
        h2_silent.push(h2);
        // Fewer than the 24 bytes the HTTP/1-or-2 sniffing waits for.
        let mut partial = tls(&s, b"h2").await;
        partial.write_all(b"PRI * HTTP/2.0").await.unwrap();
        partial.flush().await.unwrap();
        sniff_stalled.push(partial);
    }
    let held = metric(&s, "sparkward_connections_open").await;
    let rss_during = rss_kib(&s);

    // In the middle of it, a normal review is answered.
    let during = assert_normal_review(&s).await;

    // Every one of them is shed by the server.
    let limit = Duration::from_secs(60);
    let waits = tcp_only
        .into_iter()
        .map(|c| tokio::spawn(async move { closed_by_server(c, limit).await }))
        .chain(
            hello_begun
                .into_iter()
                .map(|c| tokio::spawn(async move { closed_by_server(c, limit).await })),
        )
        .chain(
            tls_silent
                .into_iter()
                .chain(h2_silent)
                .chain(sniff_stalled)
                .map(|c| tokio::spawn(async move { closed_by_server(c, limit).await })),
        )
        .collect::<Vec<_>>();
    for w in waits {
        w.await.unwrap();
    }
    let after = assert_normal_review(&s).await;
    let rss_after = rss_kib(&s);

    let handshake_timeouts = metric(
        &s,
        "sparkward_connections_shed_total{reason=\"handshake_timeout\"}",
    )
    .await;
    let idle_timeouts = metric(
        &s,
        "sparkward_connections_shed_total{reason=\"idle_timeout\"}",
    )
    .await;
    // TCP-only and begun handshakes time out in the handshake; the silent TLS connections
    // (HTTP/1, HTTP/2 after its preface, stalled protocol sniffing) as idle.
    assert!(
        handshake_timeouts >= (2 * per) as f64,
        "handshake timeouts: {handshake_timeouts}"
    );
    assert!(
        idle_timeouts >= (3 * per) as f64,
        "idle timeouts: {idle_timeouts}"
    );
    // Bounded memory: a few hundred held connections cost the server some MiB, not more.
    let growth_mib = rss_during.saturating_sub(rss_before) / 1024;
    assert!(
        growth_mib < 128,
        "RSS grew by {growth_mib} MiB while {held} connections were held"
    );
    eprintln!(
        "hostile idle: {} attack connections ({per} TCP-only, {per} half-done handshakes, \
         {per} silent TLS, {per} silent HTTP/2, {per} stalled sniffing); connections_open \
         when all were opened {held}; RSS before {} KiB, during {} KiB, after {} KiB; \
         normal review {:.2} ms before, {:.2} ms during, {:.2} ms after; shed: \
         {handshake_timeouts} handshake timeouts, {idle_timeouts} idle",
        5 * per,
        rss_before,
        rss_during,
        rss_after,
        calm.as_secs_f64() * 1e3,
        during.as_secs_f64() * 1e3,
        after.as_secs_f64() * 1e3,
    );
}

#[tokio::test]
async fn slow_loris_headers_and_bodies_are_cut_off() {
    let s = Sparkward::start(config("  readTimeout: 1s\n")).await;
    let request = normal_review().to_string();
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        request.len()
    );
    // Clients dripping their headers or their body one byte at a time, each on its own task.
    let mut drips = Vec::new();
    for i in 0..40 {
        let mut conn = tls(&s, b"http/1.1").await;
        let bytes = if i % 2 == 0 {
            head.clone().into_bytes()
        } else {
            conn.write_all(head.as_bytes()).await.unwrap();
            request.clone().into_bytes()
        };
        drips.push(tokio::spawn(async move {
            let (mut rd, mut wr) = tokio::io::split(conn);
            let writer = tokio::spawn(async move {
                for b in bytes {
                    if wr.write_all(&[b]).await.is_err() || wr.flush().await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, rd.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
                    Err(_) => panic!("a slow client was never cut off"),
                }
            }
            writer.abort();
            (i % 2 == 0, String::from_utf8_lossy(&seen).into_owned())
        }));
    }
    // Meanwhile, normal reviews are answered.
    let mut latencies = Vec::new();
    for _ in 0..5 {
        latencies.push(assert_normal_review(&s).await);
    }
    for d in drips {
        let (headers, answer) = d.await.unwrap();
        if headers {
            // Headers never finished: closed, with or without a 408 first.
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
                "{answer}"
            );
        } else {
            // Headers arrived, the body never did: 408 from the body timeout.
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        }
    }
    assert!(metric(&s, "sparkward_http_rejected_total{reason=\"timeout\"}").await >= 20.0);
    assert_normal_review(&s).await;
    eprintln!(
        "hostile slow-loris: 20 header drips + 20 body drips cut off; normal reviews during: {:?}",
        latencies
            .iter()
            .map(|d| format!("{:.2} ms", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
    );
}

/// Writes `head` and then up to `body_len` bytes of body in 64 KiB chunks (stopping when the
/// server stops reading), and returns what the server answered.
async fn send_raw(s: &Sparkward, head: &[u8], body_len: usize) -> String {
    let conn = tls(s, b"http/1.1").await;
    let (mut rd, mut wr) = tokio::io::split(conn);
    let head = head.to_vec();
    let writer = tokio::spawn(async move {
        if wr.write_all(&head).await.is_err() {
            return;
        }
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            let n = chunk.len().min(body_len - sent);
            if wr.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            sent += n;
        }
        let _ = wr.flush().await;
    });
    let seen = closed_by_server_or_answer(&mut rd).await;
    writer.abort();
    seen
}

/// Reads until the server closes or has sent a complete response head.
async fn closed_by_server_or_answer(conn: &mut (impl AsyncRead + Unpin)) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                seen.extend_from_slice(&buf[..n]);
                if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => panic!("no answer and no close for an oversized request"),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn oversized_headers_and_bodies_get_431_or_413_and_the_server_stays_up() {
    let mut s = Sparkward::start(config("  readTimeout: 5s\n")).await;
    // One header value far over the 64 KiB header buffer.
    let mut big = b"POST /validate HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 200 * 1024));
    big.extend_from_slice(b"\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
    let answer = send_raw(&s, &big, 0).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // More header lines than the parser accepts.
    let mut many = b"POST /validate HTTP/1.1\r\nhost: x\r\n".to_vec();
    for i in 0..500 {
        many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"content-type: application/json\r\ncontent-length: 2\r\n\r\n{}");
    let answer = send_raw(&s, &many, 0).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A declared body over server.maxBodyBytes (4 MiB): refused before it is read.
    let answer = send_raw(
        &s,
        b"POST /validate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 8388608\r\n\r\n",
        8 << 20,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A chunked body that never says how long it is: refused once it passes the limit.
    let conn = tls(&s, b"http/1.1").await;
    let (mut rd, mut wr) = tokio::io::split(conn);
    let writer = tokio::spawn(async move {
        if wr
            .write_all(b"POST /validate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
        for _ in 0..(6 * 16) {
            if wr.write_all(chunk.as_bytes()).await.is_err() {
                return;
            }
        }
    });
    let answer = closed_by_server_or_answer(&mut rd).await;
    writer.abort();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // Still serving, and still the same process.
    assert!(s.child.try_wait().unwrap().is_none(), "the server exited");
    assert_normal_review(&s).await;
    let rss = rss_kib(&s);
    assert!(rss < 256 * 1024, "RSS {rss} KiB after oversized requests");
    eprintln!("hostile oversized: 431, 431, 413, 413; RSS afterwards {rss} KiB");
}

#[tokio::test]
async fn an_oversized_http2_header_list_is_refused_and_the_connection_survives() {
    let s = Sparkward::start(config("  readTimeout: 5s\n")).await;
    let io = hyper_util::rt::TokioIo::new(tls(&s, b"h2").await);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::spawn(conn);
    let mk = |big: Option<usize>| {
        let mut req = http::Request::builder()
            .method(http::Method::POST)
            .uri(format!("{}/validate", s.base_url()))
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(n) = big {
            req = req.header("x-big", "a".repeat(n));
        }
        req.body(http_body_util::Full::new(bytes::Bytes::from(
            normal_review().to_string(),
        )))
        .unwrap()
    };
    // Over h2's 16 KiB header list limit: a 431 answer or a reset stream, never a crash.
    match sender.send_request(mk(Some(64 * 1024))).await {
        Ok(resp) => assert_eq!(resp.status(), 431),
        Err(e) => eprintln!("hostile h2 oversized header: stream refused ({e})"),
    }
    // A normal request goes through, on a new connection if the old one was closed.
    sender.ready().await.ok();
    assert_normal_review(&s).await;
}

#[tokio::test]
async fn at_the_connection_limit_new_clients_wait_and_are_then_served() {
    let s = Sparkward::start(config("  readTimeout: 2s\n  maxConnections: 32\n")).await;
    // Fill every slot with connections that never start a handshake.
    let mut squatters = Vec::new();
    for _ in 0..64 {
        squatters.push(TcpStream::connect(s.webhook).await.unwrap());
    }
    // The server fills its 32 slots and holds no more than that...
    let mut open = 0.0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while open < 32.0 && Instant::now() < deadline {
        open = metric(&s, "sparkward_connections_open").await;
        assert!(
            open <= 32.0,
            "{open} connections open with maxConnections 32"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(open, 32.0, "the squatters never filled the slots");
    // ...and a normal client is served once the squatters are shed.
    let started = Instant::now();
    let took = assert_normal_review(&s).await;
    let open_after = metric(&s, "sparkward_connections_open").await;
    assert!(open_after <= 32.0, "{open_after}");
    for c in squatters {
        closed_by_server(c, Duration::from_secs(60)).await;
    }
    eprintln!(
        "hostile limit: 64 squatters on 32 slots; connections_open {open}; the normal review \
         waited {:.0} ms for a slot ({:.0} ms in all)",
        took.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
}

/// Bodies sent all but their last byte and then held, beyond what the memory budget holds:
/// without the budget the server would keep every one until its read timeout (a thousand
/// connections of 4 MiB, 4 GiB). `server.maxMemoryInFlight` is set to its least for
/// `maxBodyBytes: 256 KiB` (64 KiB + 48 × 256 KiB = 12.06 MiB): 48 holders fill it with the
/// bytes they sent, the 30 clients after them are answered 503 at once, and so is a normal
/// review, whose review would count 64 KiB plus 48 bytes per body byte. Once the holders are
/// shed by the read timeout, all they held is given back and reviews are answered.
#[tokio::test]
async fn bodies_held_open_fill_the_memory_budget_and_no_more() {
    const BODY: usize = 256 * 1024;
    const BUDGET: usize = 65536 + 48 * BODY;
    let s = Arc::new(
        Sparkward::start(config(&format!(
            "  readTimeout: 8s\n  maxBodyBytes: {BODY}\n  maxMemoryInFlight: {BUDGET}\n"
        )))
        .await,
    );
    let rss_before = rss_kib(&s);
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {BODY}\r\n\r\n"
    );
    let hold = |s: &Arc<Sparkward>| {
        let (s, head) = (s.clone(), head.clone());
        tokio::spawn(async move { send_raw(&s, head.as_bytes(), BODY - 1).await })
    };
    // 48 holders: together they fit, with less than 64 KiB to spare.
    let holders: Vec<_> = (0..48).map(|_| hold(&s)).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&s, "sparkward_review_memory_bytes").await < (48 * (BODY - 1)) as f64 {
        assert!(
            Instant::now() < deadline,
            "the holders never got their bodies in"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 30 more are refused as their bytes arrive, and the server's memory stays put.
    let refused: Vec<String> = futures::future::join_all((0..30).map(|_| hold(&s)))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let most_rss = rss_kib(&s);
    let (status, answer) = s
        .client(HttpVersion::Http1)
        .review("/validate", &normal_review())
        .await;
    let counted = metric(&s, "sparkward_review_memory_bytes").await;
    for a in &refused {
        assert!(
            a.starts_with("HTTP/1.1 503") && a.contains("retry-after: 1"),
            "{a}"
        );
    }
    assert_eq!(status, 503, "{answer}");
    let message = answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("server.maxMemoryInFlight") && message.contains("retry"),
        "{message}"
    );
    assert!(counted <= BUDGET as f64, "counted {counted} bytes");
    assert_eq!(
        metric(&s, "sparkward_http_rejected_total{reason=\"memory\"}").await,
        31.0
    );
    // The process's growth also holds each TLS connection's own state (a few hundred KiB in
    // this debug build, bounded by `maxConnections`, as in the idle test): a sanity bound only;
    // what the budget governs is asserted on its count above.
    let growth = most_rss.saturating_sub(rss_before);
    assert!(growth < 128 * 1024, "RSS grew by {growth} KiB");
    // The holders are shed by the read timeout; what they held is given back.
    for h in holders {
        let a = h.await.unwrap();
        assert!(a.starts_with("HTTP/1.1 408"), "{a}");
    }
    assert_eq!(metric(&s, "sparkward_review_memory_bytes").await, 0.0);
    assert_normal_review(&s).await;
    eprintln!(
        "hostile memory budget: 48 bodies of 256 KiB held open fill the {} KiB budget; 30 more \
         and a normal review answered 503 at once; RSS {rss_before} KiB before, {most_rss} KiB \
         with all 78 offered",
        BUDGET / 1024
    );
}
