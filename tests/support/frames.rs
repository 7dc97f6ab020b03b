//! Ethernet frames for the guest side: good ones (DHCP, ARP, echo, UDP, a
//! SYN), emitted by airlock's `wire` like every other header, and the
//! malformed barrage a hostile guest sends, made by breaking good frames
//! byte by byte on purpose. What these frames should get back is checked
//! against the kernel's view and against passt (tests/harness_selfcheck.rs),
//! not against airlock's own parsers.

use airlock::wire::checksum::PseudoHeader;
use airlock::wire::dhcpv4::MessageType;
use airlock::wire::{arp, dhcpv4, ethernet, icmpv4, ip_proto, ipv4, ipv6, tcp, udp};
use std::net::{Ipv4Addr, Ipv6Addr};

pub use airlock::wire::ethertype::{ARP as ETH_ARP, IPV4 as ETH_IPV4, IPV6 as ETH_IPV6};
pub use airlock::wire::MAC_BROADCAST as BROADCAST;

/// `aa:bb:cc:dd:ee:ff` to bytes.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut it = s.split(':');
    for b in m.iter_mut() {
        *b = u8::from_str_radix(it.next()?, 16).ok()?;
    }
    it.next().is_none().then_some(m)
}

/// Bytes to `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// slirp's router MAC for an IPv4 address: `52:55` + its four bytes.
pub fn slirp_mac(a: Ipv4Addr) -> String {
    let o = a.octets();
    format_mac(&[0x52, 0x55, o[0], o[1], o[2], o[3]])
}

/// `header` bytes emitted by `emit`, then `payload`.
fn emitted(
    header: usize,
    payload: &[u8],
    emit: impl FnOnce(&mut [u8]) -> airlock::wire::Result<usize>,
) -> Vec<u8> {
    let mut v = vec![0u8; header + payload.len()];
    v[header..].copy_from_slice(payload);
    emit(&mut v).expect("a test frame fits");
    v
}

pub fn ethernet(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let eth = ethernet::Repr {
        dst,
        src,
        ethertype,
    };
    emitted(ethernet::HEADER_LEN, payload, |b| eth.emit(b))
}

/// An IPv4 packet (no options, DF clear, TTL 64) with a correct checksum.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Vec<u8> {
    let ip = ipv4::Repr {
        ident: 0x1234,
        dont_frag: false,
        ..ipv4::Repr::new(src, dst, proto, payload.len() as u16)
    };
    emitted(ipv4::HEADER_LEN, payload, |b| ip.emit(b))
}

/// A UDP datagram (checksum correct) from `sport` to `dport` between the
/// addresses of `pseudo`.
fn udp(pseudo: &PseudoHeader, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let u = udp::Repr {
        src_port: sport,
        dst_port: dport,
        payload_len: data.len(),
    };
    emitted(udp::HEADER_LEN, data, |b| u.emit(b, pseudo))
}

/// A UDP datagram in an IPv4 packet, checksums correct.
pub fn udp4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, data: &[u8]) -> Vec<u8> {
    let u = udp(&PseudoHeader::V4 { src, dst }, sport, dport, data);
    ipv4(src, dst, ip_proto::UDP, &u)
}

/// A UDP datagram in an IPv6 packet (hop limit 64), checksum correct.
pub fn udp6(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, data: &[u8]) -> Vec<u8> {
    let u = udp(&PseudoHeader::V6 { src, dst }, sport, dport, data);
    let ip = ipv6::Repr::new(src, dst, ip_proto::UDP, u.len() as u16);
    emitted(ipv6::HEADER_LEN, &u, |b| ip.emit(b))
}

/// A TCP SYN (no options, window 65535) in an IPv4 packet, checksum correct.
pub fn syn4(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> Vec<u8> {
    let syn = tcp::Repr {
        src_port: sport,
        dst_port: dport,
        seq: 0x1000_0000,
        flags: tcp::flags::SYN,
        window: 0xffff,
        ..tcp::Repr::default()
    };
    let t = emitted(tcp::HEADER_LEN, &[], |b| {
        syn.emit(b, &PseudoHeader::V4 { src, dst })
    });
    ipv4(src, dst, ip_proto::TCP, &t)
}

/// An ICMP echo request in an IPv4 packet.
pub fn icmp4_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let echo = icmpv4::Repr::EchoRequest {
        ident: id,
        seq_no: seq,
        data,
    };
    let m = emitted(echo.buffer_len(), &[], |b| echo.emit(b));
    ipv4(src, dst, ip_proto::ICMP, &m)
}

