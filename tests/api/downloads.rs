//! The five download strategies answer every request identically.

use ferry::{download::Reader, storage::StoredFile, upload::Strategy};
use reqwest::header::HeaderMap;
use rstest_reuse::apply;

use crate::{
    each_download,
    helpers::{TestApp, pattern, spawn_app},
};

/// The headers that must not depend on the strategy.
const SHARED: [&str; 8] = [
    "content-length",
    "content-type",
    "content-disposition",
    "etag",
    "last-modified",
    "accept-ranges",
    "repr-digest",
    "content-range",
];

fn shared(headers: &HeaderMap) -> Vec<(String, Option<String>)> {
    SHARED.iter().map(|h| (h.to_string(), headers.get(*h).map(|v| v.to_str().unwrap().to_owned()))).collect()
}

async fn get(app: &TestApp, reader: Reader, id: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Vec<u8>) {
    let mut req = app.download(reader, id);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().await.unwrap();
    let (status, headers) = (res.status().as_u16(), res.headers().clone());
    (status, headers, res.bytes().await.unwrap().to_vec())
}

/// A file of several read chunks, uploaded once.
async fn fixture(app: &TestApp) -> (StoredFile, Vec<u8>) {
    let bytes = pattern(300_000);
    (app.store(&bytes).await, bytes)
}

#[tokio::test]
async fn every_strategy_sends_the_whole_file_with_identical_headers() {
    let app = spawn_app().await;
    let (file, bytes) = fixture(&app).await;
    let id = file.id.to_string();
    let mut seen = Vec::new();
    for reader in Reader::ALL {
        // twice: the cached strategy answers from disk, then from memory
        for _ in 0..2 {
            let (status, headers, body) = get(&app, reader, &id, &[]).await;
            assert_eq!(status, 200, "{reader:?}");
            assert!(body == bytes, "{reader:?}: body differs");
            assert!(headers.get("transfer-encoding").is_none(), "{reader:?} used chunked encoding");
            assert_eq!(headers["etag"], format!("\"{}\"", file.sha256).as_str());
            assert_eq!(headers["content-length"], "300000");
            assert_eq!(headers["x-content-type-options"], "nosniff");
            seen.push((reader, shared(&headers)));
        }
    }
    for (reader, headers) in &seen[1..] {
        assert_eq!(headers, &seen[0].1, "{reader:?} differs from {:?}", seen[0].0);
    }
    let digest = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, hex::decode(&file.sha256).unwrap());
    assert_eq!(seen[0].1[6].1.as_deref(), Some(format!("sha-256=:{digest}:").as_str()));
}

#[apply(each_download)]
async fn head_has_the_get_headers_and_no_body(reader: Reader) {
    let app = spawn_app().await;
    let (file, _) = fixture(&app).await;
    let id = file.id.to_string();
    let res = app.client.head(app.url(&reader.path(&id))).send().await.unwrap();
    assert_eq!(res.status(), 200, "{reader:?}");
    let head = shared(res.headers());
    assert!(res.bytes().await.unwrap().is_empty());
    let (_, get_headers, _) = get(&app, reader, &id, &[]).await;
    assert_eq!(head, shared(&get_headers), "{reader:?}");
}

#[apply(each_download)]
async fn single_ranges_are_served_and_clamped(reader: Reader) {
    let app = spawn_app().await;
    let (file, bytes) = fixture(&app).await;
    let (id, size) = (file.id.to_string(), bytes.len());
    let cases: [(&str, usize, usize); 5] = [
        ("bytes=0-0", 0, 0),
        ("bytes=-1", size - 1, size - 1),
        ("bytes=100-", 100, size - 1),
        ("bytes=299990-400000", 299_990, size - 1),
        ("bytes=1000-263143", 1000, 263_143),
    ];
    for (range, first, last) in cases {
        let (status, headers, body) = get(&app, reader, &id, &[("range", range)]).await;
        assert_eq!(status, 206, "{reader:?} {range}");
        assert_eq!(headers["content-range"], format!("bytes {first}-{last}/{size}").as_str(), "{reader:?} {range}");
        assert_eq!(headers["content-length"], (last - first + 1).to_string().as_str());
        assert!(body == bytes[first..=last], "{reader:?} {range}: wrong bytes");
    }
}

#[apply(each_download)]
async fn unsatisfiable_ranges_get_416_and_garbage_ranges_the_whole_file(reader: Reader) {
    let app = spawn_app().await;
    let (file, bytes) = fixture(&app).await;
    let id = file.id.to_string();
    let (status, headers, body) = get(&app, reader, &id, &[("range", "bytes=300000-")]).await;
    assert_eq!(status, 416, "{reader:?}");
    assert_eq!(headers["content-range"], "bytes */300000");
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"], "range_not_satisfiable");

    for garbage in ["bytes=abc", "lines=0-1", "bytes=5-4", "bytes=0-1,5-6"] {
        let (status, _, body) = get(&app, reader, &id, &[("range", garbage)]).await;
        assert_eq!(status, 200, "{reader:?} {garbage}");
        assert_eq!(body.len(), bytes.len());
    }
}

