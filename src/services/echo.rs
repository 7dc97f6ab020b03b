//! Echo replies from the virtual addresses themselves (router, DNS, and any
//! other address of the virtual network, and for IPv6 their link-local
//! forms), as slirp answers them.
#![forbid(unsafe_code)]

use crate::config::router_mac6;
use crate::counters::Counters;
use crate::frame::{self, L2};
use crate::link::Tx;
use crate::wire::{icmpv4, icmpv6, ip_proto, ipv4, Mac};
use std::net::{IpAddr, Ipv6Addr};

/// Answer an ICMPv4 echo request sent to a virtual address.
pub fn reply_v4(l2: &L2, ip: &ipv4::Repr, l4: &[u8], tx: &mut Tx, counters: &mut Counters) {
    let req = match icmpv4::Packet::new_checked(l4).and_then(|p| icmpv4::Repr::parse(&p)) {
        Ok(r) => r,
        Err(_) => {
            counters.icmp_malformed += 1;
            return;
        }
    };
    let icmpv4::Repr::EchoRequest {
        ident,
        seq_no,
        data,
    } = req
    else {
        counters.icmp_dropped += 1;
        return;
    };
    let reply = icmpv4::Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let (src, dst) = (IpAddr::V4(ip.dst), IpAddr::V4(ip.src));
    tx.send_with(|buf| {
        let off = frame::write_ip(buf, l2, src, dst, ip_proto::ICMP, reply.buffer_len(), 64);
        if off == 0 {
            return 0;
        }
        reply.emit(&mut buf[off..]).map(|n| off + n).unwrap_or(0)
    });
}

/// Answer an ICMPv6 echo request from `src` (Ethernet `eth_src`) to the
/// virtual address `dst`, from `dst` with slirp's MAC for it.
pub fn reply_v6(
    eth_src: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    l4: &[u8],
    tx: &mut Tx,
    counters: &mut Counters,
) {
    tx.send_with(|buf| write_reply_v6(eth_src, src, dst, l4, buf, counters));
}

/// Like [`reply_v6`], writing the reply (if any) into `buf`; returns the
/// frame's length, 0 for none.
pub fn write_reply_v6(
    eth_src: Mac,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    l4: &[u8],
    buf: &mut [u8],
    counters: &mut Counters,
) -> usize {
    let req = match icmpv6::Packet::new_checked(l4).and_then(|p| icmpv6::Repr::parse(&p, src, dst))
    {
        Ok(r) => r,
        Err(_) => {
            counters.icmp_malformed += 1;
            return 0;
        }
    };
    let icmpv6::Repr::EchoRequest {
        ident,
        seq_no,
        data,
    } = req
    else {
        counters.icmp_dropped += 1;
        return 0;
    };
    let reply = icmpv6::Repr::EchoReply {
        ident,
        seq_no,
        data,
    };
    let mac = router_mac6(dst);
    let l2 = L2 {
        guest: eth_src,
        router4: mac,
        router6: mac,
    };
    let (from, to) = (IpAddr::V6(dst), IpAddr::V6(src));
    let off = frame::write_ip(buf, &l2, from, to, ip_proto::ICMPV6, reply.buffer_len(), 64);
    if off == 0 {
        return 0;
    }
    match buf.get_mut(off..).map(|b| reply.emit(b, dst, src)) {
        Some(Ok(n)) => off + n,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{hex, GUEST_MAC};
    use crate::wire::{ethernet, ipv6};

    /// Echo request (golden, from the wire tests) -> reply, byte for byte.
    #[test]
    fn v6_echo_reply_golden() {
        let guest: Ipv6Addr = "fec0::5054:ff:fe12:3456".parse().unwrap();
        for (dst, mac) in [
            ("fec0::2", [0x52, 0x56, 0, 0, 0, 2]),
            ("fec0::3", [0x52, 0x56, 0, 0, 0, 3]),
            ("fe80::2", [0x52, 0x56, 0, 0, 0, 2]),
        ] {
            let dst: Ipv6Addr = dst.parse().unwrap();
            let mut req = hex("8000 0000 abcd0001 70696e67");
            icmpv6::Packet::new_checked(&mut req[..])
                .unwrap()
                .fill_checksum(guest, dst);
            let mut buf = [0u8; 128];
            let mut counters = Counters::default();
            let n = write_reply_v6(GUEST_MAC, guest, dst, &req, &mut buf, &mut counters);
            assert_eq!(n, 14 + 40 + 12);
            let e = ethernet::Frame::new_checked(&buf[..n]).unwrap();
            assert_eq!((e.dst(), e.src()), (GUEST_MAC, mac));
            let p = ipv6::Packet::new_checked(&buf[14..n]).unwrap();
            let ip = ipv6::Repr::parse(&p).unwrap();
            assert_eq!((ip.src, ip.dst, ip.next_header), (dst, guest, 58));
            let mut want = hex("8100 0000 abcd0001 70696e67");
            icmpv6::Packet::new_checked(&mut want[..])
                .unwrap()
                .fill_checksum(dst, guest);
            assert_eq!(p.payload(), &want[..]);
        }
    }

    #[test]
    fn v6_rejects() {
        let (g, h): (Ipv6Addr, Ipv6Addr) = ("fec0::9".parse().unwrap(), "fec0::2".parse().unwrap());
        let mut buf = [0u8; 128];
        let mut counters = Counters::default();
        // Bad checksum.
        let req = hex("8000 0000 abcd0001 70696e67");
        assert_eq!(
            write_reply_v6(GUEST_MAC, g, h, &req, &mut buf, &mut counters),
            0
        );
        assert_eq!(counters.icmp_malformed, 1);
        // An echo reply is not answered.
        let mut rep = hex("8100 0000 abcd0001");
        icmpv6::Packet::new_checked(&mut rep[..])
            .unwrap()
            .fill_checksum(g, h);
        assert_eq!(
            write_reply_v6(GUEST_MAC, g, h, &rep, &mut buf, &mut counters),
            0
        );
        assert_eq!(counters.icmp_dropped, 1);
        // Too big for the buffer.
        let mut big = vec![0u8; 200];
        big[0] = 128;
        icmpv6::Packet::new_checked(&mut big[..])
            .unwrap()
            .fill_checksum(g, h);
        assert_eq!(
            write_reply_v6(GUEST_MAC, g, h, &big, &mut buf, &mut counters),
            0
        );
    }
}
