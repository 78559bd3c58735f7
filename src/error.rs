//! One error type for the whole service, rendered as `{"error": code, "message": sentence}`.

use std::io;

use actix_web::{HttpResponse, ResponseError, http::StatusCode, http::header};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A query parameter is malformed or out of range.
    #[error("{0}")]
    InvalidQuery(String),
    /// `X-Checksum-Sha256` is not 64 hexadecimal digits.
    #[error("X-Checksum-Sha256 must be 64 hexadecimal digits")]
    InvalidChecksum,
    /// The body ended before it was complete or broke its transfer encoding (often: the client went away).
    #[error("the request body could not be read: {0}")]
    IncompleteBody(String),
    /// The body is not well-formed `multipart/form-data`.
    #[error("malformed multipart body: {0}")]
    MalformedMultipart(String),
    /// A multipart upload without a part named `file`.
    #[error("the multipart body has no part named \"file\"")]
    MissingFile,
    /// A multipart upload with more than one part named `file`.
    #[error("the multipart body has more than one part named \"file\"; send one file per request")]
    DuplicateFile,
    /// The body of a base64 upload is not the expected JSON document.
    #[error("the body is not the expected JSON document: {0}")]
    InvalidJson(String),
    /// The `data` field of a base64 upload is not base64.
    #[error("\"data\" is not valid base64: {0}")]
    InvalidBase64(String),
    /// The stored bytes do not hash to the client's `X-Checksum-Sha256`.
    #[error("sha256 of the received bytes is {actual}, the request said {expected}")]
    DigestMismatch { expected: String, actual: String },
    /// Unknown or malformed id.
    #[error("no file with this id")]
    NotFound,
    /// No route has this path.
    #[error("no route for {0}; the API is described at /docs")]
    NoRoute(String),
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
    /// `If-Match` or `If-Unmodified-Since` does not hold for the file.
    #[error("the file does not match the request's preconditions (If-Match, If-Unmodified-Since)")]
    PreconditionFailed,
    /// The requested range starts past the end of the file.
    #[error("the requested range is outside the file's {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    /// No token, or one the server does not know (the token itself is never part of the message).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A known token without the operation's scope, or a signed link that does not hold.
    #[error("{0}")]
    Forbidden(String),
    /// A tus header is malformed or contradicts the upload.
    #[error("{0}")]
    InvalidHeader(String),
    /// No tus upload with this id: never made, expired, or terminated.
    #[error("no upload with this id; it may have expired or been terminated")]
    NoUpload,
    /// A tus PATCH's `Upload-Offset` is not where the upload stands.
    #[error("the upload is at offset {offset}; send the bytes from there (HEAD tells the offset)")]
    OffsetMismatch { offset: u64 },
    /// Another PATCH to the same tus upload is under way.
    #[error("another request is writing to this upload; try again when it is done")]
    UploadLocked,
    /// A tus PATCH's bytes do not match its `Upload-Checksum`; they were discarded.
    #[error("the body does not match its Upload-Checksum; its bytes were discarded")]
    ChecksumMismatch,
    /// A tus request that does not speak tus 1.0.0.
    #[error("this server speaks tus 1.0.0: send Tus-Resumable: 1.0.0")]
    UnsupportedTusVersion,
    /// The disk is full.
    #[error("the server has no space left to store this file")]
    InsufficientStorage,
    /// Readiness: the server should not get traffic now, and says why.
    #[error("not ready: {0}")]
    NotReady(String),
    /// The data directory cannot be used.
    #[error("the service cannot use its storage")]
    Unavailable,
    /// Anything else; logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An I/O error is the server's problem, never the client's: a full disk is 507; a data directory that cannot be
/// written, because it is read-only (EROFS) or its permissions forbid it (EACCES, EPERM), is 503, as `/health`
/// says, and so is an object store that fails; anything else is 500. `NotFound` in particular is not a 404 here: only the places that open stored
/// content for a reader (downloads) decide that a missing file means "no such file".
impl From<io::Error> for AppError {
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge => {
                log::error!("{err}");
                AppError::InsufficientStorage
            }
            // NetworkDown: the object store failed or could not be reached (see `storage::s3`)
            io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied | io::ErrorKind::NetworkDown => {
                log::error!("{err}");
                AppError::Unavailable
            }
            _ => AppError::Internal(Box::new(err)),
        }
    }
}

