//! The connection level: `Expect: 100-continue` answered from the head, a deadline on every request head of a
//! kept-alive connection, and a cap on connections that keeps room to serve under a lowered fd limit.

use std::time::{Duration, Instant};

use ferry::upload::Strategy;
use rstest_reuse::apply;
use tokio::{io::AsyncReadExt, net::TcpStream};

use crate::{
    each_upload,
    helpers::{
        ChildServer, TestApp, body_prefix, content_type_for, file_limit, read_response, request_head, send_all,
        spawn_app,
    },
};

/// Sends an upload's head with `Expect: 100-continue` and reads the first answer, before any body byte.
async fn first_answer(app: &TestApp, head: &str) -> (TcpStream, String) {
    let mut stream = app.raw().await;
    send_all(&mut stream, head.as_bytes()).await;
    let answer = read_response(&mut stream, Duration::from_secs(5)).await;
    (stream, answer)
}

#[apply(each_upload)]
async fn expect_100_continue_is_refused_from_the_head_when_the_head_decides(strategy: Strategy) {
    let app = spawn_app().await;
    let expect = "Expect: 100-continue\r\n";
    let over = strategy.body_limit(file_limit(strategy)) + 1;
    let head = request_head(strategy, content_type_for(strategy), &format!("{expect}Content-Length: {over}\r\n"));
    let (_, answer) = first_answer(&app, &head).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{strategy:?}: {answer}");
    assert!(answer.contains("payload_too_large") && answer.contains("connection: close"), "{strategy:?}: {answer}");

    if strategy.read().body().expects().is_some() {
        let head = request_head(strategy, "text/plain", &format!("{expect}Content-Length: 10\r\n"));
        let (_, answer) = first_answer(&app, &head).await;
        assert!(answer.starts_with("HTTP/1.1 415"), "{strategy:?}: {answer}");
    }

    // under the limit: 100 first, then the body, then 201
    let body = [body_prefix(strategy), b"abc", &suffix(strategy)].concat();
    let head =
        request_head(strategy, content_type_for(strategy), &format!("{expect}Content-Length: {}\r\n", body.len()));
    let (mut stream, answer) = first_answer(&app, &head).await;
    assert_eq!(answer, "HTTP/1.1 100 Continue\r\n\r\n", "{strategy:?}");
    send_all(&mut stream, &body).await;
    let answer = read_response(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 201"), "{strategy:?}: {answer}");
    assert!(app.stored_names().len() == 1, "{strategy:?}: only the accepted upload is stored");
}

/// What closes a body that `body_prefix` opened, around three bytes of content.
fn suffix(strategy: Strategy) -> Vec<u8> {
    match strategy.read().body() {
        ferry::upload::BodyKind::Raw => vec![],
        ferry::upload::BodyKind::Json => b"\"}".to_vec(),
        ferry::upload::BodyKind::Multipart => b"\r\n--XyZ--\r\n".to_vec(),
    }
}

#[tokio::test]
async fn expect_100_continue_on_an_unknown_route_is_a_json_404_without_continue() {
    let app = spawn_app().await;
    let head = "POST /nowhere HTTP/1.1\r\nHost: ferry\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let (_, answer) = first_answer(&app, head).await;
    assert!(answer.starts_with("HTTP/1.1 404") && answer.contains("no route for POST /nowhere"), "{answer}");
}

/// Opens a connection, makes one real request on it, then trickles the next request's head a byte at a time;
/// returns how long the server kept the connection open after the trickle began (or `None` if it never
/// closed within `patience`).
async fn trickle(addr: std::net::SocketAddr, patience: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    send_all(&mut stream, b"GET /health HTTP/1.1\r\nHost: ferry\r\n\r\n").await;
    let first = read_response(&mut stream, patience).await;
    if !first.starts_with("HTTP/1.1 200") {
        return Some(Duration::ZERO);
    }
    let started = Instant::now();
    let mut buf = [0; 64];
    for byte in b"GET /health HTTP/1.1\r\nHost: ferry\r\nX-Slow: ".iter().cycle() {
        if started.elapsed() > patience {
            return None;
        }
        if tokio::io::AsyncWriteExt::write_all(&mut stream, &[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        if let Ok(read) = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
            // the server closed (0) or reset the connection
            if matches!(read, Ok(0) | Err(_)) {
                return Some(started.elapsed());
            }
        }
    }
    unreachable!()
}

#[tokio::test]
async fn a_kept_alive_connection_that_trickles_its_next_head_is_closed_at_the_header_timeout() {
    let app = crate::helpers::spawn_app_with(|config| config.header_timeout = Duration::from_secs(1)).await;
    let held = trickle(app.addr, Duration::from_secs(10)).await.expect("the server never closed the connection");
    assert!(held >= Duration::from_millis(900) && held < Duration::from_secs(4), "closed after {held:?}");
    // an upload slower than the header timeout is not cut: its body is not a head
    let slow_body = async_stream_body(Duration::from_millis(300), 8);
    let res = app.upload_request(Strategy::StreamDiskWrite, vec![], "slow.bin").body(slow_body).send().await.unwrap();
    assert_eq!(res.status(), 201);
}

/// A body of `pieces` small chunks, one every `every`: slower in total than the header timeout.
fn async_stream_body(every: Duration, pieces: usize) -> reqwest::Body {
    let chunks = futures_util::stream::unfold(0, move |sent| async move {
        if sent == pieces {
            return None;
        }
        tokio::time::sleep(every).await;
        Some((Ok::<_, std::io::Error>(vec![b'x'; 100]), sent + 1))
    });
    reqwest::Body::wrap_stream(chunks)
}

#[tokio::test]
async fn hundreds_of_tricklers_under_a_low_fd_limit_cannot_lock_out_a_new_client() {
    let data = tempfile::tempdir().unwrap();
    // 200 descriptors: the default cap is (200 - 64) / 2 = 68 connections
    let server = ChildServer::start(data.path(), &["--header-timeout", "1s"], &["prlimit", "--nofile=200:200"]);
    let app = TestApp::for_child(&server, data.path());
    let tricklers: Vec<_> = (0..300).map(|_| tokio::spawn(trickle(server.addr, Duration::from_secs(20)))).collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let res = app.upload(Strategy::StreamDiskWrite, b"a new client").await;
    let served_after = started.elapsed();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    // each round of 68 tricklers is cut after 1 s; the new client waits at most for the rounds ahead of it
    assert!(served_after < Duration::from_secs(8), "served after {served_after:?}");

    let mut never_closed = 0;
    for trickler in tricklers {
        if trickler.await.unwrap().is_none() {
            never_closed += 1;
        }
    }
    assert_eq!(never_closed, 0, "every trickling connection is closed by the server");
    assert!(server.open_fds() < 100, "open descriptors after the storm: {}", server.open_fds());
}

#[tokio::test]
async fn a_flood_of_malformed_requests_is_logged_as_a_few_warnings_not_errors() {
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&server, data.path());
    for _ in 0..50 {
        let answer = app.exchange(b"GARBAGE\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    }
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log();
    assert!(!log.iter().any(|line| line.contains("ERROR")), "{log:#?}");
    let warned =
        log.iter().filter(|line| line.contains("WARN") && line.contains("refused a malformed request")).count();
    assert!((1..=5).contains(&warned), "{warned} warnings for 50 malformed requests: {log:#?}");
}
