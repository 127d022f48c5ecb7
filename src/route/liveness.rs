//! Neighbour liveness: hellos between the two ends of every link, which
//! neighbours are up, and which links every host reports down.
//!
//! Layer: sans-IO control plane. The control thread sends each neighbour a
//! [`Hello`] every interval (to its underlay address, on the liveness port),
//! feeds every datagram it receives to [`Liveness::on_datagram`] and calls
//! [`Liveness::on_tick`]; both take the time as an argument and report
//! whether the set of links that are down changed, and then the routes are
//! computed again without them ([`Liveness::live_topology`]).
//!
//! A neighbour is up when it was heard within `dead_after` intervals *and*
//! its last hello said it hears us (two-way, as BFD and OSPF require): a
//! link that carries one direction only must not attract traffic from the
//! side that can send but not be answered. Every neighbour starts up, so a
//! router that starts forwards at once, and stays up for one dead interval
//! while the first hellos cross (the first one it gets cannot say it hears
//! us yet); without a two-way hello by then it goes down, like one that
//! falls silent. Once two-way, a hello that no longer hears us (the far
//! router restarted, or lost our hellos) takes it down at once.
//!
//! Every host must leave out the same links, or paths loop (h2 sends to h3
//! what h3, which lost its link to h1, sends back to h2). So each hello also
//! carries [`Report`]s, flooded hop by hop: every host's own list of the
//! neighbours it finds down, with a sequence number that grows with every
//! change (from a wall-clock base, so it also grows across restarts), and
//! every newer report it has heard from others, empty lists included (a
//! link that came back must reach every host, also one that was cut off
//! while it changed). A link is out when either end reports the other down.
//! When the reports do not fit one hello ([`MAX_HELLO`]: about 90 hosts on
//! an IPv4 underlay, 50 on IPv6), ours and those with a non-empty list go
//! first, then the most recently changed; the rest are counted as left out.
//!
//! A host is the only one that makes its report. One about it that it did
//! not make (forged, or from its run before a restart with a later clock)
//! would win everywhere and could hold its links down for good, since a
//! neighbour does not send a host's report back to it while the one it
//! holds is the one that host told it. So when the one it holds differs,
//! it does send it back, and the host refutes it: it re-originates its own
//! above it (as OSPF does with its own LSAs), and the true one wins
//! everywhere within a few intervals. Every sequence number, ours too, is
//! only believed within [`MAX_SEQ_AHEAD`] of the receiver's clock, so one
//! forged hello moves our number at most that far, never to where the
//! others would refuse ours or it could no longer grow.
//!
//! Hellos may be authenticated ([`HelloKeys`], read from a key file by the
//! control code): each then carries a key id, a counter and a MAC
//! (HMAC-SHA256, 16 bytes) over all of it and over its sender's and
//! receiver's addresses. A router with keys takes only hellos whose MAC
//! passes under one of its keys and whose counter is above the last one
//! from that neighbour and within [`MAX_SEQ_AHEAD`] of its clock (the
//! counter is the sender's wall clock, so it grows across restarts: a
//! captured hello sent again is refused). Every refusal is counted by its
//! reason. Without keys the wire form is version 1, with them version 2;
//! a router that meets the form it does not use counts it
//! (`unauthenticated`, `unexpected_auth`), never misreads it.
//!
//! What this sees: a host, its router or the underlay path between two
//! linked hosts going away, and a router whose data plane stopped: the
//! hellos come from the control thread over the kernel's UDP socket, and
//! the control thread holds them back while a worker makes no progress
//! (`control::hellos`), so a wedged worker takes its host out of its
//! neighbours' routes. Until a report has crossed the network (one interval
//! per hop), paths through the failure can still loop.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::config::{LivenessConfig, Topology};

/// Bytes of a hello before its reports.
pub const HELLO_LEN: usize = 12;
/// Bytes an authenticated hello adds after [`HELLO_LEN`]: the key id and
/// the sender's counter.
pub const AUTH_LEN: usize = 12;
/// Bytes of the MAC that ends an authenticated hello: HMAC-SHA256, cut to
/// its first 16 bytes (RFC 2104 section 5 allows a truncated output of at
/// least half the hash; 128 bits leave no forgery within reach).
pub const MAC_LEN: usize = 16;
/// Largest hello we send or take: reports that do not fit are left for a
/// later one (and counted); a longer datagram is malformed.
pub const MAX_HELLO: usize = 1400;
/// How far ahead of our own clock a report's sequence number may be (ns):
/// it starts at its origin's wall clock, and a forged or broken one far in
/// the future would otherwise hold its place for good. Hosts' clocks must
/// agree within this. An authenticated hello's counter must be this close
/// to our clock, on either side.
pub const MAX_SEQ_AHEAD: u64 = 600 * 1_000_000_000;
/// Shortest and longest key a key file may hold (bytes).
pub const MIN_KEY_LEN: usize = 16;
pub const MAX_KEY_LEN: usize = 64;
/// Most neighbours one report lists (its count is one byte).
const MAX_DOWN: usize = 255;
const MAGIC: [u8; 4] = *b"VXRL";
/// A hello without authentication.
const VERSION: u8 = 1;
/// A hello with a key id, a counter and a MAC.
const VERSION_AUTH: u8 = 2;
/// Flag: the sender has heard us within its dead interval.
const F_HEARS_YOU: u8 = 0x01;
/// What the MAC covers before the hello itself, so that a MAC made for
/// anything else under the same key never passes for a hello's.
const MAC_CONTEXT: &[u8] = b"vxrouter liveness hello";

/// One host's list of the neighbours it finds down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The reporting host's underlay address.
    pub origin: IpAddr,
    /// Grows with every change of `down` at the origin.
    pub seq: u64,
    /// Underlay addresses of the origin's neighbours that are down.
    pub down: Vec<IpAddr>,
}

/// One hello: "I am here (and I hear you)", for one overlay, with the
/// reports the sender floods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub vni: u32,
    pub hears_you: bool,
    pub reports: Vec<Report>,
}

/// Why a datagram on the liveness port was not taken as a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHello {
    /// Not a hello of ours: short, wrong magic or version, or reports that
    /// do not add up.
    Malformed,
    /// A hello for another overlay (VNI).
    OtherVni,
    /// From an address that is no neighbour of ours.
    NotNeighbour,
    /// We have a key and the hello has no MAC.
    Unauthenticated,
    /// The hello has a MAC and we have no key: the two hosts' settings
    /// differ.
    UnexpectedAuth,
    /// Its MAC is made with a key id we do not hold.
    UnknownKey,
    /// Its MAC does not match its bytes, its sender and us under the key
    /// it names.
    BadMac,
    /// Its counter is not above the last one taken from that neighbour:
    /// a replay (or a datagram the network reordered).
    Replayed,
    /// Its counter is further than [`MAX_SEQ_AHEAD`] from our clock: an
    /// old hello replayed after our restart, or a sender whose clock is
    /// off.
    ClockSkew,
}

/// One shared key of the liveness hellos.
#[derive(Clone)]
pub struct HelloKey {
    pub id: u32,
    /// Wiped when the key is dropped (a reload that retires it, the end
    /// of the router), so no copy stays behind in freed memory.
    bytes: Zeroizing<Vec<u8>>,
}

/// The keys of a key file: the hellos we send carry a MAC made with the
/// active one; a hello whose MAC is made with any of them is taken.
///
/// The file: one key a line, `<id> <key> [active]`; `id` a number in
/// 0..=4294967295, `key` 32 to 128 hex digits (16 to 64 bytes); `#` starts
/// a comment. One line may say `active`; it must when there are several.
#[derive(Clone)]
pub struct HelloKeys {
    keys: Vec<HelloKey>,
    active: usize,
}

/// What is wrong with a key file, and where (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileError {
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.col, self.msg)
    }
}

impl std::error::Error for KeyFileError {}

/// Never the key bytes: these end up in logs.
impl std::fmt::Debug for HelloKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HelloKeys")
            .field("active", &self.active_id())
            .field("ids", &self.ids())
            .finish()
    }
}

fn hex_key(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    if s.len() % 2 != 0 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // Sized once: a growing vector would leave copies of the key behind.
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
    for i in (0..s.len()).step_by(2) {
        out.push(u8::from_str_radix(&s[i..i + 2], 16).ok()?);
    }
    Some(out)
}

impl HelloKeys {
    /// Reads the text of a key file (see [`HelloKeys`]).
    pub fn parse(text: &str) -> Result<HelloKeys, KeyFileError> {
        let mut keys: Vec<HelloKey> = Vec::new();
        let mut active: Option<usize> = None;
        let mut last_line = 1;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            last_line = line;
            let content = raw.split('#').next().unwrap_or("");
            // Tokens with their 1-based columns (in characters); one of
            // them is the key, so each is wiped when dropped.
            let mut tokens: Vec<(usize, Zeroizing<String>)> = Vec::new();
            let mut start = None;
            for (col, c) in content.chars().chain([' ']).enumerate() {
                match (c.is_whitespace(), start) {
                    (false, None) => start = Some(col),
                    (true, Some(s)) => {
                        let tok: String = content.chars().skip(s).take(col - s).collect();
                        tokens.push((s + 1, Zeroizing::new(tok)));
                        start = None;
                    }
                    _ => {}
                }
            }
            let err = |col, msg: String| KeyFileError { line, col, msg };
            if let Some(col) = content.chars().position(|c| c.is_control() && c != '\t') {
                return Err(err(col + 1, "a control character".into()));
            }
            let Some((id_col, id)) = tokens.first() else {
                continue;
            };
            let id: u32 = id.parse().map_err(|_| {
                err(
                    *id_col,
                    format!(
                        "key id {:?}: expected a number in 0..=4294967295",
                        id.as_str()
                    ),
                )
            })?;
            if keys.iter().any(|k| k.id == id) {
                return Err(err(*id_col, format!("key id {id} is listed twice")));
            }
            let Some((key_col, key)) = tokens.get(1) else {
                return Err(err(
                    raw.chars().count() + 1,
                    format!("key {id} has no key: expected `<id> <hex key> [active]`"),
                ));
            };
            let bytes = hex_key(key).ok_or_else(|| {
                err(
                    *key_col,
                    format!("key {id}: expected an even number of hex digits (0-9, a-f)"),
                )
            })?;
            if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&bytes.len()) {
                return Err(err(
                    *key_col,
                    format!(
                        "key {id} has {} bytes: expected {MIN_KEY_LEN} to {MAX_KEY_LEN} ({} to {} hex digits)",
                        bytes.len(),
                        2 * MIN_KEY_LEN,
                        2 * MAX_KEY_LEN
                    ),
                ));
            }
            match tokens.get(2) {
                None => {}
                Some((_, w)) if w.as_str() == "active" && active.is_none() => {
                    active = Some(keys.len())
                }
                Some((col, w)) if w.as_str() == "active" => {
                    return Err(err(*col, "a second key is marked active".into()))
                }
                Some((col, w)) => {
                    return Err(err(
                        *col,
                        format!(
                            "{:?}: expected `active` or nothing after the key",
                            w.as_str()
                        ),
                    ))
                }
            }
            if let Some((col, w)) = tokens.get(3) {
                return Err(err(
                    *col,
                    format!("{:?}: nothing may follow `active`", w.as_str()),
                ));
            }
            keys.push(HelloKey { id, bytes });
        }
        let at_end = |msg: &str| KeyFileError {
            line: last_line,
            col: 1,
            msg: msg.into(),
        };
        let active = match (active, keys.len()) {
            (_, 0) => return Err(at_end("no key: expected lines `<id> <hex key> [active]`")),
            (Some(a), _) => a,
            (None, 1) => 0,
            (None, _) => {
                return Err(at_end(
                    "several keys and none marked `active`: say which one signs",
                ))
            }
        };
        Ok(HelloKeys { keys, active })
    }

    /// The key our hellos are signed with.
    pub fn active(&self) -> &HelloKey {
        &self.keys[self.active]
    }

    pub fn active_id(&self) -> u32 {
        self.active().id
    }

    /// Every key id we take, in file order.
    pub fn ids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.id).collect()
    }

    fn get(&self, id: u32) -> Option<&HelloKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

