//! pcap/pcapng port: receives from a capture file and transmits into one.
//!
//! Replay feeds the real pipeline from captures through this port, so the
//! golden tests exercise exactly the code that runs on the wire. Input is read
//! whole at open (captures are test-sized); output is written as classic pcap
//! with nanosecond timestamps, created on the first transmitted frame so that
//! a port that sent nothing leaves no file.
//!
//! Link types: NIC and veth ports carry Ethernet (DLT 1); TUN ports carry raw
//! IP (DLT 101 on output; DLT 101, 228 and 229 accepted on input). A frame of
//! another link type is refused with a clear error rather than fed in as
//! garbage.
//!
//! The reader is our own walk over the file's bytes, not a library's, because
//! every record must come out with its true time and every refusal must say
//! where it is:
//! - classic pcap in both byte orders, with microsecond (magic `a1b2c3d4`)
//!   or nanosecond (magic `a1b23c4d`) timestamps;
//! - pcapng with any number of sections and interfaces, each interface's
//!   timestamps scaled by its `if_tsresol` (10^-6 when absent; a power of 2
//!   when the high bit is set) and shifted by its `if_tsoffset` seconds;
//!   Enhanced, Simple and the obsolete Packet Blocks carry frames. A Simple
//!   Packet Block has no timestamp: it takes the time of the frame before it
//!   in the file (zero for the first). Blocks that carry no frames (name
//!   resolution, interface statistics, decryption secrets, custom, journal)
//!   are skipped; blocks of a type the format does not define are skipped
//!   and counted ([`Capture::unknown_blocks`]) so that no frame vanishes
//!   unsaid.
//!
//! Every error names the file, the port and the place: the file header,
//! frame N (numbered from 1 as capture tools number them, with its byte
//! offset), or a block that carries no frame. A record longer than a packet
//! buffer is no error: it is read and then dropped as `frame_too_long`, as a
//! NIC drops what exceeds its MTU.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

use super::{Batch, LinkType, Port, BATCH_SIZE, MAX_FRAME};

/// One captured frame and its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub ts: Duration,
    pub data: Vec<u8>,
}

/// Where in a capture a problem lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The pcap file header or the pcapng magic.
    FileHeader,
    /// Frame `n` (from 1), whose record or block starts at byte `offset`.
    Frame { n: u64, offset: usize },
    /// A pcapng block that carries no frame, at byte `offset`, after
    /// `after` frames.
    Block { offset: usize, after: u64 },
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Position::FileHeader => write!(f, "file header"),
            Position::Frame { n, offset } => write!(f, "frame {n} (byte {offset})"),
            Position::Block { offset, after: 0 } => {
                write!(f, "block at byte {offset} (before the first frame)")
            }
            Position::Block { offset, after } => {
                write!(f, "block at byte {offset} (after frame {after})")
            }
        }
    }
}

/// Errors opening or reading a capture. Each names the file and the port.
#[derive(Debug, thiserror::Error)]
pub enum PcapPortError {
    #[error("{path}: port {port}: {source}")]
    Io {
        path: PathBuf,
        port: String,
        source: io::Error,
    },
    #[error("{path}: port {port}: {at}: {what}")]
    Format {
        path: PathBuf,
        port: String,
        at: Position,
        what: String,
    },
    #[error(
        "{path}: port {port}: {at}: link type {found} ({name:?}) does not fit the port \
         ({carries} frames expected)",
        name = DataLink::from(*.found),
        carries = match .want { LinkType::Ethernet => "Ethernet", LinkType::RawIp => "raw IP" },
    )]
    LinkType {
        path: PathBuf,
        port: String,
        at: Position,
        found: u32,
        want: LinkType,
    },
}

fn accepts(want: LinkType, found: u32) -> bool {
    match want {
        LinkType::Ethernet => found == 1,
        // LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6.
        LinkType::RawIp => matches!(found, 101 | 228 | 229),
    }
}

/// Reads every frame of a pcap or pcapng file, checking its link type
/// against what port `port` carries.
pub fn read_capture(path: &Path, port: &str, want: LinkType) -> Result<Vec<Frame>, PcapPortError> {
    Capture::read(path, port, want).map(|c| c.frames)
}

/// What a capture file holds for replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// The frames, in file order.
    pub frames: Vec<Frame>,
    /// pcapng blocks of a type the format does not define, skipped.
    pub unknown_blocks: u64,
}

impl Capture {
    /// Reads the capture at `path` for port `port`, which carries `want`.
    pub fn read(path: &Path, port: &str, want: LinkType) -> Result<Capture, PcapPortError> {
        let bytes = std::fs::read(path).map_err(|source| PcapPortError::Io {
            path: path.to_owned(),
            port: port.to_owned(),
            source,
        })?;
        Self::parse(&bytes, path, port, want)
    }

