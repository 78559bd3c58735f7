//! The connection level, below actix-web's routing: ferry runs actix-web's `App` on actix-http's HTTP/1
//! service and actix-server's accept loop itself (what `actix_web::HttpServer` does), because three things it
//! needs are not reachable through `HttpServer`:
//!
//! - **A deadline on every request head.** actix-http times only the first request's head
//!   (`client_request_timeout`); on a kept-alive connection, a client that trickles the next head a byte at a
//!   time holds the connection forever. [`Watched`] wraps each connection and fails its read once a head has
//!   been arriving for longer than `--header-timeout`. A head starts with the first byte read while no request
//!   is in progress and ends at its blank line; [`track_requests`] tells the connection when a request is in
//!   progress, so that body bytes are never taken for a head.
//! - **`Expect: 100-continue` answered from the head.** actix-http sends `100 Continue` before the handler
//!   runs; [`expect`] first refuses what the head alone decides (401 and 403 for access, 413, 415, 400, an
//!   unknown route), so the client never starts sending a body that will be refused.
//! - **A cap on open connections** derived from the file-descriptor limit, so that connections can never take
//!   the descriptors that uploads and downloads need.

use std::{
    cell::Cell,
    future::{Ready, ready},
    io,
    net::{SocketAddr, TcpListener},
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use actix_http::{HttpMessage, HttpService, Protocol, Request};
use actix_server::Server;
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::{
    App, ResponseError,
    body::MessageBody,
    dev::{AppConfig, ServiceFactory, ServiceRequest, ServiceResponse},
    http::Method,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    time::{Instant, Sleep},
};

use crate::{
    auth::Gate,
    config::Limits,
    error::AppError,
    metrics::Metrics,
    requests::{self, Tracked, Tracking, X_REQUEST_ID},
    routes::KnownRoutes,
    upload,
};

/// Connection settings, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    pub workers: usize,
    pub header_timeout: Duration,
    pub keep_alive: Duration,
    /// How long a graceful stop waits for requests in flight.
    pub shutdown_timeout: Duration,
    /// Across all workers.
    pub max_connections: usize,
}

/// Descriptors kept for what connections do: an upload's temp file, a download's open file, the data
/// directory's own, logs. Each connection may hold a socket and one file.
const RESERVED_FDS: u64 = 64;

/// The default `--max-connections`: half of what the file-descriptor limit leaves after [`RESERVED_FDS`], so
/// that every connection can hold its socket and one file at once. Raises the soft limit to the hard one
/// first, as servers commonly do.
pub fn default_max_connections() -> usize {
    let limit = raise_fd_limit();
    usize::try_from(limit.saturating_sub(RESERVED_FDS) / 2).unwrap_or(usize::MAX).clamp(16, 100_000)
}

fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max.min(1 << 20), rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// Serves `app` on `listener`.
pub fn serve<F, T, B>(
    listener: TcpListener,
    settings: Connections,
    limits: Limits,
    tracking: Arc<Tracking>,
    gate: Arc<Gate>,
    app: F,
) -> io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    let addr = listener.local_addr()?;
    let per_worker = settings.max_connections.div_ceil(settings.workers).max(1);
    let builder = Server::build();
    // a graceful stop also closes idle kept-alive connections at once, instead of waiting for their timeout
    let stopping = builder.graceful_shutdown_signal();
    Ok(builder
        .workers(settings.workers)
        .max_concurrent_connections(per_worker)
        .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1))
        // the binary decides what signals do (see `Application::stop_on_signals`)
        .disable_signals()
        .listen("ferry", listener, move || {
            let (limits, stopping, gate) = (limits, stopping.clone(), gate.clone());
            let (tracking, metrics) = (tracking.clone(), tracking.metrics.clone());
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                .keep_alive(settings.keep_alive)
                .client_request_timeout(settings.header_timeout)
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(addr)
                .expect(fn_service(move |req: Request| ready(expect(req, &limits, &tracking, &gate))))
                .on_connect_ext(|io: &Watched, ext| {
                    ext.insert(io.watch.clone());
                })
                .finish(map_config(app().into_factory(), |_| AppConfig::default()));
            let header_timeout = settings.header_timeout;
            fn_service(move |stream: TcpStream| accept(stream, header_timeout, &metrics)).and_then(http)
        })?
        .run())
}

/// What actix-http's service takes for each connection.
type Accepted = (Watched, Protocol, Option<SocketAddr>);

/// Every accepted connection: no Nagle (actix-web #3917: a response whose body comes a moment after its headers
/// would wait for the client's delayed ACK), and watched.
fn accept(
    stream: TcpStream,
    header_timeout: Duration,
    metrics: &Metrics,
) -> Ready<Result<Accepted, actix_http::error::DispatchError>> {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let mut watched = Watched::new(stream, header_timeout);
    watched.counted = Some(metrics.connection_opened());
    ready(Ok((watched, Protocol::Http1, peer)))
}

