//! Builds the application: shared state, routes, limits, and a server on a listener it binds itself (port 0 in
//! tests).

use std::{io, net::SocketAddr};

use actix_multipart::form::{MultipartFormConfig, tempfile::TempFileConfig};
use actix_web::{App, HttpResponse, HttpServer, dev::Server, middleware::Logger, web};
use utoipa::OpenApi;
use utoipa_actix_web::{AppExt, service_config::ServiceConfig};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    config::Config,
    download::{self, FileCache},
    error::AppError,
    files, health,
    openapi::{self, ApiDoc, KnownRoutes},
    storage::Storage,
    upload::{self, ENVELOPE_BYTES, Limits},
};

pub struct AppState {
    pub storage: Storage,
    pub limits: Limits,
    pub cache: FileCache,
}

/// Every documented route.
pub fn routes(cfg: &mut ServiceConfig) {
    upload::configure(cfg);
    download::configure(cfg);
    files::configure(cfg);
    health::configure(cfg);
}

/// Requests no route took: 405 with `Allow` on a documented path, 404 elsewhere; JSON either way.
async fn unrouted(req: actix_web::HttpRequest, known: web::Data<KnownRoutes>) -> Result<HttpResponse, AppError> {
    Err(match known.allowed(req.path()) {
        Some(allow) => AppError::MethodNotAllowed { allow: allow.to_owned() },
        None => AppError::NotFound,
    })
}

pub struct Application {
    server: Server,
    addr: SocketAddr,
}

impl Application {
    pub fn build(config: &Config) -> io::Result<Application> {
        let storage = Storage::open(&config.data_dir, config.fsync)?;
        let limits = Limits {
            max_upload_bytes: config.max_upload_bytes,
            max_buffered_bytes: config.max_buffered_bytes,
            body_idle_timeout: config.body_idle_timeout,
        };
        let cache = FileCache::new(config.cache_bytes, config.cache_max_file_bytes);
        let state = web::Data::new(AppState { storage, limits, cache });
        let known = web::Data::new(KnownRoutes::from_spec(&openapi::spec()));
        let listener = std::net::TcpListener::bind(config.addr)?;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            let tmp = state.storage.tmp_dir();
            // actix-multipart's own limits, for the strategy that uses its `MultipartForm` extractor
            let form = MultipartFormConfig::default()
                .total_limit(usize::try_from(limits.max_upload_bytes).unwrap_or(usize::MAX))
                .memory_limit(ENVELOPE_BYTES as usize);
            App::new()
                .into_utoipa_app()
                .openapi(ApiDoc::openapi())
                .app_data(state.clone())
                .app_data(TempFileConfig::default().directory(tmp))
                .app_data(form)
                .app_data(
                    web::QueryConfig::default()
                        .error_handler(|err, _| AppError::BadRequest(format!("bad query string: {err}")).into()),
                )
                .configure(routes)
                .openapi_service(|api| {
                    SwaggerUi::new("/docs/{_:.*}").url("/api-docs/openapi.json", openapi::finish(api))
                })
                .into_app()
                .route(
                    "/docs",
                    web::get().to(|| async {
                        HttpResponse::PermanentRedirect().insert_header(("Location", "/docs/")).finish()
                    }),
                )
                .app_data(known.clone())
                .default_service(web::to(unrouted))
                .wrap(Logger::new("%a \"%r\" %s %b %Dms"))
        })
        .workers(config.worker_threads())
        // actix keeps Nagle's algorithm on by default (actix-web #3917): a response whose body comes a moment
        // after its headers (any body read on the blocking pool) then waits for the client's delayed ACK
        .tcp_nodelay(true)
        .listen(listener)?
        .run();
        Ok(Application { server, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub async fn run_until_stopped(self) -> io::Result<()> {
        self.server.await
    }
}
