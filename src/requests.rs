//! What happens around every request above routing: its id (`X-Request-Id`, echoed on every answer and carried
//! by every line it logs), the metrics of its answer, and its access line, written once the response body has
//! been sent (or abandoned) with the bytes that went each way.
//!
//! The request path stays cheap: the route template is a `&'static str` found without allocating, metrics
//! labels are static, and the access line's fields are gathered only when it will be written (`RUST_LOG`).

use std::{
    cell::Cell,
    net::IpAddr,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    HttpMessage, HttpRequest,
    body::{BodySize, MessageBody},
    dev::{Payload, Service, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::{
        StatusCode,
        header::{self, HeaderMap, HeaderName, HeaderValue},
    },
    web::{self, Bytes},
};
use futures_util::Stream;
use ipnet::IpNet;
use log::Level;
use pin_project_lite::pin_project;

use crate::{
    auth::TokenName,
    download::Reader,
    error::ErrorCode,
    forwarded, links,
    logging::{self, AccessLine},
    metrics::{Metrics, method_label},
    request_id::RequestId,
    routes::KnownRoutes,
    state::Lifecycle,
};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What every request needs, captured once when the server is built (no `app_data` lookup per request).
pub struct Tracking {
    pub metrics: Arc<Metrics>,
    pub known: web::Data<KnownRoutes>,
    pub lifecycle: Lifecycle,
    /// `--trusted-proxies`.
    pub trusted_proxies: Vec<IpNet>,
}

impl Tracking {
    /// The route template for metrics and the access line: a documented route, a front-door one, or
    /// `unmatched` (never a raw path: that would make a label per file id).
    pub fn route(&self, path: &str) -> &'static str {
        self.known.template(path).unwrap_or(match path {
            "/" => "/",
            "/docs" => "/docs",
            "/api-docs/openapi.json" => "/api-docs/openapi.json",
            _ if path.starts_with("/docs/") => "/docs/{file}",
            _ => "unmatched",
        })
    }
}

/// Health checks, Swagger UI and the spec log at DEBUG, so that they do not bury the traffic.
fn level(path: &str) -> Level {
    let under = |dir: &str| path.strip_prefix(dir).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    let quiet = path == "/" || under("/health") || under("/docs") || under("/api-docs");
    if quiet { Level::Debug } else { Level::Info }
}

fn id_of(headers: &HeaderMap) -> RequestId {
    headers.get(X_REQUEST_ID).and_then(|value| RequestId::accept(value.as_bytes())).unwrap_or_else(RequestId::generate)
}

/// The id as the `X-Request-Id` of an answer.
pub fn header_value(id: &RequestId) -> HeaderValue {
    HeaderValue::from_str(id.as_str()).expect("a request id is a valid header value")
}

/// Runs the request under its id, then names the answer with it, counts it and prepares its access line.
pub fn track<S, B>(
    mut req: ServiceRequest,
    service: &S,
    tracking: &Arc<Tracking>,
) -> impl Future<Output = Result<ServiceResponse<Tracked<B>>, actix_web::Error>> + use<S, B>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let id = id_of(req.headers());
    let logged = logging::access_enabled(level(req.path()));
    let bytes_in = if logged { count_body(&mut req) } else { None };
    let in_flight = tracking.lifecycle.start_request();
    let started = Instant::now();
    let tracking = tracking.clone();
    let call = {
        let _entered = id.enter();
        InScope { id: id.clone(), inner: service.call(req) }
    };
    async move {
        let mut res = call.await?;
        drop(in_flight);
        res.headers_mut().insert(X_REQUEST_ID, header_value(&id));
        let status = res.status();
        let route = (logged || tracking.metrics.is_on()).then(|| tracking.route(res.request().path()));
        if let Some(route) = route.filter(|_| tracking.metrics.is_on()) {
            count(&tracking.metrics, route, &res, started);
        }
        let line = match route {
            Some(route) if logged => Some(Box::new(Pending {
                req: res.request().clone(),
                id: id.clone(),
                status,
                error: error_code(&res),
                route,
                bytes_in,
                started,
                tracking,
            })),
            _ => None,
        };
        Ok(res.map_body(|_, body| Tracked { body, id, done: Done { bytes_out: 0, line } }))
    }
}

/// One answered request in the metrics; for downloads, the bytes promised in Content-Length.
fn count<B: MessageBody>(metrics: &Metrics, route: &'static str, res: &ServiceResponse<B>, started: Instant) {
    let status = res.status();
    metrics.request(route, method_label(res.request().method()), status.as_u16(), started.elapsed().as_secs_f64());
    if status.is_success()
        && let Some(reader) = Reader::ALL.into_iter().find(|reader| reader.template() == route)
        && let BodySize::Sized(bytes) = res.response().body().size()
    {
        metrics.sent(reader.name(), bytes);
    }
}

fn error_code<B>(res: &ServiceResponse<B>) -> Option<&'static str> {
    let failed = res.status().is_client_error() || res.status().is_server_error();
    failed.then(|| res.response().extensions().get::<ErrorCode>().map(|code| code.0)).flatten()
}

