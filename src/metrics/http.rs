//! The metrics endpoint's HTTP server: one thread, one `mio` poll, a fixed
//! number of connections.
//!
//! Layer: control plane, the I/O of [`super`]. The request parser
//! ([`RequestReader`]) and the choice of the connection a new one replaces
//! ([`pick_slot`]) do no I/O and read no clock, so tests drive them with any
//! bytes; `serve` is the loop around them. The server answers one request
//! per connection (`Connection: close`): a scrape is one small GET, and
//! without keep-alive a connection has no state past its request to bound.
//!
//! Invariants:
//! - the thread holds at most [`Limits::max_connections`] sockets besides
//!   the listener and the waker, whatever clients do: no thread, and no
//!   buffer beyond one request head and one response, per connection;
//! - at the cap a new connection is always taken: it replaces one already
//!   answered (still lingering for the client's close), or else the oldest,
//!   which is closed at once and counted as rejected. A scrape then needs
//!   only its own round trip, not a free slot, so idle clients cannot hold
//!   the endpoint;
//! - a connection lives at most [`Limits::deadline`] from its accept:
//!   reading the request, writing the response and waiting for the client
//!   to close all fall under it; a connection cut before its response is
//!   fully written is counted as timed out;
//! - a request head longer than [`Limits::max_header_bytes`] or with more
//!   than [`MAX_HEADERS`] header fields gets 431, one that does not parse
//!   gets 400; any bytes give one of these answers, none panics;
//! - every connection ends in exactly one count: a response (by status),
//!   rejected, timed out or aborted (the client closed or reset it first).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use serde::Serialize;

/// The bounds of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sockets held at most (at least 1).
    pub max_connections: usize,
    /// How long a connection may live, from accept to close.
    pub deadline: Duration,
    /// The longest request head (request line and header fields).
    pub max_header_bytes: usize,
}

impl Limits {
    /// What `vxrouter run --metrics` uses: a scrape is one request of a few
    /// hundred bytes answered in milliseconds, so these leave a wide margin
    /// for honest clients and hold little for dishonest ones (64 sockets,
    /// 8 KiB each for the request head).
    pub const DEFAULT: Limits = Limits {
        max_connections: 64,
        deadline: Duration::from_secs(5),
        max_header_bytes: 8 * 1024,
    };
}

/// Header fields a request may have (the parser's fixed array).
pub const MAX_HEADERS: usize = 32;

/// Bytes read and thrown away after the response, waiting for the client
/// to close; a client that sends more is cut off. Reading them lets the
/// close be a FIN: closing with unread bytes sends a reset, which can
/// destroy the response before the client read it.
const MAX_DRAIN_BYTES: usize = 64 * 1024;

/// How soon to retry `accept` after it failed for a lack of resources
/// (file descriptors, memory).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// How often at most an accept error is logged.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The statuses the endpoint answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    HeaderTooLarge,
    InternalError,
    Unavailable,
}

impl Status {
    /// Every status, in code order (the counters' order).
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::BadRequest,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::HeaderTooLarge,
        Status::InternalError,
        Status::Unavailable,
    ];

    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::HeaderTooLarge => 431,
            Status::InternalError => 500,
            Status::Unavailable => 503,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::HeaderTooLarge => "Request Header Fields Too Large",
            Status::InternalError => "Internal Server Error",
            Status::Unavailable => "Service Unavailable",
        }
    }

    fn index(self) -> usize {
        Status::ALL
            .iter()
            .position(|s| *s == self)
            .expect("ALL lists every status")
    }
}

/// A request's method, as far as routing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request target as sent (path and query).
    pub target: String,
}

impl Request {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// A response; the server adds `Content-Length` and `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    pub body: String,
    /// The `Allow` header (405 answers say which methods are).
    pub allow: Option<&'static str>,
}

impl Response {
    /// A plain-text response.
    pub fn text(status: Status, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
            allow: None,
        }
    }

    /// The bytes on the wire; without the body for a HEAD request (whose
    /// `Content-Length` still says what a GET would get).
    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status.code(),
            self.status.reason(),
            self.content_type,
            self.body.len()
        );
        if let Some(allow) = self.allow {
            head.push_str("Allow: ");
            head.push_str(allow);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

/// Where reading a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// The head is not complete yet.
    Partial,
    /// A whole, valid head.
    Done(Request),
    /// A head that gets this error answer.
    Reject(Status),
}

