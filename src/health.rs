//! Liveness and readiness: the service answers and its data directory takes writes.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use actix_web::{get, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    error::{AppError, ErrorBody},
    state::AppState,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Stored files found damaged and moved to `<data>/quarantine/`, waiting for an operator. They are not served
    /// and do not make the service unhealthy.
    #[schema(example = 0)]
    pub quarantined: usize,
}

/// Health
///
/// 200 when the data directory takes writes, 503 otherwise. The answer also counts the files in quarantine.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "The data directory cannot be written", body = ErrorBody),
    )
)]
#[get("/health")]
async fn health(state: web::Data<AppState>) -> Result<web::Json<Health>, AppError> {
    let storage = state.storage.clone();
    match web::block(move || storage.check_writable()).await {
        Ok(Ok(())) => Ok(web::Json(Health { status: "ok", quarantined: state.storage.quarantined() })),
        Ok(Err(err)) => {
            log::error!("health check: data directory not writable: {err}");
            Err(AppError::Unavailable)
        }
        Err(_) => Err(AppError::Unavailable),
    }
}

/// Liveness
///
/// 200 while the process serves requests at all; for restarting a wedged process, not for routing traffic.
#[utoipa::path(tag = "health", responses((status = 200, description = "The process is up", body = Live)))]
#[get("/health/live")]
async fn live() -> web::Json<Live> {
    web::Json(Live { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Readiness
///
/// 200 when ferry should get traffic: its data directory takes writes, the data volume has more than
/// `--min-free-bytes` free, and it is not shutting down. 503 otherwise, saying which.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready for traffic", body = Ready),
        (status = 503, description = "Not ready: shutting down, data directory not writable, or too little free space", body = ErrorBody),
    )
)]
#[get("/health/ready")]
async fn ready(state: web::Data<AppState>) -> Result<web::Json<Ready>, AppError> {
    if state.lifecycle.is_stopping() {
        return Err(AppError::NotReady("shutting down".into()));
    }
    let storage = state.storage.clone();
    web::block(move || storage.check_writable())
        .await?
        .map_err(|err| AppError::NotReady(format!("the data directory cannot be written: {err}")))?;
    let free = state.storage.free_bytes()?;
    let min_free = state.storage.min_free();
    if free < min_free {
        return Err(AppError::NotReady(format!(
            "{free} bytes free on the data volume, below the {min_free} kept free"
        )));
    }
    Ok(web::Json(Ready { status: "ready", free_bytes: free, quarantined: state.storage.quarantined() }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Free bytes on the data volume.
    #[schema(example = 53687091200_u64)]
    pub free_bytes: u64,
    /// Stored files in `<data>/quarantine/`.
    #[schema(example = 0)]
    pub quarantined: usize,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health).service(live).service(ready);
}

/// `ferry healthcheck`: asks a running server for `/health/ready`, so container images need no curl. `Err` says why
/// the server is not healthy, in a sentence.
pub fn probe(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let addr = match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(
            if ip.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() },
            addr.port(),
        ),
        _ => addr,
    };
    let no_answer = |err: std::io::Error| match err.kind() {
        ErrorKind::TimedOut | ErrorKind::WouldBlock => format!("no answer from {addr} within {}", secs(timeout)),
        ErrorKind::ConnectionRefused => format!("nothing listens on {addr}"),
        _ => format!("no answer from {addr}: {err}"),
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(no_answer)?;
    stream.set_read_timeout(Some(timeout)).map_err(no_answer)?;
    stream.set_write_timeout(Some(timeout)).map_err(no_answer)?;
    write!(stream, "GET /health/ready HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").map_err(no_answer)?;
    let mut answer = Vec::new();
    stream.take(4096).read_to_end(&mut answer).map_err(no_answer)?;
    let text = String::from_utf8_lossy(&answer);
    let status = text.lines().next().unwrap_or_default();
    if status.starts_with("HTTP/1.1 200") {
        return Ok(());
    }
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body.trim());
    Err(format!("{addr} answered {:?} {body}", status.trim()))
}

fn secs(duration: Duration) -> String {
    match duration.subsec_millis() {
        0 => format!("{} s", duration.as_secs()),
        _ => format!("{:.1} s", duration.as_secs_f64()),
    }
}
