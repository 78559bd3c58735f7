//! The tus request headers, parsed into what the handlers act on; anything malformed is a 400 that names the
//! header.

use actix_web::http::header::HeaderMap;
use base64::Engine;

use crate::{error::AppError, storage::sanitize_filename};

/// The one protocol version ferry speaks.
pub const VERSION: &str = "1.0.0";
/// Longest `Upload-Metadata` accepted.
const MAX_METADATA: usize = 4096;

fn text<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, AppError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value.to_str().map(|v| Some(v.trim())).map_err(|_| invalid(name, "is not ASCII")),
    }
}

fn invalid(name: &str, why: &str) -> AppError {
    AppError::InvalidHeader(format!("{name} {why}"))
}

/// 412 unless the request speaks tus 1.0.0.
pub fn check_version(headers: &HeaderMap) -> Result<(), AppError> {
    match text(headers, "tus-resumable")? {
        Some(VERSION) => Ok(()),
        _ => Err(AppError::UnsupportedTusVersion),
    }
}

/// A non-negative integer header, if present.
pub fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, AppError> {
    match text(headers, name)? {
        None => Ok(None),
        Some(value) if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
            value.parse().map(Some).map_err(|_| invalid(name, "is too large"))
        }
        Some(_) => Err(invalid(name, "must be a non-negative integer")),
    }
}

/// `Upload-Length`, or `None` with `Upload-Defer-Length: 1`; exactly one of them at creation.
pub fn creation_length(headers: &HeaderMap) -> Result<Option<u64>, AppError> {
    let length = number(headers, "upload-length")?;
    let deferred = match text(headers, "upload-defer-length")? {
        None => false,
        Some("1") => true,
        Some(_) => return Err(invalid("Upload-Defer-Length", "must be 1")),
    };
    match (length, deferred) {
        (Some(length), false) => Ok(Some(length)),
        (None, true) => Ok(None),
        (Some(_), true) => Err(invalid("Upload-Length", "and Upload-Defer-Length exclude each other")),
        (None, false) => Err(invalid("Upload-Length", "(or Upload-Defer-Length: 1) is required")),
    }
}

/// What `Upload-Metadata` says about the file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The header as sent, for HEAD to echo.
    pub raw: Option<String>,
    /// Sanitised like every upload's name.
    pub filename: String,
    pub content_type: String,
}

/// `Upload-Metadata`: comma-separated `key base64-value` pairs (the value may be left out). `filename` and
/// `filetype` name and type the stored file; a missing or generic type is guessed from the name, as raw
/// uploads do.
pub fn metadata(headers: &HeaderMap) -> Result<Metadata, AppError> {
    let Some(raw) = text(headers, "upload-metadata")? else {
        return Ok(Metadata { raw: None, filename: sanitize_filename(""), content_type: guess_type("", None) });
    };
    if raw.len() > MAX_METADATA {
        return Err(invalid("Upload-Metadata", &format!("is longer than {MAX_METADATA} bytes")));
    }
    let (mut filename, mut filetype) = (None, None);
    for pair in raw.split(',').map(str::trim).filter(|pair| !pair.is_empty()) {
        let mut parts = pair.split(' ').filter(|part| !part.is_empty());
        let key = parts.next().unwrap_or_default();
        let value = match parts.next() {
            Some(encoded) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| invalid("Upload-Metadata", &format!("has a value for {key:?} that is not base64")))?,
            None => Vec::new(),
        };
        if parts.next().is_some() {
            return Err(invalid("Upload-Metadata", "pairs are `key base64-value`, separated by commas"));
        }
        match key {
            "filename" | "name" if filename.is_none() => filename = Some(String::from_utf8_lossy(&value).into_owned()),
            "filetype" | "type" if filetype.is_none() => filetype = Some(String::from_utf8_lossy(&value).into_owned()),
            _ => {}
        }
    }
    let filename = sanitize_filename(filename.as_deref().unwrap_or_default());
    let content_type = guess_type(&filename, filetype.as_deref());
    Ok(Metadata { raw: Some(raw.to_owned()), filename, content_type })
}

