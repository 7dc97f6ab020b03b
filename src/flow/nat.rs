//! Address translation between the virtual network and the host.
//!
//! Outbound, the virtual host address means the host's loopback (unless
//! `--disable-host-loopback`), the virtual DNS address on port 53 means the
//! upstream resolver, and anything else is connected as addressed. Inbound
//! (forwards), a peer on the host's loopback appears to the guest as the
//! virtual host address.
//!
//! The host's own addresses are reachable only through that mapping: a
//! guest addressing loopback (`127.0.0.0/8`, `::1`) or an unspecified
//! address directly, which no real guest routes out of itself, is refused
//! ([`refused`]), and so are IPv4-mapped IPv6 forms of them
//! (`::ffff:127.0.0.1`, `::ffff:0.0.0.0`, `::ffff:224.0.0.251`): every
//! check runs on the canonical address.
#![forbid(unsafe_code)]

use crate::config::Config;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Where a guest packet to `dst` should go on the host, or `None` if
/// nothing answers there (an unused virtual address, a disabled mapping, a
/// [`refused`] host-internal address).
pub fn outbound(cfg: &Config, dst: SocketAddr) -> Option<SocketAddr> {
    let dst = SocketAddr::new(dst.ip().to_canonical(), dst.port());
    let ip = dst.ip();
    let (host, dns, in_net) = match ip {
        IpAddr::V4(a) => {
            let n = cfg.net4.as_ref()?;
            (IpAddr::V4(n.host), IpAddr::V4(n.dns), n.contains(a))
        }
        IpAddr::V6(a) => {
            let n = cfg.net6.as_ref()?;
            (IpAddr::V6(n.host), IpAddr::V6(n.dns), n.contains(a))
        }
    };
    if ip == dns && cfg.dns_forward && dst.port() == 53 {
        return cfg.dns_upstream.first().copied();
    }
    if cfg.restrict {
        // Isolated guest: DNS above and forwards are all it gets.
        return None;
    }
    // passt's --map-guest-addr: the guest's own address on the host side,
    // which the guest cannot address itself.
    match ip {
        IpAddr::V4(a) if cfg.map_guest.v4 == Some(a) => {
            let n = cfg.net4.as_ref()?;
            return Some(SocketAddr::new(IpAddr::V4(n.guest), dst.port()));
        }
        IpAddr::V6(a) if cfg.map_guest.v6 == Some(a) => {
            let n = cfg.net6.as_ref()?;
            return Some(SocketAddr::new(IpAddr::V6(n.guest), dst.port()));
        }
        _ => {}
    }
    // The router's link-local address is the virtual host too.
    let ip = match ip {
        IpAddr::V6(a)
            if cfg
                .net6
                .as_ref()
                .is_some_and(|n| a == n.router_link_local()) =>
        {
            host
        }
        other => other,
    };
    if ip == host {
        if !cfg.host_loopback {
            return None;
        }
        let lo = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        return Some(SocketAddr::new(lo, dst.port()));
    }
    if in_net && cfg.virtual_subnet {
        // Other virtual addresses have nothing behind them (slirp's view;
        // passt's subnet is the host's, reached as addressed).
        return None;
    }
    if ip.is_multicast() || is_broadcast(ip) || refused(ip) {
        return None;
    }
    Some(dst)
}

/// A destination the guest may never address itself: the host's loopback
/// or an unspecified address, in any spelling (IPv4-mapped included). Only
/// airlock's virtual-host mapping leads there. TCP answers it with RST,
/// UDP and ICMP with "administratively prohibited".
pub fn refused(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback() || ip.is_unspecified()
}

fn is_broadcast(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(a) if a.is_broadcast())
}

