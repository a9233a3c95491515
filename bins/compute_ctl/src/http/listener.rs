//! Serving one listener with bounded connections (HTTP/1.1, hyper): each connection is
//! closed when it has had no request in flight for [`ListenerLimits::idle_timeout`] (idle
//! keep-alive connections, and connections that never send a header), or when a request's
//! header has not fully arrived [`ListenerLimits::header_read_timeout`] after its first byte.
//! At most [`ListenerLimits::max_connections`] are open at once: at the cap, the connection
//! idle longest is closed to make room for a new one (so `/status` and `/healthz` still get
//! in past a crowd of idle sockets), and when every connection is busy the new ones wait in
//! the kernel's accept queue. `accept` failing for want of descriptors (EMFILE) is retried
//! after a pause, not in a loop.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, HttpBody};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The bounds of one listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenerLimits {
    /// No request in flight for this long: closed.
    pub(crate) idle_timeout: Duration,
    /// A request header still incomplete this long after its first byte: closed.
    pub(crate) header_read_timeout: Duration,
    /// Connections open at once.
    pub(crate) max_connections: usize,
}

impl ListenerLimits {
    /// The limits of the `--http-*` flags; the cap lowered to a quarter of the soft
    /// open-file limit (two listeners, postgres connections, pipes and files share it).
    pub(crate) fn from_options(opts: &crate::cli::Options) -> ListenerLimits {
        let flags = &opts.http_limits;
        let descriptors = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| soft_open_files(&limits))
            .unwrap_or(1024);
        ListenerLimits {
            idle_timeout: flags.http_idle_timeout,
            header_read_timeout: flags.http_header_read_timeout,
            max_connections: capped(flags.http_max_connections as u64, descriptors),
        }
    }

    /// How often a connection's deadlines are looked at.
    fn check_every(&self) -> Duration {
        (self.idle_timeout.min(self.header_read_timeout) / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// The soft limit of `Max open files` in a `/proc/PID/limits` text (`None`: unlimited or
/// unreadable).
fn soft_open_files(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `wanted` connections, at most a quarter of `descriptors`, at least 8.
fn capped(wanted: u64, descriptors: u64) -> usize {
    wanted.min((descriptors / 4).max(8)) as usize
}

/// What the listener knows of one connection.
#[derive(Debug)]
struct ConnState {
    /// Requests whose answer is not fully sent.
    in_flight: AtomicUsize,
    /// Milliseconds since `origin` of the last request end (or the accept).
    last_done_ms: AtomicU64,
    /// Milliseconds since `origin` of the first byte of a header not yet complete; 0: none.
    partial_since_ms: AtomicU64,
    origin: Instant,
    close: CancellationToken,
}

impl ConnState {
    fn new() -> ConnState {
        ConnState {
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            partial_since_ms: AtomicU64::new(0),
            origin: Instant::now(),
            close: CancellationToken::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// Bytes arrived: when no request is in flight they start a header.
    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let now = self.now_ms().max(1);
            let _ =
                self.partial_since_ms
                    .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.partial_since_ms.store(0, Ordering::Release);
        InFlight(self.clone())
    }

    /// Since when the connection has been idle (no request in flight), if it is.
    fn idle_since_ms(&self) -> Option<u64> {
        (self.in_flight.load(Ordering::Acquire) == 0)
            .then(|| self.last_done_ms.load(Ordering::Acquire))
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &ListenerLimits) -> Option<&'static str> {
        let idle_since = self.idle_since_ms()?;
        let now = self.now_ms();
        let partial = self.partial_since_ms.load(Ordering::Acquire);
        judge(now, idle_since, (partial != 0).then_some(partial), limits)
    }
}

/// The verdict on an idle connection at `now` (milliseconds on the connection's clock).
fn judge(
    now: u64,
    idle_since: u64,
    partial_since: Option<u64>,
    limits: &ListenerLimits,
) -> Option<&'static str> {
    let past = |since: u64, limit: Duration| now.saturating_sub(since) >= limit.as_millis() as u64;
    if partial_since.is_some_and(|since| past(since, limits.header_read_timeout)) {
        Some("header read timeout")
    } else if past(idle_since, limits.idle_timeout) {
        Some("idle timeout")
    } else {
        None
    }
}

/// A request in flight on a connection, until its answer is sent (or dropped).
#[derive(Debug)]
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0
            .last_done_ms
            .store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An answer's body that keeps its request in flight until the body is done.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = <Body as HttpBody>::Data;
    type Error = <Body as HttpBody>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, noting when bytes arrive.
struct TrackedStream {
    inner: TcpStream,
    conn: Arc<ConnState>,
}

impl AsyncRead for TrackedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.bytes_read();
        }
        polled
    }
}

impl AsyncWrite for TrackedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The open connections of one listener.
#[derive(Debug, Default)]
struct Connections {
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the connection idle longest, if one is idle; whether one was.
    fn evict_longest_idle(&self) -> bool {
        let open = self.lock();
        let oldest = open
            .values()
            .filter(|c| !c.close.is_cancelled())
            .filter_map(|c| Some((c.origin + Duration::from_millis(c.idle_since_ms()?), c)))
            .min_by_key(|(since, _)| *since);
        match oldest {
            Some((_, conn)) => {
                conn.close.cancel();
                true
            }
            None => false,
        }
    }
}

