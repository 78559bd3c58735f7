//! Every upload strategy stores the same bytes the same way.

use ferry::{storage::StoredFile, upload::Strategy};

use crate::helpers::{file_limit, pattern, sha256_hex, spawn_app};

#[tokio::test]
async fn every_strategy_stores_every_size_up_to_its_limit_byte_for_byte() {
    let app = spawn_app().await;
    for strategy in Strategy::ALL {
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
            let on_disk = std::fs::read(app.files_dir().join(stored.id.to_string())).unwrap();
            assert!(on_disk == bytes, "{strategy:?} size {size}: stored bytes differ");
            let meta: StoredFile =
                serde_json::from_slice(&std::fs::read(app.files_dir().join(format!("{}.json", stored.id))).unwrap())
                    .unwrap();
            assert_eq!(meta, stored);
        }
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert_eq!(app.stored_names().len(), Strategy::ALL.len() * 5 * 2);
}

#[tokio::test]
async fn one_byte_over_the_limit_is_refused_and_nothing_is_kept() {
    let app = spawn_app().await;
    for strategy in Strategy::ALL {
        let limit = file_limit(strategy);
        let res = app.upload(strategy, &pattern(limit as usize + 1)).await;
        assert_eq!(res.status(), 413, "{strategy:?}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["error"], "payload_too_large");
        assert!(body["message"].as_str().unwrap().contains(&limit.to_string()), "{strategy:?}: {body}");
    }
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
    assert!(app.stored_names().is_empty());
}

#[tokio::test]
async fn a_matching_checksum_header_is_accepted_by_every_strategy() {
    let app = spawn_app().await;
    let bytes = pattern(70_000);
    for strategy in Strategy::ALL {
        let res = app
            .upload_request(strategy, bytes.clone(), "a.bin")
            .header("x-checksum-sha256", sha256_hex(&bytes).to_uppercase())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{strategy:?}");
    }
}

#[tokio::test]
async fn a_wrong_checksum_stores_nothing() {
    let app = spawn_app().await;
    let bytes = pattern(70_000);
    for strategy in Strategy::ALL {
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
    }
    assert!(app.stored_names().is_empty());
    assert_eq!(app.tmp_settles_empty().await, Vec::<String>::new());
}

#[tokio::test]
async fn a_malformed_checksum_header_is_a_bad_request() {
    let app = spawn_app().await;
    let res = app.upload_request(Strategy::StreamDiskWrite, vec![1], "a").header("x-checksum-sha256", "abc").send();
    let res = res.await.unwrap();
    assert_eq!(res.status(), 400);
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
        let id = name.strip_suffix(".json").unwrap_or(&name);
        assert!(id.parse::<ferry::storage::FileId>().is_ok(), "unexpected file {name}");
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
