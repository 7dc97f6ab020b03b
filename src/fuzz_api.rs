//! Fuzzing entry points (cargo feature `fuzzing`, off in the product
//! build): one `pub fn` per cargo-fuzz target in `fuzz/`,
//! shared with `tests/fuzz_replay.rs`, which replays every committed
//! corpus and regression input through the same function under plain
//! `cargo test`. See `docs/fuzzing.md`.
//!
//! Each function takes the fuzzer's bytes and panics only when airlock
//! breaks a promise: a parser panicked, a parse/emit round trip changed a
//! value, a frame airlock sent does not verify with its own parsers, the
//! STREAM de-framer disagrees with a reference model, the flow table grew
//! past its bound. Rejecting garbage is normal and silent.
//!
//! Network safety: the stack targets build a [`Stack`] with
//! [`safe_config`] (`--restrict --disable-host-loopback --disable-dns`, no
//! forwards, no upstream resolver), under which `nat::outbound` refuses
//! every destination, so no host socket is ever opened; [`safe_config`]
//! asserts that, and the fuzz harness additionally moves the process into
//! an empty network namespace.
//!
//! The airlock binary never calls this module. It carries no `#syscalls:`
//! line on purpose: what it uses (socketpair, send/recv on the VMM side of
//! the pair) must not widen the production seccomp filter.
#![forbid(unsafe_code)]

use crate::cli::Options;
use crate::config::Config;
use crate::link::{Closed, Kind, Link, Recv, Tx, MAX_FRAME, MIN_FRAME};
use crate::poller::{Poller, Token};
use crate::stack::Stack;
use crate::wire::checksum::PseudoHeader;
use crate::wire::{
    self, arp, dhcpv4, dhcpv6, domain, ethernet, ethertype, icmpv4, icmpv6, ip_proto, ipv4, ipv6,
    ndp, tcp, udp, Mac,
};
use clap::Parser;
use nix::sys::epoll::EpollFlags;
use std::ffi::OsStr;
use std::io::{ErrorKind, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// A tiny `arbitrary::Unstructured`: the engine grammar decodes the fuzzer's
// bytes with it, so corpus files replay identically without the `arbitrary`
// crate in the main package. Past the end every read yields zeros.

/// A cursor that turns bytes into choices.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    /// Up to `max` bytes, length first.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let want = usize::from(self.u16()) % (max + 1);
        let n = want.min(self.data.len());
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        b
    }
    /// One of `items`.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[usize::from(self.u8()) % items.len()]
    }
}

// ---------------------------------------------------------------------------
// Checksum fix-up: random bytes almost never carry a valid checksum, so the
// frame-level targets let the first input byte ask for the checksums to be
// made right, which lets the fuzzer reach past the checksum gates.

/// Rewrite the IPv4 header checksum and the TCP/UDP/ICMP checksum of an
/// Ethernet frame in place, where the lengths allow.
pub fn fix_checksums(frame: &mut [u8]) {
    set_checksums(frame, true);
}

/// [`fix_checksums`] if `fix`, else zero those checksums (a frame whose
/// checksums were left out).
fn set_checksums(frame: &mut [u8], fix: bool) {
    let Ok(mut eth) = ethernet::Frame::new_checked(&mut frame[..]) else {
        return;
    };
    match eth.ethertype() {
        ethertype::IPV4 => {
            let Ok(mut ip) = ipv4::Packet::new_checked(eth.payload_mut()) else {
                return;
            };
            if fix {
                ip.fill_checksum();
            } else {
                ip.set_checksum(0);
            }
            let pseudo = PseudoHeader::V4 {
                src: ip.src(),
                dst: ip.dst(),
            };
            let proto = ip.protocol();
            set_l4_checksum(proto, &pseudo, ip.payload_mut(), fix);
        }
        ethertype::IPV6 => {
            let Ok(mut ip) = ipv6::Packet::new_checked(eth.payload_mut()) else {
                return;
            };
            let Ok(ext) = ip.extensions() else { return };
            if ext.fragment.is_some() {
                return;
            }
            let pseudo = PseudoHeader::V6 {
                src: ip.src(),
                dst: ip.dst(),
            };
            if let Some(l4) = ip.payload_mut().get_mut(ext.offset..) {
                set_l4_checksum(ext.next_header, &pseudo, l4, fix);
            }
        }
        _ => {}
    }
}

fn set_l4_checksum(proto: u8, pseudo: &PseudoHeader, l4: &mut [u8], fix: bool) {
    match proto {
        ip_proto::TCP => {
            if let Ok(mut t) = tcp::Packet::new_checked(l4) {
                if fix {
                    t.fill_checksum(pseudo);
                } else {
                    t.set_checksum(0);
                }
            }
        }
        ip_proto::UDP => {
            if let Ok(mut u) = udp::Packet::new_checked(l4) {
                if fix {
                    u.fill_checksum(pseudo);
                } else {
                    u.set_checksum(0);
                }
            }
        }
        ip_proto::ICMP => {
            if let Ok(mut i) = icmpv4::Packet::new_checked(l4) {
                if fix {
                    i.fill_checksum();
                } else {
                    i.set_checksum(0);
                }
            }
        }
        ip_proto::ICMPV6 => {
            if let (Ok(mut i), PseudoHeader::V6 { src, dst }) =
                (icmpv6::Packet::new_checked(l4), pseudo)
            {
                if fix {
                    i.fill_checksum(*src, *dst);
                } else {
                    i.set_checksum(0);
                }
            }
        }
        _ => {}
    }
}

/// IPv6 source and destination from the first 32 bytes of `data`, and the rest.
fn addrs_v6(data: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, &[u8])> {
    let (a, rest) = data.split_first_chunk::<16>()?;
    let (b, rest) = rest.split_first_chunk::<16>()?;
    Some((Ipv6Addr::from(*a), Ipv6Addr::from(*b), rest))
}

/// A pseudo header from the first 8 bytes of `data` (IPv4 source and
/// destination), and the rest.
fn pseudo_v4(data: &[u8]) -> Option<(PseudoHeader, &[u8])> {
    let (a, rest) = data.split_first_chunk::<8>()?;
    Some((
        PseudoHeader::V4 {
            src: Ipv4Addr::new(a[0], a[1], a[2], a[3]),
            dst: Ipv4Addr::new(a[4], a[5], a[6], a[7]),
        },
        rest,
    ))
}

/// What follows the mode byte that starts `data`, copied; `fill` fixes
/// up its checksum first when the mode's bit 0 asks for it.
fn checksum_fixed(data: &[u8], fill: impl FnOnce(&mut [u8])) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    let mut buf = rest.to_vec();
    if mode & 1 == 1 {
        fill(&mut buf);
    }
    Some(buf)
}

// ---------------------------------------------------------------------------
// Parser targets.

/// Ethernet header: parse, and a parse/emit round trip.
pub fn ethernet(data: &[u8]) {
    let Ok(f) = ethernet::Frame::new_checked(data) else {
        assert!(data.len() < ethernet::HEADER_LEN);
        return;
    };
    let r = ethernet::Repr::parse(&f).expect("a checked frame parses");
    assert_eq!(f.payload().len(), data.len() - ethernet::HEADER_LEN);
    let mut out = [0u8; ethernet::HEADER_LEN];
    assert_eq!(r.emit(&mut out), Ok(ethernet::HEADER_LEN));
    assert_eq!(&out[..], &data[..ethernet::HEADER_LEN]);
}

/// ARP: parse; what parses emits the same 28 bytes back.
pub fn arp(data: &[u8]) {
    let Ok(p) = arp::Packet::new_checked(data) else {
        return;
    };
    let _ = (p.operation(), p.sender_mac(), p.target_ip());
    let Ok(r) = arp::Repr::parse(&p) else { return };
    let mut out = [0u8; 28];
    assert_eq!(r.emit(&mut out), Ok(r.buffer_len()));
    let back = arp::Repr::parse(&arp::Packet::new_checked(&out[..]).expect("own ARP"));
    assert_eq!(back, Ok(r));
}

