//! Access control: every operation against every kind of credential, revocation while running, refusals
//! before the body, signed links on every download strategy, CORS, and logs that never hold a secret.

use std::time::{Duration, SystemTime};

use ferry::{
    auth::{Scope, create_token, revoke_token},
    config::Limits,
    download::Reader,
    upload::Strategy,
};
use reqwest::{Method, StatusCode};
use rstest_reuse::apply;

use crate::{
    each_download, each_upload,
    helpers::{ChildServer, TestApp, content_type_for, eventually, request_head, spawn_app_with},
};

/// A token no server made.
const UNKNOWN: &str = "ferry_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The tokens a secured test app accepts: one with every scope, and for each scope one with all the others.
struct Tokens {
    all: String,
    without: Vec<(Scope, String)>,
}

impl Tokens {
    fn without(&self, scope: Scope) -> &str {
        &self.without.iter().find(|(s, _)| *s == scope).unwrap().1
    }
}

fn make_tokens(path: &std::path::Path) -> Tokens {
    let all = create_token(path, "all", &Scope::ALL).unwrap();
    let without = Scope::ALL
        .into_iter()
        .map(|scope| {
            let others: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != scope).collect();
            (scope, create_token(path, &format!("no-{}", scope.name()), &others).unwrap())
        })
        .collect();
    Tokens { all, without }
}

async fn secured(tune: impl FnOnce(&mut ferry::config::Config)) -> (TestApp, Tokens) {
    let mut tokens = None;
    let app = spawn_app_with(|config| {
        tokens = Some(make_tokens(&config.tokens_path()));
        tune(config);
    })
    .await;
    (app, tokens.unwrap())
}

/// One operation of the API, as the endpoint tables and the file operations make them.
#[derive(Debug, Clone)]
enum Op {
    Upload(Strategy),
    Download(Reader, bool),
    List,
    Metadata,
    Link,
    Delete,
    /// A tus request: discovery, creation, and HEAD, PATCH and termination of an upload.
    Tus(Method),
}

/// The tus operations, each needing `upload`.
const TUS: [Method; 5] = [Method::OPTIONS, Method::POST, Method::HEAD, Method::PATCH, Method::DELETE];

/// Every protected operation and the scope it needs, from the tables: every upload needs `upload`, every
/// download (GET and HEAD) and file read `read`, delete `delete`.
fn operations() -> Vec<(Op, Scope)> {
    let uploads = Strategy::ALL.into_iter().map(|s| (Op::Upload(s), Scope::Upload));
    let downloads = Reader::ALL
        .into_iter()
        .flat_map(|r| [(Op::Download(r, false), Scope::Read), (Op::Download(r, true), Scope::Read)]);
    let files =
        [(Op::List, Scope::Read), (Op::Metadata, Scope::Read), (Op::Link, Scope::Read), (Op::Delete, Scope::Delete)];
    let tus = TUS.into_iter().map(|method| (Op::Tus(method), Scope::Upload));
    uploads.chain(downloads).chain(files).chain(tus).collect()
}

