//! Neighbour discovery as the virtual router (RFC 4861), with slirp's view.
//!
//! Router advertisements go out at start, periodically (the first three 16 s
//! apart, then every MinRtrAdvInterval..=MaxRtrAdvInterval, 200..=600 s,
//! jittered) and in answer to router solicitations: from the router's
//! link-local address (`fe80::` + the host's interface identifier, slirp's
//! `fe80::2`), with the router MAC, the prefix (on-link, autonomous), the
//! MTU, RDNSS and DNSSL, and the M and O flags (DHCPv6 serves both).
//!
//! Neighbour advertisements answer for every virtual address, as ARP does
//! for IPv4: the host, the DNS address, their link-local forms, and any
//! other address of the prefix but the guest's. Duplicate address
//! detection for the guest's addresses is never answered (only for an
//! address airlock holds, which is a real conflict).
//!
//! Pure frame-in, frame-out: no sockets, no syscalls.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use crate::config::{router_mac6, Config, Net6};
use crate::counters::Counters;
use crate::frame::{self, L2};
use crate::link::Tx;
use crate::rng::Rng;
use crate::wire::ndp::{self, AddrList, NameList, NdpOption, Options, PrefixInfo};
use crate::wire::{domain, icmpv6, ip_proto, Mac};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_ROUTERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 2);
/// NDP goes out with, and is only accepted with, this hop limit: proof it
/// was not forwarded (RFC 4861 §6.1, §7.1).
pub const HOP_LIMIT: u8 = 255;
/// The hop limit the RA tells the guest to use.
pub const CUR_HOP_LIMIT: u8 = 64;

/// RFC 4861 §6.2.1 defaults and §10 router constants.
pub const MAX_RTR_ADV_INTERVAL: Duration = Duration::from_secs(600);
pub const MIN_RTR_ADV_INTERVAL: Duration = Duration::from_secs(200);
pub const MAX_INITIAL_RTR_ADVERT_INTERVAL: Duration = Duration::from_secs(16);
pub const MAX_INITIAL_RTR_ADVERTISEMENTS: u8 = 3;
pub const MIN_DELAY_BETWEEN_RAS: Duration = Duration::from_secs(3);
/// 3 × MaxRtrAdvInterval, the RFC's AdvDefaultLifetime: non-zero, so the
/// guest installs a default route.
pub const ROUTER_LIFETIME_S: u16 = 1800;
/// slirp's prefix lifetimes.
pub const PREFIX_VALID_S: u32 = 86400;
pub const PREFIX_PREFERRED_S: u32 = 14400;
/// RDNSS and DNSSL lifetime: 3 × MaxRtrAdvInterval (RFC 8106 §5.1).
pub const DNS_LIFETIME_S: u32 = 1800;
/// Option length is counted in 8-byte units in one byte.
const MAX_OPTION_LEN: usize = 255 * 8;
/// How many of the guest's own addresses (seen in its duplicate address
/// detection) are remembered.
const GUEST_ADDRS: usize = 8;

/// The Ethernet address of an IPv6 multicast group (RFC 2464 §7).
pub fn multicast_mac(a: Ipv6Addr) -> Mac {
    let o = a.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// The solicited-node multicast group of `a` (RFC 4291 §2.7.1).
pub fn solicited_node(a: Ipv6Addr) -> Ipv6Addr {
    Ipv6Addr::from(0xff02_0000_0000_0000_0000_0001_ff00_0000u128 | (u128::from(a) & 0xff_ffff))
}

/// What the stack knows of an incoming IPv6 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incoming {
    pub eth_src: Mac,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub hop_limit: u8,
}

/// The router side of neighbour discovery.
pub struct Router {
    /// The RA's options, encoded once: source link-layer address, MTU,
    /// prefix information, RDNSS, DNSSL.
    ra_options: Vec<u8>,
    /// When the next unsolicited RA is due; `None` before [`Router::start`].
    next_unsolicited: Option<Instant>,
    /// Unsolicited RAs still to be spaced at most 16 s apart.
    initial_left: u8,
    last_multicast: Option<Instant>,
    /// The interval jitter only has to avoid lock-step with other
    /// routers, not be unpredictable.
    rng: Rng,
    /// Addresses the guest claimed by duplicate address detection.
    guest_addrs: [Option<Ipv6Addr>; GUEST_ADDRS],
    guest_next: usize,
    /// One MAC for every address (passt's view), else slirp's per address.
    mac: Option<Mac>,
    /// The RA's header: current hop limit, flags, router lifetime.
    ra_head: (u8, u8, u16),
}

