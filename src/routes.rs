//! Every route, documented or not: the API's operations, the front door and what answers when nothing matches.

use actix_web::{HttpRequest, HttpResponse, web};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{download, error::AppError, files, health, upload};

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

/// Requests no route took: 405 with `Allow` on a documented path, 404 elsewhere; JSON either way.
pub async fn unrouted(req: HttpRequest, known: web::Data<KnownRoutes>) -> Result<HttpResponse, AppError> {
    Err(match known.allowed(req.path()) {
        Some(allow) => AppError::MethodNotAllowed { allow: allow.to_owned() },
        None => AppError::NoRoute(format!("{} {}", req.method(), req.path())),
    })
}
