//! Data at rest: one server per data directory, damaged files quarantined and never deleted, content that does
//! not match its metadata never served as if it did, `ferry fsck`, and the right status for storage failures.

use std::{ffi::OsStr, io::Write, path::Path, time::Duration};

use ferry::{
    download::Reader,
    storage::{FileId, StoredFile, shard_path},
    upload::Strategy,
};
use tokio::net::TcpStream;

use crate::helpers::{
    ChildServer, TestApp, eventually, names_in, pattern, read_response, request_head, run_ferry, send_all, spawn_app,
    stored_content,
};

// One data directory, one server

#[tokio::test]
async fn a_second_ferry_on_the_same_data_dir_is_refused_and_leaves_the_first_ones_uploads_alone() {
    let data = tempfile::tempdir().unwrap();
    let first = ChildServer::start(data.path(), &[], &[]);
    let tmp = data.path().join("tmp");

    // an upload under way on the first server: half its body sent, its temp file in tmp/
    let mut upload = TcpStream::connect(first.addr).await.unwrap();
    let strategy = Strategy::StreamDiskWrite;
    let head = request_head(strategy, "application/octet-stream", "Content-Length: 2000\r\n");
    send_all(&mut upload, head.as_bytes()).await;
    send_all(&mut upload, &[b'a'; 1000]).await;
    assert!(eventually(|| names_in(&tmp).len() == 1).await, "the upload has a temp file");

    let second = run_ferry(&[
        OsStr::new("--addr"),
        OsStr::new("127.0.0.1:0"),
        OsStr::new("--data-dir"),
        data.path().as_os_str(),
    ])
    .await;
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    let expected = format!(
        "ferry: cannot use data directory {}: another ferry (pid {}) is using it\n",
        data.path().display(),
        first.child.id()
    );
    assert!(said.ends_with(&expected), "{said}");
    assert_eq!(names_in(&tmp).len(), 1, "the second ferry swept the first one's upload");

    send_all(&mut upload, &[b'b'; 1000]).await;
    let response = read_response(&mut upload, Duration::from_secs(10)).await;
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
}

#[tokio::test]
async fn the_lock_goes_with_the_process_that_held_it() {
    let data = tempfile::tempdir().unwrap();
    let mut first = ChildServer::start(data.path(), &[], &[]);
    first.child.kill().unwrap(); // SIGKILL: no chance to clean up
    first.child.wait().unwrap();
    let second = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&second, data.path());
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 200);
    let pid = std::fs::read_to_string(data.path().join(".lock")).unwrap();
    assert_eq!(pid.trim(), second.child.id().to_string(), "the lock file names its holder");
}

// Helpers shared with the migration and crash tests

