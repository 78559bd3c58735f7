//! The nine upload strategies. They differ only in how they read the body (raw stream, multipart part streamed
//! or held whole, multipart spooled by actix, JSON with base64) and how they write (see [`WriteMode`]); limits,
//! timeouts, digests, naming and publishing are shared here and in [`crate::storage`].

mod body;
mod json_base64;
mod multipart;
mod raw;

use actix_web::{HttpRequest, HttpResponse, http::header, web};
use utoipa_actix_web::service_config::ServiceConfig;

use self::body::Body;
pub use self::json_base64::Base64Upload;
pub use self::multipart::MultipartUpload;
use crate::{
    error::AppError,
    startup::AppState,
    storage::{NewFile, Storage, UploadSink, WriteMode, sanitize_filename},
};

/// Room for multipart boundaries and part headers, or the JSON around base64 data, on top of the file limit.
pub const ENVELOPE_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    StreamMemoryWrite,
    StreamDiskWrite,
    StreamAsyncWrite,
    Single,
    SingleSync,
    SingleStream,
    SingleStreamSyncWrite,
    SingleSpooled,
    JsonBase64,
}

/// How a strategy reads its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The raw request body, chunk by chunk.
    Raw,
    /// The multipart `file` part, chunk by chunk.
    PartStreamed,
    /// The multipart `file` part, gathered whole in memory before anything is written.
    PartWhole,
    /// actix-multipart's `MultipartForm<TempFile>` spools the part to disk itself.
    PartSpooled,
    /// A JSON document whose `data` is the file in base64, decoded in memory.
    JsonBase64,
}

impl Strategy {
    pub const ALL: [Strategy; 9] = [
        Strategy::StreamMemoryWrite,
        Strategy::StreamDiskWrite,
        Strategy::StreamAsyncWrite,
        Strategy::Single,
        Strategy::SingleSync,
        Strategy::SingleStream,
        Strategy::SingleStreamSyncWrite,
        Strategy::SingleSpooled,
        Strategy::JsonBase64,
    ];

    /// The endpoint's path below `/files/upload/`, also recorded as the file's `strategy`.
    pub const fn name(self) -> &'static str {
        match self {
            Strategy::StreamMemoryWrite => "stream/async_read_and_memory_write",
            Strategy::StreamDiskWrite => "stream/async_read_and_disk_write",
            Strategy::StreamAsyncWrite => "stream/async_read_and_async_write",
            Strategy::Single => "single",
            Strategy::SingleSync => "single/sync",
            Strategy::SingleStream => "single/stream",
            Strategy::SingleStreamSyncWrite => "single/stream/async_read_sync_write",
            Strategy::SingleSpooled => "single/stream/sync_read_sync_write",
            Strategy::JsonBase64 => "raw/json/base64decode",
        }
    }

    pub fn path(self) -> String {
        format!("/files/upload/{}", self.name())
    }

    fn how(self) -> (Read, WriteMode) {
        match self {
            Strategy::StreamMemoryWrite => (Read::Raw, WriteMode::Buffered),
            Strategy::StreamDiskWrite => (Read::Raw, WriteMode::Inline),
            Strategy::StreamAsyncWrite => (Read::Raw, WriteMode::Async),
            Strategy::Single => (Read::PartWhole, WriteMode::Async),
            Strategy::SingleSync => (Read::PartWhole, WriteMode::Blocking),
            Strategy::SingleStream => (Read::PartStreamed, WriteMode::Async),
            Strategy::SingleStreamSyncWrite => (Read::PartStreamed, WriteMode::Inline),
            Strategy::SingleSpooled => (Read::PartSpooled, WriteMode::Blocking),
            Strategy::JsonBase64 => (Read::JsonBase64, WriteMode::Async),
        }
    }

    /// Whether the whole file is held in memory, which puts it under `--max-buffered-bytes`.
    pub fn buffers_whole_file(self) -> bool {
        matches!(self.how().0, Read::PartWhole | Read::JsonBase64)
    }

    /// The largest file this strategy accepts.
    pub fn file_limit(self, limits: &Limits) -> u64 {
        if self.buffers_whole_file() { limits.max_buffered_bytes } else { limits.max_upload_bytes }
    }

    /// The largest request body that can carry a file of `file_limit` bytes.
    pub fn body_limit(self, file_limit: u64) -> u64 {
        match self.how().0 {
            Read::Raw => file_limit,
            Read::PartStreamed | Read::PartWhole | Read::PartSpooled => file_limit + ENVELOPE_BYTES,
            Read::JsonBase64 => file_limit.div_ceil(3) * 4 + ENVELOPE_BYTES,
        }
    }
}