/// Gathers a request head from the bytes as they come, up to a limit.
///
/// The head is parsed (`httparse`) only once its end is in (an empty line)
/// or the limit is reached, so a client that sends a byte at a time costs
/// one scan of the new bytes per read, not a parse of the whole head.
#[derive(Debug, Clone)]
pub struct RequestReader {
    buf: Vec<u8>,
    max: usize,
}

impl RequestReader {
    /// A reader for heads of at most `max` bytes (at least 1).
    pub fn new(max: usize) -> RequestReader {
        RequestReader {
            buf: Vec::new(),
            max: max.max(1),
        }
    }

    /// How many more bytes it takes; 0 only once it answered.
    pub fn room(&self) -> usize {
        self.max - self.buf.len()
    }

    /// Adds bytes (past [`Self::room`], the rest is not looked at: the head
    /// is too long).
    pub fn push(&mut self, data: &[u8]) -> Progress {
        // An end of head ("\n\n" or "\n\r\n") may begin up to two bytes
        // before the new ones.
        let from = self.buf.len().saturating_sub(2);
        let take = data.len().min(self.room());
        self.buf.extend_from_slice(&data[..take]);
        if take < data.len() || self.buf.len() >= self.max || has_head_end(&self.buf[from..]) {
            self.parse()
        } else {
            Progress::Partial
        }
    }

    /// The client closed its side: whatever it sent is all there is.
    pub fn finish(&mut self) -> Progress {
        self.parse()
    }

    fn parse(&self) -> Progress {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&self.buf) {
            Ok(httparse::Status::Complete(_)) => {
                let method = match req.method {
                    Some("GET") => Method::Get,
                    Some("HEAD") => Method::Head,
                    _ => Method::Other,
                };
                Progress::Done(Request {
                    method,
                    target: req.path.unwrap_or("").to_owned(),
                })
            }
            Ok(httparse::Status::Partial) if self.buf.len() >= self.max => {
                Progress::Reject(Status::HeaderTooLarge)
            }
            Ok(httparse::Status::Partial) => Progress::Partial,
            Err(httparse::Error::TooManyHeaders) => Progress::Reject(Status::HeaderTooLarge),
            Err(_) => Progress::Reject(Status::BadRequest),
        }
    }
}

/// Whether `b` holds the empty line that ends a head (httparse takes a bare
/// LF as a line end, as RFC 9112 section 2.2 allows).
fn has_head_end(b: &[u8]) -> bool {
    b.windows(2).any(|w| w == b"\n\n") || b.windows(3).any(|w| w == b"\n\r\n")
}

/// The slot a new connection takes: a free one, else one whose response is
/// out (the oldest of those), else the oldest. `slots` gives each slot's
/// accept time and whether its response is out; `None` only without slots.
pub fn pick_slot(slots: &[Option<(Instant, bool)>]) -> Option<usize> {
    if let Some(i) = slots.iter().position(Option::is_none) {
        return Some(i);
    }
    slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.map(|(opened, answered)| (!answered, opened, i)))
        .min()
        .map(|(_, _, i)| i)
}

/// The server's counters, shared with the scrapes and the stats file.
#[derive(Debug, Default)]
pub struct Counters {
    accepted: AtomicU64,
    rejected: AtomicU64,
    timed_out: AtomicU64,
    aborted: AtomicU64,
    accept_errors: AtomicU64,
    open: AtomicU64,
    responses: [AtomicU64; Status::ALL.len()],
}

/// The server's counters at one moment (the stats file's `metrics_server`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HttpStats {
    /// Connections taken.
    pub connections_accepted: u64,
    /// Connections closed at once to make room for a new one at the cap.
    pub connections_rejected: u64,
    /// Connections cut at the deadline before their response was out.
    pub connections_timed_out: u64,
    /// Connections the client closed or reset before its response was out.
    pub connections_aborted: u64,
    /// Sockets held now.
    pub connections_open: u64,
    /// Failed accepts (file descriptors or memory short).
    pub accept_errors: u64,
    /// Responses written in full, by status code.
    pub responses: BTreeMap<u16, u64>,
}