/// The MAC of an authenticated hello's bytes (all but the MAC itself),
/// bound to its sender and receiver: a hello captured on its way to one
/// neighbour does not pass at another, nor from another address.
fn hello_mac(key: &HelloKey, from: IpAddr, to: IpAddr, signed: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; ours are 16 to 64 bytes.
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(&key.bytes).expect("HMAC takes keys of any length");
    let mut addrs = Vec::with_capacity(34);
    put_addr(&mut addrs, from);
    put_addr(&mut addrs, to);
    m.update(MAC_CONTEXT);
    m.update(&addrs);
    m.update(signed);
    m
}

fn put_addr(out: &mut Vec<u8>, a: IpAddr) {
    match a {
        IpAddr::V4(v) => {
            out.push(4);
            out.extend_from_slice(&v.octets());
        }
        IpAddr::V6(v) => {
            out.push(6);
            out.extend_from_slice(&v.octets());
        }
    }
}

fn addr_len(a: IpAddr) -> usize {
    if a.is_ipv4() {
        5
    } else {
        17
    }
}

fn report_len(r: &Report) -> usize {
    addr_len(r.origin) + 8 + 1 + r.down.iter().map(|a| addr_len(*a)).sum::<usize>()
}

/// A cursor over a received hello.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BadHello> {
        if self.0.len() < n {
            return Err(BadHello::Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, BadHello> {
        let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| BadHello::Malformed)?;
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, BadHello> {
        let b: [u8; 8] = self.take(8)?.try_into().map_err(|_| BadHello::Malformed)?;
        Ok(u64::from_be_bytes(b))
    }

    fn addr(&mut self) -> Result<IpAddr, BadHello> {
        match self.take(1)?[0] {
            4 => {
                let b: [u8; 4] = self.take(4)?.try_into().map_err(|_| BadHello::Malformed)?;
                Ok(IpAddr::from(b))
            }
            6 => {
                let b: [u8; 16] = self.take(16)?.try_into().map_err(|_| BadHello::Malformed)?;
                Ok(IpAddr::from(b))
            }
            _ => Err(BadHello::Malformed),
        }
    }
}

/// The version of a datagram that may be a hello: its length, magic and
/// version checked.
fn version(b: &[u8]) -> Result<u8, BadHello> {
    if b.len() < HELLO_LEN || b.len() > MAX_HELLO || b[..4] != MAGIC {
        return Err(BadHello::Malformed);
    }
    match b[4] {
        VERSION => Ok(VERSION),
        VERSION_AUTH if b.len() >= HELLO_LEN + AUTH_LEN + MAC_LEN => Ok(VERSION_AUTH),
        _ => Err(BadHello::Malformed),
    }
}

impl Hello {
    /// Without authentication: `magic[4] version[1]=1 flags[1] reports[2]
    /// vni[4]`, then each report: `origin seq[8] n[1] n x addr`, an
    /// address being `4` + 4 bytes or `6` + 16; big-endian. Reports past
    /// [`MAX_HELLO`] bytes are left out; returns the bytes and how many
    /// were.
    pub fn encode(&self) -> (Vec<u8>, usize) {
        self.encode_as(None)
    }

    /// With authentication: version 2, and after the VNI `key_id[4]
    /// counter[8]`, then the reports as in [`Hello::encode`], then
    /// `mac[16]`: HMAC-SHA256 under `key` over a context string, the
    /// sender's and the receiver's addresses (as in a report) and every
    /// byte before the MAC, cut to 16 bytes. `counter` must grow with
    /// every hello its sender sends.
    pub fn seal(&self, key: &HelloKey, counter: u64, from: IpAddr, to: IpAddr) -> (Vec<u8>, usize) {
        let (mut b, left_out) = self.encode_as(Some((key.id, counter)));
        let mac = hello_mac(key, from, to, &b).finalize().into_bytes();
        b.extend_from_slice(&mac[..MAC_LEN]);
        (b, left_out)
    }

    fn encode_as(&self, auth: Option<(u32, u64)>) -> (Vec<u8>, usize) {
        let mut b = Vec::with_capacity(HELLO_LEN + AUTH_LEN + MAC_LEN + 64);
        b.extend_from_slice(&MAGIC);
        b.push(if auth.is_some() {
            VERSION_AUTH
        } else {
            VERSION
        });
        b.push(if self.hears_you { F_HEARS_YOU } else { 0 });
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.vni.to_be_bytes());
        let mut room = MAX_HELLO;
        if let Some((id, counter)) = auth {
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&counter.to_be_bytes());
            room -= MAC_LEN;
        }
        let mut n = 0u16;
        let mut left_out = 0;
        for r in &self.reports {
            let down = &r.down[..r.down.len().min(MAX_DOWN)];
            let r = Report {
                origin: r.origin,
                seq: r.seq,
                down: down.to_vec(),
            };
            if b.len() + report_len(&r) > room || n == u16::MAX {
                left_out += 1;
                continue;
            }
            put_addr(&mut b, r.origin);
            b.extend_from_slice(&r.seq.to_be_bytes());
            b.push(r.down.len() as u8);
            for a in &r.down {
                put_addr(&mut b, *a);
            }
            n += 1;
        }
        b[6..8].copy_from_slice(&n.to_be_bytes());
        (b, left_out)
    }

    /// Parses a hello without authentication; bytes after the reports are
    /// accepted (a later version may append fields), unknown flags
    /// ignored. An authenticated one is [`BadHello::UnexpectedAuth`].
    pub fn decode(b: &[u8]) -> Result<Hello, BadHello> {
        match version(b)? {
            VERSION => Hello::parse(b, HELLO_LEN),
            _ => Err(BadHello::UnexpectedAuth),
        }
    }

    /// Checks the MAC of an authenticated hello from `from` to `to`
    /// against `keys` and parses it (as [`Hello::decode`]); returns it with
    /// its counter. One without authentication is
    /// [`BadHello::Unauthenticated`]. Nothing is parsed before the MAC
    /// passes, and the MAC is compared in constant time.
    pub fn open(
        b: &[u8],
        keys: &HelloKeys,
        from: IpAddr,
        to: IpAddr,
    ) -> Result<(Hello, u64), BadHello> {
        if version(b)? != VERSION_AUTH {
            return Err(BadHello::Unauthenticated);
        }
        let (signed, mac) = b.split_at(b.len() - MAC_LEN);
        let mut rd = Reader(&signed[HELLO_LEN..]);
        let key = keys.get(rd.u32()?).ok_or(BadHello::UnknownKey)?;
        let counter = rd.u64()?;
        hello_mac(key, from, to, signed)
            .verify_truncated_left(mac)
            .map_err(|_| BadHello::BadMac)?;
        Ok((Hello::parse(signed, HELLO_LEN + AUTH_LEN)?, counter))
    }

    /// The header fields of `b` and its reports from `start` on.
    fn parse(b: &[u8], start: usize) -> Result<Hello, BadHello> {
        let n = u16::from_be_bytes([b[6], b[7]]);
        let mut rd = Reader(b.get(start..).ok_or(BadHello::Malformed)?);
        let mut reports = Vec::with_capacity(usize::from(n).min(64));
        for _ in 0..n {
            let origin = rd.addr()?;
            let seq = rd.u64()?;
            let k = rd.take(1)?[0];
            let down = (0..k).map(|_| rd.addr()).collect::<Result<Vec<_>, _>>()?;
            reports.push(Report { origin, seq, down });
        }
        Ok(Hello {
            vni: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            hears_you: b[5] & F_HEARS_YOU != 0,
            reports,
        })
    }
}

#[derive(Debug, Clone)]
struct Neighbour {
    host: usize,
    name: String,
    addr: IpAddr,
    /// When we last heard it (ns); start time until then.
    heard_at: u64,
    /// Whether we heard it at all since start.
    heard: bool,
    /// What its last hello said.
    hears_us: bool,
    /// A two-way hello was seen since start (or since it was added).
    established: bool,
    /// Its own report as its last hello carried it: when the report we
    /// hold about it differs, we send ours back so that it can refute it.
    told: Option<Stored>,
    /// Start of the grace before the first two-way hello (ns).
    since: u64,
    up: bool,
    /// The counter of the last authenticated hello taken from it: a hello
    /// must carry a greater one.
    counter: u64,
}

impl Neighbour {
    fn up_at(&self, now: u64, dead: u64) -> bool {
        if self.established {
            self.hears_us && now.saturating_sub(self.heard_at) < dead
        } else {
            now.saturating_sub(self.since) < dead
        }
    }
}