/// IPv4 header: the first byte asks for a checksum fix-up; a header that
/// parses re-emits (without options) to one that parses to the same value.
pub fn ipv4(data: &[u8]) {
    let Some(buf) = checksum_fixed(data, |b| {
        if let Ok(mut p) = ipv4::Packet::new_checked(b) {
            p.fill_checksum();
        }
    }) else {
        return;
    };
    let Ok(p) = ipv4::Packet::new_checked(&buf[..]) else {
        return;
    };
    let _ = (p.options(), p.is_fragment(), p.dscp(), p.ecn());
    assert!(p.header_len() <= p.total_len() as usize);
    assert!(p.payload().len() + p.header_len() == p.total_len() as usize);
    let Ok(r) = ipv4::Repr::parse(&p) else { return };
    let mut out = vec![0u8; ipv4::HEADER_LEN + usize::from(r.payload_len)];
    if r.emit(&mut out) == Ok(ipv4::HEADER_LEN) {
        let q = ipv4::Packet::new_checked(&out[..]).expect("own header is well formed");
        assert_eq!(ipv4::Repr::parse(&q), Ok(r));
    }
}

/// TCP options alone: the iterator ends, never loops, consumes in order;
/// what the Repr keeps emits and reads back the same.
pub fn tcp_options(data: &[u8]) {
    let opts = data.get(..tcp::MAX_OPTIONS_LEN).unwrap_or(data);
    let mut n = 0;
    for o in tcp::OptionsIter::new(opts) {
        n += 1;
        assert!(n <= opts.len(), "options iterator does not advance");
        if let Ok(tcp::TcpOption::Unknown { data, .. }) = o {
            assert!(data.len() <= opts.len());
        }
    }
    // Through a whole header, so Repr::parse sees them.
    let hl = tcp::HEADER_LEN + opts.len().div_ceil(4) * 4;
    let mut seg = vec![0u8; hl];
    seg[tcp::HEADER_LEN..][..opts.len()].copy_from_slice(opts);
    let pseudo = PseudoHeader::V4 {
        src: Ipv4Addr::new(10, 0, 2, 15),
        dst: Ipv4Addr::new(10, 0, 2, 2),
    };
    let syn = tcp::Repr {
        src_port: 0x1234,
        dst_port: 80,
        flags: tcp::flags::SYN,
        payload_len: hl - tcp::HEADER_LEN,
        ..tcp::Repr::default()
    };
    syn.emit(&mut seg, &pseudo).expect("room for the header");
    let mut p = tcp::Packet::new_checked(&mut seg[..]).expect("built header");
    p.set_header_len(hl);
    p.fill_checksum(&pseudo);
    let p = tcp::Packet::new_checked(&seg[..]).expect("built header");
    let r = tcp::Repr::parse(&p, &pseudo).expect("valid checksum and ports");
    tcp_round_trip(&r, p.payload(), &pseudo);
}

/// Emit `r` with `payload` and check it parses back to `r` (when the
/// options fit in a header at all).
fn tcp_round_trip(r: &tcp::Repr, payload: &[u8], pseudo: &PseudoHeader) {
    let Ok(opts) = r.emit_options(&mut [0u8; tcp::MAX_OPTIONS_LEN]) else {
        return;
    };
    assert_eq!(opts % 4, 0, "options are padded to 32 bits");
    let hl = r.header_len();
    let mut out = vec![0u8; hl + payload.len()];
    out[hl..].copy_from_slice(payload);
    assert_eq!(r.emit(&mut out, pseudo), Ok(hl + payload.len()));
    let q = tcp::Packet::new_checked(&out[..]).expect("own segment is well formed");
    let back = tcp::Repr::parse(&q, pseudo).expect("own segment verifies");
    assert_eq!(&back, r);
    assert_eq!(q.payload(), payload);
}

/// A TCP segment: 8 bytes of pseudo header, a mode byte (bit 0: fix the
/// checksum), then the segment.
pub fn tcp(data: &[u8]) {
    let Some((pseudo, rest)) = pseudo_v4(data) else {
        return;
    };
    let Some(buf) = checksum_fixed(rest, |b| {
        if let Ok(mut p) = tcp::Packet::new_checked(b) {
            p.fill_checksum(&pseudo);
        }
    }) else {
        return;
    };
    let Ok(p) = tcp::Packet::new_checked(&buf[..]) else {
        return;
    };
    assert!(p.header_len() >= tcp::HEADER_LEN && p.header_len() <= buf.len());
    assert_eq!(p.header_len() + p.payload().len(), buf.len());
    for _ in p.options_iter() {}
    let Ok(r) = tcp::Repr::parse(&p, &pseudo) else {
        return;
    };
    assert_eq!(r.payload_len, p.payload().len());
    tcp_round_trip(&r, p.payload(), &pseudo);
}

/// A UDP datagram: pseudo header, mode byte, datagram.
pub fn udp(data: &[u8]) {
    let Some((pseudo, rest)) = pseudo_v4(data) else {
        return;
    };
    let Some(buf) = checksum_fixed(rest, |b| {
        if let Ok(mut p) = udp::Packet::new_checked(b) {
            p.fill_checksum(&pseudo);
        }
    }) else {
        return;
    };
    let Ok(p) = udp::Packet::new_checked(&buf[..]) else {
        return;
    };
    assert_eq!(p.datagram().len(), usize::from(p.len()));
    let Ok(r) = udp::Repr::parse(&p, &pseudo) else {
        return;
    };
    let mut out = vec![0u8; r.buffer_len()];
    out[udp::HEADER_LEN..].copy_from_slice(p.payload());
    assert_eq!(r.emit(&mut out, &pseudo), Ok(r.buffer_len()));
    let q = udp::Packet::new_checked(&out[..]).expect("own datagram");
    assert_eq!(udp::Repr::parse(&q, &pseudo), Ok(r));
    assert_eq!(q.payload(), p.payload());
}

/// ICMPv4: mode byte, message. Errors' quoted datagrams are parsed too;
/// what parses re-emits byte for byte.
pub fn icmpv4(data: &[u8]) {
    let Some(buf) = checksum_fixed(data, |b| {
        if let Ok(mut p) = icmpv4::Packet::new_checked(b) {
            p.fill_checksum();
        }
    }) else {
        return;
    };
    let Ok(p) = icmpv4::Packet::new_checked(&buf[..]) else {
        return;
    };
    let _ = (p.next_hop_mtu(), p.data());
    let Ok(r) = icmpv4::Repr::parse(&p) else {
        return;
    };
    if let icmpv4::Repr::DstUnreachable { quoted, .. } | icmpv4::Repr::TimeExceeded { quoted, .. } =
        r
    {
        if let Ok(q) = icmpv4::Quoted::parse(quoted) {
            assert!(q.header.len() >= ipv4::HEADER_LEN);
            assert!(q.header.len() + q.payload.len() <= quoted.len());
        }
    }
    let mut out = vec![0u8; r.buffer_len()];
    assert_eq!(r.emit(&mut out), Ok(buf.len()));
    // Type, code and data come back; of the second word only what the
    // Repr keeps (all of it for echo messages).
    assert_eq!(out[..2], buf[..2]);
    assert_eq!(out[8..], buf[8..]);
    if let icmpv4::Repr::EchoRequest { .. } | icmpv4::Repr::EchoReply { .. } = r {
        assert_eq!(out[4..8], buf[4..8]);
    }
    let q = icmpv4::Packet::new_checked(&out[..]).expect("own message");
    assert!(icmpv4::Repr::parse(&q).is_ok());
}