/// How the guest sees a host peer that connected to a forward: loopback
/// becomes the virtual host address of the guest's family.
pub fn inbound_source(cfg: &Config, peer: SocketAddr, guest_is_v6: bool) -> Option<SocketAddr> {
    let ip = match peer.ip() {
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(a),
        },
        v4 => v4,
    };
    let guest = |v6| match v6 {
        true => cfg.net6.as_ref().map(|n| IpAddr::V6(n.guest)),
        false => cfg.net4.as_ref().map(|n| IpAddr::V4(n.guest)),
    };
    let ip = if ip.is_loopback() {
        if guest_is_v6 {
            IpAddr::V6(cfg.net6.as_ref()?.host)
        } else {
            IpAddr::V4(cfg.net4.as_ref()?.host)
        }
    } else if Some(ip) == guest(ip.is_ipv6()) {
        // The guest's own address on the host: --map-guest-addr's address
        // when given, else as it is (passt's nat_inbound).
        match ip {
            IpAddr::V4(_) => cfg.map_guest.v4.map_or(ip, IpAddr::V4),
            IpAddr::V6(_) => cfg.map_guest.v6.map_or(ip, IpAddr::V6),
        }
    } else {
        ip
    };
    if ip.is_ipv6() != guest_is_v6 {
        // A peer of the other family than the guest's address: show the
        // virtual host, as slirp does for anything it cannot express.
        return Some(SocketAddr::new(
            if guest_is_v6 {
                IpAddr::V6(cfg.net6.as_ref()?.host)
            } else {
                IpAddr::V4(cfg.net4.as_ref()?.host)
            },
            peer.port(),
        ));
    }
    Some(SocketAddr::new(ip, peer.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn outbound_mappings() {
        let c = Config::for_test_upstream(&[]);
        assert_eq!(outbound(&c, sa("10.0.2.2:80")), Some(sa("127.0.0.1:80")));
        assert_eq!(outbound(&c, sa("10.0.2.3:53")), Some(sa("127.0.0.1:5353")));
        assert_eq!(outbound(&c, sa("10.0.2.3:80")), None);
        assert_eq!(outbound(&c, sa("10.0.2.77:80")), None);
        assert_eq!(outbound(&c, sa("192.0.2.9:80")), Some(sa("192.0.2.9:80")));
        assert_eq!(outbound(&c, sa("[fec0::2]:80")), Some(sa("[::1]:80")));
        assert_eq!(outbound(&c, sa("255.255.255.255:9")), None);
        let c = Config::for_test_upstream(&["--disable-host-loopback"]);
        assert_eq!(outbound(&c, sa("10.0.2.2:80")), None);
        let c = Config::for_test_upstream(&["--restrict"]);
        assert_eq!(outbound(&c, sa("192.0.2.9:80")), None);
        assert_eq!(outbound(&c, sa("10.0.2.3:53")), Some(sa("127.0.0.1:5353")));
        let c = Config::for_test_upstream(&["--disable-dns"]);
        assert_eq!(outbound(&c, sa("10.0.2.3:53")), None);
    }

    #[test]
    fn host_internal_addresses_are_refused_in_every_spelling() {
        for opts in [&[][..], &["--disable-host-loopback"][..]] {
            let c = Config::for_test_upstream(opts);
            for a in [
                "127.0.0.1:22",
                "127.0.0.53:53",
                "127.1.2.3:80",
                "0.0.0.0:80",
                "[::1]:22",
                "[::]:80",
                "[::ffff:127.0.0.1]:22",
                "[::ffff:0.0.0.0]:80",
                "[::ffff:224.0.0.251]:5353",
                "[::ffff:255.255.255.255]:9",
            ] {
                assert_eq!(outbound(&c, sa(a)), None, "{a} with {opts:?}");
            }
            assert!(refused(sa("[::ffff:127.0.0.1]:1").ip()));
            assert!(!refused(sa("[::ffff:192.0.2.9]:1").ip()));
        }
        // A mapped public address goes out as the IPv4 address it is.
        let c = Config::for_test_upstream(&[]);
        assert_eq!(
            outbound(&c, sa("[::ffff:192.0.2.9]:80")),
            Some(sa("192.0.2.9:80"))
        );
        // The virtual-host mapping still leads to loopback.
        assert_eq!(outbound(&c, sa("10.0.2.2:80")), Some(sa("127.0.0.1:80")));
    }

    #[test]
    fn inbound_loopback_is_the_virtual_host() {
        let c = Config::for_test_upstream(&[]);
        assert_eq!(
            inbound_source(&c, sa("127.0.0.1:4000"), false),
            Some(sa("10.0.2.2:4000"))
        );
        assert_eq!(
            inbound_source(&c, sa("[::1]:4000"), true),
            Some(sa("[fec0::2]:4000"))
        );
        assert_eq!(
            inbound_source(&c, sa("[::ffff:127.0.0.1]:4000"), false),
            Some(sa("10.0.2.2:4000"))
        );
        assert_eq!(
            inbound_source(&c, sa("192.0.2.7:4000"), false),
            Some(sa("192.0.2.7:4000"))
        );
    }
}
