//! Request ids and the log: every answer names its request, every line the request causes carries that name, in
//! text and in JSON, and the access line tells who asked what and what came of it.

use ferry::{config::AuthMode, download::Reader, storage::StoredFile, upload::Strategy};
use rstest::rstest;
use serde_json::Value;

use crate::helpers::{ChildServer, TestApp, eventually, pattern, spawn_app, spawn_app_with};

const ACCESS_FIELDS: [&str; 12] = [
    "client",
    "method",
    "route",
    "path",
    "query",
    "status",
    "error",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "user_agent",
    "token",
];

fn request_id(res: &reqwest::Response) -> String {
    res.headers().get("x-request-id").expect("every answer has X-Request-Id").to_str().unwrap().to_owned()
}

fn is_uuid_v7(id: &str) -> bool {
    uuid::Uuid::parse_str(id).is_ok_and(|uuid| uuid.get_version_num() == 7)
}

/// The lines of a JSON-logging server, each parsed (a line that does not parse fails the test).
fn json_lines(server: &ChildServer) -> Vec<Value> {
    server.log().iter().map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"))).collect()
}

fn access_lines(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|line| line["target"] == "ferry::access").collect()
}

#[tokio::test]
async fn a_well_formed_client_id_is_echoed_and_any_other_is_replaced_by_a_new_one() {
    let app = spawn_app().await;
    let get = |id: Option<&str>| {
        let req = app.client.get(app.url("/files"));
        match id {
            Some(id) => req.header("x-request-id", id),
            None => req,
        }
    };
    let echoed = get(Some("trace-1.a_b:c-2")).send().await.unwrap();
    assert_eq!(request_id(&echoed), "trace-1.a_b:c-2");
    let new = request_id(&get(None).send().await.unwrap());
    assert!(is_uuid_v7(&new), "{new}");
    assert_ne!(new, request_id(&get(None).send().await.unwrap()), "each request gets its own");
    for malformed in ["a/b", "with space", "quote\"d", &"x".repeat(129), ""] {
        let replaced = request_id(&get(Some(malformed)).send().await.unwrap());
        assert!(is_uuid_v7(&replaced), "{malformed:?} became {replaced}");
    }
}

#[tokio::test]
async fn errors_refusals_and_unknown_routes_carry_the_request_id_too() {
    let app = spawn_app_with(|config| config.auth = AuthMode::Token).await;
    for (method, path, status) in [
        (reqwest::Method::GET, "/no/such/route", 404),
        (reqwest::Method::GET, "/files", 401),
        (reqwest::Method::PUT, "/files/upload/single", 405),
        (reqwest::Method::GET, "/health/live", 200),
    ] {
        let res = app.client.request(method, app.url(path)).header("x-request-id", "err-1").send().await.unwrap();
        assert_eq!(res.status(), status, "{path}");
        assert_eq!(request_id(&res), "err-1", "{path}");
    }
    // refused from the head, before the body and before the app: the answer still names the request
    let refused = app
        .exchange(
            b"POST /files/upload/single HTTP/1.1\r\nHost: x\r\nX-Request-Id: head-1\r\nExpect: 100-continue\r\n\
              Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 10\r\n\r\n",
        )
        .await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("x-request-id: head-1"), "{refused}");
}

/// The server's lines naming `id`, once the access line (written when the response is done) is among them.
async fn lines_of(server: &ChildServer, id: &str) -> Vec<String> {
    let access = |line: &String| line.contains(id) && line.contains("ferry::access");
    assert!(eventually(|| server.log().iter().any(access)).await, "no access line for {id}: {:?}", server.log());
    server.log().into_iter().filter(|line| line.contains(id)).collect()
}

