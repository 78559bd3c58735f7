//! The OpenAPI document (collected from the handlers by utoipa-actix-web) and the pieces handlers share in it.

use actix_web::App;
use serde::Deserialize;
use utoipa::{
    IntoParams, IntoResponses, OpenApi, PartialSchema, ToSchema,
    openapi::{KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat, Type, link::LinkBuilder},
};
use utoipa_actix_web::AppExt;

use crate::{error::ErrorBody, storage::StoredFile};

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
        (name = "upload", description = "Nine ways to receive a file. All answer 201 with the stored file's metadata."),
        (name = "download", description = "Five ways to send a file, with identical headers, conditional requests and ranges."),
        (name = "files", description = "List, inspect and delete stored files."),
        (name = "health", description = "Service health."),
    ),
    components(schemas(ErrorBody, Binary))
)]
pub struct ApiDoc;

/// The document the server serves at `/api-docs/openapi.json`.
pub fn spec() -> utoipa::openapi::OpenApi {
    let (_, api) =
        App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(crate::startup::routes).split_for_parts();
    finish(api)
}

/// What the collected document still needs: utoipa gives a `method(get, head)` handler one operation id for
/// both, and operation ids must be unique.
/// Upload answers also link to every operation that takes the new id, so that clients (and schemathesis'
/// stateful tests) can follow an upload to its downloads.
pub fn finish(mut api: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    for head in api.paths.paths.values_mut().filter_map(|item| item.head.as_mut()) {
        head.operation_id = head.operation_id.take().map(|id| format!("{id}_head"));
        head.summary = head.summary.take().map(|s| format!("{s} (headers only)"));
    }
    let takes_id: Vec<String> = api
        .paths
        .paths
        .iter()
        .filter(|(path, _)| path.ends_with("{id}"))
        .flat_map(|(_, item)| [&item.get, &item.head, &item.delete])
        .filter_map(|op| op.as_ref()?.operation_id.clone())
        .collect();
    for item in api.paths.paths.values_mut() {
        let Some(RefOr::T(created)) = item.post.as_mut().and_then(|post| post.responses.responses.get_mut("201"))
        else {
            continue;
        };
        for id in &takes_id {
            let link = LinkBuilder::new().operation_id(id).parameter("id", "$response.body#/id").build();
            created.links.insert(id.clone(), RefOr::T(link));
        }
    }
    api
}

/// The documented paths and their methods, to tell "no such path" (404) from "not with this method" (405).
pub struct KnownRoutes(Vec<(Vec<String>, String)>);

impl KnownRoutes {
    pub fn from_spec(api: &utoipa::openapi::OpenApi) -> Self {
        let routes = api.paths.paths.iter().map(|(path, item)| {
            let methods = [
                ("GET", &item.get),
                ("HEAD", &item.head),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ];
            let allow: Vec<&str> = methods.iter().filter(|(_, op)| op.is_some()).map(|(m, _)| *m).collect();
            (path.split('/').map(str::to_owned).collect(), allow.join(", "))
        });
        KnownRoutes(routes.collect())
    }

    /// The `Allow` value for a path, if it is a documented one.
    pub fn allowed(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0.iter().find_map(|(template, allow)| {
            let matches = template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()));
            matches.then_some(allow.as_str())
        })
    }
}

/// A file's raw bytes, in a request or response body: a string of binary format, which Swagger UI offers as a
/// file picker.
pub struct Binary;

impl PartialSchema for Binary {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("The file's bytes"))
            .into()
    }
}

impl ToSchema for Binary {}

/// The optional integrity header of every upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ChecksumHeader {
    /// SHA-256 of the file's bytes (the decoded bytes for base64), 64 hex digits. On a mismatch nothing is
    /// stored and the answer is 400 `digest_mismatch`.
    #[param(rename = "X-Checksum-Sha256", pattern = "^[0-9a-fA-F]{64}$")]
    pub checksum: Option<String>,
}