    /// Parses the bytes of a capture; `path` and `port` only name it in
    /// errors.
    pub fn parse(
        bytes: &[u8],
        path: &Path,
        port: &str,
        want: LinkType,
    ) -> Result<Capture, PcapPortError> {
        let r = Reader {
            bytes,
            path,
            port,
            want,
        };
        match bytes.get(..4) {
            Some([0x0a, 0x0d, 0x0d, 0x0a]) => r.pcapng(),
            Some(_) => r.pcap(),
            None => Err(r.err(
                Position::FileHeader,
                format!(
                    "{} bytes: too short for a pcap or pcapng file header",
                    bytes.len()
                ),
            )),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Endian {
    Little,
    Big,
}

impl Endian {
    /// Reads the integer at `b[off..]`; the caller has checked the length.
    fn u16(self, b: &[u8], off: usize) -> u16 {
        let a = [b[off], b[off + 1]];
        match self {
            Endian::Little => u16::from_le_bytes(a),
            Endian::Big => u16::from_be_bytes(a),
        }
    }

    fn u32(self, b: &[u8], off: usize) -> u32 {
        let a = [b[off], b[off + 1], b[off + 2], b[off + 3]];
        match self {
            Endian::Little => u32::from_le_bytes(a),
            Endian::Big => u32::from_be_bytes(a),
        }
    }

    fn u64(self, b: &[u8], off: usize) -> u64 {
        let (hi, lo) = match self {
            Endian::Little => (self.u32(b, off + 4), self.u32(b, off)),
            Endian::Big => (self.u32(b, off), self.u32(b, off + 4)),
        };
        (u64::from(hi) << 32) | u64::from(lo)
    }
}

/// pcapng block types (the pcapng specification, section 10.1).
mod block {
    pub const SECTION_HEADER: u32 = 0x0a0d_0d0a;
    pub const INTERFACE_DESCRIPTION: u32 = 1;
    pub const PACKET: u32 = 2;
    pub const SIMPLE_PACKET: u32 = 3;
    pub const NAME_RESOLUTION: u32 = 4;
    pub const INTERFACE_STATISTICS: u32 = 5;
    pub const ENHANCED_PACKET: u32 = 6;
    pub const SYSTEMD_JOURNAL: u32 = 9;
    pub const DECRYPTION_SECRETS: u32 = 0x0a;
    pub const CUSTOM: u32 = 0x0bad;
    pub const CUSTOM_NO_COPY: u32 = 0x4000_0bad;
}

/// How an interface's timestamps become time: units of 10^-e or 2^-e
/// seconds, plus an offset in seconds.
#[derive(Debug, Clone, Copy)]
struct Clock {
    /// Units per second.
    per_sec: u128,
    offset_s: i64,
}

impl Clock {
    /// The `if_tsresol` default: microseconds.
    const DEFAULT: Clock = Clock {
        per_sec: 1_000_000,
        offset_s: 0,
    };

    /// The time of `units` ticks, at nanosecond precision (finer
    /// resolutions are truncated); `None` when it falls before 1970 or
    /// after 2106 (classic pcap's range).
    fn time(self, units: u64) -> Option<Duration> {
        const NS: i128 = 1_000_000_000;
        // units < 2^64 and 10^9 < 2^30: the product fits in 94 bits.
        let ns = (u128::from(units) * NS as u128) / self.per_sec;
        let ns = i128::try_from(ns).ok()? + i128::from(self.offset_s) * NS;
        if ns < 0 {
            return None;
        }
        // Output is classic pcap, whose seconds are 32 bits.
        let secs = u32::try_from(ns / NS).ok()?;
        Some(Duration::new(u64::from(secs), (ns % NS) as u32))
    }
}

/// What replay needs of an Interface Description Block.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link_type: u32,
    snaplen: u32,
    clock: Clock,
}

/// One pass over a capture's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    path: &'a Path,
    port: &'a str,
    want: LinkType,
}

impl Reader<'_> {
    fn err(&self, at: Position, what: String) -> PcapPortError {
        PcapPortError::Format {
            path: self.path.to_owned(),
            port: self.port.to_owned(),
            at,
            what,
        }
    }

    fn check_link(&self, at: Position, found: u32) -> Result<(), PcapPortError> {
        if accepts(self.want, found) {
            return Ok(());
        }
        Err(PcapPortError::LinkType {
            path: self.path.to_owned(),
            port: self.port.to_owned(),
            at,
            found,
            want: self.want,
        })
    }

    /// Classic pcap: a 24-byte header, then 16-byte record headers each
    /// followed by the captured bytes.
    fn pcap(&self) -> Result<Capture, PcapPortError> {
        let b = self.bytes;
        let head = Position::FileHeader;
        let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let (e, frac_per_sec, nanos_per_frac) = match magic {
            0xa1b2_c3d4 => (Endian::Little, 1_000_000, 1_000),
            0xa1b2_3c4d => (Endian::Little, 1_000_000_000, 1),
            0xd4c3_b2a1 => (Endian::Big, 1_000_000, 1_000),
            0x4d3c_b2a1 => (Endian::Big, 1_000_000_000, 1),
            _ => {
                return Err(self.err(
                    head,
                    format!(
                        "magic {:02x}{:02x}{:02x}{:02x} is neither pcap (a1b2c3d4 or \
                         a1b23c4d, either byte order) nor pcapng (0a0d0d0a)",
                        b[0], b[1], b[2], b[3]
                    ),
                ))
            }
        };
        if b.len() < 24 {
            return Err(self.err(
                head,
                format!("pcap header cut short: {} of 24 bytes", b.len()),
            ));
        }
        let major = e.u16(b, 4);
        if major != 2 {
            return Err(self.err(
                head,
                format!(
                    "pcap version {major}.{} is not supported (2.x expected)",
                    e.u16(b, 6)
                ),
            ));
        }
        // The whole 32-bit field: a frame check sequence flag in the upper
        // bits would change what the frames hold, so it is refused too.
        self.check_link(head, e.u32(b, 20))?;
        let mut frames = Vec::new();
        let mut off = 24;
        while off < b.len() {
            let at = Position::Frame {
                n: frames.len() as u64 + 1,
                offset: off,
            };
            let rest = &b[off..];
            if rest.len() < 16 {
                return Err(self.err(
                    at,
                    format!("record header cut short: {} of 16 bytes", rest.len()),
                ));
            }
            let (secs, frac, incl) = (e.u32(rest, 0), e.u32(rest, 4), e.u32(rest, 8));
            if frac >= frac_per_sec {
                return Err(self.err(
                    at,
                    format!("timestamp fraction {frac} is not below {frac_per_sec}"),
                ));
            }
            let data = rest
                .get(16..)
                .and_then(|r| r.get(..incl as usize))
                .ok_or_else(|| {
                    self.err(
                        at,
                        format!(
                            "{incl}-byte record runs past the end of the file ({} bytes left)",
                            rest.len() - 16
                        ),
                    )
                })?;
            frames.push(Frame {
                ts: Duration::new(u64::from(secs), frac * nanos_per_frac),
                data: data.to_vec(),
            });
            off += 16 + data.len();
        }
        Ok(Capture {
            frames,
            unknown_blocks: 0,
        })
    }