/// The `Expect: 100-continue` decision: refuse from the head what the handler would refuse before reading the
/// body, authorization first; otherwise let the client send it. A refusal is the request's whole answer: it
/// carries the request's id and gets its access line here.
fn expect(
    req: Request,
    limits: &Limits,
    tracking: &Tracking,
    gate: &Gate,
) -> Result<Request, actix_http::Response<actix_web::body::BoxBody>> {
    match refusal(&req, limits, &tracking.known, gate) {
        None => Ok(req),
        Some(err) => {
            let id = requests::answered_from_head(&req, err.status_code(), err.code(), tracking);
            let _entered = id.enter();
            log::debug!("refused before 100 Continue: {err}");
            let mut res = closing(err);
            res.headers_mut().insert(X_REQUEST_ID, requests::header_value(&id));
            Err(res)
        }
    }
}

fn refusal(req: &Request, limits: &Limits, known: &KnownRoutes, gate: &Gate) -> Option<AppError> {
    let (method, path) = (req.method().as_str(), req.path());
    let query = req.uri().query().unwrap_or_default();
    let denied = match gate.tokens.enabled() {
        true => gate.authorize(known.access(method, path), method, path, query, req.headers()).err(),
        false => None,
    };
    denied.or_else(|| match upload::strategy_at(req.path()) {
        Some(strategy) if req.method() == Method::POST => upload::precheck(strategy, limits, req).err(),
        Some(_) => known.allowed(req.path()).map(|allow| AppError::MethodNotAllowed { allow: allow.to_owned() }),
        None => match known.allowed(req.path()) {
            None => Some(AppError::NoRoute(format!("{} {}", req.method(), req.path()))),
            Some(_) => None,
        },
    })
}

/// The client was told not to send its body, and may send it anyway: the connection cannot be reused.
fn closing(err: AppError) -> actix_http::Response<actix_web::body::BoxBody> {
    let mut res = err.error_response();
    res.head_mut().set_connection_type(actix_http::ConnectionType::Close);
    res.into()
}

/// Where a connection is between requests, shared by its [`Watched`] stream and [`track_requests`].
#[derive(Clone)]
pub struct ConnectionWatch(Rc<Cell<Phase>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No request in progress and none arriving.
    Idle,
    /// A head is arriving; `crlfs` counts the line ends at the end of what was read (2 ends the head).
    Head { crlfs: u8, cr: bool },
    /// A head is complete or a request is in progress: bytes read are its body, or the next pipelined request.
    Busy,
}

/// A connection whose request heads must each arrive within a deadline.
pub struct Watched {
    stream: TcpStream,
    watch: ConnectionWatch,
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// In the open-connections gauge while the connection lives.
    counted: Option<crate::metrics::GaugeGuard>,
}

impl Watched {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        let watch = ConnectionWatch(Rc::new(Cell::new(Phase::Idle)));
        Watched { stream, watch, timeout, deadline: Box::pin(tokio::time::sleep(timeout)), counted: None }
    }

    /// Follows the head through the bytes just read.
    fn saw(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            let phase = match self.watch.0.get() {
                Phase::Busy => return,
                Phase::Idle => {
                    self.deadline.as_mut().reset(Instant::now() + self.timeout);
                    Phase::Head { crlfs: 0, cr: false }
                }
                head => head,
            };
            self.watch.0.set(match (phase, byte) {
                (Phase::Head { crlfs, .. }, b'\r') => Phase::Head { crlfs, cr: true },
                (Phase::Head { crlfs: 1, cr: true }, b'\n') => Phase::Busy,
                // a bare LF ends a line too, as actix's parser (httparse) accepts
                (Phase::Head { crlfs, .. }, b'\n') => Phase::Head { crlfs: crlfs + 1, cr: false },
                _ => Phase::Head { crlfs: 0, cr: false },
            });
            if self.watch.0.get() == Phase::Busy {
                return;
            }
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            this.saw(&buf.filled()[before..]);
        }
        if matches!(this.watch.0.get(), Phase::Head { .. }) && this.deadline.as_mut().poll(cx).is_ready() {
            log::debug!("closing a connection whose request head took longer than {:?}", this.timeout);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "request head too slow")));
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Middleware (`wrap_fn`) that tells the connection a request is in progress, and when its response is ready
/// the connection is waiting for the next head again; in between, [`requests::track`] names, counts and logs
/// the request.
pub fn track_requests<S, B>(
    req: ServiceRequest,
    service: &S,
    tracking: &Arc<Tracking>,
) -> impl Future<Output = Result<ServiceResponse<Tracked<B>>, actix_web::Error>> + use<S, B>
where
    S: actix_web::dev::Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let watch = req.conn_data::<ConnectionWatch>().cloned();
    if let Some(watch) = &watch {
        watch.0.set(Phase::Busy);
    }
    let response = requests::track(req, service, tracking);
    async move {
        let response = response.await;
        if let Some(watch) = watch {
            watch.0.set(Phase::Idle);
        }
        response
    }
}