/// passt's RA ([`Config::passt_ipv6`]): the guest's hop limit 255, M
/// alone (its DHCPv6 answers everything), the longest router lifetime
/// (RFC 8319) and prefix and DNS lifetimes infinite.
const PASST_RA_HEAD: (u8, u8, u16) = (255, ndp::ROUTER_FLAG_MANAGED, u16::MAX);
const INFINITE: u32 = u32::MAX;

impl Router {
    pub fn new(cfg: &Config) -> Router {
        let (ra_options, seed) = match cfg.net6.as_ref() {
            Some(net) => (ra_options(cfg, net), u128::from(net.host) as u64),
            None => (Vec::new(), 0),
        };
        Router {
            ra_options,
            next_unsolicited: None,
            initial_left: 0,
            last_multicast: None,
            rng: Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15),
            guest_addrs: [None; GUEST_ADDRS],
            guest_next: 0,
            mac: cfg.mac,
            ra_head: if cfg.passt_ipv6 {
                PASST_RA_HEAD
            } else {
                (
                    CUR_HOP_LIMIT,
                    ndp::ROUTER_FLAG_MANAGED | ndp::ROUTER_FLAG_OTHER,
                    ROUTER_LIFETIME_S,
                )
            },
        }
    }

    /// The link is up: advertise at once, then on schedule.
    pub fn start(&mut self, cfg: &Config, now: Instant, tx: &mut Tx) {
        if cfg.net6.is_none() || cfg.off.ra {
            return;
        }
        self.initial_left = MAX_INITIAL_RTR_ADVERTISEMENTS - 1;
        self.next_unsolicited = Some(now);
        self.on_tick(cfg, now, tx);
    }

    /// Sends the unsolicited RA when it is due.
    pub fn on_tick(&mut self, cfg: &Config, now: Instant, tx: &mut Tx) {
        if !self.due(now) {
            return;
        }
        let Some(net) = cfg.net6.as_ref() else { return };
        tx.send_with(|buf| self.write_ra(net, ALL_NODES, multicast_mac(ALL_NODES), buf));
        self.sent_multicast(now);
    }

    fn due(&self, now: Instant) -> bool {
        self.next_unsolicited.is_some_and(|t| now >= t)
    }

    fn sent_multicast(&mut self, now: Instant) {
        self.last_multicast = Some(now);
        let interval = self.next_interval();
        self.next_unsolicited = Some(now + interval);
    }

    /// Uniform in MinRtrAdvInterval..=MaxRtrAdvInterval, at most 16 s for
    /// the first few (RFC 4861 §6.2.4).
    fn next_interval(&mut self) -> Duration {
        let span = (MAX_RTR_ADV_INTERVAL - MIN_RTR_ADV_INTERVAL).as_millis() as u64;
        let d = MIN_RTR_ADV_INTERVAL + Duration::from_millis(self.rng.next_u64() % (span + 1));
        if self.initial_left > 0 {
            self.initial_left -= 1;
            d.min(MAX_INITIAL_RTR_ADVERT_INTERVAL)
        } else {
            d
        }
    }

    /// An NDP message (ICMPv6 types 133-137) from the guest.
    pub fn handle(
        &mut self,
        cfg: &Config,
        pkt: &Incoming,
        icmp: &[u8],
        now: Instant,
        tx: &mut Tx,
        counters: &mut Counters,
    ) {
        tx.send_with(|buf| self.answer(cfg, pkt, icmp, now, buf, counters));
    }

    /// Like [`Router::handle`], writing the answer (if any) into `buf`;
    /// returns the frame's length, 0 for none.
    pub fn answer(
        &mut self,
        cfg: &Config,
        pkt: &Incoming,
        icmp: &[u8],
        now: Instant,
        buf: &mut [u8],
        counters: &mut Counters,
    ) -> usize {
        let Some(net) = cfg.net6.as_ref() else {
            counters.ipv6_ignored += 1;
            return 0;
        };
        if cfg.off.ndp {
            counters.disabled += 1;
            return 0;
        }
        // Hop limit 255 or it was forwarded from off-link: never trusted.
        if pkt.hop_limit != HOP_LIMIT || pkt.src.is_multicast() {
            counters.ndp_malformed += 1;
            return 0;
        }
        let msg = match icmpv6::Packet::new_checked(icmp)
            .and_then(|p| ndp::Repr::parse(&p, pkt.src, pkt.dst))
        {
            Ok(m) => m,
            Err(_) => {
                counters.ndp_malformed += 1;
                return 0;
            }
        };
        match msg {
            // passt's --no-ra: solicitations go unanswered, NDP stays.
            ndp::Repr::RouterSolicit { .. } if cfg.off.ra => {
                counters.disabled += 1;
                0
            }
            ndp::Repr::RouterSolicit { options } => {
                self.on_router_solicit(net, pkt, options, now, buf, counters)
            }
            ndp::Repr::NeighborSolicit { target, options } => {
                self.on_neighbor_solicit(net, pkt, target, options, buf, counters)
            }
            // Advertisements and redirects from the guest tell airlock
            // nothing it needs.
            _ => {
                counters.ndp_ignored += 1;
                0
            }
        }
    }

    fn on_router_solicit(
        &mut self,
        net: &Net6,
        pkt: &Incoming,
        options: Options,
        now: Instant,
        buf: &mut [u8],
        counters: &mut Counters,
    ) -> usize {
        let sllao = options.source_lladdr();
        if pkt.src.is_unspecified() && sllao.is_some() {
            counters.ndp_malformed += 1; // RFC 4861 §6.1.1
            return 0;
        }
        if pkt.dst != ALL_ROUTERS && pkt.dst != ALL_NODES && !net.is_own(pkt.dst) {
            counters.ndp_ignored += 1;
            return 0;
        }
        if !pkt.src.is_unspecified() {
            // A solicitation with a source gets its own unicast answer: one
            // RA per RS, so no amplification and no rate limit needed.
            let mac = sllao.unwrap_or(pkt.eth_src);
            return self.write_ra(net, pkt.src, mac, buf);
        }
        // Multicast answers: at most one per MIN_DELAY_BETWEEN_RAS, the
        // rest folded into the next scheduled one.
        if let Some(last) = self.last_multicast {
            let earliest = last + MIN_DELAY_BETWEEN_RAS;
            if now < earliest {
                let next = self.next_unsolicited.map_or(earliest, |t| t.min(earliest));
                self.next_unsolicited = Some(next);
                return 0;
            }
        }
        let n = self.write_ra(net, ALL_NODES, multicast_mac(ALL_NODES), buf);
        if n > 0 {
            self.sent_multicast(now);
        }
        n
    }

    fn on_neighbor_solicit(
        &mut self,
        net: &Net6,
        pkt: &Incoming,
        target: Ipv6Addr,
        options: Options,
        buf: &mut [u8],
        counters: &mut Counters,
    ) -> usize {
        let sllao = options.source_lladdr();
        let flags = ndp::NEIGHBOR_FLAG_ROUTER | ndp::NEIGHBOR_FLAG_OVERRIDE;
        if pkt.src.is_unspecified() {
            // Duplicate address detection (RFC 4862 §5.4.3).
            if pkt.dst != solicited_node(target) || sllao.is_some() {
                counters.ndp_malformed += 1;
                return 0;
            }
            if !net.is_own(target) {
                // The guest claims `target`: leave it undisturbed.
                self.learn_guest_addr(target);
                counters.ndp_ignored += 1;
                return 0;
            }
            // It claims an address airlock holds: defend it, to all nodes.
            return write_na(
                self.mac,
                target,
                ALL_NODES,
                multicast_mac(ALL_NODES),
                flags,
                buf,
            );
        }
        let addressed = pkt.dst == target || pkt.dst == solicited_node(target);
        if !addressed || !net.is_virtual(target) || self.is_guest_addr(target) {
            counters.ndp_ignored += 1;
            return 0;
        }
        let mac = sllao.unwrap_or(pkt.eth_src);
        write_na(
            self.mac,
            target,
            pkt.src,
            mac,
            flags | ndp::NEIGHBOR_FLAG_SOLICITED,
            buf,
        )
    }

    fn learn_guest_addr(&mut self, a: Ipv6Addr) {
        if self.is_guest_addr(a) {
            return;
        }
        if let Some(slot) = self.guest_addrs.get_mut(self.guest_next) {
            *slot = Some(a);
        }
        self.guest_next = (self.guest_next + 1) % GUEST_ADDRS;
    }

    fn is_guest_addr(&self, a: Ipv6Addr) -> bool {
        self.guest_addrs.contains(&Some(a))
    }

    fn write_ra(&self, net: &Net6, dst: Ipv6Addr, dst_mac: Mac, buf: &mut [u8]) -> usize {
        let (hop_limit, flags, router_lifetime) = self.ra_head;
        let ra = ndp::Repr::RouterAdvert {
            hop_limit,
            flags,
            router_lifetime,
            reachable_time: 0,
            retrans_timer: 0,
            options: Options::Wire(&self.ra_options),
        };
        let src = net.router_link_local();
        write_ndp(
            &ra,
            src,
            dst,
            self.mac.unwrap_or_else(|| router_mac6(net.host)),
            dst_mac,
            buf,
        )
    }
}

