//! One error type for the whole service, rendered as `{"error": code, "message": sentence}`.

use std::io;

use actix_web::{HttpResponse, ResponseError, http::StatusCode, http::header};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The request is malformed (multipart, JSON, headers).
    #[error("{0}")]
    BadRequest(String),
    /// A multipart upload without a part named `file`.
    #[error("the multipart body has no part named \"file\"")]
    MissingFile,
    /// The `data` field of a base64 upload is not base64.
    #[error("\"data\" is not valid base64: {0}")]
    InvalidBase64(String),
    /// The stored bytes do not hash to the client's `X-Checksum-Sha256`.
    #[error("sha256 of the received bytes is {actual}, the request said {expected}")]
    DigestMismatch { expected: String, actual: String },
    /// Unknown or malformed id.
    #[error("no file with this id")]
    NotFound,
    /// The body sent no byte for longer than the idle timeout.
    #[error("the request body sent nothing for {0:?}")]
    BodyTimeout(std::time::Duration),
    /// The body or file exceeds the endpoint's limit.
    #[error("the upload is larger than this endpoint's limit of {limit} bytes")]
    PayloadTooLarge { limit: u64 },
    /// The endpoint reads a different kind of body.
    #[error("this endpoint expects {expected}")]
    UnsupportedMediaType { expected: &'static str },
    /// The path exists, but not with this method.
    #[error("this path does not take that method; it takes {allow}")]
    MethodNotAllowed { allow: String },
    /// The requested range starts past the end of the file.
    #[error("the requested range is outside the file's {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// The disk is full.
    #[error("the server has no space left to store this file")]
    InsufficientStorage,
    /// The data directory cannot be used.
    #[error("the service cannot use its storage")]
    Unavailable,
    /// Anything else; logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<io::Error> for AppError {
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => {
                AppError::InsufficientStorage
            }
            io::ErrorKind::NotFound => AppError::NotFound,
            _ => AppError::Internal(Box::new(err)),
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        AppError::Internal(Box::new(err))
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `payload_too_large`.
    #[schema(example = "payload_too_large")]
    pub error: String,
    /// A sentence for people.
    #[schema(example = "the upload is larger than this endpoint's limit of 67108864 bytes")]
    pub message: String,
}

impl AppError {
    /// Status and code, one row per variant.
    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            AppError::MissingFile => (StatusCode::BAD_REQUEST, "missing_file"),
            AppError::InvalidBase64(_) => (StatusCode::BAD_REQUEST, "invalid_base64"),
            AppError::DigestMismatch { .. } => (StatusCode::BAD_REQUEST, "digest_mismatch"),
            AppError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            AppError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            AppError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AppError::UnsupportedMediaType { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            AppError::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            AppError::InsufficientStorage => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
            AppError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Errors that can leave part of a request body unread: the connection cannot be reused after them.
    fn abandons_body(&self) -> bool {
        matches!(self, AppError::PayloadTooLarge { .. } | AppError::BodyTimeout(_) | AppError::BadRequest(_))
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.parts().0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code) = self.parts();
        match self {
            AppError::Internal(err) => log::error!("internal error: {err:#}"),
            AppError::InsufficientStorage | AppError::Unavailable => log::error!("{self}"),
            _ => log::debug!("{code}: {self}"),
        }
        let mut res = HttpResponse::build(status);
        match self {
            AppError::RangeNotSatisfiable { size } => {
                res.insert_header((header::CONTENT_RANGE, format!("bytes */{size}")));
            }
            AppError::MethodNotAllowed { allow } => {
                res.insert_header((header::ALLOW, allow.as_str()));
            }
            _ => {}
        }
        if self.abandons_body() {
            res.force_close();
        }
        res.json(ErrorBody { error: code.to_owned(), message: self.to_string() })
    }
}
