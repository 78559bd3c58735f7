//! The nine upload strategies. They differ only in how they read the body (raw stream, multipart part streamed
//! or held whole, multipart spooled by actix, JSON with base64) and how they write (see [`WriteMode`]); limits,
//! timeouts, digests, naming and publishing are shared here and in [`crate::storage`].
//!
//! [`endpoints!`] below is the one table of upload endpoints: each row names a strategy, its path, how it reads
//! and writes, and its documentation; the route, the handler, the strategy's name and its OpenAPI operation all
//! come from that row.

mod body;
mod doc;
mod json_base64;
mod multipart;
mod raw;

use std::path::Path;

use actix_multipart::form::{MultipartFormConfig, tempfile::TempFileConfig};
use actix_web::{
    HttpMessage, HttpRequest, HttpResponse,
    http::header::{self, HeaderMap},
    post, web,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub use self::{
    body::{Body, FaultProbe, payload_error},
    doc::{ChecksumHeader, UploadResponses},
    json_base64::Base64Upload,
    multipart::MultipartUpload,
    raw::RawQuery,
};
use crate::{
    config::Limits,
    error::AppError,
    schema::Binary,
    state::AppState,
    storage::{NewFile, Storage, StoredFile, UploadSink, WriteMode, sanitize_filename},
};

/// Room for multipart boundaries and part headers, or the JSON around base64 data, on top of the file limit.
pub const ENVELOPE_BYTES: u64 = 64 * 1024;

/// Every upload path starts with this; the rest is the strategy's name.
const PREFIX: &str = "/files/upload/";

/// How a strategy reads its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
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

/// The kind of body a [`Read`] takes, as clients and the benchmark kit see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Raw,
    Multipart,
    Json,
}

impl Read {
    pub const fn body(self) -> BodyKind {
        match self {
            Read::Raw => BodyKind::Raw,
            Read::PartStreamed | Read::PartWhole | Read::PartSpooled => BodyKind::Multipart,
            Read::JsonBase64 => BodyKind::Json,
        }
    }

    /// What the benchmark table says about how much of the file is held at once.
    pub const fn streamed(self) -> &'static str {
        match self {
            Read::Raw | Read::PartStreamed => "yes",
            Read::PartWhole => "no (whole part in memory)",
            Read::PartSpooled => "spooled to disk",
            Read::JsonBase64 => "no (JSON + decoded in memory)",
        }
    }
}

impl BodyKind {
    pub const fn name(self) -> &'static str {
        match self {
            BodyKind::Raw => "raw",
            BodyKind::Multipart => "multipart",
            BodyKind::Json => "json",
        }
    }

    /// What a 415 answer says the endpoint takes; raw endpoints take any body.
    pub const fn expects(self) -> Option<&'static str> {
        match self {
            BodyKind::Raw => None,
            BodyKind::Multipart => Some("a multipart/form-data body"),
            BodyKind::Json => Some("an application/json body"),
        }
    }

    /// The error codes of a 400 answer to this kind of body, for the documentation.
    pub const fn bad_request_codes(self) -> &'static [&'static str] {
        match self {
            BodyKind::Raw => &["invalid_checksum", "incomplete_body", "digest_mismatch"],
            BodyKind::Multipart => &[
                "invalid_checksum",
                "incomplete_body",
                "malformed_multipart",
                "missing_file",
                "duplicate_file",
                "digest_mismatch",
            ],
            BodyKind::Json => {
                &["invalid_checksum", "incomplete_body", "invalid_json", "invalid_base64", "digest_mismatch"]
            }
        }
    }
}

