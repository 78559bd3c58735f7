//! The OpenAPI document: collected once from the handlers by utoipa-actix-web, then completed from the endpoint
//! tables, so that each operation describes its own limits and errors, and carries an `x-ferry` extension that
//! tools (the wrk kit) read instead of keeping their own list of endpoints.

use actix_web::App;
use serde_json::json;
use utoipa::{
    OpenApi,
    openapi::{
        ContentBuilder, HttpMethod, Ref, RefOr, ResponseBuilder,
        extensions::Extensions,
        link::LinkBuilder,
        path::{Operation, PathItem},
        response::Response,
        security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme},
    },
};
use utoipa_actix_web::AppExt;

use crate::{
    auth::Access,
    config::Limits,
    download::Reader,
    error::{AppError, ErrorBody},
    routes,
    schema::Binary,
    tus::TusResumable,
    upload::Strategy,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferry",
        description = "Upload and download files over HTTP. Every strategy of the FastAPI upload/download \
            benchmark is a real endpoint here: same storage contract (server-made ids, sha256, size limits, \
            nothing partial ever visible, durable on 201), different ways of reading and writing the bytes. \
            Each operation says how it reads and writes, what it costs in memory and when to pick it.",
        license(name = "MIT"),
    ),
    tags(
        (name = "upload", description = "Nine ways to receive a file. All answer 201 with the stored file's metadata. \
            On a server run with `--storage s3`, each strategy still reads its body its own way, and every one then \
            streams the bytes into the bucket (a multipart upload of 8 MiB parts, or one PUT for a file that fits \
            one part): the write modes named below (buffered, inline, async, blocking) are those of local disk. \
            `single/spooled` spools to the local disk first, as actix-multipart does."),
        (name = "tus", description = "Resumable uploads (tus 1.0): create, then PATCH the bytes from the offset HEAD reports; \
            the last byte publishes the file like every upload."),
        (name = "download", description = "Five ways to send a file, with identical headers, conditional requests and ranges. \
            On a server run with `--storage s3` there is no local file: every strategy sends the stream of one \
            ranged GET from the bucket (so the two `file` strategies do not use actix-files there), and `cached` \
            keeps whole small files from the bucket in memory as it does from disk."),
        (name = "files", description = "List, inspect and delete stored files; sign download links."),
        (name = "health", description = "Service health."),
    ),
    components(schemas(ErrorBody, Binary, TusResumable))
)]
pub struct ApiDoc;

/// The document for a server with these limits. Built once per server (and by `ferry openapi`).
pub fn spec(limits: &Limits) -> utoipa::openapi::OpenApi {
    // utoipa-actix-web collects operations while routes are registered: this app is never served
    let (_, mut api) = App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(routes::api).split_for_parts();
    name_head_operations(&mut api);
    let links = upload_links(&api);
    for (order, &strategy) in Strategy::ALL.iter().enumerate() {
        let op = operation(&mut api, strategy.path(), HttpMethod::Post);
        describe_upload(op, strategy, order, limits);
        if let Some(RefOr::T(created)) = op.responses.responses.get_mut("201") {
            created.links.extend(links.iter().cloned());
        }
    }
    secure(&mut api);
    request_ids(&mut api);
    for (order, &reader) in Reader::ALL.iter().enumerate() {
        let ext = json!({"kind": "download", "strategy": reader.name(), "streamed": reader.streamed(), "order": order});
        for method in [HttpMethod::Get, HttpMethod::Head] {
            extend(operation(&mut api, reader.template(), method), ext.clone());
        }
    }
    api
}

/// Every operation that needs a token (see [`Access::for_operation`]) requires the bearer scheme with its scope
/// and documents the 401 and 403 answers; Swagger UI's "Authorize" button fills the header in.
fn secure(api: &mut utoipa::openapi::OpenApi) {
    let scheme = Http::builder()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("ferry token")
        .description(Some("A token from `ferry token create`, sent as `Authorization: Bearer <token>`."))
        .build();
    api.components.get_or_insert_with(Default::default).add_security_scheme("bearer", SecurityScheme::Http(scheme));
    let error = |description: &str, err: AppError, code: &str| {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .example(Some(error_example(&err, code)))
            .build();
        RefOr::T(ResponseBuilder::new().description(description).content("application/json", content).build())
    };
    for item in api.paths.paths.values_mut() {
        let ops = [
            ("GET", &mut item.get),
            ("HEAD", &mut item.head),
            ("POST", &mut item.post),
            ("DELETE", &mut item.delete),
            ("PATCH", &mut item.patch),
            ("OPTIONS", &mut item.options),
        ];
        for (method, op) in ops {
            let Some(op) = op.as_mut() else { continue };
            let tag = op.tags.as_ref().and_then(|tags| tags.first()).map_or("", String::as_str);
            let access = Access::for_operation(tag, method);
            let Some(scope) = access.scope() else { continue };
            op.security = Some(vec![SecurityRequirement::new("bearer", [scope.name()])]);
            let responses = &mut op.responses.responses;
            let missing = AppError::Unauthorized("this operation needs `Authorization: Bearer <token>`");
            let why = "No token, or one the server does not know (`unauthorized`); with `WWW-Authenticate: Bearer`";
            responses.insert("401".to_owned(), error(why, missing, "unauthorized"));
            let forbidden = if access == Access::TokenOrLink {
                "The token lacks the `read` scope, or the signed link is altered or expired (`forbidden`)"
            } else {
                "The token lacks the operation's scope (`forbidden`)"
            };
            let lacks = AppError::Forbidden(format!("the token lacks the `{}` scope", scope.name()));
            responses.insert("403".to_owned(), error(forbidden, lacks, "forbidden"));
        }
    }
}

