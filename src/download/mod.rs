//! The five download strategies. They differ only in how they read the file; validators, conditional requests,
//! ranges and headers come from [`http`], so the same request gets the same answer from each of them.
//!
//! [`endpoints!`] below is the one table of download endpoints, as in [`crate::upload`].

mod doc;
pub mod http;

use std::{
    io::{self, Read, Seek, SeekFrom},
    path::Path,
    task::Poll,
};

use actix_files::NamedFile;
use actix_web::{
    HttpRequest, HttpResponse,
    body::SizedStream,
    http::{Method, header},
    route, web,
};
use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;
use utoipa_actix_web::service_config::ServiceConfig;

pub use self::doc::{DownloadHeaders, DownloadResponses};
use self::http::{Decision, Representation, Span};
use crate::{
    cache::{FileCache, Lease},
    error::AppError,
    state::AppState,
    storage::{CHUNK, FileId, S3},
};

/// Every download path starts with this and ends with [`ID`]; between them is the strategy's name.
const PREFIX: &str = "/files/download/";
const ID: &str = "/{id}";

/// One row per strategy: `Variant => "path", handler;` after the operation's doc comment, in the order of the
/// post's table.
macro_rules! endpoints {
    ($($(#[doc = $doc:literal])* $variant:ident => $path:tt, $handler:ident;)*) => {
        /// How a strategy reads the file.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Reader { $($variant),* }

        impl Reader {
            /// Every strategy, in the order of the post's table.
            pub const ALL: [Reader; [$(stringify!($variant)),*].len()] = [$(Reader::$variant),*];

            /// The endpoint's path template, with `{id}`.
            pub const fn template(self) -> &'static str {
                match self { $(Reader::$variant => $path),* }
            }
        }

        $(
            $(#[doc = $doc])*
            #[utoipa::path(
                method(get, head),
                tag = "download",
                params(("id" = uuid::Uuid, Path, description = "File id"), DownloadHeaders),
                responses(DownloadResponses)
            )]
            #[route($path, method = "GET", method = "HEAD")]
            async fn $handler(req: HttpRequest, state: web::Data<AppState>, id: web::Path<FileId>) -> Result<HttpResponse, AppError> {
                serve(req, state, *id, Reader::$variant).await
            }
        )*

        pub fn configure(cfg: &mut ServiceConfig) {
            $(cfg.service($handler);)*
        }
    };
}

endpoints! {
    /// Stream, blocking reads on the worker
    ///
    /// Opens the file and streams it in 256 KiB chunks read with blocking `std::fs` reads on the worker thread:
    /// no thread hops, lowest overhead when the file is in the page cache; a slow disk stalls the worker. The
    /// benchmark's streamed response with sync reads.
    SyncRead => "/files/download/stream/sync_read/{id}", sync_read;

    /// Stream, async reads
    ///
    /// Streams the file in 256 KiB chunks read with `tokio::fs` (each read runs on the blocking pool): the worker
    /// never waits on the disk. The benchmark's streamed response with async reads; pick it for slow or remote
    /// disks.
    AsyncRead => "/files/download/stream/async_read/{id}", async_read;

    /// File response (actix-files), async open
    ///
    /// Opens the file with `actix_files::NamedFile` on the blocking pool (what `open_async` did before
    /// actix-files 0.7) and lets actix-files stream it in 64 KiB blocking-pool reads. The benchmark's
    /// `FileResponse`; the idiomatic actix way to send a file.
    NamedFile => "/files/download/file/{id}", named_file;

    /// File response (actix-files), blocking open and reads
    ///
    /// `actix_files::NamedFile::open` opens the file on the worker thread, and actix-files reads it there too
    /// (64 KiB at a time): no thread hops, but a slow disk stalls the worker.
    NamedFileSync => "/files/download/file/sync/{id}", named_file_sync;

    /// Whole file from memory
    ///
    /// Serves the file from an in-memory LRU of whole files (`--cache-bytes`), reading it once on a miss; files
    /// over `--cache-max-file-bytes` are streamed with async reads instead. Answers hot small files without
    /// touching the disk or copying: the fastest way to serve a working set that fits in memory.
    Cached => "/files/download/cached/{id}", cached;
}

