//! A data directory in the layout before the index (`files/<id>` beside `files/<id>.json`) is migrated on the
//! first start: every sound file indexed and moved into its shard, damaged ones quarantined by the old rules,
//! nothing deleted but content that never had metadata; an interrupted migration resumes and loses nothing.

use std::path::Path;

use ferry::storage::{FileId, StoredFile, shard_path};

use crate::{
    data_safety::{health, lines_naming, listed},
    helpers::{ChildServer, TestApp, names_in, pattern, sha256_hex, stored_content},
};

/// Writes one file of each size as ferry stored them before the index: content and `<id>.json` side by side in
/// `files/`. Returns the records as the API gives them (times to the millisecond).
fn old_layout(data: &Path, sizes: &[usize]) -> Vec<StoredFile> {
    let files = data.join("files");
    std::fs::create_dir_all(&files).unwrap();
    let mut stored = Vec::new();
    for &size in sizes {
        let bytes = pattern(size);
        let record = serde_json::json!({
            "id": FileId::new(), "filename": format!("old-{size}.bin"), "size": size, "sha256": sha256_hex(&bytes),
            "content_type": "application/octet-stream", "strategy": "single", "created_at": "2026-11-27T12:00:00.123Z",
        });
        let file: StoredFile = serde_json::from_value(record.clone()).unwrap();
        std::fs::write(files.join(file.id.to_string()), bytes).unwrap();
        std::fs::write(files.join(format!("{}.json", file.id)), record.to_string()).unwrap();
        stored.push(file);
    }
    stored
}