/// Every answer carries the request's id (see `request_id`): the client's `X-Request-Id` when well-formed, else
/// a new one.
fn request_ids(api: &mut utoipa::openapi::OpenApi) {
    let header = utoipa::openapi::HeaderBuilder::new()
        .schema(Some(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::Type::String)))
        .description(Some(
            "The request's id, in every line it logs: the client's `X-Request-Id` when it is 1 to 128 characters \
             of `A-Z a-z 0-9 . _ : -`, else a new UUID v7.",
        ))
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components.headers.insert("X-Request-Id".to_owned(), RefOr::T(header));
    let shared = Ref::new("#/components/headers/X-Request-Id");
    for item in api.paths.paths.values_mut() {
        let ops = [&mut item.get, &mut item.head, &mut item.post, &mut item.delete, &mut item.patch, &mut item.options];
        for op in ops.into_iter().filter_map(Option::as_mut) {
            for response in op.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.insert("X-Request-Id".to_owned(), RefOr::Ref(shared.clone()));
                }
            }
        }
    }
}

/// utoipa gives a `method(get, head)` handler one operation id for both, and operation ids must be unique.
fn name_head_operations(api: &mut utoipa::openapi::OpenApi) {
    for head in api.paths.paths.values_mut().filter_map(|item| item.head.as_mut()) {
        head.operation_id = head.operation_id.take().map(|id| format!("{id}_head"));
        head.summary = head.summary.take().map(|s| format!("{s} (headers only)"));
    }
}

/// An upload's 201 links to the operations a client does next with the new id: each download, and its
/// metadata. Clients (and schemathesis' stateful tests) follow them.
fn upload_links(api: &utoipa::openapi::OpenApi) -> Vec<(String, RefOr<utoipa::openapi::link::Link>)> {
    api.paths
        .paths
        .iter()
        .filter(|(path, _)| path.ends_with("{id}"))
        .filter_map(|(_, item)| item.get.as_ref()?.operation_id.clone())
        .map(|id| {
            let link = LinkBuilder::new().operation_id(&id).parameter("id", "$response.body#/id").build();
            (id, RefOr::T(link))
        })
        .collect()
}

/// What differs between upload operations: the limit in the 413, the 400 codes and the 415 their body kind
/// can produce, and the strategy in the 201 example.
fn describe_upload(op: &mut Operation, strategy: Strategy, order: usize, limits: &Limits) {
    let body = strategy.read().body();
    extend(
        op,
        json!({"kind": "upload", "strategy": strategy.name(), "body": body.name(),
               "streamed": strategy.read().streamed(), "order": order}),
    );
    let responses = &mut op.responses.responses;
    let created = json!({
        "id": "01936b2e-7c4a-7d3e-9a51-4f0c2b8e1a77", "filename": "photo.jpg", "size": 262144,
        "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "content_type": "image/jpeg", "strategy": strategy.name(), "created_at": "2026-11-27T12:00:00.123Z",
    });
    set_example(responses.get_mut("201"), None, created);
    let codes = body.bad_request_codes();
    let listed: Vec<String> = codes.iter().map(|code| format!("`{code}`")).collect();
    let described = format!("The request cannot be stored as sent: {}.", listed.join(", "));
    let digest = AppError::DigestMismatch { expected: "0000…".into(), actual: "9f86…".into() };
    set_example(responses.get_mut("400"), Some(described), error_example(&digest, "digest_mismatch"));
    let too_large = AppError::PayloadTooLarge { limit: strategy.file_limit(limits) };
    set_example(responses.get_mut("413"), None, error_example(&too_large, "payload_too_large"));
    match body.expects() {
        Some(expected) => {
            let wrong = AppError::UnsupportedMediaType { expected };
            set_example(responses.get_mut("415"), None, error_example(&wrong, "unsupported_media_type"));
        }
        // a raw endpoint stores any body as sent
        None => drop(responses.remove("415")),
    }
}

fn error_example(err: &AppError, code: &str) -> serde_json::Value {
    json!({"error": code, "message": err.to_string()})
}

fn set_example(response: Option<&mut RefOr<Response>>, description: Option<String>, example: serde_json::Value) {
    let Some(RefOr::T(response)) = response else { return };
    if let Some(description) = description {
        response.description = description;
    }
    for content in response.content.values_mut() {
        if let RefOr::T(content) = content {
            content.example = Some(example.clone());
        }
    }
}

fn operation<'a>(api: &'a mut utoipa::openapi::OpenApi, path: &str, method: HttpMethod) -> &'a mut Operation {
    let item: &mut PathItem = api.paths.paths.get_mut(path).unwrap_or_else(|| panic!("{path} is not in the spec"));
    let op = match method {
        HttpMethod::Get => &mut item.get,
        HttpMethod::Head => &mut item.head,
        HttpMethod::Post => &mut item.post,
        _ => unreachable!("only uploads and downloads are described from the tables"),
    };
    op.as_mut().unwrap_or_else(|| panic!("an operation of {path} is not in the spec"))
}

fn extend(op: &mut Operation, ferry: serde_json::Value) {
    op.extensions.get_or_insert_with(Extensions::default).insert("x-ferry".to_owned(), ferry);
}
