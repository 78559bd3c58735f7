//! Property-based fuzzing through ferry's real handlers: multipart bodies cut, corrupted and padded at random
//! places, whose answers must be documented JSON codes with storage staying consistent (`PROPTEST_CASES` sets how
//! many bodies, default 256); and random sequences of uploads, deletes and paged listings, checked against a
//! model of what is stored.

use ferry::{
    storage::{FileId, StoredFile},
    upload::Strategy as Upload,
};
use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};

use crate::helpers::{MULTIPART, TestApp, form, sha256_hex, spawn_app};

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Repeat(usize, usize),
}

fn body(content: &[u8], extra_part: bool) -> Vec<u8> {
    let note = ("Content-Disposition: form-data; name=\"note\"", &b"hello"[..]);
    let file = (
        "Content-Disposition: form-data; name=\"file\"; filename=\"f.bin\"\r\nContent-Type: application/octet-stream",
        content,
    );
    if extra_part { form(&[note, file]) } else { form(&[file]) }
}

fn mutate(mut body: Vec<u8>, mutation: &Mutation) -> Vec<u8> {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match mutation {
        Mutation::Truncate(i) => body.truncate(at(*i, body.len())),
        Mutation::Flip(i, x) => {
            let i = at(*i, body.len());
            if let Some(b) = body.get_mut(i) {
                *b ^= x | 1;
            }
        }
        Mutation::Insert(i, bytes) => {
            let i = at(*i, body.len() + 1);
            body.splice(i..i, bytes.iter().copied());
        }
        Mutation::Repeat(i, n) => {
            let i = at(*i, body.len());
            let piece: Vec<u8> = body[i..].iter().take(*n).copied().collect();
            body.splice(i..i, piece);
        }
    }
    body
}

fn mutation() -> impl Strategy<Value = Option<Mutation>> {
    prop_oneof![
        1 => Just(None),
        3 => (any::<usize>()).prop_map(|i| Some(Mutation::Truncate(i))),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(i, x)| Some(Mutation::Flip(i, x))),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..40)).prop_map(|(i, b)| Some(Mutation::Insert(i, b))),
        1 => (any::<usize>(), 1usize..200).prop_map(|(i, n)| Some(Mutation::Repeat(i, n))),
    ]
}

async fn check(app: &TestApp, strategy: Upload, sent: Vec<u8>, content: &[u8], intact: bool) {
    let res = app.multipart_request(strategy, sent).send().await.expect("an answer");
    let status = res.status().as_u16();
    let json: serde_json::Value = res.json().await.expect("a JSON answer");
    assert!(matches!(status, 201 | 400 | 413), "{strategy:?}: {status} {json}");
    if status == 201 {
        let stored: StoredFile = serde_json::from_value(json).unwrap();
        let on_disk = app.stored_bytes(stored.id);
        assert_eq!(sha256_hex(&on_disk), stored.sha256);
        if intact {
            assert!(on_disk == content, "{strategy:?}: an intact body was stored differently");
        }
    } else {
        assert!(!intact, "{strategy:?}: an intact body was refused: {status} {json}");
        assert!(json["error"].is_string());
    }
}

#[test]
fn mutated_multipart_bodies_get_documented_answers_and_storage_stays_consistent() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app());
    let cases = (
        prop::sample::select(MULTIPART.to_vec()),
        prop::collection::vec(any::<u8>(), 0..3000),
        any::<bool>(),
        mutation(),
    );
    TestRunner::default()
        .run(&cases, |(strategy, content, extra_part, mutation)| {
            let valid = body(&content, extra_part);
            let sent = mutation.as_ref().map_or_else(|| valid.clone(), |m| mutate(valid.clone(), m));
            rt.block_on(check(&app, strategy, sent.clone(), &content, sent == valid));
            Ok(())
        })
        .unwrap();
    assert_eq!(rt.block_on(app.tmp_settles_empty()), Vec::<String>::new());
}

/// One step of a sequence against the model.
#[derive(Debug, Clone)]
enum Step {
    Upload(usize),
    /// Deletes the model's n-th file (modulo its length), or an unknown id when it holds none.
    Delete(usize),
    /// Lists every page at this page size.
    List(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0usize..3000).prop_map(Step::Upload),
        2 => any::<usize>().prop_map(Step::Delete),
        2 => (1usize..5).prop_map(Step::List),
    ]
}

/// Every page of `GET /files?limit=`, following `Link: rel="next"`; checks that only full pages carry one.
async fn walk(app: &TestApp, limit: usize) -> Vec<FileId> {
    let mut ids = Vec::new();
    let mut path = format!("/files?limit={limit}");
    loop {
        let res = app.client.get(app.url(&path)).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let next = res.headers().get("link").map(|link| link.to_str().unwrap().to_owned());
        let page: Vec<StoredFile> = res.json().await.unwrap();
        assert!(page.len() <= limit);
        assert_eq!(next.is_some(), page.len() == limit, "a Link exactly when the page is full");
        ids.extend(page.iter().map(|file| file.id));
        match next {
            Some(link) => path = link.trim_start_matches('<').split('>').next().unwrap().to_owned(),
            None => return ids,
        }
    }
}

async fn run_steps(app: &TestApp, steps: &[Step]) {
    // oldest first, as the model of what the server holds; it starts from what earlier cases left
    let mut model: Vec<FileId> = walk(app, 1000).await.into_iter().rev().collect();
    for step in steps {
        match *step {
            Step::Upload(size) => model.push(app.store(&crate::helpers::pattern(size)).await.id),
            Step::Delete(n) => {
                let (id, expected) =
                    if model.is_empty() { (FileId::new(), 404) } else { (model.remove(n % model.len()), 204) };
                let url = app.url(&format!("/files/{id}"));
                assert_eq!(app.client.delete(&url).send().await.unwrap().status(), expected, "{step:?}");
                assert_eq!(app.client.get(&url).send().await.unwrap().status(), 404, "deleted: {step:?}");
            }
            Step::List(limit) => {
                let newest_first: Vec<FileId> = model.iter().rev().copied().collect();
                assert_eq!(walk(app, limit).await, newest_first, "{step:?}");
            }
        }
    }
    let newest_first: Vec<FileId> = model.iter().rev().copied().collect();
    assert_eq!(walk(app, 1000).await, newest_first);
}

#[test]
fn uploads_deletes_and_paged_listings_agree_with_a_model_of_what_is_stored() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app());
    let config = Config { cases: 48, ..Config::default() };
    TestRunner::new(config)
        .run(&prop::collection::vec(step(), 1..24), |steps| {
            rt.block_on(run_steps(&app, &steps));
            Ok(())
        })
        .unwrap();
}