/// Answers of every upload endpoint.
#[derive(IntoResponses)]
pub enum UploadResponses {
    /// Stored: the file is complete, hashed and (unless `--fsync false`) on stable storage.
    #[response(status = 201, headers(("Location" = String, description = "`/files/{id}`")))]
    Created(#[to_schema] StoredFile),
    /// Malformed body or headers (`bad_request`), no `file` part (`missing_file`), bad base64
    /// (`invalid_base64`) or a checksum that differs (`digest_mismatch`).
    #[response(status = 400, example = json!({"error": "digest_mismatch", "message": "sha256 of the received bytes is 9f86…, the request said 0000…"}))]
    BadRequest(ErrorBody),
    /// The body sent nothing for longer than `--body-idle-timeout` (`body_timeout`).
    #[response(status = 408, example = json!({"error": "body_timeout", "message": "the request body sent nothing for 30s"}))]
    Timeout(ErrorBody),
    /// Larger than this endpoint's limit (`payload_too_large`); sent before the body is read when
    /// Content-Length tells.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Wrong kind of body for this endpoint (`unsupported_media_type`).
    #[response(status = 415, example = json!({"error": "unsupported_media_type", "message": "this endpoint expects a multipart/form-data body"}))]
    UnsupportedMediaType(ErrorBody),
    /// The disk is full (`insufficient_storage`).
    #[response(status = 507, example = json!({"error": "insufficient_storage", "message": "the server has no space left to store this file"}))]
    InsufficientStorage(ErrorBody),
}

/// Request headers every download endpoint honours.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct DownloadHeaders {
    /// One range, e.g. `bytes=0-1023`, `bytes=1024-` or `bytes=-100` (GET only). Several ranges or a
    /// malformed value get the whole file.
    #[param(rename = "Range")]
    pub range: Option<String>,
    /// An ETag (`"<sha256>"`) or `*`: 304 when it matches.
    #[param(rename = "If-None-Match")]
    pub if_none_match: Option<String>,
    /// An HTTP date: 304 unless the file is newer (ignored when If-None-Match is sent).
    #[param(rename = "If-Modified-Since")]
    pub if_modified_since: Option<String>,
    /// Honour Range only if the file still has this ETag or Last-Modified date.
    #[param(rename = "If-Range")]
    pub if_range: Option<String>,
}

/// Answers of every download endpoint.
#[derive(IntoResponses)]
pub enum DownloadResponses {
    /// The whole file, with the Content-Type it was stored with.
    #[response(
        status = 200,
        content_type = "*/*",
        headers(
            ("ETag" = String, description = "`\"<sha256>\"`, the same from every strategy"),
            ("Last-Modified" = String),
            ("Content-Disposition" = String, description = "attachment, with `filename` and RFC 8187 `filename*`"),
            ("Repr-Digest" = String, description = "`sha-256=:<base64>:` of the whole file"),
            ("Accept-Ranges" = String),
        )
    )]
    Ok(#[to_schema] Binary),
    /// One range of the file.
    #[response(
        status = 206,
        content_type = "*/*",
        headers(("Content-Range" = String, description = "`bytes a-b/size`"), ("ETag" = String), ("Repr-Digest" = String))
    )]
    Partial(#[to_schema] Binary),
    /// The client's copy is current (If-None-Match or If-Modified-Since).
    #[response(status = 304)]
    NotModified,
    /// Unknown or malformed id (`not_found`).
    #[response(status = 404, example = json!({"error": "not_found", "message": "no file with this id"}))]
    NotFound(ErrorBody),
    /// The range starts past the end (`range_not_satisfiable`).
    #[response(
        status = 416,
        headers(("Content-Range" = String, description = "`bytes */size`")),
        example = json!({"error": "range_not_satisfiable", "message": "the requested range is outside the file's 262144 bytes"})
    )]
    RangeNotSatisfiable(ErrorBody),
}
