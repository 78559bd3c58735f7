//! The request body as every upload strategy reads it: bounded in size and in idle time. actix has neither for
//! `web::Payload` (no size limit; no body read timeout, actix-web #928), so every strategy reads through this.

use std::{
    cell::Cell,
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use actix_web::{error::PayloadError, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use crate::error::AppError;

/// Why a body was cut off. Parsers wrap the stream's errors in their own types; this survives them.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Idle(Duration),
    TooLarge { limit: u64 },
}

pub struct Body {
    payload: web::Payload,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    /// The deadline restarts when the reader comes back for more, so time spent writing is not idle time.
    rearm: bool,
    /// Bytes on the wire so far, shared with the probe.
    received: Rc<Cell<u64>>,
    max_body: u64,
    max_file: u64,
    fault: Rc<Cell<Option<Fault>>>,
}

/// Tells, after a strategy failed, whether the body's own limits were the cause, and how much of the body came.
pub struct FaultProbe(Rc<Cell<Option<Fault>>>, Rc<Cell<u64>>);

impl Body {
    /// `max_body` bounds the bytes on the wire (file plus multipart or JSON envelope); `max_file` is the limit
    /// the client is told about.
    pub fn new(payload: web::Payload, idle: Duration, max_body: u64, max_file: u64) -> (Body, FaultProbe) {
        let (fault, received) = (Rc::new(Cell::new(None)), Rc::new(Cell::new(0)));
        let deadline = Box::pin(tokio::time::sleep(idle));
        let (rearm, shared) = (false, received.clone());
        let body = Body { payload, idle, deadline, rearm, received: shared, max_body, max_file, fault: fault.clone() };
        (body, FaultProbe(fault, received))
    }

    /// Reads the rest of the body into memory (its size is already bounded), into a buffer that starts with
    /// `capacity` bytes.
    pub async fn read_to_end(mut self, capacity: usize) -> Result<bytes::BytesMut, AppError> {
        let mut all = bytes::BytesMut::with_capacity(capacity);
        while let Some(chunk) = self.next().await {
            all.extend_from_slice(&chunk.map_err(payload_error)?);
        }
        Ok(all)
    }

    fn fail(&mut self, fault: Fault) -> Poll<Option<Result<Bytes, PayloadError>>> {
        self.fault.set(Some(fault));
        let err = match fault {
            Fault::Idle(_) => PayloadError::Io(io::Error::new(io::ErrorKind::TimedOut, "request body idle")),
            Fault::TooLarge { .. } => PayloadError::Overflow,
        };
        Poll::Ready(Some(Err(err)))
    }
}

impl Stream for Body {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.fault.get().is_some() {
            return Poll::Ready(None);
        }
        if std::mem::take(&mut this.rearm) {
            this.deadline.as_mut().reset(Instant::now() + this.idle);
        }
        match this.payload.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                this.received.set(this.received.get() + chunk.len() as u64);
                if this.received.get() > this.max_body {
                    return this.fail(Fault::TooLarge { limit: this.max_file });
                }
                this.rearm = true;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(end_or_error) => Poll::Ready(end_or_error),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => this.fail(Fault::Idle(this.idle)),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl FaultProbe {
    /// Body bytes received so far.
    pub fn received(&self) -> u64 {
        self.1.get()
    }

    /// The body's own fault wins over whatever error a parser made of it.
    pub fn explain<T>(&self, result: Result<T, AppError>) -> Result<T, AppError> {
        match (result, self.0.get()) {
            (Err(_), Some(Fault::Idle(idle))) => Err(AppError::BodyTimeout(idle)),
            (Err(_), Some(Fault::TooLarge { limit })) => Err(AppError::PayloadTooLarge { limit }),
            (result, _) => result,
        }
    }
}

/// A body that could not be read: the client went away, sent less than it announced, or broke the encoding.
pub fn payload_error(err: PayloadError) -> AppError {
    AppError::IncompleteBody(err.to_string())
}