/// The declared type when it says something about the file, else a guess from the name.
fn guess_type(filename: &str, declared: Option<&str>) -> String {
    match declared.and_then(|t| t.parse::<mime::Mime>().ok()) {
        Some(m) if m != mime::APPLICATION_OCTET_STREAM => m.to_string(),
        _ => mime_guess::from_path(filename).first_or_octet_stream().to_string(),
    }
}

/// The checksum algorithms of the `checksum` extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
}

pub const ALGORITHMS: &str = "sha1,sha256";

/// `Upload-Checksum: <algorithm> <base64 digest>`, if sent.
pub fn checksum(headers: &HeaderMap) -> Result<Option<(Algorithm, Vec<u8>)>, AppError> {
    let Some(value) = text(headers, "upload-checksum")? else { return Ok(None) };
    let (name, digest) =
        value.split_once(' ').ok_or_else(|| invalid("Upload-Checksum", "is `<algorithm> <base64>`"))?;
    let (algorithm, len) = match name {
        "sha1" => (Algorithm::Sha1, 20),
        "sha256" => (Algorithm::Sha256, 32),
        other => {
            return Err(invalid("Upload-Checksum", &format!("names {other:?}; this server supports {ALGORITHMS}")));
        }
    };
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .ok()
        .filter(|digest| digest.len() == len)
        .ok_or_else(|| invalid("Upload-Checksum", &format!("must carry a base64 {name} digest")))?;
    Ok(Some((algorithm, digest)))
}

/// Whether the body is `application/offset+octet-stream`, the only kind PATCH takes.
pub fn is_offset_stream(headers: &HeaderMap) -> bool {
    headers
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/offset+octet-stream"))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn metadata_names_and_types_the_file_and_is_sanitised() {
        let sent = headers(&[("upload-metadata", "filename Li4vZXRjL3Bhc3N3ZC50eHQ=,filetype ,is_secret")]);
        let meta = metadata(&sent).unwrap();
        assert_eq!(meta.filename, "passwd.txt");
        assert_eq!(meta.content_type, "text/plain");
        let typed = metadata(&headers(&[("upload-metadata", "filename YS5iaW4=,filetype aW1hZ2UvcG5n")])).unwrap();
        assert_eq!((typed.filename.as_str(), typed.content_type.as_str()), ("a.bin", "image/png"));
        assert!(metadata(&headers(&[("upload-metadata", "filename !!!")])).is_err());
        assert_eq!(metadata(&HeaderMap::new()).unwrap().filename, "upload.bin");
    }

    #[test]
    fn checksums_name_a_supported_algorithm_and_a_digest_of_its_size() {
        let sha1 = "2jmj7l5rSw0yVb/vlWAYkK/YBwk=";
        assert_eq!(
            checksum(&headers(&[("upload-checksum", &format!("sha1 {sha1}"))])).unwrap().unwrap().0,
            Algorithm::Sha1
        );
        assert!(checksum(&headers(&[("upload-checksum", &format!("sha256 {sha1}"))])).is_err());
        assert!(checksum(&headers(&[("upload-checksum", "md5 1B2M2Y8AsgTpgAmY7PhCfg==")])).is_err());
    }

    #[test]
    fn exactly_one_of_length_and_deferred_length() {
        assert_eq!(creation_length(&headers(&[("upload-length", "10")])).unwrap(), Some(10));
        assert_eq!(creation_length(&headers(&[("upload-defer-length", "1")])).unwrap(), None);
        assert!(creation_length(&HeaderMap::new()).is_err());
        assert!(creation_length(&headers(&[("upload-length", "-1")])).is_err());
        assert!(creation_length(&headers(&[("upload-length", "1"), ("upload-defer-length", "1")])).is_err());
    }
}