/// An ARP request (the ARP payload) from `sha`/`spa` for `tpa`.
pub fn arp_request(sha: [u8; 6], spa: Ipv4Addr, tpa: Ipv4Addr) -> Vec<u8> {
    let a = arp::Repr {
        op: arp::Operation::Request,
        sender_mac: sha,
        sender_ip: spa,
        target_mac: [0; 6],
        target_ip: tpa,
    };
    emitted(arp::PACKET_LEN, &[], |b| a.emit(b))
}

const MAGIC: [u8; 4] = dhcpv4::MAGIC_COOKIE.to_be_bytes();

/// A BOOTP request payload: fixed header, magic cookie, then `options`
/// exactly as given (add the end option 255 yourself if wanted).
pub fn bootp_request(mac: [u8; 6], xid: u32, ciaddr: Ipv4Addr, options: &[u8]) -> Vec<u8> {
    let zero = Ipv4Addr::UNSPECIFIED;
    let request = dhcpv4::Request {
        message_type: dhcpv4::MessageType::Discover, // not written: options are raw
        xid,
        broadcast: true,
        ciaddr,
        yiaddr: zero,
        siaddr: zero,
        giaddr: zero,
        client_mac: mac,
    };
    emitted(dhcpv4::HEADER_LEN, options, |b| request.emit_fixed(b))
}

/// A well-formed DHCP message of `msg_type` with `extra` options, in a
/// broadcast Ethernet frame from `mac` (0.0.0.0:68 → 255.255.255.255:67).
pub fn dhcp_frame(mac: [u8; 6], xid: u32, msg_type: MessageType, extra: &[u8]) -> Vec<u8> {
    let mut opts = vec![dhcpv4::opt::MESSAGE_TYPE, 1, msg_type.into()];
    opts.extend_from_slice(extra);
    opts.push(255);
    let b = bootp_request(mac, xid, Ipv4Addr::UNSPECIFIED, &opts);
    let ip = udp4(Ipv4Addr::UNSPECIFIED, 68, Ipv4Addr::BROADCAST, 67, &b);
    ethernet(BROADCAST, mac, ETH_IPV4, &ip)
}

/// A DHCPDISCOVER asking for the usual options.
pub fn dhcp_discover(mac: [u8; 6], xid: u32) -> Vec<u8> {
    dhcp_frame(mac, xid, MessageType::Discover, &[55, 5, 1, 3, 6, 15, 26])
}

/// A parsed DHCP reply seen on the wire.
#[derive(Clone, Debug)]
pub struct DhcpReply {
    pub xid: u32,
    pub yiaddr: Ipv4Addr,
    pub msg_type: Option<u8>,
    /// Options in order, `(code, value)`.
    pub options: Vec<(u8, Vec<u8>)>,
    /// The Ethernet source.
    pub src_mac: [u8; 6],
}

/// Parse `frame` if it is a DHCP reply (UDP 67 → 68 over IPv4).
pub fn parse_dhcp_reply(frame: &[u8]) -> Option<DhcpReply> {
    let ip = ipv4_payload(frame, 17)?;
    let (sport, dport, data) = udp_parts(ip)?;
    if sport != 67 || dport != 68 || data.len() < 240 || data[0] != 2 || data[236..240] != MAGIC {
        return None;
    }
    let mut options = Vec::new();
    let mut at = 240;
    while at < data.len() {
        let code = data[at];
        match code {
            0 => at += 1,
            255 => break,
            _ => {
                let len = *data.get(at + 1)? as usize;
                options.push((code, data.get(at + 2..at + 2 + len)?.to_vec()));
                at += 2 + len;
            }
        }
    }
    let msg_type = options
        .iter()
        .find(|(c, v)| *c == 53 && v.len() == 1)
        .map(|(_, v)| v[0]);
    Some(DhcpReply {
        xid: u32::from_be_bytes(data[4..8].try_into().ok()?),
        yiaddr: Ipv4Addr::new(data[16], data[17], data[18], data[19]),
        msg_type,
        options,
        src_mac: frame.get(6..12)?.try_into().ok()?,
    })
}