/// Every file downloads whole, by its sha256.
async fn downloads_whole(app: &TestApp, files: &[StoredFile]) {
    for file in files {
        let url = app.url(&format!("/files/download/stream/sync_read/{}", file.id));
        let body = app.client.get(url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(sha256_hex(&body), file.sha256, "{}", file.id);
    }
}

/// Only shard directories are left in `files/`: no old content, no `<id>.json`.
fn only_shards_in(files: &Path) -> bool {
    names_in(files).iter().all(|name| name.len() == 2)
}

fn ids(files: &[&StoredFile]) -> Vec<String> {
    let mut ids: Vec<String> = files.iter().map(|f| f.id.to_string()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn an_old_data_dir_is_migrated_on_first_start_and_its_damaged_files_are_quarantined_never_deleted() {
    let data = tempfile::tempdir().unwrap();
    let stored = old_layout(data.path(), &[1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009]);
    let [good, also_good, truncated, empty, garbage, wrong_id, unreadable, no_content, short, bad_sha] = &stored[..]
    else {
        unreachable!()
    };
    let files = data.path().join("files");
    let quarantine = data.path().join("quarantine");
    let meta = |file: &StoredFile| files.join(format!("{}.json", file.id));
    let json = std::fs::read_to_string(meta(truncated)).unwrap();
    std::fs::write(meta(truncated), &json[..json.len() / 2]).unwrap();
    std::fs::write(meta(empty), b"").unwrap();
    std::fs::write(meta(garbage), b"{\"id\": not json at all").unwrap();
    let json = std::fs::read_to_string(meta(wrong_id)).unwrap();
    std::fs::write(meta(wrong_id), json.replace(&wrong_id.id.to_string(), &FileId::new().to_string())).unwrap();
    // parses, but holds what the index cannot: it must not stop the migration of every other file
    let json = std::fs::read_to_string(meta(bad_sha)).unwrap();
    std::fs::write(meta(bad_sha), json.replace(&bad_sha.sha256, &format!("{}g", &bad_sha.sha256[1..]))).unwrap();
    std::fs::remove_file(meta(unreadable)).unwrap();
    std::fs::create_dir(meta(unreadable)).unwrap(); // reading it fails with EISDIR
    std::fs::remove_file(files.join(no_content.id.to_string())).unwrap();
    std::fs::OpenOptions::new().write(true).open(files.join(short.id.to_string())).unwrap().set_len(10).unwrap();
    // what an interrupted publish of the old layout left: content, and no metadata of any kind
    let leftover = FileId::new().to_string();
    std::fs::write(files.join(&leftover), b"never published").unwrap();
    // something already in quarantine under a name the next one wants
    std::fs::create_dir(&quarantine).unwrap();
    std::fs::write(quarantine.join(truncated.id.to_string()), b"quarantined earlier").unwrap();

    let mut server = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&server, data.path());

    let mut sound = vec![good.clone(), also_good.clone()];
    sound.sort_by_key(|f| std::cmp::Reverse(f.id));
    assert_eq!(listed(&app).await, sound, "the sound files are indexed, newest first, as they were");
    downloads_whole(&app, &sound).await;
    assert!(only_shards_in(&files), "{:?}", names_in(&files));
    assert_eq!(stored_content(data.path()), ids(&[good, also_good]));
    assert_eq!(health(&app).await["quarantined"], 8);
    let kept = names_in(&quarantine);
    for file in [truncated, empty, garbage, wrong_id, unreadable, short, bad_sha] {
        let content =
            kept.iter().filter(|name| **name == file.id.to_string() || name.starts_with(&format!("{}.", file.id)));
        let content: Vec<_> = content.filter(|name| !name.contains(".json")).collect();
        assert!(!content.is_empty(), "{}'s content is kept: {kept:?}", file.id);
        assert!(kept.iter().any(|name| name.starts_with(&format!("{}.json", file.id))), "{kept:?}");
    }
    for file in [truncated, empty, garbage, wrong_id, unreadable, bad_sha] {
        let bytes = std::fs::read(quarantine.join(format!("{}.1", file.id)))
            .or_else(|_| std::fs::read(quarantine.join(file.id.to_string())))
            .unwrap();
        assert_eq!(sha256_hex(&bytes), file.sha256, "{} is kept whole", file.id);
    }
    assert!(kept.contains(&format!("{}.json", no_content.id)), "metadata without content is kept: {kept:?}");
    assert_eq!(std::fs::read(quarantine.join(truncated.id.to_string())).unwrap(), b"quarantined earlier");
    assert!(!kept.iter().any(|name| name.starts_with(&leftover)), "a never-published leftover is not kept");

    let errors = server.logged("ERROR");
    for (file, why) in [
        (truncated, "EOF while parsing"),
        (empty, "empty"),
        (garbage, "not a valid record"),
        (wrong_id, "records id"),
        (unreadable, "Is a directory"),
        (no_content, "no content"),
        (short, "10 bytes"),
        (bad_sha, "64 lowercase hex"),
    ] {
        let said = lines_naming(&errors, &format!("{}", meta(file).display()));
        assert!(said.iter().any(|line| line.contains(why)), "{why}: {said:?} in {errors:?}");
    }

    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let server = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&server, data.path());
    assert_eq!(listed(&app).await, sound, "a second start finds them in the index");
    assert_eq!(health(&app).await["quarantined"], 8);
    assert!(server.logged("ERROR").is_empty(), "{:?}", server.logged("ERROR"));
}

#[tokio::test]
async fn an_interrupted_migration_resumes_and_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let stored = old_layout(data.path(), &[2000, 2001, 2002, 2003]);
    let mut server = ChildServer::start(data.path(), &[], &[]);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // put back what a migration interrupted at each of its steps leaves (its rows are committed first)
    let files = data.path().join("files");
    let [moved_not_cleaned, not_moved, moved_back, done] = &stored[..] else { unreachable!() };
    let record = |file: &StoredFile| serde_json::to_vec(file).unwrap();
    std::fs::write(files.join(format!("{}.json", moved_not_cleaned.id)), record(moved_not_cleaned)).unwrap();
    std::fs::rename(shard_path(&files, not_moved.id), files.join(not_moved.id.to_string())).unwrap();
    std::fs::write(files.join(format!("{}.json", not_moved.id)), record(not_moved)).unwrap();
    // a power loss that kept the removal of the old metadata and lost the move
    std::fs::rename(shard_path(&files, moved_back.id), files.join(moved_back.id.to_string())).unwrap();

    let server = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&server, data.path());
    let mut expected = stored.clone();
    expected.sort_by_key(|f| std::cmp::Reverse(f.id));
    assert_eq!(listed(&app).await, expected);
    downloads_whole(&app, &stored).await;
    assert!(only_shards_in(&files), "{:?}", names_in(&files));
    assert_eq!(stored_content(data.path()), ids(&[moved_not_cleaned, not_moved, moved_back, done]));
    assert_eq!(health(&app).await["quarantined"], 0);
    assert!(server.logged("ERROR").is_empty(), "{:?}", server.logged("ERROR"));
}

#[tokio::test]
async fn a_missing_index_over_stored_files_stops_the_start_and_hides_nothing() {
    let data = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&server, data.path());
    let kept = app.store(&pattern(3000)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // a copy or restore of the data directory that left the index behind
    for name in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = std::fs::remove_file(data.path().join(name));
    }

    let dir = data.path().to_str().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir", dir])
        .env("FERRY_MIN_FREE_BYTES", "0")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an empty new index would hide every stored file");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("index.db is missing") && said.contains("holds stored files"), "{said}");
    assert!(!data.path().join("index.db").exists(), "no empty index is left to be started on next time");
    assert_eq!(stored_content(data.path()), [kept.id.to_string()], "the content is untouched");
}