    /// pcapng: a sequence of blocks (type, length, body, length), each
    /// section opened by a Section Header Block that sets the byte order
    /// and forgets the interfaces of the section before.
    fn pcapng(&self) -> Result<Capture, PcapPortError> {
        let b = self.bytes;
        let mut cap = Capture::default();
        let mut e = Endian::Little;
        let mut ifaces: Vec<Interface> = Vec::new();
        let mut off = 0;
        while off < b.len() {
            let rest = &b[off..];
            let next_frame = cap.frames.len() as u64 + 1;
            let frame_at = Position::Frame {
                n: next_frame,
                offset: off,
            };
            let block_at = Position::Block {
                offset: off,
                after: cap.frames.len() as u64,
            };
            if rest.len() < 12 {
                return Err(self.err(
                    block_at,
                    format!("block cut short: {} bytes, 12 at least", rest.len()),
                ));
            }
            let shb = rest[..4] == [0x0a, 0x0d, 0x0d, 0x0a];
            if shb {
                e = match [rest[8], rest[9], rest[10], rest[11]] {
                    [0x1a, 0x2b, 0x3c, 0x4d] => Endian::Big,
                    [0x4d, 0x3c, 0x2b, 0x1a] => Endian::Little,
                    [a, b2, c, d] => {
                        let at = if off == 0 {
                            Position::FileHeader
                        } else {
                            block_at
                        };
                        return Err(self.err(
                            at,
                            format!(
                                "section header byte-order magic {a:02x}{b2:02x}{c:02x}{d:02x} \
                                 is not 1a2b3c4d in either byte order"
                            ),
                        ));
                    }
                };
            }
            let kind = e.u32(rest, 0);
            let at = match kind {
                block::ENHANCED_PACKET | block::PACKET | block::SIMPLE_PACKET => frame_at,
                _ if off == 0 => Position::FileHeader,
                _ => block_at,
            };
            let len = e.u32(rest, 4) as usize;
            if len < 12 || len % 4 != 0 {
                return Err(self.err(
                    at,
                    format!("block length {len} is not a multiple of 4 of at least 12"),
                ));
            }
            if len > rest.len() {
                return Err(self.err(
                    at,
                    format!(
                        "{len}-byte block runs past the end of the file ({} bytes left)",
                        rest.len()
                    ),
                ));
            }
            let trailer = e.u32(rest, len - 4) as usize;
            if trailer != len {
                return Err(self.err(
                    at,
                    format!("block length {len} at the start but {trailer} at the end"),
                ));
            }
            let body = &rest[8..len - 4];
            match kind {
                block::SECTION_HEADER => {
                    if body.len() < 16 {
                        return Err(self.err(
                            at,
                            format!("section header body of {} bytes, 16 at least", body.len()),
                        ));
                    }
                    let major = e.u16(body, 4);
                    if major != 1 {
                        return Err(self.err(
                            at,
                            format!(
                                "pcapng version {major}.{} is not supported (1.x expected)",
                                e.u16(body, 6)
                            ),
                        ));
                    }
                    ifaces.clear();
                }
                block::INTERFACE_DESCRIPTION => {
                    let i = self.interface(e, body).map_err(|what| {
                        self.err(
                            at,
                            format!("interface description {}: {what}", ifaces.len()),
                        )
                    })?;
                    ifaces.push(i);
                }
                block::ENHANCED_PACKET | block::PACKET => {
                    let name = if kind == block::PACKET {
                        "packet block"
                    } else {
                        "enhanced packet block"
                    };
                    if body.len() < 20 {
                        return Err(self.err(
                            at,
                            format!("{name} body of {} bytes, 20 at least", body.len()),
                        ));
                    }
                    // The obsolete Packet Block splits the Enhanced Packet
                    // Block's 32-bit interface ID into a 16-bit ID and a
                    // 16-bit drop count; the rest is laid out alike.
                    let id = if kind == block::PACKET {
                        u32::from(e.u16(body, 0))
                    } else {
                        e.u32(body, 0)
                    };
                    let iface = self.iface_of(&ifaces, id, at, name)?;
                    let units = (u64::from(e.u32(body, 4)) << 32) | u64::from(e.u32(body, 8));
                    let caplen = e.u32(body, 12) as usize;
                    let data = body[20..].get(..caplen).ok_or_else(|| {
                        self.err(
                            at,
                            format!(
                                "{name}: {caplen}-byte frame does not fit the block ({} bytes)",
                                body.len() - 20
                            ),
                        )
                    })?;
                    let ts = iface.clock.time(units).ok_or_else(|| {
                        self.err(
                            at,
                            format!(
                                "{name}: timestamp {units} of interface {id} (tsresol \
                                 1/{} s, offset {} s) is out of range",
                                iface.clock.per_sec, iface.clock.offset_s
                            ),
                        )
                    })?;
                    cap.frames.push(Frame {
                        ts,
                        data: data.to_vec(),
                    });
                }
                block::SIMPLE_PACKET => {
                    let name = "simple packet block";
                    let iface = self.iface_of(&ifaces, 0, at, name)?;
                    if body.len() < 4 {
                        return Err(self.err(
                            at,
                            format!("{name} body of {} bytes, 4 at least", body.len()),
                        ));
                    }
                    // Section 4.4: the captured length is the original
                    // length cut at interface 0's snaplen (0: no limit).
                    let orig = e.u32(body, 0) as usize;
                    let caplen = match iface.snaplen {
                        0 => orig,
                        s => orig.min(s as usize),
                    };
                    let data = body[4..].get(..caplen).ok_or_else(|| {
                        self.err(
                            at,
                            format!(
                                "{name}: {caplen}-byte frame does not fit the block ({} bytes)",
                                body.len() - 4
                            ),
                        )
                    })?;
                    // No timestamp in the block: it is not older than the
                    // frame before it.
                    let ts = cap.frames.last().map_or(Duration::ZERO, |f| f.ts);
                    cap.frames.push(Frame {
                        ts,
                        data: data.to_vec(),
                    });
                }
                block::NAME_RESOLUTION
                | block::INTERFACE_STATISTICS
                | block::SYSTEMD_JOURNAL
                | block::DECRYPTION_SECRETS
                | block::CUSTOM
                | block::CUSTOM_NO_COPY => {}
                _ => cap.unknown_blocks += 1,
            }
            off += len;
        }
        Ok(cap)
    }

