//! A crash loses nothing acknowledged and leaves nothing half-made: the real binary, killed with SIGKILL.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use ferry::storage::StoredFile;

use crate::helpers::{names_in, pattern, sha256_hex};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ferry` on a free port and waits for it to say where it listens.
fn start(data_dir: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["--addr", "127.0.0.1:0", "--workers", "1", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry starts");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let base = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.split("listening on ").nth(1).map(|rest| rest.split_whitespace().next().unwrap().to_owned())
        })
        .expect("ferry logs its address");
    // keep draining the log so the server never blocks on a full pipe
    std::thread::spawn(move || lines.for_each(drop));
    Server { child, base }
}

#[tokio::test]
async fn after_sigkill_published_files_survive_and_leftovers_are_swept() {
    let data = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let bytes = pattern(200_000);

    let mut server = start(data.path());
    let url = format!("{}/files/upload/stream/async_read_and_disk_write?filename=keep.bin", server.base);
    let res = client.post(url).body(bytes.clone()).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let kept: StoredFile = res.json().await.unwrap();
    server.child.kill().unwrap(); // SIGKILL right after the 201
    server.child.wait().unwrap();

    // what a crash mid-upload and mid-publish leaves: a temp file, and content whose metadata never landed
    std::fs::write(data.path().join("tmp/.tmpHALF"), b"half an upload").unwrap();
    let orphan = ferry::storage::FileId::new().to_string();
    std::fs::write(data.path().join("files").join(&orphan), b"never published").unwrap();

    let server = start(data.path());
    assert!(names_in(&data.path().join("tmp")).is_empty());
    let files = names_in(&data.path().join("files"));
    assert_eq!(files, vec![kept.id.to_string(), format!("{}.json", kept.id)]);

    let url = format!("{}/files/download/stream/async_read/{}", server.base, kept.id);
    let body = tokio::time::timeout(Duration::from_secs(10), async {
        client.get(url).send().await.unwrap().bytes().await.unwrap()
    })
    .await
    .unwrap();
    assert_eq!(sha256_hex(&body), kept.sha256);
    assert!(body == bytes);
    let listed: Vec<StoredFile> =
        client.get(format!("{}/files", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, vec![kept]);
}
