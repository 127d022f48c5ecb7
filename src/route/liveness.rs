//! Neighbour liveness: hellos between the two ends of every link, and which
//! neighbours are up.
//!
//! Layer: sans-IO control plane. The control thread sends each neighbour a
//! [`Hello`] every interval (to its underlay address, on the liveness port),
//! feeds every datagram it receives to [`Liveness::on_hello`] and calls
//! [`Liveness::on_tick`]; both take the time as an argument and report
//! whether the set of neighbours that are down changed, and then the routes
//! are computed again over the links that are up ([`Liveness::live_topology`]).
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
//! What this sees: a host, its router or the underlay path to it going away.
//! What it does not: the hellos come from the control thread over the
//! kernel's UDP socket, so a wedged worker behind a live control thread
//! stays up; and only links that end here count (a failure further away is
//! handled by the hosts at its ends, whose routes change).

use std::net::IpAddr;

use crate::config::{LivenessConfig, Topology};

/// Bytes of a hello on the wire.
pub const HELLO_LEN: usize = 12;
const MAGIC: [u8; 4] = *b"VXRL";
const VERSION: u8 = 1;
/// Flag: the sender has heard us within its dead interval.
const F_HEARS_YOU: u8 = 0x01;

/// One hello: "I am here (and I hear you)", for one overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub vni: u32,
    pub hears_you: bool,
}

/// Why a datagram on the liveness port was not taken as a hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHello {
    /// Not a hello of ours: short, wrong magic or version.
    Malformed,
    /// A hello for another overlay (VNI).
    OtherVni,
    /// From an address that is no neighbour of ours.
    NotNeighbour,
}

