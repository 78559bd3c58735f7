//! Every upload strategy stores the same bytes the same way.

use ferry::{storage::StoredFile, upload::Strategy};
use rstest_reuse::apply;

use crate::{
    each_upload,
    helpers::{file_limit, pattern, sha256_hex, spawn_app},
};

#[apply(each_upload)]
async fn every_strategy_stores_every_size_up_to_its_limit_byte_for_byte(strategy: Strategy) {
    let app = spawn_app().await;
    let limit = file_limit(strategy) as usize;
    for size in [0, 1, 65_537, 256 * 1024, limit] {
        let bytes = pattern(size);
        let res = app.upload(strategy, &bytes).await;
        assert_eq!(res.status(), 201, "{strategy:?} size {size}");
        let location = res.headers()["location"].to_str().unwrap().to_owned();
        let stored: StoredFile = res.json().await.unwrap();

        assert_eq!(location, format!("/files/{}", stored.id));
        assert_eq!(stored.size, size as u64, "{strategy:?}");
        assert_eq!(stored.sha256, sha256_hex(&bytes), "{strategy:?} size {size}");
        assert_eq!(stored.strategy, strategy.name());
        assert_eq!(stored.filename, "data.bin");
        let on_disk = app.stored_bytes(stored.id);
        assert!(on_disk == bytes, "{strategy:?} size {size}: stored bytes differ");
        let url = app.url(&format!("/files/{}", stored.id));
        let meta: StoredFile = app.client.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(meta, stored, "the index gives back the row as it was committed");
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert_eq!(app.stored_names().len(), 5);
}

#[apply(each_upload)]
async fn one_byte_over_the_limit_is_refused_and_nothing_is_kept(strategy: Strategy) {
    let app = spawn_app().await;
    let limit = file_limit(strategy);
    let res = app.upload(strategy, &pattern(limit as usize + 1)).await;
    assert_eq!(res.status(), 413, "{strategy:?}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
    assert!(body["message"].as_str().unwrap().contains(&limit.to_string()), "{strategy:?}: {body}");
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert!(app.stored_names().is_empty());
}

#[apply(each_upload)]
async fn a_matching_checksum_header_is_accepted_by_every_strategy(strategy: Strategy) {
    let app = spawn_app().await;
    let bytes = pattern(70_000);
    let res = app
        .upload_request(strategy, bytes.clone(), "a.bin")
        .header("x-checksum-sha256", sha256_hex(&bytes).to_uppercase())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{strategy:?}");
}

#[apply(each_upload)]
async fn a_wrong_checksum_stores_nothing(strategy: Strategy) {
    let app = spawn_app().await;
    let bytes = pattern(70_000);
    let res = app
        .upload_request(strategy, bytes.clone(), "a.bin")
        .header("x-checksum-sha256", sha256_hex(b"something else"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "{strategy:?}");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "digest_mismatch", "{strategy:?}");
    assert!(body["message"].as_str().unwrap().contains(&sha256_hex(&bytes)));
    assert!(app.stored_names().is_empty());
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_malformed_checksum_header_is_a_bad_request() {
    let app = spawn_app().await;
    let res = app.upload_request(Strategy::StreamDiskWrite, vec![1], "a").header("x-checksum-sha256", "abc").send();
    let res = res.await.unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["error"], "invalid_checksum");
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn hostile_filenames_are_stored_under_the_id_with_a_sanitised_name() {
    let app = spawn_app().await;
    let cases = [
        ("../../x", "x"),
        ("/etc/passwd", "passwd"),
        ("..", "upload.bin"),
        ("", "upload.bin"),
        ("..\\..\\win.ini", "win.ini"),
        ("evil\u{202E}gpj.exe", "evilgpj.exe"),
    ];
    for strategy in Strategy::ALL {
        for (raw, expected) in cases {
            let res = app.upload_request(strategy, b"x".to_vec(), raw).send().await.unwrap();
            assert_eq!(res.status(), 201, "{strategy:?} {raw:?}");
            let stored: StoredFile = res.json().await.unwrap();
            assert_eq!(stored.filename, expected, "{strategy:?} {raw:?}");
        }
    }
    for name in app.stored_names() {
        assert!(name.parse::<ferry::storage::FileId>().is_ok(), "unexpected file {name}");
    }
    assert!(!app.data_dir.join("x").exists() && !app.data_dir.join("files/x").exists());
}

/// Raw CR/LF cannot reach a multipart part header intact (it would end the header), so it is tested where a
/// client can send it: in the query and in JSON.
#[tokio::test]
async fn line_breaks_in_names_are_removed() {
    let app = spawn_app().await;
    for strategy in
        [Strategy::StreamMemoryWrite, Strategy::StreamDiskWrite, Strategy::StreamAsyncWrite, Strategy::JsonBase64]
    {
        let res = app.upload_request(strategy, b"x".to_vec(), "a\r\nSet-Cookie: y\0").send().await.unwrap();
        assert_eq!(res.status(), 201, "{strategy:?}");
        assert_eq!(res.json::<StoredFile>().await.unwrap().filename, "aSet-Cookie: y", "{strategy:?}");
    }
}

#[tokio::test]
async fn a_raw_upload_takes_its_name_from_content_disposition_without_a_query() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url(Strategy::StreamDiskWrite.path()))
        .header(
            "content-disposition",
            "attachment; filename=\"fallback.txt\"; filename*=UTF-8''%D1%84%D0%B0%D0%B9%D0%BB.txt",
        )
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let stored: StoredFile = res.json().await.unwrap();
    assert_eq!(stored.filename, "файл.txt");
    assert_eq!(stored.content_type, "text/plain");

    let res = app.client.post(app.url(Strategy::StreamDiskWrite.path())).body("x").send().await.unwrap();
    assert_eq!(res.json::<StoredFile>().await.unwrap().filename, "upload.bin");
}

#[tokio::test]
async fn a_raw_upload_without_a_useful_content_type_gets_one_from_its_filename() {
    let app = spawn_app().await;
    let url = |name: &str| format!("{}?filename={name}", app.url(Strategy::StreamAsyncWrite.path()));
    let cases = [
        // what `curl --data-binary @photo.jpg` sends
        (Some("application/x-www-form-urlencoded"), "photo.jpg", "image/jpeg"),
        (Some("application/octet-stream"), "notes.txt", "text/plain"),
        (None, "report.pdf", "application/pdf"),
        (None, "no-extension", "application/octet-stream"),
        // a type the client chose is kept
        (Some("text/csv"), "table.jpg", "text/csv"),
    ];
    for (sent, name, recorded) in cases {
        let mut req = app.client.post(url(name)).body("bytes");
        if let Some(sent) = sent {
            req = req.header("content-type", sent);
        }
        let stored: StoredFile = req.send().await.unwrap().json().await.unwrap();
        assert_eq!(stored.content_type, recorded, "{sent:?} {name}");
    }
}

#[tokio::test]
async fn a_multipart_body_sent_to_a_raw_endpoint_is_stored_verbatim_with_a_warning() {
    let app = spawn_app().await;
    let form = crate::helpers::form(&[(crate::helpers::FILE_HEADER, b"inside")]);
    let res = app.multipart_request(Strategy::StreamDiskWrite, form.clone()).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["size"], form.len(), "the envelope is part of the stored bytes");
    assert_eq!(body["sha256"], sha256_hex(&form));
    let warning = body["warning"].as_str().unwrap();
    assert!(warning.contains(Strategy::SingleStream.path()), "{warning}");

    let plain: serde_json::Value = app.upload(Strategy::StreamDiskWrite, b"x").await.json().await.unwrap();
    assert!(plain.get("warning").is_none(), "{plain}");
}
