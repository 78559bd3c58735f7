//! Resumable uploads: the tus 1.0 protocol at `/files/tus/`, with the extensions `creation`,
//! `creation-with-upload`, `creation-defer-length`, `termination`, `expiration` and `checksum`.
//!
//! An upload is created (POST), receives its bytes in one or more PATCHes at the offset HEAD reports, and is
//! published through [`crate::storage::Storage::publish`] when the last byte is in, like every other upload:
//! server id, sha256 of the whole file (kept as hash state between PATCHes, never re-read), metadata, fsync.
//! Its partial state lives in [`store`]; limits, the idle timeout and access control are the other uploads'.

mod append;
mod headers;
pub mod store;

use actix_web::{
    HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, delete, head,
    http::header::{self, HttpDate},
    options, patch, post, web,
};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub use self::headers::VERSION;
use self::store::{UploadId, UploadState, Uploads};
use crate::{error::AppError, schema::Binary, state::AppState};

/// The `strategy` recorded for files that came through tus, and their label in the metrics.
pub const STRATEGY: &str = "tus";
/// Where uploads are created; each upload's URL is this followed by its id.
pub const ENDPOINT: &str = "/files/tus/";
pub const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum";

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(discover).service(create).service(head_upload).service(patch_upload).service(terminate);
}

/// The tus version a request speaks; ferry speaks 1.0.0 only and answers anything else with 412.
#[derive(ToSchema)]
#[schema(example = "1.0.0")]
pub enum TusResumable {
    #[schema(rename = "1.0.0")]
    V1,
}

/// Discover the server's tus support
///
/// The protocol versions, extensions, largest upload and checksum algorithms this server supports.
#[utoipa::path(
    tag = "tus",
    operation_id = "tus_discover",
    responses((status = 204, description = "What the server supports", headers(
        ("Tus-Resumable" = String, description = "1.0.0"),
        ("Tus-Version" = String, description = "1.0.0"),
        ("Tus-Extension" = String, description = "creation, creation-with-upload, creation-defer-length, termination, expiration, checksum"),
        ("Tus-Max-Size" = u64, description = "`--max-upload-bytes`"),
        ("Tus-Checksum-Algorithm" = String, description = "sha1,sha256"),
    )))
)]
#[options("/files/tus/")]
async fn discover(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let res = HttpResponse::NoContent()
        .insert_header(("Tus-Version", VERSION))
        .insert_header(("Tus-Extension", EXTENSIONS))
        .insert_header(("Tus-Max-Size", state.limits.max_upload_bytes.to_string()))
        .insert_header(("Tus-Checksum-Algorithm", headers::ALGORITHMS))
        .finish();
    answer(&req, Ok(res))
}