/// Accepts and serves connections on `listener` until `stop`; then lets the requests in flight
/// finish (the caller bounds that).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ListenerLimits,
    name: &'static str,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = Arc::new(Connections::default());
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_id = 0u64;
    let mut last_emfile_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                let starved = matches!(
                    e.raw_os_error(),
                    Some(
                        nix::libc::EMFILE
                            | nix::libc::ENFILE
                            | nix::libc::ENOBUFS
                            | nix::libc::ENOMEM
                    )
                );
                if starved
                    && last_emfile_warning.is_none_or(|at| at.elapsed() > Duration::from_secs(10))
                {
                    tracing::warn!(error = %e, "{name} HTTP API: cannot accept connections; pausing");
                    last_emfile_warning = Some(Instant::now());
                }
                // Starved of descriptors: give the closes in progress a moment; anything else
                // (a connection reset before it was accepted) is per-connection.
                let pause = if starved { 100 } else { 5 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
        };
        let Some(slot) = take_slot(&slots, &connections, &stop).await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(ConnState::new());
        connections.lock().insert(id, conn.clone());
        let router = router.clone();
        let connections = connections.clone();
        let stop = stop.clone();
        tasks.spawn(async move {
            serve_connection(stream, router, conn, limits, stop).await;
            connections.lock().remove(&id);
            drop(slot);
        });
        // Reap finished tasks so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}

/// A connection slot: a free one, else the longest idle connection is closed for it; when
/// every connection is busy, waits for one to finish. `None` at `stop`.
async fn take_slot(
    slots: &Arc<Semaphore>,
    connections: &Connections,
    stop: &CancellationToken,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    loop {
        if let Ok(slot) = slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        connections.evict_longest_idle();
        tokio::select! {
            () = stop.cancelled() => return None,
            slot = slots.clone().acquire_owned() => return slot.ok(),
            // A busy connection may have become idle meanwhile.
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    conn: Arc<ConnState>,
    limits: ListenerLimits,
    stop: CancellationToken,
) {
    let io = hyper_util::rt::TokioIo::new(TrackedStream {
        inner: stream,
        conn: conn.clone(),
    });
    let tracker = conn.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let in_flight = tracker.request_started();
        let router = router.clone();
        async move {
            let response = match router.oneshot(request.map(Body::new)).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(response.map(|inner| {
                Body::new(TrackedBody {
                    inner,
                    _in_flight: in_flight,
                })
            }))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    tokio::pin!(connection);
    let mut checks = tokio::time::interval(limits.check_every());
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "HTTP connection ended");
                }
                return;
            }
            () = stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                let _ = connection.as_mut().await;
                return;
            }
            // Idle by definition: dropping the connection closes it.
            () = conn.close.cancelled() => return,
            _ = checks.tick() => {
                if let Some(reason) = conn.expired(&limits) {
                    tracing::debug!(reason, "closing an HTTP connection");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_and_caps() {
        let limits = ListenerLimits {
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 256,
        };
        for (now, idle_since, partial, want) in [
            (59_000, 0, None, None),
            (60_000, 0, None, Some("idle timeout")),
            (70_000, 20_000, None, None),
            // A header started 9 s ago, then 10 s ago.
            (15_000, 0, Some(6_000), None),
            (16_000, 0, Some(6_000), Some("header read timeout")),
        ] {
            assert_eq!(
                judge(now, idle_since, partial, &limits),
                want,
                "{now} {idle_since} {partial:?}"
            );
        }
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files(limits), Some(1024));
        assert_eq!(
            soft_open_files("Max open files  unlimited unlimited files"),
            None
        );
        assert_eq!(capped(256, 1024), 256);
        assert_eq!(capped(256, 512), 128);
        assert_eq!(capped(256, 20), 8);
        assert_eq!(capped(10, 1 << 20), 10);
    }

    /// A request in flight is never idle; its end restarts the idle clock; the longest idle
    /// connection is the one evicted.
    #[test]
    fn in_flight_requests_are_not_idle_and_eviction_picks_the_longest_idle() {
        let connections = Connections::default();
        let busy = Arc::new(ConnState::new());
        let guard = busy.request_started();
        connections.lock().insert(1, busy.clone());
        assert!(!connections.evict_longest_idle());
        assert_eq!(busy.idle_since_ms(), None);
        let old = Arc::new(ConnState::new());
        std::thread::sleep(Duration::from_millis(5));
        let young = Arc::new(ConnState::new());
        connections.lock().insert(2, young.clone());
        connections.lock().insert(3, old.clone());
        assert!(connections.evict_longest_idle());
        assert!(old.close.is_cancelled() && !young.close.is_cancelled());
        drop(guard);
        assert!(busy.idle_since_ms().is_some());
        // Bytes while idle start a header; a request clears it.
        young.bytes_read();
        assert_ne!(young.partial_since_ms.load(Ordering::Acquire), 0);
        let _request = young.request_started();
        assert_eq!(young.partial_since_ms.load(Ordering::Acquire), 0);
    }
}
