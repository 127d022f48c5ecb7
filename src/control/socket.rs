//! The control socket's server: a Unix stream listener on the control
//! thread's poll loop, speaking [`crate::api`].
//!
//! Every client is a stranger, also a local root one: a client that sends
//! a line longer than [`api::MAX_REQUEST`] gets `too_large` and is closed;
//! one that stays silent is closed after [`IDLE_TIMEOUT`]; one that does
//! not read its replies is closed once [`MAX_PENDING_OUT`] bytes wait for
//! it; past [`MAX_CONNECTIONS`] new clients are closed at once. Nothing a
//! client does blocks the control thread: every socket is non-blocking and
//! each readiness event handles at most [`REQUESTS_PER_EVENT`] requests.
//! The socket file is made mode 0600 before it listens, so no other user
//! can ever connect.
//!
//! Invariants: a reply answers each complete request line, in order; a
//! connection's buffers never exceed their bounds; the socket file is
//! removed when the server is dropped.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::api::{self, ErrorCode, Reply, Request};
use crate::metrics::ControlSocketStats;

/// Clients served at once; more are closed as they come.
pub(super) const MAX_CONNECTIONS: usize = 64;
/// A connection with no complete request for this long is closed.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Reply bytes that may wait for a client that does not read.
pub(super) const MAX_PENDING_OUT: usize = 32 << 20;
/// Requests handled per readiness event of one connection: the next event
/// (or the next loop, as the socket stays readable) takes the rest.
pub(super) const REQUESTS_PER_EVENT: usize = 16;

struct Conn {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    last_request: Instant,
    /// Close once the output is written (after a `too_large` reply).
    closing: bool,
    /// Reading stopped at the per-event bound with more perhaps in the
    /// kernel: an edge-triggered poll will not say so again.
    backlog: bool,
}

/// The listener and its clients.
pub(super) struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
    conns: HashMap<Token, Conn>,
    /// First token of client connections; the listener has `base`.
    base: usize,
    next: usize,
    pub stats: ControlSocketStats,
}

