//! Listing, looking up and deleting stored files.

use actix_web::{HttpRequest, HttpResponse, delete, get, http::header, web};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    download::http::Representation,
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
    let page = state.storage.list(limit, query.after);
    let mut res = HttpResponse::Ok();
    if let (true, Some(last)) = (page.len() == limit, page.last()) {
        res.insert_header((header::LINK, format!("</files?limit={limit}&after={}>; rel=\"next\"", last.id)));
    }
    Ok(res.json(page))
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
    let file = state.storage.get(*id).ok_or(AppError::NotFound)?;
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
    let file = state.storage.get(id).ok_or(AppError::NotFound)?;
    // a file's bytes never change under its id, so what the preconditions saw is what gets deleted
    if Representation::new(&file).preconditions(req.method(), req.headers()).is_some() {
        return Err(AppError::PreconditionFailed);
    }
    let storage = state.storage.clone();
    web::block(move || storage.delete(id)).await??;
    state.cache.remove(id);
    Ok(HttpResponse::NoContent().finish())
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list).service(metadata).service(remove);
}