/// Stores one file of each size through a server on `data`, then SIGKILLs it, leaving the files on disk.
pub async fn stored_then_killed(data: &Path, sizes: &[usize]) -> Vec<StoredFile> {
    let mut server = ChildServer::start(data, &[], &[]);
    let app = TestApp::for_child(&server, data);
    let mut stored = Vec::new();
    for &size in sizes {
        stored.push(app.store(&pattern(size)).await);
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    stored
}

/// `/health`'s JSON, which must be a 200.
pub async fn health(app: &TestApp) -> serde_json::Value {
    let res = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

pub async fn listed(app: &TestApp) -> Vec<StoredFile> {
    app.client.get(app.url("/files")).send().await.unwrap().json().await.unwrap()
}

/// The logged lines that name `needle`.
pub fn lines_naming(lines: &[String], needle: &str) -> Vec<String> {
    lines.iter().filter(|line| line.contains(needle)).cloned().collect()
}

// Content that does not match its row is never served as if it did

/// A download's outcome as the client sees it: the status and the whole body, or why it did not get them.
async fn fetch(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), String> {
    let fetch = async {
        let res = request.send().await.map_err(|err| format!("request: {err:?}"))?;
        let status = res.status().as_u16();
        let body = res.bytes().await.map_err(|err| format!("{status}, then the body failed: {err:?}"))?;
        Ok((status, body.to_vec()))
    };
    tokio::time::timeout(Duration::from_secs(10), fetch).await.expect("the download ends within 10 s")
}

#[tokio::test]
async fn a_file_cut_short_behind_the_servers_back_is_never_served_as_if_whole() {
    let app = spawn_app().await;
    // below and above the 256 KiB read size of the streaming strategies
    for size in [100_000, 300_000] {
        let stored = app.store(&pattern(size)).await;
        let id = stored.id.to_string();
        let path = app.content_path(stored.id);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(size as u64 / 2).unwrap();
        let ranges = [None, Some(format!("bytes=10-{}", size - 10)), Some("bytes=-1000".to_owned())];
        // `cached` comes last and has never read this file: it finds it short too
        for reader in Reader::ALL {
            for range in &ranges {
                let mut request = app.download(reader, &id);
                if let Some(range) = range {
                    request = request.header("range", range);
                }
                let outcome = fetch(request).await;
                assert!(
                    outcome.is_err(),
                    "{reader:?} {range:?} of {size} B answered in full: {:?}",
                    outcome.map(|(s, b)| (s, b.len()))
                );
            }
        }
        // asked again, `cached` still has nothing whole to give
        assert!(fetch(app.download(Reader::Cached, &id)).await.is_err());
    }
    // and nothing broke: a sound file comes whole from every strategy
    let bytes = pattern(300_000);
    let sound = app.store(&bytes).await;
    for reader in Reader::ALL {
        assert_eq!(fetch(app.download(reader, &sound.id.to_string())).await, Ok((200, bytes.clone())), "{reader:?}");
    }
}

#[tokio::test]
async fn a_file_grown_behind_the_servers_back_is_served_only_up_to_its_recorded_size() {
    let app = spawn_app().await;
    for size in [100_000, 300_000] {
        let bytes = pattern(size);
        let stored = app.store(&bytes).await;
        let id = stored.id.to_string();
        let mut grown = std::fs::OpenOptions::new().append(true).open(app.content_path(stored.id)).unwrap();
        grown.write_all(&[0xee; 5000]).unwrap();
        for reader in Reader::ALL {
            assert_eq!(fetch(app.download(reader, &id)).await, Ok((200, bytes.clone())), "{reader:?} {size}");
            let tail = fetch(app.download(reader, &id).header("range", "bytes=-100")).await;
            assert_eq!(tail, Ok((206, bytes[size - 100..].to_vec())), "{reader:?} {size}");
            let rest = fetch(app.download(reader, &id).header("range", "bytes=1000-")).await;
            assert_eq!(rest, Ok((206, bytes[1000..].to_vec())), "{reader:?} {size}");
        }
    }
}

// ferry fsck

fn fsck_args<'a>(data: &'a Path, extra: &'a [&'a str]) -> Vec<&'a OsStr> {
    let mut args = vec![OsStr::new("fsck"), OsStr::new("--data-dir"), data.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    args
}

#[tokio::test]
async fn fsck_finds_every_kind_of_damage_and_repair_quarantines_it() {
    let data = tempfile::tempdir().unwrap();
    let stored = stored_then_killed(data.path(), &[1000, 1001, 1002, 1003]).await;
    let [good, short, flipped, no_content] = &stored[..] else { unreachable!() };
    let files = data.path().join("files");
    let content = |file: &StoredFile| shard_path(&files, file.id);
    std::fs::OpenOptions::new().write(true).open(content(short)).unwrap().set_len(10).unwrap();
    let mut bytes = std::fs::read(content(flipped)).unwrap();
    bytes[500] ^= 1; // same size, other bytes: only reading the file shows it
    std::fs::write(content(flipped), bytes).unwrap();
    std::fs::remove_file(content(no_content)).unwrap();
    // what a crash between the rename and the commit leaves: content in its shard, no row
    let leftover = FileId::new();
    std::fs::create_dir_all(shard_path(&files, leftover).parent().unwrap()).unwrap();
    std::fs::write(shard_path(&files, leftover), b"never committed").unwrap();
    let before = stored_content(data.path());

    let check = run_ferry(&fsck_args(data.path(), &[])).await;
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{said}");
    let lines: Vec<String> = said.lines().map(str::to_owned).collect();
    for (id, why) in [
        (short.id, "10 bytes"),
        (flipped.id, "sha256"),
        (no_content.id, "no content"),
        (leftover, "no row in the index"),
    ] {
        let naming = lines_naming(&lines, &id.to_string());
        assert!(naming.len() == 1 && naming[0].contains(why), "{why}: {said}");
    }
    assert!(!said.contains(&good.id.to_string()), "{said}");
    assert!(said.ends_with("checked 4 files: 1 ok, 3 damaged, 0 quarantined already\n"), "{said}");
    assert_eq!(stored_content(data.path()), before, "without --repair, nothing moves");

    let repair = run_ferry(&fsck_args(data.path(), &["--repair"])).await;
    assert_eq!(repair.status.code(), Some(1), "damage was found: {}", String::from_utf8_lossy(&repair.stdout));
    assert_eq!(stored_content(data.path()), vec![good.id.to_string()]);
    let mut expected = vec![leftover.to_string(), format!("{}.json", no_content.id)];
    for file in [short, flipped] {
        expected.extend([file.id.to_string(), format!("{}.json", file.id)]);
    }
    expected.sort();
    let quarantine = data.path().join("quarantine");
    assert_eq!(names_in(&quarantine), expected, "content and row are kept, nothing is deleted");
    let record: StoredFile =
        serde_json::from_slice(&std::fs::read(quarantine.join(format!("{}.json", short.id))).unwrap()).unwrap();
    assert_eq!(&record, short, "the row is kept as the record GET /files/<id> gave");

    let again = run_ferry(&fsck_args(data.path(), &[])).await;
    let said = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success(), "{said}");
    assert_eq!(said, "checked 1 files: 1 ok, 0 damaged, 4 quarantined already\n");

    let server = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&server, data.path());
    assert_eq!(health(&app).await["quarantined"], 4);
    assert_eq!(listed(&app).await, vec![good.clone()]);
}

