//! Liveness and readiness: the service answers and its data directory takes writes.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use actix_web::{get, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    error::{AppError, ErrorBody},
    startup::AppState,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Health
///
/// 200 when the data directory takes writes, 503 otherwise.
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
        Ok(Ok(())) => Ok(web::Json(Health { status: "ok" })),
        Ok(Err(err)) => {
            log::error!("health check: data directory not writable: {err}");
            Err(AppError::Unavailable)
        }
        Err(_) => Err(AppError::Unavailable),
    }
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health);
}

/// `ferry healthcheck`: asks a running server for `/health`, so container images need no curl.
pub fn probe(addr: SocketAddr) -> std::io::Result<bool> {
    let addr = match addr.ip() {
        ip if ip.is_unspecified() => SocketAddr::new(
            if ip.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() },
            addr.port(),
        ),
        _ => addr,
    };
    let timeout = Duration::from_secs(5);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(stream, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut status_line = [0; 12];
    stream.read_exact(&mut status_line)?;
    Ok(status_line.starts_with(b"HTTP/1.1 200"))
}