    /// The interface a packet block names, with its link type checked.
    fn iface_of(
        &self,
        ifaces: &[Interface],
        id: u32,
        at: Position,
        name: &str,
    ) -> Result<Interface, PcapPortError> {
        let Some(iface) = ifaces.get(id as usize) else {
            let have = match ifaces.len() {
                0 => "no interface description precedes it in its section".to_owned(),
                1 => "its section describes only interface 0".to_owned(),
                n => format!("its section describes interfaces 0 to {}", n - 1),
            };
            return Err(self.err(at, format!("{name} names interface {id}, but {have}")));
        };
        self.check_link(at, iface.link_type)?;
        Ok(*iface)
    }

    /// Parses an Interface Description Block body: link type, snaplen and
    /// the options replay needs (section 4.2).
    fn interface(&self, e: Endian, body: &[u8]) -> Result<Interface, String> {
        if body.len() < 8 {
            return Err(format!("body of {} bytes, 8 at least", body.len()));
        }
        let mut iface = Interface {
            link_type: u32::from(e.u16(body, 0)),
            snaplen: e.u32(body, 4),
            clock: Clock::DEFAULT,
        };
        let (mut tsresol, mut tsoffset) = (None, None);
        let mut opts = &body[8..];
        while !opts.is_empty() {
            if opts.len() < 4 {
                return Err(format!(
                    "option header cut short: {} of 4 bytes",
                    opts.len()
                ));
            }
            let (code, len) = (e.u16(opts, 0), e.u16(opts, 2) as usize);
            if code == 0 {
                // opt_endofopt
                break;
            }
            let Some(value) = opts[4..].get(..len) else {
                return Err(format!(
                    "option {code}: {len}-byte value runs past the block ({} bytes left)",
                    opts.len() - 4
                ));
            };
            match code {
                9 => {
                    let [r] = value else {
                        return Err(format!("if_tsresol of {len} bytes, 1 expected"));
                    };
                    if tsresol.replace(*r).is_some() {
                        return Err("if_tsresol given twice".to_owned());
                    }
                }
                14 => {
                    if len != 8 {
                        return Err(format!("if_tsoffset of {len} bytes, 8 expected"));
                    }
                    if tsoffset.replace(e.u64(value, 0) as i64).is_some() {
                        return Err("if_tsoffset given twice".to_owned());
                    }
                }
                _ => {}
            }
            // Values are padded to 32 bits; the padding of the last one
            // may be missing.
            let padded = (4 + len + 3) & !3;
            opts = opts.get(padded..).unwrap_or(&[]);
        }
        if let Some(r) = tsresol {
            // "If the Most Significant Bit is equal to zero, the remaining
            // bits indicates the resolution of the timestamp as a negative
            // power of 10 [...]. If the Most Significant Bit is equal to
            // one, the remaining bits indicates the resolution as negative
            // power of 2."
            let exp = u32::from(r & 0x7f);
            let per_sec = if r & 0x80 == 0 {
                10u128.checked_pow(exp)
            } else {
                2u128.checked_pow(exp)
            };
            iface.clock.per_sec = per_sec.ok_or_else(|| {
                let base = if r & 0x80 == 0 { 10 } else { 2 };
                format!("if_tsresol {base}^-{exp} s is finer than replay can count")
            })?;
        }
        iface.clock.offset_s = tsoffset.unwrap_or(0);
        Ok(iface)
    }
}