impl Reader {
    /// The endpoint's path below `/files/download/`, before the id.
    pub const fn name(self) -> &'static str {
        let rest = self.template().split_at(PREFIX.len()).1;
        rest.split_at(rest.len() - ID.len()).0
    }

    /// The path that downloads `id` with this strategy.
    pub fn path(self, id: &str) -> String {
        self.template().replace("{id}", id)
    }

    /// What the benchmark table says about how much of the file is held at once.
    pub const fn streamed(self) -> &'static str {
        match self {
            Reader::Cached => "no (whole file from memory)",
            _ => "yes",
        }
    }
}

/// Opens stored content for a reader: a file deleted since its metadata was looked up is gone (404); any other
/// failure is the server's.
fn missing_is_gone(err: io::Error) -> AppError {
    match err.kind() {
        io::ErrorKind::NotFound => AppError::NotFound,
        _ => err.into(),
    }
}

/// Every download endpoint's body.
async fn serve(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: FileId,
    reader: Reader,
) -> Result<HttpResponse, AppError> {
    let file = state.storage.get(id).await?.ok_or(AppError::NotFound)?;
    let rep = Representation::new(&file);
    let span = match rep.decide(req.method(), req.headers()) {
        Decision::PreconditionFailed => return Err(AppError::PreconditionFailed),
        Decision::NotModified => return Ok(with_headers(HttpResponse::NotModified().finish(), &rep, None)),
        Decision::Unsatisfiable => return Err(AppError::RangeNotSatisfiable { size: file.size }),
        Decision::Send(span) => span,
    };
    let (status, content_range) = rep.status(span);
    let stored = Stored { id, size: file.size };
    let sized =
        |stream: ChunkStream| HttpResponse::build(status).body(SizedStream::new(span.len, exactly(id, span, stream)));
    if let Some(s3) = state.storage.object_store() {
        let res = match req.method() == Method::HEAD {
            // there is no body to send: a HEAD to the bucket proves the content is there
            true => {
                s3.check(id).await.map_err(|err| gone(&state, id, err))?;
                let nothing = futures_util::stream::empty::<io::Result<Bytes>>();
                HttpResponse::build(status).no_chunking(span.len).streaming(nothing)
            }
            false => from_bucket(&state, s3, stored, span, reader, sized).await?,
        };
        return Ok(with_headers(res, &rep, content_range));
    }
    let path = state.storage.content_path(id);
    let res = match reader {
        Reader::SyncRead => {
            let opened = std::fs::File::open(&path).map_err(missing_is_gone)?;
            stored.check(opened.metadata()?.len());
            sized(Box::pin(sync_chunks(opened, span)?))
        }
        Reader::AsyncRead => sized(async_chunks(&path, span, stored).await.map_err(missing_is_gone)?),
        Reader::NamedFile => {
            // actix-files 0.7 has no `open_async`: this is what it did, an open on the blocking pool
            let path = path.clone();
            let opened = web::block(move || NamedFile::open(path)).await?.map_err(missing_is_gone)?;
            named(opened, &req, span, stored, sized)?
        }
        Reader::NamedFileSync => {
            let opened = NamedFile::open(&path).map_err(missing_is_gone)?;
            named(opened.read_mode_threshold(u64::MAX), &req, span, stored, sized)?
        }
        Reader::Cached => {
            match cache_lookup(&state, id, file.size, FileCache::read(&path)).await.map_err(missing_is_gone)? {
                Some(lease) => {
                    if state.storage.get(id).await?.is_none() {
                        // deleted while we read it: do not keep it
                        state.cache.remove(id);
                    }
                    sized(Box::pin(leased_chunks(lease, span)))
                }
                // too large to cache, or not the size recorded (never cached): streamed, and cut short if need be
                None => sized(async_chunks(&path, span, stored).await.map_err(missing_is_gone)?),
            }
        }
    };
    Ok(with_headers(res, &rep, content_range))
}

