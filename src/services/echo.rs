//! Echo replies from the virtual addresses themselves (router, DNS, and any
//! other address of the virtual network), as slirp answers them.
#![forbid(unsafe_code)]

use crate::frame::{self, L2};
use crate::link::Tx;
use crate::stack::Counters;
use crate::wire::{icmpv4, ip_proto, ipv4};
use std::net::IpAddr;

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