impl Counters {
    /// The counters now. Each is read on its own (relaxed): they are
    /// independent totals, and a scrape a moment late is as good.
    pub fn snapshot(&self) -> HttpStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HttpStats {
            connections_accepted: get(&self.accepted),
            connections_rejected: get(&self.rejected),
            connections_timed_out: get(&self.timed_out),
            connections_aborted: get(&self.aborted),
            connections_open: get(&self.open),
            accept_errors: get(&self.accept_errors),
            responses: Status::ALL
                .iter()
                .map(|s| (s.code(), get(&self.responses[s.index()])))
                .collect(),
        }
    }

    fn add(a: &AtomicU64) {
        a.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a connection is doing.
#[derive(Debug)]
enum Phase {
    Reading(RequestReader),
    Writing {
        out: Vec<u8>,
        sent: usize,
        status: Status,
    },
    /// The response is out and our side shut: waiting for the client's
    /// close, reading and discarding what it still sends.
    Draining {
        discarded: usize,
    },
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    opened: Instant,
    phase: Phase,
}

impl Conn {
    fn answered(&self) -> bool {
        matches!(self.phase, Phase::Draining { .. })
    }
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// After its response (already counted).
    Served,
    Rejected,
    TimedOut,
    Aborted,
}

/// Answers a request.
pub type Handler<'a> = dyn FnMut(&Request) -> Response + 'a;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// A bound, not yet serving server: [`Bound::serve`] runs it.
#[derive(Debug)]
pub struct Bound {
    poll: Poll,
    registry: Registry,
    listener: TcpListener,
    waker: Arc<Waker>,
    addr: SocketAddr,
}

impl Bound {
    /// Listens on `addr`.
    pub fn bind(addr: SocketAddr) -> io::Result<Bound> {
        Self::listen_on(TcpListener::bind(addr)?)
    }

    /// Serves on a listening socket made elsewhere (another router process
    /// handed it over).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Bound> {
        listener.set_nonblocking(true)?;
        Self::listen_on(TcpListener::from_std(listener))
    }

    fn listen_on(mut listener: TcpListener) -> io::Result<Bound> {
        let poll = Poll::new()?;
        let local = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let registry = poll.registry().try_clone()?;
        Ok(Bound {
            poll,
            registry,
            listener,
            waker,
            addr: local,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A second descriptor of the listening socket.
    pub fn dup_listener(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.listener.as_fd().try_clone_to_owned()
    }

    /// Wakes [`Bound::serve`] so that it sees its stop flag at once.
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Serves until `stop` is set (and the waker woken).
    pub fn serve(
        self,
        limits: Limits,
        counters: &Counters,
        stop: &AtomicBool,
        handler: &mut Handler<'_>,
    ) {
        let max = limits.max_connections.max(1);
        let mut server = Server {
            registry: self.registry,
            listener: self.listener,
            slots: (0..max).map(|_| None).collect(),
            limits,
            counters,
            scratch: vec![0; limits.max_header_bytes.max(4096)],
            last_warn: None,
        };
        let mut poll = self.poll;
        let mut events = Events::with_capacity(256);
        let mut backlog = Backlog::Drained;
        while !stop.load(Ordering::Relaxed) {
            let mut timeout = server.next_deadline(Instant::now());
            let retry = match backlog {
                Backlog::Drained => None,
                Backlog::More => Some(Duration::ZERO),
                Backlog::Failed => Some(ACCEPT_RETRY),
            };
            if let Some(r) = retry {
                timeout = Some(timeout.map_or(r, |t| t.min(r)));
            }
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    server.warn("polling", &e);
                    std::thread::sleep(ACCEPT_RETRY);
                }
                continue;
            }
            // Connections are driven before new ones are taken: one
            // accepted in the last round reads its request now, before a
            // flood of new connections could replace it.
            let mut accept = backlog != Backlog::Drained;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => accept = true,
                    WAKER => {}
                    Token(t) => server.drive(t - FIRST_CONN, handler),
                }
            }
            if accept {
                backlog = server.accept_some();
            }
            server.expire(Instant::now());
            let open = server.slots.iter().filter(|s| s.is_some()).count();
            counters.open.store(open as u64, Ordering::Relaxed);
        }
    }
}

/// What is left in the listener's queue after a round of accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backlog {
    /// Nothing: the next connection raises an event.
    Drained,
    /// Maybe more: take them in the next round, after the events.
    More,
    /// Accepting failed for want of resources: retry after a pause (the
    /// pending connection raises no new event).
    Failed,
}

struct Server<'a> {
    registry: Registry,
    listener: TcpListener,
    slots: Vec<Option<Conn>>,
    limits: Limits,
    counters: &'a Counters,
    /// Where reads land before they are taken (a request head) or thrown
    /// away (bytes after it).
    scratch: Vec<u8>,
    last_warn: Option<Instant>,
}

