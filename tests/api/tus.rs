//! Resumable uploads (tus 1.0): the protocol step by step, each extension, the upload contract's limits,
//! checksums, concurrent PATCHes, termination, expiry, and resuming after a restart and after SIGKILL.

use std::time::Duration;

use base64::Engine;
use ferry::storage::StoredFile;
use reqwest::{Method, StatusCode};
use sha2::Digest;
use tokio::io::AsyncWriteExt;

use crate::helpers::{
    ChildServer, MAX_UPLOAD, TestApp, eventually, names_in, pattern, read_response, sha256_hex, spawn_app,
    spawn_app_with,
};

const OFFSET_STREAM: &str = "application/offset+octet-stream";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The headers of an answer, by name.
fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

/// tus requests against a test app (in process or a child).
struct Tus<'a>(&'a TestApp);

impl Tus<'_> {
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.0.client.request(method, self.0.url(path)).header("tus-resumable", "1.0.0")
    }

    /// Creates an upload of `length` bytes (deferred when `None`) named `filename`; returns its path.
    async fn create(&self, length: Option<u64>, filename: &str) -> String {
        let res = self.creation(length, filename).send().await.unwrap();
        assert_eq!(res.status(), 201, "{:?}", res.text().await);
        header(&res, "location").expect("a Location")
    }

    fn creation(&self, length: Option<u64>, filename: &str) -> reqwest::RequestBuilder {
        let req = self.request(Method::POST, "/files/tus/").header(
            "upload-metadata",
            format!("filename {},filetype {}", b64(filename.as_bytes()), b64(b"text/plain")),
        );
        match length {
            Some(length) => req.header("upload-length", length.to_string()),
            None => req.header("upload-defer-length", "1"),
        }
    }

    fn patch(&self, upload: &str, offset: u64, bytes: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.request(Method::PATCH, upload)
            .header("upload-offset", offset.to_string())
            .header("content-type", OFFSET_STREAM)
            .body(bytes)
    }

    async fn offset(&self, upload: &str) -> u64 {
        let res = self.request(Method::HEAD, upload).send().await.unwrap();
        assert_eq!(res.status(), 200, "HEAD {upload}");
        header(&res, "upload-offset").unwrap().parse().unwrap()
    }

    async fn stored(&self, id: &str) -> StoredFile {
        let res = self.0.client.get(self.0.url(&format!("/files/{id}"))).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    async fn content(&self, id: &str) -> Vec<u8> {
        let url = self.0.url(&format!("/files/download/stream/sync_read/{id}"));
        self.0.client.get(url).send().await.unwrap().bytes().await.unwrap().to_vec()
    }
}

fn uploads_dir(app: &TestApp) -> std::path::PathBuf {
    app.data_dir.join("uploads")
}

#[tokio::test]
async fn options_tells_the_version_the_extensions_the_limit_and_the_checksums() {
    let app = spawn_app().await;
    let res = app.client.request(Method::OPTIONS, app.url("/files/tus/")).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(header(&res, "tus-resumable").as_deref(), Some("1.0.0"));
    assert_eq!(header(&res, "tus-version").as_deref(), Some("1.0.0"));
    assert_eq!(header(&res, "tus-max-size"), Some(MAX_UPLOAD.to_string()));
    assert_eq!(header(&res, "tus-checksum-algorithm").as_deref(), Some("sha1,sha256"));
    let extensions = header(&res, "tus-extension").unwrap();
    for extension in
        ["creation", "creation-with-upload", "creation-defer-length", "termination", "expiration", "checksum"]
    {
        assert!(extensions.split(',').any(|e| e == extension), "{extension} in {extensions}");
    }
}