/// A buffered file the pcap writer and the port share, so the port can flush
/// it (`PcapWriter` gives no access to its inner writer). Replay only: not on
/// a hot path, so the mutex costs nothing that matters.
#[derive(Clone)]
struct SharedFile(Arc<Mutex<BufWriter<File>>>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.lock()?.flush()
    }
}

impl SharedFile {
    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, BufWriter<File>>> {
        self.0
            .lock()
            .map_err(|_| io::Error::other("pcap output poisoned by an earlier panic"))
    }
}

fn open_writer(
    path: &Path,
    link_type: LinkType,
) -> io::Result<(PcapWriter<SharedFile>, SharedFile)> {
    let header = PcapHeader {
        datalink: match link_type {
            LinkType::Ethernet => DataLink::ETHERNET,
            LinkType::RawIp => DataLink::RAW,
        },
        ts_resolution: TsResolution::NanoSecond,
        snaplen: 65535,
        ..PcapHeader::default()
    };
    let file = SharedFile(Arc::new(Mutex::new(BufWriter::new(File::create(path)?))));
    let w = PcapWriter::with_header(file.clone(), header).map_err(io::Error::other)?;
    Ok((w, file))
}

/// A port whose receive side is a capture read into memory and whose
/// transmit side is a pcap file created on first use.
pub struct PcapPort {
    name: String,
    link_type: LinkType,
    input: std::vec::IntoIter<Frame>,
    out_path: Option<PathBuf>,
    writer: Option<PcapWriter<SharedFile>>,
    file: Option<SharedFile>,
    /// Timestamp written on transmitted frames: the replay driver sets it to
    /// the capture time of the batch being processed (the core has no clock).
    pub now: Duration,
    /// Frames read from the capture (oversize ones included).
    pub rx_packets: u64,
    /// Frames longer than a packet buffer ([`MAX_FRAME`]): counted and not
    /// received, as a NIC drops what exceeds its MTU.
    pub rx_oversize: u64,
    /// Frames written to the output capture.
    pub tx_packets: u64,
    /// pcapng blocks of an unknown type the input held (skipped).
    pub unknown_blocks: u64,
}

impl PcapPort {
    /// A port named `name` replaying `input` (if any) and writing what it
    /// transmits to `output` (if any; frames sent with no output are counted).
    pub fn new(
        name: &str,
        link_type: LinkType,
        input: Vec<Frame>,
        output: Option<PathBuf>,
    ) -> Self {
        PcapPort {
            name: name.to_owned(),
            link_type,
            input: input.into_iter(),
            out_path: output,
            writer: None,
            file: None,
            now: Duration::ZERO,
            rx_packets: 0,
            rx_oversize: 0,
            tx_packets: 0,
            unknown_blocks: 0,
        }
    }

    /// Opens `input` as a capture for a port of `link_type`.
    pub fn open(
        name: &str,
        link_type: LinkType,
        input: Option<&Path>,
        output: Option<PathBuf>,
    ) -> Result<Self, PcapPortError> {
        let cap = match input {
            Some(p) => Capture::read(p, name, link_type)?,
            None => Capture::default(),
        };
        let mut port = Self::new(name, link_type, cap.frames, output);
        port.unknown_blocks = cap.unknown_blocks;
        Ok(port)
    }

    /// Frames still waiting to be received.
    pub fn rx_pending(&self) -> usize {
        self.input.len()
    }

    /// Timestamp of the next frame to be received.
    pub fn next_ts(&self) -> Option<Duration> {
        self.input.as_slice().first().map(|f| f.ts)
    }
}

impl Port for PcapPort {
    fn name(&self) -> &str {
        &self.name
    }

    fn link_type(&self) -> LinkType {
        self.link_type
    }

    /// A burst holds frames of one timestamp only: frames captured at
    /// different times arrive in different bursts, as on a wire, so the
    /// pipeline's clock (which paces ICMP errors) and the output timestamps
    /// are exactly those of each frame. Oversize frames are counted and
    /// skipped within the burst's time; when every frame of that time is
    /// oversize the burst is empty, and the frames of later times come in
    /// the next bursts: [`PcapPort::next_ts`], not a return of 0, says
    /// whether the capture is exhausted.
    fn rx_burst(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let slots = batch.slots_mut();
        let mut n = 0;
        let ts = self.next_ts();
        while n < BATCH_SIZE && self.next_ts() == ts {
            let Some(frame) = self.input.next() else {
                break;
            };
            self.rx_packets += 1;
            if frame.data.len() > MAX_FRAME {
                self.rx_oversize += 1;
                continue;
            }
            slots[n].fill(&frame.data);
            // Saturating, as replay sets the pipeline's clock: a time past
            // 2554 (pcapng allows it) must not wrap to an early one.
            slots[n].ts_nanos = u64::try_from(frame.ts.as_nanos()).unwrap_or(u64::MAX);
            n += 1;
        }
        batch.set_len(n);
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        if let Some(path) = &self.out_path {
            let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
            if self.writer.is_none() {
                let (w, file) = open_writer(path, self.link_type).map_err(named)?;
                self.file = Some(file);
                self.writer = Some(w);
            }
            let w = self.writer.as_mut().expect("writer opened above");
            for f in frames {
                w.write_packet(&PcapPacket::new(self.now, f.len() as u32, f))
                    .map_err(|e| named(io::Error::other(e)))?;
            }
        }
        self.tx_packets += frames.len() as u64;
        Ok(frames.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match (self.file.as_mut(), &self.out_path) {
            (Some(f), Some(path)) => f
                .flush()
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_when_transmitting_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("c1.pcap");
        let mut p = PcapPort::new("c1", LinkType::RawIp, Vec::new(), Some(out.clone()));
        p.flush().unwrap();
        assert!(!out.exists());
        p.now = Duration::from_nanos(1_500_000_123);
        assert_eq!(p.tx_burst(&[&[0x45, 0, 0, 20], &[0x60]]).unwrap(), 2);
        p.flush().unwrap();
        drop(p);
        let back = read_capture(&out, "c1", LinkType::RawIp).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].data, vec![0x45, 0, 0, 20]);
        assert_eq!(back[0].ts, Duration::from_nanos(1_500_000_123));
        let err = read_capture(&out, "eth0", LinkType::Ethernet).unwrap_err();
        assert!(
            err.to_string()
                .contains("port eth0: file header: link type 101 (RAW) does not fit"),
            "{err}"
        );
    }

