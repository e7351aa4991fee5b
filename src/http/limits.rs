//! What one client may hold of the HTTP server: a deadline for a request's whole body, and a
//! count of open connections that says in the log when `api.max_connections` is reached (the
//! server itself then stops accepting until one closes).
//!
//! The webhook route takes bodies without a token, so a client that sends headers and then
//! trickles or stalls its body must not keep a connection: past `api.body_timeout` the request
//! is answered 408 and, its body unread, the connection is closed.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError, web};
use futures_util::Stream;
use tokio::time::Sleep;

use super::problem::ApiError;

/// The path of the lane WebSocket, whose body is the socket itself and has no deadline.
pub const LANE_EVENTS_PATTERN: &str = "/api/v1/lanes/{lane}/events";

/// The request limits the handlers and middleware read (`api.*`).
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub body_timeout: Duration,
    pub websockets_per_lane: usize,
}

/// Wraps every request's body in `api.body_timeout`, counted from when its head was read. A
/// request whose body is late gets a 408 problem whatever its handler answered.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let timeout = req
        .app_data::<web::Data<HttpLimits>>()
        .map(|l| l.body_timeout);
    let socket =
        req.match_pattern().as_deref() == Some(LANE_EVENTS_PATTERN) && req.head().upgrade();
    let Some(timeout) = timeout.filter(|_| !socket) else {
        return next.call(req).await.map(|r| r.map_into_left_body());
    };
    let late = Rc::new(Cell::new(false));
    let inner = req.take_payload();
    let wrapped = DeadlinePayload {
        inner,
        deadline: Box::pin(tokio::time::sleep(timeout)),
        late: late.clone(),
    };
    req.set_payload(Payload::from(
        Box::pin(wrapped) as Pin<Box<dyn Stream<Item = _>>>
    ));
    let res = next.call(req).await?;
    if !late.get() {
        return Ok(res.map_into_left_body());
    }
    let detail = humantime::format_duration(timeout).to_string();
    tracing::info!(path = %res.request().path(), timeout = %detail, "request body too slow: answered 408, connection closed");
    let (req, _) = res.into_parts();
    let answer = ApiError::BodyTimeout(detail).error_response();
    Ok(ServiceResponse::new(req, answer).map_into_right_body())
}

/// A request body that fails once its deadline has passed.
struct DeadlinePayload {
    inner: Payload,
    deadline: Pin<Box<Sleep>>,
    late: Rc<Cell<bool>>,
}

impl Stream for DeadlinePayload {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.late.get() {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.late.set(true);
            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "the body came too slowly");
            return Poll::Ready(Some(Err(PayloadError::Io(e))));
        }
        Pin::new(&mut self.inner).poll_next(cx)
    }
}

/// Open connections across the server's workers, logged when the limit is reached.
#[derive(Debug)]
pub struct ConnectionCount {
    open: AtomicUsize,
    limit: usize,
    /// Set while at the limit, so reaching it is logged once, not per connection.
    full: AtomicBool,
}

impl ConnectionCount {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(ConnectionCount {
            open: AtomicUsize::new(0),
            limit,
            full: AtomicBool::new(false),
        })
    }

    /// Counts a new connection; the guard counts it closed when the connection ends.
    pub fn opened(self: &Arc<Self>) -> ConnectionGuard {
        let open = self.open.fetch_add(1, Ordering::SeqCst) + 1;
        if open >= self.limit && !self.full.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                open,
                limit = self.limit,
                "connection limit reached (api.max_connections): new connections wait until one closes"
            );
        }
        ConnectionGuard(self.clone())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Held in a connection's extensions for as long as the connection lives.
#[derive(Debug)]
pub struct ConnectionGuard(Arc<ConnectionCount>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let count = &self.0;
        let open = count.open.fetch_sub(1, Ordering::SeqCst) - 1;
        // Below 90 % again: the next time the limit is reached is worth a line of its own.
        if open < count.limit - count.limit / 10 && count.full.swap(false, Ordering::SeqCst) {
            tracing::info!(
                open,
                limit = count.limit,
                "connections below the limit again"
            );
        }
    }
}

/// The HTTP worker threads and the connections each may hold, so that together they hold at
/// most `max_connections` (one worker per CPU, fewer when the limit is smaller).
pub fn workers_for(max_connections: usize) -> (usize, usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cpus.min(max_connections).max(1);
    (workers, (max_connections / workers).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_never_hold_more_than_the_limit_together() {
        for limit in [1, 2, 3, 7, 512] {
            let (workers, each) = workers_for(limit);
            assert!(workers >= 1 && each >= 1);
            assert!(workers * each <= limit, "{limit}: {workers} × {each}");
        }
    }

    #[test]
    fn the_count_follows_guards() {
        let count = ConnectionCount::new(2);
        let a = count.opened();
        let b = count.opened();
        assert_eq!(count.open(), 2);
        assert!(count.full.load(Ordering::SeqCst));
        drop(a);
        drop(b);
        assert_eq!(count.open(), 0);
        assert!(!count.full.load(Ordering::SeqCst));
    }
}
