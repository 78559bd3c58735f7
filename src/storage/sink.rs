//! The one upload sink every strategy writes through: temp file, sha256 and byte count while writing, the
//! strategy's own way of writing, then publish. Dropping a sink before `commit` removes its temp file, so a
//! client that leaves, a limit, a timeout or a bad digest never leaves anything behind.

use std::io::{BufWriter, Read, Write};

use actix_web::web::{self, Bytes};
use sha2::{Digest, Sha256};
use tempfile::{NamedTempFile, TempPath};
use tokio::io::AsyncWriteExt;

use super::{NewFile, ObjectWriter, Storage, StoredFile};
use crate::error::{AppError, IoContext};

/// Bytes per read or buffered write: large enough to keep syscalls rare, small enough to stay cache-friendly.
pub const CHUNK: usize = 256 * 1024;

/// The most `tokio::fs` copies for one write on the blocking pool. Its default, 2 MiB, keeps a copy of every
/// whole network chunk (actix hands over up to 256 KiB at a time) per upload: at -c100 that doubled the
/// server's peak RSS (123 MiB against 63 MiB) for no measurable gain in requests/sec.
pub const ASYNC_WRITE_BUF: usize = 128 * 1024;

/// How often, in bytes written, an upload looks at the free space left.
pub const ROOM_CHECK: u64 = 8 << 20;

/// How a strategy writes the bytes it has read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// `std::fs` writes gathered in a 256 KiB in-memory buffer, on the worker thread.
    Buffered,
    /// `std::fs` writes straight from each chunk, on the worker thread.
    Inline,
    /// `tokio::fs` writes (each one hops to the blocking pool).
    Async,
    /// `std::fs` writes inside `web::block`, on the blocking pool.
    Blocking,
}

enum Writer {
    Buffered(BufWriter<std::fs::File>),
    Inline(std::fs::File),
    Async(tokio::fs::File),
    /// `None` only while a write is on the blocking pool.
    Blocking(Option<std::fs::File>),
    /// On S3, whatever the strategy: parts of a multipart upload (or one PUT), straight from memory. Dropping it
    /// aborts the upload.
    Object(ObjectWriter),
}

pub struct UploadSink {
    storage: Storage,
    /// Removes the temp file when dropped, unless `commit` has moved it into place; none on S3.
    temp: Option<TempPath>,
    writer: Writer,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

impl UploadSink {
    /// Opens a fresh temp file under `<data>/tmp/` for a file of at most `limit` bytes; on S3, an object.
    pub async fn create(storage: &Storage, mode: WriteMode, limit: u64) -> Result<Self, AppError> {
        if let Some(s3) = storage.object_store() {
            let writer = Writer::Object(s3.writer(super::FileId::new(), limit));
            return Ok(UploadSink {
                storage: storage.clone(),
                temp: None,
                writer,
                hasher: Sha256::new(),
                size: 0,
                limit,
            });
        }
        let dir = storage.tmp_dir().to_owned();
        let create =
            move || NamedTempFile::new_in(&dir).context(|| format!("creating a temp file in {}", dir.display()));
        let temp = match mode {
            // these strategies block the worker by definition; the others never do
            WriteMode::Buffered | WriteMode::Inline => create()?,
            WriteMode::Async | WriteMode::Blocking => web::block(create).await??,
        };
        let (file, temp) = temp.into_parts();
        let writer = match mode {
            WriteMode::Buffered => Writer::Buffered(BufWriter::with_capacity(CHUNK, file)),
            WriteMode::Inline => Writer::Inline(file),
            WriteMode::Async => {
                let mut file = tokio::fs::File::from_std(file);
                file.set_max_buf_size(ASYNC_WRITE_BUF);
                Writer::Async(file)
            }
            WriteMode::Blocking => Writer::Blocking(Some(file)),
        };
        Ok(UploadSink { storage: storage.clone(), temp: Some(temp), writer, hasher: Sha256::new(), size: 0, limit })
    }

    /// Takes over a file someone else has already written (actix-multipart's spooled part) and hashes it with
    /// blocking reads on the blocking pool. On S3 its bytes are sent to the bucket as they are read.
    pub async fn adopt(storage: &Storage, spooled: NamedTempFile, limit: u64) -> Result<Self, AppError> {
        if storage.object_store().is_some() {
            let mut sink = UploadSink::create(storage, WriteMode::Async, limit).await?;
            let mut chunks =
                tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(spooled.reopen()?), CHUNK);
            while let Some(chunk) = futures_util::StreamExt::next(&mut chunks).await {
                sink.write(chunk?).await?;
            }
            return Ok(sink); // the spooled file goes when `spooled` does
        }
        let (file, temp) = spooled.into_parts();
        let (file, hasher, size) = web::block(move || hash_file(file)).await??;
        if size > limit {
            return Err(AppError::PayloadTooLarge { limit });
        }
        let writer = Writer::Blocking(Some(file));
        Ok(UploadSink { storage: storage.clone(), temp: Some(temp), writer, hasher, size, limit })
    }

    /// Appends a chunk, or fails without writing it when it would take the file past the limit.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), AppError> {
        let size = self.size + chunk.len() as u64;
        if size > self.limit {
            return Err(AppError::PayloadTooLarge { limit: self.limit });
        }
        // a body whose size was not announced stops at --min-free-bytes: the volume is looked at every 8 MiB
        if size / ROOM_CHECK > self.size / ROOM_CHECK {
            self.storage.ensure_room(ROOM_CHECK)?;
        }
        self.size = size;
        self.hasher.update(&chunk);
        match &mut self.writer {
            Writer::Buffered(w) => w.write_all(&chunk)?,
            Writer::Inline(f) => f.write_all(&chunk)?,
            Writer::Async(f) => f.write_all(&chunk).await?,
            Writer::Object(object) => object.write(chunk).await?,
            Writer::Blocking(slot) => {
                let mut file = slot.take().ok_or_else(interrupted)?;
                let (file, written) = web::block(move || {
                    let written = file.write_all(&chunk);
                    (file, written)
                })
                .await?;
                *slot = Some(file);
                written?;
            }
        }
        Ok(())
    }

    /// Checks the client's digest, then publishes the file: nothing is visible to readers before this returns.
    pub async fn commit(self, new: NewFile) -> Result<StoredFile, AppError> {
        let sha256 = hex::encode(self.hasher.finalize());
        if let Some(expected) = &new.expected_sha256
            && *expected != sha256
        {
            return Err(AppError::DigestMismatch { expected: expected.clone(), actual: sha256 });
        }
        let file = match self.writer {
            Writer::Object(object) => return self.storage.publish_object(object, new, self.size, sha256).await,
            Writer::Buffered(w) => w.into_inner().map_err(|e| e.into_error())?,
            Writer::Inline(f) => f,
            Writer::Async(mut f) => {
                f.flush().await?;
                f.into_std().await
            }
            Writer::Blocking(slot) => slot.ok_or_else(interrupted)?,
        };
        let (storage, size) = (self.storage, self.size);
        let temp = self.temp.expect("a temp file on local disk");
        web::block(move || storage.publish(file, temp, new, size, sha256)).await?
    }
}

pub(super) fn hash_file(mut file: std::fs::File) -> std::io::Result<(std::fs::File, Sha256, u64)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; CHUNK];
    let mut size = 0;
    loop {
        match file.read(&mut buf)? {
            0 => return Ok((file, hasher, size)),
            n => {
                hasher.update(&buf[..n]);
                size += n as u64;
            }
        }
    }
}

fn interrupted() -> AppError {
    AppError::Internal("an earlier write to this upload was interrupted".into())
}