impl Hello {
    /// `magic[4] version[1] flags[1] reserved[2] vni[4]`, big-endian.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut b = [0u8; HELLO_LEN];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = if self.hears_you { F_HEARS_YOU } else { 0 };
        b[8..12].copy_from_slice(&self.vni.to_be_bytes());
        b
    }

    /// Parses a hello; longer datagrams are accepted (a later version may
    /// append fields), unknown flags ignored.
    pub fn decode(b: &[u8]) -> Result<Hello, BadHello> {
        if b.len() < HELLO_LEN || b[..4] != MAGIC || b[4] != VERSION {
            return Err(BadHello::Malformed);
        }
        Ok(Hello {
            vni: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            hears_you: b[5] & F_HEARS_YOU != 0,
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
    /// Start of the grace before the first two-way hello (ns).
    since: u64,
    up: bool,
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

/// Hello counters (exported by the control thread).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HelloCounts {
    /// Hellos sent (counted by the sender of the datagrams).
    pub sent: u64,
    /// Hellos the kernel refused to send (no route, a full buffer).
    pub send_errors: u64,
    pub received: u64,
    pub malformed: u64,
    pub other_vni: u64,
    pub not_neighbour: u64,
}

/// The liveness of this host's neighbours.
#[derive(Debug, Clone)]
pub struct Liveness {
    cfg: LivenessConfig,
    vni: u32,
    neighbours: Vec<Neighbour>,
    pub counts: HelloCounts,
}

impl Liveness {
    /// The neighbours of `me` in `topo` (the far ends of its links), all up
    /// as of `now`.
    pub fn new(topo: &Topology, me: usize, cfg: LivenessConfig, now: u64) -> Liveness {
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
                    since: now,
                    up: true,
                });
            }
        }
        Liveness {
            cfg,
            vni: topo.overlay.vni,
            neighbours,
            counts: HelloCounts::default(),
        }
    }

    /// The same for a reloaded topology: a neighbour at the same underlay
    /// address keeps its state, a new one starts up as of `now`.
    pub fn reload(&self, topo: &Topology, me: usize, cfg: LivenessConfig, now: u64) -> Liveness {
        let mut next = Liveness::new(topo, me, cfg, now);
        for n in &mut next.neighbours {
            if let Some(old) = self.neighbours.iter().find(|o| o.addr == n.addr) {
                n.heard_at = old.heard_at;
                n.heard = old.heard;
                n.hears_us = old.hears_us;
                n.established = old.established;
                n.since = old.since;
                n.up = old.up;
            }
        }
        next.counts = self.counts;
        next
    }

    fn dead_interval(&self) -> u64 {
        u64::from(self.cfg.interval_ms) * u64::from(self.cfg.dead_after) * 1_000_000
    }

    /// Nanoseconds between hellos.
    pub fn interval_nanos(&self) -> u64 {
        u64::from(self.cfg.interval_ms) * 1_000_000
    }

    /// The port hellos go to.
    pub fn port(&self) -> u16 {
        self.cfg.port
    }

    /// What to send each neighbour now: its address and the hello.
    pub fn hellos(&self, now: u64) -> impl Iterator<Item = (IpAddr, Hello)> + '_ {
        let dead = self.dead_interval();
        self.neighbours.iter().map(move |n| {
            (
                n.addr,
                Hello {
                    vni: self.vni,
                    hears_you: n.heard && now.saturating_sub(n.heard_at) < dead,
                },
            )
        })
    }

    /// A datagram from `from` on the liveness port. Returns whether the
    /// set of neighbours that are down changed.
    pub fn on_datagram(&mut self, now: u64, from: IpAddr, data: &[u8]) -> Result<bool, BadHello> {
        let r = Hello::decode(data).and_then(|h| self.on_hello(now, from, h));
        match r {
            Ok(_) => self.counts.received += 1,
            Err(BadHello::Malformed) => self.counts.malformed += 1,
            Err(BadHello::OtherVni) => self.counts.other_vni += 1,
            Err(BadHello::NotNeighbour) => self.counts.not_neighbour += 1,
        }
        r
    }

    /// A decoded hello from `from`.
    pub fn on_hello(&mut self, now: u64, from: IpAddr, h: Hello) -> Result<bool, BadHello> {
        if h.vni != self.vni {
            return Err(BadHello::OtherVni);
        }
        let dead = self.dead_interval();
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
        Ok(was != n.up)
    }

    /// Marks down every neighbour not heard (two-way) within the dead
    /// interval. Returns whether anything changed.
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
        changed
    }

    /// Names of the neighbours that are down, in link order.
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

    /// `topo` without the links between `me` and the neighbours that are
    /// down: what the routes are computed over.
    pub fn live_topology(&self, topo: &Topology, me: usize) -> Topology {
        let down: Vec<usize> = self
            .neighbours
            .iter()
            .filter(|n| !n.up)
            .map(|n| n.host)
            .collect();
        let mut t = topo.clone();
        if down.is_empty() {
            return t;
        }
        t.links.retain(|l| {
            let a = topo.host_index(&l.a);
            let b = topo.host_index(&l.b);
            !matches!((a, b), (Some(a), Some(b))
                if (a == me && down.contains(&b)) || (b == me && down.contains(&a)))
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

    /// h1 - h3 - h2 at cost 5 + 5, and h1 - h2 direct at 20.
    fn triangle() -> Topology {
        let text = r#"[overlay]
vni = 42
liveness_interval_ms = 100
[[hosts]]
name = "h1"
underlay = "198.18.0.1"
subnets = ["198.19.1.0/24"]
[[hosts]]
name = "h2"
underlay = "198.18.0.2"
subnets = ["198.19.2.0/24"]
[[hosts]]
name = "h3"
underlay = "198.18.0.3"
subnets = ["198.19.3.0/24"]
[[links]]
a = "h1"
b = "h3"
cost = 5
[[links]]
a = "h3"
b = "h2"
cost = 5
[[links]]
a = "h1"
b = "h2"
cost = 20
"#;
        config::parse(text, "t.toml").expect("valid")
    }

    fn cfg(t: &Topology) -> LivenessConfig {
        t.overlay.liveness.expect("liveness on")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn next_hop_of(t: &Topology, me: usize, prefix: &str) -> Vec<String> {
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
        for h in [
            Hello {
                vni: 42,
                hears_you: true,
            },
            Hello {
                vni: 0xff_ffff,
                hears_you: false,
            },
        ] {
            assert_eq!(Hello::decode(&h.encode()), Ok(h));
        }
        let good = Hello {
            vni: 7,
            hears_you: true,
        }
        .encode();
        assert_eq!(Hello::decode(&good[..11]), Err(BadHello::Malformed));
        let mut bad = good;
        bad[0] = b'X';
        assert_eq!(Hello::decode(&bad), Err(BadHello::Malformed));
        let mut v2 = good;
        v2[4] = 2;
        assert_eq!(Hello::decode(&v2), Err(BadHello::Malformed));
        let mut longer = good.to_vec();
        longer.extend_from_slice(&[1, 2, 3]);
        assert!(Hello::decode(&longer).is_ok());
    }

    #[test]
    fn silent_neighbour_goes_down_and_comes_back_two_way() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0);
        assert_eq!(l.states(), vec![("h3".into(), true), ("h2".into(), true)]);
        // h2 keeps talking, h3 says nothing: down after 3 x 100 ms.
        let h2 = Hello {
            vni: 42,
            hears_you: true,
        };
        for k in 1..=2u64 {
            assert_eq!(l.on_hello(k * 100 * MS, ip("198.18.0.2"), h2), Ok(false));
            assert!(!l.on_tick(k * 100 * MS), "changed at {k}");
        }
        assert!(!l.on_tick(300 * MS - 1));
        assert_eq!(l.on_hello(300 * MS, ip("198.18.0.2"), h2), Ok(false));
        assert!(l.on_tick(300 * MS));
        assert_eq!(l.down(), vec!["h3".to_string()]);
        assert!(!l.on_tick(310 * MS), "a second report");
        // h3 talks again, but does not hear us yet: still down.
        let one_way = Hello {
            vni: 42,
            hears_you: false,
        };
        assert_eq!(l.on_hello(320 * MS, ip("198.18.0.3"), one_way), Ok(false));
        assert_eq!(l.down(), vec!["h3".to_string()]);
        // Our next hello to h3 says we hear it.
        let to_h3 = l
            .hellos(330 * MS)
            .find(|(a, _)| *a == ip("198.18.0.3"))
            .unwrap()
            .1;
        assert!(to_h3.hears_you);
        // It hears us: up.
        let two_way = Hello {
            vni: 42,
            hears_you: true,
        };
        assert_eq!(l.on_hello(340 * MS, ip("198.18.0.3"), two_way), Ok(true));
        assert!(l.down().is_empty());
        // One that says it no longer hears us goes down at once.
        assert_eq!(l.on_hello(350 * MS, ip("198.18.0.2"), one_way), Ok(true));
        assert_eq!(l.down(), vec!["h2".to_string()]);
    }

    #[test]
    fn start_up_one_way_hellos_do_not_flap() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0);
        let one_way = Hello {
            vni: 42,
            hears_you: false,
        };
        let two_way = Hello {
            vni: 42,
            hears_you: true,
        };
        // h2 starts with us: its first hello cannot hear us yet.
        assert_eq!(l.on_hello(10 * MS, ip("198.18.0.2"), one_way), Ok(false));
        assert_eq!(l.on_hello(110 * MS, ip("198.18.0.2"), two_way), Ok(false));
        assert!(l.down().is_empty());
        // A neighbour that only ever hears itself talk: down once the grace
        // is over, though its hellos keep coming.
        for k in 0..3u64 {
            l.on_hello(k * 100 * MS, ip("198.18.0.3"), one_way).unwrap();
        }
        assert_eq!(l.on_hello(300 * MS, ip("198.18.0.3"), one_way), Ok(true));
        assert_eq!(l.down(), vec!["h3".to_string()]);
        // Established h2 restarts: its hello no longer hears us, down at once.
        assert_eq!(l.on_hello(320 * MS, ip("198.18.0.2"), one_way), Ok(true));
        assert_eq!(l.on_hello(420 * MS, ip("198.18.0.2"), two_way), Ok(true));
        assert_eq!(l.down(), vec!["h3".to_string()]);
    }

    #[test]
    fn hellos_say_whom_we_hear() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0);
        // Never heard: we do not claim to hear them.
        assert!(l.hellos(0).all(|(_, h)| !h.hears_you && h.vni == 42));
        let h = Hello {
            vni: 42,
            hears_you: true,
        };
        l.on_hello(50 * MS, ip("198.18.0.2"), h).unwrap();
        let hears: Vec<_> = l.hellos(60 * MS).map(|(a, h)| (a, h.hears_you)).collect();
        assert_eq!(
            hears,
            vec![(ip("198.18.0.3"), false), (ip("198.18.0.2"), true)]
        );
        // Not heard for the dead interval: no longer.
        assert!(l.hellos(351 * MS).all(|(_, h)| !h.hears_you));
    }

    #[test]
    fn foreign_datagrams_are_counted_not_taken() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0);
        let h = Hello {
            vni: 42,
            hears_you: true,
        };
        assert_eq!(
            l.on_datagram(1, ip("198.18.0.9"), &h.encode()),
            Err(BadHello::NotNeighbour)
        );
        let other = Hello {
            vni: 43,
            hears_you: true,
        };
        assert_eq!(
            l.on_datagram(1, ip("198.18.0.2"), &other.encode()),
            Err(BadHello::OtherVni)
        );
        assert_eq!(
            l.on_datagram(1, ip("198.18.0.2"), b"hello"),
            Err(BadHello::Malformed)
        );
        assert_eq!(l.on_datagram(1, ip("198.18.0.2"), &h.encode()), Ok(false));
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
    fn routes_avoid_a_dead_transit_and_return() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0);
        assert_eq!(
            next_hop_of(&l.live_topology(&t, 0), 0, "198.19.2.0/24"),
            ["h3"]
        );
        let h = Hello {
            vni: 42,
            hears_you: true,
        };
        l.on_hello(100 * MS, ip("198.18.0.2"), h).unwrap();
        assert!(l.on_tick(301 * MS));
        let live = l.live_topology(&t, 0);
        // Only our own link to h3 is gone; h3 - h2 stays in the graph.
        assert_eq!(live.links.len(), 2);
        assert_eq!(next_hop_of(&live, 0, "198.19.2.0/24"), ["h2"]);
        assert_eq!(next_hop_of(&live, 0, "198.19.3.0/24"), ["h2"]);
        l.on_hello(320 * MS, ip("198.18.0.3"), h).unwrap();
        assert_eq!(
            next_hop_of(&l.live_topology(&t, 0), 0, "198.19.2.0/24"),
            ["h3"]
        );
    }

    #[test]
    fn reload_keeps_the_state_of_known_neighbours() {
        let t = triangle();
        let mut l = Liveness::new(&t, 0, cfg(&t), 0);
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
        let l2 = l.reload(&t2, 0, cfg(&t2), 400 * MS);
        assert_eq!(l2.down(), vec!["h3b".to_string(), "h2".to_string()]);
        // A neighbour that was not one before starts up.
        let mut t3 = t.clone();
        t3.hosts[1].underlay = ip("198.18.0.22");
        let l3 = l.reload(&t3, 0, cfg(&t3), 400 * MS);
        assert_eq!(l3.down(), vec!["h3".to_string()]);
    }
}
