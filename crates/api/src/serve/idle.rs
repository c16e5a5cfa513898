//! Timers on the bytes of a connection: a request body the client stops sending, an answer
//! the client stops reading.
//!
//! Both are *idle* timers, not deadlines: any progress restarts them, so a 5 GB upload that
//! keeps moving is never cut, and a client that sends nothing is let go after the idle time.
//! A timer runs only while the server waits on the client: a body the handler is not reading
//! (it is busy, or waiting for room) is not the client's fault and costs the client nothing.

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The error a request body ends with when the client sent nothing for the body-idle time.
/// The edge answers it with `408`.
#[derive(Debug)]
pub struct BodyIdle(pub Duration);

impl std::fmt::Display for BodyIdle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the client sent no request body bytes for {} s", self.0.as_secs_f64())
    }
}

impl std::error::Error for BodyIdle {}

/// Whether an error (or one of its sources) is [`BodyIdle`].
pub fn is_body_idle(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<BodyIdle>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// One idle timer: armed when the wait begins, disarmed by progress.
struct IdleTimer {
    idle: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl IdleTimer {
    fn new(idle: Duration) -> Self {
        IdleTimer { idle, sleep: None, armed: false }
    }

    fn progress(&mut self) {
        self.armed = false;
    }

    /// The wait goes on: `Ready` once it has lasted the idle time.
    fn poll_waiting(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.armed {
            self.armed = true;
            let deadline = Instant::now() + self.idle;
            match &mut self.sleep {
                Some(s) => s.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        match &mut self.sleep {
            Some(s) => s.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

/// A request body that fails with [`BodyIdle`] when the client sends nothing for the idle
/// time while the handler waits for it, and marks `timed_out` so that the answer becomes a 408.
pub struct IdleBody {
    inner: Incoming,
    timer: IdleTimer,
    timed_out: Arc<AtomicBool>,
}

impl IdleBody {
    pub fn new(inner: Incoming, idle: Duration, timed_out: Arc<AtomicBool>) -> Self {
        IdleBody { inner, timer: IdleTimer::new(idle), timed_out }
    }
}

impl Body for IdleBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.timed_out.load(Ordering::Relaxed) {
            return Poll::Ready(Some(Err(Box::new(BodyIdle(this.timer.idle)))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => {
                this.timer.progress();
                Poll::Ready(r.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                ready!(this.timer.poll_waiting(cx));
                this.timed_out.store(true, Ordering::Relaxed);
                Poll::Ready(Some(Err(Box::new(BodyIdle(this.timer.idle)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a connection is doing, as its socket, its requests and its keep-alive timer see it.
#[derive(Default)]
pub struct Activity {
    /// Bytes received.
    pub received: AtomicU64,
    /// Requests in flight (0 or 1 in HTTP/1).
    pub in_flight: AtomicUsize,
    /// Requests started.
    pub started: AtomicU64,
}

impl Activity {
    /// `true` when the connection was idle until now.
    pub fn begin(&self) -> bool {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel) == 0
    }

    /// `true` when the connection is idle now.
    pub fn end(&self) -> bool {
        self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1
    }

    pub fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Changes whenever a request starts or a byte arrives.
    pub fn mark(&self) -> (u64, u64) {
        (self.started.load(Ordering::Relaxed), self.received.load(Ordering::Relaxed))
    }
}

/// The socket as HTTP sees it: counts the bytes that arrive (the keep-alive timer needs to
/// know whether anything did), and fails a write the client has not let through for the idle
/// time.
pub struct Io<S> {
    inner: S,
    activity: Arc<Activity>,
    write_timer: IdleTimer,
}

impl<S> Io<S> {
    pub fn new(inner: S, activity: Arc<Activity>, write_idle: Duration) -> Self {
        Io { inner, activity, write_timer: IdleTimer::new(write_idle) }
    }

    fn stalled<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Pending => {
                ready!(self.write_timer.poll_waiting(cx));
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client read nothing of the answer")))
            }
            ready => {
                self.write_timer.progress();
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Io<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.received.fetch_add(n as u64, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Io<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.stalled(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.stalled(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.stalled(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.stalled(cx, r)
    }
}