impl Server<'_> {
    /// How long until the oldest connection's deadline; `None` without
    /// connections.
    fn next_deadline(&self, now: Instant) -> Option<Duration> {
        self.slots
            .iter()
            .flatten()
            .map(|c| c.opened)
            .min()
            .map(|oldest| (oldest + self.limits.deadline).saturating_duration_since(now))
    }

    /// Takes pending connections, as many as there are slots at most, so
    /// that a flood of connections cannot starve those already taken.
    fn accept_some(&mut self) -> Backlog {
        for _ in 0..self.slots.len() {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Backlog::Drained,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    Counters::add(&self.counters.accept_errors);
                    self.warn("accepting a connection", &e);
                    return Backlog::Failed;
                }
            }
        }
        Backlog::More
    }

    fn admit(&mut self, mut stream: TcpStream) {
        let view: Vec<Option<(Instant, bool)>> = self
            .slots
            .iter()
            .map(|s| s.as_ref().map(|c| (c.opened, c.answered())))
            .collect();
        let Some(i) = pick_slot(&view) else { return };
        if let Some(old) = &self.slots[i] {
            let end = if old.answered() {
                End::Served
            } else {
                End::Rejected
            };
            self.close(i, end);
        }
        if let Err(e) = self.registry.register(
            &mut stream,
            Token(FIRST_CONN + i),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            Counters::add(&self.counters.accept_errors);
            self.warn("registering a connection", &e);
            return;
        }
        Counters::add(&self.counters.accepted);
        // Data that came with the connection raises an event at
        // registration (epoll reports the current state), so the request
        // is read in the next round.
        self.slots[i] = Some(Conn {
            stream,
            opened: Instant::now(),
            phase: Phase::Reading(RequestReader::new(self.limits.max_header_bytes)),
        });
    }

    /// Closes every connection past its deadline.
    fn expire(&mut self, now: Instant) {
        for i in 0..self.slots.len() {
            if let Some(c) = &self.slots[i] {
                if now.saturating_duration_since(c.opened) >= self.limits.deadline {
                    let end = if c.answered() {
                        End::Served
                    } else {
                        End::TimedOut
                    };
                    self.close(i, end);
                }
            }
        }
    }

    fn close(&mut self, i: usize, end: End) {
        let Some(mut c) = self.slots[i].take() else {
            return;
        };
        let _ = self.registry.deregister(&mut c.stream);
        let counter = match end {
            End::Served => None,
            End::Rejected => Some(&self.counters.rejected),
            End::TimedOut => Some(&self.counters.timed_out),
            End::Aborted => Some(&self.counters.aborted),
        };
        if let Some(a) = counter {
            Counters::add(a);
        }
        // Dropping the stream closes the socket.
    }

    /// Moves connection `i` on as far as its socket allows.
    fn drive(&mut self, i: usize, handler: &mut Handler<'_>) {
        let Some(Some(c)) = self.slots.get_mut(i) else {
            return;
        };
        if let Some(end) = step(c, &mut self.scratch, handler, self.counters) {
            self.close(i, end);
        }
    }

    fn warn(&mut self, what: &str, e: &io::Error) {
        let now = Instant::now();
        if self
            .last_warn
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
        {
            self.last_warn = Some(now);
            tracing::warn!(error = %e, "metrics: {what}");
        }
    }
}