/// A DHCPv4 client message: parse; then answer it through the reply
/// emitter with options made from the input, and check the reply's
/// options read back whole, RFC 3396 splits included.
pub fn dhcpv4(data: &[u8]) {
    let Ok(p) = dhcpv4::Packet::new_checked(data) else {
        return;
    };
    let _ = (p.sname(), p.file(), p.client_mac(), p.find_option(53));
    for _ in p.options_iter() {}
    for o in dhcpv4::OptionsIter::new(p.options()).flatten() {
        if o.code == dhcpv4::opt::DOMAIN_SEARCH {
            for n in domain::NameIter::new(o.data).flatten() {
                let mut s = [0u8; 256];
                let _ = n.write_dotted(&mut s);
                let _ = n.eq_dotted("example.org");
            }
        }
    }
    let Ok(r) = dhcpv4::Repr::parse(&p) else {
        return;
    };
    // Names and routes from whatever the client sent.
    let host = r
        .hostname
        .and_then(|h| std::str::from_utf8(h).ok())
        .unwrap_or("guest");
    let names: Vec<&str> = host.split(',').take(8).collect();
    let routes: Vec<dhcpv4::Route> = r
        .parameter_request_list
        .unwrap_or(&[])
        .chunks(9)
        .map(|c| dhcpv4::Route {
            dest: Ipv4Addr::new(c[0], *c.get(1).unwrap_or(&0), 0, 0),
            prefix_len: *c.get(2).unwrap_or(&0),
            gateway: Ipv4Addr::new(10, 0, 2, 2),
        })
        .collect();
    let reply = dhcpv4::Reply {
        message_type: dhcpv4::MessageType::Offer,
        xid: r.xid,
        broadcast: r.broadcast,
        ciaddr: r.ciaddr,
        yiaddr: Ipv4Addr::new(10, 0, 2, 15),
        siaddr: Ipv4Addr::new(10, 0, 2, 2),
        giaddr: r.giaddr,
        client_mac: r.client_mac,
    };
    let options = [
        dhcpv4::OptionRepr::Hostname(host),
        dhcpv4::OptionRepr::DomainSearch(&names),
        dhcpv4::OptionRepr::ClasslessRoutes(&routes),
        dhcpv4::OptionRepr::Raw {
            code: 224,
            data: r.client_id.unwrap_or(&[]),
        },
    ];
    let mut out = vec![0u8; 1500];
    let Ok(n) = reply.emit(&mut out, &options) else {
        return;
    };
    assert!((dhcpv4::MIN_MESSAGE_LEN..=out.len()).contains(&n));
    assert_eq!(reply.buffer_len(&options), Ok(n));
    let q = dhcpv4::Packet::new_checked(&out[..n]).expect("own reply");
    let mut hostname = Vec::new();
    for o in q.options_iter() {
        let o = o.expect("own options are well formed");
        if o.code == dhcpv4::opt::HOSTNAME {
            hostname.extend_from_slice(o.data);
        }
    }
    assert_eq!(hostname, host.as_bytes(), "RFC 3396 split reassembles");
}

/// IPv6 header and extension-header walk: mode byte (bit 0: the walk
/// starts from the next-header byte that follows instead of the header's),
/// then the packet. The walk stays inside the payload; a header that
/// parses re-emits to the same value.
pub fn ipv6(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 1 {
        if let Some((&first, payload)) = rest.split_first() {
            if let Ok(e) = ipv6::walk_extensions(first, payload) {
                assert!(e.offset <= payload.len());
            }
        }
        return;
    }
    let Ok(p) = ipv6::Packet::new_checked(rest) else {
        return;
    };
    assert_eq!(p.payload().len(), usize::from(p.payload_len()));
    if let Ok(e) = p.extensions() {
        assert!(
            e.offset <= p.payload().len(),
            "extension walk ran past the payload"
        );
        if let Some(f) = e.fragment {
            assert_eq!(f.offset % 8, 0);
        }
    }
    let Ok(r) = ipv6::Repr::parse(&p) else { return };
    let mut out = [0u8; ipv6::HEADER_LEN];
    assert_eq!(r.emit(&mut out), Ok(ipv6::HEADER_LEN));
    let mut whole = out.to_vec();
    whole.extend_from_slice(p.payload());
    let q = ipv6::Packet::new_checked(&whole[..]).expect("own header");
    assert_eq!(ipv6::Repr::parse(&q), Ok(r));
}

/// ICMPv6 echo and errors: 32 bytes of source and destination, a mode
/// byte (bit 0: fix the checksum), the message.
pub fn icmpv6(data: &[u8]) {
    let Some((src, dst, buf)) = icmpv6_input(data) else {
        return;
    };
    let Ok(p) = icmpv6::Packet::new_checked(&buf[..]) else {
        return;
    };
    let _ = (p.mtu(), p.word(), p.data());
    let Ok(r) = icmpv6::Repr::parse(&p, src, dst) else {
        return;
    };
    let mut out = vec![0u8; r.buffer_len()];
    assert_eq!(r.emit(&mut out, src, dst), Ok(buf.len()));
    assert_eq!(out[..2], buf[..2]);
    assert_eq!(out[8..], buf[8..]);
    if let icmpv6::Repr::EchoRequest { .. }
    | icmpv6::Repr::EchoReply { .. }
    | icmpv6::Repr::PacketTooBig { .. } = r
    {
        assert_eq!(out[4..8], buf[4..8]);
    }
    let q = icmpv6::Packet::new_checked(&out[..]).expect("own message");
    assert_eq!(icmpv6::Repr::parse(&q, src, dst), Ok(r));
}

/// 32 bytes of source and destination, then a mode byte and an ICMPv6
/// message (checksum fixed up as the mode says).
fn icmpv6_input(data: &[u8]) -> Option<(Ipv6Addr, Ipv6Addr, Vec<u8>)> {
    let (src, dst, rest) = addrs_v6(data)?;
    let buf = checksum_fixed(rest, |b| {
        if let Ok(mut p) = icmpv6::Packet::new_checked(b) {
            p.fill_checksum(src, dst);
        }
    })?;
    Some((src, dst, buf))
}

/// Neighbour discovery: addresses, mode byte, message as for [`icmpv6`].
/// What parses re-emits to the same message, and each option re-emits
/// on its own to the same option.
pub fn ndp(data: &[u8]) {
    let Some((src, dst, buf)) = icmpv6_input(data) else {
        return;
    };
    let Ok(p) = icmpv6::Packet::new_checked(&buf[..]) else {
        return;
    };
    let Ok(r) = ndp::Repr::parse(&p, src, dst) else {
        return;
    };
    let opts = match r {
        ndp::Repr::RouterSolicit { options }
        | ndp::Repr::RouterAdvert { options, .. }
        | ndp::Repr::NeighborSolicit { options, .. }
        | ndp::Repr::NeighborAdvert { options, .. } => options,
    };
    let _ = (opts.source_lladdr(), opts.target_lladdr());
    let mut one = [0u8; 256 * 8];
    for o in opts.iter() {
        let o = o.expect("parse checked every option");
        if let ndp::NdpOption::Rdnss { servers, .. } = o {
            assert_eq!(servers.iter().count(), servers.len());
        }
        let n = o.emit(&mut one).expect("a parsed option re-emits");
        assert_eq!(n % 8, 0);
        let mut back = ndp::Options::Wire(&one[..n]).iter();
        assert_eq!(back.next(), Some(Ok(o)));
        assert_eq!(back.next(), None);
    }
    let n = r.buffer_len().expect("parsed message has a length");
    let mut out = vec![0u8; n];
    assert_eq!(r.emit(&mut out, src, dst), Ok(n));
    let q = icmpv6::Packet::new_checked(&out[..]).expect("own message");
    assert_eq!(ndp::Repr::parse(&q, src, dst), Ok(r));
}

/// A DHCPv6 client message: parse; answer through the reply emitter with
/// the client's own ids, IA_NA and addresses; the reply parses back to
/// the same values.
pub fn dhcpv6(data: &[u8]) {
    let Ok(p) = dhcpv6::Packet::new_checked(data) else {
        return;
    };
    for _ in p.options_iter() {}
    let Ok(r) = dhcpv6::Repr::parse(&p) else {
        return;
    };
    let _ = r.requests(dhcpv6::opt::DNS_SERVERS);
    let addrs: Vec<dhcpv6::IaAddress> = r.ia_na.iter().flat_map(|ia| ia.addresses()).collect();
    let names_text = r
        .client_id
        .and_then(|c| std::str::from_utf8(c).ok())
        .unwrap_or("example.org");
    let names: Vec<&str> = names_text.split(',').take(8).collect();
    let dns = [Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 3)];
    let client_id = r.client_id.unwrap_or(&[]);
    let mut options = vec![
        dhcpv6::OptionRepr::ServerId(&[0, 3, 0, 1, 0x52, 0x56, 0, 0, 0, 2]),
        dhcpv6::OptionRepr::ClientId(client_id),
        dhcpv6::OptionRepr::DnsServers(&dns),
        dhcpv6::OptionRepr::DomainList(&names),
    ];
    if let Some(ia) = r.ia_na {
        options.push(dhcpv6::OptionRepr::IaNa {
            iaid: ia.iaid,
            t1: ia.t1,
            t2: ia.t2,
            addresses: &addrs,
            status: Some((0, names_text)),
        });
    }
    let reply = dhcpv6::Reply {
        msg_type: dhcpv6::MessageType::Reply,
        transaction_id: r.transaction_id,
    };
    let mut out = vec![0u8; 70_000];
    let Ok(n) = reply.emit(&mut out, &options) else {
        return;
    };
    let q = dhcpv6::Packet::new_checked(&out[..n]).expect("own reply");
    let back = dhcpv6::Repr::parse(&q).expect("own reply parses");
    assert_eq!(back.transaction_id, r.transaction_id);
    assert_eq!(back.client_id, Some(client_id));
    match (r.ia_na, back.ia_na) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            assert_eq!((a.iaid, a.t1, a.t2), (b.iaid, b.t1, b.t2));
            assert!(b.addresses().eq(addrs.iter().copied()));
        }
        other => panic!("IA_NA changed: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// The STREAM de-framer, against a reference model.

/// What a correct de-framer makes of `bytes`: the frames, and the bad
/// length it stops at, if any.
fn deframe_model(bytes: &[u8]) -> (Vec<&[u8]>, Option<u32>) {
    let mut frames = Vec::new();
    let mut rest = bytes;
    while let Some((len, after)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len);
        if (len as usize) < MIN_FRAME || len as usize > MAX_FRAME {
            return (frames, Some(len));
        }
        let Some((frame, next)) = after.split_at_checked(len as usize) else {
            break;
        };
        frames.push(frame);
        rest = next;
    }
    (frames, None)
}