/// The payload of an IPv4 frame carrying `proto`, bounded by total length.
pub fn ipv4_payload(frame: &[u8], proto: u8) -> Option<&[u8]> {
    if frame.len() < 34 || frame[12..14] != ETH_IPV4.to_be_bytes() {
        return None;
    }
    let ip = &frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() || ip[9] != proto {
        return None;
    }
    Some(&ip[ihl..total])
}

/// `(source port, destination port, payload)` of a UDP datagram.
pub fn udp_parts(udp: &[u8]) -> Option<(u16, u16, &[u8])> {
    if udp.len() < 8 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if len < 8 || len > udp.len() {
        return None;
    }
    Some((
        u16::from_be_bytes([udp[0], udp[1]]),
        u16::from_be_bytes([udp[2], udp[3]]),
        &udp[8..len],
    ))
}

/// The crate's generator, so a failing barrage can be replayed exactly.
pub use airlock::rng::Rng;

/// `n` pseudo-random bytes.
fn random_bytes(r: &mut Rng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    r.fill(&mut v);
    v
}

/// Where the barrage aims: the guest's MAC and the virtual network's
/// addresses.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub guest_mac: [u8; 6],
    pub guest: Ipv4Addr,
    pub router: Ipv4Addr,
    pub dns: Ipv4Addr,
}

/// Set the IPv4 header checksum of an Ethernet frame's IPv4 header in place,
/// even one whose lengths lie (which `ipv4::Packet` would refuse to view).
fn fix_ip_checksum(f: &mut [u8]) {
    if f.len() >= 34 {
        let ihl = usize::from(f[14] & 0x0f) * 4;
        if ihl >= 20 && f.len() >= 14 + ihl {
            f[24] = 0;
            f[25] = 0;
            let c = airlock::wire::checksum::checksum(&f[14..14 + ihl]);
            f[24..26].copy_from_slice(&c.to_be_bytes());
        }
    }
}

