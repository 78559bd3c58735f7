//! The OpenAPI document: committed, served, complete.

use ferry::{
    download::Reader,
    upload::{BodyKind, Read, Strategy},
};
use serde_json::Value;

use crate::helpers::{self, spawn_app};

async fn served_spec() -> Value {
    served_spec_of(spawn_app().await).await
}

async fn served_spec_of(app: helpers::TestApp) -> Value {
    let res = app.client.get(app.url("/api-docs/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn the_committed_spec_is_the_served_spec() {
    let committed: Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    // the committed document describes the default limits
    let defaults = ferry::config::Config::default();
    let app = helpers::spawn_app_with(|config| {
        config.max_upload_bytes = defaults.max_upload_bytes;
        config.max_buffered_bytes = defaults.max_buffered_bytes;
    })
    .await;
    assert!(
        served_spec_of(app).await == committed,
        "openapi/openapi.json is stale: regenerate it with `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[tokio::test]
async fn every_endpoint_is_documented_with_its_tag() {
    let spec = served_spec().await;
    let paths = &spec["paths"];
    for (order, strategy) in Strategy::ALL.into_iter().enumerate() {
        let op = &paths[strategy.path()]["post"];
        assert_eq!(op["tags"][0], "upload", "{strategy:?}");
        assert_eq!(op["x-ferry"]["strategy"], strategy.name(), "{strategy:?}");
        assert_eq!(op["x-ferry"]["order"], order, "{strategy:?}");
        assert!(op["description"].as_str().is_some_and(|d| d.len() > 80), "{strategy:?} explains itself");
        for status in ["201", "400", "408", "413", "507"] {
            assert!(op["responses"][status].is_object(), "{strategy:?} documents {status}");
        }
        assert!(op["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "X-Checksum-Sha256"));
    }
    for (order, reader) in Reader::ALL.into_iter().enumerate() {
        let item = &paths[reader.template()];
        for method in ["get", "head"] {
            assert_eq!(item[method]["tags"][0], "download", "{reader:?} {method}");
            assert_eq!(item[method]["x-ferry"]["strategy"], reader.name(), "{reader:?} {method}");
            assert_eq!(item[method]["x-ferry"]["order"], order, "{reader:?} {method}");
            for status in ["200", "206", "304", "404", "416"] {
                assert!(item[method]["responses"][status].is_object(), "{reader:?} documents {status}");
            }
        }
        assert_ne!(item["get"]["operationId"], item["head"]["operationId"]);
    }
    assert_eq!(paths["/files"]["get"]["tags"][0], "files");
    assert!(paths["/files/{id}"]["get"].is_object() && paths["/files/{id}"]["delete"].is_object());
    assert_eq!(paths["/health"]["get"]["tags"][0], "health");
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn each_upload_documents_its_own_limit_and_the_errors_its_body_can_cause() {
    let spec = served_spec().await;
    for strategy in Strategy::ALL {
        let responses = &spec["paths"][strategy.path()]["post"]["responses"];
        let example = |status: &str| responses[status]["content"]["application/json"]["example"].clone();
        let limit = helpers::file_limit(strategy);
        let too_large = example("413")["message"].as_str().unwrap().to_owned();
        assert!(too_large.contains(&format!("limit of {limit} bytes")), "{strategy:?}: {too_large}");
        assert_eq!(example("201")["strategy"], strategy.name(), "{strategy:?}");
        let raw = strategy.read() == Read::Raw;
        assert_eq!(responses["415"].is_object(), !raw, "{strategy:?}: a raw endpoint takes any body");
        let bad = responses["400"]["description"].as_str().unwrap();
        assert_eq!(bad.contains("missing_file"), strategy.read().body() == BodyKind::Multipart, "{strategy:?}: {bad}");
        assert_eq!(bad.contains("invalid_base64"), strategy == Strategy::JsonBase64, "{strategy:?}: {bad}");
        let links = responses["201"]["links"].as_object().unwrap();
        assert_eq!(links.len(), Reader::ALL.len() + 1, "{strategy:?}: each download and the metadata");
    }
}

#[tokio::test]
async fn uploads_are_documented_so_swagger_ui_offers_a_file_picker() {
    let spec = served_spec().await;
    let schemas = &spec["components"]["schemas"];
    let resolve = |schema: &Value| -> Value {
        match schema["$ref"].as_str() {
            Some(r) => schemas[r.rsplit('/').next().unwrap()].clone(),
            None => schema.clone(),
        }
    };
    let raw = &spec["paths"][Strategy::StreamDiskWrite.path()]["post"]["requestBody"]["content"];
    let raw = resolve(&raw["application/octet-stream"]["schema"]);
    assert_eq!((raw["type"].as_str(), raw["format"].as_str()), (Some("string"), Some("binary")));

    let form = &spec["paths"][Strategy::SingleStream.path()]["post"]["requestBody"]["content"];
    let form = resolve(&form["multipart/form-data"]["schema"]);
    assert_eq!(form["properties"]["file"]["format"], "binary");

    let json = &spec["paths"][Strategy::JsonBase64.path()]["post"]["requestBody"]["content"];
    let json = resolve(&json["application/json"]["schema"]);
    assert_eq!(json["properties"]["data"]["contentEncoding"], "base64");
    assert!(json["example"]["data"].is_string());
}

#[tokio::test]
async fn every_answer_of_every_operation_documents_the_request_id_it_carries() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/api-docs/openapi.json")).send().await.unwrap();
    let spec: Value = res.json().await.unwrap();
    let header = &spec["components"]["headers"]["X-Request-Id"];
    assert_eq!(header["schema"]["type"], "string", "{header}");
    let mut answers = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                let documented = &response["headers"]["X-Request-Id"]["$ref"];
                assert_eq!(documented, "#/components/headers/X-Request-Id", "{method} {path} {status}");
                answers += 1;
            }
        }
    }
    assert!(answers > 100, "only {answers} answers documented");
    // and the served answers do carry it
    let res = app.client.get(app.url("/files")).header("x-request-id", "spec-1").send().await.unwrap();
    assert_eq!(res.headers()["x-request-id"], "spec-1");
}

#[tokio::test]
async fn swagger_ui_is_at_docs() {
    let app = spawn_app().await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let res = client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(res.status(), 308);
    assert_eq!(res.headers()["location"], "/docs/");
    let page = app.client.get(app.url("/docs/")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
}

#[tokio::test]
async fn the_upload_page_is_at_the_root_and_fetches_nothing_from_elsewhere() {
    let app = spawn_app().await;
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let page = res.text().await.unwrap();
    assert!(page.contains("/files/tus/") && page.contains("/docs/"), "it uploads with tus and links the docs");
    for outside in ["src=\"http", "href=\"http", "url(http", "import "] {
        assert!(!page.contains(outside), "the page refers to something outside the server: {outside}");
    }
}
