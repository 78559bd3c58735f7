//! Multipart strategies: the file is the form part named `file`; other parts are read and ignored.

use std::panic::AssertUnwindSafe;

use actix_multipart::{
    Field, Multipart, MultipartError,
    form::{
        MultipartForm,
        tempfile::{TempFile, TempFileError},
    },
};
use actix_web::{FromRequest, dev};
use bytes::BytesMut;
use futures_util::{FutureExt, TryStreamExt};
use utoipa::ToSchema;

use super::{Upload, body::Body, body::payload_error};
use crate::{
    error::AppError,
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

/// Lets actix-multipart's `MultipartForm<TempFile>` spool the part into `<data>/tmp/` (see
/// [`super::extractor_config`]), then adopts that file.
pub(super) async fn receive_spooled(upload: &Upload<'_>, body: Body) -> Result<StoredFile, AppError> {
    #[derive(actix_multipart::form::MultipartForm)]
    #[multipart(duplicate_field = "deny")]
    struct Spooled {
        file: TempFile,
    }

    let body: std::pin::Pin<Box<dyn futures_util::Stream<Item = _>>> = Box::pin(body);
    let mut payload = dev::Payload::Stream { payload: body };
    // actix-multipart asserts (in debug builds) that every part has a name, and a client sending `name=""`
    // trips it; a malformed body must never take a worker's task down with it.
    let parsed = AssertUnwindSafe(MultipartForm::<Spooled>::from_request(upload.req, &mut payload)).catch_unwind();
    let form =
        parsed.await.map_err(|_| AppError::MalformedMultipart("a part has no usable name".into()))?.map_err(|err| {
            match err.as_error::<MultipartError>() {
                Some(MultipartError::Field { source, .. }) => match source.as_error::<TempFileError>() {
                    // the spooling write failed: a full disk is 507, like in every other strategy
                    Some(TempFileError::FileIo(io)) => std::io::Error::new(io.kind(), io.to_string()).into(),
                    _ => AppError::Internal(source.to_string().into()),
                },
                Some(MultipartError::MissingField(_)) => AppError::MissingFile,
                Some(MultipartError::DuplicateField(_)) => AppError::DuplicateFile,
                Some(MultipartError::Payload(actix_web::error::PayloadError::Overflow)) => {
                    AppError::PayloadTooLarge { limit: upload.limit }
                }
                _ => AppError::MalformedMultipart(err.to_string()),
            }
        })?;
    let Spooled { file } = form.into_inner();
    let described = upload.describe(file.file_name.as_deref(), file.content_type.as_ref());
    UploadSink::adopt(upload.storage, file.file, upload.limit).await?.commit(described).await
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
            return Err(AppError::DuplicateFile);
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

fn multipart_error(err: MultipartError, limit: u64) -> AppError {
    match err {
        MultipartError::Payload(actix_web::error::PayloadError::Overflow) => AppError::PayloadTooLarge { limit },
        MultipartError::Payload(err) => payload_error(err),
        err => AppError::MalformedMultipart(err.to_string()),
    }
}