/// The cached strategy's lookup, counted as a hit or a miss; `read` reads the whole file on a miss (from disk or
/// from the bucket).
async fn cache_lookup(
    state: &AppState,
    id: FileId,
    size: u64,
    read: impl Future<Output = io::Result<Bytes>>,
) -> io::Result<Option<Lease>> {
    state.metrics.cache_lookup(state.cache.contains(id));
    state.cache.load_with(id, size, read).await
}

/// On S3 no strategy has a local file to read: each sends the stream of one ranged GET,
/// so the same request gets the same answer from every strategy, as on disk. `cached` keeps whole small files
/// from the bucket in memory, as it does from disk. Content found gone was deleted by another replica: 404, and
/// the row read for it is forgotten.
async fn from_bucket(
    state: &AppState,
    s3: &S3,
    stored: Stored,
    span: Span,
    reader: Reader,
    sized: impl FnOnce(ChunkStream) -> HttpResponse,
) -> Result<HttpResponse, AppError> {
    let Stored { id, size } = stored;
    if reader == Reader::Cached {
        let lookup = cache_lookup(state, id, size, s3.read_all(id)).await;
        if let Some(lease) = lookup.map_err(|err| gone(state, id, err))? {
            return Ok(sized(Box::pin(leased_chunks(lease, span))));
        }
    }
    let stream = s3.read(id, span.start, span.len).await.map_err(|err| gone(state, id, err))?;
    Ok(sized(stream))
}

/// Content found missing in the bucket was deleted by another replica: 404, and what this one remembered of the
/// file is forgotten.
fn gone(state: &AppState, id: FileId, err: io::Error) -> AppError {
    if err.kind() == io::ErrorKind::NotFound {
        state.storage.forget(id);
        state.cache.remove(id);
    }
    missing_is_gone(err)
}

/// actix's write buffer takes no more once it holds 32 KiB; a chunk not much larger keeps a slow reader's copy
/// small.
const LEASED_CHUNK: u64 = 64 * 1024;

type ChunkStream = std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>>>>;

/// A stored file as a reader opens it: its id and the size its metadata promises.
#[derive(Debug, Clone, Copy)]
struct Stored {
    id: FileId,
    size: u64,
}

impl Stored {
    /// Whether the opened content has the recorded size; logs when it has not (startup quarantines such files,
    /// so this is damage since then).
    fn check(self, actual: u64) -> bool {
        let Stored { id, size } = self;
        if actual != size {
            log::error!(
                "content of {id} is {actual} bytes, its metadata says {size}: sending at most the recorded bytes and \
                 cutting the response short where they are missing; restart ferry to quarantine the file"
            );
        }
        actual == size
    }
}

/// Passes on exactly the `span.len` bytes promised in Content-Length and fails the body when the content ends
/// before them: actix then closes the connection before Content-Length bytes are sent, so the client can tell the
/// body is incomplete (a complete-looking response of the wrong length under the file's ETag would be believed).
/// Bytes past the span are never sent.
fn exactly(id: FileId, span: Span, mut chunks: ChunkStream) -> ChunkStream {
    let (len, mut remaining, mut failed) = (span.len, span.len, false);
    Box::pin(futures_util::stream::poll_fn(move |cx| {
        if remaining == 0 || failed {
            return Poll::Ready(None);
        }
        let item = match std::task::ready!(chunks.as_mut().poll_next(cx)) {
            Some(Ok(mut chunk)) => {
                chunk.truncate(remaining.min(chunk.len() as u64) as usize);
                remaining -= chunk.len() as u64;
                Ok(chunk)
            }
            Some(Err(err)) => {
                log::error!("reading the content of {id} failed with {remaining} of {len} bytes unsent: {err}");
                Err(err)
            }
            None => {
                log::error!("content of {id} ended {remaining} bytes short of the {len} promised: response cut short");
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("content of {id} ended early")))
            }
        };
        failed = item.is_err();
        Poll::Ready(Some(item))
    }))
}

