//! Multipart strategies: the file is the form part named `file`; other parts are read and ignored.

use std::panic::AssertUnwindSafe;

use actix_multipart::{
    Field, Multipart, MultipartError,
    form::{
        MultipartForm,
        tempfile::{TempFile, TempFileError},
    },
};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, dev, post, web};
use bytes::BytesMut;
use futures_util::{FutureExt, TryStreamExt};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{Strategy, Upload, body::Body, body::payload_error};
use crate::{
    error::AppError,
    openapi::{ChecksumHeader, UploadResponses},
    startup::AppState,
    storage::{StoredFile, UploadSink},
};

/// A `multipart/form-data` upload.
#[derive(ToSchema)]
pub struct MultipartUpload {
    /// The file. Its part's filename and Content-Type are recorded.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
}

/// Reads the `file` part chunk by chunk into the sink, or, when `whole`, into memory first and then into the
/// sink with one write.
pub(super) async fn receive(upload: &Upload<'_>, body: Body, whole: bool) -> Result<StoredFile, AppError> {
    require_form_data(upload.req)?;
    let limit = upload.limit;
    let mut form = Multipart::new(upload.req.headers(), body);
    let mut field = next_file_part(&mut form, limit).await?;
    let filename = field.content_disposition().and_then(|cd| cd.get_filename()).map(str::to_owned);
    let described = upload.describe(filename.as_deref(), field.content_type());
    let mut sink = upload.sink().await?;
    let mut held = if whole { BytesMut::with_capacity(upload.capacity_for(limit)) } else { BytesMut::new() };
    while let Some(chunk) = field.try_next().await.map_err(|e| multipart_error(e, limit))? {
        if !whole {
            sink.write(chunk).await?;
        } else if (held.len() + chunk.len()) as u64 > limit {
            return Err(AppError::PayloadTooLarge { limit });
        } else {
            held.extend_from_slice(&chunk);
        }
    }
    if whole {
        sink.write(held.freeze()).await?;
    }
    drop(field);
    reject_second_file_part(&mut form, limit).await?;
    sink.commit(described).await
}

/// Lets actix-multipart's `MultipartForm<TempFile>` spool the part into `<data>/tmp/` (see `TempFileConfig` in
/// startup), then adopts that file.
pub(super) async fn receive_spooled(upload: &Upload<'_>, body: Body) -> Result<StoredFile, AppError> {
    #[derive(actix_multipart::form::MultipartForm)]
    #[multipart(duplicate_field = "deny")]
    struct Spooled {
        file: TempFile,
    }

    require_form_data(upload.req)?;
    let body: std::pin::Pin<Box<dyn futures_util::Stream<Item = _>>> = Box::pin(body);
    let mut payload = dev::Payload::Stream { payload: body };
    // actix-multipart asserts (in debug builds) that every part has a name, and a client sending `name=""`
    // trips it; a malformed body must never take a worker's task down with it.
    let parsed = AssertUnwindSafe(MultipartForm::<Spooled>::from_request(upload.req, &mut payload)).catch_unwind();
    let form = parsed.await.map_err(|_| AppError::BadRequest("malformed multipart body".into()))?.map_err(|err| {
        match err.as_error::<MultipartError>() {
            Some(MultipartError::Field { source, .. }) => match source.as_error::<TempFileError>() {
                // the spooling write failed: a full disk is 507, like in every other strategy
                Some(TempFileError::FileIo(io)) => std::io::Error::new(io.kind(), io.to_string()).into(),
                _ => AppError::Internal(source.to_string().into()),
            },
            Some(MultipartError::MissingField(_)) => AppError::MissingFile,
            Some(MultipartError::DuplicateField(_)) => second_file_part(),
            Some(MultipartError::Payload(actix_web::error::PayloadError::Overflow)) => {
                AppError::PayloadTooLarge { limit: upload.limit }
            }
            _ => AppError::BadRequest(format!("malformed multipart body: {err}")),
        }
    })?;
    let Spooled { file } = form.into_inner();
    let described = upload.describe(file.file_name.as_deref(), file.content_type.as_ref());
    UploadSink::adopt(upload.storage, file.file, upload.limit).await?.commit(described).await
}

fn require_form_data(req: &HttpRequest) -> Result<(), AppError> {
    match req.mime_type() {
        Ok(Some(m)) if m.type_() == mime::MULTIPART && m.subtype() == mime::FORM_DATA => Ok(()),
        _ => Err(AppError::UnsupportedMediaType { expected: "a multipart/form-data body" }),
    }
}