/// Chunks of bytes written by the "VMM" to a SOCK_STREAM socketpair and
/// read by [`Link::recv`], which must deliver exactly the frames the model
/// finds, in order, and stop with `Closed::Framing` exactly where it does.
/// Input: `len:u16, bytes` chunks (see [`Input::bytes`]).
pub fn stream_deframe(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut chunks = Vec::new();
    while !inp.is_empty() && chunks.len() < 64 {
        chunks.push(inp.bytes(70_000));
    }
    stream_deframe_chunks(&chunks);
}

/// [`stream_deframe`] with the chunks given.
pub fn stream_deframe_chunks(chunks: &[&[u8]]) {
    let all: Vec<u8> = chunks.concat();
    let (want, bad) = deframe_model(&all);
    let (mut vmm, ours) = UnixStream::pair().expect("socketpair");
    vmm.set_nonblocking(true).expect("nonblocking");
    let mut link = Link::new(OwnedFd::from(ours), Kind::Stream).expect("link");
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut closed = None;
    /// Read until drained; the bad length if the link gave up.
    fn pump(link: &mut Link, got: &mut Vec<Vec<u8>>) -> Option<u32> {
        loop {
            match link.recv(|f, _, _| got.push(f.to_vec())) {
                Ok(Recv::More) => continue,
                Ok(Recv::Drained) => return None,
                Err(Closed::Framing(n)) => return Some(n),
                Err(e) => panic!("unexpected link end: {e}"),
            }
        }
    }
    'outer: for c in chunks {
        let mut c: &[u8] = c;
        while !c.is_empty() {
            match vmm.write(c) {
                Ok(n) => c = &c[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
            if let Some(n) = pump(&mut link, &mut got) {
                closed = Some(n);
                break 'outer;
            }
        }
    }
    assert_eq!(got.len(), want.len(), "frame count");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(&g[..], *w);
    }
    assert_eq!(closed, bad, "framing error");
    assert_eq!(link.tx.stats.rx_frames, want.len() as u64);
}

// ---------------------------------------------------------------------------
// Options and port specs.

/// Command-line arguments, NUL-separated, through clap and
/// [`Config::from_options`]; a NUL-NUL separates a resolv.conf text.
/// Errors are fine; a resolved configuration must be self-consistent.
pub fn options(data: &[u8]) {
    let (args, resolv) = match data.windows(2).position(|w| w == [0, 0]) {
        Some(i) => (&data[..i], Some(&data[i + 2..])),
        None => (data, None),
    };
    let mut argv = vec![OsStr::new("airlock")];
    argv.extend(args.split(|&b| b == 0).take(64).map(OsStr::from_bytes));
    let Ok(o) = Options::try_parse_from(argv) else {
        return;
    };
    let resolv = resolv.map(String::from_utf8_lossy);
    let Ok(cfg) = Config::from_options(&o, resolv.as_deref()) else {
        return;
    };
    assert!((576..=65520).contains(&cfg.mtu));
    assert!(cfg.max_flows >= 1);
    if let Some(n) = &cfg.net4 {
        assert!(n.prefix <= 30);
        for a in [n.guest, n.host, n.dns] {
            assert!(n.contains(a), "{a} outside {}/{}", n.network, n.prefix);
        }
        assert_ne!(n.guest, n.host);
    }
    if let Some(n) = &cfg.net6 {
        assert!(n.contains(n.host) && n.contains(n.dns));
    }
    for f in &cfg.forwards {
        assert_ne!(f.bind.port(), 0);
        assert_ne!(f.guest_port, 0);
    }
}

// ---------------------------------------------------------------------------
// The stack: whole frames through `Stack::on_frame`, and the engine grammar.

/// The only configuration the stack targets run with: nothing reaches the
/// host. Panics if a change to the option handling ever makes it unsafe.
pub fn safe_config(max_flows: usize) -> Config {
    // Parsed once per process: clap is slow next to a frame.
    static BASE: OnceLock<Config> = OnceLock::new();
    let mut cfg = BASE.get_or_init(|| parse_safe_config(1)).clone();
    cfg.max_flows = max_flows.max(1);
    cfg
}

fn parse_safe_config(max_flows: usize) -> Config {
    let max = max_flows.to_string();
    let o = Options::try_parse_from([
        "airlock",
        "--restrict",
        "--disable-host-loopback",
        "--disable-dns",
        "--max-flows",
        &max,
    ])
    .expect("fixed options");
    let cfg = Config::from_options(&o, None).expect("fixed options resolve");
    assert!(cfg.restrict && !cfg.host_loopback && !cfg.dns_forward);
    assert!(cfg.dns_upstream.is_empty() && cfg.forwards.is_empty());
    cfg
}

/// A [`Stack`] wired to a DGRAM socketpair: the stack's side is a real
/// [`Link`] (so its [`Tx`] flushes with `sendmmsg`), the other side is
/// read back and every frame verified.
pub struct Harness {
    pub stack: Stack,
    pub link: Link,
    vmm: UnixDatagram,
    pub now: Instant,
    buf: Vec<u8>,
    /// Frames and bytes airlock sent, in total.
    pub sent_frames: usize,
    pub sent_bytes: usize,
}

impl Harness {
    pub fn new(max_flows: usize) -> Harness {
        let cfg = safe_config(max_flows);
        let poller = Poller::new().expect("epoll");
        let (vmm, ours) = UnixDatagram::pair().expect("socketpair");
        vmm.set_nonblocking(true).expect("nonblocking");
        let link = Link::new(OwnedFd::from(ours), Kind::Dgram).expect("link");
        Harness {
            stack: Stack::new(cfg, poller),
            link,
            vmm,
            now: Instant::now(),
            buf: vec![0u8; MAX_FRAME + 1],
            sent_frames: 0,
            sent_bytes: 0,
        }
    }

    pub fn tx(&mut self) -> &mut Tx {
        &mut self.link.tx
    }

    /// One guest frame, as the link would deliver it.
    pub fn frame(&mut self, frame: &[u8]) {
        if frame.len() < MIN_FRAME || frame.len() > MAX_FRAME {
            return;
        }
        self.stack.on_frame(frame, &mut self.link.tx, self.now);
    }

