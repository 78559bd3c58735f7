//! Raw-body strategies: the request body is the file, stored exactly as sent whatever its Content-Type.

use actix_web::{HttpMessage, HttpRequest, HttpResponse, http::header, post, web};
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{Strategy, Upload, body::Body, body::payload_error};
use crate::{
    error::AppError,
    openapi::{Binary, ChecksumHeader, UploadResponses},
    startup::AppState,
    storage::StoredFile,
};

/// Where a raw upload's filename comes from when not from `Content-Disposition`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawQuery {
    /// Name to record for the file; otherwise the `Content-Disposition` filename, otherwise `upload.bin`.
    pub filename: Option<String>,
}

pub(super) async fn receive(upload: &Upload<'_>, mut body: Body) -> Result<StoredFile, AppError> {
    let mut sink = upload.sink().await?;
    while let Some(chunk) = body.next().await {
        sink.write(chunk.map_err(payload_error)?).await?;
    }
    let content_type = upload.req.mime_type().ok().flatten();
    sink.commit(upload.describe(raw_filename(upload.req).as_deref(), content_type.as_ref())).await
}

fn raw_filename(req: &HttpRequest) -> Option<String> {
    let query = web::Query::<RawQuery>::from_query(req.query_string()).ok().and_then(|q| q.0.filename);
    query.or_else(|| {
        let disposition = header::ContentDisposition::from_raw(req.headers().get(header::CONTENT_DISPOSITION)?).ok()?;
        disposition
            .get_filename_ext()
            .map(|ext| String::from_utf8_lossy(&ext.value).into_owned())
            .or_else(|| disposition.get_filename().map(str::to_owned))
    })
}

/// Raw body, buffered writes
///
/// Reads the body as it arrives and writes it through a 256 KiB in-memory buffer with blocking `std::fs` writes
/// on the worker thread, so most chunks cost a memory copy instead of a system call. Memory per upload: the
/// buffer. The benchmark's "async read, memory write". A good default for fast local disks.
#[utoipa::path(
    tag = "upload",
    params(RawQuery, ChecksumHeader),
    request_body(content = Binary, content_type = "application/octet-stream", description = "The file's bytes, stored as sent."),
    responses(UploadResponses)
)]
#[post("/files/upload/stream/async_read_and_memory_write")]
async fn async_read_and_memory_write(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    super::receive(req, body, state, Strategy::StreamMemoryWrite).await
}

/// Raw body, direct blocking writes
///
/// Reads the body as it arrives and writes every chunk at once with a blocking `std::fs` write on the worker
/// thread: one system call per network chunk and no thread hop. While a write waits for the disk, that worker
/// serves no one else. Memory per upload: one network chunk.
#[utoipa::path(
    tag = "upload",
    params(RawQuery, ChecksumHeader),
    request_body(content = Binary, content_type = "application/octet-stream", description = "The file's bytes, stored as sent."),
    responses(UploadResponses)
)]
#[post("/files/upload/stream/async_read_and_disk_write")]
async fn async_read_and_disk_write(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    super::receive(req, body, state, Strategy::StreamDiskWrite).await
}

/// Raw body, async writes
///
/// Reads the body as it arrives and writes each chunk with `tokio::fs`, which runs the write on tokio's
/// blocking pool: the worker never waits on the disk, at the price of a copy and a thread hop per chunk. Memory
/// per upload: one network chunk. Pick it when the disk can be slow (network storage, contended volumes).
#[utoipa::path(
    tag = "upload",
    params(RawQuery, ChecksumHeader),
    request_body(content = Binary, content_type = "application/octet-stream", description = "The file's bytes, stored as sent."),
    responses(UploadResponses)
)]
#[post("/files/upload/stream/async_read_and_async_write")]
async fn async_read_and_async_write(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    super::receive(req, body, state, Strategy::StreamAsyncWrite).await
}

pub(super) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(async_read_and_memory_write).service(async_read_and_disk_write).service(async_read_and_async_write);
}
