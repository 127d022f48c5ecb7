//! Live tests of the underlay MTU: `vxrouter run` reads its NIC's MTU at
//! start and follows it.
//!
//! - A start whose overlay MTU cannot fit the NIC's MTU once encapsulated
//!   is refused, with a message naming the NIC, its MTU, the overlay MTU and
//!   the largest overlay MTU that fits, before any device is made.
//! - A NIC whose MTU shrinks while the router runs does not stop it: a ping
//!   with DF that no longer fits gets "fragmentation needed" (IPv6: "packet
//!   too big") naming the size that fits, smaller pings pass, and the log
//!   says what changed. When the MTU grows back, full-sized packets pass.
//!   Over the AF_XDP uplink and over the UDP uplink, whose MTU is also
//!   `nic`'s.
//!
//! Each test builds its own namespaces (prefixes `mt1-` to `mt3-`), writes its
//! own topology and uses addresses from 198.18.0.0/15 and 2001:2::/48 only.
//! The `Lab` guard stops the routers and deletes every namespace on exit,
//! also on panic. Traffic is bounded (ping -c with -W/-w). Needs root: the
//! tests fail under `CI=true` without it and print `SKIPPED: ...` elsewhere.
#![cfg(target_os = "linux")]

mod common;
#[macro_use]
mod live_support;

use std::time::{Duration, Instant};

use live_support::{forwarded, wait_for, Lab};

const H1_MAC: &str = "02:00:c6:12:00:01";
const H2_MAC: &str = "02:00:c6:12:00:02";
const H1_VTEP: &str = "02:00:c6:13:01:00";
const H2_VTEP: &str = "02:00:c6:13:02:00";

/// A `[[hosts]]` entry with one TUN container `c<n>` in namespace `netns`,
/// its uplink through AF_XDP or kernel UDP sockets (`io`).
fn host(name: &str, n: u8, underlay: &str, vtep: &str, netns: &str, io: &str) -> String {
    format!(
        r#"
[[hosts]]
name = "{name}"
underlay = "{underlay}"
vtep_mac = "{vtep}"
subnets = ["198.19.{n}.0/24", "2001:2:0:{n}::/64"]
nic = "eth0"
workers = [0]
uplink_io = "{io}"
  [[hosts.ports]]
  name = "c{n}"
  kind = "tun"
  netns = "{netns}"
  addresses = ["198.19.{n}.2/32", "2001:2:0:{n}::2/128"]
"#
    )
}

const LINK: &str = "\n[[links]]\na = \"h1\"\nb = \"h2\"\ncost = 10\n";

/// Two host namespaces joined by an underlay veth (MTU 1500 both ends).
fn two_hosts(lab: &mut Lab) -> (String, String) {
    let h1 = lab.ns("h1");
    let h2 = lab.ns("h2");
    lab.veth(&h1, "eth0", H1_MAC, &h2, "eth0", H2_MAC);
    for (h, a4, a6) in [
        (&h1, "198.18.0.1/24", "2001:2::1/64"),
        (&h2, "198.18.0.2/24", "2001:2::2/64"),
    ] {
        lab.ip(h, &["addr", "add", a4, "dev", "eth0"]);
        lab.ip(h, &["addr", "add", a6, "dev", "eth0", "nodad"]);
        assert!(
            lab.ip(h, &["link", "show", "eth0"]).contains("mtu 1500"),
            "{h}: eth0 should start at MTU 1500"
        );
    }
    (h1, h2)
}

