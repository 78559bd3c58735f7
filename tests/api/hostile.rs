//! Hostile and malformed input: multipart shapes, request smuggling, names, ranges. Each is answered with the
//! right code in bounded time and memory, and never reaches outside the data directory.

use std::time::{Duration, Instant};

use ferry::{download::Reader, storage::StoredFile, upload::Strategy};

use crate::helpers::{FILE_HEADER, MULTIPART, TestApp, form, pattern, sha256_hex, spawn_app};

/// Posts a hand-made multipart body (boundary `XyZ`), sent as the given chunks; returns status and JSON body.
async fn post_multipart(app: &TestApp, strategy: Strategy, chunks: Vec<Vec<u8>>) -> (u16, serde_json::Value) {
    let started = Instant::now();
    let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
    let res = app
        .multipart_request(strategy, reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{strategy:?}: no answer: {e}"));
    let status = res.status().as_u16();
    let body = res.json().await.unwrap_or_else(|e| panic!("{strategy:?}: answer is not JSON: {e}"));
    assert!(started.elapsed() < Duration::from_secs(10), "{strategy:?} took {:?}", started.elapsed());
    (status, body)
}

fn part(headers: &str, content: &[u8]) -> Vec<u8> {
    form(&[(headers, content)])
}

#[tokio::test]
async fn a_boundary_split_across_one_byte_reads_still_parses() {
    let app = spawn_app().await;
    let content = pattern(3000);
    let body = part(FILE_HEADER, &content);
    for strategy in MULTIPART {
        let chunks = body.iter().map(|b| vec![*b]).collect();
        let (status, stored) = post_multipart(&app, strategy, chunks).await;
        assert_eq!(status, 201, "{strategy:?}: {stored}");
        assert_eq!(stored["sha256"], sha256_hex(&content));
    }
}

#[tokio::test]
async fn a_preamble_is_skipped_while_it_fits_the_envelope_and_refused_beyond_the_limit() {
    let app = spawn_app().await;
    for strategy in MULTIPART {
        // a preamble ends with the CRLF that starts the first delimiter (RFC 2046)
        let small = [vec![b'p'; 30_000], b"\r\n".to_vec(), part(FILE_HEADER, b"abc")].concat();
        let (status, stored) = post_multipart(&app, strategy, vec![small]).await;
        assert_eq!((status, stored["size"].as_u64()), (201, Some(3)), "{strategy:?}");

        let huge: Vec<Vec<u8>> =
            std::iter::repeat_n(vec![b'p'; 64 * 1024], 16).chain([part(FILE_HEADER, b"abc")]).collect();
        let (status, body) = post_multipart(&app, strategy, huge).await;
        assert_eq!((status, body["error"].as_str()), (413, Some("payload_too_large")), "{strategy:?}");
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
}

#[tokio::test]
async fn huge_part_headers_and_too_many_part_headers_are_refused() {
    let app = spawn_app().await;
    for strategy in MULTIPART {
        let long = format!("{FILE_HEADER}\r\nX-Long: {}", "v".repeat(200_000));
        let (status, _) = post_multipart(&app, strategy, vec![part(&long, b"abc")]).await;
        assert!(matches!(status, 400 | 413), "{strategy:?}: {status}");

        let many = (0..40).map(|i| format!("X-H{i}: v")).collect::<Vec<_>>().join("\r\n");
        let (status, body) =
            post_multipart(&app, strategy, vec![part(&format!("{FILE_HEADER}\r\n{many}"), b"abc")]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("malformed_multipart")), "{strategy:?}");
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn request_smuggling_shapes_are_refused() {
    let app = spawn_app().await;
    let path = Strategy::StreamDiskWrite.path();
    let smuggle = "GET /health HTTP/1.1\r\nHost: ferry\r\n\r\n";
    let cases = [
        format!(
            "POST {path} HTTP/1.1\r\nHost: ferry\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggle}"
        ),
        format!(
            "POST {path} HTTP/1.1\r\nHost: ferry\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n{smuggle}"
        ),
        format!("POST {path} HTTP/1.1\r\nHost: ferry\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhello{smuggle}"),
        format!("POST {path} HTTP/1.1\r\nHost: ferry\r\nContent-Length: 5, 40\r\n\r\nhello{smuggle}"),
    ];
    for request in cases {
        let answers = app.exchange(request.as_bytes()).await;
        assert!(answers.starts_with("HTTP/1.1 400"), "{request:?} got {answers:?}");
        assert_eq!(answers.matches("HTTP/1.1 ").count(), 1, "{request:?}: the smuggled request was answered");
    }
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn a_300_byte_utf8_name_is_cut_on_a_character_boundary() {
    let app = spawn_app().await;
    let name = "ж".repeat(150); // 300 bytes
    for strategy in Strategy::ALL {
        let res = app.upload_request(strategy, b"x".to_vec(), &name).send().await.unwrap();
        assert_eq!(res.status(), 201, "{strategy:?}");
        let stored: StoredFile = res.json().await.unwrap();
        assert_eq!(stored.filename, "ж".repeat(127), "{strategy:?}");
    }
}

#[tokio::test]
async fn range_abuse_gets_bounded_correct_answers() {
    let app = spawn_app().await;
    let bytes = pattern(10_000);
    let id = app.store(&bytes).await.id.to_string();
    let overlapping = format!("bytes={}", vec!["0-9999"; 1000].join(","));
    for reader in Reader::ALL {
        let get = |range: &str| app.download(reader, &id).header("range", range.to_owned()).send();
        let res = get(&overlapping).await.unwrap();
        assert_eq!(res.status(), 200, "{reader:?}");
        assert_eq!(res.bytes().await.unwrap().len(), bytes.len());

        let res = get("bytes=0-99999999999999999999").await.unwrap();
        assert_eq!((res.status().as_u16(), res.bytes().await.unwrap().len()), (206, bytes.len()), "{reader:?}");
        assert_eq!(get("bytes=99999999999999999999-").await.unwrap().status(), 416, "{reader:?}");
        assert_eq!(get("bytes=5-4").await.unwrap().status(), 200, "{reader:?}");

        let head = app.client.head(app.url(&reader.path(&id))).header("range", "bytes=0-9").send().await.unwrap();
        assert_eq!(head.status(), 200, "{reader:?}: HEAD ignores Range");
        assert_eq!(head.headers()["content-length"], "10000");
    }
}
