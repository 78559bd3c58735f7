//! Listing, metadata and deletion.

use ferry::{download::Reader, storage::StoredFile, upload::Strategy};

use crate::helpers::{spawn_app, spawn_app_with};

#[tokio::test]
async fn the_list_is_newest_first_and_pages_with_a_cursor() {
    let app = spawn_app().await;
    let mut stored = Vec::new();
    for i in 0..5u8 {
        stored.push(app.store(&[i]).await.id);
    }
    let all: Vec<StoredFile> = app.client.get(app.url("/files")).send().await.unwrap().json().await.unwrap();
    let newest_first: Vec<_> = stored.iter().rev().copied().collect();
    assert_eq!(all.iter().map(|f| f.id).collect::<Vec<_>>(), newest_first);

    let res = app.client.get(app.url("/files?limit=2")).send().await.unwrap();
    let link = res.headers()["link"].to_str().unwrap().to_owned();
    let first: Vec<StoredFile> = res.json().await.unwrap();
    assert_eq!(first.iter().map(|f| f.id).collect::<Vec<_>>(), newest_first[..2]);
    assert_eq!(link, format!("</files?limit=2&after={}>; rel=\"next\"", newest_first[1]));
    let url = app.url(&format!("/files?limit=2&after={}", newest_first[1]));
    let second: Vec<StoredFile> = app.client.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(second.iter().map(|f| f.id).collect::<Vec<_>>(), newest_first[2..4]);
    let url = app.url(&format!("/files?limit=2&after={}", newest_first[3]));
    let last = app.client.get(url).send().await.unwrap();
    assert!(last.headers().get("link").is_none());
    assert_eq!(last.json::<Vec<StoredFile>>().await.unwrap().len(), 1);
}

#[tokio::test]
async fn bad_list_parameters_are_400() {
    let app = spawn_app().await;
    for query in ["limit=0", "limit=1001", "limit=x", "after=nope"] {
        let res = app.client.get(app.url(&format!("/files?{query}"))).send().await.unwrap();
        assert_eq!(res.status(), 400, "{query}");
        assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "invalid_query");
    }
}

#[tokio::test]
async fn metadata_is_returned_by_id() {
    let app = spawn_app().await;
    let file = app.store(b"hello").await;
    let got: StoredFile =
        app.client.get(app.url(&format!("/files/{}", file.id))).send().await.unwrap().json().await.unwrap();
    assert_eq!(got, file);
    let res = app.client.get(app.url("/files/00000000-0000-0000-0000-000000000000")).send().await.unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn a_deleted_file_is_gone_from_every_strategy_the_list_and_the_disk() {
    let app = spawn_app().await;
    let file = app.store(&[7; 1000]).await;
    let id = file.id.to_string();
    // warm the cache, so deletion must evict it
    assert_eq!(app.download(Reader::Cached, &id).send().await.unwrap().status(), 200);

    let res = app.client.delete(app.url(&format!("/files/{id}"))).send().await.unwrap();
    assert_eq!(res.status(), 204);
    for reader in Reader::ALL {
        assert_eq!(app.download(reader, &id).send().await.unwrap().status(), 404, "{reader:?}");
    }
    assert_eq!(app.client.get(app.url(&format!("/files/{id}"))).send().await.unwrap().status(), 404);
    assert_eq!(app.client.delete(app.url(&format!("/files/{id}"))).send().await.unwrap().status(), 404);
    let list: Vec<StoredFile> = app.client.get(app.url("/files")).send().await.unwrap().json().await.unwrap();
    assert!(list.is_empty());
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn a_download_under_way_finishes_when_its_file_is_deleted() {
    let app = spawn_app_with(|c| c.max_upload_bytes = 64 << 20).await;
    let bytes = crate::helpers::pattern(16 << 20);
    for reader in Reader::ALL {
        let id = app.store(&bytes).await.id.to_string();
        let res = app.download(reader, &id).send().await.unwrap();
        assert_eq!(res.status(), 200, "{reader:?}");
        let del = app.client.delete(app.url(&format!("/files/{id}"))).send().await.unwrap();
        assert_eq!(del.status(), 204);
        let body = res.bytes().await.unwrap();
        assert!(body == bytes, "{reader:?}: the download under way was cut");
        assert_eq!(app.download(reader, &id).send().await.unwrap().status(), 404);
    }
}

#[tokio::test]
async fn health_is_ok_while_the_data_dir_is_writable() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["status"], "ok");

    std::fs::remove_dir_all(app.tmp_dir()).unwrap();
    let res = app.client.get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "unavailable");
}