/// Malformed frames, each with a name: truncated headers, lying lengths,
/// unknown ethertypes, bad checksums, garbage DHCP options, zero-length
/// and 64 KiB frames (and larger), then seeded random mutations of good
/// frames. Includes sizes no tap can carry; filter with
/// [`super::LinkMode::carries`].
pub fn barrage(t: Target) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mac = t.guest_mac;
    let rmac = parse_mac(&slirp_mac(t.router)).unwrap_or(BROADCAST);
    let eth = |et: u16, p: &[u8]| ethernet(rmac, mac, et, p);
    let mut add = |name: &str, f: Vec<u8>| out.push((name.to_string(), f));

    // Sizes.
    add("zero-length", vec![]);
    add("1 byte", vec![0xff]);
    add(
        "13 bytes (truncated Ethernet)",
        ethernet(rmac, mac, ETH_IPV4, &[])[..13].to_vec(),
    );
    add("Ethernet header only, IPv4", eth(ETH_IPV4, &[]));
    add("Ethernet header only, ARP", eth(ETH_ARP, &[]));
    add("Ethernet header only, IPv6", eth(ETH_IPV6, &[]));

    // Unknown ethertypes.
    for et in [0x0000u16, 0x05dc, 0x8100, 0x88a8, 0x88b5, 0x8863, 0xffff] {
        add(&format!("ethertype {et:#06x}"), eth(et, &[0xab; 46]));
    }
    add("VLAN-tagged DHCP discover", {
        let d = dhcp_discover(mac, 0x0bad_0001);
        let mut f = d[..12].to_vec();
        f.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
        f.extend_from_slice(&d[12..]);
        f
    });

    // ARP.
    let good_arp = arp_request(mac, t.guest, t.router);
    add("ARP truncated to 7 bytes", eth(ETH_ARP, &good_arp[..7]));
    add("ARP truncated to 27 bytes", eth(ETH_ARP, &good_arp[..27]));
    let mut a = good_arp.clone();
    a[4] = 255; // hlen lies
    add("ARP hlen 255", eth(ETH_ARP, &a));
    let mut a = good_arp.clone();
    a[5] = 16; // plen lies
    add("ARP plen 16", eth(ETH_ARP, &a));
    let mut a = good_arp.clone();
    a[0..2].copy_from_slice(&[0x12, 0x34]);
    add("ARP htype 0x1234", eth(ETH_ARP, &a));
    let mut a = good_arp.clone();
    a[6..8].copy_from_slice(&[0, 9]);
    add("ARP opcode 9", eth(ETH_ARP, &a));
    add(
        "ARP from a broadcast sender MAC",
        eth(ETH_ARP, &arp_request(BROADCAST, t.guest, t.router)),
    );

    // IPv4 headers.
    let echo = icmp4_echo(t.guest, t.router, 7, 1, b"airlock-barrage");
    add("IPv4 truncated to 10 bytes", eth(ETH_IPV4, &echo[..10]));
    let mut p = echo.clone();
    p[0] = 0x44; // ihl 4
    add("IPv4 ihl 4", eth(ETH_IPV4, &p));
    let mut p = echo.clone();
    p[0] = 0x4f; // ihl 15 (60 bytes) on a short packet
    add("IPv4 ihl 15 beyond the packet", eth(ETH_IPV4, &p[..30]));
    let mut p = echo.clone();
    p[2..4].copy_from_slice(&60000u16.to_be_bytes());
    add("IPv4 total length 60000 on a short packet", {
        let mut f = eth(ETH_IPV4, &p);
        fix_ip_checksum(&mut f);
        f
    });
    let mut p = echo.clone();
    p[2..4].copy_from_slice(&12u16.to_be_bytes());
    add("IPv4 total length below the header", {
        let mut f = eth(ETH_IPV4, &p);
        fix_ip_checksum(&mut f);
        f
    });
    let mut p = echo.clone();
    p[10] ^= 0x5a;
    add("IPv4 bad header checksum", eth(ETH_IPV4, &p));
    let mut p = echo.clone();
    p[0] = 0x65;
    add("IPv6 version in an IPv4 ethertype", eth(ETH_IPV4, &p));
    let mut p = echo.clone();
    p[6..8].copy_from_slice(&0x2001u16.to_be_bytes()); // MF + offset 8
    add("IPv4 fragment", {
        let mut f = eth(ETH_IPV4, &p);
        fix_ip_checksum(&mut f);
        f
    });
    // Options: a length-0 option (a classic infinite loop) and one running
    // past the header.
    for (name, opts) in [
        ("IPv4 option with length 0", [0x07u8, 0x00, 0x00, 0x00]),
        (
            "IPv4 option running past the header",
            [0x44, 0x28, 0x05, 0x00],
        ),
    ] {
        let mut h = echo[..20].to_vec();
        h[0] = 0x46;
        h.extend_from_slice(&opts);
        let total = (h.len() + echo.len() - 20) as u16;
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&echo[20..]);
        let mut f = eth(ETH_IPV4, &h);
        fix_ip_checksum(&mut f);
        add(name, f);
    }

    // ICMP.
    let mut p = echo.clone();
    p[22] ^= 0xff;
    add("ICMP echo with a bad checksum", eth(ETH_IPV4, &p));
    add(
        "ICMP truncated to 4 bytes",
        eth(ETH_IPV4, &ipv4(t.guest, t.router, 1, &echo[20..24])),
    );
    add(
        "ICMP echo to the DNS address, 1 byte of header",
        eth(ETH_IPV4, &ipv4(t.guest, t.dns, 1, &[8])),
    );

    // UDP.
    let u = udp4(t.guest, 40000, t.dns, 53, b"\x12\x34\x01\x00\x00\x01");
    let mut p = u.clone();
    p[24..26].copy_from_slice(&4000u16.to_be_bytes());
    add("UDP length beyond the packet", eth(ETH_IPV4, &p));
    let mut p = u.clone();
    p[24..26].copy_from_slice(&3u16.to_be_bytes());
    add("UDP length 3", eth(ETH_IPV4, &p));
    let mut p = u.clone();
    p[26] ^= 0xff;
    add("UDP bad checksum", eth(ETH_IPV4, &p));
    add(
        "UDP truncated to 5 bytes",
        eth(ETH_IPV4, &ipv4(t.guest, t.dns, 17, &u[20..25])),
    );

    // TCP.
    let mut syn = vec![0u8; 20];
    syn[0..2].copy_from_slice(&40001u16.to_be_bytes());
    syn[2..4].copy_from_slice(&80u16.to_be_bytes());
    syn[12] = 0xf0; // data offset 15 (60 bytes) on 20
    syn[13] = 0x02;
    add(
        "TCP data offset beyond the segment",
        eth(ETH_IPV4, &ipv4(t.guest, t.router, 6, &syn)),
    );
    syn[12] = 0x30; // data offset 3
    add(
        "TCP data offset 3",
        eth(ETH_IPV4, &ipv4(t.guest, t.router, 6, &syn)),
    );
    let mut opt = syn.clone();
    opt[12] = 0x60;
    opt.extend_from_slice(&[2, 0, 0, 0]); // MSS with length 0
    add(
        "TCP option with length 0",
        eth(ETH_IPV4, &ipv4(t.guest, t.router, 6, &opt)),
    );
    let mut opt = syn.clone();
    opt[12] = 0x60;
    opt.extend_from_slice(&[3, 40, 7, 0]); // window scale running past
    add(
        "TCP option running past the header",
        eth(ETH_IPV4, &ipv4(t.guest, t.router, 6, &opt)),
    );
    add(
        "TCP truncated to 9 bytes",
        eth(ETH_IPV4, &ipv4(t.guest, t.router, 6, &syn[..9])),
    );

    // IPv6.
    let mut v6 = vec![0x60, 0, 0, 0, 0xff, 0xf0, 58, 255];
    v6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2]);
    add(
        "IPv6 payload length 65520 on an empty packet",
        eth(ETH_IPV6, &v6),
    );
    let mut hbh = v6.clone();
    hbh[4..6].copy_from_slice(&16u16.to_be_bytes());
    hbh[6] = 0; // hop-by-hop
    hbh.extend_from_slice(&[0, 255, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    add("IPv6 hop-by-hop header claiming 2 KiB", eth(ETH_IPV6, &hbh));
    let mut chain = v6.clone();
    chain[4..6].copy_from_slice(&32u16.to_be_bytes());
    chain[6] = 60; // destination options, each pointing at another
    for _ in 0..4 {
        chain.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    }
    add("IPv6 extension chain with no end", eth(ETH_IPV6, &chain));
    let mut ns = v6.clone();
    ns[4..6].copy_from_slice(&6u16.to_be_bytes());
    ns.extend_from_slice(&[135, 0, 0, 0, 0, 0]);
    add(
        "ICMPv6 neighbour solicitation truncated",
        eth(ETH_IPV6, &ns),
    );
    add("IPv6 truncated to 20 bytes", eth(ETH_IPV6, &v6[..20]));

    // DHCP.
    let xid = 0x0bad_d1c0;
    let disc = |opts: &[u8]| {
        let b = bootp_request(mac, xid, Ipv4Addr::UNSPECIFIED, opts);
        ethernet(
            BROADCAST,
            mac,
            ETH_IPV4,
            &udp4(Ipv4Addr::UNSPECIFIED, 68, Ipv4Addr::BROADCAST, 67, &b),
        )
    };
    let short = bootp_request(mac, xid, Ipv4Addr::UNSPECIFIED, &[]);
    add(
        "BOOTP truncated to 100 bytes",
        ethernet(
            BROADCAST,
            mac,
            ETH_IPV4,
            &udp4(
                Ipv4Addr::UNSPECIFIED,
                68,
                Ipv4Addr::BROADCAST,
                67,
                &short[..100],
            ),
        ),
    );
    add("DHCP with no options and no end", disc(&[]));
    add("DHCP option 53 with length 0", disc(&[53, 0, 255]));
    add("DHCP option 53 with length 200", disc(&[53, 200, 1, 255]));
    add("DHCP message type 0", disc(&[53, 1, 0, 255]));
    add("DHCP message type 250", disc(&[53, 1, 250, 255]));
    add(
        "DHCP option running past the packet",
        disc(&[53, 1, 1, 55, 250, 1, 3]),
    );
    add("DHCP only pad options, no end", disc(&[0; 300]));
    add(
        "DHCP option 50 of length 3",
        disc(&[53, 1, 3, 50, 3, 10, 0, 2, 255]),
    );
    add("DHCP option 61 of length 0", disc(&[53, 1, 1, 61, 0, 255]));
    add(
        "DHCP overload (52) pointing at garbage",
        disc(&[53, 1, 1, 52, 1, 3, 255]),
    );
    add(
        "DHCP duplicated message types",
        disc(&[53, 1, 1, 53, 1, 3, 53, 1, 7, 255]),
    );
    add("DHCP request for an address outside the network", {
        dhcp_frame(
            mac,
            xid,
            MessageType::Request,
            &[50, 4, 192, 0, 2, 99, 54, 4, 198, 51, 100, 1],
        )
    });
    add("DHCP inform with a lying ciaddr", {
        let mut o = vec![53, 1, MessageType::Inform.into(), 255];
        o.truncate(4);
        let b = bootp_request(mac, xid, Ipv4Addr::new(203, 0, 113, 9), &o);
        ethernet(
            rmac,
            mac,
            ETH_IPV4,
            &udp4(Ipv4Addr::new(203, 0, 113, 9), 68, t.router, 67, &b),
        )
    });
    let mut hlen = dhcp_discover(mac, xid);
    hlen[14 + 28 + 2] = 200; // BOOTP hlen 200
    add("DHCP hardware address length 200", hlen);
    let mut op = dhcp_discover(mac, xid);
    op[14 + 28] = 2; // BOOTREPLY from the guest
    add("DHCP BOOTREPLY from the guest", op);

    // 64 KiB and beyond.
    let big = udp4(t.guest, 40002, t.router, 9, &vec![0x5a; 65535 - 14 - 28]);
    add("65535-byte frame (largest possible)", eth(ETH_IPV4, &big));
    let mut lie = eth(ETH_IPV4, &big);
    lie[14 + 2..14 + 4].copy_from_slice(&0xffffu16.to_be_bytes());
    fix_ip_checksum(&mut lie);
    add("65535-byte frame with IPv4 total length 65535", lie);
    let mut r = Rng::new(0xa1b2_c3d4);
    let mut noise = random_bytes(&mut r, 65535);
    noise[..6].copy_from_slice(&rmac);
    noise[6..12].copy_from_slice(&mac);
    add("65535 bytes of noise", noise);
    add(
        "65536-byte frame (over the limit)",
        eth(ETH_IPV4, &vec![0; 65536 - 14]),
    );
    add(
        "100000-byte frame",
        eth(ETH_IPV4, &vec![0x45; 100_000 - 14]),
    );

    // Seeded random mutations of good frames, and pure noise.
    let seeds: Vec<Vec<u8>> = vec![
        dhcp_discover(mac, 0x5eed_0001),
        {
            let g = t.guest.octets();
            dhcp_frame(
                mac,
                0x5eed_0002,
                MessageType::Request,
                &[50, 4, g[0], g[1], g[2], g[3]],
            )
        },
        eth(ETH_ARP, &good_arp),
        eth(ETH_IPV4, &echo),
        eth(ETH_IPV4, &u),
        eth(ETH_IPV6, &ns),
    ];
    // The Ethernet addresses and the DHCP client hardware address stay the
    // guest's: what a guest may claim about other machines is not this
    // barrage's concern, only that no byte pattern breaks the helper.
    const CHADDR: std::ops::Range<usize> = 14 + 28 + 28..14 + 28 + 28 + 16;
    for i in 0..240 {
        let mut f = seeds[i % seeds.len()].clone();
        let flips = 1 + r.below(8);
        for _ in 0..flips {
            let at = 12 + r.below(f.len() - 12);
            if i % seeds.len() < 2 && CHADDR.contains(&at) {
                continue;
            }
            f[at] = r.next_u64() as u8;
        }
        if r.below(4) == 0 {
            let keep = 14 + r.below(f.len() - 14);
            f.truncate(keep);
        }
        add(&format!("mutation {i}"), f);
    }
    for i in 0..40 {
        let n = 14 + r.below(1500);
        let mut f = random_bytes(&mut r, n);
        f[..6].copy_from_slice(&rmac);
        f[6..12].copy_from_slice(&mac);
        let ets = [ETH_IPV4, ETH_ARP, ETH_IPV6];
        f[12..14].copy_from_slice(&ets[i % 3].to_be_bytes());
        add(&format!("noise {i}"), f);
    }
    out
}