    #[test]
    fn rx_burst_batches_frames_of_one_time() {
        // 70 frames at 1 s, then 30 at 2 s, 3 s, ...
        let frames: Vec<Frame> = (0..100u64)
            .map(|i| Frame {
                ts: Duration::from_secs(if i < 70 { 1 } else { i }),
                data: vec![i as u8; 60],
            })
            .collect();
        let mut p = PcapPort::new("eth0", LinkType::Ethernet, frames, None);
        let mut b = Batch::new();
        assert_eq!(p.rx_burst(&mut b).unwrap(), BATCH_SIZE);
        assert_eq!(p.next_ts(), Some(Duration::from_secs(1)));
        assert_eq!(p.rx_burst(&mut b).unwrap(), 6);
        assert_eq!(b.pkts()[0].ts_nanos, 1_000_000_000);
        assert_eq!(p.next_ts(), Some(Duration::from_secs(70)));
        for i in 70..100u64 {
            assert_eq!(p.rx_burst(&mut b).unwrap(), 1);
            assert_eq!(b.pkts()[0].ts_nanos, i * 1_000_000_000);
        }
        assert_eq!(p.rx_burst(&mut b).unwrap(), 0);
        assert_eq!(p.rx_packets, 100);
    }

    #[test]
    fn rx_burst_counts_oversize_frames_and_goes_on() {
        let frames = vec![
            Frame {
                ts: Duration::ZERO,
                data: vec![0; MAX_FRAME + 1],
            },
            Frame {
                ts: Duration::ZERO,
                data: vec![1; 60],
            },
        ];
        let mut p = PcapPort::new("eth0", LinkType::Ethernet, frames, None);
        let mut b = Batch::new();
        assert_eq!(p.rx_burst(&mut b).unwrap(), 1);
        assert_eq!(b.pkts()[0].data(), &[1; 60]);
        assert_eq!((p.rx_packets, p.rx_oversize), (2, 1));
    }

    #[test]
    fn a_time_of_oversize_frames_only_gives_an_empty_burst_and_the_rest_follows() {
        let frame = |secs, len| Frame {
            ts: Duration::from_secs(secs),
            data: vec![7; len],
        };
        let frames = vec![frame(1, 60), frame(2, MAX_FRAME + 1), frame(3, 60)];
        let mut p = PcapPort::new("eth0", LinkType::Ethernet, frames, None);
        let mut b = Batch::new();
        assert_eq!(p.rx_burst(&mut b).unwrap(), 1);
        assert_eq!(p.next_ts(), Some(Duration::from_secs(2)));
        assert_eq!(p.rx_burst(&mut b).unwrap(), 0);
        assert_eq!(p.next_ts(), Some(Duration::from_secs(3)));
        assert_eq!(p.rx_burst(&mut b).unwrap(), 1);
        assert_eq!(b.pkts()[0].ts_nanos, 3_000_000_000);
        assert_eq!(p.next_ts(), None);
        assert_eq!((p.rx_packets, p.rx_oversize), (3, 1));
    }

    // ------------------------------------------------------------ reader

    /// A pcapng block of `kind` around `body` (padded), little-endian.
    fn blk(kind: u32, body: &[u8]) -> Vec<u8> {
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let len = (body.len() + 12) as u32;
        let mut v = kind.to_le_bytes().to_vec();
        v.extend(len.to_le_bytes());
        v.extend(body);
        v.extend(len.to_le_bytes());
        v
    }

    fn shb() -> Vec<u8> {
        let mut b = 0x1a2b_3c4du32.to_le_bytes().to_vec();
        b.extend(1u16.to_le_bytes());
        b.extend(0u16.to_le_bytes());
        b.extend((-1i64).to_le_bytes());
        blk(block::SECTION_HEADER, &b)
    }

    /// An IDB with the given raw options (code, value).
    fn idb(link: u16, opts: &[(u16, &[u8])]) -> Vec<u8> {
        let mut b = link.to_le_bytes().to_vec();
        b.extend([0, 0]);
        b.extend(0u32.to_le_bytes());
        for (code, v) in opts {
            b.extend(code.to_le_bytes());
            b.extend((v.len() as u16).to_le_bytes());
            b.extend(*v);
            b.resize(b.len().next_multiple_of(4), 0);
        }
        if !opts.is_empty() {
            b.extend([0; 4]);
        }
        blk(block::INTERFACE_DESCRIPTION, &b)
    }

    fn epb(iface: u32, units: u64, data: &[u8]) -> Vec<u8> {
        let mut b = iface.to_le_bytes().to_vec();
        b.extend(((units >> 32) as u32).to_le_bytes());
        b.extend((units as u32).to_le_bytes());
        b.extend((data.len() as u32).to_le_bytes());
        b.extend((data.len() as u32).to_le_bytes());
        b.extend(data);
        blk(block::ENHANCED_PACKET, &b)
    }