#[tokio::test]
async fn unknown_paths_get_a_json_404_that_says_no_route() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/nothing/here")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let body = res.json::<serde_json::Value>().await.unwrap();
    assert_eq!(body["error"], "not_found");
    assert_eq!(body["message"], "no route for GET /nothing/here; the API is described at /docs");

    // Swagger UI's own asset service answers unknown assets; ferry makes that answer JSON too
    let res = app.client.get(app.url("/docs/no-such-asset.js")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let body = res.json::<serde_json::Value>().await.unwrap();
    assert_eq!(body["message"], "no route for GET /docs/no-such-asset.js; the API is described at /docs");

    let res = app.client.get(app.url("/files/not-an-id")).send().await.unwrap();
    let body = res.json::<serde_json::Value>().await.unwrap();
    assert_eq!((body["error"].as_str(), body["message"].as_str()), (Some("not_found"), Some("no file with this id")));
}

#[tokio::test]
async fn a_known_path_with_another_method_is_405_with_allow() {
    let app = spawn_app().await;
    let cases = [
        (reqwest::Method::GET, "/files/upload/single", "POST"),
        (reqwest::Method::TRACE, "/health", "GET"),
        (reqwest::Method::POST, "/files/download/cached/anything", "GET, HEAD"),
        (reqwest::Method::PUT, "/files/0190", "GET, DELETE"),
    ];
    for (method, path, allow) in cases {
        let res = app.client.request(method.clone(), app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 405, "{method} {path}");
        assert_eq!(res.headers()["allow"], allow, "{method} {path}");
        assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "method_not_allowed");
    }
}

#[tokio::test]
async fn a_conditional_delete_removes_only_the_file_the_client_has_seen() {
    let app = spawn_app().await;
    let file = app.store(b"seen").await;
    let url = app.url(&format!("/files/{}", file.id));
    let etag = format!("\"{}\"", file.sha256);
    for (name, value) in [("if-match", "\"something else\""), ("if-unmodified-since", "Sat, 01 Jan 2000 00:00:00 GMT")]
    {
        let res = app.client.delete(&url).header(name, value).send().await.unwrap();
        assert_eq!(res.status(), 412, "{name}");
        assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "precondition_failed");
        assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200, "{name}: nothing was deleted");
    }
    let res = app.client.delete(&url).header("if-match", &etag).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn liveness_and_readiness_answer_separately() {
    let app = spawn_app().await;
    let live = app.client.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert!(ready["free_bytes"].as_u64().unwrap() > 0, "{ready}");

    std::fs::remove_dir_all(app.tmp_dir()).unwrap();
    let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().starts_with("not ready: the data directory cannot be written"), "{body}");
    assert_eq!(app.client.get(app.url("/health/live")).send().await.unwrap().status(), 200, "still alive");
}