    /// Flush airlock's queue and verify everything it sent; returns how
    /// many frames and bytes arrived.
    pub fn drain(&mut self) -> (usize, usize) {
        self.link.tx.flush();
        assert!(self.link.tx.closed().is_none(), "link closed");
        let (mut frames, mut bytes) = (0, 0);
        loop {
            match self.vmm.recv(&mut self.buf) {
                Ok(n) => {
                    assert!(n <= MAX_FRAME, "oversized frame to the guest");
                    verify_guest_frame(&self.buf[..n], &self.stack);
                    frames += 1;
                    bytes += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => panic!("recv: {e}"),
            }
        }
        assert_eq!(self.link.tx.stats.tx_dropped, 0, "frames dropped");
        self.sent_frames += frames;
        self.sent_bytes += bytes;
        (frames, bytes)
    }

    /// The invariants that hold after every step.
    pub fn check(&self) {
        let n = self.stack.flow_count();
        assert!(n <= self.stack.cfg.max_flows, "flow table over its bound");
        // --restrict: no guest connection may ever get a host socket.
        assert_eq!(n, 0, "a restricted guest opened a flow");
        assert_eq!(self.stack.counters.flows_opened, 0);
    }
}

/// Every frame airlock sends must parse with airlock's own parsers, with
/// consistent lengths and verifying checksums.
pub fn verify_guest_frame(f: &[u8], stack: &Stack) {
    let eth = ethernet::Frame::new_checked(f).expect("frame has an Ethernet header");
    assert_eq!(eth.src()[0] & 1, 0, "multicast source MAC");
    let p = eth.payload();
    match eth.ethertype() {
        ethertype::ARP => {
            assert_eq!(p.len(), 28, "ARP reply length");
            let r =
                arp::Repr::parse(&arp::Packet::new_checked(p).expect("ARP")).expect("ARP parses");
            assert_eq!(r.op, arp::Operation::Reply);
            assert_eq!(r.sender_mac, eth.src());
        }
        ethertype::IPV4 => {
            assert_eq!(eth.src(), stack.env.l2.router4, "IPv4 from the router MAC");
            let ip = ipv4::Packet::new_checked(p).expect("IPv4 header and lengths");
            assert_eq!(usize::from(ip.total_len()), p.len(), "IPv4 total length");
            let r = ipv4::Repr::parse(&ip).expect("IPv4 header checksum");
            assert!(!ip.is_fragment());
            let pseudo = PseudoHeader::V4 {
                src: r.src,
                dst: r.dst,
            };
            let l4 = ip.payload();
            match r.protocol {
                ip_proto::TCP => verify_tcp(l4, &pseudo),
                ip_proto::UDP => {
                    let (src_port, payload) = verify_udp(l4, &pseudo);
                    if src_port == dhcpv4::SERVER_PORT {
                        let d = dhcpv4::Packet::new_checked(payload).expect("DHCP reply");
                        assert_eq!(d.op(), dhcpv4::OP_REPLY);
                        for o in d.options_iter() {
                            o.expect("DHCP reply options");
                        }
                        assert!(d.find_option(dhcpv4::opt::MESSAGE_TYPE).is_some());
                    }
                }
                ip_proto::ICMP => {
                    let i = icmpv4::Packet::new_checked(l4).expect("ICMP header");
                    icmpv4::Repr::parse(&i).expect("ICMP checksum");
                }
                other => panic!("airlock sent IP protocol {other}"),
            }
        }
        ethertype::IPV6 => verify_ipv6(&eth, stack),
        other => panic!("airlock sent EtherType {other:#06x}"),
    }
}

/// A TCP segment airlock sent: header, checksum and ports are sound.
fn verify_tcp(l4: &[u8], pseudo: &PseudoHeader) {
    let t = tcp::Packet::new_checked(l4).expect("TCP header");
    tcp::Repr::parse(&t, pseudo).expect("TCP checksum and ports");
}

/// A UDP datagram airlock sent: its length fills the IP payload and its
/// checksum verifies. Returns its source port and payload.
fn verify_udp<'a>(l4: &'a [u8], pseudo: &PseudoHeader) -> (u16, &'a [u8]) {
    let u = udp::Packet::new_checked(l4).expect("UDP header");
    assert_eq!(usize::from(u.len()), l4.len(), "UDP length");
    let r = udp::Repr::parse(&u, pseudo).expect("UDP checksum");
    // The payload is the rest of `l4`: the length was checked above.
    (r.src_port, l4.get(udp::HEADER_LEN..).unwrap_or(&[]))
}

fn verify_ipv6(eth: &ethernet::Frame<&[u8]>, stack: &Stack) {
    // The router, or another virtual address answering neighbour
    // discovery for itself: slirp's 52:56 + the address's last four bytes.
    assert!(
        eth.src() == stack.env.l2.router6 || eth.src()[..2] == [0x52, 0x56],
        "IPv6 from a virtual MAC"
    );
    let p = eth.payload();
    let ip = ipv6::Packet::new_checked(p).expect("IPv6 header and lengths");
    assert_eq!(
        usize::from(ip.payload_len()) + ipv6::HEADER_LEN,
        p.len(),
        "IPv6 payload length"
    );
    let r = ipv6::Repr::parse(&ip).expect("IPv6 version");
    let ext = ip.extensions().expect("extension headers");
    assert!(ext.fragment.is_none(), "airlock sent a fragment");
    let l4 = ip.payload().get(ext.offset..).unwrap_or(&[]);
    let pseudo = PseudoHeader::V6 {
        src: r.src,
        dst: r.dst,
    };
    match ext.next_header {
        ip_proto::ICMPV6 => {
            let i = icmpv6::Packet::new_checked(l4).expect("ICMPv6 header");
            if (133..=137).contains(&i.msg_type()) {
                ndp::Repr::parse(&i, r.src, r.dst).expect("NDP message");
                assert_eq!(r.hop_limit, 255, "NDP hop limit");
            } else {
                icmpv6::Repr::parse(&i, r.src, r.dst).expect("ICMPv6 checksum");
            }
        }
        ip_proto::TCP => verify_tcp(l4, &pseudo),
        ip_proto::UDP => {
            let (src_port, payload) = verify_udp(l4, &pseudo);
            if src_port == dhcpv6::SERVER_PORT {
                let d = dhcpv6::Packet::new_checked(payload).expect("DHCPv6 reply");
                dhcpv6::Repr::parse(&d).expect("DHCPv6 reply options");
            }
        }
        other => panic!("airlock sent IPv6 next header {other}"),
    }
}

/// Most frames and bytes one guest frame may make airlock send: no
/// amplification beyond a reply's worth.
const MAX_REPLIES: usize = 4;
const MAX_REPLY_GROWTH: usize = 2048;

/// One frame: the first byte asks for checksum fix-up (bit 0); the rest is
/// the frame. Runs a whole loop turn and checks what comes out.
pub fn frame(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut f = rest.get(..MAX_FRAME).unwrap_or(rest).to_vec();
    if mode & 1 == 1 {
        fix_checksums(&mut f);
    }
    let mut h = Harness::new(16);
    h.frame(&f);
    h.stack.after_turn(h.now, &mut h.link.tx);
    let (n, bytes) = h.drain();
    assert!(n <= MAX_REPLIES, "{n} frames for one");
    assert!(
        bytes <= f.len() + MAX_REPLY_GROWTH,
        "{bytes} bytes for {}",
        f.len()
    );
    h.check();
}

// The engine grammar.

const MAC_GUEST: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
const MACS: [[u8; 6]; 4] = [
    MAC_GUEST,
    [0xff; 6],
    [0x52, 0x55, 10, 0, 2, 2],
    [0x01, 0, 0x5e, 0, 0, 1],
];
/// Addresses that matter to the virtual network, plus documentation-range
/// outsiders (never contacted: the configuration refuses them).
const ADDRS: [[u8; 4]; 10] = [
    [10, 0, 2, 15],
    [10, 0, 2, 2],
    [10, 0, 2, 3],
    [10, 0, 2, 0],
    [10, 0, 2, 255],
    [10, 0, 2, 77],
    [0, 0, 0, 0],
    [255, 255, 255, 255],
    [127, 0, 0, 1],
    [192, 0, 2, 1],
];
const PORTS: [u16; 8] = [53, 67, 68, 80, 22, 1, 65535, 40000];

fn addr(inp: &mut Input) -> [u8; 4] {
    if inp.u8() < 230 {
        inp.pick(&ADDRS)
    } else {
        inp.u32().to_be_bytes()
    }
}

fn port(inp: &mut Input) -> u16 {
    if inp.u8() < 200 {
        inp.pick(&PORTS)
    } else {
        inp.u16()
    }
}

