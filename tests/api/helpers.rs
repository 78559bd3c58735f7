//! A real ferry on a free loopback port with its own temporary data directory, and one method per request kind.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use base64::Engine;
use ferry::{config::Config, download::Reader, startup::Application, storage::StoredFile, upload::Strategy};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Streaming limit in tests: small enough to test cheaply, above the 256 KiB the benchmark uses.
pub const MAX_UPLOAD: u64 = 384 * 1024;
/// Buffered limit in tests, different from the streaming one so that each strategy's own limit is checked.
pub const MAX_BUFFERED: u64 = 320 * 1024;

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/metrics` is, when the app was configured with a metrics address.
    pub metrics_addr: Option<SocketAddr>,
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    /// The bucket and prefix of its own, when the tests run on S3 (`FERRY_TEST_S3`).
    pub s3: Option<ferry::storage::S3Config>,
    /// Removes the data directory with the app, when the app made it.
    _temp: Option<TempDir>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tune: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp data dir");
    let mut config = test_config(data_dir.path());
    tune(&mut config);
    let app = Application::build(&config).expect("server starts");
    let (addr, metrics_addr) = (app.local_addr(), app.metrics_addr());
    tokio::spawn(app.run_until_stopped());
    let (data_dir, s3) = (Some(data_dir), config.storage.s3());
    TestApp { addr, metrics_addr, client: client(), data_dir: config.data_dir, s3, _temp: data_dir }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config::with_data_dir(data_dir);
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.workers = 2;
    config.max_upload_bytes = MAX_UPLOAD;
    config.max_buffered_bytes = MAX_BUFFERED;
    config.fsync = false;
    config.body_idle_timeout = Duration::from_secs(5);
    config.min_free_bytes = Some(0);
    if let Ok(bucket) = std::env::var("FERRY_TEST_S3") {
        // `.ci/run` runs the tests of what every backend must do once more, on a bucket of a real store
        config.storage.storage = ferry::config::StorageKind::S3;
        config.storage.s3_bucket = Some(bucket);
        config.storage.s3_endpoint = std::env::var("FERRY_S3_ENDPOINT").ok();
        config.storage.s3_region = std::env::var("FERRY_S3_REGION").unwrap_or(config.storage.s3_region);
        // a prefix of its own: what one test stores, no other test sees
        config.storage.s3_prefix = format!("test-{}", ferry::storage::FileId::new());
    }
    config
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Bytes that differ at every offset, so a misplaced range shows.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

/// The strategies that take a multipart body.
pub const MULTIPART: [Strategy; 5] = [
    Strategy::Single,
    Strategy::SingleSync,
    Strategy::SingleStream,
    Strategy::SingleStreamSyncWrite,
    Strategy::SingleSpooled,
];

pub fn file_limit(strategy: Strategy) -> u64 {
    if strategy.buffers_whole_file() { MAX_BUFFERED } else { MAX_UPLOAD }
}

impl TestApp {
    /// The request helpers, aimed at a server running as a child process on `data_dir`.
    pub fn for_child(server: &ChildServer, data_dir: &Path) -> TestApp {
        let data_dir = data_dir.to_owned();
        TestApp { addr: server.addr, metrics_addr: None, client: client(), data_dir, s3: None, _temp: None }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn files_dir(&self) -> PathBuf {
        self.data_dir.join("files")
    }

    /// Where a stored file's content is: in its shard under `files/`.
    pub fn content_path(&self, id: ferry::storage::FileId) -> PathBuf {
        ferry::storage::shard_path(&self.files_dir(), id)
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.data_dir.join("tmp")
    }

    /// A request that uploads `bytes` named `filename` the way `strategy` expects them.
    pub fn upload_request(&self, strategy: Strategy, bytes: Vec<u8>, filename: &str) -> reqwest::RequestBuilder {
        let post = self.client.post(self.url(strategy.path()));
        match strategy {
            Strategy::StreamMemoryWrite | Strategy::StreamDiskWrite | Strategy::StreamAsyncWrite => {
                post.query(&[("filename", filename)]).header("content-type", "application/octet-stream").body(bytes)
            }
            Strategy::JsonBase64 => post.json(&serde_json::json!({
                "filename": filename,
                "data": base64::engine::general_purpose::STANDARD.encode(&bytes),
            })),
            _ => post.multipart(
                reqwest::multipart::Form::new()
                    .part("file", reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned())),
            ),
        }
    }

    /// A hand-made multipart body (boundary `XyZ`) for `strategy`.
    pub fn multipart_request(&self, strategy: Strategy, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(strategy.path()))
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body(body)
    }

    pub async fn upload(&self, strategy: Strategy, bytes: &[u8]) -> reqwest::Response {
        self.upload_request(strategy, bytes.to_vec(), "data.bin").send().await.expect("upload request")
    }

    /// Uploads and returns the stored file, failing the test unless the answer is 201.
    pub async fn store(&self, bytes: &[u8]) -> StoredFile {
        let res = self.upload(Strategy::StreamAsyncWrite, bytes).await;
        assert_eq!(res.status(), 201);
        res.json().await.unwrap()
    }

    pub fn download(&self, reader: Reader, id: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(&reader.path(id)))
    }

    /// Names of the content files in the shards of `<data>/files/` (on S3: the ids of the content objects under
    /// the app's prefix), sorted.
    pub fn stored_names(&self) -> Vec<String> {
        let Some(config) = &self.s3 else { return stored_content(&self.data_dir) };
        let s3 = ferry::storage::S3::connect(config).unwrap();
        let (_, content) = s3.wait(s3.inventory()).unwrap();
        let mut names: Vec<String> =
            content.into_iter().map(|(_, key, _)| key.rsplit('/').next().unwrap().to_owned()).collect();
        names.sort();
        names
    }

    /// The multipart uploads whose marker is in the bucket (on S3; on local disk uploads in progress are in
    /// `tmp/`, see [`TestApp::tmp_settles_empty`]).
    pub fn uploads_in_progress(&self) -> Vec<String> {
        let Some(config) = &self.s3 else { return Vec::new() };
        let s3 = ferry::storage::S3::connect(config).unwrap();
        s3.wait(s3.in_progress()).unwrap().into_iter().map(|id| id.to_string()).collect()
    }

    /// A stored file's bytes as they are kept (on S3: read from the bucket, not through ferry's downloads).
    pub fn stored_bytes(&self, id: ferry::storage::FileId) -> Vec<u8> {
        let Some(config) = &self.s3 else { return std::fs::read(self.content_path(id)).unwrap() };
        let s3 = ferry::storage::S3::connect(config).unwrap();
        s3.wait(s3.read_all(id)).unwrap().to_vec()
    }

    /// Waits until `<data>/tmp/` is empty (cleanup after a dropped request runs when the server notices),
    /// returning what is still there when it never gets empty.
    pub async fn tmp_settles_empty(&self) -> Vec<String> {
        eventually(|| names_in(&self.tmp_dir()).is_empty()).await;
        names_in(&self.tmp_dir())
    }

    /// Sends a request by hand and returns every response the connection gave before closing.
    pub async fn exchange(&self, request: &[u8]) -> String {
        let mut stream = self.raw().await;
        send_all(&mut stream, request).await;
        let mut all = String::new();
        loop {
            let response = read_response(&mut stream, Duration::from_secs(3)).await;
            if response.is_empty() {
                return all;
            }
            all += &response;
        }
    }

    /// Opens a raw connection, for what HTTP clients will not send.
    pub async fn raw(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connect")
    }
}

/// The real binary as a child process, for what an in-process server cannot show: SIGKILL, its own open files
/// and memory, resource limits.
pub struct ChildServer {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    /// Every line the server has logged so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ChildServer {
    /// Starts `ferry` on a free port with `data_dir` and extra flags; `wrapper` (e.g. `prlimit --fsize=N`) runs
    /// in front of it and must exec it in place.
    pub fn start(data_dir: &Path, args: &[&str], wrapper: &[&str]) -> ChildServer {
        ChildServer::start_logging(data_dir, args, wrapper, "info")
    }

    /// [`ChildServer::start`], logging what `rust_log` (`RUST_LOG`) lets through.
    pub fn start_logging(data_dir: &Path, args: &[&str], wrapper: &[&str], rust_log: &str) -> ChildServer {
        use std::io::BufRead;
        let exe = env!("CARGO_BIN_EXE_ferry");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = std::process::Command::new(program);
                c.args(rest).arg(exe);
                c
            }
            None => std::process::Command::new(exe),
        };
        let mut child = command
            .args(["--addr", "127.0.0.1:0", "--workers", "1", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("RUST_LOG", rust_log)
            // tests must not depend on how full the machine's disk is; those about free space pass the flag
            .env("FERRY_MIN_FREE_BYTES", "0")
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ferry starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok);
        let addr = lines
            .by_ref()
            .inspect(|line| log.lock().unwrap().push(line.clone()))
            .find_map(|line| line.split("listening on http://").nth(1)?.split_whitespace().next()?.parse().ok())
            .expect("ferry logs its address");
        // keep draining the log so the server never blocks on a full pipe
        let kept = log.clone();
        std::thread::spawn(move || lines.for_each(|line| kept.lock().unwrap().push(line)));
        ChildServer { child, addr, log }
    }

    /// The lines logged so far at `level` (`ERROR`, `WARN`, `INFO`).
    pub fn logged(&self, level: &str) -> Vec<String> {
        let tag = format!(" {level} ");
        self.log.lock().unwrap().iter().filter(|line| line.contains(&tag)).cloned().collect()
    }

    /// Every line it has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map(|d| d.count()).unwrap_or(0)
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the real binary to completion, failing the test if it runs for more than 10 s (it is then killed). Its
/// output must fit in the pipes (64 KiB each), which is plenty for the commands tested.
pub async fn run_ferry(args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ferry starts");
    if !eventually(|| child.try_wait().expect("ferry's status").is_some()).await {
        let _ = child.kill();
        let _ = child.wait();
        panic!("ferry {args:?} still ran after 10 s");
    }
    child.wait_with_output().expect("ferry's output")
}

pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Names of the content files in the shards of `<data>/files/` (`files/<ab>/<cd>/<id>`), sorted.
pub fn stored_content(data_dir: &Path) -> Vec<String> {
    let files = data_dir.join("files");
    let mut names = Vec::new();
    for first in names_in(&files) {
        for second in names_in(&files.join(&first)) {
            names.extend(names_in(&files.join(&first).join(second)));
        }
    }
    names.sort();
    names
}

/// Waits until `check` holds, up to 10 s; returns whether it did.
pub async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

/// Reads one whole HTTP response from a raw connection, as its framing says (Content-Length, chunked, or
/// until close), or what came before the server closed it or `limit` passed.
pub async fn read_response(stream: &mut TcpStream, limit: Duration) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut chunk = [0; 4096];
        while !response_complete(&buf) {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

/// Whether `buf` holds a whole response: its head parses and its body is in, by the head's framing.
fn response_complete(buf: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = response.parse(buf) else { return false };
    let header = |name: &str| {
        response.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| String::from_utf8_lossy(h.value))
    };
    let body = &buf[head_len..];
    let no_body = matches!(response.code, Some(100..=199 | 204 | 304));
    if no_body {
        true
    } else if header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        chunked_complete(body)
    } else {
        header("content-length").and_then(|len| len.trim().parse().ok()).is_some_and(|len: usize| body.len() >= len)
    }
}

/// Whether a chunked body has reached its last chunk and the blank line after it.
fn chunked_complete(mut body: &[u8]) -> bool {
    loop {
        match httparse::parse_chunk_size(body) {
            Ok(httparse::Status::Complete((head, 0))) => return body[head..].windows(2).any(|w| w == b"\r\n"),
            Ok(httparse::Status::Complete((head, size))) => {
                let Some(rest) = body.get(head + size as usize + 2..) else { return false };
                body = rest;
            }
            _ => return false,
        }
    }
}

/// The `file` part's headers in hand-made multipart bodies.
pub const FILE_HEADER: &str = "Content-Disposition: form-data; name=\"file\"; filename=\"a.bin\"";

/// The one builder of hand-made multipart bodies (boundary `XyZ`, as [`TestApp::multipart_request`] declares):
/// each `(headers, content)` becomes a part, and the closing delimiter follows.
pub fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (headers, content) in parts {
        body.extend_from_slice(format!("--XyZ\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    body
}

/// Request head for an upload sent by hand.
pub fn request_head(strategy: Strategy, content_type: &str, extra: &str) -> String {
    format!("POST {} HTTP/1.1\r\nHost: ferry\r\nContent-Type: {content_type}\r\n{extra}\r\n", strategy.path())
}

/// The Content-Type a hand-made request for `strategy` carries.
pub fn content_type_for(strategy: Strategy) -> &'static str {
    match strategy {
        Strategy::StreamMemoryWrite | Strategy::StreamDiskWrite | Strategy::StreamAsyncWrite => {
            "application/octet-stream"
        }
        Strategy::JsonBase64 => "application/json",
        _ => "multipart/form-data; boundary=XyZ",
    }
}

/// The first bytes of a body for `strategy`, up to where the file's bytes begin.
pub fn body_prefix(strategy: Strategy) -> &'static [u8] {
    match strategy {
        Strategy::StreamMemoryWrite | Strategy::StreamDiskWrite | Strategy::StreamAsyncWrite => b"",
        Strategy::JsonBase64 => b"{\"filename\":\"a\",\"data\":\"",
        // what `form` writes before the file's content
        _ => b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n",
    }
}

pub async fn send_all(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).await.expect("write");
}
