//! The metadata record of a stored file: a row of the index, what the API returns, and the `<id>.json` of the
//! layout before the index and of `quarantine/`.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::FileId;

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoredFile {
    /// Server-made id (UUID v7); the file's only name on disk.
    #[schema(value_type = String, format = Uuid, example = "01936b2e-7c4a-7d3e-9a51-4f0c2b8e1a77")]
    pub id: FileId,
    /// The client's filename, sanitised; metadata only.
    #[schema(example = "photo.jpg")]
    pub filename: String,
    /// Size in bytes.
    #[schema(example = 262144)]
    pub size: u64,
    /// SHA-256 of the stored bytes, lowercase hex.
    #[schema(example = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")]
    pub sha256: String,
    /// Media type given at upload (`application/octet-stream` when none was usable).
    #[schema(example = "image/jpeg")]
    pub content_type: String,
    /// The upload strategy that stored it.
    #[schema(example = "stream/async_read_and_async_write")]
    pub strategy: String,
    /// When it was published (RFC 3339, UTC).
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime, example = "2026-11-27T12:00:00.123Z")]
    pub created_at: SystemTime,
}

mod rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &SystemTime, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_rfc3339_millis(*time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}
