//! Which subnet a host leases: candidates from a network range, the ones
//! taken left out.
//!
//! Sans-IO. The store's transaction decides who gets a subnet; this only
//! proposes them in an order that differs per host (from a hash of its
//! name), so that hosts starting at once mostly try different subnets
//! first instead of all racing for the lowest.

use ipnet::IpNet;

use crate::config::addr;

/// At most this many candidates are proposed: a range with more subnets
/// than that is walked from the host's own starting point only.
pub const MAX_CANDIDATES: u64 = 1 << 16;

/// The subnets of length `len` in `network` that no `taken` subnet
/// overlaps and no special block touches, starting at a point derived from
/// `seed` and wrapping around. The first subnet of the range (the one
/// holding its network address) is skipped, as flanneld does.
pub fn candidates(network: IpNet, len: u8, taken: &[IpNet], seed: u64) -> Vec<IpNet> {
    let Ok(subnets) = network.subnets(len) else {
        return Vec::new();
    };
    let bits = u32::from(len.saturating_sub(network.prefix_len()));
    let count: u64 = if bits >= 64 { u64::MAX } else { 1u64 << bits };
    if count < 2 {
        return Vec::new();
    }
    let window = count.min(MAX_CANDIDATES);
    let start = 1 + seed % (window - 1);
    let mut out = Vec::new();
    let usable = |n: &IpNet| {
        addr::special_overlapping(*n).is_none()
            && !taken.iter().any(|t| t.contains(n) || n.contains(t))
    };
    // Subnets `start..window`, then `1..start`.
    let all: Vec<IpNet> = subnets.take(window as usize).collect();
    for i in (start..window).chain(1..start) {
        let n = all[i as usize];
        if usable(&n) {
            out.push(n);
        }
    }
    out
}

/// A stable hash of a host name (FNV-1a), the seed of [`candidates`].
pub fn seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_skip_taken_and_the_first_and_differ_by_host() {
        let net: IpNet = "198.19.0.0/16".parse().unwrap();
        let taken: Vec<IpNet> = vec![
            "198.19.5.0/24".parse().unwrap(),
            "198.19.6.128/25".parse().unwrap(),
        ];
        let a = candidates(net, 24, &taken, seed("h1"));
        assert_eq!(a.len(), 256 - 3);
        assert!(!a.contains(&"198.19.0.0/24".parse().unwrap()));
        assert!(!a
            .iter()
            .any(|n| taken.iter().any(|t| t.contains(n) || n.contains(t))));
        let b = candidates(net, 24, &taken, seed("h2"));
        assert_ne!(a[0], b[0]);
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), a.len());
        assert!(candidates(net, 16, &[], 0).is_empty());
        let v6: IpNet = "2001:2::/48".parse().unwrap();
        assert_eq!(candidates(v6, 64, &[], 3).len(), 65535);
    }
}
