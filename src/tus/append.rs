//! A PATCH's bytes (or creation-with-upload's): appended at the recorded offset under the upload's lock, hashed
//! into the whole file's SHA-256 state and into the request's own checksum, made durable and recorded, then
//! published once the last byte is in.

use std::io::{Seek, SeekFrom};

use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{
    headers::{self, Algorithm},
    store::{UploadId, UploadState, Uploads},
};
use crate::{
    error::AppError,
    state::AppState,
    storage::{ASYNC_WRITE_BUF, ROOM_CHECK},
    upload::{Body, payload_error},
};

/// A PATCH without a checksum records its progress every this many bytes, so a crash mid-PATCH loses at most
/// this much of it (the rest is recorded when the body ends, however it ends).
const CHECKPOINT: u64 = 64 << 20;

/// The request's own checksum, computed over its bytes only.
enum Check {
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Check {
    fn new(algorithm: Algorithm) -> Check {
        match algorithm {
            Algorithm::Sha1 => Check::Sha1(Sha1::new()),
            Algorithm::Sha256 => Check::Sha256(Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Check::Sha1(h) => h.update(bytes),
            Check::Sha256(h) => h.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Check::Sha1(h) => h.finalize().to_vec(),
            Check::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

/// Receives the body at `offset` (the client's `Upload-Offset`, or 0 for creation-with-upload). Returns the
/// upload's state afterwards and the body bytes received, whatever the outcome.
pub async fn append(
    req: &HttpRequest,
    payload: web::Payload,
    app: &AppState,
    uploads: &Uploads,
    id: &UploadId,
    offset: u64,
) -> (Result<UploadState, AppError>, u64) {
    let checksum = match headers::checksum(req.headers()) {
        Ok(checksum) => checksum,
        Err(err) => return (Err(err), 0),
    };
    let opened = {
        let (uploads, id) = (uploads.clone(), id.clone());
        let length = headers::number(req.headers(), "upload-length");
        let max = app.limits.max_upload_bytes;
        web::block(move || open(&uploads, &id, length?, max)).await.map_err(AppError::from).and_then(|r| r)
    };
    let (file, mut state) = match opened {
        Ok(Opened::Finished(state)) if state.offset == offset && super::no_body(req) => {
            return (Ok(state), 0);
        }
        Ok(Opened::Finished(state)) | Ok(Opened::Open(_, state)) if state.offset != offset => {
            return (Err(AppError::OffsetMismatch { offset: state.offset }), 0);
        }
        // every byte is in: there is no room for more
        Ok(Opened::Finished(state)) => return (Err(AppError::PayloadTooLarge { limit: state.offset }), 0),
        Ok(Opened::Open(file, state)) => (file, state),
        Err(err) => return (Err(err), 0),
    };
    let limit = state.length.unwrap_or(app.limits.max_upload_bytes);
    let room = limit.saturating_sub(state.offset);
    if content_length(req).is_some_and(|len| len > room) {
        return (Err(AppError::PayloadTooLarge { limit }), 0);
    }
    if let Err(full) = app.storage.ensure_local_room(content_length(req).unwrap_or(0)) {
        return (Err(full), 0);
    }
    let (body, probe) = Body::new(payload, app.limits.body_idle_timeout, room, limit);
    let start = state.offset;
    let mut check = checksum.as_ref().map(|(algorithm, _)| Check::new(*algorithm));
    let outcome = write(body, &file, &mut state, uploads, id, check.as_mut(), app).await;
    let outcome = probe.explain(outcome);
    let received = probe.received();
    let mismatch = match (&checksum, check) {
        (Some((_, expected)), Some(check)) if outcome.is_ok() => (check.finish() != *expected).then_some(()),
        _ => None,
    };
    let uploads = uploads.clone();
    let id = id.clone();
    let result = web::block(move || -> Result<UploadState, AppError> {
        if checksum.is_some() && (outcome.is_err() || mismatch.is_some()) {
            // the PATCH's bytes cannot be vouched for: none of them count
            file.set_len(start)?;
            outcome?;
            return Err(AppError::ChecksumMismatch);
        }
        if state.offset > start {
            state.expires_ms = uploads.expires_from_now();
            uploads.checkpoint(&id, &file, &state)?;
        }
        outcome?;
        if state.complete() {
            uploads.finish(&id, &file, &mut state)?;
        }
        Ok(state)
    })
    .await;
    (result.map_err(AppError::from).and_then(|r| r), received)
}

/// Blocking: the upload's state, for HEAD. One whose last bytes came but that was never published (a crash in
/// between) is published now, unless a PATCH holds it.
pub fn settle(uploads: &Uploads, id: &UploadId, max: u64) -> Result<UploadState, AppError> {
    let state = uploads.load(id)?;
    if !state.complete() || state.file_id.is_some() {
        return Ok(state);
    }
    match open(uploads, id, None, max) {
        Ok(Opened::Finished(state) | Opened::Open(_, state)) => Ok(state),
        Err(AppError::UploadLocked) => Ok(state),
        Err(err) => Err(err),
    }
}

enum Opened {
    /// Locked, trimmed to its recorded offset, ready for more bytes.
    Open(std::fs::File, UploadState),
    /// Published already.
    Finished(UploadState),
}

/// Blocking: the upload, locked against concurrent PATCHes, with the length a deferred-length upload now gives.
fn open(uploads: &Uploads, id: &UploadId, length: Option<u64>, max: u64) -> Result<Opened, AppError> {
    let state = uploads.load(id)?;
    if state.file_id.is_some() {
        return Ok(Opened::Finished(state));
    }
    let mut file = match uploads.lock(id) {
        Ok(file) => file,
        // published between the two looks
        Err(AppError::NoUpload) => return Ok(Opened::Finished(uploads.load(id)?)),
        Err(err) => return Err(err),
    };
    // what was read before the lock may be stale
    let mut state = uploads.load(id)?;
    uploads.trim(id, &file, &state)?;
    match (length, state.length) {
        (Some(length), None) if length < state.offset => {
            return Err(AppError::InvalidHeader(format!(
                "Upload-Length is less than the {} bytes received",
                state.offset
            )));
        }
        (Some(length), None) if length > max => return Err(AppError::PayloadTooLarge { limit: max }),
        (Some(length), None) => {
            state.length = Some(length);
            uploads.save(id, &state)?;
        }
        (Some(length), Some(known)) if length != known => {
            return Err(AppError::InvalidHeader(format!("Upload-Length is {known} already and cannot change")));
        }
        _ => {}
    }
    if state.complete() {
        // the last bytes came but the publish did not (a crash in between): finish now
        uploads.finish(id, &file, &mut state)?;
        return Ok(Opened::Finished(state));
    }
    file.seek(SeekFrom::Start(state.offset))?;
    Ok(Opened::Open(file, state))
}

/// Writes the body after the recorded bytes, keeping `state` (offset and hash state) in step with what is
/// written, and recording it every [`CHECKPOINT`] bytes when the request carries no checksum.
async fn write(
    mut body: Body,
    file: &std::fs::File,
    state: &mut UploadState,
    uploads: &Uploads,
    id: &UploadId,
    mut check: Option<&mut Check>,
    app: &AppState,
) -> Result<(), AppError> {
    let mut hasher = state.hasher()?;
    let mut out = tokio::fs::File::from_std(file.try_clone()?);
    out.set_max_buf_size(ASYNC_WRITE_BUF);
    let (start, mut written, mut recorded) = (state.offset, 0u64, 0u64);
    // tokio reports a failed write on the next write or flush, after its chunk was counted: once one fails, only
    // the last checkpoint's offset and hash state are known to match the file
    let mut write_failed = false;
    let result = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(payload_error)?;
            let len = chunk.len() as u64;
            if (written + len) / ROOM_CHECK > written / ROOM_CHECK {
                app.storage.ensure_local_room(ROOM_CHECK)?;
            }
            if let Err(err) = out.write_all(&chunk).await {
                write_failed = true;
                return Err(err.into());
            }
            hasher.update(&chunk);
            if let Some(check) = check.as_deref_mut() {
                check.update(&chunk);
            }
            written += len;
            if check.is_none() && written - recorded >= CHECKPOINT {
                if let Err(err) = out.flush().await {
                    write_failed = true;
                    return Err(err.into());
                }
                state.offset = start + written;
                state.keep_hasher(&hasher);
                state.expires_ms = uploads.expires_from_now();
                let (uploads, id, file, snapshot) = (uploads.clone(), id.clone(), file.try_clone()?, state.clone());
                web::block(move || uploads.checkpoint(&id, &file, &snapshot)).await??;
                recorded = written;
            }
        }
        Ok::<(), AppError>(())
    }
    .await;
    // a write still on the blocking pool must land before anyone decides what the file holds
    match out.flush().await {
        Ok(()) if !write_failed => {
            state.offset = start + written;
            state.keep_hasher(&hasher);
            result
        }
        // `state` stays at the last checkpoint; the next PATCH trims the file back to it
        Ok(()) => result,
        Err(err) => result.and(Err(err.into())),
    }
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers().get(actix_web::http::header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}
