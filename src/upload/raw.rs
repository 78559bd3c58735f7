//! Raw-body strategies: the request body is the file, stored exactly as sent whatever its Content-Type.

use actix_web::{HttpMessage, HttpRequest, http::header, web};
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{Strategy, Upload, body::Body, body::payload_error};
use crate::{error::AppError, storage::StoredFile};

/// Where a raw upload's filename comes from when not from `Content-Disposition`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RawQuery {
    /// Name to record for the file, e.g. `photo.jpg`; otherwise the `Content-Disposition` filename, otherwise
    /// `upload.bin`. When the request's Content-Type says nothing useful, the file's type is guessed from this
    /// name's extension.
    #[param(example = "photo.jpg")]
    pub filename: Option<String>,
}

pub(super) async fn receive(upload: &Upload<'_>, mut body: Body) -> Result<StoredFile, AppError> {
    let mut sink = upload.sink().await?;
    while let Some(chunk) = body.next().await {
        sink.write(chunk.map_err(payload_error)?).await?;
    }
    let filename = raw_filename(upload.req);
    let content_type = content_type(upload.req, filename.as_deref());
    sink.commit(upload.describe(filename.as_deref(), content_type.as_ref())).await
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

/// The client's Content-Type, unless it says nothing about the file: none, `application/octet-stream`, or the
/// `application/x-www-form-urlencoded` that `curl --data-binary` sends by default. Then the type is guessed from
/// the filename's extension.
fn content_type(req: &HttpRequest, filename: Option<&str>) -> Option<mime::Mime> {
    let sent = req.mime_type().ok().flatten();
    let says_nothing = sent.as_ref().is_none_or(|m| {
        *m == mime::APPLICATION_OCTET_STREAM || m.essence_str() == mime::APPLICATION_WWW_FORM_URLENCODED.essence_str()
    });
    if says_nothing { filename.and_then(|name| mime_guess::from_path(name).first()) } else { sent }
}

/// A raw endpoint stores a multipart body verbatim, envelope and all, as the contract says; the client most
/// likely meant a multipart endpoint, so the 201 says so.
pub(super) fn warning(req: &HttpRequest) -> Option<String> {
    let sent = req.mime_type().ok().flatten()?;
    (sent.type_() == mime::MULTIPART && sent.subtype() == mime::FORM_DATA).then(|| {
        format!(
            "the multipart/form-data body was stored as sent, boundaries and part headers included; to store the \
             file inside it, send it to a multipart endpoint such as {}",
            Strategy::SingleStream.path()
        )
    })
}