#[tokio::test]
async fn an_upload_in_three_patches_is_published_like_any_other_upload() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let bytes = pattern(300_000);
    let upload = tus.create(Some(bytes.len() as u64), "notes.txt").await;
    assert!(upload.starts_with("/files/tus/"), "{upload}");

    let head = tus.request(Method::HEAD, &upload).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "upload-offset").as_deref(), Some("0"));
    assert_eq!(header(&head, "upload-length"), Some(bytes.len().to_string()));
    assert_eq!(header(&head, "cache-control").as_deref(), Some("no-store"));
    assert!(header(&head, "upload-metadata").unwrap().starts_with("filename "));
    assert!(header(&head, "upload-expires").unwrap().ends_with(" GMT"));
    assert_eq!(header(&head, "tus-resumable").as_deref(), Some("1.0.0"));

    let mut offset = 0;
    let mut last = None;
    for piece in bytes.chunks(100_000) {
        let res = tus.patch(&upload, offset, piece.to_vec()).send().await.unwrap();
        assert_eq!(res.status(), 204);
        offset += piece.len() as u64;
        assert_eq!(header(&res, "upload-offset"), Some(offset.to_string()));
        assert!(app.stored_names().is_empty() || offset == bytes.len() as u64, "nothing is visible before the end");
        last = Some(res);
    }
    let last = last.unwrap();
    let id = header(&last, "ferry-file-id").expect("the last PATCH names the stored file");
    assert_eq!(header(&last, "ferry-file-location"), Some(format!("/files/{id}")));

    let stored = tus.stored(&id).await;
    assert_eq!(
        (stored.filename.as_str(), stored.content_type.as_str(), stored.strategy.as_str()),
        ("notes.txt", "text/plain", "tus")
    );
    assert_eq!((stored.size, stored.sha256.as_str()), (bytes.len() as u64, sha256_hex(&bytes).as_str()));
    assert!(tus.content(&id).await == bytes);
    let listed: Vec<StoredFile> = app.client.get(app.url("/files")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed, vec![stored]);

    // a client that lost the last answer learns the file from HEAD
    let head = tus.request(Method::HEAD, &upload).send().await.unwrap();
    assert_eq!(header(&head, "upload-offset"), Some(bytes.len().to_string()));
    assert_eq!(header(&head, "ferry-file-id"), Some(id.clone()));
    // and its bytes are not kept twice
    let upload_id = upload.rsplit('/').next().unwrap();
    assert_eq!(names_in(&uploads_dir(&app).join(upload_id)), ["state.json"]);
}

#[tokio::test]
async fn creation_with_upload_stores_a_file_in_one_request() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let bytes = pattern(65_537);
    let res = tus.creation(Some(bytes.len() as u64), "one.bin").header("content-type", OFFSET_STREAM);
    let res = res.body(bytes.clone()).send().await.unwrap();
    assert_eq!(res.status(), 201);
    assert!(header(&res, "location").unwrap().starts_with("/files/tus/"));
    assert_eq!(header(&res, "upload-offset"), Some(bytes.len().to_string()));
    let id = header(&res, "ferry-file-id").expect("complete at creation");
    assert!(tus.content(&id).await == bytes);
    assert_eq!(tus.stored(&id).await.sha256, sha256_hex(&bytes));
}

#[tokio::test]
async fn hostile_filenames_in_the_metadata_are_sanitised_like_any_upload_and_stay_out_of_paths() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let cases = [
        ("../../x", "x"),
        ("/etc/passwd", "passwd"),
        ("..", "upload.bin"),
        ("", "upload.bin"),
        ("..\\..\\win.ini", "win.ini"),
        ("evil\u{202E}gpj.exe", "evilgpj.exe"),
    ];
    for (raw, expected) in cases {
        let res = tus.creation(Some(1), raw).header("content-type", OFFSET_STREAM).body(b"x".to_vec());
        let res = res.send().await.unwrap();
        assert_eq!(res.status(), 201, "{raw:?}");
        let id = header(&res, "ferry-file-id").expect("complete at creation");
        assert_eq!(tus.stored(&id).await.filename, expected, "{raw:?}");
    }
    // the uploads directory holds only server-made ids, whatever the client named its file
    for name in names_in(&uploads_dir(&app)) {
        assert!(name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()), "{name:?}");
    }
    assert_eq!(app.stored_names().len(), cases.len());
}