/// Build one guest frame from the grammar into `out` (cleared first).
/// Every header is emitted by `wire`; the grammar only picks the values,
/// some of which no sane guest would send.
fn build_frame(inp: &mut Input, out: &mut Vec<u8>) {
    out.clear();
    let kind = inp.u8() % 7;
    let src_mac = inp.pick(&MACS);
    let dst_mac = inp.pick(&MACS);
    out.resize(ethernet::HEADER_LEN, 0);
    let ethertype = match kind {
        0 => {
            // ARP request or reply (or operation 0).
            let arp = arp::Repr {
                op: arp::Operation::from(u16::from(inp.u8() % 3)),
                sender_mac: src_mac,
                sender_ip: addr(inp).into(),
                target_mac: [0; 6],
                target_ip: addr(inp).into(),
            };
            append(out, arp.buffer_len(), |b| arp.emit(b));
            ethertype::ARP
        }
        6 => {
            build_ipv6(inp, out);
            ethertype::IPV6
        }
        5 => {
            // Anything at all behind an Ethernet header.
            let ethertype = inp.u16();
            out.extend_from_slice(inp.bytes(1600));
            ethertype
        }
        _ => {
            build_ipv4(inp, out, kind, src_mac);
            ethertype::IPV4
        }
    };
    let eth = ethernet::Repr {
        dst: dst_mac,
        src: src_mac,
        ethertype,
    };
    eth.emit(out).expect("room for the Ethernet header");
    // Checksums right, unless the input says to leave them out.
    set_checksums(out, inp.u8() < 240);
    // Ethernet padding, a cut, or a corrupted byte.
    match inp.u8() {
        0..=7 => out.resize(out.len().max(60), 0),
        8..=11 => {
            let cut = usize::from(inp.u16()) % (out.len() + 1);
            out.truncate(cut);
        }
        12..=15 if !out.is_empty() => {
            let i = usize::from(inp.u16()) % out.len();
            out[i] ^= inp.u8() | 1;
        }
        _ => {}
    }
}

/// Grow `out` by `len` zero bytes and let `emit` write them.
fn append(out: &mut Vec<u8>, len: usize, emit: impl FnOnce(&mut [u8]) -> wire::Result<usize>) {
    let at = out.len();
    out.resize(at + len, 0);
    emit(&mut out[at..]).expect("emitted into a buffer of its own length");
}

/// An IPv4 packet (after the EtherType): header options, any fragment
/// field, then ICMP (echo mostly), TCP (a SYN, or any flags, options from
/// the input), UDP (DHCP to port 67) or any protocol number.
fn build_ipv4(inp: &mut Input, out: &mut Vec<u8>, kind: u8, src_mac: Mac) {
    let ip_at = out.len();
    let ihl_words = if inp.u8() < 240 { 5 } else { 5 + inp.u8() % 11 };
    let (src, dst) = (Ipv4Addr::from(addr(inp)), Ipv4Addr::from(addr(inp)));
    let frag = if inp.u8() < 240 { 0x4000 } else { inp.u16() };
    let ttl = inp.u8();
    let proto = match kind {
        1 => ip_proto::ICMP,
        2 | 3 => ip_proto::TCP,
        _ if inp.u8() < 230 => ip_proto::UDP,
        _ => inp.u8(),
    };
    let hl = usize::from(ihl_words) * 4;
    out.resize(ip_at + hl, tcp::kind::NOP); // NOP options past 20 bytes
    let l4_at = out.len();
    let pseudo = PseudoHeader::V4 { src, dst };
    match kind {
        1 => {
            // ICMP: echo request mostly.
            let t = if inp.u8() < 200 {
                icmpv4::msg_type::ECHO_REQUEST
            } else {
                inp.u8()
            };
            let rest = inp.u32();
            out.resize(l4_at + icmpv4::HEADER_LEN, 0);
            out.extend_from_slice(inp.bytes(1500));
            let mut p = icmpv4::Packet::new_checked(&mut out[l4_at..]).expect("8 bytes at least");
            p.set_msg_type(t);
            p.set_rest_of_header(rest);
        }
        2 | 3 => build_tcp(inp, out, kind == 2, &pseudo),
        _ => {
            // UDP; to port 67 it is a DHCP message.
            let src_port = port(inp);
            let dst_port = if inp.bool() {
                dhcpv4::SERVER_PORT
            } else {
                port(inp)
            };
            build_udp(out, (src_port, dst_port), &pseudo, |out| {
                if dst_port == dhcpv4::SERVER_PORT {
                    build_dhcp(inp, out, src_mac);
                } else {
                    out.extend_from_slice(inp.bytes(1500));
                }
            });
        }
    }
    let ip = ipv4::Repr {
        ttl,
        dont_frag: frag & 0x4000 != 0,
        more_frags: frag & 0x2000 != 0,
        frag_offset: (frag & 0x1fff) << 3,
        ..ipv4::Repr::new(
            src,
            dst,
            proto,
            (out.len() - l4_at + hl - ipv4::HEADER_LEN) as u16,
        )
    };
    let buf = &mut out[ip_at..];
    ip.emit(buf).expect("a packet under 64 KiB");
    ipv4::Packet::new_checked(buf)
        .expect("own header")
        .set_header_len(hl);
}

/// A UDP datagram at the end of `out`: `payload` appends the data, then
/// the header goes in front of it.
fn build_udp(
    out: &mut Vec<u8>,
    (src_port, dst_port): (u16, u16),
    pseudo: &PseudoHeader,
    payload: impl FnOnce(&mut Vec<u8>),
) {
    let l4_at = out.len();
    out.resize(l4_at + udp::HEADER_LEN, 0);
    payload(out);
    let udp = udp::Repr {
        src_port,
        dst_port,
        payload_len: out.len() - l4_at - udp::HEADER_LEN,
    };
    udp.emit(&mut out[l4_at..], pseudo)
        .expect("a datagram under 64 KiB");
}

/// A TCP segment from the grammar at the end of `out`: ports, sequence
/// numbers, raw options (padded to a word), flags (SYN if `syn`), window,
/// payload.
fn build_tcp(inp: &mut Input, out: &mut Vec<u8>, syn: bool, pseudo: &PseudoHeader) {
    let l4_at = out.len();
    let (src_port, dst_port) = (port(inp), port(inp));
    let (seq, ack) = (inp.u32(), inp.u32());
    let opts = inp.bytes(40);
    let hl = tcp::HEADER_LEN + opts.len().div_ceil(4) * 4;
    let flags = if syn {
        tcp::flags::SYN
    } else {
        inp.u8().into()
    };
    let window = inp.u16();
    out.resize(l4_at + hl, 0);
    out[l4_at + tcp::HEADER_LEN..][..opts.len()].copy_from_slice(opts);
    out.extend_from_slice(inp.bytes(1500));
    // Emitted with the raw options as payload, then told where they end
    // (the checksum pass that follows covers the new data offset).
    let seg = tcp::Repr {
        src_port,
        dst_port,
        seq,
        ack,
        flags,
        window,
        payload_len: out.len() - l4_at - tcp::HEADER_LEN,
        ..tcp::Repr::default()
    };
    let buf = &mut out[l4_at..];
    seg.emit(buf, pseudo).expect("room for the segment");
    tcp::Packet::new_checked(buf)
        .expect("own segment")
        .set_header_len(hl);
}

const ADDRS6: [u128; 10] = [
    0xfe80_0000_0000_0000_5054_00ff_fe12_3456,
    0xfec0_0000_0000_0000_0000_0000_0000_0015,
    0xfec0_0000_0000_0000_0000_0000_0000_0002,
    0xfec0_0000_0000_0000_0000_0000_0000_0003,
    0xff02_0000_0000_0000_0000_0000_0000_0001,
    0xff02_0000_0000_0000_0000_0000_0000_0002,
    0xff02_0000_0000_0000_0000_0000_0001_0002,
    0xff02_0000_0000_0000_0000_0001_ff00_0002,
    0,
    0x2001_0db8_0000_0000_0000_0000_0000_0001,
];

fn addr6(inp: &mut Input) -> Ipv6Addr {
    if inp.u8() < 230 {
        inp.pick(&ADDRS6).into()
    } else {
        let mut a = [0u8; 16];
        a.iter_mut().for_each(|b| *b = inp.u8());
        a.into()
    }
}

