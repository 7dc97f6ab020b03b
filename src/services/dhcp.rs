//! DHCPv4 server with slirp's view: one lease (the guest's address) for a
//! day, the virtual host as router and server, the virtual DNS address.
//!
//! Options go out in slirp's order, message type first: 53, 54, 51, 1, 3,
//! 6, then 12 (`--hostname`), 15 (`--domainname`), 119 (search list), and
//! 26 only when the MTU is not 1500, so `--mtu 1500` gives exactly slirp's
//! view. BOOTP clients (no message type) get the same answer.
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::frame::{self, L2};
use crate::link::Tx;
use crate::stack::Counters;
use crate::wire::dhcpv4::{self, MessageType, OptionRepr, Reply};
use crate::wire::{ip_proto, udp};
use std::net::{IpAddr, Ipv4Addr};

/// slirp's lease time.
pub const LEASE_SECS: u32 = 24 * 3600;

/// Whether a UDP datagram is addressed to the DHCP server port.
pub fn is_dhcp(l4: &[u8]) -> bool {
    matches!(udp::Packet::new_checked(l4), Ok(p) if p.dst_port() == dhcpv4::SERVER_PORT)
}

/// The DHCP server's resolved options, computed once.
pub struct Server {
    search: Vec<String>,
}

impl Server {
    pub fn new(cfg: &Config) -> Server {
        Server {
            search: cfg.dns_suffixes.clone(),
        }
    }

    /// A datagram from the guest to port 67.
    pub fn handle(
        &mut self,
        cfg: &Config,
        l2: &L2,
        src: Ipv4Addr,
        l4: &[u8],
        tx: &mut Tx,
        counters: &mut Counters,
    ) {
        let Some(net) = cfg.net4.as_ref() else { return };
        let pseudo = crate::wire::checksum::PseudoHeader::V4 {
            src,
            dst: Ipv4Addr::BROADCAST,
        };
        let Ok(u) = udp::Packet::new_checked(l4) else {
            counters.dhcp_malformed += 1;
            return;
        };
        // The pseudo header's destination may be broadcast or the server;
        // a zero checksum means "none" in UDP over IPv4.
        let ok = u.checksum() == 0
            || u.verify_checksum(&pseudo)
            || u.verify_checksum(&crate::wire::checksum::PseudoHeader::V4 { src, dst: net.host });
        if !ok {
            counters.udp_bad_checksum += 1;
            return;
        }
        let Ok(p) = dhcpv4::Packet::new_checked(u.payload()) else {
            counters.dhcp_malformed += 1;
            return;
        };
        if p.op() != dhcpv4::OP_REQUEST {
            counters.dhcp_ignored += 1;
            return;
        }
        let (kind, requested, server_id, client_mac, xid, ciaddr) = match dhcpv4::Repr::parse(&p) {
            Ok(r) => (
                Some(r.message_type),
                r.requested_ip,
                r.server_id,
                r.client_mac,
                r.xid,
                r.ciaddr,
            ),
            // BOOTP: no message type option, but a well-formed header.
            Err(crate::wire::Error::Unsupported)
                if p.htype() == 1 && p.hlen() == 6 && p.magic() == dhcpv4::MAGIC_COOKIE =>
            {
                (None, None, None, p.client_mac(), p.xid(), p.ciaddr())
            }
            Err(_) => {
                counters.dhcp_malformed += 1;
                return;
            }
        };
        let reply = match kind {
            Some(MessageType::Discover) => MessageType::Offer,
            None => MessageType::Ack,
            Some(MessageType::Request) => {
                if server_id.is_some_and(|s| s != net.host) {
                    // The guest chose another server.
                    counters.dhcp_ignored += 1;
                    return;
                }
                let wanted = requested.unwrap_or(ciaddr);
                if wanted == net.guest {
                    MessageType::Ack
                } else {
                    MessageType::Nak
                }
            }
            Some(MessageType::Inform) => MessageType::Ack,
            _ => {
                // RELEASE, DECLINE and anything else: nothing to say.
                counters.dhcp_ignored += 1;
                return;
            }
        };
        let inform = kind == Some(MessageType::Inform);
        let r = Reply {
            message_type: reply,
            xid,
            broadcast: false,
            ciaddr: if inform {
                ciaddr
            } else {
                Ipv4Addr::UNSPECIFIED
            },
            yiaddr: if reply == MessageType::Nak || inform {
                Ipv4Addr::UNSPECIFIED
            } else {
                net.guest
            },
            siaddr: net.host,
            giaddr: Ipv4Addr::UNSPECIFIED,
            client_mac,
        };
        let routers = [net.host];
        let dns = [net.dns];
        let search: Vec<&str> = self.search.iter().map(String::as_str).collect();
        let mut opts: [OptionRepr; 12] = [OptionRepr::Raw { code: 0, data: &[] }; 12];
        let mut n = 0;
        let mut push = |o| {
            opts[n] = o;
            n += 1;
        };
        push(OptionRepr::ServerId(net.host));
        if reply != MessageType::Nak {
            if !inform {
                push(OptionRepr::LeaseTime(LEASE_SECS));
            }
            push(OptionRepr::SubnetMask(net.mask()));
            push(OptionRepr::Router(&routers));
            if cfg.dns_forward {
                push(OptionRepr::DnsServers(&dns));
            }
            if let Some(h) = &cfg.hostname {
                push(OptionRepr::Hostname(h));
            }
            if let Some(d) = &cfg.domainname {
                push(OptionRepr::DomainName(d));
            }
            if !search.is_empty() {
                push(OptionRepr::DomainSearch(&search));
            }
            if cfg.mtu != 1500 {
                push(OptionRepr::InterfaceMtu(cfg.mtu));
            }
        } else {
            push(OptionRepr::Message("requested address not available"));
        }
        let opts = &opts[..n];
        let (from, to) = (IpAddr::V4(net.host), IpAddr::V4(Ipv4Addr::BROADCAST));
        let l2 = L2 {
            guest: client_mac,
            ..*l2
        };
        tx.send_with(|buf| {
            let Ok(len) = r.buffer_len(opts) else {
                return 0;
            };
            let off = frame::write_ip(buf, &l2, from, to, ip_proto::UDP, udp::HEADER_LEN + len, 64);
            if off == 0 {
                return 0;
            }
            let msg = &mut buf[off..off + udp::HEADER_LEN + len];
            if r.emit(&mut msg[udp::HEADER_LEN..], opts).is_err() {
                return 0;
            }
            msg[0..2].copy_from_slice(&dhcpv4::SERVER_PORT.to_be_bytes());
            msg[2..4].copy_from_slice(&dhcpv4::CLIENT_PORT.to_be_bytes());
            msg[4..6].copy_from_slice(&((udp::HEADER_LEN + len) as u16).to_be_bytes());
            frame::fill_l4_checksum(msg, from, to, ip_proto::UDP, 6);
            off + udp::HEADER_LEN + len
        });
    }
}