    fn parse(bytes: &[u8]) -> Result<Capture, PcapPortError> {
        Capture::parse(bytes, Path::new("t.pcapng"), "eth0", LinkType::Ethernet)
    }

    fn times(c: &Capture) -> Vec<Duration> {
        c.frames.iter().map(|f| f.ts).collect()
    }

    #[test]
    fn pcapng_timestamps_follow_each_interfaces_resolution_and_offset() {
        let f = [
            shb(),
            idb(1, &[]),                                       // 10^-6
            idb(1, &[(9, &[9])]),                              // 10^-9
            idb(1, &[(9, &[0x80 | 10])]),                      // 2^-10
            idb(1, &[(9, &[3]), (14, &100i64.to_le_bytes())]), // 10^-3, +100 s
            epb(0, 1_500_000, &[1]),
            epb(1, 1_500_000_001, &[2]),
            epb(2, 3 * 1024 + 512, &[3]),
            epb(3, 2_250, &[4]),
        ]
        .concat();
        let c = parse(&f).unwrap();
        assert_eq!(
            times(&c),
            [
                Duration::from_micros(1_500_000),
                Duration::from_nanos(1_500_000_001),
                Duration::from_millis(3_500),
                Duration::from_millis(102_250),
            ]
        );
        assert_eq!(c.unknown_blocks, 0);
    }

    #[test]
    fn pcapng_big_endian_and_a_second_section_reset_interfaces() {
        // A big-endian section with one Ethernet interface at 10^-9 s.
        let be = |kind: u32, body: &[u8]| {
            let len = (body.len() + 12) as u32;
            [
                &kind.to_be_bytes()[..],
                &len.to_be_bytes(),
                body,
                &len.to_be_bytes(),
            ]
            .concat()
        };
        let mut shb_be = 0x1a2b_3c4du32.to_be_bytes().to_vec();
        shb_be.extend([0, 1, 0, 0]);
        shb_be.extend([0xff; 8]);
        let idb_be = [
            &[0, 1, 0, 0, 0, 0, 0, 0][..],
            &[0, 9, 0, 1, 9, 0, 0, 0],
            &[0; 4],
        ]
        .concat();
        let mut epb_be = vec![0, 0, 0, 0, 0, 0, 0, 0];
        epb_be.extend(7u32.to_be_bytes());
        epb_be.extend(4u32.to_be_bytes());
        epb_be.extend(4u32.to_be_bytes());
        epb_be.extend([9, 9, 9, 9]);
        let f = [
            be(block::SECTION_HEADER, &shb_be),
            be(block::INTERFACE_DESCRIPTION, &idb_be),
            be(block::ENHANCED_PACKET, &epb_be),
            shb(),
            epb(1, 0, &[1]),
        ]
        .concat();
        let c = parse(&f[..f.len() - epb(1, 0, &[1]).len()]).unwrap();
        assert_eq!(times(&c), [Duration::from_nanos(7)]);
        assert_eq!(c.frames[0].data, [9, 9, 9, 9]);
        let e = parse(&f).unwrap_err().to_string();
        assert!(
            e.contains("frame 2 (byte")
                && e.contains("names interface 1, but no interface description precedes it"),
            "{e}"
        );
    }

    #[test]
    fn obsolete_and_simple_packet_blocks_carry_frames() {
        // Packet Block: interface 0 (16 bits), 2 drops, timestamp, lengths.
        let mut pb = 0u16.to_le_bytes().to_vec();
        pb.extend(2u16.to_le_bytes());
        pb.extend(0u32.to_le_bytes());
        pb.extend(5_000_000u32.to_le_bytes());
        pb.extend(3u32.to_le_bytes());
        pb.extend(3u32.to_le_bytes());
        pb.extend([7, 7, 7]);
        let mut spb = 2u32.to_le_bytes().to_vec();
        spb.extend([8, 8]);
        let f = [
            shb(),
            idb(1, &[]),
            blk(block::PACKET, &pb),
            blk(block::INTERFACE_STATISTICS, &[0; 12]),
            blk(0x1234, &[1, 2, 3, 4]),
            blk(block::SIMPLE_PACKET, &spb),
        ]
        .concat();
        let c = parse(&f).unwrap();
        assert_eq!(
            c.frames,
            [
                Frame {
                    ts: Duration::from_secs(5),
                    data: vec![7, 7, 7]
                },
                Frame {
                    ts: Duration::from_secs(5),
                    data: vec![8, 8]
                },
            ]
        );
        assert_eq!(c.unknown_blocks, 1);
    }