/// Create an upload
///
/// Creates an upload of `Upload-Length` bytes (or, with `Upload-Defer-Length: 1`, of a length a later PATCH
/// gives) and answers its URL in `Location`. `Upload-Metadata` `filename` and `filetype` (base64) name and
/// type the stored file. A body of type `application/offset+octet-stream` is the first bytes
/// (creation-with-upload); when it completes the upload, the answer carries the stored file's id in
/// `Ferry-File-Id`. A length over `--max-upload-bytes` gets 413 before anything is created.
#[utoipa::path(
    tag = "tus",
    operation_id = "tus_create",
    params(
        ("Tus-Resumable" = TusResumable, Header, description = "The protocol version: 1.0.0"),
        ("Upload-Length" = Option<u64>, Header, description = "The whole upload's size in bytes"),
        ("Upload-Defer-Length" = Option<String>, Header, description = "`1` when the size is not known yet"),
        ("Upload-Metadata" = Option<String>, Header, description = "`key base64-value` pairs, comma-separated: `filename`, `filetype`"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of this request's body"),
    ),
    request_body(content = Option<Binary>, content_type = "application/offset+octet-stream",
        description = "Optional: the upload's first bytes (creation-with-upload)."),
    responses(
        (status = 201, description = "Created; `Location` is the upload's URL", headers(
            ("Location" = String, description = "The upload's URL: `/files/tus/<upload-id>`"),
            ("Upload-Offset" = u64, description = "Bytes received (creation-with-upload)"),
            ("Upload-Expires" = String, description = "When an unfinished upload is removed (HTTP date)"),
            ("Ferry-File-Id" = String, description = "The stored file's id, once the upload is complete"),
            ("Ferry-File-Location" = String, description = "`/files/<id>`, once the upload is complete"),
        )),
        (status = 400, description = "A malformed tus header (`invalid_header`)", body = crate::error::ErrorBody),
        (status = 412, description = "Not tus 1.0.0 (`unsupported_version`), with `Tus-Version`", body = crate::error::ErrorBody),
        (status = 413, description = "Upload-Length over `--max-upload-bytes` (`payload_too_large`)", body = crate::error::ErrorBody),
        (status = 415, description = "A body that is not `application/offset+octet-stream`", body = crate::error::ErrorBody),
        (status = 460, description = "The body does not match `Upload-Checksum` (`checksum_mismatch`): its bytes are discarded", body = crate::error::ErrorBody),
        (status = 507, description = "Not enough free space (`insufficient_storage`)", body = crate::error::ErrorBody),
    )
)]
#[post("/files/tus/")]
async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    uploads: web::Data<Uploads>,
) -> HttpResponse {
    match created(&req, &state, &uploads).await {
        Err(err) => answer(&req, Err(err)),
        Ok((id, new)) => {
            let location = format!("{ENDPOINT}{}", id.as_str());
            let upload = headers::is_offset_stream(req.headers()) || new.length == Some(0);
            let result = match upload {
                true => receive(&req, payload, &state, &uploads, &id, 0).await,
                false => Ok(new),
            };
            let result = result.map(|state| progress(HttpResponse::Created(), &state).finish());
            let mut res = answer(&req, result);
            // even when the first bytes failed, the upload exists and can be resumed there
            res.headers_mut().insert(header::LOCATION, header::HeaderValue::from_str(&location).expect("ascii"));
            res
        }
    }
}

/// Checks a creation request and makes the upload.
async fn created(req: &HttpRequest, state: &AppState, uploads: &Uploads) -> Result<(UploadId, UploadState), AppError> {
    headers::check_version(req.headers())?;
    let length = headers::creation_length(req.headers())?;
    let limit = state.limits.max_upload_bytes;
    if length.is_some_and(|length| length > limit) {
        return Err(AppError::PayloadTooLarge { limit });
    }
    let metadata = headers::metadata(req.headers())?;
    if !headers::is_offset_stream(req.headers()) && !no_body(req) {
        return Err(AppError::UnsupportedMediaType { expected: "an application/offset+octet-stream body, or none" });
    }
    headers::checksum(req.headers())?;
    state.storage.ensure_local_room(length.unwrap_or(0))?;
    let new = UploadState {
        length,
        offset: 0,
        metadata: metadata.raw,
        filename: metadata.filename,
        content_type: metadata.content_type,
        expires_ms: uploads.expires_from_now(),
        sha256_state: store::empty_hash_state(),
        file_id: None,
    };
    let (made, uploads) = (new.clone(), uploads.clone());
    let id = web::block(move || uploads.create(&made)).await??;
    log::info!("tus upload {} created for {:?} ({length:?} bytes)", id.as_str(), new.filename);
    Ok((id, new))
}

