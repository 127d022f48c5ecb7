//! A blocking rtnetlink request/response channel, and the framing shared with
//! the neighbour event socket.
//!
//! Invariants: a request's answer is collected until its terminator (the
//! ACK/NACK for a plain request, `NLMSG_DONE` for a dump), so the socket is
//! always idle between requests; messages carrying another sequence number
//! (left over from an earlier, failed request) are skipped; a datagram larger
//! than the receive buffer is an error, never silently truncated.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK,
    NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::{HostError, Result};

/// Receive buffer size: the kernel fills dump datagrams up to 32 KiB, so
/// 64 KiB always holds one whole datagram.
pub(crate) const RECV_BUF: usize = 64 * 1024;

/// Length of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// One blocking rtnetlink socket for requests in the caller's namespace.
pub(crate) struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens a NETLINK_ROUTE socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<Self> {
        let sock = open_socket("open rtnetlink socket")?;
        Ok(Rtnl {
            sock,
            seq: 0,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Sends `msg` with `NLM_F_REQUEST | NLM_F_ACK | extra_flags` and collects
    /// every inner message of the answer. `op` names the request in errors.
    pub(crate) fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        extra_flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        header.sequence_number = seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.sock.send(&out, 0).map_err(|source| HostError::Io {
            op: op.to_string(),
            source,
        })?;

        let mut answers = Vec::new();
        loop {
            recv_datagram(&self.sock, &mut self.buf, op)?;
            let mut finished = false;
            for_each_message(&self.buf, op, |header, payload| {
                if header.sequence_number != seq || finished {
                    return Ok(());
                }
                match payload {
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    NetlinkPayload::Done(done) => {
                        finished = true;
                        if done.code < 0 {
                            return Err(HostError::Netlink {
                                op: op.to_string(),
                                errno: -done.code,
                            });
                        }
                    }
                    NetlinkPayload::Error(err) => {
                        // For a dump the ACK is never sent; a NACK ends it.
                        finished = true;
                        if let Some(code) = err.code {
                            return Err(HostError::Netlink {
                                op: op.to_string(),
                                errno: code.get().saturating_abs(),
                            });
                        }
                    }
                    NetlinkPayload::Overrun(_) => {
                        return Err(HostError::Decode {
                            op: op.to_string(),
                            detail: "NLMSG_OVERRUN".to_string(),
                        })
                    }
                    _ => {}
                }
                Ok(())
            })?;
            // A plain request ends with its ACK (or NACK), a dump with DONE.
            if finished {
                return Ok(answers);
            }
        }
    }
}

impl Rtnl {
    /// Sends every request of `batch` (`op`, message, extra flags) in one
    /// datagram, each with `NLM_F_REQUEST | NLM_F_ACK`, and waits for all
    /// their ACKs: one system call for what [`Rtnl::request`] would need
    /// one round trip each. The kernel runs them in order and answers each
    /// one, also after one fails, so the caller must be able to undo the
    /// whole batch (e.g. by deleting the device they configure). Returns
    /// the first failure in batch order, named by its `op`; answers other
    /// than ACKs are ignored (no dumps here).
    pub(crate) fn request_batch(
        &mut self,
        batch: Vec<(String, RouteNetlinkMessage, u16)>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        let mut ops = Vec::with_capacity(batch.len());
        for (op, msg, extra_flags) in batch {
            self.seq = self.seq.wrapping_add(1).max(1);
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
            header.sequence_number = self.seq;
            let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
            packet.finalize();
            let start = out.len();
            out.resize(start + packet.buffer_len(), 0);
            packet.serialize(&mut out[start..]);
            // NLMSG_ALIGN: the next message starts on a 4-byte boundary.
            out.resize((out.len() + 3) & !3, 0);
            ops.push((self.seq, op));
        }
        let what = |i: usize| ops.get(i).map_or("batch", |(_, op)| op.as_str());
        self.sock.send(&out, 0).map_err(|source| HostError::Io {
            op: what(0).to_string(),
            source,
        })?;
        // Per request, in order: None while waiting, Some(errno or 0).
        let mut done: Vec<Option<i32>> = vec![None; ops.len()];
        let mut left = ops.len();
        while left > 0 {
            recv_datagram(&self.sock, &mut self.buf, what(0))?;
            for_each_message(&self.buf, what(0), |header, payload| {
                let Some(i) = ops.iter().position(|(s, _)| *s == header.sequence_number) else {
                    return Ok(());
                };
                let slot = &mut done[i];
                if slot.is_some() {
                    return Ok(());
                }
                if let NetlinkPayload::Error(err) = payload {
                    *slot = Some(err.code.map_or(0, |c| c.get().saturating_abs()));
                    left -= 1;
                }
                Ok(())
            })?;
        }
        match done.iter().position(|d| d.is_some_and(|e| e != 0)) {
            Some(i) => Err(HostError::Netlink {
                op: ops[i].1.clone(),
                errno: done[i].unwrap_or(0),
            }),
            None => Ok(()),
        }
    }
}

/// Opens, binds and connects a NETLINK_ROUTE socket.
pub(crate) fn open_socket(op: &str) -> Result<Socket> {
    let io = |source| HostError::Io {
        op: op.to_string(),
        source,
    };
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(io)?;
    sock.bind_auto().map_err(io)?;
    sock.connect(&SocketAddr::new(0, 0)).map_err(io)?;
    // Without strict checking the kernel ignores the family filter of some
    // dumps; failing to enable it only costs filtering we redo ourselves.
    let _ = sock.set_netlink_get_strict_chk(true);
    Ok(sock)
}

/// Receives one datagram into `buf` (cleared first). A datagram longer than
/// the buffer is reported, not truncated silently.
pub(crate) fn recv_datagram(sock: &Socket, buf: &mut Vec<u8>, op: &str) -> Result<()> {
    buf.clear();
    if buf.capacity() < RECV_BUF {
        buf.reserve(RECV_BUF - buf.capacity());
    }
    let n = sock
        .recv(buf, libc::MSG_TRUNC)
        .map_err(|source| HostError::Io {
            op: op.to_string(),
            source,
        })?;
    if n > buf.len() {
        return Err(HostError::Decode {
            op: op.to_string(),
            detail: format!("datagram of {n} bytes truncated to {}", buf.len()),
        });
    }
    Ok(())
}

/// Walks the netlink messages in one datagram. Messages whose inner payload
/// this crate cannot decode (unknown types) are skipped; a malformed frame
/// ends the walk with an error.
pub(crate) fn for_each_message<F>(buf: &[u8], op: &str, mut f: F) -> Result<()>
where
    F: FnMut(&NetlinkHeader, NetlinkPayload<RouteNetlinkMessage>) -> Result<()>,
{
    let mut off = 0usize;
    while buf.len().saturating_sub(off) >= NLMSG_HDRLEN {
        let rest = &buf[off..];
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(HostError::Decode {
                op: op.to_string(),
                detail: format!(
                    "netlink message length {len} with {} bytes left",
                    rest.len()
                ),
            });
        }
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..len]) {
            Ok(msg) => {
                let (header, payload) = msg.into_parts();
                f(&header, payload)?;
            }
            Err(e) => {
                // An unknown inner message is skippable; an undecodable
                // terminator is not, or a request would wait forever.
                let kind = u16::from_ne_bytes([rest[4], rest[5]]);
                if kind == NLMSG_ERROR || kind == NLMSG_DONE {
                    return Err(HostError::Decode {
                        op: op.to_string(),
                        detail: e.to_string(),
                    });
                }
            }
        }
        // NLMSG_ALIGN: messages start on 4-byte boundaries.
        off = off.saturating_add((len + 3) & !3);
    }
    Ok(())
}
