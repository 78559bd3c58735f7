//! A crash loses nothing acknowledged and leaves nothing half-made: the real binary, killed with SIGKILL.

use std::time::Duration;

use std::{
    collections::{BTreeMap, BTreeSet},
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex},
};

use ferry::storage::{FileId, StoredFile, shard_path};

use crate::helpers::{ChildServer, eventually, names_in, pattern, run_ferry, sha256_hex};

#[tokio::test]
async fn after_sigkill_published_files_survive_and_temp_files_are_swept() {
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

    // what a crash mid-upload and mid-publish leaves: a temp file, and content whose row was never committed
    std::fs::write(data.path().join("tmp/.tmpHALF"), b"half an upload").unwrap();
    let orphan = shard_path(&data.path().join("files"), FileId::new());
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, b"never committed").unwrap();

    let server = ChildServer::start(data.path(), &[], &[]);
    assert!(names_in(&data.path().join("tmp")).is_empty());
    assert!(orphan.exists(), "startup does not walk files/: content with no row waits for ferry fsck");

    let url = server.url(&format!("/files/download/stream/async_read/{}", kept.id));
    let download = async { client.get(url).send().await.unwrap().bytes().await.unwrap() };
    let body = tokio::time::timeout(Duration::from_secs(10), download).await.unwrap();
    assert_eq!(sha256_hex(&body), kept.sha256);
    assert!(body == bytes);
    let listed: Vec<StoredFile> = client.get(server.url("/files")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, vec![kept]);
}

/// What a stream of uploads saw: the files that got a 201, and every body sent (by sha256), answered or not.
#[derive(Default)]
struct Seen {
    acknowledged: Vec<StoredFile>,
    sent: BTreeSet<String>,
}

/// One client uploading unique bodies one after another until the server goes away (at most 2,000).
async fn upload_until_killed(url: String, client: usize, seen: Arc<Mutex<Seen>>) {
    let http = reqwest::Client::new();
    for n in 0..2000usize {
        let mut body = pattern(1000 + (n * 7919 + client * 104_729) % 60_000);
        body[..16].copy_from_slice(&[(client as u64).to_le_bytes(), (n as u64).to_le_bytes()].concat());
        seen.lock().unwrap().sent.insert(sha256_hex(&body));
        let Ok(res) = http.post(&url).body(body).send().await else { return };
        if res.status() != 201 {
            return;
        }
        let Ok(file) = res.json::<StoredFile>().await else { return };
        seen.lock().unwrap().acknowledged.push(file);
    }
}

/// A random number of milliseconds in `range`.
fn random_ms(range: std::ops::Range<u64>) -> std::time::Duration {
    Duration::from_millis(range.start + RandomState::new().hash_one(0u8) % (range.end - range.start))
}

/// Every file the server lists, through every page.
async fn list_all(server: &ChildServer) -> Vec<StoredFile> {
    let mut all: Vec<StoredFile> = Vec::new();
    loop {
        let after = all.last().map(|f| format!("&after={}", f.id)).unwrap_or_default();
        let page: Vec<StoredFile> =
            reqwest::get(server.url(&format!("/files?limit=1000{after}"))).await.unwrap().json().await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

#[rstest::rstest]
#[tokio::test]
async fn sigkill_at_random_moments_during_uploads_never_loses_a_201_nor_shows_a_partial_file(
    #[values("true", "false")] fsync: &str,
) {
    let data = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    for _round in 0..3 {
        let mut server = ChildServer::start(data.path(), &["--fsync", fsync], &[]);
        let url = server.url("/files/upload/stream/async_read_and_disk_write");
        let clients: Vec<_> =
            (0..4).map(|client| tokio::spawn(upload_until_killed(url.clone(), client, seen.clone()))).collect();
        tokio::time::sleep(random_ms(100..800)).await;
        server.child.kill().unwrap(); // SIGKILL, wherever the uploads are: reading, writing, publishing, answering
        server.child.wait().unwrap();
        for client in clients {
            client.await.unwrap();
        }
    }

    let server = ChildServer::start(data.path(), &["--fsync", fsync], &[]);
    let listed = list_all(&server).await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(!seen.acknowledged.is_empty(), "some uploads got their 201 before the kills");
    let by_id: BTreeMap<FileId, &StoredFile> = listed.iter().map(|f| (f.id, f)).collect();
    for file in &seen.acknowledged {
        assert_eq!(by_id.get(&file.id), Some(&file), "fsync {fsync}: a 201'd file is listed as it was answered");
    }
    let acknowledged: BTreeSet<FileId> = seen.acknowledged.iter().map(|f| f.id).collect();
    for file in &listed {
        // a file committed just before the kill may have lost its 201 on the way: it must still be one that was sent
        assert!(
            acknowledged.contains(&file.id) || seen.sent.contains(&file.sha256),
            "fsync {fsync}: {} is listed but was never sent",
            file.id
        );
        let url = server.url(&format!("/files/download/stream/sync_read/{}", file.id));
        let body = reqwest::get(url).await.unwrap().bytes().await.unwrap();
        assert_eq!(sha256_hex(&body), file.sha256, "fsync {fsync}: {} downloads whole", file.id);
    }
    drop(server);
    let check =
        run_ferry(&[std::ffi::OsStr::new("fsck"), std::ffi::OsStr::new("--data-dir"), data.path().as_os_str()]).await;
    assert_eq!(check.status.code(), Some(0), "fsync {fsync}: {}", String::from_utf8_lossy(&check.stdout));
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