/// Upload offset
///
/// How many bytes of the upload the server holds (`Upload-Offset`): where the next PATCH starts. Once the
/// upload is complete, `Ferry-File-Id` names the stored file (until the upload expires), so a client that
/// lost the last answer learns it here.
#[utoipa::path(
    tag = "tus",
    operation_id = "tus_offset",
    params(
        ("upload_id" = String, Path, description = "The upload's id, from its creation's `Location`"),
        ("Tus-Resumable" = TusResumable, Header, description = "The protocol version: 1.0.0"),
    ),
    responses(
        (status = 200, description = "The upload's progress; `Cache-Control: no-store`", headers(
            ("Upload-Offset" = u64, description = "Bytes received"),
            ("Upload-Length" = u64, description = "The upload's size, unless deferred"),
            ("Upload-Defer-Length" = String, description = "`1` while the size is not known"),
            ("Upload-Metadata" = String, description = "As sent at creation"),
            ("Upload-Expires" = String, description = "When the upload is removed (HTTP date)"),
            ("Ferry-File-Id" = String, description = "The stored file's id, once complete"),
            ("Ferry-File-Location" = String, description = "`/files/<id>`, once complete"),
        )),
        (status = 404, description = "No such upload, or it has expired or been terminated"),
        (status = 412, description = "Not tus 1.0.0, with `Tus-Version`"),
    )
)]
#[head("/files/tus/{upload_id}")]
async fn head_upload(req: HttpRequest, uploads: web::Data<Uploads>, state: web::Data<AppState>) -> HttpResponse {
    let looked = async {
        headers::check_version(req.headers())?;
        let id = upload_id(&req)?;
        let (uploads, max) = (uploads.clone(), state.limits.max_upload_bytes);
        let upload = web::block(move || append::settle(&uploads, &id, max)).await??;
        let mut res = progress(HttpResponse::Ok(), &upload);
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        match upload.length {
            Some(length) => res.insert_header(("Upload-Length", length.to_string())),
            None => res.insert_header(("Upload-Defer-Length", "1")),
        };
        if let Some(metadata) = &upload.metadata {
            res.insert_header(("Upload-Metadata", metadata.as_str()));
        }
        Ok::<_, AppError>(res.finish())
    };
    answer(&req, looked.await)
}