/// A neighbour advertisement for `target`, from `target` itself with
/// slirp's MAC for it.
fn write_na(
    mac: Option<Mac>,
    target: Ipv6Addr,
    dst: Ipv6Addr,
    dst_mac: Mac,
    flags: u8,
    buf: &mut [u8],
) -> usize {
    let mac = mac.unwrap_or_else(|| router_mac6(target));
    let opts = [NdpOption::TargetLinkAddr(mac)];
    let na = ndp::Repr::NeighborAdvert {
        flags,
        target,
        options: Options::List(&opts),
    };
    write_ndp(&na, target, dst, mac, dst_mac, buf)
}

fn write_ndp(
    msg: &ndp::Repr,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    src_mac: Mac,
    dst_mac: Mac,
    buf: &mut [u8],
) -> usize {
    let Ok(len) = msg.buffer_len() else { return 0 };
    let l2 = L2 {
        guest: dst_mac,
        router4: src_mac,
        router6: src_mac,
    };
    let (s, d) = (IpAddr::V6(src), IpAddr::V6(dst));
    let off = frame::write_ip(buf, &l2, s, d, ip_proto::ICMPV6, len, HOP_LIMIT);
    match buf.get_mut(off..).map(|b| msg.emit(b, src, dst)) {
        Some(Ok(n)) if off > 0 => off + n,
        _ => 0,
    }
}