/// Says what was being done, and on which path, when an I/O error happens, keeping its kind (and so its status).
pub trait IoContext<T> {
    fn context(self, doing: impl FnOnce() -> String) -> io::Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, doing: impl FnOnce() -> String) -> io::Result<T> {
        self.map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", doing())))
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        AppError::Internal(Box::new(err))
    }
}

/// tus's checksum extension answers a mismatch with a status of its own.
fn checksum_mismatch() -> StatusCode {
    StatusCode::from_u16(460).expect("460 is a valid status")
}

/// The `error` code of an error answer, kept in the response's extensions for the access log (which never
/// parses bodies).
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

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
            AppError::InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            AppError::InvalidChecksum => (StatusCode::BAD_REQUEST, "invalid_checksum"),
            AppError::IncompleteBody(_) => (StatusCode::BAD_REQUEST, "incomplete_body"),
            AppError::MalformedMultipart(_) => (StatusCode::BAD_REQUEST, "malformed_multipart"),
            AppError::MissingFile => (StatusCode::BAD_REQUEST, "missing_file"),
            AppError::DuplicateFile => (StatusCode::BAD_REQUEST, "duplicate_file"),
            AppError::InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            AppError::InvalidBase64(_) => (StatusCode::BAD_REQUEST, "invalid_base64"),
            AppError::DigestMismatch { .. } => (StatusCode::BAD_REQUEST, "digest_mismatch"),
            AppError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            AppError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            AppError::NotFound | AppError::NoRoute(_) => (StatusCode::NOT_FOUND, "not_found"),
            AppError::MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            AppError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "body_timeout"),
            AppError::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            AppError::UnsupportedMediaType { .. } => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            AppError::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            AppError::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable"),
            AppError::InsufficientStorage => (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"),
            AppError::InvalidHeader(_) => (StatusCode::BAD_REQUEST, "invalid_header"),
            AppError::NoUpload => (StatusCode::NOT_FOUND, "not_found"),
            AppError::OffsetMismatch { .. } => (StatusCode::CONFLICT, "offset_mismatch"),
            AppError::UploadLocked => (StatusCode::LOCKED, "locked"),
            AppError::ChecksumMismatch => (checksum_mismatch(), "checksum_mismatch"),
            AppError::UnsupportedTusVersion => (StatusCode::PRECONDITION_FAILED, "unsupported_version"),
            AppError::Unavailable | AppError::NotReady(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// The stable code clients and metrics see, e.g. `payload_too_large`.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    /// Errors that can leave part of a request body unread: the connection cannot be reused after them.
    fn abandons_body(&self) -> bool {
        matches!(
            self,
            AppError::PayloadTooLarge { .. }
                | AppError::BodyTimeout(_)
                | AppError::InvalidQuery(_)
                | AppError::InvalidChecksum
                | AppError::IncompleteBody(_)
                | AppError::MalformedMultipart(_)
                | AppError::DuplicateFile
                | AppError::InvalidJson(_)
        )
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
            AppError::Unauthorized(_) => {
                res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"ferry\""));
            }
            _ => {}
        }
        if self.abandons_body() {
            res.force_close();
        }
        res.extensions_mut().insert(ErrorCode(code));
        res.json(ErrorBody { error: code.to_owned(), message: self.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(errno: i32) -> (StatusCode, &'static str) {
        AppError::from(io::Error::from_raw_os_error(errno)).parts()
    }

    #[test]
    fn storage_errors_are_the_servers_never_a_404() {
        let unavailable = (StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert_eq!(answer(libc::EROFS), unavailable);
        assert_eq!(answer(libc::EACCES), unavailable);
        assert_eq!(answer(libc::EPERM), unavailable);
        assert_eq!(answer(libc::ENETDOWN), unavailable, "what a failing object store is mapped to");
        assert_eq!(answer(libc::ENOSPC), (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"));
        assert_eq!(answer(libc::EDQUOT), (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"));
        assert_eq!(answer(libc::EFBIG), (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage"));
        for errno in [libc::ENOENT, libc::ENOTDIR, libc::EIO, libc::EISDIR] {
            assert_eq!(answer(errno), (StatusCode::INTERNAL_SERVER_ERROR, "internal"), "errno {errno}");
        }
    }
}
