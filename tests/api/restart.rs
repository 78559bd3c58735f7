//! A crash loses nothing acknowledged and leaves nothing half-made: the real binary, killed with SIGKILL.

use std::time::Duration;

use ferry::storage::StoredFile;

use crate::helpers::{ChildServer, names_in, pattern, sha256_hex};

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
