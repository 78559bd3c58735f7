//! Listing, looking up and deleting stored files, and signing download links to them.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, delete, get, http::header, post, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    download::{Reader, http::Representation},
    error::{AppError, ErrorBody},
    state::AppState,
    storage::{FileId, StoredFile},
};

pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// Continue after this id: the last id of the previous page.
    #[param(value_type = Option<uuid::Uuid>)]
    pub after: Option<FileId>,
}

/// List files
///
/// Newest first. When a page is full, a `Link: <…>; rel="next"` header points at the next one.
#[utoipa::path(
    tag = "files",
    params(ListQuery),
    responses(
        (status = 200, description = "Metadata of stored files, newest first", body = Vec<StoredFile>,
            headers(("Link" = String, description = "The next page, when this one is full"))),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
    )
)]
#[get("/files")]
async fn list(state: web::Data<AppState>, query: web::Query<ListQuery>) -> Result<HttpResponse, AppError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::InvalidQuery(format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let page = state.storage.list(limit, query.after).await?;
    let mut res = HttpResponse::Ok();
    if let Some(next) = page.next {
        res.insert_header((header::LINK, format!("</files?limit={limit}&after={next}>; rel=\"next\"")));
    }
    Ok(res.json(page.files))
}

/// File metadata
#[utoipa::path(
    tag = "files",
    params(("id" = uuid::Uuid, Path, description = "File id")),
    responses(
        (status = 200, description = "The file's metadata", body = StoredFile),
        (status = 404, description = "No such file", body = ErrorBody),
    )
)]
#[get("/files/{id}")]
async fn metadata(state: web::Data<AppState>, id: web::Path<FileId>) -> Result<web::Json<StoredFile>, AppError> {
    let file = state.storage.get(*id).await?.ok_or(AppError::NotFound)?;
    Ok(web::Json(StoredFile::clone(&file)))
}

/// Conditions a client can put on a delete, so that it removes only the file it has seen.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Header)]
pub struct DeletePreconditions {
    /// The file's ETag (`"<sha256>"`, as downloads send it) or `*`: delete only if it matches (strong
    /// comparison), else 412.
    #[param(rename = "If-Match")]
    pub if_match: Option<String>,
    /// An HTTP date: delete only if the file is not newer, else 412 (ignored when If-Match is sent).
    #[param(rename = "If-Unmodified-Since")]
    pub if_unmodified_since: Option<String>,
}

/// Delete a file
///
/// Afterwards every download strategy answers 404; downloads already under way finish. `If-Match` and
/// `If-Unmodified-Since` make the delete conditional (RFC 9110 §13.1.1, §13.1.4).
#[utoipa::path(
    tag = "files",
    params(("id" = uuid::Uuid, Path, description = "File id"), DeletePreconditions),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such file", body = ErrorBody),
        (status = 412, description = "A precondition does not hold (`precondition_failed`); nothing was deleted", body = ErrorBody),
    )
)]
#[delete("/files/{id}")]
async fn remove(req: HttpRequest, state: web::Data<AppState>, id: web::Path<FileId>) -> Result<HttpResponse, AppError> {
    let id = *id;
    let file = state.storage.get(id).await?.ok_or(AppError::NotFound)?;
    // a file's bytes never change under its id, so what the preconditions saw is what gets deleted
    if Representation::new(&file).preconditions(req.method(), req.headers()).is_some() {
        return Err(AppError::PreconditionFailed);
    }
    state.storage.delete(id).await?;
    state.cache.remove(id);
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// How long the link works: a number of seconds, or of `s`, `m`, `h`, `d` or `w` (`30m`, `1h`, `7d`;
    /// default `1h`); capped at the server's `--max-link-ttl` (7 days by default).
    #[param(pattern = r"^[0-9]{1,9}[smhdw]?$")]
    pub expires_in: Option<String>,
}

/// A signed download link.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedLink {
    /// A download URL that needs no token until it expires. Its `expires` and `signature` parameters work on
    /// every download strategy's path.
    #[schema(
        example = "http://127.0.0.1:8000/files/download/stream/sync_read/01936b2e-7c4a-7d3e-9a51-4f0c2b8e1a77?expires=1795000000&signature=5d41…"
    )]
    pub url: String,
    /// When it stops working (RFC 3339).
    #[schema(example = "2026-11-28T12:00:00Z")]
    pub expires_at: String,
}

/// Create a signed download link
///
/// Answers a download URL carrying an expiry and an HMAC-SHA256 signature over the method, the file id and the
/// expiry: anyone holding it can download the file, through any download strategy, until it expires. A
/// changed id, expiry or signature, or a use after expiry, gets 403.
#[utoipa::path(
    tag = "files",
    params(("id" = uuid::Uuid, Path, description = "File id"), LinkQuery),
    responses(
        (status = 200, description = "The link", body = SignedLink),
        (status = 400, description = "`expires_in` is not a duration (`invalid_query`)", body = ErrorBody),
        (status = 404, description = "No such file", body = ErrorBody),
    )
)]
#[post("/files/{id}/links")]
async fn create_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<FileId>,
    query: web::Query<LinkQuery>,
) -> Result<web::Json<SignedLink>, AppError> {
    let file = state.storage.get(*id).await?.ok_or(AppError::NotFound)?;
    let ttl = match query.expires_in.as_deref() {
        None => Duration::from_secs(3600),
        Some(text) => parse_ttl(text).ok_or_else(|| {
            AppError::InvalidQuery("expires_in must be 1 to 9 digits and an optional s, m, h, d or w".to_owned())
        })?,
    };
    let id = file.id.to_string();
    let (query, expires) = state.gate.links.sign("GET", &id, ttl);
    let conn = req.connection_info();
    let path = Reader::SyncRead.path(&id);
    Ok(web::Json(SignedLink {
        url: format!("{}://{}{path}?{query}", conn.scheme(), conn.host()),
        expires_at: humantime::format_rfc3339_seconds(expires).to_string(),
    }))
}

/// `expires_in` as its schema's pattern has it: `^[0-9]{1,9}[smhdw]?$`.
fn parse_ttl(text: &str) -> Option<Duration> {
    let (digits, unit) = match text.as_bytes().last()? {
        b'0'..=b'9' => (text, 1),
        b's' => (&text[..text.len() - 1], 1),
        b'm' => (&text[..text.len() - 1], 60),
        b'h' => (&text[..text.len() - 1], 3600),
        b'd' => (&text[..text.len() - 1], 86_400),
        b'w' => (&text[..text.len() - 1], 604_800),
        _ => return None,
    };
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Duration::from_secs(digits.parse::<u64>().ok()? * unit))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list).service(metadata).service(remove).service(create_link);
}
