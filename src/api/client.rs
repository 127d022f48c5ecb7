//! A blocking client of the control socket, for `vxrouter ports`,
//! `vxrouter status` and the CNI plugin.
//!
//! Every call opens a connection, sends one request, reads one reply and
//! closes: clients are short-lived processes, and a fresh connection per
//! call leaves no state to go stale. Reads and writes time out, so a router
//! that accepts but never answers cannot hang a container runtime.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::{decode_reply, encode_request, ApiError, Body, Request};

/// Longest reply line a client reads (a `ports` list of every port with
/// its counters fits with room to spare).
const MAX_REPLY: u64 = 16 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket (absent, refused, permission denied):
    /// the router is not running or not reachable by this user.
    #[error("cannot reach the router at {path}: {source}")]
    Unreachable {
        /// The socket path.
        path: String,
        /// The connect error.
        source: std::io::Error,
    },
    /// The connection broke or timed out, or the reply was not the protocol.
    #[error("talking to the router at {path}: {message}")]
    Protocol {
        /// The socket path.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The router answered with an error.
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Sends `req` to the router listening at `path` and returns its answer;
/// an error reply becomes [`ClientError::Api`].
pub fn call(path: &Path, req: &Request, timeout: Duration) -> Result<Body, ClientError> {
    let shown = path.display().to_string();
    let stream = UnixStream::connect(path).map_err(|source| ClientError::Unreachable {
        path: shown.clone(),
        source,
    })?;
    let protocol = |message: String| ClientError::Protocol {
        path: shown.clone(),
        message,
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| protocol(e.to_string()))?;
    (&stream)
        .write_all(&encode_request(req))
        .map_err(|e| protocol(format!("sending: {e}")))?;
    let mut line = Vec::new();
    let n = BufReader::new((&stream).take(MAX_REPLY))
        .read_until(b'\n', &mut line)
        .map_err(|e| protocol(format!("reading the reply: {e}")))?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err(protocol(
            "the router closed the connection without a whole reply".into(),
        ));
    }
    line.pop();
    let reply = decode_reply(&line).map_err(protocol)?;
    match reply.body {
        Body::Error(e) => Err(ClientError::Api(e)),
        body => Ok(body),
    }
}
