//! HTTP semantics shared by every download strategy: validators, conditional requests, single ranges and the
//! response headers. Pure functions of the request headers and the file's metadata, so that all five strategies
//! answer a request identically.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::{
    Method, StatusCode,
    header::{
        self, ContentDisposition, DispositionParam, DispositionType, EntityTag, ExtendedValue, HeaderMap, HeaderValue,
    },
};
use base64::Engine;

use crate::storage::StoredFile;

/// At most this many entity tags of an `If-Match` or `If-None-Match` list are compared.
const MAX_TAGS: usize = 64;

/// The bytes to send: the whole file or one range of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub len: u64,
    /// Whether this answers a range request (206) rather than the whole file (200).
    pub partial: bool,
}

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// 412: `If-Match` or `If-Unmodified-Since` failed (or `If-None-Match` did, for a method other than GET
    /// and HEAD).
    PreconditionFailed,
    NotModified,
    Send(Span),
    Unsatisfiable,
}

/// How a `Range` header applies to a file of a given size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// Absent, malformed, another unit, or several ranges: the whole file is sent (RFC 9110 lets a server ignore
    /// Range, and answering several ranges with one 200 keeps memory and response size bounded).
    Ignore,
    One {
        start: u64,
        len: u64,
    },
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n`; the end is clamped to the file.
pub fn parse_range(value: &str, size: u64) -> RangeRequest {
    let Some((unit, set)) = value.split_once('=') else { return RangeRequest::Ignore };
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return RangeRequest::Ignore;
    }
    let Some((first, last)) = set.split_once('-') else { return RangeRequest::Ignore };
    let (first, last) = (first.trim(), last.trim());
    // Numbers too large for u64 saturate: past any file's end either way.
    let number =
        |s: &str| (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().unwrap_or(u64::MAX));
    let (start, end) = match (number(first), number(last)) {
        // the last n bytes; a zero-length suffix selects nothing
        (None, Some(n)) if first.is_empty() => match n.min(size) {
            0 => return RangeRequest::Unsatisfiable,
            n => (size - n, size - 1),
        },
        (Some(start), None) if last.is_empty() => (start, u64::MAX),
        (Some(start), Some(end)) if end >= start => (start, end),
        _ => return RangeRequest::Ignore,
    };
    if start >= size {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::One { start, len: end.min(size - 1) - start + 1 }
}

/// A stored file as HTTP sees it: its validators and headers.
pub struct Representation<'a> {
    pub file: &'a StoredFile,
    etag: String,
    last_modified: SystemTime,
}

impl<'a> Representation<'a> {
    pub fn new(file: &'a StoredFile) -> Self {
        let secs = file.created_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        Representation {
            file,
            etag: format!("\"{}\"", file.sha256),
            last_modified: UNIX_EPOCH + Duration::from_secs(secs),
        }
    }

    /// The preconditions of RFC 9110 §13.2.2, in its order: If-Match (else If-Unmodified-Since), then
    /// If-None-Match (else If-Modified-Since, for GET and HEAD). `None` means the request may proceed. DELETE
    /// uses this directly; downloads through [`Representation::decide`].
    pub fn preconditions(&self, method: &Method, headers: &HeaderMap) -> Option<Decision> {
        let read = method == Method::GET || method == Method::HEAD;
        let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        if headers.contains_key(header::IF_MATCH) {
            if !self.any_tag_matches(headers, header::IF_MATCH, EntityTag::strong_eq) {
                return Some(Decision::PreconditionFailed);
            }
        } else if let Some(since) = text(header::IF_UNMODIFIED_SINCE).and_then(parse_http_date)
            && self.last_modified > since
        {
            return Some(Decision::PreconditionFailed);
        }
        if headers.contains_key(header::IF_NONE_MATCH) {
            if self.any_tag_matches(headers, header::IF_NONE_MATCH, EntityTag::weak_eq) {
                return Some(if read { Decision::NotModified } else { Decision::PreconditionFailed });
            }
        } else if read
            && let Some(since) = text(header::IF_MODIFIED_SINCE).and_then(parse_http_date)
            && self.last_modified <= since
        {
            return Some(Decision::NotModified);
        }
        None
    }

    /// The preconditions, then Range with If-Range.
    pub fn decide(&self, method: &Method, headers: &HeaderMap) -> Decision {
        let size = self.file.size;
        let whole = Decision::Send(Span { start: 0, len: size, partial: false });
        let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        if let Some(decision) = self.preconditions(method, headers) {
            return decision;
        }
        // Range is defined for GET only (RFC 9110 §14.2); HEAD describes the whole file.
        let Some(range) = text(header::RANGE).filter(|_| method == Method::GET) else { return whole };
        if let Some(if_range) = text(header::IF_RANGE)
            && !self.if_range_matches(if_range)
        {
            return whole;
        }
        match parse_range(range, size) {
            RangeRequest::Ignore => whole,
            RangeRequest::Unsatisfiable => Decision::Unsatisfiable,
            RangeRequest::One { start, len } => Decision::Send(Span { start, len, partial: true }),
        }
    }

    /// Whether a list of entity tags (or `*`, which any stored file matches) names this file, compared as
    /// `eq` does: strongly for If-Match, weakly for If-None-Match. Every line of the header counts; entity
    /// tags are parsed by actix-web, and malformed members match nothing.
    fn any_tag_matches(
        &self,
        headers: &HeaderMap,
        name: header::HeaderName,
        eq: fn(&EntityTag, &EntityTag) -> bool,
    ) -> bool {
        let own = self.entity_tag();
        let members = headers.get_all(name).filter_map(|line| line.to_str().ok()).flat_map(|line| line.split(','));
        members
            .map(str::trim)
            .take(MAX_TAGS)
            .any(|member| member == "*" || member.parse::<EntityTag>().is_ok_and(|tag| eq(&tag, &own)))
    }

    fn entity_tag(&self) -> EntityTag {
        EntityTag::new_strong(self.file.sha256.clone())
    }

    /// Strong comparison with the ETag, or exact equality with Last-Modified.
    fn if_range_matches(&self, value: &str) -> bool {
        match value.trim().parse::<EntityTag>() {
            Ok(tag) => tag.strong_eq(&self.entity_tag()),
            Err(_) => parse_http_date(value) == Some(self.last_modified),
        }
    }

    /// Headers every answer carries (200, 206, 304), identical across strategies.
    pub fn headers(&self) -> Vec<(header::HeaderName, HeaderValue)> {
        let file = self.file;
        let digest = hex::decode(&file.sha256).unwrap_or_default();
        let mut headers = vec![
            (header::ETAG, value(&self.etag)),
            (header::LAST_MODIFIED, value(&header::HttpDate::from(self.last_modified).to_string())),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
            (header::CONTENT_DISPOSITION, value(&content_disposition(&file.filename).to_string())),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (
                header::HeaderName::from_static("repr-digest"),
                value(&format!("sha-256=:{}:", base64::engine::general_purpose::STANDARD.encode(digest))),
            ),
        ];
        headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_str(&file.content_type)
                .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
        ));
        headers
    }

    /// Status and extra headers for a span.
    pub fn status(&self, span: Span) -> (StatusCode, Option<HeaderValue>) {
        if span.partial {
            let range = format!("bytes {}-{}/{}", span.start, span.start + span.len - 1, self.file.size);
            (StatusCode::PARTIAL_CONTENT, Some(value(&range)))
        } else {
            (StatusCode::OK, None)
        }
    }
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).expect("header text made by ferry is visible ASCII")
}

fn parse_http_date(value: &str) -> Option<SystemTime> {
    value.trim().parse::<header::HttpDate>().ok().map(SystemTime::from)
}

/// `attachment; filename="<ascii fallback>"; filename*=UTF-8''<percent-encoded>` (RFC 6266, RFC 8187).
pub fn content_disposition(filename: &str) -> ContentDisposition {
    let fallback: String =
        filename.chars().map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '_' }).collect();
    let mut parameters = vec![DispositionParam::Filename(fallback)];
    if !filename.is_ascii() {
        parameters.push(DispositionParam::FilenameExt(ExtendedValue {
            charset: header::Charset::Ext("UTF-8".into()),
            language_tag: None,
            value: filename.as_bytes().to_vec(),
        }));
    }
    ContentDisposition { disposition: DispositionType::Attachment, parameters }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_are_parsed_and_clamped() {
        assert_eq!(parse_range("bytes=0-0", 10), RangeRequest::One { start: 0, len: 1 });
        assert_eq!(parse_range("bytes=-1", 10), RangeRequest::One { start: 9, len: 1 });
        assert_eq!(parse_range("bytes=-100", 10), RangeRequest::One { start: 0, len: 10 });
        assert_eq!(parse_range("bytes=5-", 10), RangeRequest::One { start: 5, len: 5 });
        assert_eq!(parse_range("bytes=5-100", 10), RangeRequest::One { start: 5, len: 5 });
        assert_eq!(parse_range("BYTES = 2-3", 10), RangeRequest::One { start: 2, len: 2 });
        assert_eq!(parse_range("bytes=0-99999999999999999999", 10), RangeRequest::One { start: 0, len: 10 });
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable() {
        assert_eq!(parse_range("bytes=10-", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=10-20", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range("bytes=99999999999999999999-", 10), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn garbage_other_units_and_multiple_ranges_are_ignored() {
        for value in
            ["", "bytes", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-4", "items=0-1", "bytes=0-1,3-4", "bytes=+1-2"]
        {
            assert_eq!(parse_range(value, 10), RangeRequest::Ignore, "{value:?}");
        }
    }

    #[test]
    fn non_ascii_names_get_an_ascii_fallback_and_an_rfc_8187_name() {
        let cd = content_disposition("résumé \"final\".pdf").to_string();
        assert!(cd.starts_with("attachment; filename=\"r_sum_ \\\"final\\\".pdf\""), "{cd}");
        assert!(cd.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"), "{cd}");
        assert_eq!(content_disposition("a.txt").to_string(), "attachment; filename=\"a.txt\"");
    }
}

#[cfg(test)]
mod properties {
    use std::time::SystemTime;

    use actix_web::http::header::{HeaderName, HeaderValue};
    use proptest::prelude::*;

    use super::*;
    use crate::storage::FileId;

    proptest! {
        #[test]
        fn any_range_header_selects_bytes_inside_the_file(value in any::<String>(), size in 0u64..(1 << 40)) {
            if let RangeRequest::One { start, len } = parse_range(&value, size) {
                prop_assert!(len >= 1 && start.checked_add(len).is_some_and(|end| end <= size));
            }
        }

        #[test]
        fn well_formed_ranges_follow_rfc_9110(first in 0u64..3000, last in 0u64..3000, size in 0u64..2000) {
            let expected = if last < first {
                RangeRequest::Ignore
            } else if first >= size {
                RangeRequest::Unsatisfiable
            } else {
                RangeRequest::One { start: first, len: last.min(size - 1) - first + 1 }
            };
            prop_assert_eq!(parse_range(&format!("bytes={first}-{last}"), size), expected);
            let suffix = match last.min(size) {
                0 => RangeRequest::Unsatisfiable,
                n => RangeRequest::One { start: size - n, len: n },
            };
            prop_assert_eq!(parse_range(&format!("bytes=-{last}"), size), suffix);
        }

        #[test]
        fn any_conditional_headers_give_an_answer_inside_the_file(
            size in 0u64..100_000,
            headers in prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "range", "if-range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since",
                    ]),
                    "[ -~]{0,60}",
                ),
                0..6,
            ),
            head in any::<bool>(),
        ) {
            let file = StoredFile {
                id: FileId::new(),
                filename: "f".into(),
                size,
                sha256: "ab".repeat(32),
                content_type: "application/octet-stream".into(),
                strategy: "test".into(),
                created_at: SystemTime::now(),
            };
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    map.append(HeaderName::from_static(name), value);
                }
            }
            let method = if head { Method::HEAD } else { Method::GET };
            let rep = Representation::new(&file);
            let decision = rep.decide(&method, &map);
            if let Decision::Send(span) = decision {
                prop_assert!(span.start + span.len <= size);
                prop_assert!(span.partial || (span.start == 0 && span.len == size));
                prop_assert!(!(head && span.partial), "HEAD never gets a partial answer");
            }
            // the preconditions decide first, and the same way for every method that reads
            if let Some(first) = rep.preconditions(&method, &map) {
                prop_assert_eq!(decision, first);
            }
            if !map.contains_key("if-match") && !map.contains_key("if-unmodified-since") {
                prop_assert_ne!(decision, Decision::PreconditionFailed, "only If-Match and If-Unmodified-Since fail a read");
            }
        }

        #[test]
        fn if_match_passes_exactly_when_it_names_the_file(
            tags in prop::collection::vec("(W/)?\"[a-f0-9]{0,4}\"", 0..4),
            include_own in any::<bool>(),
            weak_own in any::<bool>(),
            delete in any::<bool>(),
        ) {
            let file = StoredFile {
                id: FileId::new(),
                filename: "f".into(),
                size: 10,
                sha256: "ab".repeat(32),
                content_type: "application/octet-stream".into(),
                strategy: "test".into(),
                created_at: SystemTime::now(),
            };
            let own = format!("{}\"{}\"", if weak_own { "W/" } else { "" }, file.sha256);
            let mut list = tags.clone();
            if include_own {
                list.push(own);
            }
            let mut map = HeaderMap::new();
            map.insert(header::IF_MATCH, HeaderValue::from_str(&list.join(", ")).unwrap());
            let method = if delete { Method::DELETE } else { Method::GET };
            let passes = Representation::new(&file).preconditions(&method, &map).is_none();
            // If-Match compares strongly: a weak tag never matches (RFC 9110 §13.1.1)
            prop_assert_eq!(passes, include_own && !weak_own);
        }
    }
}