/// A report as kept: the newest heard from its origin.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    seq: u64,
    down: Vec<IpAddr>,
}

/// Hello counters (exported by the control thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HelloCounts {
    /// Hellos sent (counted by the sender of the datagrams).
    pub sent: u64,
    /// Hellos the kernel refused to send (no route, a full buffer).
    pub send_errors: u64,
    /// Rounds of hellos not sent because a worker made no progress: this
    /// host's neighbours are to route around a data plane that does not
    /// forward.
    pub held: u64,
    pub received: u64,
    pub malformed: u64,
    pub other_vni: u64,
    pub not_neighbour: u64,
    /// Reports left out of a hello for want of room (sent in a later one).
    pub reports_left_out: u64,
    /// Reports ignored because their sequence number is further ahead of
    /// our clock than [`MAX_SEQ_AHEAD`].
    pub reports_ahead: u64,
    /// Reports about this host that it did not make (forged, or from a
    /// previous run with a later clock), superseded by re-originating ours
    /// above them.
    pub reports_refuted: u64,
    /// With a key: hellos without a MAC.
    pub unauthenticated: u64,
    /// Without a key: hellos with a MAC.
    pub unexpected_auth: u64,
    /// Hellos whose MAC names a key id we do not hold.
    pub unknown_key: u64,
    /// Hellos whose MAC does not match.
    pub bad_mac: u64,
    /// Hellos whose counter is not above the last one from that neighbour.
    pub replayed: u64,
    /// Hellos whose counter is further than [`MAX_SEQ_AHEAD`] from our
    /// clock.
    pub clock_skew: u64,
    /// Times neighbours went down and the data plane switched to repaired
    /// tables (surviving ECMP members, loop-free alternates) before the
    /// routes were computed again (counted by the control thread).
    pub lfa_switches: u64,
}

/// The liveness of this host's neighbours and the links reported down.
#[derive(Debug, Clone)]
pub struct Liveness {
    cfg: LivenessConfig,
    vni: u32,
    me: usize,
    my_addr: IpAddr,
    /// Host index by underlay address, for the reports.
    hosts: BTreeMap<IpAddr, usize>,
    names: Vec<String>,
    neighbours: Vec<Neighbour>,
    /// Our own report's sequence number.
    seq: u64,
    /// The wall clock (ns) at `mono_base`, our monotonic time at creation:
    /// an estimate of the wall clock now, to bound reports from the future.
    wall_base: u64,
    mono_base: u64,
    /// Where the reports that are left over start in the next hello, so
    /// that every one is sent in turn when they do not all fit.
    rotation: usize,
    /// The newest report of every other origin.
    reports: BTreeMap<IpAddr, Stored>,
    /// With keys, hellos carry a MAC and only those with a good one are
    /// taken.
    keys: Option<HelloKeys>,
    /// The counter of the last authenticated hello we sent: our wall
    /// clock estimate in ns, or one more than the last when that is not
    /// greater, so that it grows across restarts too.
    counter: u64,
    pub counts: HelloCounts,
}