/// An IPv6 packet (after the EtherType): optional extension headers, then
/// ICMPv6 (echo, RS, NS, anything), UDP (DHCPv6 to port 547) or TCP.
fn build_ipv6(inp: &mut Input, out: &mut Vec<u8>) {
    let ip_at = out.len();
    let hop_limit = if inp.u8() < 200 { 255 } else { inp.u8() };
    let (src, dst) = (addr6(inp), addr6(inp));
    let n_ext = inp.u8() % 4;
    let upper = match inp.u8() % 4 {
        0 | 1 => ip_proto::ICMPV6,
        2 => ip_proto::UDP,
        _ => ip_proto::TCP,
    };
    // Extension headers: hop-by-hop first, then destination options or a
    // fragment header, each 8 bytes.
    let mut chain = Vec::new();
    for i in 0..n_ext {
        chain.push(match (i, inp.u8() % 3) {
            (0, 0) => ip_proto::HOPOPT,
            (_, 1) => ip_proto::IPV6_FRAG,
            _ => ip_proto::IPV6_OPTS,
        });
    }
    let first = chain.first().copied().unwrap_or(upper);
    out.resize(ip_at + ipv6::HEADER_LEN, 0);
    for (i, h) in chain.iter().enumerate() {
        let next_header = chain.get(i + 1).copied().unwrap_or(upper);
        let ext = if *h == ip_proto::IPV6_FRAG {
            let off_flags = inp.u16();
            let info = ipv6::FragmentInfo {
                offset: off_flags & 0xfff8,
                more: off_flags & 1 != 0,
                ident: inp.u32(),
            };
            ipv6::ExtRepr::Fragment { next_header, info }
        } else {
            ipv6::ExtRepr::Padding { next_header }
        };
        append(out, ipv6::ExtRepr::LEN, |b| ext.emit(b));
    }
    let l4_at = out.len();
    let pseudo = PseudoHeader::V6 { src, dst };
    match upper {
        ip_proto::ICMPV6 => build_icmpv6(inp, out, src, dst),
        ip_proto::UDP => {
            let src_port = if inp.bool() {
                dhcpv6::CLIENT_PORT
            } else {
                port(inp)
            };
            let dst_port = if inp.bool() {
                dhcpv6::SERVER_PORT
            } else {
                port(inp)
            };
            build_udp(out, (src_port, dst_port), &pseudo, |out| {
                if dst_port == dhcpv6::SERVER_PORT {
                    build_dhcpv6(inp, out);
                } else {
                    out.extend_from_slice(inp.bytes(1500));
                }
            });
        }
        _ => {
            let (src_port, dst_port) = (port(inp), port(inp));
            let (seq, ack) = (inp.u32(), inp.u32());
            let flags = inp.u8().into();
            out.resize(l4_at + tcp::HEADER_LEN, 0);
            out.extend_from_slice(inp.bytes(1500));
            let seg = tcp::Repr {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window: 0xffff,
                payload_len: out.len() - l4_at - tcp::HEADER_LEN,
                ..tcp::Repr::default()
            };
            seg.emit(&mut out[l4_at..], &pseudo)
                .expect("room for the segment");
        }
    }
    let plen = (out.len() - ip_at - ipv6::HEADER_LEN) as u16;
    let ip = ipv6::Repr {
        hop_limit,
        ..ipv6::Repr::new(src, dst, first, plen)
    };
    ip.emit(&mut out[ip_at..]).expect("room for the header");
}

/// ICMPv6 from the grammar: echo, RS, NS, NA, RA or an error, with the
/// guest's source link-layer address option or not, then raw bytes (more
/// options, or any data).
fn build_icmpv6(inp: &mut Input, out: &mut Vec<u8>, src: Ipv6Addr, dst: Ipv6Addr) {
    let t = inp.pick(&[
        icmpv6::msg_type::ECHO_REQUEST,
        icmpv6::msg_type::ROUTER_SOLICIT,
        icmpv6::msg_type::NEIGHBOR_SOLICIT,
        icmpv6::msg_type::NEIGHBOR_ADVERT,
        icmpv6::msg_type::ROUTER_ADVERT,
        icmpv6::msg_type::DST_UNREACHABLE,
        icmpv6::msg_type::PACKET_TOO_BIG,
    ]);
    let target = match t {
        icmpv6::msg_type::NEIGHBOR_SOLICIT | icmpv6::msg_type::NEIGHBOR_ADVERT => addr6(inp),
        _ => Ipv6Addr::UNSPECIFIED,
    };
    let mut body = Vec::new();
    if inp.bool() {
        let o = ndp::NdpOption::SourceLinkAddr(MAC_GUEST);
        append(&mut body, 8, |b| o.emit(b));
    }
    body.extend_from_slice(inp.bytes(256));
    let options = ndp::Options::Wire(&body);
    let msg = match t {
        icmpv6::msg_type::ROUTER_SOLICIT => Msg6::Ndp(ndp::Repr::RouterSolicit { options }),
        icmpv6::msg_type::NEIGHBOR_SOLICIT => {
            Msg6::Ndp(ndp::Repr::NeighborSolicit { target, options })
        }
        icmpv6::msg_type::NEIGHBOR_ADVERT => Msg6::Ndp(ndp::Repr::NeighborAdvert {
            flags: 0,
            target,
            options,
        }),
        icmpv6::msg_type::ROUTER_ADVERT => Msg6::Ndp(ndp::Repr::RouterAdvert {
            hop_limit: 0,
            flags: 0,
            router_lifetime: 0,
            reachable_time: 0,
            retrans_timer: 0,
            options,
        }),
        icmpv6::msg_type::DST_UNREACHABLE => Msg6::Icmp(icmpv6::Repr::DstUnreachable {
            code: 0,
            quoted: &body,
        }),
        icmpv6::msg_type::PACKET_TOO_BIG => Msg6::Icmp(icmpv6::Repr::PacketTooBig {
            mtu: 0,
            quoted: &body,
        }),
        _ => Msg6::Icmp(icmpv6::Repr::EchoRequest {
            ident: 0,
            seq_no: 0,
            data: &body,
        }),
    };
    match msg {
        Msg6::Ndp(r) => {
            let len = r.buffer_len().expect("raw options have a length");
            append(out, len, |b| r.emit(b, src, dst));
        }
        Msg6::Icmp(r) => append(out, r.buffer_len(), |b| r.emit(b, src, dst)),
    }
}

