//! pcap/pcapng port: receives from a capture file and transmits into one.
//!
//! Replay feeds the real pipeline from captures through this port, so the
//! golden tests exercise exactly the code that runs on the wire. Input is read
//! whole at open (captures are test-sized); output is written as classic pcap
//! with nanosecond timestamps, created on the first transmitted frame so that
//! a port that sent nothing leaves no file.
//!
//! Link types: NIC and veth ports carry Ethernet (DLT 1); TUN ports carry raw
//! IP (DLT 101 on output; DLT 101, 228 and 229 accepted on input). A capture of
//! another link type is refused at open with a clear error rather than fed in
//! as garbage.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};

use super::{Batch, LinkType, Port, BATCH_SIZE, MAX_FRAME};

/// One captured frame and its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub ts: Duration,
    pub data: Vec<u8>,
}

/// Errors opening or reading a capture.
#[derive(Debug, thiserror::Error)]
pub enum PcapPortError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: not a readable pcap or pcapng file: {source}")]
    Format {
        path: PathBuf,
        source: pcap_file::PcapError,
    },
    #[error("{path}: link type {found:?} does not fit port {port} ({want:?} frames expected)")]
    LinkType {
        path: PathBuf,
        port: String,
        found: DataLink,
        want: LinkType,
    },
}

fn accepts(want: LinkType, found: DataLink) -> bool {
    match want {
        LinkType::Ethernet => found == DataLink::ETHERNET,
        LinkType::RawIp => matches!(found, DataLink::RAW | DataLink::IPV4 | DataLink::IPV6),
    }
}

/// Reads every frame of a pcap or pcapng file, checking its link type
/// against what port `port` carries.
pub fn read_capture(path: &Path, port: &str, want: LinkType) -> Result<Vec<Frame>, PcapPortError> {
    let io_err = |source| PcapPortError::Io {
        path: path.to_owned(),
        source,
    };
    let fmt_err = |source| PcapPortError::Format {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| BufReader::new(f).read_to_end(&mut bytes))
        .map_err(io_err)?;
    let link_err = |found| PcapPortError::LinkType {
        path: path.to_owned(),
        port: port.to_owned(),
        found,
        want,
    };
    let mut frames = Vec::new();
    // pcapng starts with a Section Header Block of type 0x0A0D0D0A.
    if bytes.len() >= 4 && bytes[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut rd = PcapNgReader::new(&bytes[..]).map_err(fmt_err)?;
        while let Some(block) = rd.next_block() {
            let block = block.map_err(fmt_err)?;
            let (iface, ts, data) = match block {
                Block::EnhancedPacket(p) => (p.interface_id, p.timestamp, p.data.into_owned()),
                Block::SimplePacket(p) => (0, Duration::ZERO, p.data.into_owned()),
                _ => continue,
            };
            let found = rd
                .interfaces()
                .get(iface as usize)
                .map(|i| i.linktype)
                .unwrap_or(DataLink::Unknown(u32::MAX));
            if !accepts(want, found) {
                return Err(link_err(found));
            }
            frames.push(Frame { ts, data });
        }
    } else {
        let mut rd = PcapReader::new(&bytes[..]).map_err(fmt_err)?;
        let found = rd.header().datalink;
        if !accepts(want, found) {
            return Err(link_err(found));
        }
        let nanos_per_frac = match rd.header().ts_resolution {
            TsResolution::MicroSecond => 1_000,
            TsResolution::NanoSecond => 1,
        };
        // Raw records: `next_packet` refuses a record whose original length
        // exceeds the snapshot length, which is legal (a capture cut short).
        while let Some(pkt) = rd.next_raw_packet() {
            let pkt = pkt.map_err(fmt_err)?;
            frames.push(Frame {
                ts: Duration::new(pkt.ts_sec as u64, 0)
                    + Duration::from_nanos(pkt.ts_frac as u64 * nanos_per_frac),
                data: pkt.data.into_owned(),
            });
        }
    }
    Ok(frames)
}

/// Writes `frames` as a classic pcap file with nanosecond timestamps.
pub fn write_capture(path: &Path, link_type: LinkType, frames: &[Frame]) -> io::Result<()> {
    let (mut w, mut file) = open_writer(path, link_type)?;
    for f in frames {
        w.write_packet(&PcapPacket::new(f.ts, f.data.len() as u32, &f.data))
            .map_err(io::Error::other)?;
    }
    drop(w);
    file.flush()
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
        }
    }

    /// Opens `input` as a capture for a port of `link_type`.
    pub fn open(
        name: &str,
        link_type: LinkType,
        input: Option<&Path>,
        output: Option<PathBuf>,
    ) -> Result<Self, PcapPortError> {
        let frames = match input {
            Some(p) => read_capture(p, name, link_type)?,
            None => Vec::new(),
        };
        Ok(Self::new(name, link_type, frames, output))
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

    /// Returns 0 only when the capture is exhausted, even if every frame of
    /// a burst was oversize (the loop continues past them).
    fn rx_burst(&mut self, batch: &mut Batch) -> io::Result<usize> {
        let slots = batch.slots_mut();
        let mut n = 0;
        while n < BATCH_SIZE {
            let Some(frame) = self.input.next() else {
                break;
            };
            self.rx_packets += 1;
            if frame.data.len() > MAX_FRAME {
                self.rx_oversize += 1;
                continue;
            }
            slots[n].fill(&frame.data);
            slots[n].ts_nanos = frame.ts.as_nanos() as u64;
            n += 1;
        }
        batch.set_len(n);
        Ok(n)
    }

    fn tx_burst(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        if let Some(path) = &self.out_path {
            if self.writer.is_none() {
                let (w, file) = open_writer(path, self.link_type)?;
                self.file = Some(file);
                self.writer = Some(w);
            }
            let w = self.writer.as_mut().expect("writer opened above");
            for f in frames {
                w.write_packet(&PcapPacket::new(self.now, f.len() as u32, f))
                    .map_err(io::Error::other)?;
            }
        }
        self.tx_packets += frames.len() as u64;
        Ok(frames.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
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
        assert!(err.to_string().contains("does not fit port eth0"), "{err}");
    }

    #[test]
    fn rx_burst_batches_and_counts() {
        let frames: Vec<Frame> = (0..100u8)
            .map(|i| Frame {
                ts: Duration::from_secs(i as u64),
                data: vec![i; 60],
            })
            .collect();
        let mut p = PcapPort::new("eth0", LinkType::Ethernet, frames, None);
        let mut b = Batch::new();
        assert_eq!(p.rx_burst(&mut b).unwrap(), BATCH_SIZE);
        assert_eq!(p.next_ts(), Some(Duration::from_secs(64)));
        assert_eq!(p.rx_burst(&mut b).unwrap(), 36);
        assert_eq!(b.pkts()[0].ts_nanos, 64_000_000_000);
        assert_eq!(p.rx_burst(&mut b).unwrap(), 0);
        assert_eq!(p.rx_packets, 100);
    }
}
