//! Builds the application: shared state, routes, limits, and a server on a listener it binds itself (port 0 in
//! tests).

use std::{fmt, io, net::SocketAddr, sync::Arc};

use actix_cors::Cors;
use actix_web::{App, dev::Server, middleware::Condition, web};
use utoipa_actix_web::service_config::ServiceConfig;
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    auth::{Gate, Tokens},
    cache::FileCache,
    config::{AuthMode, Config},
    error::AppError,
    links::LinkSigner,
    metrics::Metrics,
    openapi,
    requests::Tracking,
    routes::{self, KnownRoutes},
    server::{self, Connections},
    state::{AppState, Lifecycle},
    storage::Storage,
    tus::store::Uploads,
    upload,
};

/// Why the server could not start, as one line that names the thing at fault.
#[derive(Debug)]
pub struct StartupError(String);

impl fmt::Display for StartupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartupError {}

pub struct Application {
    server: Server,
    addr: SocketAddr,
    lifecycle: Lifecycle,
    storage: Storage,
    /// Resumable uploads in progress, swept periodically while the server runs.
    uploads: Uploads,
    /// `/metrics` on `--metrics-addr`, apart from the public port.
    metrics_server: Option<(Server, SocketAddr)>,
    /// `--shutdown-delay`.
    shutdown_delay: std::time::Duration,
    /// `--s3-sweep-after`.
    s3_sweep_after: std::time::Duration,
}

