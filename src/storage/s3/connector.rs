//! How the store's HTTP runs: on the store's own runtime, with responses handed to the actix worker that asked
//! through a small bounded channel. `object_store`'s own `SpawnedReqwestConnector` hands them over through an
//! unbounded one, so a download to a slow client would read the whole object from the store into memory;
//! bounded, the store's connection waits for the client, as a local file read does.

use bytes::Bytes;
use http_body_util::BodyExt;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
};
use tokio::{runtime::Handle, sync::mpsc, task::JoinHandle};

/// Frames (of a few KiB to a few hundred) a response may run ahead of its reader.
const AHEAD: usize = 8;

#[derive(Debug)]
pub struct Bounded {
    client: reqwest::Client,
    runtime: Handle,
}

impl Bounded {
    pub fn new(client: reqwest::Client, runtime: Handle) -> Bounded {
        Bounded { client, runtime }
    }
}

impl HttpConnector for Bounded {
    fn connect(&self, _: &object_store::ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(Service { client: self.client.clone(), runtime: self.runtime.clone() }))
    }
}

#[derive(Debug)]
struct Service {
    client: reqwest::Client,
    runtime: Handle,
}

#[async_trait::async_trait]
impl HttpService for Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let client = self.client.clone();
        let (head_tx, head_rx) = tokio::sync::oneshot::channel();
        let (body_tx, body_rx) = mpsc::channel(AHEAD);
        let worker = Abort(self.runtime.spawn(async move {
            let (parts, mut body) = match HttpService::call(&client, req).await {
                Ok(res) => res.into_parts(),
                Err(err) => {
                    let _ = head_tx.send(Err(err));
                    return;
                }
            };
            if head_tx.send(Ok(parts)).is_err() {
                return;
            }
            while let Some(frame) = body.frame().await {
                if body_tx.send(frame).await.is_err() {
                    return; // the reader went away
                }
            }
        }));
        let parts = head_rx.await.map_err(|_| HttpError::new(HttpErrorKind::Interrupted, Gone))??;
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(Body { frames: body_rx, _worker: worker })))
    }
}

/// The task reading a response, stopped when its reader is dropped.
struct Abort(JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Body {
    frames: mpsc::Receiver<Result<http_body::Frame<Bytes>, HttpError>>,
    _worker: Abort,
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, HttpError>>> {
        self.frames.poll_recv(cx)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the store's runtime stopped")]
struct Gone;
