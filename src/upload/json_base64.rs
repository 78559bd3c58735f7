//! The JSON strategy: the file travels base64-encoded inside a JSON document.

use std::borrow::Cow;

use base64::{
    Engine, alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Upload, body::Body};
use crate::{error::AppError, storage::StoredFile};

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
    let json = body.read_to_end(upload.capacity_for(upload.strategy.body_limit(upload.limit))).await?;
    let doc: Base64Upload = serde_json::from_slice(&json).map_err(|e| AppError::InvalidJson(e.to_string()))?;
    let data = BASE64.decode(doc.data.as_bytes()).map_err(|e| AppError::InvalidBase64(explain(e)))?;
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

/// The decoder's error as a sentence that points at the offending character.
fn explain(err: base64::DecodeError) -> String {
    use base64::DecodeError::*;
    let shown = |byte: u8| match byte {
        b' '..=b'~' => format!("'{}'", byte as char),
        _ => format!("byte 0x{byte:02x}"),
    };
    match err {
        InvalidByte(offset, byte) => {
            format!("{} at offset {offset} is not in the base64 alphabet (A-Z, a-z, 0-9, +, /)", shown(byte))
        }
        InvalidLength(len) => format!("{len} base64 characters cannot encode whole bytes; is the text cut short?"),
        InvalidLastSymbol { offset, symbol: byte, .. } => {
            format!("the last character, {} at offset {offset}, has bits that encode nothing", shown(byte))
        }
        InvalidPadding => "the padding ('=') is malformed".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_character_is_named_with_its_offset() {
        let err = BASE64.decode("aGVsbG8*").unwrap_err();
        assert_eq!(explain(err), "'*' at offset 7 is not in the base64 alphabet (A-Z, a-z, 0-9, +, /)");
        let err = BASE64.decode("aGVs\u{7}").unwrap_err();
        assert!(explain(err).starts_with("byte 0x07 at offset 4"));
    }
}
