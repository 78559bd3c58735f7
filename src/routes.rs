//! Every route, documented or not: the API's operations, the front door and what answers when nothing matches.

use actix_service::Service;
use actix_web::{
    HttpMessage, HttpRequest, HttpResponse,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{StatusCode, header},
    middleware::{ErrorHandlerResponse, ErrorHandlers},
    web,
};
use futures_util::future::Either;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    auth::{Access, Admitted, TokenName},
    download,
    error::{AppError, ErrorBody, ErrorCode},
    files, health,
    metrics::{Now, classic_text},
    page,
    state::AppState,
    tus, upload,
};

/// Every documented operation.
pub fn api(cfg: &mut ServiceConfig) {
    upload::configure(cfg);
    download::configure(cfg);
    tus::configure(cfg);
    files::configure(cfg);
    health::configure(cfg);
}

/// The undocumented routes: the upload page at `/`, and `/docs` leading to Swagger UI.
pub fn front_door(cfg: &mut web::ServiceConfig) {
    let to_docs = |mut res: actix_web::HttpResponseBuilder| res.insert_header(("Location", "/docs/")).finish();
    cfg.configure(page::configure)
        .route("/docs", web::get().to(move || async move { to_docs(HttpResponse::PermanentRedirect()) }));
}

/// The documented paths and their methods, to tell "no such path" (404) from "not with this method" (405), and
/// what access each operation needs (from its tag, see [`Access::for_operation`]).
pub struct KnownRoutes(Vec<Route>);

struct Route {
    /// The path template, e.g. `/files/download/cached/{id}` (interned: a metrics label and a log field).
    template: &'static str,
    segments: Vec<&'static str>,
    allow: String,
    access: Vec<(&'static str, Access)>,
}

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
                ("OPTIONS", &item.options),
            ];
            let ops: Vec<(&'static str, &utoipa::openapi::path::Operation)> =
                methods.iter().filter_map(|(m, op)| Some((*m, op.as_ref()?))).collect();
            let allow: Vec<&str> = ops.iter().map(|(m, _)| *m).collect();
            let access = ops
                .iter()
                .map(|(m, op)| {
                    let tag = op.tags.as_ref().and_then(|tags| tags.first()).map_or("", String::as_str);
                    (*m, Access::for_operation(tag, m))
                })
                .collect();
            let template = intern(path);
            Route { template, segments: template.split('/').collect(), allow: allow.join(", "), access }
        });
        KnownRoutes(routes.collect())
    }

    /// The documented route `path` is on, without allocating: this runs for every request.
    fn route(&self, path: &str) -> Option<&Route> {
        let count = path.bytes().filter(|&b| b == b'/').count() + 1;
        self.0.iter().find(|route| {
            route.segments.len() == count
                && route
                    .segments
                    .iter()
                    .zip(path.split('/'))
                    .all(|(t, s)| *t == s || (t.starts_with('{') && !s.is_empty()))
        })
    }

    /// The template of the documented route `path` is on, e.g. `/files/{id}` for `/files/0190…`.
    pub fn template(&self, path: &str) -> Option<&'static str> {
        self.route(path).map(|route| route.template)
    }

    /// What `method` on `path` needs; open for what is not a documented operation (it answers 404 or 405).
    pub fn access(&self, method: &str, path: &str) -> Access {
        self.route(path)
            .and_then(|route| route.access.iter().find(|(m, _)| *m == method))
            .map_or(Access::Open, |(_, access)| *access)
    }

    /// The `Allow` value for a path, if it is a documented one.
    pub fn allowed(&self, path: &str) -> Option<&str> {
        self.route(path).map(|route| route.allow.as_str())
    }
}

/// The same `&'static str` for equal templates, each leaked once per process however many apps are built (tests
/// build hundreds).
fn intern(template: &str) -> &'static str {
    static SEEN: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(known) = seen.iter().find(|known| **known == template) {
        return known;
    }
    let leaked: &'static str = Box::leak(template.to_owned().into_boxed_str());
    seen.push(leaked);
    leaked
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
        json.extensions_mut().insert(ErrorCode(code));
        let json = json.json(ErrorBody { error: code.to_owned(), message });
        Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, json).map_into_right_body()))
    })
}

/// `GET /metrics` on `--metrics-addr`: OpenMetrics for a scraper that asks for it (Prometheus does), Prometheus's
/// classic text format otherwise.
pub async fn metrics(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let (files, stored_bytes) = state.storage.totals();
    let now = Now {
        files,
        stored_bytes,
        cache_bytes: state.cache.held(),
        free_bytes: state.storage.free_bytes().unwrap_or(0),
    };
    let exposition = state.metrics.encode(now);
    let accept = req.headers().get(header::ACCEPT).and_then(|accept| accept.to_str().ok()).unwrap_or_default();
    if accept.contains("application/openmetrics-text") {
        HttpResponse::Ok().content_type("application/openmetrics-text; version=1.0.0; charset=utf-8").body(exposition)
    } else {
        HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(classic_text(&exposition))
    }
}

/// Requests no route took: 405 with `Allow` on a documented path, 404 elsewhere; JSON either way.
pub async fn unrouted(req: HttpRequest, known: web::Data<KnownRoutes>) -> Result<HttpResponse, AppError> {
    Err(match known.allowed(req.path()) {
        Some(allow) => AppError::MethodNotAllowed { allow: allow.to_owned() },
        None => AppError::NoRoute(format!("{} {}", req.method(), req.path())),
    })
}

/// Middleware (`wrap_fn`) that lets a request reach its handler only when [`crate::auth::Gate::authorize`]
/// admits it: before routing, so a refused upload never reads a body byte. A refused request that has a body
/// closes the connection, as a 413 does.
pub fn guard<S, B>(
    req: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse<EitherBody<B>>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    let refused = match (req.app_data::<web::Data<AppState>>(), req.app_data::<web::Data<KnownRoutes>>()) {
        // with auth off, nothing to look up per request
        (Some(state), Some(known)) if state.gate.tokens.enabled() => {
            let (method, path) = (req.method().as_str(), req.path());
            match state.gate.authorize(known.access(method, path), method, path, req.query_string(), req.headers()) {
                Ok(Admitted::Token(name)) => {
                    req.extensions_mut().insert(TokenName(name));
                    None
                }
                Ok(_) => None,
                Err(err) => Some(err),
            }
        }
        _ => None,
    };
    let outcome = match refused {
        None => Either::Left(service.call(req)),
        Some(err) => {
            let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
                || req.headers().get(header::CONTENT_LENGTH).is_some_and(|len| len.as_bytes() != b"0");
            let mut res = actix_web::ResponseError::error_response(&err);
            if has_body {
                res.head_mut().set_connection_type(actix_http::ConnectionType::Close);
            }
            Either::Right(req.into_response(res).map_into_right_body())
        }
    };
    async move {
        match outcome {
            Either::Left(call) => call.await.map(ServiceResponse::map_into_left_body),
            Either::Right(res) => Ok(res),
        }
    }
}
