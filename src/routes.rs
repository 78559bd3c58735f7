//! Every route, documented or not: the API's operations, the front door and what answers when nothing matches.

use actix_web::{
    HttpRequest, HttpResponse,
    body::MessageBody,
    dev::ServiceResponse,
    http::{StatusCode, header},
    middleware::{ErrorHandlerResponse, ErrorHandlers},
    web,
};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    download,
    error::{AppError, ErrorBody},
    files, health,
    metrics::Now,
    state::AppState,
    upload,
};

/// Every documented operation.
pub fn api(cfg: &mut ServiceConfig) {
    upload::configure(cfg);
    download::configure(cfg);
    files::configure(cfg);
    health::configure(cfg);
}

/// The undocumented routes: `/` and `/docs` lead to Swagger UI.
pub fn front_door(cfg: &mut web::ServiceConfig) {
    let to_docs = |mut res: actix_web::HttpResponseBuilder| res.insert_header(("Location", "/docs/")).finish();
    // `/` may become a page of its own one day; `/docs` is Swagger UI's for good
    cfg.route("/", web::get().to(move || async move { to_docs(HttpResponse::TemporaryRedirect()) }))
        .route("/docs", web::get().to(move || async move { to_docs(HttpResponse::PermanentRedirect()) }));
}

/// The documented paths and their methods, to tell "no such path" (404) from "not with this method" (405).
pub struct KnownRoutes(Vec<(Vec<String>, String)>);

impl KnownRoutes {
    pub fn from_spec(api: &utoipa::openapi::OpenApi) -> Self {
        let routes = api.paths.paths.iter().map(|(path, item)| {
            let methods = [
                ("GET", &item.get),
                ("HEAD", &item.head),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("DELETE", &item.delete),
                ("PATCH", &item.patch),
            ];
            let allow: Vec<&str> = methods.iter().filter(|(_, op)| op.is_some()).map(|(m, _)| *m).collect();
            (path.split('/').map(str::to_owned).collect(), allow.join(", "))
        });
        KnownRoutes(routes.collect())
    }

    /// The `Allow` value for a path, if it is a documented one.
    pub fn allowed(&self, path: &str) -> Option<&str> {
        let segments: Vec<&str> = path.split('/').collect();
        self.0.iter().find_map(|(template, allow)| {
            let matches = template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| t == s || (t.starts_with('{') && !s.is_empty()));
            matches.then_some(allow.as_str())
        })
    }
}

/// Error answers that someone else made (a framework extractor, Swagger UI's asset service) get ferry's JSON
/// body, with their status kept. Ferry's own errors are JSON already and pass through untouched.
pub fn json_errors<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_json =
            res.headers().get(header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/json"));
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let (req, res) = res.into_parts();
        let status = res.status();
        let (code, message) = match status {
            StatusCode::NOT_FOUND => {
                ("not_found", AppError::NoRoute(format!("{} {}", req.method(), req.path())).to_string())
            }
            _ if status.is_client_error() => {
                ("bad_request", status.canonical_reason().unwrap_or("bad request").to_lowercase())
            }
            _ => ("internal", "internal error".to_owned()),
        };
        let mut json = HttpResponse::build(status);
        for (name, value) in
            res.headers().iter().filter(|(name, _)| *name != header::CONTENT_TYPE && *name != header::CONTENT_LENGTH)
        {
            json.insert_header((name.clone(), value.clone()));
        }
        let json = json.json(ErrorBody { error: code.to_owned(), message });
        Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, json).map_into_right_body()))
    })
}

/// `GET /metrics` on `--metrics-addr`: the Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let (files, stored_bytes) = state.storage.totals();
    let now = Now {
        files,
        stored_bytes,
        cache_bytes: state.cache.held(),
        free_bytes: state.storage.free_bytes().unwrap_or(0),
    };
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode(now))
}

/// Requests no route took: 405 with `Allow` on a documented path, 404 elsewhere; JSON either way.
pub async fn unrouted(req: HttpRequest, known: web::Data<KnownRoutes>) -> Result<HttpResponse, AppError> {
    Err(match known.allowed(req.path()) {
        Some(allow) => AppError::MethodNotAllowed { allow: allow.to_owned() },
        None => AppError::NoRoute(format!("{} {}", req.method(), req.path())),
    })
}