/// The two emitters an ICMPv6 message from the grammar may need.
enum Msg6<'a> {
    Ndp(ndp::Repr<'a>),
    Icmp(icmpv6::Repr<'a>),
}

/// A DHCPv6 client message: any type, the guest's DUID, maybe an IA_NA,
/// the options it asks for, elapsed time, then raw bytes.
fn build_dhcpv6(inp: &mut Input, out: &mut Vec<u8>) {
    let msg = dhcpv6::Reply {
        msg_type: dhcpv6::MessageType::from(1 + inp.u8() % 12),
        transaction_id: inp.u32() & 0x00ff_ffff,
    };
    let duid = [0, 3, 0, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56];
    let ia_na = inp.bool().then(|| dhcpv6::OptionRepr::IaNa {
        iaid: inp.u32(),
        t1: 0,
        t2: 0,
        addresses: &[],
        status: None,
    });
    let oro = [0, 23, 0, 24];
    let mut options = vec![dhcpv6::OptionRepr::ClientId(&duid)];
    options.extend(ia_na);
    options.push(dhcpv6::OptionRepr::Raw {
        code: dhcpv6::opt::ORO,
        data: &oro,
    });
    options.push(dhcpv6::OptionRepr::Raw {
        code: dhcpv6::opt::ELAPSED_TIME,
        data: &[0, 0],
    });
    let at = out.len();
    out.resize(at + 256, 0);
    let n = msg
        .emit(&mut out[at..], &options)
        .expect("fits in 256 bytes");
    out.truncate(at + n);
    out.extend_from_slice(inp.bytes(256));
}

/// A DHCPv4 client message from `mac`: any type, flags and addresses, up
/// to five options from a short list or made of the input, END.
fn build_dhcp(inp: &mut Input, out: &mut Vec<u8>, mac: Mac) {
    let xid = inp.u32();
    let broadcast = inp.bool();
    let mut addrs = [Ipv4Addr::UNSPECIFIED; 4];
    for a in &mut addrs {
        if inp.u8() >= 200 {
            *a = addr(inp).into();
        }
    }
    let [ciaddr, yiaddr, siaddr, giaddr] = addrs;
    let request = dhcpv4::Request {
        message_type: dhcpv4::MessageType::from(1 + inp.u8() % 8),
        xid,
        broadcast,
        ciaddr,
        yiaddr,
        siaddr,
        giaddr,
        client_mac: mac,
    };
    // The options' data first (borrowed by the options that follow).
    enum Pick<'a> {
        Addr(u8, [u8; 4]),
        Fixed(u8, &'static [u8]),
        Raw(u8, &'a [u8]),
    }
    let mut picks = Vec::new();
    for _ in 0..inp.u8() % 6 {
        picks.push(match inp.u8() % 6 {
            0 => Pick::Addr(dhcpv4::opt::REQUESTED_IP, addr(inp)),
            1 => Pick::Addr(dhcpv4::opt::SERVER_ID, addr(inp)),
            2 => Pick::Fixed(
                dhcpv4::opt::PARAMETER_REQUEST_LIST,
                &[1, 3, 6, 15, 26, 119, 121],
            ),
            3 => Pick::Fixed(dhcpv4::opt::RAPID_COMMIT, &[]),
            4 => Pick::Fixed(dhcpv4::opt::MAX_MESSAGE_SIZE, &[0x05, 0xdc]),
            _ => {
                let code = inp.u8();
                Pick::Raw(code, inp.bytes(255))
            }
        });
    }
    let options: Vec<dhcpv4::OptionRepr> = picks
        .iter()
        .map(|p| match p {
            Pick::Addr(code, a) => dhcpv4::OptionRepr::Raw {
                code: *code,
                data: a,
            },
            Pick::Fixed(code, data) | Pick::Raw(code, data) => {
                dhcpv4::OptionRepr::Raw { code: *code, data }
            }
        })
        .collect();
    let at = out.len();
    out.resize(at + 1500, 0);
    let n = request
        .emit(&mut out[at..], &options)
        .expect("fits in 1500 bytes");
    out.truncate(at + n);
}

/// A sequence of guest frames and host-side events, from the grammar,
/// through the stack as the engine drives it (on_frame, on_host_event,
/// on_tick, after_turn) with time moving, checking after every step that
/// nothing panicked, the flow table is within bounds, and every frame
/// airlock sent is well formed. At most 256 steps.
pub fn engine(data: &[u8]) {
    engine_run(data);
}

/// [`engine`], returning the harness for inspection.
pub fn engine_run(data: &[u8]) -> Harness {
    let mut inp = Input::new(data);
    let max_flows = 1 + usize::from(inp.u8() % 8);
    let mut h = Harness::new(max_flows);
    let mut f = Vec::with_capacity(2048);
    let mut steps = 0;
    while !inp.is_empty() && steps < 256 {
        steps += 1;
        match inp.u8() % 8 {
            0..=3 => {
                build_frame(&mut inp, &mut f);
                h.frame(&f);
                let (n, bytes) = h.drain();
                assert!(n <= MAX_REPLIES && bytes <= f.len() + MAX_REPLY_GROWTH);
            }
            4 => {
                let raw = inp.bytes(MAX_FRAME);
                h.frame(raw);
                h.drain();
            }
            5 => {
                // Time passes; the engine ticks every 50 ms.
                let ms = u64::from(inp.u16()) * if inp.bool() { 1000 } else { 1 };
                h.now += Duration::from_millis(ms);
                h.stack.on_tick(h.now, &mut h.link.tx);
                h.drain();
            }
            6 => {
                // An event for a token: stale, unknown or never issued.
                let t = match inp.u8() % 4 {
                    0 => Token::Link,
                    1 => Token::Signal,
                    2 => Token::Listener(u32::from(inp.u8())),
                    _ => Token::Flow(u32::from(inp.u8()), u32::from(inp.u8())),
                };
                let ev = EpollFlags::from_bits_truncate(inp.u32() as i32);
                h.stack.on_host_event(t, ev, &mut h.link.tx, h.now);
                h.drain();
            }
            _ => {
                h.stack.after_turn(h.now, &mut h.link.tx);
                h.drain();
            }
        }
        h.check();
    }
    h.stack.after_turn(h.now, &mut h.link.tx);
    h.drain();
    h.check();
    h
}

// ---------------------------------------------------------------------------
// vhost-user: the descriptor-chain walker and the device's ring handling.

/// Guest memory from fuzz bytes (two regions with a hole between them, so
/// buffers can leave memory or straddle a region's end), rings of sizes
/// from the first byte, then: every chain the transmit ring offers read
/// out, frames of several sizes pushed into the receive ring (copied in)
/// and built in receive buffers taken in place (the first placed, the rest
/// given back), and the walker run directly from a chosen head both ways.
/// Nothing may panic; what the walker accepts must lie in guest memory, and
/// a buffer taken in place holds the whole frame.
pub fn vhost_rings(data: &[u8]) {
    use crate::link::vhost_user::{virtq, Device};
    use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
    let [cfg, feat, h0, h1, rest @ ..] = data else {
        return;
    };
    const REGION: usize = 0x8000;
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), REGION),
        (GuestAddress(0x10000), REGION),
    ]) else {
        return;
    };
    let (a, b) = rest.split_at(rest.len().min(REGION));
    let _ = mem.write_slice(a, GuestAddress(0));
    let _ = mem.write_slice(&b[..b.len().min(REGION)], GuestAddress(0x10000));

    // The walker on its own, from any head, in both directions.
    let size = 1u16 << (cfg & 7);
    let head = u16::from_le_bytes([*h0, *h1]);
    let writable = feat & 0x80 != 0;
    let mut total = 0u64;
    let r = virtq::walk(&mem, GuestAddress(0), size, head, writable, |s| {
        total += u64::from(s.len);
        if s.len > 0 {
            let last = GuestAddress(s.addr.0 + u64::from(s.len) - 1);
            assert!(mem.address_in_range(s.addr) && mem.address_in_range(last));
        }
        Ok(())
    });
    if let Ok(t) = r {
        assert_eq!(u64::from(t), total);
    }
    let mut out = vec![0u8; usize::from(*h0) * 64];
    if let Ok((n, t)) = virtq::read_chain(&mem, GuestAddress(0), size, head, &mut out) {
        assert!(n <= out.len() && n as u64 <= u64::from(t));
    }

    // The device's rings over the same memory.
    let sizes = [1u16 << (cfg & 7), 1u16 << ((cfg >> 3) & 7)];
    let features = (u64::from(feat & 1) << 15)
        | (u64::from(feat >> 1 & 1) << 29)
        | (u64::from(feat >> 2 & 1) << 1)
        | 1 << 32;
    let Some(mut d) = Device::fuzz(mem, sizes, features) else {
        return;
    };
    let mut buf = vec![0u8; 12 + MAX_FRAME + 1];
    for _ in 0..64 {
        match d.pop_tx(&mut buf) {
            Ok(Some((s, e, _))) => assert!(s <= e && e <= buf.len()),
            Ok(None) => break,
            Err(f) => {
                d.fault(f);
                break;
            }
        }
    }
    d.notify_tx();
    let frame = vec![0xa5u8; MAX_FRAME];
    for len in [14, 60, 1514, 9000, MAX_FRAME] {
        if let Err(f) = d.push_rx(&frame[..len], None) {
            d.fault(f);
            break;
        }
    }
    let mut held = Vec::with_capacity(4);
    for len in [60, 1514, MAX_FRAME] {
        held.clear();
        if let Err(f) = d.hold_rx(len, 4, &mut held) {
            d.fault(f);
            break;
        }
        for h in held.iter_mut() {
            let b = h.frame();
            assert!(b.len() >= len);
            b[..len].fill(0x5a);
        }
        if let Some(h) = held.first_mut() {
            // A checksum left partial only changes the header written.
            let partial = crate::link::PartialCsum {
                start: 34,
                offset: 16,
            };
            if let Err(f) = d.place_held(h, len, Some(partial)) {
                d.fault(f);
                break;
            }
        }
        d.release_held(held.len().saturating_sub(1));
    }
    d.notify_rx();
}

/// A migration state (`Load`'s bytes): the decoder never panics; what it
/// accepts encodes and decodes back to the same state (no field lost or
/// invented), and stays within the format's bounds.
pub fn migrate_state(data: &[u8]) {
    let Ok(st) = crate::migrate::State::decode(data) else {
        return;
    };
    assert!(st.udp.len() + st.tcp.len() + st.forwards.len() <= crate::migrate::MAX_RECORDS);
    let bytes = st.encode().expect("a decoded state encodes");
    assert!(bytes.len() <= data.len(), "re-encoding grew the state");
    assert_eq!(crate::migrate::State::decode(&bytes).as_ref(), Ok(&st));
}