/// The RA's options, encoded once (the RA only differs by destination).
fn ra_options(cfg: &Config, net: &Net6) -> Vec<u8> {
    let dns = [net.dns];
    let search = fitting_names(&cfg.dns_suffixes, MAX_OPTION_LEN - 8);
    let (valid, preferred, dns_lifetime) = if cfg.passt_ipv6 {
        (INFINITE, INFINITE, INFINITE)
    } else {
        (PREFIX_VALID_S, PREFIX_PREFERRED_S, DNS_LIFETIME_S)
    };
    let mut opts = vec![
        NdpOption::SourceLinkAddr(cfg.mac6(net.host)),
        NdpOption::Mtu(u32::from(cfg.mtu)),
        NdpOption::PrefixInfo(PrefixInfo {
            prefix_len: net.prefix_len,
            flags: ndp::PREFIX_FLAG_ON_LINK | ndp::PREFIX_FLAG_AUTONOMOUS,
            valid_lifetime: valid,
            preferred_lifetime: preferred,
            prefix: net.prefix,
        }),
    ];
    if cfg.dns6 {
        opts.push(NdpOption::Rdnss {
            lifetime: dns_lifetime,
            servers: AddrList::Addrs(&dns),
        });
    }
    // passt sends its search list only beside a resolver.
    if !search.is_empty() && (cfg.dns6 || !cfg.passt_ipv6) {
        opts.push(NdpOption::Dnssl {
            lifetime: dns_lifetime,
            domains: NameList::Names(&search),
        });
    }
    let mut out = Vec::new();
    for o in &opts {
        let Ok(n) = o.buffer_len() else { continue };
        let at = out.len();
        out.resize(at + n, 0);
        if out.get_mut(at..).map(|b| o.emit(b)) != Some(Ok(n)) {
            out.truncate(at);
        }
    }
    out
}