/// One row per strategy: `Variant => "path", handler, Read, WriteMode;` after the operation's doc comment, in
/// the order of the post's table. A row's [`Read`] picks the OpenAPI request body.
macro_rules! endpoints {
    ($($(#[doc = $doc:literal])* $variant:ident => $path:tt, $handler:ident, $read:ident, $write:ident;)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Strategy { $($variant),* }

        impl Strategy {
            /// Every strategy, in the order of the post's table.
            pub const ALL: [Strategy; [$(stringify!($variant)),*].len()] = [$(Strategy::$variant),*];

            /// The endpoint's path.
            pub const fn path(self) -> &'static str {
                match self { $(Strategy::$variant => $path),* }
            }

            const fn how(self) -> (Read, WriteMode) {
                match self { $(Strategy::$variant => (Read::$read, WriteMode::$write)),* }
            }
        }

        $(endpoints!(@handler $read, [$(#[doc = $doc])*], $variant, $path, $handler);)*

        pub fn configure(cfg: &mut ServiceConfig) {
            $(cfg.service($handler);)*
        }
    };
    // what each kind of body documents: its parameters and its request body
    (@handler Raw, $($rest:tt)*) => {
        endpoints!(@fn [params(RawQuery, ChecksumHeader), request_body(content = Binary,
            content_type = "application/octet-stream", description = "The file's bytes, stored as sent.")] $($rest)*);
    };
    (@handler JsonBase64, $($rest:tt)*) => {
        endpoints!(@fn [params(ChecksumHeader),
            request_body(content = Base64Upload, content_type = "application/json")] $($rest)*);
    };
    (@handler $multipart:ident, $($rest:tt)*) => {
        endpoints!(@fn [params(ChecksumHeader),
            request_body(content = MultipartUpload, content_type = "multipart/form-data")] $($rest)*);
    };
    (@fn [$($openapi:tt)*] [$($doc:tt)*], $variant:ident, $path:tt, $handler:ident) => {
        $($doc)*
        #[utoipa::path(tag = "upload", $($openapi)*, responses(UploadResponses))]
        #[post($path)]
        async fn $handler(req: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
            receive(req, body, state, Strategy::$variant).await
        }
    };
}

endpoints! {
    /// Raw body, buffered writes
    ///
    /// Reads the body as it arrives and writes it through a 256 KiB in-memory buffer with blocking `std::fs`
    /// writes on the worker thread, so most chunks cost a memory copy instead of a system call. Memory per upload:
    /// the buffer. The benchmark's "async read, memory write". A good default for fast local disks.
    StreamMemoryWrite => "/files/upload/stream/async_read_and_memory_write", async_read_and_memory_write, Raw, Buffered;

    /// Raw body, direct blocking writes
    ///
    /// Reads the body as it arrives and writes every chunk at once with a blocking `std::fs` write on the worker
    /// thread: one system call per network chunk and no thread hop. While a write waits for the disk, that worker
    /// serves no one else. Memory per upload: one network chunk.
    StreamDiskWrite => "/files/upload/stream/async_read_and_disk_write", async_read_and_disk_write, Raw, Inline;

    /// Raw body, async writes
    ///
    /// Reads the body as it arrives and writes each chunk with `tokio::fs`, which runs the write on tokio's
    /// blocking pool: the worker never waits on the disk, at the price of a copy and a thread hop per chunk.
    /// Memory per upload: one network chunk. Pick it when the disk can be slow (network storage, contended
    /// volumes).
    StreamAsyncWrite => "/files/upload/stream/async_read_and_async_write", async_read_and_async_write, Raw, Async;

    /// Multipart, whole part in memory, async write
    ///
    /// Gathers the whole `file` part in memory, then writes it with `tokio::fs` (which copies it to the blocking
    /// pool in pieces of at most 128 KiB). Memory per upload: the whole file, so it is limited by
    /// `--max-buffered-bytes`. The benchmark's `UploadFile` read whole. Simple, fine for small files.
    Single => "/files/upload/single", single, PartWhole, Async;

    /// Multipart, whole part in memory, blocking write on the blocking pool
    ///
    /// Gathers the whole `file` part in memory, then writes it with one blocking `std::fs` write inside
    /// `web::block`: no copy, one thread hop. Memory per upload: the whole file (`--max-buffered-bytes`). The
    /// benchmark's sync handler.
    SingleSync => "/files/upload/single/sync", single_sync, PartWhole, Blocking;

    /// Multipart, part streamed, async writes
    ///
    /// Streams the `file` part as it is parsed into `tokio::fs` writes: bounded memory (one chunk) whatever the
    /// file size, and the worker never waits on the disk. The multipart choice for large files.
    SingleStream => "/files/upload/single/stream", single_stream, PartStreamed, Async;

    /// Multipart, part streamed, blocking writes on the worker
    ///
    /// Streams the `file` part as it is parsed, writing each chunk with a blocking `std::fs` write on the worker
    /// thread: bounded memory, no thread hops, but the worker stalls while the disk is busy.
    SingleStreamSyncWrite => "/files/upload/single/stream/async_read_sync_write", single_stream_sync_write, PartStreamed, Inline;

    /// Multipart, spooled by actix-multipart, hashed with blocking reads
    ///
    /// actix-multipart's `MultipartForm<TempFile>` spools the part to a temp file in the data directory; ferry
    /// then reads it back on the blocking pool to hash it and publishes it by rename (no second copy). Bounded
    /// memory, but every byte crosses the disk twice. The idiomatic actix extractor; the benchmark's sync read
    /// and write.
    SingleSpooled => "/files/upload/single/stream/sync_read_sync_write", single_spooled, PartSpooled, Blocking;

    /// JSON with base64 data
    ///
    /// Reads the whole JSON document into memory, decodes `data` from base64 and writes the result with
    /// `tokio::fs`. Base64 makes the body a third larger and the server holds both the document and the decoded
    /// file, about 2.3 times the file size at peak; limited by `--max-buffered-bytes`. For clients that can only
    /// send JSON.
    JsonBase64 => "/files/upload/raw/json/base64decode", base64decode, JsonBase64, Async;
}

impl Strategy {
    /// The endpoint's path below `/files/upload/`, also recorded as the file's `strategy`.
    pub const fn name(self) -> &'static str {
        self.path().split_at(PREFIX.len()).1
    }

    pub const fn read(self) -> Read {
        self.how().0
    }

    /// Whether the whole file is held in memory, which puts it under `--max-buffered-bytes`.
    pub const fn buffers_whole_file(self) -> bool {
        matches!(self.read(), Read::PartWhole | Read::JsonBase64)
    }

    /// The largest file this strategy accepts.
    pub const fn file_limit(self, limits: &Limits) -> u64 {
        if self.buffers_whole_file() { limits.max_buffered_bytes } else { limits.max_upload_bytes }
    }

    /// The largest request body that can carry a file of `file_limit` bytes.
    pub const fn body_limit(self, file_limit: u64) -> u64 {
        match self.read().body() {
            BodyKind::Raw => file_limit,
            BodyKind::Multipart => file_limit + ENVELOPE_BYTES,
            BodyKind::Json => file_limit.div_ceil(3) * 4 + ENVELOPE_BYTES,
        }
    }
}

/// The 201 answer: the stored file, and a word of advice when the request looks like a mistake.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    #[serde(flatten)]
    pub file: StoredFile,
    /// Present when ferry stored the file as asked but the request suggests another endpoint was meant.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = json!(null))]
    pub warning: Option<String>,
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

/// What the request head alone can refuse, before any body byte is read: a Content-Length over the limit
/// (413), a malformed checksum (400), the wrong kind of body (415). The handlers run it, and so does the
/// connection's `Expect: 100-continue` handler, so that such a client is refused before it sends its body.
/// Returns the checksum the client sent, if any.
pub fn precheck(strategy: Strategy, limits: &Limits, req: &impl HttpMessage) -> Result<Option<String>, AppError> {
    let limit = strategy.file_limit(limits);
    if content_length(req.headers()).is_some_and(|len| len > strategy.body_limit(limit)) {
        return Err(AppError::PayloadTooLarge { limit });
    }
    let expected_sha256 = expected_sha256(req.headers())?;
    let sent = req.mime_type().ok().flatten();
    let fits = match strategy.read().body() {
        BodyKind::Raw => true,
        BodyKind::Multipart => sent.is_some_and(|m| m.type_() == mime::MULTIPART && m.subtype() == mime::FORM_DATA),
        BodyKind::Json => sent.is_some_and(|m| m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON)),
    };
    match strategy.read().body().expects() {
        Some(expected) if !fits => Err(AppError::UnsupportedMediaType { expected }),
        _ => Ok(expected_sha256),
    }
}

/// The upload strategy whose endpoint is `path`.
pub fn strategy_at(path: &str) -> Option<Strategy> {
    Strategy::ALL.into_iter().find(|strategy| strategy.path() == path)
}

/// Every upload endpoint's body, counted in the metrics.
async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    strategy: Strategy,
) -> Result<HttpResponse, AppError> {
    let in_flight = state.metrics.upload_started();
    let (answer, received) = store(req, payload, &state, strategy).await;
    drop(in_flight);
    state.metrics.received(strategy.name(), received);
    if let Err(err) = &answer {
        state.metrics.upload_failed(err.code());
    }
    answer
}

/// Checks what can be checked before reading, reads with the strategy, answers 201; says how many body bytes
/// came, whatever the answer.
async fn store(
    req: HttpRequest,
    payload: web::Payload,
    state: &AppState,
    strategy: Strategy,
) -> (Result<HttpResponse, AppError>, u64) {
    match precheck(strategy, &state.limits, &req) {
        Ok(expected_sha256) => read_and_publish(&req, payload, state, strategy, expected_sha256).await,
        Err(refused) => (Err(refused), 0),
    }
}

async fn read_and_publish(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    strategy: Strategy,
    expected_sha256: Option<String>,
) -> (Result<HttpResponse, AppError>, u64) {
    let limit = strategy.file_limit(&state.limits);
    let max_body = strategy.body_limit(limit);
    let content_length = content_length(req.headers());
    // one statvfs, inline: it reads the file system's counters, and a thread hop per upload costs more. The
    // spooled strategy writes to the local disk whatever the storage (actix-multipart spools there)
    let room = match strategy.read() {
        Read::PartSpooled => state.storage.ensure_local_room(content_length.unwrap_or(0)),
        _ => state.storage.ensure_room(content_length.unwrap_or(0)),
    };
    if let Err(full) = room {
        return (Err(full), 0);
    }
    let upload = Upload { req, storage: &state.storage, strategy, limit, expected_sha256, content_length };
    let (body, probe) = Body::new(payload, state.limits.body_idle_timeout, max_body, limit);
    let stored = match strategy.read() {
        Read::Raw => raw::receive(&upload, body).await,
        Read::PartStreamed => multipart::receive(&upload, body, false).await,
        Read::PartWhole => multipart::receive(&upload, body, true).await,
        Read::PartSpooled => multipart::receive_spooled(&upload, body).await,
        Read::JsonBase64 => json_base64::receive(&upload, body).await,
    };
    let answer = probe.explain(stored).map(|stored| {
        log::info!("stored {} ({} bytes) via {}", stored.id, stored.size, strategy.name());
        let warning = (strategy.read() == Read::Raw).then(|| raw::warning(req)).flatten();
        let location = format!("/files/{}", stored.id);
        HttpResponse::Created().insert_header((header::LOCATION, location)).json(Created { file: stored, warning })
    });
    (answer, probe.received())
}

/// actix has already refused malformed and duplicate values with 400, and chunked bodies have none.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

/// `X-Checksum-Sha256`, if sent: 64 hex digits.
fn expected_sha256(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(value) = headers.get("x-checksum-sha256") else { return Ok(None) };
    let hex = value.to_str().unwrap_or_default().trim().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(Some(hex))
    } else {
        Err(AppError::InvalidChecksum)
    }
}

/// What the extractors of the spooling strategy read from the app: actix-multipart's own limits, and where it
/// spools (the data directory's `tmp/`, so a publish is a rename).
pub fn extractor_config(limits: Limits, tmp: &Path) -> impl FnOnce(&mut web::ServiceConfig) + use<> {
    let tmp = tmp.to_owned();
    move |cfg| {
        let form = MultipartFormConfig::default()
            .total_limit(usize::try_from(limits.max_upload_bytes).unwrap_or(usize::MAX))
            .memory_limit(ENVELOPE_BYTES as usize);
        cfg.app_data(form).app_data(TempFileConfig::default().directory(tmp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_the_prefix_and_the_name() {
        for strategy in Strategy::ALL {
            assert_eq!(format!("{PREFIX}{}", strategy.name()), strategy.path());
        }
    }
}