/// A request answered from its head alone (an `Expect: 100-continue` refused before the body): its metrics and
/// its access line; returns its id, for the answer.
pub fn answered_from_head(
    req: &actix_http::Request,
    status: StatusCode,
    code: &'static str,
    tracking: &Tracking,
) -> RequestId {
    let id = id_of(req.headers());
    let route = tracking.route(req.path());
    tracking.metrics.request(route, method_label(req.method()), status.as_u16(), 0.0);
    let level = level(req.path());
    if logging::access_enabled(level) {
        let seen = Seen {
            method: req.method().as_str(),
            path: req.path(),
            query: req.uri().query().unwrap_or_default(),
            headers: req.headers(),
            peer: req.peer_addr().map(|addr| addr.ip()),
            token: None,
        };
        let outcome = Outcome { route, status: status.as_u16(), error: Some(code), bytes: (0, 0), duration_ms: 0.0 };
        seen.log(level, &id, &outcome, &tracking.trusted_proxies);
    }
    id
}

/// The request as the access line shows it.
struct Seen<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    peer: Option<IpAddr>,
    token: Option<&'a str>,
}

/// What became of it.
struct Outcome {
    route: &'static str,
    status: u16,
    error: Option<&'static str>,
    /// In and out.
    bytes: (u64, u64),
    duration_ms: f64,
}

impl Seen<'_> {
    fn log(&self, level: Level, id: &RequestId, outcome: &Outcome, trusted: &[IpNet]) {
        let client = forwarded::client_addr(self.peer, self.headers, trusted);
        let client = client.map_or_else(|| "-".to_owned(), |ip| ip.to_string());
        let query = if self.query.is_empty() { String::new() } else { links::redact(self.query) };
        let user_agent = self.headers.get(header::USER_AGENT).and_then(|ua| ua.to_str().ok());
        let line = AccessLine {
            client: &client,
            method: self.method,
            route: outcome.route,
            path: self.path,
            query: &query,
            status: outcome.status,
            error: outcome.error,
            bytes_in: outcome.bytes.0,
            bytes_out: outcome.bytes.1,
            duration_ms: outcome.duration_ms,
            user_agent,
            token: self.token,
        };
        logging::access(level, id, &line);
    }
}

/// The access line of a request whose answer is under way.
struct Pending {
    req: HttpRequest,
    id: RequestId,
    status: StatusCode,
    error: Option<&'static str>,
    route: &'static str,
    bytes_in: Option<Rc<Cell<u64>>>,
    started: Instant,
    tracking: Arc<Tracking>,
}

impl Pending {
    fn write(self, bytes_out: u64) {
        let req = &self.req;
        let token = req.extensions().get::<TokenName>().map(|name| name.0.clone());
        let seen = Seen {
            method: req.method().as_str(),
            path: req.path(),
            query: req.query_string(),
            headers: req.headers(),
            peer: req.peer_addr().map(|addr| addr.ip()),
            token: token.as_deref(),
        };
        let bytes_in = self.bytes_in.as_ref().map_or(0, |counted| counted.get());
        let outcome = Outcome {
            route: self.route,
            status: self.status.as_u16(),
            error: self.error,
            bytes: (bytes_in, bytes_out),
            duration_ms: self.started.elapsed().as_secs_f64() * 1000.0,
        };
        seen.log(level(req.path()), &self.id, &outcome, &self.tracking.trusted_proxies);
    }
}

/// Counts the request body's bytes as the handler reads them (only when an access line will say so).
fn count_body(req: &mut ServiceRequest) -> Option<Rc<Cell<u64>>> {
    let headers = req.headers();
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || headers.get(header::CONTENT_LENGTH).is_some_and(|len| len.as_bytes() != b"0");
    if !has_body {
        return None;
    }
    let counted = Rc::new(Cell::new(0));
    let counting: actix_http::BoxedPayloadStream =
        Box::pin(Counting { inner: req.take_payload(), counted: counted.clone() });
    req.set_payload(Payload::from(counting));
    Some(counted)
}

pin_project! {
    struct Counting {
        #[pin]
        inner: Payload,
        counted: Rc<Cell<u64>>,
    }
}

impl Stream for Counting {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let next = this.inner.poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            this.counted.set(this.counted.get() + chunk.len() as u64);
        }
        next
    }
}

pin_project! {
    /// A future polled with its request's id current, so that what it logs names the request.
    struct InScope<F> {
        id: RequestId,
        #[pin]
        inner: F,
    }
}

impl<F: Future> Future for InScope<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = this.id.enter();
        this.inner.poll(cx)
    }
}

pin_project! {
    /// A response body polled under its request's id, counting what it sends; the access line is written when
    /// it is dropped: sent whole, or abandoned by a client that went away.
    pub struct Tracked<B> {
        #[pin]
        body: B,
        id: RequestId,
        done: Done,
    }
}

struct Done {
    bytes_out: u64,
    line: Option<Box<Pending>>,
}

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            let _entered = line.id.enter();
            line.write(self.bytes_out);
        }
    }
}

impl<B: MessageBody> MessageBody for Tracked<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let _entered = this.id.enter();
        let next = this.body.poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            this.done.bytes_out += chunk.len() as u64;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_docs_log_at_debug() {
        for path in ["/health", "/health/ready", "/docs/", "/docs/swagger-ui.css", "/api-docs/openapi.json", "/"] {
            assert_eq!(level(path), Level::Debug, "{path}");
        }
        for path in ["/files", "/files/upload/single", "/healthy-file-name"] {
            assert_eq!(level(path), Level::Info, "{path}");
        }
    }
}