    #[test]
    fn nanosecond_and_big_endian_pcap() {
        let rec = |e: Endian, secs: u32, frac: u32, data: &[u8]| {
            let w = |v: u32| match e {
                Endian::Little => v.to_le_bytes(),
                Endian::Big => v.to_be_bytes(),
            };
            [
                &w(secs)[..],
                &w(frac),
                &w(data.len() as u32),
                &w(data.len() as u32),
                data,
            ]
            .concat()
        };
        let head = |magic: [u8; 4], e: Endian| {
            let mut h = magic.to_vec();
            let (v, l) = match e {
                Endian::Little => ([2, 0, 4, 0], 1u32.to_le_bytes()),
                Endian::Big => ([0, 2, 0, 4], 1u32.to_be_bytes()),
            };
            h.extend(v);
            h.extend([0; 8]);
            h.extend([0xff, 0xff, 0, 0]);
            h.extend(l);
            h
        };
        let ns_le = [
            head([0x4d, 0x3c, 0xb2, 0xa1], Endian::Little),
            rec(Endian::Little, 2, 5, &[1]),
        ]
        .concat();
        let us_be = [
            head([0xa1, 0xb2, 0xc3, 0xd4], Endian::Big),
            rec(Endian::Big, 2, 5, &[1]),
        ]
        .concat();
        assert_eq!(times(&parse(&ns_le).unwrap()), [Duration::new(2, 5)]);
        assert_eq!(times(&parse(&us_be).unwrap()), [Duration::new(2, 5_000)]);
        let bad = [
            head([0x4d, 0x3c, 0xb2, 0xa1], Endian::Little),
            rec(Endian::Little, 2, 1_000_000_000, &[1]),
        ]
        .concat();
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("frame 1 (byte 24): timestamp fraction"), "{e}");
    }

    #[test]
    fn errors_name_file_port_and_place() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2], "t.pcapng: port eth0: file header: 2 bytes: too short"),
            (vec![0; 24], "file header: magic 00000000 is neither pcap"),
            (
                [shb(), idb(1, &[]), epb(0, 0, &[1]), epb(0, 0, &[2])[..20].to_vec()].concat(),
                "frame 2 (byte 84): 36-byte block runs past the end of the file (20 bytes left)",
            ),
            (
                [shb(), epb(0, 0, &[1])].concat(),
                "frame 1 (byte 28): enhanced packet block names interface 0, but no interface",
            ),
            (
                [shb(), idb(101, &[]), epb(0, 0, &[1])].concat(),
                "frame 1 (byte 48): link type 101 (RAW) does not fit the port (Ethernet",
            ),
            (
                [shb(), idb(1, &[(9, &[0x7f])])].concat(),
                "block at byte 28 (before the first frame): interface description 0: if_tsresol 10^-127",
            ),
            (
                [shb(), idb(1, &[(9, &[6, 6])])].concat(),
                "interface description 0: if_tsresol of 2 bytes, 1 expected",
            ),
            (
                [shb(), idb(1, &[(14, &(-10i64).to_le_bytes())]), epb(0, 1, &[1])].concat(),
                "frame 1 (byte 64): enhanced packet block: timestamp 1 of interface 0",
            ),
        ];
        for (bytes, want) in cases {
            let e = parse(&bytes).unwrap_err().to_string();
            assert!(e.contains(want), "got {e:?}, want {want:?}");
            assert!(e.starts_with("t.pcapng: port eth0: "), "{e}");
        }
        // A complete record far larger than a packet buffer is read, not
        // refused: the port drops it as too long.
        let big = vec![0u8; 9 << 20];
        let c = parse(&[shb(), idb(1, &[]), epb(0, 0, &big)].concat()).unwrap();
        assert_eq!(c.frames[0].data.len(), 9 << 20);
    }

    /// A valid pcapng with every kind of block the reader knows.
    fn sample() -> Vec<u8> {
        let mut pb = 0u16.to_le_bytes().to_vec();
        pb.extend([0; 6]);
        pb.extend(9u32.to_le_bytes());
        pb.extend(2u32.to_le_bytes());
        pb.extend(2u32.to_le_bytes());
        pb.extend([5, 5]);
        [
            shb(),
            idb(1, &[(9, &[0x80 | 20]), (14, &7i64.to_le_bytes())]),
            epb(0, 1 << 20, &[1, 2, 3]),
            blk(block::PACKET, &pb),
            blk(block::SIMPLE_PACKET, &[3, 0, 0, 0, 4, 4, 4]),
            blk(block::NAME_RESOLUTION, &[0; 4]),
            blk(0x77, &[]),
            shb(),
            idb(1, &[]),
            epb(0, 3, &[6; 70]),
        ]
        .concat()
    }

    proptest::proptest! {
        /// Hostile bytes get a frame list or an error, never a panic, and
        /// never more frames than packet blocks.
        #[test]
        fn mutated_captures_never_panic(
            cut in 0usize..400,
            flips in proptest::collection::vec((0usize..400, proptest::prelude::any::<u8>()), 0..6),
            classic in proptest::prelude::any::<bool>(),
        ) {
            let mut f = if classic {
                let mut h = vec![0x4d, 0x3c, 0xb2, 0xa1, 2, 0, 4, 0];
                h.extend([0; 8]);
                h.extend(65535u32.to_le_bytes());
                h.extend(1u32.to_le_bytes());
                for i in 0..4u32 {
                    h.extend([i, i * 7, 3, 3].iter().flat_map(|v| v.to_le_bytes()));
                    h.extend([i as u8; 3]);
                }
                h
            } else {
                sample()
            };
            for (at, x) in flips {
                let n = f.len();
                f[at % n] ^= x;
            }
            f.truncate(cut.max(1));
            if let Ok(c) = parse(&f) {
                proptest::prop_assert!(c.frames.len() <= 4);
            }
        }
    }

    #[test]
    fn the_sample_reads_whole() {
        let c = parse(&sample()).unwrap();
        assert_eq!(
            times(&c),
            [
                Duration::from_secs(8),
                Duration::new(7, 8583), // 9 / 2^20 s, truncated to ns
                Duration::new(7, 8583),
                Duration::from_micros(3),
            ]
        );
        assert_eq!(c.unknown_blocks, 1);
    }
}
