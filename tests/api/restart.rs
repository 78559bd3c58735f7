//! A crash loses nothing acknowledged and leaves nothing half-made: the real binary, killed with SIGKILL.

use std::time::Duration;

use ferry::storage::StoredFile;

use crate::helpers::{ChildServer, eventually, names_in, pattern, sha256_hex};

#[tokio::test]
async fn after_sigkill_published_files_survive_and_leftovers_are_swept() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let bytes = pattern(200_000);

    let mut server = ChildServer::start(data.path(), &["--fsync", "true"], &[]);
    let url = server.url("/files/upload/stream/async_read_and_disk_write?filename=keep.bin");
    let res = client.post(url).body(bytes.clone()).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let kept: StoredFile = res.json().await.unwrap();
    server.child.kill().unwrap(); // SIGKILL right after the 201
    server.child.wait().unwrap();

    // what a crash mid-upload and mid-publish leaves: a temp file, and content whose metadata never landed
    std::fs::write(data.path().join("tmp/.tmpHALF"), b"half an upload").unwrap();
    let orphan = ferry::storage::FileId::new().to_string();
    std::fs::write(data.path().join("files").join(&orphan), b"never published").unwrap();

    let server = ChildServer::start(data.path(), &[], &[]);
    assert!(names_in(&data.path().join("tmp")).is_empty());
    let files = names_in(&data.path().join("files"));
    assert_eq!(files, vec![kept.id.to_string(), format!("{}.json", kept.id)]);

    let url = server.url(&format!("/files/download/stream/async_read/{}", kept.id));
    let download = async { client.get(url).send().await.unwrap().bytes().await.unwrap() };
    let body = tokio::time::timeout(Duration::from_secs(10), download).await.unwrap();
    assert_eq!(sha256_hex(&body), kept.sha256);
    assert!(body == bytes);
    let listed: Vec<StoredFile> = client.get(server.url("/files")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, vec![kept]);
}

/// `bytes` sent in 1 MiB pieces, the first at once and then one every `every`, so the upload is in flight for
/// a while.
fn paced_body(bytes: bytes::Bytes, every: Duration) -> reqwest::Body {
    let pieces = futures_util::stream::unfold(0usize, move |sent| {
        let bytes = bytes.clone();
        async move {
            if sent >= bytes.len() {
                return None;
            }
            if sent > 0 {
                tokio::time::sleep(every).await;
            }
            let end = bytes.len().min(sent + (1 << 20));
            Some((Ok::<_, std::io::Error>(bytes.slice(sent..end)), end))
        }
    });
    reqwest::Body::wrap_stream(pieces)
}

/// Waits until the server is writing an upload into `tmp/`.
async fn upload_under_way(data: &std::path::Path) {
    assert!(eventually(|| !names_in(&data.join("tmp")).is_empty()).await, "the upload never started");
}

fn signal(server: &ChildServer, signal: i32) {
    // SAFETY: kill only sends a signal to the child this test started
    assert_eq!(unsafe { libc::kill(server.child.id() as i32, signal) }, 0);
}

#[tokio::test]
async fn an_upload_in_flight_survives_sigterm_and_sigint_and_the_server_then_stops() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let data = tempfile::tempdir().unwrap();
        let mut server = ChildServer::start(data.path(), &["--shutdown-timeout", "20s"], &[]);
        let bytes = bytes::Bytes::from(pattern(50 << 20));
        let url = server.url("/files/upload/stream/async_read_and_disk_write?filename=big.bin");
        let body = paced_body(bytes.clone(), Duration::from_millis(40));
        let upload = tokio::spawn(reqwest::Client::new().post(url).body(body).send());
        upload_under_way(data.path()).await;
        signal(&server, sig);
        let res = upload.await.unwrap().unwrap();
        assert_eq!(res.status(), 201, "signal {sig}");
        let stored: StoredFile = res.json().await.unwrap();
        assert_eq!(stored.sha256, sha256_hex(&bytes), "signal {sig}");
        let exited = tokio::task::spawn_blocking(move || server.child.wait().unwrap()).await.unwrap();
        assert!(exited.success(), "signal {sig}: the server stops by itself once the upload is done");

        let server = ChildServer::start(data.path(), &[], &[]);
        let listed: Vec<StoredFile> = reqwest::get(server.url("/files")).await.unwrap().json().await.unwrap();
        assert_eq!(listed.iter().map(|f| f.id).collect::<Vec<_>>(), [stored.id], "signal {sig}");
        assert!(server.log().iter().all(|line| !line.contains("ERROR")), "signal {sig}");
    }
}

#[tokio::test]
async fn an_upload_stalled_past_the_shutdown_timeout_leaves_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(data.path(), &["--shutdown-timeout", "1s"], &[]);
    let url = server.url("/files/upload/stream/async_read_and_disk_write");
    let body = paced_body(bytes::Bytes::from(pattern(8 << 20)), Duration::from_secs(5));
    let upload = tokio::spawn(reqwest::Client::new().post(url).body(body).send());
    upload_under_way(data.path()).await;
    let started = std::time::Instant::now();
    signal(&server, libc::SIGTERM);
    tokio::task::spawn_blocking(move || server.child.wait().unwrap()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "stopped after {:?}", started.elapsed());
    assert!(upload.await.unwrap().is_err(), "the cut upload gets no answer");
    assert!(names_in(&data.path().join("tmp")).is_empty(), "{:?}", names_in(&data.path().join("tmp")));
    assert!(names_in(&data.path().join("files")).is_empty());
}

#[tokio::test]
async fn readiness_turns_503_on_sigterm_while_an_upload_is_in_flight_before_the_listener_closes() {
    let data = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(data.path(), &["--shutdown-delay", "5s", "--shutdown-timeout", "30s"], &[]);
    // a new connection for every probe: the listener itself must still take them
    let probe = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    assert_eq!(probe.get(server.url("/health/ready")).send().await.unwrap().status(), 200);
    let url = server.url("/files/upload/stream/async_read_and_disk_write?filename=late.bin");
    let bytes = bytes::Bytes::from(pattern(24 << 20));
    let upload = tokio::spawn(
        reqwest::Client::new().post(url).body(paced_body(bytes.clone(), Duration::from_millis(400))).send(),
    );
    upload_under_way(data.path()).await;

    signal(&server, libc::SIGTERM);
    let mut answer = None;
    for _ in 0..100 {
        let res = probe.get(server.url("/health/ready")).send().await.expect("the listener is still open");
        if res.status() == 503 {
            answer = Some(res.json::<serde_json::Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = answer.expect("readiness turned 503");
    assert_eq!(answer["message"], "not ready: shutting down", "{answer}");
    assert!(!upload.is_finished(), "the upload is still in flight");
    assert_eq!(probe.get(server.url("/health/live")).send().await.unwrap().status(), 200, "still alive");

    let res = upload.await.unwrap().unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.json::<StoredFile>().await.unwrap().sha256, sha256_hex(&bytes));
    let exited = tokio::task::spawn_blocking(move || server.child.wait().unwrap()).await.unwrap();
    assert!(exited.success());
}