/// Waits (10 s at most) for router `r` to exit; returns whether it failed.
fn wait_exit(lab: &mut Lab, r: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(st)) = lab.routers[r].child.try_wait() {
            return !st.success();
        }
        assert!(
            Instant::now() < deadline,
            "router {} still running 10 s after a start it should refuse:\n{}",
            lab.routers[r].host,
            lab.log(r)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The start is refused when the overlay MTU cannot fit the NIC's 1500
/// bytes once encapsulated (over IPv4: 1600 > 1450; over IPv6: the
/// configured 1450 > 1430), and nothing is left behind.
#[test]
fn start_refused_when_overlay_mtu_cannot_fit() {
    require_root!();
    let mut lab = Lab::new("mt1");
    let (h1, _h2) = two_hosts(&mut lab);
    let c1 = lab.adopt("c1");
    for (underlay, peer, mtu, fit, family) in [
        ("198.18.0.1", "198.18.0.2", 1600, 1450, "IPv4"),
        ("2001:2::1", "2001:2::2", 1450, 1430, "IPv6"),
    ] {
        let cfg = format!(
            "[overlay]\nvni = 42\nmtu = {mtu}\n{}{}{LINK}",
            host("h1", 1, underlay, H1_VTEP, &c1, "af_xdp"),
            host("h2", 2, peer, H2_VTEP, "mt1-unused", "af_xdp"),
        );
        let cfg = lab.write(&format!("topo-{family}.toml"), &cfg);
        let r = lab.start(&cfg, "h1", &h1);
        assert!(
            wait_exit(&mut lab, r),
            "router started with overlay MTU {mtu} over {family}"
        );
        let log = lab.log(r);
        for want in [
            format!("overlay.mtu {mtu} does not fit the underlay: eth0 has MTU 1500"),
            format!("over {family}"),
            format!("the largest overlay MTU that fits eth0 is {fit}"),
            format!("raise the MTU of eth0 to at least {}", 1500 + mtu - fit),
        ] {
            assert!(
                log.contains(&want),
                "{family}: no {want:?} in the log:\n{log}"
            );
        }
        // Refused before any container port was made.
        let namespaces = live_support::cmd(&["ip", "netns", "list"]);
        assert!(
            !namespaces
                .lines()
                .any(|l| l.starts_with(&format!("{c1} ")) || l.trim() == c1),
            "{family}: the container namespace was made:\n{namespaces}"
        );
    }
}

/// Pings `dst` from `ns` with DF set and `size` bytes of payload, once;
/// returns ping's output (stdout and stderr) and whether a reply came.
fn df_ping(lab: &Lab, ns: &str, dst: &str, size: usize) -> (String, bool) {
    let s = size.to_string();
    let o = lab.exec(
        ns,
        &[
            "ping", "-n", "-M", "do", "-s", &s, "-c", "1", "-W", "2", dst,
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (text, o.status.success())
}

/// `count` pings with DF of `size` bytes of payload must all come back.
fn df_pings_pass(lab: &Lab, ns: &str, dst: &str, size: usize) {
    let s = size.to_string();
    let o = lab.exec(
        ns,
        &[
            "ping", "-n", "-M", "do", "-s", &s, "-c", "3", "-i", "0.2", "-w", "5", dst,
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(" 3 received"),
        "{ns} -> {dst} with {size} bytes and DF: lost pings:\n{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Drops of `reason` in a router's stats.
fn drops(s: &serde_json::Value, reason: &str) -> u64 {
    s["drops"][reason].as_u64().unwrap_or(0)
}

/// h1's NIC shrinks from 1500 to 1400 while both routers run: the largest
/// packet that fits toward h2 is then 1350 bytes. A 1428-byte ping with DF
/// (IPv4 and IPv6) gets an ICMP error naming 1350, 1328-byte pings pass,
/// the drops are counted as underlay_too_big and the log shows the change.
/// Back at 1500, full-sized pings cross again.
#[test]
fn nic_mtu_shrink_while_running() {
    require_root!();
    shrink_while_running("mt2", "af_xdp");
}

/// The same over the UDP uplink (`uplink_io = "udp"`): the MTU followed is
/// still `nic`'s, the device the kernel sends VXLAN through.
#[test]
fn nic_mtu_shrink_while_running_udp_uplink() {
    require_root!();
    shrink_while_running("mt3", "udp");
}

fn shrink_while_running(prefix: &str, io: &str) {
    let mut lab = Lab::new(prefix);
    let (h1, h2) = two_hosts(&mut lab);
    let c1 = lab.adopt("c1");
    let c2 = lab.adopt("c2");
    let cfg = format!(
        "[overlay]\nvni = 42\n{}{}{LINK}",
        host("h1", 1, "198.18.0.1", H1_VTEP, &c1, io),
        host("h2", 2, "198.18.0.2", H2_VTEP, &c2, io),
    );
    let cfg = lab.write("topo.toml", &cfg);
    let r1 = lab.start(&cfg, "h1", &h1);
    let r2 = lab.start(&cfg, "h2", &h2);
    lab.wait_ready(&[r1, r2]);

    // The default overlay MTU, 1450, fits a 1500-byte underlay exactly.
    lab.ping(&c1, "198.19.2.2");
    lab.ping(&c1, "2001:2:0:2::2");
    df_pings_pass(&lab, &c1, "198.19.2.2", 1400);
    df_pings_pass(&lab, &c1, "2001:2:0:2::2", 1380);
    let published = lab.stats(r1)["tables_published"].as_u64().unwrap_or(0);

    lab.ip(&h1, &["link", "set", "eth0", "mtu", "1400"]);
    wait_for(Duration::from_secs(5), "the MTU change in h1's log", || {
        let log = lab.log(r1);
        log.lines()
            .any(|l| {
                l.contains("underlay MTU changed")
                    && l.contains("from=1500")
                    && l.contains("to=1400")
            })
            .then_some(())
    });
    let log = lab.log(r1);
    assert!(
        log.contains("largest_overlay_mtu=1350") && log.contains("no longer fits"),
        "the log should say what fits now:\n{log}"
    );
    assert!(
        !log.contains("through another device than nic"),
        "the route to h2 leaves through eth0:\n{log}"
    );
    lab.wait_stats(r1, "the tables republished", |s| {
        s["tables_published"].as_u64().unwrap_or(0) > published
    });
    lab.assert_alive(r1);

    // 1400 + 28 = 1428 bytes no longer fit; the router names 1350.
    let (out, ok) = df_ping(&lab, &c1, "198.19.2.2", 1400);
    assert!(
        !ok,
        "a 1428-byte packet crossed a 1400-byte underlay:\n{out}"
    );
    assert!(
        out.contains("Frag needed and DF set (mtu = 1350)"),
        "no fragmentation needed naming 1350:\n{out}"
    );
    let (out, ok) = df_ping(&lab, &c1, "2001:2:0:2::2", 1380);
    assert!(
        !ok,
        "a 1428-byte IPv6 packet crossed a 1400-byte underlay:\n{out}"
    );
    assert!(
        out.contains("Packet too big: mtu=1350"),
        "no packet too big naming 1350:\n{out}"
    );
    // What fits still passes, both families.
    df_pings_pass(&lab, &c1, "198.19.2.2", 1300);
    df_pings_pass(&lab, &c1, "2001:2:0:2::2", 1280);
    let s = lab.wait_stats(r1, "underlay_too_big drops and ICMP errors", |s| {
        drops(s, "underlay_too_big") >= 2 && s["icmp_errors"].as_u64().unwrap_or(0) >= 2
    });
    assert_eq!(
        drops(&s, "too_big"),
        0,
        "the overlay MTU was not the limit: {s:#}"
    );
    assert!(forwarded(&s) > 0, "{s:#}");
    assert_eq!(s["io_errors"].as_u64(), Some(0), "h1: I/O errors: {s:#}");

    // Back to 1500: full-sized packets cross again. To h2's gateway, which
    // h2's router answers itself: c1's kernel learned no smaller path MTU
    // toward it, so the 1428-byte request crosses h1 only once h1's router
    // took the larger MTU.
    lab.ip(&h1, &["link", "set", "eth0", "mtu", "1500"]);
    wait_for(
        Duration::from_secs(5),
        "the MTU growing back in h1's log",
        || {
            lab.log(r1)
                .lines()
                .any(|l| {
                    l.contains("underlay MTU changed")
                        && l.contains("from=1400")
                        && l.contains("to=1500")
                        && l.contains("fits")
                })
                .then_some(())
        },
    );
    let before = drops(&lab.stats(r1), "underlay_too_big");
    df_pings_pass(&lab, &c1, "198.19.2.1", 1400);
    let s = lab.stats(r1);
    assert_eq!(
        drops(&s, "underlay_too_big"),
        before,
        "full-sized replies dropped after the MTU grew back: {s:#}"
    );
    lab.assert_alive(r1);
    lab.assert_alive(r2);
}
