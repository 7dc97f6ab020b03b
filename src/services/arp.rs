//! ARP: the virtual router answers for every address of the virtual
//! network except the guest's own (slirp's behaviour), each with slirp's MAC
//! `52:55` + that address, never the guest's MAC.
#![forbid(unsafe_code)]

use crate::config::{router_mac4, Config};
use crate::frame::L2;
use crate::link::Tx;
use crate::stack::Counters;
use crate::wire::{arp, ethernet, ethertype};

pub fn handle(cfg: &Config, _l2: &L2, payload: &[u8], tx: &mut Tx, counters: &mut Counters) {
    let Some(net) = cfg.net4.as_ref() else {
        counters.arp_ignored += 1;
        return;
    };
    let repr = match arp::Packet::new_checked(payload).and_then(|p| arp::Repr::parse(&p)) {
        Ok(r) => r,
        Err(_) => {
            counters.arp_malformed += 1;
            return;
        }
    };
    // Only requests for virtual addresses; the guest's duplicate address
    // probes (for its own address) go unanswered, as on a real network.
    if repr.op != arp::Operation::Request || !net.is_virtual(repr.target_ip) {
        counters.arp_ignored += 1;
        return;
    }
    let mac = router_mac4(repr.target_ip);
    let reply = arp::Repr {
        op: arp::Operation::Reply,
        sender_mac: mac,
        sender_ip: repr.target_ip,
        target_mac: repr.sender_mac,
        target_ip: repr.sender_ip,
    };
    tx.send_with(|buf| {
        let Ok(h) = ethernet::emit_header(buf, repr.sender_mac, mac, ethertype::ARP) else {
            return 0;
        };
        match reply.emit(&mut buf[h..]) {
            Ok(n) => h + n,
            Err(_) => 0,
        }
    });
}