/// Upload limits, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_upload_bytes: u64,
    pub max_buffered_bytes: u64,
    pub body_idle_timeout: std::time::Duration,
}

/// What a strategy's reader gets besides the body.
struct Upload<'a> {
    req: &'a HttpRequest,
    storage: &'a Storage,
    strategy: Strategy,
    limit: u64,
    expected_sha256: Option<String>,
    /// The announced body size, which bounds everything in it.
    content_length: Option<u64>,
}

impl Upload<'_> {
    /// Room to reserve for holding up to `max` bytes of this body in memory: what Content-Length announces,
    /// so a buffer is allocated once instead of growing by doubling to up to twice its contents.
    fn capacity_for(&self, max: u64) -> usize {
        usize::try_from(self.content_length.unwrap_or(0).min(max)).unwrap_or(0)
    }

    async fn sink(&self) -> Result<UploadSink, AppError> {
        UploadSink::create(self.storage, self.strategy.how().1, self.limit).await
    }

    fn describe(&self, filename: Option<&str>, content_type: Option<&mime::Mime>) -> NewFile {
        NewFile {
            filename: sanitize_filename(filename.unwrap_or_default()),
            content_type: content_type.map_or_else(|| mime::APPLICATION_OCTET_STREAM.to_string(), |m| m.to_string()),
            strategy: self.strategy.name(),
            expected_sha256: self.expected_sha256.clone(),
        }
    }
}

/// Every upload endpoint's body: check what can be checked before reading, read with the strategy, answer 201.
async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    strategy: Strategy,
) -> Result<HttpResponse, AppError> {
    let limit = strategy.file_limit(&state.limits);
    let max_body = strategy.body_limit(limit);
    let content_length = content_length(&req);
    if content_length.is_some_and(|len| len > max_body) {
        return Err(AppError::PayloadTooLarge { limit });
    }
    let expected_sha256 = expected_sha256(&req)?;
    let upload = Upload { req: &req, storage: &state.storage, strategy, limit, expected_sha256, content_length };
    let (body, probe) = Body::new(payload, state.limits.body_idle_timeout, max_body, limit);
    let stored = match strategy.how().0 {
        Read::Raw => raw::receive(&upload, body).await,
        Read::PartStreamed => multipart::receive(&upload, body, false).await,
        Read::PartWhole => multipart::receive(&upload, body, true).await,
        Read::PartSpooled => multipart::receive_spooled(&upload, body).await,
        Read::JsonBase64 => json_base64::receive(&upload, body).await,
    };
    let stored = probe.explain(stored)?;
    log::info!("stored {} ({} bytes) via {}", stored.id, stored.size, strategy.name());
    Ok(HttpResponse::Created().insert_header((header::LOCATION, format!("/files/{}", stored.id))).json(stored))
}

/// actix has already refused malformed and duplicate values with 400, and chunked bodies have none.
fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// `X-Checksum-Sha256`, if sent: 64 hex digits.
fn expected_sha256(req: &HttpRequest) -> Result<Option<String>, AppError> {
    let Some(value) = req.headers().get("x-checksum-sha256") else { return Ok(None) };
    let hex = value.to_str().unwrap_or_default().trim().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(hex))
    } else {
        Err(AppError::BadRequest("X-Checksum-Sha256 must be 64 hexadecimal digits".into()))
    }
}

pub fn configure(cfg: &mut ServiceConfig) {
    raw::configure(cfg);
    multipart::configure(cfg);
    json_base64::configure(cfg);
}