async fn next_file_part(form: &mut Multipart, limit: u64) -> Result<Field, AppError> {
    while let Some(field) = form.try_next().await.map_err(|e| multipart_error(e, limit))? {
        if field.name() == Some("file") {
            return Ok(field);
        }
        skip(field, limit).await?;
    }
    Err(AppError::MissingFile)
}

/// Reads the parts after the file, so that a form with two files is refused rather than half stored.
async fn reject_second_file_part(form: &mut Multipart, limit: u64) -> Result<(), AppError> {
    while let Some(field) = form.try_next().await.map_err(|e| multipart_error(e, limit))? {
        if field.name() == Some("file") {
            return Err(second_file_part());
        }
        skip(field, limit).await?;
    }
    Ok(())
}

/// Other parts are read and dropped; the body's own limit bounds how much that can be.
async fn skip(mut field: Field, limit: u64) -> Result<(), AppError> {
    while field.try_next().await.map_err(|e| multipart_error(e, limit))?.is_some() {}
    Ok(())
}

fn second_file_part() -> AppError {
    AppError::BadRequest("the multipart body has more than one part named \"file\"".into())
}

fn multipart_error(err: MultipartError, limit: u64) -> AppError {
    match err {
        MultipartError::Payload(actix_web::error::PayloadError::Overflow) => AppError::PayloadTooLarge { limit },
        MultipartError::Payload(err) => payload_error(err),
        err => AppError::BadRequest(format!("malformed multipart body: {err}")),
    }
}

/// Multipart, whole part in memory, async write
///
/// Gathers the whole `file` part in memory, then writes it with `tokio::fs` (which copies it to the blocking pool
/// in pieces of at most 2 MiB). Memory per upload: the whole file, so it is limited by `--max-buffered-bytes`.
/// The benchmark's `UploadFile` read whole. Simple, fine for small files.
#[utoipa::path(
    tag = "upload",
    params(ChecksumHeader),
    request_body(content = MultipartUpload, content_type = "multipart/form-data"),
    responses(UploadResponses)
)]
#[post("/files/upload/single")]
async fn single(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    super::receive(req, body, state, Strategy::Single).await
}

/// Multipart, whole part in memory, blocking write on the blocking pool
///
/// Gathers the whole `file` part in memory, then writes it with one blocking `std::fs` write inside
/// `web::block`: no copy, one thread hop. Memory per upload: the whole file (`--max-buffered-bytes`). The
/// benchmark's sync handler.
#[utoipa::path(
    tag = "upload",
    params(ChecksumHeader),
    request_body(content = MultipartUpload, content_type = "multipart/form-data"),
    responses(UploadResponses)
)]
#[post("/files/upload/single/sync")]
async fn single_sync(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    super::receive(req, body, state, Strategy::SingleSync).await
}

/// Multipart, part streamed, async writes
///
/// Streams the `file` part as it is parsed into `tokio::fs` writes: bounded memory (one chunk) whatever the file
/// size, and the worker never waits on the disk. The multipart choice for large files.
#[utoipa::path(
    tag = "upload",
    params(ChecksumHeader),
    request_body(content = MultipartUpload, content_type = "multipart/form-data"),
    responses(UploadResponses)
)]
#[post("/files/upload/single/stream")]
async fn single_stream(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    super::receive(req, body, state, Strategy::SingleStream).await
}

/// Multipart, part streamed, blocking writes on the worker
///
/// Streams the `file` part as it is parsed, writing each chunk with a blocking `std::fs` write on the worker
/// thread: bounded memory, no thread hops, but the worker stalls while the disk is busy.
#[utoipa::path(
    tag = "upload",
    params(ChecksumHeader),
    request_body(content = MultipartUpload, content_type = "multipart/form-data"),
    responses(UploadResponses)
)]
#[post("/files/upload/single/stream/async_read_sync_write")]
async fn single_stream_sync_write(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    super::receive(req, body, state, Strategy::SingleStreamSyncWrite).await
}

/// Multipart, spooled by actix-multipart, hashed with blocking reads
///
/// actix-multipart's `MultipartForm<TempFile>` spools the part to a temp file in the data directory; ferry then
/// reads it back on the blocking pool to hash it and publishes it by rename (no second copy). Bounded memory,
/// but every byte crosses the disk twice. The idiomatic actix extractor; the benchmark's sync read and write.
#[utoipa::path(
    tag = "upload",
    params(ChecksumHeader),
    request_body(content = MultipartUpload, content_type = "multipart/form-data"),
    responses(UploadResponses)
)]
#[post("/files/upload/single/stream/sync_read_sync_write")]
async fn single_spooled(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    super::receive(req, body, state, Strategy::SingleSpooled).await
}

pub(super) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(single)
        .service(single_sync)
        .service(single_stream)
        .service(single_stream_sync_write)
        .service(single_spooled);
}