#[tokio::test]
async fn creation_with_part_of_the_upload_continues_with_patches() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let bytes = pattern(10_000);
    let res = tus.creation(Some(10_000), "two.bin").header("content-type", OFFSET_STREAM);
    let res = res.body(bytes[..4_000].to_vec()).send().await.unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(header(&res, "upload-offset").as_deref(), Some("4000"));
    assert!(header(&res, "ferry-file-id").is_none());
    let upload = header(&res, "location").unwrap();
    let res = tus.patch(&upload, 4_000, bytes[4_000..].to_vec()).send().await.unwrap();
    let id = header(&res, "ferry-file-id").unwrap();
    assert!(tus.content(&id).await == bytes);
}

#[tokio::test]
async fn an_empty_upload_is_published_at_creation() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let res = tus.creation(Some(0), "empty.txt").send().await.unwrap();
    assert_eq!(res.status(), 201);
    let id = header(&res, "ferry-file-id").expect("nothing to wait for");
    assert_eq!(tus.stored(&id).await.size, 0);
}

#[tokio::test]
async fn a_deferred_length_is_given_by_a_later_patch() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let bytes = pattern(5_000);
    let upload = tus.create(None, "later.bin").await;
    let head = tus.request(Method::HEAD, &upload).send().await.unwrap();
    assert_eq!(header(&head, "upload-defer-length").as_deref(), Some("1"));
    assert!(header(&head, "upload-length").is_none());
    let res = tus.patch(&upload, 0, bytes[..2_000].to_vec()).send().await.unwrap();
    assert_eq!((res.status(), header(&res, "ferry-file-id")), (StatusCode::NO_CONTENT, None));
    let res = tus.patch(&upload, 2_000, bytes[2_000..].to_vec()).header("upload-length", "5000").send().await.unwrap();
    assert_eq!(res.status(), 204);
    let id = header(&res, "ferry-file-id").expect("the length made it complete");
    assert!(tus.content(&id).await == bytes);
}

#[tokio::test]
async fn a_length_over_the_limit_is_refused_at_creation_and_a_deferred_upload_stops_at_it() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let res = tus.creation(Some(MAX_UPLOAD + 1), "big.bin").send().await.unwrap();
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
    assert!(body["message"].as_str().unwrap().contains(&MAX_UPLOAD.to_string()), "{body}");
    assert!(names_in(&uploads_dir(&app)).is_empty(), "nothing is created");

    let upload = tus.create(None, "endless.bin").await;
    let res = tus.patch(&upload, 0, pattern(MAX_UPLOAD as usize + 1)).send().await.unwrap();
    assert_eq!(res.status(), 413);
    // a chunked body is cut where it crosses the limit
    let pieces =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(pattern(64 << 10)))));
    let res = tus.patch(&upload, 0, reqwest::Body::wrap_stream(pieces)).send().await;
    if let Ok(res) = res {
        assert_eq!(res.status(), 413);
    }
    assert!(tus.offset(&upload).await <= MAX_UPLOAD);
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn every_answer_speaks_tus_1_0_0_and_another_version_gets_412() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let upload = tus.create(Some(10), "a").await;
    for version in [None, Some("0.2.2")] {
        for method in [Method::HEAD, Method::PATCH, Method::DELETE] {
            let mut req = app.client.request(method.clone(), app.url(&upload));
            if let Some(version) = version {
                req = req.header("tus-resumable", version);
            }
            let res = req.send().await.unwrap();
            assert_eq!(res.status(), 412, "{method} with {version:?}");
            assert_eq!(header(&res, "tus-version").as_deref(), Some("1.0.0"));
            assert_eq!(header(&res, "tus-resumable").as_deref(), Some("1.0.0"));
        }
    }
    let res = app.client.post(app.url("/files/tus/")).header("upload-length", "1").send().await.unwrap();
    assert_eq!(res.status(), 412);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_version");
    assert_eq!(tus.offset(&upload).await, 0, "nothing changed");
}