impl ControlSocket {
    /// Binds `path` (mode 0600) and registers it under token `base`;
    /// clients get tokens above it. A socket file left by a router that is
    /// gone is replaced; one a live router listens on is an error.
    pub(super) fn bind(path: &Path, registry: &Registry, base: usize) -> Result<ControlSocket> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("setting the mode of {}", dir.display()))?;
            }
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => bail!(
                "control socket {}: another router listens on it",
                path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                // Left by a router that is gone.
                std::fs::remove_file(path)
                    .with_context(|| format!("removing the stale socket {}", path.display()))?;
            }
            Err(_) => {}
        }
        let sock = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
            .context("creating the control socket")?;
        let addr = socket2::SockAddr::unix(path)
            .with_context(|| format!("control socket path {}", path.display()))?;
        sock.bind(&addr)
            .with_context(|| format!("binding the control socket {}", path.display()))?;
        // Before listen: no client can connect while the mode is wider.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("setting the mode of {}", path.display()))?;
        sock.listen(16)
            .with_context(|| format!("listening on {}", path.display()))?;
        sock.set_nonblocking(true)?;
        let s = Self::serve_on(sock.into(), path, registry, base)?;
        tracing::info!(path = %path.display(), "control socket listening");
        Ok(s)
    }

    /// Serves the listening socket `listener` (bound to `path`) that
    /// another router process handed over: clients waiting in its backlog
    /// are served here.
    pub(super) fn adopt(
        listener: std::os::fd::OwnedFd,
        path: &Path,
        registry: &Registry,
        base: usize,
    ) -> Result<ControlSocket> {
        let std_listener = std::os::unix::net::UnixListener::from(listener);
        let bound = std_listener
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_owned));
        if bound.as_deref() != Some(path) {
            bail!(
                "the control socket handed over is bound to {bound:?}, not {}",
                path.display()
            );
        }
        std_listener.set_nonblocking(true)?;
        let mut s = Self::serve_on(std_listener, path, registry, base)?;
        // The socket file stays the old router's until the takeover
        // completes ([`ControlSocket::claim_path`]).
        s.path = PathBuf::new();
        tracing::info!(path = %path.display(), "control socket taken over");
        Ok(s)
    }

    fn serve_on(
        std_listener: std::os::unix::net::UnixListener,
        path: &Path,
        registry: &Registry,
        base: usize,
    ) -> Result<ControlSocket> {
        let mut listener = UnixListener::from_std(std_listener);
        registry.register(&mut listener, Token(base), Interest::READABLE)?;
        Ok(ControlSocket {
            listener,
            path: path.to_owned(),
            conns: HashMap::new(),
            base,
            next: base + 1,
            stats: ControlSocketStats::default(),
        })
    }

    /// A second descriptor of the listening socket (for a handover).
    pub(super) fn dup_listener(&self) -> io::Result<std::os::fd::OwnedFd> {
        use std::os::fd::AsFd;
        self.listener.as_fd().try_clone_to_owned()
    }

    /// Owns the socket file `path` from now on (removed on drop).
    pub(super) fn claim_path(&mut self, path: &Path) {
        self.path = path.to_owned();
    }

    /// Closes the server but leaves its socket file: the router that took
    /// over serves it.
    pub(super) fn close_keeping_path(mut self) {
        self.path = PathBuf::new();
    }

    /// Whether `token` is this server's.
    pub(super) fn owns(&self, token: Token) -> bool {
        token.0 >= self.base
    }

    /// Handles a readiness event of `token`: accepts clients, reads
    /// requests, answers each with `handle`, writes replies.
    pub(super) fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        now: Instant,
        handle: &mut dyn FnMut(Request) -> Reply,
    ) {
        if token.0 == self.base {
            self.accept(registry, now);
            return;
        }
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let keep = serve(conn, now, &mut self.stats, handle);
        if !keep {
            self.close(registry, token);
        }
    }

    fn accept(&mut self, registry: &Registry, now: Instant) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.conns.len() >= MAX_CONNECTIONS {
                        self.stats.refused_full += 1;
                        let line = api::encode_reply(&Reply::error(
                            ErrorCode::NotReady,
                            format!("{MAX_CONNECTIONS} clients connected; try again"),
                        ));
                        let _ = stream.write(&line);
                        continue;
                    }
                    // Tokens are not reused while the router runs: a
                    // usize does not wrap.
                    let token = Token(self.next);
                    self.next += 1;
                    if registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.stats.accepted += 1;
                    self.conns.insert(
                        token,
                        Conn {
                            stream,
                            input: Vec::new(),
                            output: Vec::new(),
                            last_request: now,
                            closing: false,
                            backlog: false,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept");
                    return;
                }
            }
        }
    }

    fn close(&mut self, registry: &Registry, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// Closes clients idle for [`IDLE_TIMEOUT`], and serves requests left
    /// in buffers by the per-event bound.
    pub(super) fn tick(
        &mut self,
        registry: &Registry,
        now: Instant,
        handle: &mut dyn FnMut(Request) -> Reply,
    ) {
        let mut gone = Vec::new();
        for (t, c) in self.conns.iter_mut() {
            if now.duration_since(c.last_request) >= IDLE_TIMEOUT {
                self.stats.closed_idle += 1;
                gone.push(*t);
            } else if (c.backlog || c.input.contains(&b'\n'))
                && !serve(c, now, &mut self.stats, handle)
            {
                gone.push(*t);
            }
        }
        for t in gone {
            self.close(registry, t);
        }
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Reads what the client sent, answers complete lines, writes what it
/// can. Returns false when the connection is to be closed.
fn serve(
    c: &mut Conn,
    now: Instant,
    stats: &mut ControlSocketStats,
    handle: &mut dyn FnMut(Request) -> Reply,
) -> bool {
    let mut eof = false;
    c.backlog = false;
    if !c.closing {
        let mut buf = [0u8; 16 * 1024];
        loop {
            // Stop reading once a whole request is over the bound, or
            // enough requests wait: the rest stays in the kernel.
            if c.input.len() > api::MAX_REQUEST
                || c.input.iter().filter(|&&b| b == b'\n').count() >= REQUESTS_PER_EVENT
            {
                c.backlog = true;
                break;
            }
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => c.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let mut served = 0;
        let mut served_too_large = false;
        while served < REQUESTS_PER_EVENT {
            let Some(end) = c.input.iter().position(|&b| b == b'\n') else {
                break;
            };
            let line: Vec<u8> = c.input.drain(..=end).collect();
            let line = &line[..line.len() - 1];
            served += 1;
            stats.requests += 1;
            c.last_request = now;
            if line.len() >= api::MAX_REQUEST {
                // Refused and closed alike whether its newline came in
                // time or not: a client past the bound is not served on.
                served_too_large = true;
                break;
            }
            let reply = match api::decode_request(line) {
                Ok(req) => handle(req),
                Err(e) => Reply::new(api::Body::Error(e)),
            };
            if !reply.ok {
                stats.errors += 1;
            }
            c.output.extend_from_slice(&api::encode_reply(&reply));
        }
        let over =
            c.input.len() >= api::MAX_REQUEST && !c.input[..api::MAX_REQUEST].contains(&b'\n');
        if over || served_too_large {
            stats.closed_too_large += 1;
            stats.errors += 1;
            c.output.extend_from_slice(&api::encode_reply(&Reply::error(
                ErrorCode::TooLarge,
                format!("a request is at most {} bytes", api::MAX_REQUEST),
            )));
            c.input.clear();
            c.closing = true;
        }
    }
    while !c.output.is_empty() {
        match c.stream.write(&c.output) {
            Ok(0) => return false,
            Ok(n) => {
                c.output.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    if c.output.len() > MAX_PENDING_OUT {
        stats.closed_slow_reader += 1;
        return false;
    }
    // Done once everything owed is written and the client left or is
    // being closed.
    !((eof || c.closing) && c.output.is_empty())
}