#[apply(each_download)]
async fn conditional_requests_get_304(reader: Reader) {
    let app = spawn_app().await;
    let (file, _) = fixture(&app).await;
    let id = file.id.to_string();
    let etag = format!("\"{}\"", file.sha256);
    let (_, headers, _) = get(&app, Reader::SyncRead, &id, &[]).await;
    let last_modified = headers["last-modified"].to_str().unwrap().to_owned();
    for inm in [etag.as_str(), "\"other\", W/\"x\", ".to_owned().leak(), "*"] {
        let inm = if inm.ends_with(", ") { format!("{inm}{etag}") } else { inm.to_owned() };
        let (status, headers, body) = get(&app, reader, &id, &[("if-none-match", &inm)]).await;
        assert_eq!(status, 304, "{reader:?} {inm}");
        assert!(body.is_empty());
        assert_eq!(headers["etag"], etag.as_str());
    }
    let (status, _, _) = get(&app, reader, &id, &[("if-none-match", "\"stale\"")]).await;
    assert_eq!(status, 200, "{reader:?}");
    let (status, _, _) = get(&app, reader, &id, &[("if-modified-since", &last_modified)]).await;
    assert_eq!(status, 304, "{reader:?}");
    let (status, _, _) = get(&app, reader, &id, &[("if-modified-since", "Sat, 01 Jan 2000 00:00:00 GMT")]).await;
    assert_eq!(status, 200, "{reader:?}");
}

#[apply(each_download)]
async fn if_range_honours_the_range_only_while_the_validator_matches(reader: Reader) {
    let app = spawn_app().await;
    let (file, bytes) = fixture(&app).await;
    let id = file.id.to_string();
    let etag = format!("\"{}\"", file.sha256);
    let (_, headers, _) = get(&app, Reader::SyncRead, &id, &[]).await;
    let last_modified = headers["last-modified"].to_str().unwrap().to_owned();
    for validator in [etag.as_str(), last_modified.as_str()] {
        let (status, _, body) = get(&app, reader, &id, &[("range", "bytes=0-9"), ("if-range", validator)]).await;
        assert_eq!((status, body.len()), (206, 10), "{reader:?} {validator}");
    }
    for stale in ["\"0000\"", "Sat, 01 Jan 2000 00:00:00 GMT", "W/\"weak\""] {
        let (status, _, body) = get(&app, reader, &id, &[("range", "bytes=0-9"), ("if-range", stale)]).await;
        assert_eq!((status, body.len()), (200, bytes.len()), "{reader:?} {stale}");
    }
}

#[tokio::test]
async fn non_ascii_names_get_rfc_8187_content_disposition() {
    let app = spawn_app().await;
    let res = app.upload_request(Strategy::StreamDiskWrite, b"hi".to_vec(), "отчёт \"final\".pdf").send().await;
    let file: StoredFile = res.unwrap().json().await.unwrap();
    for reader in Reader::ALL {
        let (_, headers, _) = get(&app, reader, &file.id.to_string(), &[]).await;
        let cd = headers["content-disposition"].to_str().unwrap();
        assert!(cd.starts_with("attachment; filename=\"_____ \\\"final\\\".pdf\""), "{reader:?}: {cd}");
        assert!(cd.contains("filename*=UTF-8''%D0%BE%D1%82%D1%87%D1%91%D1%82%20%22final%22.pdf"), "{reader:?}: {cd}");
    }
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404_json() {
    let app = spawn_app().await;
    let unknown = ferry::storage::FileId::new().to_string();
    for reader in Reader::ALL {
        for id in [unknown.as_str(), "not-an-id", "..%2f..%2fetc%2fpasswd", "%2e%2e", "..%5c..%5cx"] {
            let (status, _, body) = get(&app, reader, id, &[]).await;
            assert_eq!(status, 404, "{reader:?} {id}");
            assert_eq!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["error"], "not_found");
        }
    }
}

#[tokio::test]
async fn an_empty_file_downloads_as_an_empty_200() {
    let app = spawn_app().await;
    let file = app.store(b"").await;
    for reader in Reader::ALL {
        let (status, headers, body) = get(&app, reader, &file.id.to_string(), &[]).await;
        assert_eq!((status, body.len()), (200, 0), "{reader:?}");
        assert_eq!(headers["content-length"], "0");
        let (status, _, _) = get(&app, reader, &file.id.to_string(), &[("range", "bytes=0-")]).await;
        assert_eq!(status, 416, "{reader:?}");
    }
}

#[apply(each_download)]
async fn if_match_and_if_unmodified_since_fail_with_412_unless_they_hold(reader: Reader) {
    let app = spawn_app().await;
    let (file, bytes) = fixture(&app).await;
    let id = file.id.to_string();
    let etag = format!("\"{}\"", file.sha256);
    let (_, headers, _) = get(&app, reader, &id, &[]).await;
    let last_modified = headers["last-modified"].to_str().unwrap().to_owned();
    let passing = [
        ("if-match", etag.clone()),
        ("if-match", format!("\"other\", {etag}")),
        ("if-match", "*".to_owned()),
        ("if-unmodified-since", last_modified.clone()),
        ("if-unmodified-since", "Fri, 01 Jan 2100 00:00:00 GMT".to_owned()),
    ];
    for (name, value) in &passing {
        let (status, _, body) = get(&app, reader, &id, &[(name, value)]).await;
        assert_eq!(status, 200, "{reader:?} {name}: {value}");
        assert!(body == bytes, "{reader:?} {name}: {value}");
    }
    let failing = [
        ("if-match", "\"other\"".to_owned()),
        // If-Match compares strongly
        ("if-match", format!("W/{etag}")),
        ("if-unmodified-since", "Sat, 01 Jan 2000 00:00:00 GMT".to_owned()),
    ];
    for (name, value) in &failing {
        let (status, _, body) = get(&app, reader, &id, &[(name, value), ("range", "bytes=0-9")]).await;
        assert_eq!(status, 412, "{reader:?} {name}: {value}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"], "precondition_failed", "{reader:?}");
    }
    // If-Match wins over If-Unmodified-Since (RFC 9110 §13.2.2)
    let both = [("if-match", etag.as_str()), ("if-unmodified-since", "Sat, 01 Jan 2000 00:00:00 GMT")];
    assert_eq!(get(&app, reader, &id, &both).await.0, 200, "{reader:?}");
}