#[tokio::test]
async fn malformed_tus_requests_get_a_json_400_or_415_that_names_the_problem() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let no_length = tus.request(Method::POST, "/files/tus/").send().await.unwrap();
    assert_eq!(no_length.status(), 400);
    let bad_metadata = tus.request(Method::POST, "/files/tus/").header("upload-length", "1");
    let bad_metadata = bad_metadata.header("upload-metadata", "filename ***").send().await.unwrap();
    assert_eq!(bad_metadata.status(), 400);
    let body: serde_json::Value = bad_metadata.json().await.unwrap();
    assert_eq!(body["error"], "invalid_header");
    assert!(body["message"].as_str().unwrap().contains("Upload-Metadata"), "{body}");
    let upload = tus.create(Some(10), "a").await;
    let wrong_type = tus.request(Method::PATCH, &upload).header("upload-offset", "0");
    let wrong_type = wrong_type.header("content-type", "text/plain").body("0123456789");
    assert_eq!(wrong_type.send().await.unwrap().status(), 415);
    let no_offset = tus.request(Method::PATCH, &upload).header("content-type", OFFSET_STREAM).body("x");
    assert_eq!(no_offset.send().await.unwrap().status(), 400);
    let unknown = tus.request(Method::HEAD, "/files/tus/0123456789abcdef0123456789abcdef").send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    let malformed = tus.patch("/files/tus/..%2f..%2fetc", 0, b"x".to_vec()).send().await.unwrap();
    assert_eq!(malformed.status(), 404);
}

#[tokio::test]
async fn a_patch_at_the_wrong_offset_gets_409_and_changes_nothing() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let bytes = pattern(1_000);
    let upload = tus.create(Some(1_000), "a").await;
    assert_eq!(tus.patch(&upload, 0, bytes[..400].to_vec()).send().await.unwrap().status(), 204);
    for wrong in [0, 399, 401, 1_000] {
        let res = tus.patch(&upload, wrong, bytes[400..].to_vec()).send().await.unwrap();
        assert_eq!(res.status(), 409, "at {wrong}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "offset_mismatch");
        assert!(body["message"].as_str().unwrap().contains("400"), "{body}");
    }
    assert_eq!(tus.offset(&upload).await, 400);
    let res = tus.patch(&upload, 400, bytes[400..].to_vec()).send().await.unwrap();
    let id = header(&res, "ferry-file-id").unwrap();
    assert!(tus.content(&id).await == bytes);
}

#[tokio::test]
async fn a_body_longer_than_the_upload_gets_413() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let upload = tus.create(Some(100), "a").await;
    let res = tus.patch(&upload, 0, pattern(101)).send().await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(tus.offset(&upload).await, 0);
}

#[tokio::test]
async fn checksums_in_sha1_and_sha256_are_checked_and_a_mismatch_discards_the_patch() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let bytes = pattern(3_000);
    let upload = tus.create(Some(3_000), "checked.bin").await;
    let (first, second, third) = (&bytes[..1_000], &bytes[1_000..2_000], &bytes[2_000..]);

    let sha1 = format!("sha1 {}", b64(&sha1::Sha1::digest(first)));
    let res = tus.patch(&upload, 0, first.to_vec()).header("upload-checksum", sha1).send().await.unwrap();
    assert_eq!(res.status(), 204);

    let wrong = format!("sha256 {}", b64(&sha2::Sha256::digest(first)));
    let res = tus.patch(&upload, 1_000, second.to_vec()).header("upload-checksum", wrong).send().await.unwrap();
    assert_eq!(res.status().as_u16(), 460);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "checksum_mismatch");
    assert_eq!(tus.offset(&upload).await, 1_000, "the mismatching bytes do not count");

    let unknown = tus.patch(&upload, 1_000, second.to_vec()).header("upload-checksum", "md5 1B2M2Y8AsgTpgAmY7PhCfg==");
    assert_eq!(unknown.send().await.unwrap().status(), 400);

    let right = format!("sha256 {}", b64(&sha2::Sha256::digest(second)));
    let res = tus.patch(&upload, 1_000, second.to_vec()).header("upload-checksum", right).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let res = tus.patch(&upload, 2_000, third.to_vec()).send().await.unwrap();
    let id = header(&res, "ferry-file-id").unwrap();
    assert!(tus.content(&id).await == bytes, "the discarded bytes left no trace");
    assert_eq!(tus.stored(&id).await.sha256, sha256_hex(&bytes));
}