impl Application {
    pub fn build(config: &Config) -> Result<Application, StartupError> {
        // the address first: a ferry that cannot listen must not touch the data directory (its startup sweep
        // would remove the uploads in progress of the ferry that holds the address)
        let tokens = Tokens::open(config.tokens_path(), config.auth == AuthMode::Token);
        check_exposure(config.addr, tokens.enabled(), config.allow_anonymous)?;
        let listener = std::net::TcpListener::bind(config.addr).map_err(|err| listen_error(config.addr, &err))?;
        let addr = listener.local_addr().map_err(|err| listen_error(config.addr, &err))?;
        let storage = match config.storage.s3() {
            None => Storage::open(&config.data_dir, config.fsync).map_err(|err| {
                StartupError(format!("cannot use data directory {}: {err}", config.data_dir.display()))
            })?,
            Some(s3) => Storage::open_s3(&config.data_dir, &s3).map_err(|err| {
                StartupError(format!(
                    "cannot use bucket {} with data directory {}: {err}",
                    s3.bucket,
                    config.data_dir.display()
                ))
            })?,
        };
        let min_free = storage.keep_free(config.min_free_bytes).map_err(|err| {
            StartupError(format!("cannot read the free space of data directory {}: {err}", config.data_dir.display()))
        })?;
        log::info!("keeping {} free on the data volume", bytesize::ByteSize(min_free).display().iec());
        let uploads = Uploads::open(&config.data_dir, storage.clone(), config.fsync, config.tus_expiry)
            .map_err(|err| StartupError(format!("cannot use data directory {}: {err}", config.data_dir.display())))?;
        let tus_uploads = web::Data::new(uploads.clone());
        let links =
            LinkSigner::load(config.link_secret.as_deref(), &config.data_dir, config.max_link_ttl).map_err(|err| {
                StartupError(format!("cannot use the link secret in {}: {err}", config.data_dir.display()))
            })?;
        if tokens.enabled() {
            log::info!("access control on: tokens from {}", tokens.path().display());
        } else {
            log::info!("access control off: anyone who can reach {addr} may upload, read and delete");
        }
        let gate = Arc::new(Gate { tokens, links });
        let limits = config.limits();
        let cache = FileCache::new(config.cache_bytes, config.cache_max_file_bytes);
        let spec = openapi::spec(&limits);
        let known = web::Data::new(KnownRoutes::from_spec(&spec));
        let lifecycle = Lifecycle::default();
        // nothing could read them without --metrics-addr, so nothing is recorded
        let metrics = Arc::new(if config.metrics_addr.is_some() { Metrics::default() } else { Metrics::off() });
        let tracking = Arc::new(Tracking {
            metrics: metrics.clone(),
            known: known.clone(),
            lifecycle: lifecycle.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
        });
        let state = web::Data::new(AppState {
            storage: storage.clone(),
            limits,
            cache,
            gate: gate.clone(),
            lifecycle: lifecycle.clone(),
            metrics: metrics.clone(),
        });
        let cors_origins = config.cors_origin.clone();
        let connections = Connections {
            workers: config.worker_threads(),
            header_timeout: config.header_timeout,
            keep_alive: config.keep_alive,
            shutdown_timeout: config.shutdown_timeout,
            max_connections: config.connection_cap(),
        };
        log::info!("at most {} connections at once", connections.max_connections);
        let scraped = state.clone();
        let tracked = tracking.clone();
        let app = move || {
            let tracking = tracked.clone();
            App::new()
                .app_data(state.clone())
                .app_data(known.clone())
                .app_data(tus_uploads.clone())
                .configure(upload::extractor_config(state.limits, state.storage.tmp_dir()))
                .app_data(web::PathConfig::default().error_handler(|_, _| AppError::NotFound.into()))
                .app_data(
                    web::QueryConfig::default()
                        .error_handler(|err, _| AppError::InvalidQuery(format!("bad query string: {err}")).into()),
                )
                .configure(|cfg| routes::api(&mut ServiceConfig::new(cfg)))
                .service(SwaggerUi::new("/docs/{_:.*}").url("/api-docs/openapi.json", spec.clone()))
                .configure(routes::front_door)
                .default_service(web::to(routes::unrouted))
                .wrap_fn(routes::guard)
                .wrap(routes::json_errors())
                .wrap(Condition::new(!cors_origins.is_empty(), cors(&cors_origins)))
                .wrap_fn(move |req, service| server::track_requests(req, service, &tracking))
        };
        let server = server::serve(listener, connections, limits, tracking, gate, app)
            .map_err(|err| listen_error(config.addr, &err))?;
        let metrics_server = match config.metrics_addr {
            Some(addr) => Some(metrics_server(addr, scraped)?),
            None => None,
        };
        Ok(Application {
            server,
            addr,
            lifecycle,
            storage,
            uploads,
            metrics_server,
            shutdown_delay: config.shutdown_delay,
            s3_sweep_after: config.storage.s3_sweep_after,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served, with `--metrics-addr`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves until stopped; then removes what uploads cut by the stop left in `tmp/`.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        let metrics = self.metrics_server.map(|(server, _)| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let sweeper = tokio::spawn(self.uploads.sweep_periodically());
        let bucket_sweeper = tokio::spawn(sweep_bucket(self.storage.clone(), self.s3_sweep_after));
        self.server.await?;
        sweeper.abort();
        bucket_sweeper.abort();
        if let Some(metrics) = metrics {
            metrics.stop(true).await;
        }
        self.storage.sweep_tmp()
    }

    /// SIGTERM or SIGINT starts a graceful stop: readiness turns 503 at once; after `--shutdown-delay` (during
    /// which new connections are still served) the listener closes, and requests in flight get up to
    /// `--shutdown-timeout` to finish. A second SIGINT stops at once.
    pub fn stop_on_signals(&self) -> io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
        let (handle, lifecycle, delay) = (self.server.handle(), self.lifecycle.clone(), self.shutdown_delay);
        actix_web::rt::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            lifecycle.begin_stopping();
            log::info!("{name}: shutting down ({} requests in flight)", lifecycle.in_flight());
            let graceful = async {
                if !delay.is_zero() {
                    log::info!("readiness answers 503; still accepting for {}", humantime::format_duration(delay));
                    tokio::time::sleep(delay).await;
                }
                handle.stop(true).await;
            };
            tokio::select! {
                () = graceful => {}
                _ = int.recv() => {
                    log::warn!("SIGINT again: stopping now ({} requests in flight)", lifecycle.in_flight());
                    handle.stop(false).await;
                }
            }
        });
        Ok(())
    }
}