impl Liveness {
    /// The neighbours of `me` in `topo` (the far ends of its links), all up
    /// as of `now`. `seq_base` starts our report's sequence numbers: the
    /// wall clock in ns, so that a restarted router's reports supersede
    /// those of its previous run.
    pub fn new(
        topo: &Topology,
        me: usize,
        cfg: LivenessConfig,
        now: u64,
        seq_base: u64,
    ) -> Liveness {
        let mut neighbours: Vec<Neighbour> = Vec::new();
        for l in &topo.links {
            let (Some(a), Some(b)) = (topo.host_index(&l.a), topo.host_index(&l.b)) else {
                continue;
            };
            let other = match (a == me, b == me) {
                (true, false) => b,
                (false, true) => a,
                _ => continue,
            };
            if neighbours.iter().all(|n| n.host != other) {
                let h = &topo.hosts[other];
                neighbours.push(Neighbour {
                    host: other,
                    name: h.name.clone(),
                    addr: h.underlay,
                    heard_at: now,
                    heard: false,
                    hears_us: false,
                    established: false,
                    told: None,
                    since: now,
                    up: true,
                    counter: 0,
                });
            }
        }
        Liveness {
            cfg,
            vni: topo.overlay.vni,
            me,
            my_addr: topo.hosts[me].underlay,
            hosts: topo
                .hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.underlay, i))
                .collect(),
            names: topo.hosts.iter().map(|h| h.name.clone()).collect(),
            neighbours,
            seq: seq_base,
            wall_base: seq_base,
            mono_base: now,
            rotation: 0,
            reports: BTreeMap::new(),
            keys: None,
            counter: 0,
            counts: HelloCounts::default(),
        }
    }

    /// The same for a reloaded topology: a neighbour at the same underlay
    /// address keeps its state, a new one starts up as of `now`; reports
    /// of origins that are still hosts are kept.
    pub fn reload(&self, topo: &Topology, me: usize, cfg: LivenessConfig, now: u64) -> Liveness {
        let mut next = Liveness::new(topo, me, cfg, now, self.seq);
        for n in &mut next.neighbours {
            if let Some(old) = self.neighbours.iter().find(|o| o.addr == n.addr) {
                n.heard_at = old.heard_at;
                n.heard = old.heard;
                n.hears_us = old.hears_us;
                n.established = old.established;
                n.told = old.told.clone();
                n.since = old.since;
                n.up = old.up;
                n.counter = old.counter;
            }
        }
        next.reports = self
            .reports
            .iter()
            .filter(|(a, _)| next.hosts.contains_key(a))
            .map(|(a, r)| (*a, r.clone()))
            .collect();
        // Our list may differ in the new file: say so.
        next.seq = self.seq.saturating_add(1);
        // The clock estimate runs on from start, not from our number.
        next.wall_base = self.wall_base;
        next.mono_base = self.mono_base;
        next.keys = self.keys.clone();
        next.counter = self.counter;
        next.counts = self.counts;
        next
    }

    /// The same with hello keys (the text of a key file the control code
    /// read), or without.
    pub fn with_keys(mut self, keys: Option<HelloKeys>) -> Liveness {
        self.keys = keys;
        self
    }

    /// The hello keys in use.
    pub fn keys(&self) -> Option<&HelloKeys> {
        self.keys.as_ref()
    }

    fn dead_interval(&self) -> u64 {
        u64::from(self.cfg.interval_ms) * u64::from(self.cfg.dead_after) * 1_000_000
    }

    /// Intervals without a hello before a neighbour is down.
    pub fn dead_after(&self) -> u32 {
        self.cfg.dead_after
    }

    /// Nanoseconds between hellos.
    pub fn interval_nanos(&self) -> u64 {
        u64::from(self.cfg.interval_ms) * 1_000_000
    }

    /// The port hellos go to.
    pub fn port(&self) -> u16 {
        self.cfg.port
    }

    /// Our report as the wire carries it (at most [`MAX_DOWN`] entries).
    fn own_report(&self) -> Report {
        Report {
            origin: self.my_addr,
            seq: self.seq,
            down: self
                .neighbours
                .iter()
                .filter(|n| !n.up)
                .map(|n| n.addr)
                .take(MAX_DOWN)
                .collect(),
        }
    }

    /// The reports a hello carries, in the order in which [`Hello::encode`]
    /// keeps them when they do not all fit: ours, those with a non-empty
    /// list, then the empty ones from a place that moves on with every
    /// hello, so that each is sent in turn.
    fn reports_to_send(&mut self) -> Vec<Report> {
        let as_report = |(origin, r): (&IpAddr, &Stored)| Report {
            origin: *origin,
            seq: r.seq,
            down: r.down.clone(),
        };
        let mut out = vec![self.own_report()];
        out.extend(
            self.reports
                .iter()
                .filter(|(_, r)| !r.down.is_empty())
                .map(as_report),
        );
        let empty: Vec<Report> = self
            .reports
            .iter()
            .filter(|(_, r)| r.down.is_empty())
            .map(as_report)
            .collect();
        if !empty.is_empty() {
            let k = self.rotation % empty.len();
            out.extend(empty[k..].iter().chain(&empty[..k]).cloned());
            self.rotation = self.rotation.wrapping_add(1);
        }
        out
    }

    /// What to send each neighbour now: its address and the hello.
    ///
    /// A neighbour is not sent its own report back while the one we hold
    /// is the one it last told us. When they differ (we hold one it did
    /// not make, or a newer one than it told us), ours goes right after
    /// our own, so that the neighbour learns of it and refutes it: no
    /// other way would bring a forged report about a host to that host.
    pub fn hellos(&mut self, now: u64) -> Vec<(IpAddr, Hello)> {
        let dead = self.dead_interval();
        let reports = self.reports_to_send();
        self.neighbours
            .iter()
            .map(|n| {
                let mut out: Vec<Report> = Vec::with_capacity(reports.len());
                let mut theirs = None;
                for r in &reports {
                    if r.origin == n.addr {
                        theirs = Some(r);
                    } else {
                        out.push(r.clone());
                    }
                }
                if let Some(r) = theirs {
                    let told = n
                        .told
                        .as_ref()
                        .is_some_and(|t| t.seq == r.seq && t.down == r.down);
                    if !told {
                        out.insert(out.len().min(1), r.clone());
                    }
                }
                (
                    n.addr,
                    Hello {
                        vni: self.vni,
                        hears_you: n.heard && now.saturating_sub(n.heard_at) < dead,
                        reports: out,
                    },
                )
            })
            .collect()
    }

    /// A datagram from `from` on the liveness port. Returns whether the
    /// set of links that are down changed.
    ///
    /// With keys, only a hello whose MAC passes, for our VNI, from a
    /// neighbour, with a counter above the last one it sent and near our
    /// clock, is taken; whatever is not is counted by its reason.
    pub fn on_datagram(&mut self, now: u64, from: IpAddr, data: &[u8]) -> Result<bool, BadHello> {
        let r = match &self.keys {
            None => Hello::decode(data).and_then(|h| self.on_hello(now, from, &h)),
            Some(_) => self.open(now, from, data),
        };
        let c = &mut self.counts;
        match r {
            Ok(_) => c.received += 1,
            Err(BadHello::Malformed) => c.malformed += 1,
            Err(BadHello::OtherVni) => c.other_vni += 1,
            Err(BadHello::NotNeighbour) => c.not_neighbour += 1,
            Err(BadHello::Unauthenticated) => c.unauthenticated += 1,
            Err(BadHello::UnexpectedAuth) => c.unexpected_auth += 1,
            Err(BadHello::UnknownKey) => c.unknown_key += 1,
            Err(BadHello::BadMac) => c.bad_mac += 1,
            Err(BadHello::Replayed) => c.replayed += 1,
            Err(BadHello::ClockSkew) => c.clock_skew += 1,
        }
        r
    }

    /// An authenticated hello: from a neighbour (checked first, before any
    /// hashing), its MAC, its VNI, its counter, then the hello itself.
    fn open(&mut self, now: u64, from: IpAddr, data: &[u8]) -> Result<bool, BadHello> {
        let Some(keys) = &self.keys else {
            return Err(BadHello::Unauthenticated);
        };
        version(data)?;
        let i = self
            .neighbours
            .iter()
            .position(|n| n.addr == from)
            .ok_or(BadHello::NotNeighbour)?;
        let (h, counter) = Hello::open(data, keys, from, self.my_addr)?;
        if h.vni != self.vni {
            return Err(BadHello::OtherVni);
        }
        let wall = self.wall_at(now);
        if counter.abs_diff(wall) > MAX_SEQ_AHEAD {
            return Err(BadHello::ClockSkew);
        }
        if counter <= self.neighbours[i].counter {
            return Err(BadHello::Replayed);
        }
        self.neighbours[i].counter = counter;
        self.on_hello(now, from, &h)
    }

    /// Every hello to send now, as datagrams: the neighbour's address and
    /// the bytes, with a MAC when we have keys. Reports that did not fit
    /// are counted.
    pub fn datagrams(&mut self, now: u64) -> Vec<(IpAddr, Vec<u8>)> {
        let hellos = self.hellos(now);
        let mut out = Vec::with_capacity(hellos.len());
        for (to, h) in hellos {
            let (b, left_out) = match &self.keys {
                None => h.encode(),
                Some(keys) => {
                    self.counter = self.wall_at(now).max(self.counter.saturating_add(1));
                    h.seal(keys.active(), self.counter, self.my_addr, to)
                }
            };
            self.counts.reports_left_out += left_out as u64;
            out.push((to, b));
        }
        out
    }

    /// Records a change of our own list: a new sequence number.
    fn own_changed(&mut self) {
        self.seq = self.seq.saturating_add(1);
    }

    /// A report attributed to us. One we did not make (another list at our
    /// number or above: forged, or from a run before a restart with a
    /// later clock) would win over ours wherever it goes, so ours is
    /// re-originated above it, as OSPF does with its own LSAs; ours then
    /// wins everywhere. It is only believed within [`MAX_SEQ_AHEAD`] of
    /// our clock, like every report, so one forged hello can push our
    /// number at most that far, never to where others would refuse it
    /// or it could not grow. An echo of our current one changes nothing.
    fn refute(&mut self, r: &Report) {
        let ours = self.own_report();
        if r.seq > ours.seq || (r.seq == ours.seq && r.down != ours.down) {
            self.seq = r.seq;
            self.own_changed();
            self.counts.reports_refuted += 1;
        }
    }

    /// Whether a report's sequence number is believable at `now`.
    fn plausible(&self, now: u64, seq: u64) -> bool {
        seq <= self.wall_at(now).saturating_add(MAX_SEQ_AHEAD)
    }

    /// Our estimate of the wall clock (ns) at `now`.
    fn wall_at(&self, now: u64) -> u64 {
        self.wall_base
            .saturating_add(now.saturating_sub(self.mono_base))
    }

    /// A decoded hello from `from`. Returns whether the set of links that
    /// are down changed.
    pub fn on_hello(&mut self, now: u64, from: IpAddr, h: &Hello) -> Result<bool, BadHello> {
        if h.vni != self.vni {
            return Err(BadHello::OtherVni);
        }
        let dead = self.dead_interval();
        let before = self.links_down();
        let n = self
            .neighbours
            .iter_mut()
            .find(|n| n.addr == from)
            .ok_or(BadHello::NotNeighbour)?;
        n.heard_at = now;
        n.heard = true;
        n.hears_us = h.hears_you;
        n.established |= h.hears_you;
        let was = n.up;
        n.up = n.up_at(now, dead);
        if was != n.up {
            self.own_changed();
        }
        for r in &h.reports {
            if !self.plausible(now, r.seq) {
                self.counts.reports_ahead += 1;
                continue;
            }
            if r.origin == self.my_addr {
                self.refute(r);
                continue;
            }
            if !self.hosts.contains_key(&r.origin) {
                continue;
            }
            let got = Stored {
                seq: r.seq,
                down: r.down.clone(),
            };
            if r.origin == from {
                if let Some(n) = self.neighbours.iter_mut().find(|n| n.addr == from) {
                    n.told = Some(got.clone());
                }
            }
            // Newer wins; at an equal number (only a forged report or a
            // restart's clock makes two), the greater list, so that every
            // host keeps the same one and the origin, told it, refutes it.
            if self
                .reports
                .get(&r.origin)
                .is_none_or(|s| (r.seq, &r.down) > (s.seq, &s.down))
            {
                self.reports.insert(r.origin, got);
            }
        }
        Ok(self.links_down() != before)
    }

    /// Marks down every neighbour not heard (two-way) within the dead
    /// interval. Returns whether the set of links that are down changed.
    pub fn on_tick(&mut self, now: u64) -> bool {
        let dead = self.dead_interval();
        let mut changed = false;
        for n in &mut self.neighbours {
            let up = n.up_at(now, dead);
            if n.up != up {
                n.up = up;
                changed = true;
            }
        }
        if changed {
            self.own_changed();
        }
        changed
    }

    /// Names of our neighbours that are down, in link order.
    pub fn down(&self) -> Vec<String> {
        self.neighbours
            .iter()
            .filter(|n| !n.up)
            .map(|n| n.name.clone())
            .collect()
    }

    /// Every neighbour by name, with whether it is up.
    pub fn states(&self) -> Vec<(String, bool)> {
        self.neighbours
            .iter()
            .map(|n| (n.name.clone(), n.up))
            .collect()
    }

    /// The links that are out of the routes, as host index pairs (lower
    /// first): ours to the neighbours that are down, and every link an end
    /// of it reports down.
    pub fn links_down(&self) -> BTreeSet<(usize, usize)> {
        let pair = |a: usize, b: usize| (a.min(b), a.max(b));
        let mut out: BTreeSet<(usize, usize)> = self
            .neighbours
            .iter()
            .filter(|n| !n.up)
            .map(|n| pair(self.me, n.host))
            .collect();
        for (origin, r) in &self.reports {
            let Some(&a) = self.hosts.get(origin) else {
                continue;
            };
            for d in &r.down {
                if let Some(&b) = self.hosts.get(d) {
                    if a != b {
                        out.insert(pair(a, b));
                    }
                }
            }
        }
        out
    }

    /// The links that are out, by name ("h1-h3").
    pub fn link_names_down(&self) -> Vec<String> {
        self.links_down()
            .into_iter()
            .map(|(a, b)| format!("{}-{}", self.names[a], self.names[b]))
            .collect()
    }

    /// `topo` without the links that are down: what the routes are
    /// computed over. `topo` must be the file this was made from.
    pub fn live_topology(&self, topo: &Topology) -> Topology {
        let down = self.links_down();
        let mut t = topo.clone();
        if down.is_empty() {
            return t;
        }
        t.links
            .retain(|l| match (topo.host_index(&l.a), topo.host_index(&l.b)) {
                (Some(a), Some(b)) => !down.contains(&(a.min(b), a.max(b))),
                _ => true,
            });
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;
    use crate::route;

    const MS: u64 = 1_000_000;

    fn parse(hosts: usize, links: &[(usize, usize, u32)], interval: u32) -> Topology {
        let mut text = format!("[overlay]\nvni = 42\nliveness_interval_ms = {interval}\n");
        for h in 1..=hosts {
            text += &format!(
                "[[hosts]]\nname = \"h{h}\"\nunderlay = \"198.18.0.{h}\"\nsubnets = [\"198.19.{h}.0/24\"]\n"
            );
        }
        for (a, b, c) in links {
            text += &format!("[[links]]\na = \"h{a}\"\nb = \"h{b}\"\ncost = {c}\n");
        }
        config::parse(&text, "t.toml").expect("valid")
    }

    /// h1 - h3 - h2 at cost 5 + 5, and h1 - h2 direct at 20.
    fn triangle() -> Topology {
        parse(3, &[(1, 3, 5), (3, 2, 5), (1, 2, 20)], 100)
    }

    fn cfg(t: &Topology) -> LivenessConfig {
        t.overlay.liveness.clone().expect("liveness on")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn hello(hears_you: bool) -> Hello {
        Hello {
            vni: 42,
            hears_you,
            reports: vec![],
        }
    }

    fn next_hops(t: &Topology, me: usize, prefix: &str) -> Vec<String> {
        let r = route::compute(t, me).expect("routes");
        let p: ipnet::IpNet = prefix.parse().unwrap();
        r.routes
            .iter()
            .find(|r| r.prefix == p)
            .map(|r| {
                r.next_hops
                    .iter()
                    .map(|n| t.hosts[n.host].name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn hello_round_trips_and_rejects_garbage() {
        let h = Hello {
            vni: 0xff_ffff,
            hears_you: true,
            reports: vec![
                Report {
                    origin: ip("198.18.0.1"),
                    seq: u64::MAX - 1,
                    down: vec![ip("198.18.0.2"), ip("2001:2::9")],
                },
                Report {
                    origin: ip("2001:2::1"),
                    seq: 7,
                    down: vec![],
                },
            ],
        };
        let (b, left_out) = h.encode();
        assert_eq!(left_out, 0);
        assert_eq!(b.len(), HELLO_LEN + (5 + 8 + 1 + 5 + 17) + (17 + 8 + 1));
        assert_eq!(Hello::decode(&b), Ok(h.clone()));
        assert_eq!(Hello::decode(&hello(false).encode().0), Ok(hello(false)));
        // Every truncation of the reports is malformed, never a panic.
        for n in 0..b.len() {
            assert_eq!(
                Hello::decode(&b[..n]),
                Err(BadHello::Malformed),
                "{n} bytes"
            );
        }
        let mut bad = b.clone();
        bad[0] = b'X';
        assert_eq!(Hello::decode(&bad), Err(BadHello::Malformed));
        // Version 2 is the authenticated form: a counted mismatch, not a
        // misparse; a later one is not ours.
        let mut v2 = b.clone();
        v2[4] = 2;
        assert_eq!(Hello::decode(&v2), Err(BadHello::UnexpectedAuth));
        v2[4] = 3;
        assert_eq!(Hello::decode(&v2), Err(BadHello::Malformed));
        let mut family = b.clone();
        family[HELLO_LEN] = 5;
        assert_eq!(Hello::decode(&family), Err(BadHello::Malformed));
        let mut longer = b.clone();
        longer.extend_from_slice(&[1, 2, 3]);
        assert_eq!(Hello::decode(&longer), Ok(h));
    }

    fn any_addr() -> impl proptest::strategy::Strategy<Value = IpAddr> {
        use proptest::prelude::*;
        prop_oneof![
            any::<[u8; 4]>().prop_map(IpAddr::from),
            any::<[u8; 16]>().prop_map(IpAddr::from),
        ]
    }

    const KEY1: &str = "000102030405060708090a0b0c0d0e0f";
    const KEY2: &str = "f0e0d0c0b0a090807060504030201000f0e0d0c0b0a0908070605040302010ff";

    fn keys(text: &str) -> HelloKeys {
        HelloKeys::parse(text).expect("a valid key file")
    }

    fn two_keys() -> HelloKeys {
        keys(&format!("1 {KEY1}\n2 {KEY2} active\n"))
    }

    #[test]
    fn sealed_hellos_round_trip_and_any_change_is_refused() {
        let h = Hello {
            vni: 42,
            hears_you: true,
            reports: vec![Report {
                origin: ip("198.18.0.1"),
                seq: 9,
                down: vec![ip("198.18.0.2"), ip("2001:2::9")],
            }],
        };
        let (a, b) = (ip("198.18.0.1"), ip("198.18.0.2"));
        let ks = two_keys();
        let (d, left_out) = h.seal(ks.active(), 77, a, b);
        assert_eq!(left_out, 0);
        assert_eq!(
            d.len(),
            HELLO_LEN + AUTH_LEN + (5 + 8 + 1 + 5 + 17) + MAC_LEN
        );
        assert_eq!(&d[HELLO_LEN..HELLO_LEN + 4], &2u32.to_be_bytes());
        assert_eq!(Hello::open(&d, &ks, a, b), Ok((h.clone(), 77)));
        // Bound to its sender and its receiver.
        assert_eq!(Hello::open(&d, &ks, b, a), Err(BadHello::BadMac));
        assert_eq!(
            Hello::open(&d, &ks, a, ip("198.18.0.3")),
            Err(BadHello::BadMac)
        );
        // Key 2 not held; key 2 with other bytes.
        assert_eq!(
            Hello::open(&d, &keys(&format!("1 {KEY1}")), a, b),
            Err(BadHello::UnknownKey)
        );
        assert_eq!(
            Hello::open(&d, &keys(&format!("2 {KEY1}")), a, b),
            Err(BadHello::BadMac)
        );
        // Every flipped bit and every cut is refused, never read.
        for i in 0..d.len() {
            for bit in 0..8 {
                let mut x = d.clone();
                x[i] ^= 1 << bit;
                assert!(Hello::open(&x, &ks, a, b).is_err(), "bit {bit} of byte {i}");
            }
        }
        for n in 0..d.len() {
            assert!(Hello::open(&d[..n], &ks, a, b).is_err(), "{n} bytes");
        }
        let mut longer = d.clone();
        longer.push(0);
        assert_eq!(Hello::open(&longer, &ks, a, b), Err(BadHello::BadMac));
        // Each form where the other is expected: a counted mismatch.
        assert_eq!(Hello::decode(&d), Err(BadHello::UnexpectedAuth));
        assert_eq!(
            Hello::open(&h.encode().0, &ks, a, b),
            Err(BadHello::Unauthenticated)
        );
    }

    #[test]
    fn key_files_are_read_strictly() {
        let k = keys(&format!(
            "# liveness keys\n\n1 {KEY1}  # the old one\n\t2\t{KEY2}\tactive\n"
        ));
        assert_eq!((k.ids(), k.active_id()), (vec![1, 2], 2));
        let one = keys(&format!("4294967295 {}", KEY1.to_uppercase()));
        assert_eq!((one.ids(), one.active_id()), (vec![u32::MAX], u32::MAX));
        // The key bytes never show in logs.
        let shown = format!("{k:?}");
        assert!(
            !shown.contains("0a0b") && !shown.contains("10, 11"),
            "{shown}"
        );
        let long = "ab".repeat(MAX_KEY_LEN + 1);
        let short = "ab".repeat(MIN_KEY_LEN - 1);
        for (text, line, col, msg) in [
            (format!("x {KEY1}"), 1, 1, "expected a number"),
            (format!("4294967296 {KEY1}"), 1, 1, "expected a number"),
            (format!("1 {KEY1}\n1 {KEY2} active"), 2, 1, "listed twice"),
            ("\n 7".to_string(), 2, 3, "has no key"),
            (format!("1 {KEY1}0"), 1, 3, "even number of hex digits"),
            (format!("1 {}", KEY1.replace('a', "g")), 1, 3, "hex digits"),
            (format!("1 {short}"), 1, 3, "has 15 bytes"),
            (format!("1 {long}"), 1, 3, "has 65 bytes"),
            (
                format!("1 {KEY1} active\n2 {KEY2} active"),
                2,
                68,
                "second key",
            ),
            (format!("1 {KEY1} actif"), 1, 36, "expected `active`"),
            (format!("1 {KEY1} active now"), 1, 43, "nothing may follow"),
            (format!("1 {KEY1}\n2 {KEY2}"), 2, 1, "none marked `active`"),
            (String::new(), 1, 1, "no key"),
            ("# only a comment\n".to_string(), 1, 1, "no key"),
            (format!("1 {KEY1}\u{7}"), 1, 35, "control character"),
        ] {
            let e = HelloKeys::parse(&text).expect_err(&text);
            assert_eq!((e.line, e.col), (line, col), "{text:?}: {e}");
            assert!(e.msg.contains(msg), "{text:?}: {e}");
        }
    }

    #[test]
    fn with_a_key_only_good_fresh_hellos_are_taken() {
        const BASE: u64 = 1_700_000_000 * 1_000_000_000;
        const MIN: u64 = 60_000 * MS;
        let t = triangle();
        let ks = two_keys();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0, BASE).with_keys(Some(ks.clone()));
        let (me, h2, h3) = (ip("198.18.0.1"), ip("198.18.0.2"), ip("198.18.0.3"));
        let sealed = |h: &Hello, key: &HelloKeys, counter, from, to| {
            h.seal(key.active(), counter, from, to).0
        };
        let hears = |l: &mut Liveness| l.hellos(MS)[1].1.hears_you;
        let at = |l: &mut Liveness, d: &[u8]| l.on_datagram(MS, h2, d);
        assert_eq!(
            at(&mut l, &hello(true).encode().0),
            Err(BadHello::Unauthenticated)
        );
        let attacker = keys(&format!("2 {KEY1}"));
        assert_eq!(
            at(&mut l, &sealed(&hello(true), &attacker, BASE, h2, me)),
            Err(BadHello::BadMac)
        );
        assert_eq!(
            at(
                &mut l,
                &sealed(&hello(true), &keys(&format!("3 {KEY2}")), BASE, h2, me)
            ),
            Err(BadHello::UnknownKey)
        );
        // Made for h3: it does not pass at h1.
        assert_eq!(
            at(&mut l, &sealed(&hello(true), &ks, BASE, h2, h3)),
            Err(BadHello::BadMac)
        );
        let other = Hello {
            vni: 43,
            ..hello(true)
        };
        assert_eq!(
            at(&mut l, &sealed(&other, &ks, BASE, h2, me)),
            Err(BadHello::OtherVni)
        );
        assert!(!hears(&mut l), "nothing taken yet");
        let good = sealed(&hello(true), &ks, BASE + 5, h2, me);
        assert_eq!(at(&mut l, &good), Ok(false));
        assert!(hears(&mut l));
        // The same again, or an older one: a replay.
        assert_eq!(at(&mut l, &good), Err(BadHello::Replayed));
        assert_eq!(
            at(&mut l, &sealed(&hello(true), &ks, BASE + 4, h2, me)),
            Err(BadHello::Replayed)
        );
        // Too far from our clock, either way.
        assert_eq!(
            at(&mut l, &sealed(&hello(true), &ks, BASE + 11 * MIN, h2, me)),
            Err(BadHello::ClockSkew)
        );
        let mut late =
            Liveness::new(&t, 0, cfg(&t), 0, BASE + 11 * MIN).with_keys(Some(ks.clone()));
        assert_eq!(late.on_datagram(MS, h2, &good), Err(BadHello::ClockSkew));
        assert_eq!(
            at(&mut l, &sealed(&hello(true), &ks, BASE + 6, h2, me)),
            Ok(false)
        );
        // From no neighbour: refused before any hashing.
        assert_eq!(
            l.on_datagram(MS, ip("198.18.0.9"), &good),
            Err(BadHello::NotNeighbour)
        );
        assert_eq!(
            l.counts,
            HelloCounts {
                received: 2,
                other_vni: 1,
                not_neighbour: 1,
                unauthenticated: 1,
                unknown_key: 1,
                bad_mac: 2,
                replayed: 2,
                clock_skew: 1,
                ..HelloCounts::default()
            }
        );
        // Without a key, a hello with a MAC is a counted mismatch.
        let mut plain = Liveness::new(&t, 0, cfg(&t), 0, BASE);
        assert_eq!(
            plain.on_datagram(MS, h2, &good),
            Err(BadHello::UnexpectedAuth)
        );
        assert_eq!(plain.counts.unexpected_auth, 1);
        // Ours carry the active key and a counter from our clock that
        // grows with every hello.
        let sent = l.datagrams(2 * MS);
        let mut counters = vec![];
        for (to, d) in &sent {
            assert_eq!(&d[HELLO_LEN..HELLO_LEN + 4], &2u32.to_be_bytes());
            let (_, c) = Hello::open(d, &ks, me, *to).expect("opens");
            counters.push(c);
        }
        assert_eq!(counters, [BASE + 2 * MS, BASE + 2 * MS + 1]);
    }

    proptest::proptest! {
        #[test]
        fn open_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600)) {
            let ks = two_keys();
            let _ = Hello::open(&b, &ks, ip("198.18.0.1"), ip("198.18.0.2"));
        }

        #[test]
        fn open_behind_a_valid_header_never_panics(
            id in 0u32..4,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1400),
        ) {
            let mut b = b"VXRL\x02\x01\x00\x03\x00\x00\x00\x2a".to_vec();
            b.extend_from_slice(&id.to_be_bytes());
            b.extend_from_slice(&tail);
            let _ = Hello::open(&b, &two_keys(), ip("198.18.0.1"), ip("198.18.0.2"));
        }

        #[test]
        fn what_fits_round_trips_sealed(
            reports in proptest::collection::vec(
                (any_addr(), proptest::prelude::any::<u64>(), proptest::collection::vec(any_addr(), 0..6)),
                0..40,
            ),
            counter in proptest::prelude::any::<u64>(),
            from in any_addr(),
            to in any_addr(),
        ) {
            let h = Hello {
                vni: 42,
                hears_you: true,
                reports: reports
                    .into_iter()
                    .map(|(origin, seq, down)| Report { origin, seq, down })
                    .collect(),
            };
            let ks = two_keys();
            let (b, left_out) = h.seal(ks.active(), counter, from, to);
            proptest::prop_assert!(b.len() <= MAX_HELLO);
            let (back, c) = Hello::open(&b, &ks, from, to).expect("opens");
            proptest::prop_assert_eq!(c, counter);
            proptest::prop_assert_eq!(back.reports.len() + left_out, h.reports.len());
            let mut it = h.reports.iter();
            for r in &back.reports {
                proptest::prop_assert!(it.any(|x| x == r));
            }
        }

        #[test]
        fn decode_never_panics(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1600)) {
            let _ = Hello::decode(&b);
        }

        #[test]
        fn decode_behind_a_valid_header_never_panics(
            n in proptest::prelude::any::<u16>(),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1400),
        ) {
            let mut b = b"VXRL\x01\x01".to_vec();
            b.extend_from_slice(&n.to_be_bytes());
            b.extend_from_slice(&[0, 0, 0, 42]);
            b.extend_from_slice(&tail);
            let _ = Hello::decode(&b);
        }

        #[test]
        fn what_fits_round_trips(
            reports in proptest::collection::vec(
                (any_addr(), proptest::prelude::any::<u64>(), proptest::collection::vec(any_addr(), 0..6)),
                0..40,
            ),
            hears_you in proptest::prelude::any::<bool>(),
        ) {
            let h = Hello {
                vni: 42,
                hears_you,
                reports: reports
                    .into_iter()
                    .map(|(origin, seq, down)| Report { origin, seq, down })
                    .collect(),
            };
            let (b, left_out) = h.encode();
            proptest::prop_assert!(b.len() <= MAX_HELLO);
            let back = Hello::decode(&b).expect("decodes");
            proptest::prop_assert_eq!(back.reports.len() + left_out, h.reports.len());
            // What was kept is what was sent, in order.
            let mut it = h.reports.iter();
            for r in &back.reports {
                proptest::prop_assert!(it.any(|x| x == r));
            }
            proptest::prop_assert_eq!(back.hears_you, hears_you);
        }
    }

    #[test]
    fn reports_past_the_size_limit_are_left_out() {
        let reports: Vec<Report> = (0..200u32)
            .map(|i| Report {
                origin: IpAddr::from((0xc612_0000u32 + i).to_be_bytes()),
                seq: 1,
                down: vec![],
            })
            .collect();
        let (b, left_out) = Hello {
            vni: 1,
            hears_you: false,
            reports,
        }
        .encode();
        assert!(b.len() <= MAX_HELLO);
        let kept = Hello::decode(&b).unwrap().reports.len();
        assert_eq!(kept + left_out, 200);
        assert!(kept >= 90, "{kept}");
    }

    #[test]
    fn silent_neighbour_goes_down_and_comes_back_two_way() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0, 1);
        assert_eq!(l.states(), vec![("h3".into(), true), ("h2".into(), true)]);
        // h2 keeps talking, h3 says nothing: down after 3 x 100 ms.
        for k in 1..=2u64 {
            assert_eq!(
                l.on_hello(k * 100 * MS, ip("198.18.0.2"), &hello(true)),
                Ok(false)
            );
            assert!(!l.on_tick(k * 100 * MS), "changed at {k}");
        }
        assert!(!l.on_tick(300 * MS - 1));
        assert_eq!(
            l.on_hello(300 * MS, ip("198.18.0.2"), &hello(true)),
            Ok(false)
        );
        assert!(l.on_tick(300 * MS));
        assert_eq!(l.down(), vec!["h3".to_string()]);
        assert_eq!(l.link_names_down(), vec!["h1-h3".to_string()]);
        assert!(!l.on_tick(310 * MS), "a second report");
        // h3 talks again, but does not hear us yet: still down.
        assert_eq!(
            l.on_hello(320 * MS, ip("198.18.0.3"), &hello(false)),
            Ok(false)
        );
        assert_eq!(l.down(), vec!["h3".to_string()]);
        // Our next hello to h3 says we hear it.
        let to_h3 = l
            .hellos(330 * MS)
            .into_iter()
            .find(|(a, _)| *a == ip("198.18.0.3"));
        assert!(to_h3.unwrap().1.hears_you);
        // It hears us: up.
        assert_eq!(
            l.on_hello(340 * MS, ip("198.18.0.3"), &hello(true)),
            Ok(true)
        );
        assert!(l.down().is_empty());
        // One that says it no longer hears us goes down at once.
        assert_eq!(
            l.on_hello(350 * MS, ip("198.18.0.2"), &hello(false)),
            Ok(true)
        );
        assert_eq!(l.down(), vec!["h2".to_string()]);
    }

    #[test]
    fn start_up_one_way_hellos_do_not_flap() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0, 1);
        // h2 starts with us: its first hello cannot hear us yet.
        assert_eq!(
            l.on_hello(10 * MS, ip("198.18.0.2"), &hello(false)),
            Ok(false)
        );
        assert_eq!(
            l.on_hello(110 * MS, ip("198.18.0.2"), &hello(true)),
            Ok(false)
        );
        assert!(l.down().is_empty());
        // A neighbour that only ever hears itself talk: down once the grace
        // is over, though its hellos keep coming.
        for k in 0..3u64 {
            l.on_hello(k * 100 * MS, ip("198.18.0.3"), &hello(false))
                .unwrap();
        }
        assert_eq!(
            l.on_hello(300 * MS, ip("198.18.0.3"), &hello(false)),
            Ok(true)
        );
        assert_eq!(l.down(), vec!["h3".to_string()]);
        // Established h2 restarts: its hello no longer hears us, down at once.
        assert_eq!(
            l.on_hello(320 * MS, ip("198.18.0.2"), &hello(false)),
            Ok(true)
        );
        assert_eq!(
            l.on_hello(420 * MS, ip("198.18.0.2"), &hello(true)),
            Ok(true)
        );
        assert_eq!(l.down(), vec!["h3".to_string()]);
    }

    #[test]
    fn hellos_say_whom_we_hear_and_carry_our_report() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0, 1000);
        // Never heard: we do not claim to hear them.
        assert!(l.hellos(0).iter().all(|(_, h)| !h.hears_you && h.vni == 42));
        l.on_hello(50 * MS, ip("198.18.0.2"), &hello(true)).unwrap();
        let hears: Vec<_> = l
            .hellos(60 * MS)
            .into_iter()
            .map(|(a, h)| (a, h.hears_you))
            .collect();
        assert_eq!(
            hears,
            vec![(ip("198.18.0.3"), false), (ip("198.18.0.2"), true)]
        );
        let own = &l.hellos(60 * MS)[0].1.reports[0];
        assert_eq!(
            (own.origin, own.seq, own.down.len()),
            (ip("198.18.0.1"), 1000, 0)
        );
        // h3 down: a new sequence number and h3 in the list.
        assert!(l.on_tick(301 * MS));
        let own = &l.hellos(301 * MS)[0].1.reports[0];
        assert_eq!((own.seq, own.down.clone()), (1001, vec![ip("198.18.0.3")]));
        // Not heard for the dead interval: no longer.
        assert!(l.hellos(351 * MS).iter().all(|(_, h)| !h.hears_you));
    }

    #[test]
    fn foreign_datagrams_are_counted_not_taken() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0, 1);
        let h = hello(true).encode().0;
        assert_eq!(
            l.on_datagram(1, ip("198.18.0.9"), &h),
            Err(BadHello::NotNeighbour)
        );
        let other = Hello {
            vni: 43,
            ..hello(true)
        };
        assert_eq!(
            l.on_datagram(1, ip("198.18.0.2"), &other.encode().0),
            Err(BadHello::OtherVni)
        );
        assert_eq!(
            l.on_datagram(1, ip("198.18.0.2"), b"hello"),
            Err(BadHello::Malformed)
        );
        assert_eq!(l.on_datagram(1, ip("198.18.0.2"), &h), Ok(false));
        assert_eq!(
            l.counts,
            HelloCounts {
                received: 1,
                malformed: 1,
                other_vni: 1,
                not_neighbour: 1,
                ..HelloCounts::default()
            }
        );
    }

    #[test]
    fn newer_reports_win_and_ours_supersede_our_old_ones() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0, 10);
        let from_h2 = |reports| Hello {
            reports,
            ..hello(true)
        };
        let r = |seq, down: Vec<IpAddr>| Report {
            origin: ip("198.18.0.3"),
            seq,
            down,
        };
        // h2 relays h3's report that h3 lost h2: the h2-h3 link is out.
        let got = l.on_hello(
            1,
            ip("198.18.0.2"),
            &from_h2(vec![r(5, vec![ip("198.18.0.2")])]),
        );
        assert_eq!(got, Ok(true));
        assert_eq!(l.link_names_down(), vec!["h2-h3".to_string()]);
        // An older one changes nothing; a newer empty one brings it back.
        assert_eq!(
            l.on_hello(2, ip("198.18.0.2"), &from_h2(vec![r(4, vec![])])),
            Ok(false)
        );
        assert_eq!(
            l.on_hello(3, ip("198.18.0.2"), &from_h2(vec![r(6, vec![])])),
            Ok(true)
        );
        assert!(l.links_down().is_empty());
        // Reports of unknown origins and about unknown hosts are ignored.
        let stranger = Report {
            origin: ip("198.18.0.77"),
            seq: 1,
            down: vec![ip("198.18.0.2")],
        };
        assert_eq!(
            l.on_hello(4, ip("198.18.0.2"), &from_h2(vec![stranger])),
            Ok(false)
        );
        // Our own report from a run with a later clock: ours jump past it.
        let old_self = Report {
            origin: ip("198.18.0.1"),
            seq: 50,
            down: vec![ip("198.18.0.3")],
        };
        assert_eq!(
            l.on_hello(5, ip("198.18.0.2"), &from_h2(vec![old_self])),
            Ok(false)
        );
        assert_eq!(l.hellos(5)[0].1.reports[0].seq, 51);
        assert!(l.links_down().is_empty());
    }

    /// A network of routers exchanging encoded hellos in memory, with links
    /// that can be cut and routers that can stop.
    struct Net {
        topo: Topology,
        hosts: Vec<Liveness>,
        alive: Vec<bool>,
        cut: Vec<(usize, usize)>,
        now: u64,
        /// Every datagram delivered in the last round: to, from, bytes.
        mail: Vec<(usize, IpAddr, Vec<u8>)>,
        /// Every hello sent must be taken.
        strict: bool,
    }

    impl Net {
        fn new(topo: Topology) -> Net {
            let c = cfg(&topo);
            let hosts = (0..topo.hosts.len())
                .map(|i| Liveness::new(&topo, i, c.clone(), 0, 1_000 * (i as u64 + 1)))
                .collect();
            let alive = vec![true; topo.hosts.len()];
            Net {
                topo,
                hosts,
                alive,
                cut: vec![],
                now: 0,
                mail: vec![],
                strict: true,
            }
        }

        fn index(&self, a: IpAddr) -> usize {
            self.topo
                .hosts
                .iter()
                .position(|h| h.underlay == a)
                .unwrap()
        }

        /// One interval: every live router sends its hellos, every hello on
        /// an intact link to a live router is taken, every router ticks.
        fn round(&mut self) {
            self.now += 100 * MS;
            let mut mail = Vec::new();
            let now = self.now;
            for i in 0..self.hosts.len() {
                if !self.alive[i] {
                    continue;
                }
                for (to, b) in self.hosts[i].datagrams(now) {
                    let j = self.index(to);
                    let cut = self.cut.contains(&(i.min(j), i.max(j)));
                    if self.alive[j] && !cut {
                        mail.push((j, self.topo.hosts[i].underlay, b));
                    }
                }
            }
            // Through a receive buffer as the control thread has one.
            let mut buf = [0u8; MAX_HELLO + 1];
            for (j, from, b) in &mail {
                let n = b.len().min(buf.len());
                buf[..n].copy_from_slice(&b[..n]);
                let r = self.hosts[*j].on_datagram(now, *from, &buf[..n]);
                assert!(
                    r.is_ok() || !self.strict,
                    "h{} refused a hello: {r:?}",
                    j + 1
                );
            }
            self.mail = mail;
            for (i, l) in self.hosts.iter_mut().enumerate() {
                if self.alive[i] {
                    l.on_tick(self.now);
                }
            }
        }

        /// Follows the first next hop of every live router from `src` to
        /// `dst`'s subnet: the hosts on the way, or a panic on a loop.
        fn path(&self, src: usize, dst: usize) -> Vec<String> {
            let prefix = format!("198.19.{}.0/24", dst + 1);
            let mut at = src;
            let mut path = vec![self.topo.hosts[src].name.clone()];
            while at != dst {
                assert!(self.alive[at], "path {path:?} enters a dead router");
                let live = self.hosts[at].live_topology(&self.topo);
                let hops = next_hops(&live, at, &prefix);
                let Some(next) = hops.first() else {
                    return path;
                };
                at = self.topo.host_index(next).unwrap();
                path.push(next.clone());
                assert!(path.len() <= self.topo.hosts.len(), "loop: {path:?}");
            }
            path
        }

        fn agree(&self) -> Vec<String> {
            let live: Vec<_> = (0..self.hosts.len()).filter(|&i| self.alive[i]).collect();
            let first = self.hosts[live[0]].link_names_down();
            for &i in &live {
                assert_eq!(
                    self.hosts[i].link_names_down(),
                    first,
                    "h{} disagrees",
                    i + 1
                );
            }
            first
        }

        /// Host `at`'s own report, or what host `i` holds of it.
        fn report_of(&mut self, i: usize, at: usize) -> Option<(u64, Vec<IpAddr>)> {
            if i == at {
                let r = self.hosts[at].own_report();
                return Some((r.seq, r.down));
            }
            let origin = self.topo.hosts[at].underlay;
            self.hosts[i]
                .reports
                .get(&origin)
                .map(|s| (s.seq, s.down.clone()))
        }

        /// Every live host holds `at`'s own, current report.
        fn all_hold_report_of(&mut self, at: usize) {
            let own = self.report_of(at, at);
            for i in 0..self.hosts.len() {
                if self.alive[i] {
                    assert_eq!(
                        self.report_of(i, at),
                        own,
                        "h{} holds another report of h{}",
                        i + 1,
                        at + 1
                    );
                }
            }
        }

        /// A hello from `from`'s address, but not from it, taken by `to`.
        fn forge(&mut self, from: usize, to: usize, report: Report) {
            let h = Hello {
                vni: 42,
                hears_you: true,
                reports: vec![report],
            };
            let addr = self.topo.hosts[from].underlay;
            let now = self.now;
            self.hosts[to]
                .on_datagram(now, addr, &h.encode().0)
                .unwrap();
        }
    }

    /// A ring of `n` hosts at cost 1, liveness every 100 ms.
    fn ring(n: usize) -> Topology {
        let mut text = String::from("[overlay]\nvni = 42\nliveness_interval_ms = 100\n");
        for h in 1..=n {
            text += &format!(
                "[[hosts]]\nname = \"h{h}\"\nunderlay = \"198.18.{}.{}\"\nsubnets = [\"198.19.{h}.0/24\"]\n",
                h / 200,
                h % 200 + 1
            );
        }
        for h in 1..=n {
            text += &format!(
                "[[links]]\na = \"h{h}\"\nb = \"h{}\"\ncost = 1\n",
                h % n + 1
            );
        }
        config::parse(&text, "t.toml").expect("valid")
    }

    #[test]
    fn a_cut_link_is_left_out_by_every_host_and_paths_do_not_loop() {
        // The triangle: h1-h3-h2 at 5 + 5 and h1-h2 at 20. The h1-h3 link
        // breaks while both hosts live: h2 must learn it, or h2 sends h1's
        // traffic to h3, which sends it back.
        let mut net = Net::new(triangle());
        for _ in 0..5 {
            net.round();
        }
        assert!(net.agree().is_empty());
        // Nothing changed: no host's sequence number moved (echoes of our
        // own report must not bump it).
        for (i, l) in net.hosts.iter_mut().enumerate() {
            assert_eq!(l.hellos(0)[0].1.reports[0].seq, 1_000 * (i as u64 + 1));
        }
        assert_eq!(net.path(1, 0), ["h2", "h3", "h1"]);
        net.cut.push((0, 2));
        for _ in 0..6 {
            net.round();
        }
        assert_eq!(net.agree(), ["h1-h3"]);
        assert_eq!(net.path(1, 0), ["h2", "h1"]);
        assert_eq!(net.path(0, 2), ["h1", "h2", "h3"]);
        assert_eq!(net.path(2, 0), ["h3", "h2", "h1"]);
        // Mended: every host takes it back.
        net.cut.clear();
        for _ in 0..4 {
            net.round();
        }
        assert!(net.agree().is_empty());
        assert_eq!(net.path(1, 0), ["h2", "h3", "h1"]);
    }

    #[test]
    fn a_dead_router_two_hops_away_is_routed_around() {
        // h1-h3 1, h3-h4 1, h4-h2 1, h1-h2 10. h4 dies: h1 has no link to it
        // and learns it from h3's and h2's reports.
        let mut net = Net::new(parse(
            4,
            &[(1, 3, 1), (3, 4, 1), (4, 2, 1), (1, 2, 10)],
            100,
        ));
        for _ in 0..5 {
            net.round();
        }
        assert_eq!(net.path(0, 1), ["h1", "h3", "h4", "h2"]);
        net.alive[3] = false;
        for _ in 0..6 {
            net.round();
        }
        assert_eq!(net.agree(), ["h2-h4", "h3-h4"]);
        assert_eq!(net.path(0, 1), ["h1", "h2"]);
        assert_eq!(net.path(2, 1), ["h3", "h1", "h2"]);
        // h4 restarts (a new clock, a higher sequence base): back in.
        let c = cfg(&net.topo);
        net.hosts[3] = Liveness::new(&net.topo, 3, c, net.now, 1_000_000);
        net.alive[3] = true;
        for _ in 0..5 {
            net.round();
        }
        assert!(net.agree().is_empty());
        assert_eq!(net.path(0, 1), ["h1", "h3", "h4", "h2"]);
    }

    #[test]
    fn a_ring_of_120_hosts_agrees_with_reports_in_turn() {
        // 120 reports do not fit one hello: the empty ones take turns.
        let mut net = Net::new(ring(120));
        for _ in 0..10 {
            net.round();
        }
        // Between two hosts whose reports sort last: without the turns,
        // their empty reports after the mend would never be relayed.
        net.cut.push((108, 109));
        for _ in 0..80 {
            net.round();
        }
        assert_eq!(net.agree(), ["h109-h110"]);
        assert!(
            net.hosts.iter().any(|l| l.counts.reports_left_out > 0),
            "the reports all fitted"
        );
        net.cut.clear();
        for _ in 0..200 {
            net.round();
        }
        assert!(net.agree().is_empty());
    }

    #[test]
    fn a_forged_report_is_refuted_by_the_host_it_names() {
        // Someone with h2's address tells h3 that h1 lost h3, at a number
        // ahead of h1's (within the window). h3 takes it and floods it;
        // h1 is never sent its own report while it is the one h1 told,
        // so only the send-back of a differing one brings it to h1.
        let mut net = Net::new(triangle());
        for _ in 0..5 {
            net.round();
        }
        let (seq, _) = net.report_of(0, 0).unwrap();
        let forged = |seq| Report {
            origin: ip("198.18.0.1"),
            seq,
            down: vec![ip("198.18.0.3")],
        };
        net.forge(1, 2, forged(seq + 1_000_000));
        assert_eq!(net.hosts[2].link_names_down(), ["h1-h3"]);
        for _ in 0..5 {
            net.round();
        }
        assert!(net.agree().is_empty());
        net.all_hold_report_of(0);
        assert!(net.report_of(0, 0).unwrap().0 > seq + 1_000_000);
        assert_eq!(net.hosts[0].counts.reports_refuted, 1);
        assert_eq!(net.path(1, 0), ["h2", "h3", "h1"]);
        // The same number as h1's, another list: the greater list wins
        // the tie everywhere, and h1, told it, refutes it as well.
        let (seq, _) = net.report_of(0, 0).unwrap();
        net.forge(1, 2, forged(seq));
        assert_eq!(net.hosts[2].link_names_down(), ["h1-h3"]);
        for _ in 0..5 {
            net.round();
        }
        assert!(net.agree().is_empty());
        net.all_hold_report_of(0);
        assert_eq!(net.hosts[0].counts.reports_refuted, 2);
        // Quiet again: no host's number moves any more.
        let before: Vec<_> = (0..3).map(|i| net.report_of(i, i)).collect();
        for _ in 0..5 {
            net.round();
        }
        let after: Vec<_> = (0..3).map(|i| net.report_of(i, i)).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn a_forged_report_is_refuted_across_a_ring_of_120_hosts() {
        // h3 is two hops from h1; the forged report says h1 lost h2, and
        // reaches h1 only through h2, which holds it and is told another.
        let mut net = Net::new(ring(120));
        for _ in 0..10 {
            net.round();
        }
        let (seq, _) = net.report_of(0, 0).unwrap();
        net.forge(
            3,
            2,
            Report {
                origin: net.topo.hosts[0].underlay,
                seq: seq + 1,
                down: vec![net.topo.hosts[1].underlay],
            },
        );
        assert_eq!(net.hosts[2].link_names_down(), ["h1-h2"]);
        for _ in 0..80 {
            net.round();
        }
        assert!(net.agree().is_empty());
        net.all_hold_report_of(0);
        assert_eq!(net.hosts[0].counts.reports_refuted, 1);
    }

    impl Net {
        /// Every host reloaded (as on SIGHUP) with the key file `text`,
        /// one at a time with a round between.
        fn rekey(&mut self, hosts: &[usize], text: &str) {
            for &i in hosts {
                let c = cfg(&self.topo);
                let l = self.hosts[i].reload(&self.topo, i, c, self.now);
                self.hosts[i] = l.with_keys(Some(keys(text)));
                self.round();
            }
        }

        fn sum(&self, f: impl Fn(&HelloCounts) -> u64) -> u64 {
            self.hosts.iter().map(|l| f(&l.counts)).sum()
        }
    }

    fn keyed(topo: Topology, text: &str) -> Net {
        let mut net = Net::new(topo);
        for l in &mut net.hosts {
            *l = l.clone().with_keys(Some(keys(text)));
        }
        net
    }

    #[test]
    fn an_authenticated_network_agrees_and_takes_no_forgery() {
        let mut net = keyed(triangle(), &format!("1 {KEY1}"));
        for _ in 0..5 {
            net.round();
        }
        assert!(net.agree().is_empty());
        assert!(net.sum(|c| c.received) >= 24);
        // A forged report about h1 at h3, without a MAC or with a key
        // the forger made up: ignored and counted, nothing changes.
        let forged = Hello {
            vni: 42,
            hears_you: true,
            reports: vec![Report {
                origin: ip("198.18.0.1"),
                seq: u64::from(u32::MAX),
                down: vec![ip("198.18.0.3")],
            }],
        };
        let (h2, h3) = (ip("198.18.0.2"), ip("198.18.0.3"));
        let now = net.now;
        assert_eq!(
            net.hosts[2].on_datagram(now, h2, &forged.encode().0),
            Err(BadHello::Unauthenticated)
        );
        let made_up = keys(&format!("1 {KEY2}"));
        assert_eq!(
            net.hosts[2].on_datagram(
                now,
                h2,
                &forged.seal(made_up.active(), now + 1_000, h2, h3).0
            ),
            Err(BadHello::BadMac)
        );
        // A hello h2 really sent h3, captured and sent again later.
        let (_, _, captured) = net
            .mail
            .iter()
            .find(|(to, from, _)| *to == 2 && *from == h2)
            .cloned()
            .unwrap();
        net.round();
        let now = net.now;
        assert_eq!(
            net.hosts[2].on_datagram(now, h2, &captured),
            Err(BadHello::Replayed)
        );
        assert!(net.hosts[2].links_down().is_empty());
        assert_eq!(net.hosts[0].counts.reports_refuted, 0);
        // Liveness works as without keys.
        net.cut.push((0, 2));
        for _ in 0..6 {
            net.round();
        }
        assert_eq!(net.agree(), ["h1-h3"]);
        net.cut.clear();
        for _ in 0..4 {
            net.round();
        }
        assert!(net.agree().is_empty());
        assert_eq!(
            (
                net.sum(|c| c.unauthenticated),
                net.sum(|c| c.bad_mac),
                net.sum(|c| c.replayed)
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn keys_rotate_host_by_host_without_a_link_going_down() {
        let all = [0, 1, 2];
        let mut net = keyed(triangle(), &format!("1 {KEY1}"));
        for _ in 0..5 {
            net.round();
        }
        // 1. The new key on every host, still signing with the old one.
        net.rekey(&all, &format!("1 {KEY1} active\n2 {KEY2}"));
        // 2. Every host signs with the new one.
        net.rekey(&all, &format!("1 {KEY1}\n2 {KEY2} active"));
        // 3. The old one goes.
        net.rekey(&all, &format!("2 {KEY2}"));
        for _ in 0..5 {
            net.round();
        }
        assert!(net.agree().is_empty());
        assert!(net.hosts.iter().all(|l| l.keys().unwrap().ids() == [2]));
        let refused = |c: &HelloCounts| c.unknown_key + c.bad_mac + c.replayed + c.unauthenticated;
        assert_eq!(net.sum(refused), 0);
        // Out of order: h3 signs with a key the others do not hold yet.
        // Its hellos are refused, and its links go down.
        net.strict = false;
        net.rekey(&[2], &format!("2 {KEY2}\n3 {KEY1} active"));
        for _ in 0..4 {
            net.round();
        }
        assert!(net.sum(|c| c.unknown_key) > 0);
        assert_eq!(net.agree(), ["h1-h3", "h2-h3"]);
    }

    #[test]
    fn reload_keeps_the_clock_estimate() {
        // An hour after start, a host restarts and its reports start at
        // its clock: a reload here must not take our clock for the start.
        const BASE: u64 = 1_700_000_000 * 1_000_000_000;
        const HOUR: u64 = 3_600_000 * MS;
        let t = triangle();
        let l = Liveness::new(&t, 0, cfg(&t), 0, BASE);
        let mut l = l.reload(&t, 0, cfg(&t), HOUR);
        let restarted = Hello {
            reports: vec![Report {
                origin: ip("198.18.0.3"),
                seq: BASE + HOUR,
                down: vec![ip("198.18.0.2")],
            }],
            ..hello(true)
        };
        assert_eq!(l.on_hello(HOUR, ip("198.18.0.2"), &restarted), Ok(true));
        assert_eq!(l.counts.reports_ahead, 0);
    }

    #[test]
    fn reports_from_far_in_the_future_are_ignored() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0, 1_000);
        let forged = Hello {
            reports: vec![Report {
                origin: ip("198.18.0.3"),
                seq: u64::MAX,
                down: vec![ip("198.18.0.2")],
            }],
            ..hello(true)
        };
        assert_eq!(l.on_hello(1, ip("198.18.0.2"), &forged), Ok(false));
        assert!(l.links_down().is_empty());
        assert_eq!(l.counts.reports_ahead, 1);
    }

    #[test]
    fn routes_avoid_a_dead_transit_and_return() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0, 1);
        assert_eq!(next_hops(&l.live_topology(&t), 0, "198.19.2.0/24"), ["h3"]);
        l.on_hello(100 * MS, ip("198.18.0.2"), &hello(true))
            .unwrap();
        assert!(l.on_tick(301 * MS));
        let live = l.live_topology(&t);
        // Only our own link to h3 is gone; h3 - h2 stays in the graph.
        assert_eq!(live.links.len(), 2);
        assert_eq!(next_hops(&live, 0, "198.19.2.0/24"), ["h2"]);
        assert_eq!(next_hops(&live, 0, "198.19.3.0/24"), ["h2"]);
        l.on_hello(320 * MS, ip("198.18.0.3"), &hello(true))
            .unwrap();
        assert_eq!(next_hops(&l.live_topology(&t), 0, "198.19.2.0/24"), ["h3"]);
    }

    #[test]
    fn reload_keeps_the_state_of_known_neighbours() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0, 1);
        assert!(l.on_tick(301 * MS));
        assert_eq!(l.down().len(), 2);
        // The same file with h3 renamed: same address, same state; h2 too.
        let mut t2 = t.clone();
        t2.hosts[2].name = "h3b".into();
        for link in &mut t2.links {
            for end in [&mut link.a, &mut link.b] {
                if end == "h3" {
                    *end = "h3b".into();
                }
            }
        }
        let mut l2 = l.reload(&t2, 0, cfg(&t2), 400 * MS);
        assert_eq!(l2.down(), vec!["h3b".to_string(), "h2".to_string()]);
        assert!(l2.hellos(400 * MS)[0].1.reports[0].seq > l.hellos(400 * MS)[0].1.reports[0].seq);
        // A neighbour that was not one before starts up.
        let mut t3 = t.clone();
        t3.hosts[1].underlay = ip("198.18.0.22");
        let l3 = l.reload(&t3, 0, cfg(&t3), 400 * MS);
        assert_eq!(l3.down(), vec!["h3".to_string()]);
    }
}
