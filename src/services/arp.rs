//! ARP: the virtual router answers for every address of the virtual
//! network except the guest's own (slirp's behaviour), each with slirp's MAC
//! `52:55` + that address, never the guest's MAC.
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::counters::Counters;
use crate::frame::L2;
use crate::link::Tx;
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
    let mac = cfg.mac4(repr.target_ip);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::Link;
    use std::net::Ipv4Addr;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;

    const GUEST: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn ask(target: Ipv4Addr, op: arp::Operation) -> Option<arp::Repr> {
        let cfg = Config::for_test(&[]);
        let (vmm, ours) = UnixDatagram::pair().unwrap();
        vmm.set_nonblocking(true).unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        let req = arp::Repr {
            op,
            sender_mac: GUEST,
            sender_ip: Ipv4Addr::new(10, 0, 2, 15),
            target_mac: [0; 6],
            target_ip: target,
        };
        let mut p = [0u8; arp::PACKET_LEN];
        req.emit(&mut p).unwrap();
        let l2 = L2 {
            guest: GUEST,
            router4: [0; 6],
            router6: [0; 6],
        };
        handle(&cfg, &l2, &p, &mut link.tx, &mut Counters::default());
        link.tx.flush();
        let mut buf = [0u8; 128];
        let n = vmm.recv(&mut buf).ok()?;
        let eth = ethernet::Frame::new_checked(&buf[..n]).unwrap();
        assert_eq!(eth.dst(), GUEST);
        assert_eq!(eth.ethertype(), ethertype::ARP);
        let r = arp::Repr::parse(&arp::Packet::new_checked(eth.payload()).unwrap()).unwrap();
        assert_eq!(eth.src(), r.sender_mac);
        Some(r)
    }

    #[test]
    fn every_virtual_address_answers_with_its_own_slirp_mac() {
        for (ip, mac) in [
            ([10, 0, 2, 2], [0x52, 0x55, 10, 0, 2, 2]),
            ([10, 0, 2, 3], [0x52, 0x55, 10, 0, 2, 3]),
            ([10, 0, 2, 77], [0x52, 0x55, 10, 0, 2, 77]),
        ] {
            let r = ask(Ipv4Addr::from(ip), arp::Operation::Request).unwrap();
            assert_eq!(r.op, arp::Operation::Reply);
            assert_eq!((r.sender_mac, r.sender_ip), (mac, Ipv4Addr::from(ip)));
            assert_eq!(
                (r.target_mac, r.target_ip),
                (GUEST, Ipv4Addr::new(10, 0, 2, 15))
            );
        }
    }

    #[test]
    fn the_guests_own_address_others_and_replies_get_nothing() {
        // Duplicate address detection for the guest's own address.
        assert!(ask(Ipv4Addr::new(10, 0, 2, 15), arp::Operation::Request).is_none());
        assert!(ask(Ipv4Addr::new(10, 0, 2, 255), arp::Operation::Request).is_none());
        assert!(ask(Ipv4Addr::new(192, 0, 2, 1), arp::Operation::Request).is_none());
        assert!(ask(Ipv4Addr::new(10, 0, 2, 2), arp::Operation::Reply).is_none());
    }
}