#[tokio::test]
async fn fsck_refuses_to_run_while_a_server_holds_the_data_dir() {
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::start(data.path(), &[], &[]);
    for extra in [&[][..], &["--repair"]] {
        let out = run_ferry(&fsck_args(data.path(), extra)).await;
        assert_eq!(out.status.code(), Some(2));
        let said = String::from_utf8_lossy(&out.stderr);
        let expected = format!(
            "ferry: cannot use data directory {}: another ferry (pid {}) is using it\n",
            data.path().display(),
            server.child.id()
        );
        assert_eq!(said, expected);
    }
}

// Storage failures during an upload are the server's: 500 or 503, never 404

#[tokio::test]
async fn uploads_without_a_tmp_dir_are_500_internal_and_logged_never_404() {
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&server, data.path());
    std::fs::remove_dir_all(app.tmp_dir()).unwrap();
    for strategy in Strategy::ALL {
        let res = app.upload(strategy, &pattern(1000)).await;
        assert_eq!(res.status(), 500, "{strategy:?}");
        assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "internal", "{strategy:?}");
    }
    let tmp = app.tmp_dir().display().to_string();
    assert!(
        eventually(|| lines_naming(&server.logged("ERROR"), &tmp).len() >= Strategy::ALL.len()).await,
        "every failure is logged with its path: {:?}",
        server.logged("ERROR")
    );
    assert!(app.stored_names().is_empty());
}

/// Whether this machine lets a test give a process a private mount namespace (root, or a permissive container).
fn private_mounts_allowed() -> bool {
    std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[tokio::test]
async fn uploads_to_a_read_only_data_dir_are_503_unavailable_and_logged() {
    if !private_mounts_allowed() {
        eprintln!("skipped: `unshare --mount` is not allowed here, so the data dir cannot be made read-only");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    // the server runs in its own mount namespace, so the read-only mount is its alone and ends with it
    let server = ChildServer::start(data.path(), &[], &["unshare", "--mount", "--propagation", "private"]);
    let pid = server.child.id().to_string();
    let dir = data.path().to_str().unwrap();
    for mount in [&["--bind", dir, dir][..], &["-o", "remount,bind,ro", dir, dir]] {
        let status = std::process::Command::new("nsenter").args(["-t", &pid, "-m", "mount"]).args(mount).status();
        assert!(status.unwrap().success(), "mount {mount:?} in the server's namespace");
    }
    let app = TestApp::for_child(&server, data.path());
    for strategy in Strategy::ALL {
        let res = app.upload(strategy, &pattern(1000)).await;
        assert_eq!(res.status(), 503, "{strategy:?}");
        assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "unavailable", "{strategy:?}");
    }
    assert_eq!(app.client.get(app.url("/health")).send().await.unwrap().status(), 503);
    assert!(
        eventually(|| lines_naming(&server.logged("ERROR"), "Read-only file system").len() > Strategy::ALL.len()).await,
        "{:?}",
        server.logged("ERROR")
    );
    assert!(names_in(&app.tmp_dir()).is_empty() && app.stored_names().is_empty());
}
