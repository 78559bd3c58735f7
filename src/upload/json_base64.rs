//! The JSON strategy: the file travels base64-encoded inside a JSON document.

use std::borrow::Cow;

use actix_web::{HttpMessage, HttpRequest, HttpResponse, post, web};
use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::{Strategy, Upload, body::Body};
use crate::{
    error::AppError,
    openapi::{ChecksumHeader, UploadResponses},
    startup::AppState,
    storage::StoredFile,
};

/// Standard alphabet; padding optional, since many encoders leave it out.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A file sent as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"filename": "hello.txt", "data": "aGVsbG8gZmVycnkK", "content_type": "text/plain"}))]
pub struct Base64Upload<'a> {
    /// Name to record for the file.
    #[serde(borrow)]
    pub filename: Option<Cow<'a, str>>,
    /// The file's bytes in base64 (standard alphabet, padding optional).
    #[serde(borrow)]
    #[schema(value_type = String, content_encoding = "base64")]
    pub data: Cow<'a, str>,
    /// Media type to record (default `application/octet-stream`).
    #[serde(borrow)]
    pub content_type: Option<Cow<'a, str>>,
}

pub(super) async fn receive(upload: &Upload<'_>, body: Body) -> Result<StoredFile, AppError> {
    require_json(upload.req)?;
    let json = body.read_to_end(upload.capacity_for(upload.strategy.body_limit(upload.limit))).await?;
    let doc: Base64Upload = serde_json::from_slice(&json)
        .map_err(|e| AppError::BadRequest(format!("the body is not the expected JSON document: {e}")))?;
    let data = BASE64.decode(doc.data.as_bytes()).map_err(|e| AppError::InvalidBase64(e.to_string()))?;
    if data.len() as u64 > upload.limit {
        return Err(AppError::PayloadTooLarge { limit: upload.limit });
    }
    let content_type = doc.content_type.and_then(|ct| ct.parse::<mime::Mime>().ok());
    let described = upload.describe(doc.filename.as_deref(), content_type.as_ref());
    drop(json);
    let mut sink = upload.sink().await?;
    sink.write(data.into()).await?;
    sink.commit(described).await
}

fn require_json(req: &HttpRequest) -> Result<(), AppError> {
    match req.mime_type() {
        Ok(Some(m)) if m.subtype() == mime::JSON || m.suffix() == Some(mime::JSON) => Ok(()),
        _ => Err(AppError::UnsupportedMediaType { expected: "an application/json body" }),
    }
}

/// JSON with base64 data
///
/// Reads the whole JSON document into memory, decodes `data` from base64 and writes the result with `tokio::fs`.
/// Base64 makes the body a third larger and the server holds both the document and the decoded file, about 2.3
/// times the file size at peak; limited by `--max-buffered-bytes`. For clients that can only send JSON.
#[utoipa::path(
    tag = "upload",
    params(ChecksumHeader),
    request_body(content = Base64Upload, content_type = "application/json"),
    responses(UploadResponses)
)]
#[post("/files/upload/raw/json/base64decode")]
async fn base64decode(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, AppError> {
    super::receive(req, body, state, Strategy::JsonBase64).await
}

pub(super) fn configure(cfg: &mut ServiceConfig) {
    cfg.service(base64decode);
}