/// Blocking `std::fs` reads of up to 256 KiB on the worker thread, one per chunk the client takes; ends at the
/// span's end or the file's, whichever comes first.
fn sync_chunks(mut file: std::fs::File, span: Span) -> io::Result<impl Stream<Item = io::Result<Bytes>> + 'static> {
    file.seek(SeekFrom::Start(span.start))?;
    let mut remaining = span.len;
    Ok(futures_util::stream::poll_fn(move |_| {
        if remaining == 0 {
            return Poll::Ready(None);
        }
        let mut buf = BytesMut::zeroed(remaining.min(CHUNK as u64) as usize);
        match file.read(&mut buf) {
            Ok(0) => Poll::Ready(None),
            Ok(n) => {
                remaining -= n as u64;
                buf.truncate(n);
                Poll::Ready(Some(Ok(buf.freeze())))
            }
            Err(err) => Poll::Ready(Some(Err(err))),
        }
    }))
}

/// A cached file in slices of up to 64 KiB (no copy), holding its lease until the last one is sent. actix
/// copies each chunk into the connection's write buffer and asks for the next only once that has drained, so
/// a slow reader holds one small chunk of its own, never a copy of the whole file (before, 80 stalled readers
/// of 8 MiB files grew the server by 958 MiB through a 16 MiB cache).
fn leased_chunks(lease: Lease, span: Span) -> impl Stream<Item = io::Result<Bytes>> + 'static {
    let end = span.start + span.len;
    futures_util::stream::unfold((lease, span.start), move |(lease, at)| async move {
        if at >= end {
            return None;
        }
        let next = end.min(at + LEASED_CHUNK);
        let chunk = lease.bytes().slice(at as usize..next as usize);
        Some((Ok(chunk), (lease, next)))
    })
}

/// `tokio::fs` reads of up to 256 KiB, each on the blocking pool. The open, the size check and the seek share one
/// trip there.
async fn async_chunks(path: &Path, span: Span, stored: Stored) -> io::Result<ChunkStream> {
    let path = path.to_owned();
    // the size check logs damage: carry the request's id there
    let file = tokio::task::spawn_blocking(crate::request_id::carry(move || {
        let mut file = std::fs::File::open(path)?;
        stored.check(file.metadata()?.len());
        if span.start > 0 {
            file.seek(SeekFrom::Start(span.start))?;
        }
        Ok::<_, io::Error>(file)
    }))
    .await
    .map_err(io::Error::other)??;
    Ok(Box::pin(ReaderStream::with_capacity(tokio::fs::File::from_std(file).take(span.len), CHUNK)))
}

/// actix-files answers plain requests itself. Its own conditional and range logic uses other validators (an
/// inode/mtime ETag) and other rules (a malformed Range gets 416), so ranged and `If-Match` requests are answered
/// by ferry's reader over the file actix-files opened. So is content that is not the recorded size: actix-files
/// would send it whole, its Content-Length the file's length now, under the recorded file's ETag.
fn named(
    file: NamedFile,
    req: &HttpRequest,
    span: Span,
    stored: Stored,
    sized: impl FnOnce(ChunkStream) -> HttpResponse,
) -> io::Result<HttpResponse> {
    let headers = req.headers();
    let sound = stored.check(file.metadata().len());
    if !sound || span.partial || headers.contains_key(header::RANGE) || headers.contains_key(header::IF_MATCH) {
        let opened = file.file().try_clone()?;
        return Ok(sized(Box::pin(sync_chunks(opened, span)?)));
    }
    let file = file.use_etag(false).use_last_modified(false).disable_content_disposition();
    Ok(file.into_response(req))
}

fn with_headers(
    mut res: HttpResponse,
    rep: &Representation,
    content_range: Option<header::HeaderValue>,
) -> HttpResponse {
    let headers = res.headers_mut();
    for (name, value) in rep.headers() {
        headers.insert(name, value);
    }
    if let Some(range) = content_range {
        headers.insert(header::CONTENT_RANGE, range);
    }
    res
}