/// A PATCH whose body is held open: the head and `first` are sent, and the rest when the sender is used.
async fn held_patch(app: &TestApp, upload: &str, length: usize, first: &[u8]) -> tokio::net::TcpStream {
    let mut stream = app.raw().await;
    let head = format!(
        "PATCH {upload} HTTP/1.1\r\nHost: ferry\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: {OFFSET_STREAM}\r\nContent-Length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    stream
}

fn data_len(app: &TestApp, upload: &str) -> u64 {
    let id = upload.rsplit('/').next().unwrap();
    std::fs::metadata(uploads_dir(app).join(id).join("data")).map_or(0, |m| m.len())
}

#[tokio::test]
async fn a_second_patch_while_one_is_under_way_gets_423_and_the_bytes_never_interleave() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let mine = pattern(20_000);
    let upload = tus.create(Some(20_000), "one.bin").await;
    let mut first = held_patch(&app, &upload, 20_000, &mine[..5_000]).await;
    assert!(eventually(|| data_len(&app, &upload) == 5_000).await, "the first PATCH is writing");

    let other = vec![b'x'; 20_000];
    let res = tus.patch(&upload, 0, other.clone()).send().await.unwrap();
    assert_eq!(res.status(), 423);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "locked");
    let res = tus.request(Method::DELETE, &upload).send().await.unwrap();
    assert_eq!(res.status(), 423, "termination waits for the PATCH too");

    first.write_all(&mine[5_000..]).await.unwrap();
    let answer = read_response(&mut first, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
    let id = answer
        .lines()
        .find_map(|line| line.strip_prefix("ferry-file-id: "))
        .expect("the first PATCH completed the upload")
        .trim()
        .to_owned();
    assert!(tus.content(&id).await == mine);
}

#[tokio::test]
async fn a_patch_cut_off_keeps_the_bytes_that_came_and_the_client_resumes_from_head() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let bytes = pattern(50_000);
    let upload = tus.create(Some(50_000), "cut.bin").await;
    let cut = held_patch(&app, &upload, 50_000, &bytes[..30_000]).await;
    assert!(eventually(|| data_len(&app, &upload) == 30_000).await);
    drop(cut);
    let mut offset = 0;
    for _ in 0..100 {
        offset = tus.offset(&upload).await;
        if offset == 30_000 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(offset, 30_000, "the bytes received before the cut count");
    let res = tus.patch(&upload, offset, bytes[30_000..].to_vec()).send().await.unwrap();
    let id = header(&res, "ferry-file-id").unwrap();
    assert!(tus.content(&id).await == bytes);
}