impl Op {
    fn request(&self, app: &TestApp, id: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        let request = match *self {
            Op::Upload(strategy) => app.upload_request(strategy, b"hello".to_vec(), "a.txt"),
            Op::Download(reader, head) => {
                app.client.request(if head { Method::HEAD } else { Method::GET }, app.url(&reader.path(id)))
            }
            Op::List => app.client.get(app.url("/files")),
            Op::Metadata => app.client.get(app.url(&format!("/files/{id}"))),
            Op::Link => app.client.post(app.url(&format!("/files/{id}/links"))),
            Op::Delete => app.client.delete(app.url(&format!("/files/{id}"))),
            Op::Tus(ref method) => {
                let path = if [Method::OPTIONS, Method::POST].contains(method) {
                    "/files/tus/".to_owned()
                } else {
                    format!("/files/tus/{id}")
                };
                let request = app.client.request(method.clone(), app.url(&path)).header("tus-resumable", "1.0.0");
                match *method {
                    Method::POST => request.header("upload-length", "5"),
                    Method::PATCH => request
                        .header("upload-offset", "0")
                        .header("content-type", "application/offset+octet-stream")
                        .body("hello"),
                    _ => request,
                }
            }
        };
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

async fn store(app: &TestApp, token: &str) -> String {
    let res = app.upload_request(Strategy::StreamAsyncWrite, b"0123456789".to_vec(), "f.txt").bearer_auth(token);
    let res = res.send().await.unwrap();
    assert_eq!(res.status(), 201);
    res.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

impl Op {
    /// HEAD answers carry no body to read an error code from.
    fn is_head(&self) -> bool {
        matches!(self, Op::Download(_, true)) || matches!(self, Op::Tus(method) if method == Method::HEAD)
    }
}

/// A new tus upload of 5 bytes; its id.
async fn tus_upload(app: &TestApp, token: &str) -> String {
    let res = app.client.post(app.url("/files/tus/")).bearer_auth(token).header("tus-resumable", "1.0.0");
    let res = res.header("upload-length", "5").send().await.unwrap();
    assert_eq!(res.status(), 201);
    res.headers()["location"].to_str().unwrap().rsplit('/').next().unwrap().to_owned()
}

async fn error_code(res: reqwest::Response) -> String {
    let body: serde_json::Value = res.json().await.unwrap_or_default();
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_operations_tested_are_every_protected_operation_of_the_spec() {
    let spec = serde_json::to_value(ferry::openapi::spec(&Limits::default())).unwrap();
    let mut protected: Vec<String> = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        let ops = item
            .as_object()
            .unwrap()
            .iter()
            .filter(|(m, _)| ["get", "head", "post", "delete", "patch", "options"].contains(&m.as_str()));
        for (method, op) in ops {
            if op.get("security").is_some() {
                protected.push(format!("{} {path}", method.to_uppercase()));
            } else {
                assert!(path == "/health" || path.starts_with("/health/"), "{method} {path} is open");
            }
        }
    }
    assert_eq!(protected.len(), operations().len(), "{protected:?}");
}

#[tokio::test]
async fn every_operation_needs_a_known_token_with_its_scope() {
    let (app, tokens) = secured(|_| {}).await;
    let id = store(&app, &tokens.all).await;
    for (op, scope) in operations() {
        let target = match &op {
            Op::Delete => store(&app, &tokens.all).await,
            Op::Tus(method) if ![Method::OPTIONS, Method::POST].contains(method) => tus_upload(&app, &tokens.all).await,
            _ => id.clone(),
        };
        let res = op.request(&app, &target, None).send().await.unwrap();
        assert_eq!(res.status(), 401, "{op:?} without a token");
        assert!(res.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "{op:?}");
        if !op.is_head() {
            assert_eq!(error_code(res).await, "unauthorized", "{op:?}");
        }
        let res = op.request(&app, &target, Some(UNKNOWN)).send().await.unwrap();
        assert_eq!(res.status(), 401, "{op:?} with an unknown token");
        let res = op.request(&app, &target, Some(tokens.without(scope))).send().await.unwrap();
        assert_eq!(res.status(), 403, "{op:?} with a token that lacks {scope:?}");
        if !op.is_head() {
            assert_eq!(error_code(res).await, "forbidden", "{op:?}");
        }
        let res = op.request(&app, &target, Some(&tokens.all)).send().await.unwrap();
        assert!(res.status().is_success(), "{op:?} with the scope: {}", res.status());
    }
}

#[tokio::test]
async fn health_docs_and_the_spec_stay_open() {
    let (app, _tokens) = secured(|_| {}).await;
    for path in ["/health", "/docs/", "/api-docs/openapi.json"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn auth_token_without_a_tokens_file_admits_no_one() {
    let app = spawn_app_with(|config| config.auth = ferry::config::AuthMode::Token).await;
    let res = app.client.get(app.url("/files")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = app.client.get(app.url("/files")).bearer_auth(UNKNOWN).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn tokens_are_revoked_and_created_without_a_restart() {
    let (app, tokens) = secured(|_| {}).await;
    let path = app.data_dir.join("tokens");
    let list = |token: String| {
        let request = app.client.get(app.url("/files")).bearer_auth(token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(list(tokens.all.clone()).await, 200);
    assert!(revoke_token(&path, "all").unwrap());
    let mut revoked = false;
    for _ in 0..50 {
        if list(tokens.all.clone()).await == StatusCode::UNAUTHORIZED {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(revoked, "the revoked token still works after 2.5 s");
    assert_eq!(list(tokens.without(Scope::Delete).to_owned()).await, 200, "the other tokens still work");
    let fresh = create_token(&path, "fresh", &[Scope::Read]).unwrap();
    let mut admitted = false;
    for _ in 0..50 {
        if list(fresh.clone()).await == StatusCode::OK {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "a token created while running is not accepted after 2.5 s");
}

/// The head of an upload announcing a body that is never sent: the answer must come at once, so nothing
/// waited for the body.
#[apply(each_upload)]
async fn an_upload_refused_for_access_never_reads_its_body(strategy: Strategy) {
    let (app, tokens) = secured(|_| {}).await;
    let cases = [
        ("", "401"),
        ("Authorization: Bearer ferry_nope\r\n", "401"),
        (&*format!("Authorization: Bearer {}\r\n", tokens.without(Scope::Upload)), "403"),
    ];
    for (auth, status) in cases {
        for expect in ["", "Expect: 100-continue\r\n"] {
            let head = request_head(
                strategy,
                content_type_for(strategy),
                &format!("{auth}{expect}Content-Length: 100000\r\n"),
            );
            let started = std::time::Instant::now();
            let answer = app.exchange(head.as_bytes()).await;
            assert!(answer.starts_with(&format!("HTTP/1.1 {status}")), "{strategy:?} {auth:?} {expect:?}: {answer}");
            assert!(!answer.contains("100 Continue"), "{answer}");
            assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer}");
            assert!(started.elapsed() < Duration::from_secs(2), "the answer waited for the body");
        }
    }
    assert!(app.stored_names().is_empty());
    assert!(app.tmp_settles_empty().await.is_empty());
}

async fn link(app: &TestApp, token: &str, id: &str, expires_in: &str) -> serde_json::Value {
    let res = app
        .client
        .post(app.url(&format!("/files/{id}/links")))
        .query(&[("expires_in", expires_in)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn query_of(link: &serde_json::Value) -> String {
    link["url"].as_str().unwrap().split_once('?').unwrap().1.to_owned()
}

#[apply(each_download)]
async fn a_signed_link_downloads_without_a_token_until_it_expires_and_only_as_signed(reader: Reader) {
    let (app, tokens) = secured(|_| {}).await;
    let read = tokens.without(Scope::Upload).to_owned();
    let id = store(&app, &tokens.all).await;
    let other = store(&app, &tokens.all).await;
    let signed = link(&app, &read, &id, "1h").await;
    assert!(signed["url"].as_str().unwrap().starts_with(&app.url("/files/download/")), "{signed}");
    let query = query_of(&signed);
    let get = |id: &str, query: &str| app.client.get(app.url(&format!("{}?{query}", reader.path(id)))).send();

    let res = get(&id, &query).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap(), &b"0123456789"[..]);
    let head = app.client.head(app.url(&format!("{}?{query}", reader.path(&id)))).send().await.unwrap();
    assert_eq!(head.status(), 200);

    // every field altered
    assert_eq!(get(&other, &query).await.unwrap().status(), 403, "another id");
    let (expires, signature) = query.split_once('&').unwrap();
    let expires: u64 = expires.trim_start_matches("expires=").parse().unwrap();
    let later = format!("expires={}&{signature}", expires + 1);
    assert_eq!(get(&id, &later).await.unwrap().status(), 403, "a later expiry");
    let mut flipped = query.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let res = get(&id, std::str::from_utf8(&flipped).unwrap()).await.unwrap();
    assert_eq!(res.status(), 403, "another signature");
    assert_eq!(error_code(res).await, "forbidden");
    assert_eq!(get(&id, &format!("expires={expires}")).await.unwrap().status(), 401, "no signature: no link");

    // a link is for downloads only
    let meta = app.client.get(app.url(&format!("/files/{id}?{query}"))).send().await.unwrap();
    assert_eq!(meta.status(), 401);
    let delete = app.client.delete(app.url(&format!("/files/{id}?{query}"))).send().await.unwrap();
    assert_eq!(delete.status(), 401);

    // a late use
    let short = query_of(&link(&app, &read, &id, "1s").await);
    assert_eq!(get(&id, &short).await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = get(&id, &short).await.unwrap();
    assert_eq!(res.status(), 403, "an expired link");
    assert_eq!(error_code(res).await, "forbidden");
}

#[tokio::test]
async fn a_link_lives_at_most_max_link_ttl() {
    let (app, tokens) = secured(|config| config.max_link_ttl = Duration::from_secs(600)).await;
    let id = store(&app, &tokens.all).await;
    let signed = link(&app, &tokens.all, &id, "30d").await;
    let expires_at = humantime::parse_rfc3339(signed["expires_at"].as_str().unwrap()).unwrap();
    assert!(expires_at <= SystemTime::now() + Duration::from_secs(601), "{signed}");
    let res = app
        .client
        .post(app.url(&format!("/files/{id}/links?expires_in=1y")))
        .bearer_auth(&tokens.all)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}

#[tokio::test]
async fn a_new_link_secret_invalidates_every_link() {
    let data = tempfile::tempdir().unwrap();
    let tokens = make_tokens(&data.path().join("tokens"));
    let (id, query) = {
        let server = ChildServer::start(data.path(), &[], &[]);
        let app = TestApp::for_child(&server, data.path());
        let id = store(&app, &tokens.all).await;
        let query = query_of(&link(&app, &tokens.all, &id, "1h").await);
        assert_eq!(app.download(Reader::Cached, &format!("{id}?{query}")).send().await.unwrap().status(), 200);
        (id, query)
    };
    // the secret made in the data directory survives a restart; another one does not accept the link
    let server = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&server, data.path());
    assert_eq!(app.download(Reader::Cached, &format!("{id}?{query}")).send().await.unwrap().status(), 200);
    drop(server);
    let server = ChildServer::start(data.path(), &["--link-secret", "rotated"], &[]);
    let app = TestApp::for_child(&server, data.path());
    assert_eq!(app.download(Reader::Cached, &format!("{id}?{query}")).send().await.unwrap().status(), 403);
}

#[tokio::test]
async fn no_token_or_signature_is_ever_logged() {
    let data = tempfile::tempdir().unwrap();
    let tokens = make_tokens(&data.path().join("tokens"));
    let server = ChildServer::start(data.path(), &[], &[]);
    let app = TestApp::for_child(&server, data.path());
    let id = store(&app, &tokens.all).await;
    let signed = link(&app, &tokens.all, &id, "1h").await;
    let query = query_of(&signed);
    let signature = query.split_once("signature=").unwrap().1.to_owned();
    for token in [UNKNOWN, tokens.without(Scope::Read), &tokens.all] {
        let _ = app.client.get(app.url(&format!("/files/{id}"))).bearer_auth(token).send().await.unwrap();
    }
    let _ = app.download(Reader::SyncRead, &format!("{id}?{query}")).send().await.unwrap();
    assert!(eventually(|| server.log().iter().filter(|line| line.contains("token=all")).count() >= 3).await);
    assert!(eventually(|| server.log().iter().any(|line| line.contains("signature=…"))).await);
    let mut secrets: Vec<&str> = vec![UNKNOWN, &tokens.all, &signature];
    secrets.extend(tokens.without.iter().map(|(_, token)| token.as_str()));
    for line in server.log() {
        for secret in &secrets {
            assert!(!line.contains(secret) && !line.contains(&secret[6..]), "a secret in the log: {line}");
        }
    }
}

#[tokio::test]
async fn cors_answers_preflights_for_the_allowed_origins_only() {
    const ORIGIN: &str = "http://127.0.0.1:9";
    let (app, tokens) = secured(|config| config.cors_origin = vec![ORIGIN.to_owned()]).await;
    let id = store(&app, &tokens.all).await;
    let preflights = [
        (Strategy::SingleStream.path().to_owned(), "POST"),
        (Reader::SyncRead.path(&id), "GET"),
        (format!("/files/{id}"), "DELETE"),
    ];
    for (path, method) in preflights {
        let preflight = |origin: &'static str| {
            app.client
                .request(Method::OPTIONS, app.url(&path))
                .header("origin", origin)
                .header("access-control-request-method", method)
                .header("access-control-request-headers", "authorization,content-type,x-checksum-sha256")
                .send()
        };
        let res = preflight(ORIGIN).await.unwrap();
        assert_eq!(res.status(), 200, "{method} {path}");
        assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN);
        assert!(res.headers()["access-control-allow-methods"].to_str().unwrap().contains(method));
        let allowed = res.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
        for header in ["authorization", "content-type", "x-checksum-sha256"] {
            assert!(allowed.contains(header), "{allowed}");
        }
        let res = preflight("http://127.0.0.1:10").await.unwrap();
        assert!(res.headers().get("access-control-allow-origin").is_none(), "another origin");
    }
    // a refusal is readable by the page too
    let res = app.client.get(app.url("/files")).header("origin", ORIGIN).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["access-control-allow-origin"], ORIGIN);
}

#[tokio::test]
async fn without_cors_origins_no_cors_headers_are_sent() {
    let app = spawn_app_with(|_| {}).await;
    let res = app.client.get(app.url("/files")).header("origin", "http://127.0.0.1:9").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(!res.headers().keys().any(|name| name.as_str().starts_with("access-control-")));
}
