//! The OpenAPI pieces every download operation shares.

use serde::Deserialize;
use utoipa::{IntoParams, IntoResponses};

use crate::{error::ErrorBody, schema::Binary};

/// Request headers every download endpoint honours.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct DownloadHeaders {
    /// One range, e.g. `bytes=0-1023`, `bytes=1024-` or `bytes=-100` (GET only). Several ranges or a
    /// malformed value get the whole file.
    #[param(rename = "Range")]
    pub range: Option<String>,
    /// An ETag (`"<sha256>"`) or `*`: 304 when it matches.
    #[param(rename = "If-None-Match")]
    pub if_none_match: Option<String>,
    /// An HTTP date: 304 unless the file is newer (ignored when If-None-Match is sent).
    #[param(rename = "If-Modified-Since")]
    pub if_modified_since: Option<String>,
    /// The file's ETag or `*`: 412 unless it matches (strong comparison).
    #[param(rename = "If-Match")]
    pub if_match: Option<String>,
    /// An HTTP date: 412 if the file is newer (ignored when If-Match is sent).
    #[param(rename = "If-Unmodified-Since")]
    pub if_unmodified_since: Option<String>,
    /// Honour Range only if the file still has this ETag or Last-Modified date.
    #[param(rename = "If-Range")]
    pub if_range: Option<String>,
}

/// Answers of every download endpoint.
#[derive(IntoResponses)]
pub enum DownloadResponses {
    /// The whole file, with the Content-Type it was stored with.
    #[response(
        status = 200,
        content_type = "*/*",
        headers(
            ("ETag" = String, description = "`\"<sha256>\"`, the same from every strategy"),
            ("Last-Modified" = String),
            ("Content-Disposition" = String, description = "attachment, with `filename` and RFC 8187 `filename*`"),
            ("Repr-Digest" = String, description = "`sha-256=:<base64>:` of the whole file"),
            ("Accept-Ranges" = String),
        )
    )]
    Ok(#[to_schema] Binary),
    /// One range of the file.
    #[response(
        status = 206,
        content_type = "*/*",
        headers(("Content-Range" = String, description = "`bytes a-b/size`"), ("ETag" = String), ("Repr-Digest" = String))
    )]
    Partial(#[to_schema] Binary),
    /// The client's copy is current (If-None-Match or If-Modified-Since).
    #[response(status = 304)]
    NotModified,
    /// Unknown or malformed id (`not_found`).
    #[response(status = 404, example = json!({"error": "not_found", "message": "no file with this id"}))]
    NotFound(ErrorBody),
    /// If-Match or If-Unmodified-Since does not hold (`precondition_failed`).
    #[response(status = 412, example = json!({"error": "precondition_failed", "message": "the file does not match the request's preconditions (If-Match, If-Unmodified-Since)"}))]
    PreconditionFailed(ErrorBody),
    /// The range starts past the end (`range_not_satisfiable`).
    #[response(
        status = 416,
        headers(("Content-Range" = String, description = "`bytes */size`")),
        example = json!({"error": "range_not_satisfiable", "message": "the requested range is outside the file's 262144 bytes"})
    )]
    RangeNotSatisfiable(ErrorBody),
}
