//! The OpenAPI pieces every upload operation shares. What differs per endpoint (its limit in the 413 example,
//! the 400 codes its body kind can produce) is filled in from the endpoint table by [`crate::openapi`].

use serde::Deserialize;
use utoipa::{IntoParams, IntoResponses};

use super::Created;
use crate::error::ErrorBody;

/// The optional integrity header of every upload.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ChecksumHeader {
    /// SHA-256 of the file's bytes (the decoded bytes for base64), 64 hex digits. On a mismatch nothing is
    /// stored and the answer is 400 `digest_mismatch`.
    #[param(rename = "X-Checksum-Sha256", pattern = "^[0-9a-fA-F]{64}$")]
    pub checksum: Option<String>,
}

/// Answers of every upload endpoint.
#[derive(IntoResponses)]
pub enum UploadResponses {
    /// Stored: the file is complete, hashed and (unless `--fsync false`) on stable storage.
    #[response(status = 201, headers(("Location" = String, description = "`/files/{id}`")))]
    Created(#[to_schema] Created),
    /// The request cannot be stored as sent.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The body sent nothing for longer than `--body-idle-timeout` (`body_timeout`).
    #[response(status = 408, example = json!({"error": "body_timeout", "message": "the request body sent nothing for 30s"}))]
    Timeout(ErrorBody),
    /// Larger than this endpoint's limit (`payload_too_large`); sent before the body is read when
    /// Content-Length tells.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Wrong kind of body for this endpoint (`unsupported_media_type`).
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// The disk is full (`insufficient_storage`).
    #[response(status = 507, example = json!({"error": "insufficient_storage", "message": "the server has no space left to store this file"}))]
    InsufficientStorage(ErrorBody),
}