#[rstest]
#[case::text("text")]
#[case::json("json")]
#[tokio::test]
async fn the_access_line_and_the_stored_line_carry_the_same_request_id(#[case] format: &str) {
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::start(data.path(), &["--log-format", format], &[]);
    let app = TestApp::for_child(&server, data.path());
    let bytes = pattern(70_000);
    let res = app
        .upload_request(Strategy::StreamDiskWrite, bytes.clone(), "a.bin")
        .header("x-request-id", "upload-42")
        .header("user-agent", "logs-test/1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let body_len = res.bytes().await.unwrap().len() as u64;

    let lines = lines_of(&server, "upload-42").await;
    let stored: Vec<&String> = lines.iter().filter(|line| line.contains("stored ")).collect();
    let access: Vec<&String> = lines.iter().filter(|line| line.contains("ferry::access")).collect();
    assert_eq!((stored.len(), access.len()), (1, 1), "{lines:?}");
    if format == "json" {
        let (stored, access): (Value, Value) =
            (serde_json::from_str(stored[0]).unwrap(), serde_json::from_str(access[0]).unwrap());
        assert_eq!(stored["request_id"], "upload-42");
        assert_eq!(stored["level"], "INFO");
        assert_eq!(access["request_id"], "upload-42");
        assert_eq!(access["method"], "POST");
        assert_eq!(access["route"], "/files/upload/stream/async_read_and_disk_write");
        assert_eq!(access["query"], "filename=a.bin");
        assert_eq!(access["status"], 201);
        assert_eq!(access["error"], Value::Null);
        assert_eq!(access["bytes_in"], bytes.len() as u64);
        assert_eq!(access["bytes_out"], body_len);
        assert_eq!(access["client"], "127.0.0.1");
        assert_eq!(access["user_agent"], "logs-test/1");
        assert!(access["duration_ms"].as_f64().unwrap() >= 0.0);
    } else {
        assert!(stored[0].contains(" INFO  ferry::upload upload-42] stored "), "{}", stored[0]);
        let line = access[0];
        for part in [
            " INFO  ferry::access upload-42] 127.0.0.1 \"POST /files/upload/stream/async_read_and_disk_write?filename=a.bin\" 201 - ",
            &format!(" in={} out={body_len} ", bytes.len()),
            "ua=\"logs-test/1\"",
            "route=/files/upload/stream/async_read_and_disk_write",
        ] {
            assert!(line.contains(part), "{part} not in {line}");
        }
    }
}

#[tokio::test]
async fn every_json_line_parses_and_has_the_fixed_fields_and_errors_name_their_code() {
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::start(data.path(), &["--log-format", "json", "--max-buffered-bytes", "1000"], &[]);
    let app = TestApp::for_child(&server, data.path());
    let stored: StoredFile = app.store(&pattern(5000)).await;
    let download = app.download(Reader::Cached, &stored.id.to_string()).header("x-request-id", "dl-1");
    assert_eq!(download.send().await.unwrap().bytes().await.unwrap().len(), 5000);
    let too_big = app.upload_request(Strategy::Single, pattern(2000), "big").header("x-request-id", "big-1");
    assert_eq!(too_big.send().await.unwrap().status(), 413);
    let missing = app.client.get(app.url("/files/nope")).header("x-request-id", "nope-1").send().await.unwrap();
    assert_eq!(missing.status(), 404);

    assert!(eventually(|| access_lines(&json_lines(&server)).len() >= 4).await, "{:?}", server.log());
    let lines = json_lines(&server);
    for line in &lines {
        for field in ["ts", "level", "target", "msg", "request_id"] {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
    }
    assert!(lines.iter().any(|line| line["msg"].as_str().unwrap().starts_with("listening on")));
    let access = access_lines(&lines);
    for line in &access {
        for field in ACCESS_FIELDS {
            assert!(line.get(field).is_some(), "no {field} in {line}");
        }
        assert!(line["request_id"].is_string(), "{line}");
    }
    let by_id = |id: &str| *access.iter().find(|line| line["request_id"] == id).unwrap_or_else(|| panic!("{id}"));
    assert_eq!(by_id("dl-1")["route"], "/files/download/cached/{id}");
    assert_eq!(by_id("dl-1")["bytes_out"], 5000);
    assert_eq!(
        (by_id("big-1")["status"].clone(), by_id("big-1")["error"].clone()),
        (413.into(), "payload_too_large".into())
    );
    assert_eq!((by_id("nope-1")["status"].clone(), by_id("nope-1")["error"].clone()), (404.into(), "not_found".into()));
    assert_eq!(by_id("dl-1")["path"], format!("/files/download/cached/{}", stored.id));
}

#[tokio::test]
async fn an_error_logged_on_the_blocking_pool_names_its_request() {
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&server, data.path());
    let stored = app.store(&pattern(100_000)).await;
    let content = app.content_path(stored.id);
    std::fs::OpenOptions::new().write(true).open(content).unwrap().set_len(1000).unwrap();
    // async_read opens the file and checks its size on the blocking pool
    // the answer is cut short where the bytes run out, and may fail as early as its head
    let cut = app.download(Reader::AsyncRead, &stored.id.to_string()).header("x-request-id", "cut-7").send().await;
    if let Ok(res) = cut {
        assert!(res.bytes().await.is_err(), "a short file is never sent as if whole");
    }
    // the size check's own line (the body's "ended short" line is logged on the worker)
    let checked = |line: &String| line.contains("cut-7") && line.contains("its metadata says");
    assert!(eventually(|| server.logged("ERROR").iter().any(checked)).await, "{:?}", server.log());
}

#[tokio::test]
async fn the_client_address_comes_from_forwarded_headers_only_behind_a_trusted_proxy() {
    for (trusted, expected) in [(None, "127.0.0.1"), (Some("127.0.0.0/8"), "203.0.113.9")] {
        let data = tempfile::tempdir().unwrap();
        let mut args = vec!["--log-format", "json"];
        args.extend(trusted.map(|net| ["--trusted-proxies", net]).into_iter().flatten());
        let server = ChildServer::start(data.path(), &args, &[]);
        let app = TestApp::for_child(&server, data.path());
        for (header, value, id) in
            [("x-forwarded-for", "198.51.100.1, 203.0.113.9", "xff"), ("forwarded", "for=\"203.0.113.9:5000\"", "fwd")]
        {
            let res = app.client.get(app.url("/files")).header(header, value).header("x-request-id", id);
            assert_eq!(res.send().await.unwrap().status(), 200);
        }
        assert!(eventually(|| access_lines(&json_lines(&server)).len() >= 2).await);
        for line in access_lines(&json_lines(&server)) {
            assert_eq!(line["client"], expected, "trusting {trusted:?}: {line}");
        }
    }
}

#[rstest]
#[case::info("info", false)]
#[case::debug("debug", true)]
#[tokio::test]
async fn health_checks_and_the_docs_log_at_debug_and_the_traffic_at_info(#[case] rust_log: &str, #[case] shown: bool) {
    let data = tempfile::tempdir().unwrap();
    let server = ChildServer::start_logging(data.path(), &[], &[], rust_log);
    let app = TestApp::for_child(&server, data.path());
    for path in ["/health", "/health/ready", "/health/live", "/docs/", "/api-docs/openapi.json", "/files"] {
        let res = app.client.get(app.url(path)).header("x-request-id", format!("q{}", path.replace('/', "_")));
        let res = res.send().await.unwrap();
        assert!(res.status().is_success(), "{path}");
        res.bytes().await.unwrap();
    }
    let quiet = ["q_health]", "q_health_ready]", "q_health_live]", "q_docs_]", "q_api-docs_openapi.json]"];
    let logged_at = |level: &str, id: &str| {
        let tag = format!(" {level:<5} ferry::access {id}");
        server.log().iter().any(|line| line.contains(&tag))
    };
    assert!(eventually(|| logged_at("INFO", "q_files]")).await, "{:?}", server.log());
    if shown {
        assert!(eventually(|| quiet.iter().all(|id| logged_at("DEBUG", id))).await, "{:?}", server.log());
    }
    for id in quiet {
        assert_eq!(logged_at("DEBUG", id), shown, "{id}: {:?}", server.log());
        assert!(!logged_at("INFO", id), "{id}: {:?}", server.log());
    }
}