/// Reads, answers, writes and drains until the socket would block (`None`)
/// or the connection is over.
fn step(
    c: &mut Conn,
    scratch: &mut [u8],
    handler: &mut Handler<'_>,
    counters: &Counters,
) -> Option<End> {
    loop {
        match &mut c.phase {
            Phase::Reading(reader) => {
                let room = reader.room().min(scratch.len());
                let progress = match c.stream.read(&mut scratch[..room]) {
                    // The client closed its side: answer what it sent, if
                    // that is a whole head or a bad one.
                    Ok(0) => match reader.finish() {
                        Progress::Partial => return Some(End::Aborted),
                        p => p,
                    },
                    Ok(n) => reader.push(&scratch[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => return Some(End::Aborted),
                };
                let (resp, head_only) = match progress {
                    Progress::Partial => continue,
                    Progress::Done(req) => (handler(&req), req.method == Method::Head),
                    Progress::Reject(status) => (reject(status), false),
                };
                c.phase = Phase::Writing {
                    out: resp.to_bytes(head_only),
                    sent: 0,
                    status: resp.status,
                };
            }
            Phase::Writing { out, sent, status } => {
                while *sent < out.len() {
                    match c.stream.write(&out[*sent..]) {
                        Ok(0) => return Some(End::Aborted),
                        Ok(n) => *sent += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return Some(End::Aborted),
                    }
                }
                Counters::add(&counters.responses[status.index()]);
                let _ = c.stream.shutdown(Shutdown::Write);
                c.phase = Phase::Draining { discarded: 0 };
            }
            Phase::Draining { discarded } => match c.stream.read(scratch) {
                Ok(0) => return Some(End::Served),
                Ok(n) => {
                    *discarded += n;
                    if *discarded > MAX_DRAIN_BYTES {
                        return Some(End::Served);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Some(End::Served),
            },
        }
    }
}

/// The answer to a request that cannot be read.
fn reject(status: Status) -> Response {
    match status {
        Status::HeaderTooLarge => Response::text(status, "request head too large\n"),
        _ => Response::text(status, "bad request\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 256;

    fn all_at_once(bytes: &[u8]) -> Progress {
        RequestReader::new(MAX).push(bytes)
    }

    /// Feeds `bytes` in pieces of the given lengths (cycled), as reads
    /// would, stopping at the first answer; then the close.
    fn in_pieces(bytes: &[u8], cuts: &[usize], close: bool) -> Progress {
        let mut r = RequestReader::new(MAX);
        let mut rest = bytes;
        let mut k = 0;
        while !rest.is_empty() {
            let n = cuts[k % cuts.len()].clamp(1, rest.len()).min(r.room());
            k += 1;
            let p = r.push(&rest[..n]);
            assert!(r.buf.len() <= MAX);
            if p != Progress::Partial {
                return p;
            }
            rest = &rest[n..];
        }
        if close {
            r.finish()
        } else {
            Progress::Partial
        }
    }

    fn get(target: &str) -> Progress {
        Progress::Done(Request {
            method: Method::Get,
            target: target.into(),
        })
    }

    #[test]
    fn reads_a_scrape() {
        let req = b"GET /metrics HTTP/1.1\r\nHost: 198.18.0.1:9469\r\nUser-Agent: Prometheus/2.53\r\nAccept: application/openmetrics-text\r\n\r\n";
        assert_eq!(all_at_once(req), get("/metrics"));
        assert_eq!(in_pieces(req, &[1], false), get("/metrics"));
        assert_eq!(in_pieces(req, &[3, 7], false), get("/metrics"));
        // Bare LF line ends, HTTP/1.0, a query.
        assert_eq!(
            all_at_once(b"GET /metrics?x=1 HTTP/1.0\n\n"),
            get("/metrics?x=1")
        );
        let Progress::Done(r) = all_at_once(b"HEAD / HTTP/1.1\r\n\r\n") else {
            panic!()
        };
        assert_eq!((r.method, r.path()), (Method::Head, "/"));
        let Progress::Done(r) = all_at_once(b"POST /metrics HTTP/1.1\r\n\r\n") else {
            panic!()
        };
        assert_eq!((r.method, r.path()), (Method::Other, "/metrics"));
    }

    #[test]
    fn waits_for_the_empty_line() {
        assert_eq!(all_at_once(b""), Progress::Partial);
        assert_eq!(all_at_once(b"GET /metrics HTTP/1.1\r\n"), Progress::Partial);
        assert_eq!(
            all_at_once(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Progress::Partial
        );
        // The client closing early leaves nothing to answer.
        assert_eq!(
            RequestReader::new(MAX).finish(),
            Progress::Partial,
            "empty close"
        );
    }

    #[test]
    fn rejects_what_does_not_parse() {
        for bad in [
            &b"GET /metrics HTTP/2.0\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"\x00\x01\x02\n\n",
            b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /met rics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                all_at_once(bad),
                Progress::Reject(Status::BadRequest),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bounds_the_head() {
        // One byte over the limit, without an end: 431 as soon as the
        // limit is reached, and nothing past it is kept.
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX));
        let mut r = RequestReader::new(MAX);
        assert_eq!(
            r.push(long.as_bytes()),
            Progress::Reject(Status::HeaderTooLarge)
        );
        assert_eq!((r.buf.len(), r.room()), (MAX, 0));
        assert_eq!(
            in_pieces(long.as_bytes(), &[5], false),
            Progress::Reject(Status::HeaderTooLarge)
        );
        // Exactly at the limit is fine.
        let head = "GET / HTTP/1.1\r\n\r\n";
        let fill = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "v".repeat(MAX - head.len() - 5)
        );
        assert_eq!(fill.len(), MAX);
        assert_eq!(all_at_once(fill.as_bytes()), get("/"));
        // Too many header fields.
        let many: String = (0..=MAX_HEADERS).map(|i| format!("h{i}: v\r\n")).collect();
        let mut r = RequestReader::new(4096);
        assert_eq!(
            r.push(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            Progress::Reject(Status::HeaderTooLarge)
        );
    }

    #[test]
    fn responses_say_their_length_and_close() {
        let r = Response::text(Status::NotFound, "not found\n");
        let b = String::from_utf8(r.to_bytes(false)).unwrap();
        assert_eq!(
            b,
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n"
        );
        let mut r = Response::text(Status::MethodNotAllowed, "only GET and HEAD\n");
        r.allow = Some("GET, HEAD");
        let b = String::from_utf8(r.to_bytes(true)).unwrap();
        assert!(b.contains("\r\nAllow: GET, HEAD\r\n"), "{b}");
        assert!(b.contains("\r\nContent-Length: 18\r\n"), "{b}");
        assert!(b.ends_with("\r\n\r\n"), "HEAD has no body: {b}");
    }

    #[test]
    fn a_new_connection_takes_a_free_then_an_answered_then_the_oldest_slot() {
        let t0 = Instant::now();
        let t = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(pick_slot(&[]), None);
        assert_eq!(pick_slot(&[Some((t(0), false)), None]), Some(1));
        assert_eq!(
            pick_slot(&[Some((t(0), false)), Some((t(5), true)), Some((t(3), true))]),
            Some(2)
        );
        assert_eq!(
            pick_slot(&[
                Some((t(4), false)),
                Some((t(1), false)),
                Some((t(3), false))
            ]),
            Some(1)
        );
    }

    #[test]
    fn snapshot_lists_every_status() {
        let c = Counters::default();
        Counters::add(&c.responses[Status::Unavailable.index()]);
        Counters::add(&c.rejected);
        let s = c.snapshot();
        assert_eq!(s.responses.len(), Status::ALL.len());
        assert_eq!(s.responses[&503], 1);
        assert_eq!(s.responses[&200], 0);
        assert_eq!(s.connections_rejected, 1);
        for st in Status::ALL {
            assert_eq!(Status::ALL[st.index()], st);
        }
    }

    /// A well-formed request head: method, target, header fields, line end.
    fn head() -> impl Strategy<Value = (String, String, Vec<(String, String)>, &'static str)> {
        (
            prop_oneof![Just("GET"), Just("HEAD"), Just("POST"), Just("DELETE")],
            "/[a-z0-9/._-]{0,40}(\\?[a-z0-9=&]{0,20})?",
            proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,15}", "[ -~]{0,40}"), 0..40),
            prop_oneof![Just("\r\n"), Just("\n")],
        )
            .prop_map(|(m, t, h, eol)| (m.to_string(), t, h, eol))
    }

    proptest! {
        #[test]
        fn any_bytes_in_any_pieces_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(1usize..64, 1..8),
            close in any::<bool>(),
        ) {
            let whole = all_at_once(&bytes);
            let pieces = in_pieces(&bytes, &cuts, close);
            // An answer given on the way is the answer to all the bytes
            // (a head ends at its first empty line, whatever follows).
            if let Progress::Done(_) = &pieces {
                prop_assert_eq!(&pieces, &whole);
            }
            // Once the limit is reached there is an answer.
            if bytes.len() >= MAX {
                prop_assert_ne!(&whole, &Progress::Partial);
                prop_assert_ne!(&pieces, &Progress::Partial);
            }
        }

        #[test]
        fn every_well_formed_head_reads_the_same_in_any_pieces(
            (method, target, headers, eol) in head(),
            cuts in proptest::collection::vec(1usize..64, 1..8),
        ) {
            let mut text = format!("{method} {target} HTTP/1.1{eol}");
            for (k, v) in &headers {
                text.push_str(&format!("{k}: {}{eol}", v.trim()));
            }
            text.push_str(eol);
            let want = if headers.len() > MAX_HEADERS || text.len() > MAX {
                Progress::Reject(Status::HeaderTooLarge)
            } else {
                let method = match method.as_str() {
                    "GET" => Method::Get,
                    "HEAD" => Method::Head,
                    _ => Method::Other,
                };
                Progress::Done(Request { method, target: target.clone() })
            };
            prop_assert_eq!(all_at_once(text.as_bytes()), want.clone());
            prop_assert_eq!(in_pieces(text.as_bytes(), &cuts, false), want);
        }
    }
}
