//! Bad uploads get a clear JSON error and leave nothing behind.

use std::time::Duration;

use ferry::upload::{Read, Strategy};
use tokio::io::AsyncWriteExt;

use crate::helpers::{
    FILE_HEADER, MAX_UPLOAD, MULTIPART, body_prefix, content_type_for, eventually, form, pattern, read_response,
    request_head, send_all, spawn_app, spawn_app_with,
};

async fn error_code(res: reqwest::Response) -> (u16, String) {
    let status = res.status().as_u16();
    let body: serde_json::Value = res.json().await.expect("JSON error body");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    (status, body["error"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_before_any_body_byte_is_sent() {
    let app = spawn_app().await;
    for strategy in Strategy::ALL {
        let mut stream = app.raw().await;
        let head = request_head(strategy, content_type_for(strategy), "Content-Length: 10737418240\r\n");
        send_all(&mut stream, head.as_bytes()).await;
        let response = read_response(&mut stream, Duration::from_secs(5)).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{strategy:?}: {response:?}");
        assert!(response.to_ascii_lowercase().contains("connection: close"), "{strategy:?}: {response}");
        assert!(response.contains("\"error\":\"payload_too_large\""), "{strategy:?}: {response}");
    }
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn a_chunked_body_is_refused_once_it_crosses_the_limit() {
    let app = spawn_app().await;
    let mut answered = 0;
    for strategy in Strategy::ALL {
        let mut body = body_prefix(strategy).to_vec();
        body.extend(std::iter::repeat_n(b'A', 2 * MAX_UPLOAD as usize));
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
        let res = app
            .client
            .post(app.url(strategy.path()))
            .header("content-type", content_type_for(strategy))
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
            .send()
            .await;
        // the server may close before the client finished sending; when it got the answer it must be 413
        if let Ok(res) = res {
            assert_eq!(error_code(res).await, (413, "payload_too_large".into()), "{strategy:?}");
            answered += 1;
        }
    }
    assert!(answered > 0, "no chunked upload got an answer");
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn a_client_that_disconnects_mid_body_leaves_no_temp_file_and_publishes_nothing() {
    let app = spawn_app().await;
    for strategy in Strategy::ALL {
        let mut stream = app.raw().await;
        let head = request_head(strategy, content_type_for(strategy), "Content-Length: 300000\r\n");
        send_all(&mut stream, head.as_bytes()).await;
        send_all(&mut stream, body_prefix(strategy)).await;
        send_all(&mut stream, &[b'A'; 100_000]).await;
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream);
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn a_client_gone_after_more_than_a_part_leaves_nothing_behind() {
    // past the first 8 MiB part: on S3 the multipart upload has begun, and leaving must abort it and its marker
    let app = spawn_app_with(|c| c.max_upload_bytes = 32 << 20).await;
    let streaming = Strategy::ALL.into_iter().filter(|s| matches!(s.read(), Read::Raw | Read::PartStreamed));
    for strategy in streaming {
        let mut stream = app.raw().await;
        let head = request_head(strategy, content_type_for(strategy), "Content-Length: 20000000\r\n");
        send_all(&mut stream, head.as_bytes()).await;
        send_all(&mut stream, body_prefix(strategy)).await;
        for _ in 0..12 {
            send_all(&mut stream, &[b'A'; 1 << 20]).await;
        }
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(stream);
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert!(app.stored_names().is_empty());
    assert!(eventually(|| app.uploads_in_progress().is_empty()).await, "{:?}", app.uploads_in_progress());
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_is_discarded() {
    let app = spawn_app_with(|c| c.body_idle_timeout = Duration::from_millis(300)).await;
    for strategy in Strategy::ALL {
        let mut stream = app.raw().await;
        let head = request_head(strategy, content_type_for(strategy), "Content-Length: 100000\r\n");
        send_all(&mut stream, head.as_bytes()).await;
        send_all(&mut stream, body_prefix(strategy)).await;
        send_all(&mut stream, &[b'A'; 1000]).await;
        let response = read_response(&mut stream, Duration::from_secs(5)).await;
        assert!(response.starts_with("HTTP/1.1 408"), "{strategy:?}: {response:?}");
        assert!(response.contains("\"error\":\"body_timeout\""), "{strategy:?}: {response}");
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn multipart_endpoints_refuse_other_bodies_with_415() {
    let app = spawn_app().await;
    for strategy in MULTIPART {
        let res =
            app.client.post(app.url(strategy.path())).header("content-type", "application/octet-stream").body("x");
        assert_eq!(error_code(res.send().await.unwrap()).await, (415, "unsupported_media_type".into()), "{strategy:?}");
    }
    let res = app.client.post(app.url(Strategy::JsonBase64.path())).header("content-type", "text/plain").body("{}");
    assert_eq!(error_code(res.send().await.unwrap()).await, (415, "unsupported_media_type".into()));
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn a_form_without_a_file_part_is_missing_file() {
    let app = spawn_app().await;
    for strategy in MULTIPART {
        let form = reqwest::multipart::Form::new().text("note", "no file here");
        let res = app.client.post(app.url(strategy.path())).multipart(form).send().await.unwrap();
        assert_eq!(error_code(res).await, (400, "missing_file".into()), "{strategy:?}");
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn a_form_with_two_file_parts_is_refused_and_other_parts_are_ignored() {
    let app = spawn_app().await;
    for strategy in MULTIPART {
        let part = |b: &[u8]| reqwest::multipart::Part::bytes(b.to_vec()).file_name("f");
        let two = reqwest::multipart::Form::new().part("file", part(b"one")).part("file", part(b"two"));
        let res = app.client.post(app.url(strategy.path())).multipart(two).send().await.unwrap();
        assert_eq!(error_code(res).await, (400, "duplicate_file".into()), "{strategy:?}");

        let extra = reqwest::multipart::Form::new().text("before", "x").part("file", part(b"one")).text("after", "y");
        let res = app.client.post(app.url(strategy.path())).multipart(extra).send().await.unwrap();
        assert_eq!(res.status(), 201, "{strategy:?}");
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert_eq!(app.stored_names().len(), 5);
}

#[tokio::test]
async fn a_multipart_body_cut_before_its_closing_boundary_is_a_bad_request() {
    let app = spawn_app().await;
    for strategy in MULTIPART {
        let res = app.multipart_request(strategy, [body_prefix(strategy), b"abc"].concat()).send().await.unwrap();
        assert_eq!(error_code(res).await, (400, "malformed_multipart".into()), "{strategy:?}");
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn bad_base64_and_bad_json_are_told_apart() {
    let app = spawn_app().await;
    let url = app.url(Strategy::JsonBase64.path());
    let bad_b64 = app.client.post(&url).json(&serde_json::json!({"filename": "a", "data": "not base64!"}));
    let res = bad_b64.send().await.unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_base64");
    assert_eq!(
        body["message"],
        "\"data\" is not valid base64: ' ' at offset 3 is not in the base64 alphabet (A-Z, a-z, 0-9, +, /)"
    );
    let bad_json = app.client.post(&url).header("content-type", "application/json").body("{\"data\": ");
    assert_eq!(error_code(bad_json.send().await.unwrap()).await, (400, "invalid_json".into()));
    let no_data = app.client.post(&url).json(&serde_json::json!({"filename": "a"}));
    assert_eq!(error_code(no_data.send().await.unwrap()).await, (400, "invalid_json".into()));
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn base64_without_padding_is_accepted() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url(Strategy::JsonBase64.path()))
        .json(&serde_json::json!({"filename": "a", "data": "aGk", "content_type": "text/plain"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let stored: ferry::storage::StoredFile = res.json().await.unwrap();
    assert_eq!((stored.size, stored.content_type.as_str()), (2, "text/plain"));
    assert_eq!(app.stored_bytes(stored.id), b"hi");
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_stores_nothing() {
    let app = spawn_app().await;
    let mut stream = app.raw().await;
    let head = request_head(Strategy::StreamDiskWrite, "application/octet-stream", "Content-Length: 5000\r\n");
    send_all(&mut stream, head.as_bytes()).await;
    send_all(&mut stream, &pattern(1000)).await;
    stream.shutdown().await.unwrap();
    let _ = read_response(&mut stream, Duration::from_secs(5)).await;
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn a_part_without_a_name_gets_an_answer_not_a_dropped_connection() {
    let app = spawn_app().await;
    let body = form(&[("Content-Disposition: form-data; name=\"\"", b"null"), (FILE_HEADER, b"abc")]);
    for strategy in MULTIPART {
        let res =
            app.multipart_request(strategy, body.clone()).send().await.unwrap_or_else(|e| panic!("{strategy:?}: {e}"));
        // the nameless part is ignored like any other; actix-multipart's form extractor may refuse it instead
        assert!(matches!(res.status().as_u16(), 201 | 400), "{strategy:?}: {}", res.status());
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
}