#[tokio::test]
async fn termination_removes_the_upload_and_its_bytes() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let upload = tus.create(Some(1_000), "gone.bin").await;
    assert_eq!(tus.patch(&upload, 0, pattern(500)).send().await.unwrap().status(), 204);
    let res = tus.request(Method::DELETE, &upload).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(tus.request(Method::HEAD, &upload).send().await.unwrap().status(), 404);
    assert_eq!(tus.patch(&upload, 500, pattern(500)).send().await.unwrap().status(), 404);
    assert!(names_in(&uploads_dir(&app)).is_empty());
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn expired_uploads_answer_404_and_are_swept() {
    let app = spawn_app_with(|config| config.tus_expiry = Duration::from_secs(1)).await;
    let tus = Tus(&app);
    let upload = tus.create(Some(1_000), "stale.bin").await;
    // the upload exists until it expires: this PATCH is taken
    assert_eq!(tus.patch(&upload, 0, pattern(500)).send().await.unwrap().status(), 204);
    assert!(eventually(|| names_in(&uploads_dir(&app)).is_empty()).await, "the sweep removes it");
    assert_eq!(tus.request(Method::HEAD, &upload).send().await.unwrap().status(), 404);
    assert_eq!(tus.patch(&upload, 500, pattern(500)).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn below_the_free_space_to_keep_a_creation_gets_507() {
    let app = spawn_app_with(|config| config.min_free_bytes = Some(u64::MAX / 2)).await;
    let res = Tus(&app).creation(Some(10), "a").send().await.unwrap();
    assert_eq!(res.status(), 507);
    assert!(names_in(&uploads_dir(&app)).is_empty());
}

/// Starts the real binary on `data`, with the tus helpers aimed at it.
fn child(data: &std::path::Path) -> (ChildServer, TestApp) {
    let server = ChildServer::start(data, &["--fsync", "true"], &[]);
    let app = TestApp::for_child(&server, data);
    (server, app)
}

#[tokio::test]
async fn an_upload_resumes_after_a_restart_and_after_sigkill_mid_patch() {
    let data = tempfile::tempdir().unwrap();
    let bytes = pattern(3 << 20);
    let (mut server, app) = child(data.path());
    let upload = Tus(&app).create(Some(bytes.len() as u64), "resumed.bin").await;
    let res = Tus(&app).patch(&upload, 0, bytes[..1 << 20].to_vec()).send().await.unwrap();
    assert_eq!(res.status(), 204);
    // a restart
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let (mut server, app) = child(data.path());
    assert_eq!(Tus(&app).offset(&upload).await, 1 << 20);

    // SIGKILL while a PATCH has written bytes it has not acknowledged
    let mut stream = app.raw().await;
    let head = format!(
        "PATCH {upload} HTTP/1.1\r\nHost: ferry\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {}\r\n\
         Content-Type: {OFFSET_STREAM}\r\nContent-Length: {}\r\n\r\n",
        1 << 20,
        bytes.len() - (1 << 20)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&bytes[1 << 20..2 << 20]).await.unwrap();
    assert!(eventually(|| data_len(&app, &upload) == 2 << 20).await, "the PATCH is writing");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(stream);

    let (_server, app) = child(data.path());
    let tus = Tus(&app);
    let offset = tus.offset(&upload).await;
    assert!((1 << 20..=2 << 20).contains(&offset), "at most the unacknowledged PATCH is lost: {offset}");
    let res = tus.patch(&upload, offset, bytes[offset as usize..].to_vec()).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let id = header(&res, "ferry-file-id").unwrap();
    let stored = tus.stored(&id).await;
    assert_eq!(stored.sha256, sha256_hex(&bytes));
    assert!(tus.content(&id).await == bytes);
}

#[tokio::test]
async fn a_crash_between_publishing_and_recording_it_does_not_store_the_file_twice() {
    let app = spawn_app().await;
    let tus = Tus(&app);
    let upload = tus.create(Some(10_000), "once.bin").await;
    let res = tus.patch(&upload, 0, pattern(10_000)).send().await.unwrap();
    let id = header(&res, "ferry-file-id").unwrap();
    // what a crash right after the publish leaves: a state without the file's id, the data file still there
    let dir = uploads_dir(&app).join(upload.rsplit('/').next().unwrap());
    let mut state: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap();
    state["file_id"] = serde_json::Value::Null;
    std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
    std::fs::hard_link(app.content_path(id.parse().unwrap()), dir.join("data")).unwrap();

    let head = tus.request(Method::HEAD, &upload).send().await.unwrap();
    assert_eq!(header(&head, "ferry-file-id"), Some(id.clone()), "the file it became, not a new one");
    let listed: Vec<StoredFile> = app.client.get(app.url("/files")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(names_in(&dir), ["state.json"]);
}