/// On S3, every replica sweeps the bucket for uploads that a crashed replica began and never finished, and
/// counts its files for the metrics: at startup, then every tenth of `--s3-sweep-after` (at most hourly, at least
/// every second).
async fn sweep_bucket(storage: Storage, older: std::time::Duration) {
    let Some(s3) = storage.object_store() else { return };
    let every = (older / 10).clamp(std::time::Duration::from_secs(1), std::time::Duration::from_secs(3600));
    loop {
        match s3.sweep(older).await {
            Ok(0) => {}
            Ok(swept) => log::info!("swept {swept} unfinished uploads from bucket {}", s3.bucket()),
            Err(err) => log::warn!("sweeping bucket {} failed: {err}", s3.bucket()),
        }
        if let Err(err) = storage.recount().await {
            log::warn!("counting the files of bucket {} failed: {err}", s3.bucket());
        }
        tokio::time::sleep(every).await;
    }
}

/// A server of its own for `/metrics`, so that the metrics need not share the public port.
fn metrics_server(addr: SocketAddr, state: web::Data<AppState>) -> Result<(Server, SocketAddr), StartupError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|err| listen_error(addr, &err))?;
    let bound = listener.local_addr().map_err(|err| listen_error(addr, &err))?;
    let server = actix_web::HttpServer::new(move || {
        App::new().app_data(state.clone()).route("/metrics", web::get().to(routes::metrics))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .map_err(|err| listen_error(addr, &err))?
    .run();
    log::info!("metrics at http://{bound}/metrics");
    Ok((server, bound))
}

/// Listening beyond loopback with no access control is refused unless asked for, as Redis's protected mode does.
pub fn check_exposure(addr: SocketAddr, auth_on: bool, allow_anonymous: bool) -> Result<(), StartupError> {
    if auth_on || allow_anonymous || addr.ip().is_loopback() {
        return Ok(());
    }
    Err(StartupError(format!(
        "refusing to listen on {addr} without access control: create a token (ferry token create --name NAME \
         --scopes upload,read,delete), pass --auth token, or pass --allow-anonymous to serve everyone"
    )))
}

/// CORS for the `--cors-origin`s: the methods and headers uploads, downloads and file operations use, and the
/// response headers a page needs to read.
fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "HEAD", "POST", "DELETE", "PATCH"])
        .allowed_headers([
            "authorization",
            "content-type",
            "x-checksum-sha256",
            "range",
            "if-match",
            "if-none-match",
            "if-modified-since",
            "if-unmodified-since",
            "if-range",
            "content-disposition",
            "tus-resumable",
            "upload-length",
            "upload-defer-length",
            "upload-offset",
            "upload-metadata",
            "upload-checksum",
            "x-request-id",
        ])
        .expose_headers([
            "location",
            "etag",
            "last-modified",
            "content-disposition",
            "content-range",
            "content-length",
            "accept-ranges",
            "repr-digest",
            "link",
            "www-authenticate",
            "tus-resumable",
            "tus-version",
            "tus-extension",
            "tus-max-size",
            "upload-offset",
            "upload-length",
            "upload-expires",
            "ferry-file-id",
            "ferry-file-location",
            "x-request-id",
        ])
        .max_age(3600);
    for origin in origins {
        cors = if origin == "*" { cors.allow_any_origin() } else { cors.allowed_origin(origin) };
    }
    cors
}

fn listen_error(addr: SocketAddr, err: &io::Error) -> StartupError {
    let why = match err.kind() {
        io::ErrorKind::AddrInUse => "the address is already in use (is another ferry running?)".to_owned(),
        io::ErrorKind::AddrNotAvailable => "no network interface has this address".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied (ports below 1024 need privileges)".to_owned(),
        _ => err.to_string(),
    };
    StartupError(format!("cannot listen on {addr}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_open_server_beyond_loopback_needs_allow_anonymous() {
        let (public, local, local6) =
            ("0.0.0.0:8000".parse().unwrap(), "127.0.0.1:8000".parse().unwrap(), "[::1]:8000".parse().unwrap());
        assert!(check_exposure(public, false, false).is_err());
        assert!(check_exposure(public, true, false).is_ok());
        assert!(check_exposure(public, false, true).is_ok());
        assert!(check_exposure(local, false, false).is_ok());
        assert!(check_exposure(local6, false, false).is_ok());
    }
}