/// The leading names of `names` whose encoding fits in `room` bytes
/// (invalid names skipped): what one DNSSL or DHCPv6 option can carry.
pub fn fitting_names(names: &[String], room: usize) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let mut used = 0;
    for n in names {
        let Ok(len) = domain::encoded_len(&[n.as_str()]) else {
            continue;
        };
        if used + len > room {
            break;
        }
        used += len;
        out.push(n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex, ip6, GUEST_MAC, ROUTER_MAC};
    use crate::wire::{ethernet, ipv6};

    fn guest_ll() -> Ipv6Addr {
        ip6("fe80::5054:ff:fe12:3456")
    }

    /// Hands `icmp` (checksum filled here) to a router; returns the frame.
    fn run(r: &mut Router, c: &Config, pkt: Incoming, icmp: &[u8], now: Instant) -> Vec<u8> {
        let mut msg = icmp.to_vec();
        let mut p = icmpv6::Packet::new_checked(&mut msg[..]).unwrap();
        p.fill_checksum(pkt.src, pkt.dst);
        let mut buf = vec![0u8; 2048];
        let mut counters = Counters::default();
        let n = r.answer(c, &pkt, &msg, now, &mut buf, &mut counters);
        buf.truncate(n);
        buf
    }

    /// Ethernet and IPv6 headers of `f`, and the ICMPv6 message.
    fn split(f: &[u8]) -> (Mac, Mac, ipv6::Repr, &[u8]) {
        let e = ethernet::Frame::new_checked(f).unwrap();
        let p = ipv6::Packet::new_checked(&f[14..]).unwrap();
        let r = ipv6::Repr::parse(&p).unwrap();
        (e.dst(), e.src(), r, &f[54..54 + usize::from(r.payload_len)])
    }

    fn rs_from(src: Ipv6Addr) -> Incoming {
        Incoming {
            eth_src: GUEST_MAC,
            src,
            dst: ALL_ROUTERS,
            hop_limit: 255,
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(Net6::link_local(ip6("fec0::2")), ip6("fe80::2"));
        assert_eq!(
            Net6::link_local(ip6("2001:db8::1:2:3:4")),
            ip6("fe80::1:2:3:4")
        );
        assert_eq!(
            solicited_node(ip6("fec0::12:3456")),
            ip6("ff02::1:ff12:3456")
        );
        assert_eq!(multicast_mac(ALL_NODES), [0x33, 0x33, 0, 0, 0, 1]);
        let c = Config::for_test(&[]);
        let n = c.net6.as_ref().unwrap();
        for own in ["fec0::2", "fec0::3", "fe80::2", "fe80::3"] {
            assert!(n.is_own(ip6(own)) && n.is_virtual(ip6(own)), "{own}");
        }
        assert!(n.is_virtual(ip6("fec0::99")) && !n.is_own(ip6("fec0::99")));
        for not in ["fec0::15", "fec0::", "fe80::99", "2001:db8::2", "ff02::1"] {
            assert!(!n.is_virtual(ip6(not)), "{not}");
        }
    }

    /// RS in (golden, from the wire tests) -> RA out, field by field.
    #[test]
    fn router_solicit_gets_advert() {
        let c = Config::for_test(&["--dns-suffixes", "example.org"]);
        let mut r = Router::new(&c);
        let rs = hex("8500 0000 00000000 0101525400123456");
        let f = run(&mut r, &c, rs_from(guest_ll()), &rs, Instant::now());
        let (dmac, smac, ip, icmp) = split(&f);
        assert_eq!((dmac, smac), (GUEST_MAC, ROUTER_MAC));
        assert_eq!(
            (ip.src, ip.dst, ip.hop_limit),
            (ip6("fe80::2"), guest_ll(), 255)
        );
        assert_eq!(ip.next_header, ip_proto::ICMPV6);
        // The whole RA, byte for byte: M and O, lifetime 1800, SLLA, MTU
        // 65520, fec0::/64 (L, A, 86400/14400), RDNSS fec0::3, DNSSL.
        let mut want = hex("8600 0000 40 c0 0708 00000000 00000000
             0101525600000002
             050100000000fff0
             030440c0 00015180 00003840 00000000 fec00000000000000000000000000000
             19030000 00000708 fec00000000000000000000000000003
             1f030000 00000708 076578616d706c65036f726700 000000");
        let mut p = icmpv6::Packet::new_checked(&mut want[..]).unwrap();
        p.fill_checksum(ip.src, ip.dst);
        assert_eq!(icmp, &want[..]);
        let p = icmpv6::Packet::new_checked(icmp).unwrap();
        assert!(p.verify_checksum(ip.src, ip.dst));
    }

    #[test]
    fn advert_follows_config() {
        let c = Config::for_test(&["--disable-dns", "--mtu", "1500", "--net6", "fd00:1::/64"]);
        let mut r = Router::new(&c);
        let rs = hex("8500 0000 00000000");
        let f = run(&mut r, &c, rs_from(guest_ll()), &rs, Instant::now());
        let (_, _, ip, icmp) = split(&f);
        let p = icmpv6::Packet::new_checked(icmp).unwrap();
        let ndp::Repr::RouterAdvert { options, .. } = ndp::Repr::parse(&p, ip.src, ip.dst).unwrap()
        else {
            panic!("not an RA")
        };
        let opts: Vec<_> = options.iter().map(|o| o.unwrap()).collect();
        assert_eq!(opts.len(), 3, "no RDNSS without DNS, no DNSSL: {opts:?}");
        assert_eq!(opts[1], NdpOption::Mtu(1500));
        match opts[2] {
            NdpOption::PrefixInfo(pi) => assert_eq!(pi.prefix, ip6("fd00:1::")),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn multicast_advertising_schedule() {
        let c = Config::for_test(&[]);
        let mut r = Router::new(&c);
        let t0 = Instant::now();
        assert!(!r.due(t0));
        r.initial_left = MAX_INITIAL_RTR_ADVERTISEMENTS - 1;
        r.next_unsolicited = Some(t0);
        let mut at = t0;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            assert!(r.due(at));
            r.sent_multicast(at);
            let next = r.next_unsolicited.unwrap();
            gaps.push(next - at);
            assert!(!r.due(next - Duration::from_millis(1)));
            at = next;
        }
        assert_eq!(gaps[..2], [MAX_INITIAL_RTR_ADVERT_INTERVAL; 2]);
        for g in &gaps[2..] {
            assert!(
                (MIN_RTR_ADV_INTERVAL..=MAX_RTR_ADV_INTERVAL).contains(g),
                "{g:?}"
            );
        }
        assert!(
            gaps[2..].windows(2).any(|w| w[0] != w[1]),
            "jitter: {gaps:?}"
        );
        // A multicast solicitation right after an RA is folded into an RA
        // 3 s after the last.
        r.sent_multicast(at);
        let rs = hex("8500 0000 00000000");
        let f = run(&mut r, &c, rs_from(Ipv6Addr::UNSPECIFIED), &rs, at);
        assert!(f.is_empty());
        assert_eq!(r.next_unsolicited, Some(at + MIN_DELAY_BETWEEN_RAS));
        let later = at + MIN_DELAY_BETWEEN_RAS;
        let f = run(&mut r, &c, rs_from(Ipv6Addr::UNSPECIFIED), &rs, later);
        let (dmac, _, ip, _) = split(&f);
        assert_eq!((dmac, ip.dst), (multicast_mac(ALL_NODES), ALL_NODES));
    }

    fn ns(target: Ipv6Addr, sllao: bool) -> Vec<u8> {
        let mut m = hex("8700 0000 00000000");
        m.extend_from_slice(&target.octets());
        if sllao {
            m.extend_from_slice(&hex("0101525400123456"));
        }
        m
    }

    /// passt's RA: hop limit 255, M alone, router lifetime 65535, prefix
    /// lifetimes infinite, no RDNSS (nor DNSSL) without an IPv6 resolver.
    #[test]
    fn passt_style_advert() {
        let mut c = Config::for_test(&["--dns-suffixes", "example.org"]);
        c.passt_ipv6 = true;
        c.dns6 = false;
        let mut r = Router::new(&c);
        let rs = hex("8500 0000 00000000 0101525400123456");
        let f = run(&mut r, &c, rs_from(guest_ll()), &rs, Instant::now());
        let (_, _, _, icmp) = split(&f);
        assert_eq!(&icmp[4..8], &[255, 0x80, 0xff, 0xff]);
        let want = hex("050100000000fff0
             030440c0 ffffffff ffffffff 00000000 fec00000000000000000000000000000");
        assert_eq!(&icmp[16 + 8..], &want[..]);
        c.dns6 = true;
        let mut r = Router::new(&c);
        let f = run(&mut r, &c, rs_from(guest_ll()), &rs, Instant::now());
        let (_, _, _, icmp) = split(&f);
        let rdnss = hex("19030000 ffffffff fec00000000000000000000000000003");
        assert!(icmp.windows(rdnss.len()).any(|w| w == rdnss), "{icmp:02x?}");
        assert!(
            icmp.windows(2).any(|w| w == [0x1f, 3]),
            "DNSSL beside RDNSS"
        );
    }

    /// passt's `--no-ra`: solicitations unanswered, neighbours still
    /// answered; `--no-ndp`: neither (none at start: tests/passt.rs).
    #[test]
    fn no_ra_and_no_ndp() {
        let rs = hex("8500 0000 00000000 0101525400123456");
        let guest = ip6("fec0::5054:ff:fe12:3456");
        let ns_pkt = Incoming {
            eth_src: GUEST_MAC,
            src: guest,
            dst: ip6("ff02::1:ff00:2"),
            hop_limit: 255,
        };
        for (ra, ndp) in [(true, false), (true, true), (false, false)] {
            let mut c = Config::for_test(&[]);
            c.off.ra = ra;
            c.off.ndp = ndp;
            let mut r = Router::new(&c);
            let now = Instant::now();
            let f = run(&mut r, &c, rs_from(guest_ll()), &rs, now);
            assert_eq!(f.is_empty(), ra, "RS answered with off.ra={ra}");
            let f = run(&mut r, &c, ns_pkt, &ns(ip6("fec0::2"), true), now);
            assert_eq!(f.is_empty(), ndp, "NS answered with off.ndp={ndp}");
        }
    }

    /// NS in (golden) -> NA out (golden, from the wire tests).
    #[test]
    fn neighbor_solicit_gets_advert() {
        let c = Config::for_test(&[]);
        let mut r = Router::new(&c);
        let guest = ip6("fec0::5054:ff:fe12:3456");
        let pkt = Incoming {
            eth_src: [2, 0, 0, 0, 0, 9], // the SLLA option wins
            src: guest,
            dst: ip6("ff02::1:ff00:2"),
            hop_limit: 255,
        };
        let f = run(&mut r, &c, pkt, &ns(ip6("fec0::2"), true), Instant::now());
        let (dmac, smac, ip, icmp) = split(&f);
        assert_eq!((dmac, smac), (GUEST_MAC, ROUTER_MAC));
        assert_eq!((ip.src, ip.dst, ip.hop_limit), (ip6("fec0::2"), guest, 255));
        // R, S, O; target fec0::2; target link-layer 52:56:00:00:00:02.
        let mut want = hex("8800 0000 e0000000 fec00000000000000000000000000002 0201525600000002");
        icmpv6::Packet::new_checked(&mut want[..])
            .unwrap()
            .fill_checksum(ip.src, ip.dst);
        assert_eq!(icmp, &want[..]);

        // The DNS address and the link-local router, each with its own MAC.
        for (t, mac) in [
            ("fec0::3", [0x52, 0x56, 0, 0, 0, 3]),
            ("fe80::2", ROUTER_MAC),
            ("fec0::1:99", [0x52, 0x56, 0, 1, 0, 0x99]),
        ] {
            let pkt = Incoming {
                eth_src: GUEST_MAC,
                src: guest_ll(),
                dst: ip6(t), // unicast reachability probe
                hop_limit: 255,
            };
            let f = run(&mut r, &c, pkt, &ns(ip6(t), false), Instant::now());
            let (dmac, smac, ip, icmp) = split(&f);
            assert_eq!(
                (dmac, smac, ip.src, ip.dst),
                (GUEST_MAC, mac, ip6(t), guest_ll())
            );
            assert_eq!(&icmp[24..], &[&[2u8, 1][..], &mac[..]].concat()[..]);
        }
    }

    #[test]
    fn duplicate_address_detection() {
        let c = Config::for_test(&[]);
        let mut r = Router::new(&c);
        let now = Instant::now();
        let dad = |t: Ipv6Addr| Incoming {
            eth_src: GUEST_MAC,
            src: Ipv6Addr::UNSPECIFIED,
            dst: solicited_node(t),
            hop_limit: 255,
        };
        // The guest's own tentative addresses: no answer, ever.
        for t in [
            "fec0::5054:ff:fe12:3456",
            "fec0::15",
            "fec0::77",
            "fe80::5054:ff:fe12:3456",
        ] {
            assert!(
                run(&mut r, &c, dad(ip6(t)), &ns(ip6(t), false), now).is_empty(),
                "{t}"
            );
        }
        // fec0::77 is the guest's now: not answered for later either.
        let probe = Incoming {
            eth_src: GUEST_MAC,
            src: guest_ll(),
            dst: solicited_node(ip6("fec0::77")),
            hop_limit: 255,
        };
        assert!(run(&mut r, &c, probe, &ns(ip6("fec0::77"), true), now).is_empty());
        // A claim on an address airlock holds is a real conflict: defended,
        // to all nodes, not solicited.
        let f = run(
            &mut r,
            &c,
            dad(ip6("fec0::2")),
            &ns(ip6("fec0::2"), false),
            now,
        );
        let (dmac, _, ip, icmp) = split(&f);
        assert_eq!((dmac, ip.dst), (multicast_mac(ALL_NODES), ALL_NODES));
        assert_eq!(
            icmp[4],
            ndp::NEIGHBOR_FLAG_ROUTER | ndp::NEIGHBOR_FLAG_OVERRIDE
        );
    }

    #[test]
    fn rejects() {
        let c = Config::for_test(&[]);
        let mut r = Router::new(&c);
        let now = Instant::now();
        let good = Incoming {
            eth_src: GUEST_MAC,
            src: guest_ll(),
            dst: ip6("ff02::1:ff00:2"),
            hop_limit: 255,
        };
        let msg = ns(ip6("fec0::2"), true);
        assert!(!run(&mut r, &c, good, &msg, now).is_empty());
        let cases = [
            Incoming {
                hop_limit: 64,
                ..good
            },
            // Solicited-node group of another address.
            Incoming {
                dst: ip6("ff02::1:ff00:3"),
                ..good
            },
            // DAD with a source link-layer option.
            Incoming {
                src: Ipv6Addr::UNSPECIFIED,
                ..good
            },
            Incoming {
                src: ip6("ff02::1"),
                ..good
            },
        ];
        for p in cases {
            assert!(run(&mut r, &c, p, &msg, now).is_empty(), "{p:?}");
        }
        // Not a virtual address.
        let off = ns(ip6("2001:db8::1"), true);
        let p = Incoming {
            dst: solicited_node(ip6("2001:db8::1")),
            ..good
        };
        assert!(run(&mut r, &c, p, &off, now).is_empty());
        // RS with hop limit 64, or to a unicast address not airlock's.
        let rs = hex("8500 0000 00000000");
        let p = Incoming {
            hop_limit: 64,
            ..rs_from(guest_ll())
        };
        assert!(run(&mut r, &c, p, &rs, now).is_empty());
        let p = Incoming {
            dst: ip6("fec0::15"),
            ..rs_from(guest_ll())
        };
        assert!(run(&mut r, &c, p, &rs, now).is_empty());
        // Bad checksum.
        let mut buf = vec![0u8; 512];
        let mut counters = Counters::default();
        assert_eq!(r.answer(&c, &good, &msg, now, &mut buf, &mut counters), 0);
        assert_eq!(counters.ndp_malformed, 1);
    }

    #[test]
    fn silent_without_ipv6() {
        let c = Config::for_test(&["--disable-ipv6"]);
        let mut r = Router::new(&c);
        let f = run(
            &mut r,
            &c,
            rs_from(guest_ll()),
            &hex("8500 0000 00000000"),
            Instant::now(),
        );
        assert!(f.is_empty());
        assert!(!r.due(Instant::now() + MAX_RTR_ADV_INTERVAL * 2));
    }

    #[test]
    fn long_search_lists_are_cut_to_fit() {
        let many: Vec<String> = (0..40)
            .map(|i| format!("{i:03}.{}", "x".repeat(60)))
            .collect();
        let fit = fitting_names(&many, MAX_OPTION_LEN - 8);
        assert!(!fit.is_empty() && fit.len() < many.len());
        let list = many.join(",");
        let c = Config::for_test(&["--dns-suffixes", &list]);
        let r = Router::new(&c);
        let last = ndp::OptionsIter::Wire(&r.ra_options)
            .last()
            .unwrap()
            .unwrap();
        assert!(matches!(last, NdpOption::Dnssl { .. }), "{last:?}");
    }

    #[test]
    fn no_panic_on_any_input() {
        let c = Config::for_test(&[]);
        let mut r = Router::new(&c);
        let now = Instant::now();
        let goldens = [
            hex("8500 0000 00000000 0101525400123456"),
            ns(ip6("fec0::2"), true),
        ];
        let mut out = vec![0u8; 2048];
        let mut counters = Counters::default();
        fuzz(&[&goldens[0], &goldens[1]], 3000, 120, |b| {
            for src in [guest_ll(), Ipv6Addr::UNSPECIFIED] {
                let pkt = Incoming {
                    eth_src: GUEST_MAC,
                    src,
                    dst: ip6("ff02::1:ff00:2"),
                    hop_limit: 255,
                };
                if let Ok(mut p) = icmpv6::Packet::new_checked(&mut *b) {
                    p.fill_checksum(pkt.src, pkt.dst);
                }
                let n = r.answer(&c, &pkt, b, now, &mut out, &mut counters);
                assert!(n <= out.len());
            }
        });
    }
}