#[tokio::test]
async fn below_the_free_space_to_keep_uploads_get_507_and_readiness_turns_503() {
    let free = {
        let probe = spawn_app().await;
        let ready: serde_json::Value =
            probe.client.get(probe.url("/health/ready")).send().await.unwrap().json().await.unwrap();
        ready["free_bytes"].as_u64().unwrap()
    };
    // a volume that must keep more than it has: nothing fits
    let full = spawn_app_with(|config| config.min_free_bytes = Some(free + (1 << 30))).await;
    assert_eq!(full.client.get(full.url("/health/ready")).send().await.unwrap().status(), 503);
    let head =
        crate::helpers::request_head(Strategy::StreamDiskWrite, "application/octet-stream", "Content-Length: 10\r\n");
    let answer = full.exchange(head.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 507") && answer.contains("insufficient_storage"),
        "refused before the body: {answer}"
    );

    // a volume with 16 MiB to spare: an unannounced (chunked) 64 MiB body stops at the line
    let tight = spawn_app_with(|config| {
        config.min_free_bytes = Some(free - (16 << 20));
        config.max_upload_bytes = 128 << 20;
    })
    .await;
    let pieces = futures_util::stream::iter((0..64).map(|_| Ok::<_, std::io::Error>(vec![7u8; 1 << 20])));
    let res = tight
        .client
        .post(tight.url(Strategy::StreamDiskWrite.path()))
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 507);
    assert_eq!(tight.tmp_settles_empty().await, Vec::<String>::new());
    assert!(tight.stored_names().is_empty());
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_bytes_by_strategy_and_failures_by_code() {
    let app = spawn_app_with(|config| config.metrics_addr = Some("127.0.0.1:0".parse().unwrap())).await;
    let bytes = crate::helpers::pattern(100_000);
    let mut ids = Vec::new();
    for strategy in [Strategy::Single, Strategy::StreamDiskWrite] {
        let res = app.upload(strategy, &bytes).await;
        assert_eq!(res.status(), 201);
        ids.push(res.json::<StoredFile>().await.unwrap().id.to_string());
    }
    let too_big =
        app.upload(Strategy::Single, &crate::helpers::pattern(crate::helpers::MAX_BUFFERED as usize + 1)).await;
    assert_eq!(too_big.status(), 413);
    for _ in 0..2 {
        let res = app.download(Reader::Cached, &ids[0]).send().await.unwrap();
        assert_eq!(res.bytes().await.unwrap().len(), bytes.len());
    }
    assert_eq!(app.client.get(app.url("/files/0190")).send().await.unwrap().status(), 404);

    let url = format!("http://{}/metrics", app.metrics_addr.unwrap());
    let text = app.client.get(&url).send().await.unwrap().text().await.unwrap();
    let value = |series: &str| -> f64 {
        let line =
            text.lines().find(|line| line.starts_with(series)).unwrap_or_else(|| panic!("no {series} in\n{text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("ferry_http_requests_total{route=\"/files/upload/single\",method=\"POST\",status=\"201\"}"), 1.0);
    assert_eq!(
        value("ferry_http_requests_total{route=\"/files/download/cached/{id}\",method=\"GET\",status=\"200\"}"),
        2.0
    );
    assert_eq!(value("ferry_http_requests_total{route=\"/files/{id}\",method=\"GET\",status=\"404\"}"), 1.0);
    assert!(
        value("ferry_received_bytes_total{strategy=\"single\"}") > bytes.len() as f64,
        "the multipart envelope counts"
    );
    assert_eq!(value("ferry_received_bytes_total{strategy=\"stream/async_read_and_disk_write\"}"), bytes.len() as f64);
    assert_eq!(value("ferry_sent_bytes_total{strategy=\"cached\"}"), 2.0 * bytes.len() as f64);
    assert_eq!(value("ferry_uploads_failed_total{code=\"payload_too_large\"}"), 1.0);
    assert_eq!((value("ferry_cache_hits_total"), value("ferry_cache_misses_total")), (1.0, 1.0));
    assert_eq!(value("ferry_stored_files"), 2.0);
    assert_eq!(value("ferry_stored_bytes"), 2.0 * bytes.len() as f64);
    assert_eq!(value("ferry_uploads_in_flight"), 0.0);
    assert!(value("ferry_open_connections") >= 1.0);
    assert!(value("ferry_volume_free_bytes") > 0.0);
    assert!(!ids.iter().any(|id| text.contains(id.as_str())), "no label carries a file id");
    assert!(
        text.contains("ferry_http_request_duration_seconds_bucket{le=\"0.001\",route=\"/files/upload/single\"}"),
        "{text}"
    );
    // the classic text format unless OpenMetrics is asked for, as Prometheus does
    assert!(text.contains("# TYPE ferry_http_requests_total counter\n") && !text.contains("# EOF"), "{text}");
    let openmetrics = app.client.get(url).header("accept", "application/openmetrics-text; version=1.0.0").send();
    let openmetrics = openmetrics.await.unwrap().text().await.unwrap();
    assert!(openmetrics.contains("# TYPE ferry_http_requests counter\n") && openmetrics.ends_with("# EOF\n"));
}