/// Append bytes
///
/// Appends the body at `Upload-Offset`, which must be the offset HEAD reports (409 otherwise). With
/// `Upload-Checksum`, the body's bytes count only if they match (460 otherwise, and they are discarded);
/// without it, the bytes received before a dropped connection count. A deferred-length upload gives its
/// `Upload-Length` here. While a PATCH is under way another gets 423. The PATCH that completes the upload
/// publishes the file and names it in `Ferry-File-Id`.
#[utoipa::path(
    tag = "tus",
    operation_id = "tus_append",
    params(
        ("upload_id" = String, Path, description = "The upload's id, from its creation's `Location`"),
        ("Tus-Resumable" = TusResumable, Header, description = "The protocol version: 1.0.0"),
        ("Upload-Offset" = u64, Header, description = "Where this body starts: the offset HEAD reports"),
        ("Upload-Length" = Option<u64>, Header, description = "The size, for a deferred-length upload"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1 <base64>` or `sha256 <base64>` of this body"),
    ),
    request_body(content = Binary, content_type = "application/offset+octet-stream",
        description = "The next bytes of the upload."),
    responses(
        (status = 204, description = "Appended", headers(
            ("Upload-Offset" = u64, description = "Bytes received now"),
            ("Upload-Expires" = String, description = "When the upload is removed unless continued (HTTP date)"),
            ("Ferry-File-Id" = String, description = "The stored file's id, when this PATCH completed the upload"),
            ("Ferry-File-Location" = String, description = "`/files/<id>`, when this PATCH completed the upload"),
        )),
        (status = 400, description = "A malformed tus header (`invalid_header`)", body = crate::error::ErrorBody),
        (status = 404, description = "No such upload, or it has expired or been terminated", body = crate::error::ErrorBody),
        (status = 408, description = "The body sent nothing for `--body-idle-timeout` (`body_timeout`)", body = crate::error::ErrorBody),
        (status = 409, description = "`Upload-Offset` is not the upload's offset (`offset_mismatch`)", body = crate::error::ErrorBody),
        (status = 412, description = "Not tus 1.0.0 (`unsupported_version`), with `Tus-Version`", body = crate::error::ErrorBody),
        (status = 413, description = "More bytes than `Upload-Length` or `--max-upload-bytes` (`payload_too_large`)", body = crate::error::ErrorBody),
        (status = 415, description = "The body is not `application/offset+octet-stream`", body = crate::error::ErrorBody),
        (status = 423, description = "Another PATCH to this upload is under way (`locked`)", body = crate::error::ErrorBody),
        (status = 460, description = "The body does not match `Upload-Checksum` (`checksum_mismatch`): its bytes are discarded", body = crate::error::ErrorBody),
        (status = 507, description = "Not enough free space (`insufficient_storage`)", body = crate::error::ErrorBody),
    )
)]
#[patch("/files/tus/{upload_id}")]
async fn patch_upload(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    uploads: web::Data<Uploads>,
) -> HttpResponse {
    let appended = async {
        headers::check_version(req.headers())?;
        let id = upload_id(&req)?;
        if !headers::is_offset_stream(req.headers()) {
            return Err(AppError::UnsupportedMediaType { expected: "an application/offset+octet-stream body" });
        }
        let offset = headers::number(req.headers(), "upload-offset")?
            .ok_or_else(|| AppError::InvalidHeader("Upload-Offset is required".to_owned()))?;
        let upload = receive(&req, payload, &state, &uploads, &id, offset).await?;
        Ok::<_, AppError>(progress(HttpResponse::NoContent(), &upload).finish())
    };
    answer(&req, appended.await)
}

/// Terminate an upload
///
/// Removes an unfinished upload and its bytes (a stored file it completed stays). A PATCH under way keeps it
/// (423).
#[utoipa::path(
    tag = "tus",
    operation_id = "tus_terminate",
    params(
        ("upload_id" = String, Path, description = "The upload's id, from its creation's `Location`"),
        ("Tus-Resumable" = TusResumable, Header, description = "The protocol version: 1.0.0"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such upload", body = crate::error::ErrorBody),
        (status = 412, description = "Not tus 1.0.0", body = crate::error::ErrorBody),
        (status = 423, description = "A PATCH to this upload is under way (`locked`)", body = crate::error::ErrorBody),
    )
)]
#[delete("/files/tus/{upload_id}")]
async fn terminate(req: HttpRequest, uploads: web::Data<Uploads>) -> HttpResponse {
    let removed = async {
        headers::check_version(req.headers())?;
        let id = upload_id(&req)?;
        let uploads = uploads.clone();
        web::block(move || uploads.remove(&id)).await??;
        Ok::<_, AppError>(HttpResponse::NoContent().finish())
    };
    answer(&req, removed.await)
}

/// A body's bytes into an upload, counted in the metrics like every upload strategy's.
async fn receive(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    uploads: &Uploads,
    id: &UploadId,
    offset: u64,
) -> Result<UploadState, AppError> {
    let in_flight = state.metrics.upload_started();
    let (result, received) = append::append(req, payload, state, uploads, id, offset).await;
    drop(in_flight);
    state.metrics.received(STRATEGY, received);
    if let Err(err) = &result {
        state.metrics.upload_failed(err.code());
    }
    result
}

fn upload_id(req: &HttpRequest) -> Result<UploadId, AppError> {
    req.match_info().get("upload_id").and_then(UploadId::parse).ok_or(AppError::NoUpload)
}

/// The headers that say where an upload stands.
fn progress(mut res: HttpResponseBuilder, upload: &UploadState) -> HttpResponseBuilder {
    res.insert_header(("Upload-Offset", upload.offset.to_string()))
        .insert_header(("Upload-Expires", HttpDate::from(upload.expires_at()).to_string()));
    if let Some(file) = upload.file_id {
        res.insert_header(("Ferry-File-Id", file.to_string()))
            .insert_header(("Ferry-File-Location", format!("/files/{file}")));
    }
    res
}

/// Every tus answer carries `Tus-Resumable`; a 412 also `Tus-Version`. An error to a request with a body
/// closes the connection, since the body may be unread.
fn answer(req: &HttpRequest, result: Result<HttpResponse, AppError>) -> HttpResponse {
    let mut res = match result {
        Ok(res) => res,
        Err(err) => {
            let mut res = err.error_response();
            if matches!(err, AppError::UnsupportedTusVersion) {
                res.headers_mut()
                    .insert(header::HeaderName::from_static("tus-version"), header::HeaderValue::from_static(VERSION));
            }
            if !no_body(req) {
                res.head_mut().set_connection_type(actix_http::ConnectionType::Close);
            }
            res
        }
    };
    res.headers_mut()
        .insert(header::HeaderName::from_static("tus-resumable"), header::HeaderValue::from_static(VERSION));
    res
}

/// Whether the request announces no body bytes.
fn no_body(req: &HttpRequest) -> bool {
    let headers = req.headers();
    !headers.contains_key(header::TRANSFER_ENCODING)
        && headers.get(header::CONTENT_LENGTH).is_none_or(|len| len.as_bytes() == b"0")
}
