//! DHCPv4 server with slirp's view: one lease (the guest's address) for a
//! day, the virtual host as router and server, the virtual DNS address.
//!
//! Options go out in slirp's order, message type first: 53, 54, 51, 1, 3,
//! 6, then 12 (`--hostname`), 15 (`--domainname`), 119 (search list), and
//! 26 only when the MTU is not 1500, so `--mtu 1500` gives exactly slirp's
//! view. BOOTP clients (no message type) get the same answer. passt's
//! additions: 81 (`--fqdn`), and 121 when the router is outside the
//! guest's subnet (a host route to it, then the default route through it).
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::counters::Counters;
use crate::frame::{self, L2};
use crate::link::Tx;
use crate::wire::dhcpv4::{self, MessageType, OptionRepr, Reply};
use crate::wire::udp;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// slirp's lease time.
pub const LEASE_SECS: u32 = 24 * 3600;

/// Whether a UDP datagram is addressed to the DHCP server port.
pub fn is_dhcp(l4: &[u8]) -> bool {
    matches!(udp::Packet::new_checked(l4), Ok(p) if p.dst_port() == dhcpv4::SERVER_PORT)
}

/// The DHCP server's resolved options, computed once.
pub struct Server {
    search: Vec<String>,
    /// Option 81's body (RFC 4702): flags E (wire-encoded name), two
    /// RCODEs of 255, the name; empty when there is no `--fqdn`.
    fqdn: Vec<u8>,
}

impl Server {
    pub fn new(cfg: &Config) -> Server {
        let mut fqdn = Vec::new();
        if let Some(name) = &cfg.fqdn {
            let names = [name.trim_end_matches('.')];
            let mut enc = vec![0u8; crate::wire::domain::encoded_len(&names).unwrap_or(0)];
            if crate::wire::domain::encode(&names, &mut enc).is_ok() && !enc.is_empty() {
                fqdn = [&[0x04, 0xff, 0xff][..], &enc].concat();
            }
        }
        Server {
            search: cfg.dns_suffixes.clone(),
            fqdn,
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
        if cfg.off.dhcp {
            counters.disabled += 1;
            return;
        }
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
            siaddr: cfg.dhcp_next_server.unwrap_or(net.host),
            giaddr: Ipv4Addr::UNSPECIFIED,
            client_mac,
        };
        let routers = [net.host];
        let dns = [net.dns];
        let search: Vec<&str> = self.search.iter().map(String::as_str).collect();
        let off_link = [
            dhcpv4::Route {
                dest: net.host,
                prefix_len: 32,
                gateway: Ipv4Addr::UNSPECIFIED,
            },
            dhcpv4::Route {
                dest: Ipv4Addr::UNSPECIFIED,
                prefix_len: 0,
                gateway: net.host,
            },
        ];
        let mut opts: [OptionRepr; 16] = [OptionRepr::Raw { code: 0, data: &[] }; 16];
        let next_server = cfg.dhcp_next_server.map(|a| a.to_string());
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
            if !self.fqdn.is_empty() {
                push(OptionRepr::Raw {
                    code: 81,
                    data: &self.fqdn,
                });
            }
            if !net.contains(net.host) {
                push(OptionRepr::ClasslessRoutes(&off_link));
            }
            if let Some(d) = &cfg.domainname {
                push(OptionRepr::DomainName(d));
            }
            if !search.is_empty() {
                push(OptionRepr::DomainSearch(&search));
            }
            if cfg.mtu != 1500 || cfg.mtu_option_always {
                push(OptionRepr::InterfaceMtu(cfg.mtu));
            }
            // PXE: the boot file, fetched by TFTP from siaddr.
            if let Some(s) = &next_server {
                push(OptionRepr::TftpServer(s));
            }
            if let Some(f) = &cfg.dhcp_bootfile {
                push(OptionRepr::BootfileName(f));
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
            let at = frame::l4_offset(from) + udp::HEADER_LEN;
            let Some(msg) = buf.get_mut(at..at + len) else {
                return 0;
            };
            if r.emit(msg, opts).is_err() {
                return 0;
            }
            let from = SocketAddr::new(from, dhcpv4::SERVER_PORT);
            let to = SocketAddr::new(to, dhcpv4::CLIENT_PORT);
            frame::write_udp(buf, &l2, from, to, len)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Counters;
    use crate::link::Link;
    use crate::wire::{ethernet, ipv4};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    /// A client message: UDP 68 → 67 with a zero (absent) checksum.
    fn client(kind: u8, extra: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 240];
        d[0] = 1; // BOOTREQUEST
        d[1] = 1;
        d[2] = 6;
        d[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        d[28..34].copy_from_slice(&MAC);
        d[236..240].copy_from_slice(&dhcpv4::MAGIC_COOKIE.to_be_bytes());
        d.extend_from_slice(&[53, 1, kind]);
        d.extend_from_slice(extra);
        d.push(255);
        let mut u = Vec::new();
        u.extend_from_slice(&68u16.to_be_bytes());
        u.extend_from_slice(&67u16.to_be_bytes());
        u.extend_from_slice(&((d.len() + 8) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(&d);
        u
    }

    /// Run one client message through the server; the reply's DHCP part.
    fn exchange(args: &[&str], msg: &[u8]) -> Option<Vec<u8>> {
        let cfg = Config::for_test(args);
        let (vmm, ours) = UnixDatagram::pair().unwrap();
        vmm.set_nonblocking(true).unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        let l2 = L2 {
            guest: [0xff; 6],
            router4: crate::config::router_mac4(cfg.net4.as_ref().unwrap().host),
            router6: [0; 6],
        };
        let mut c = Counters::default();
        Server::new(&cfg).handle(&cfg, &l2, Ipv4Addr::UNSPECIFIED, msg, &mut link.tx, &mut c);
        link.tx.flush();
        let mut buf = [0u8; 2048];
        let n = vmm.recv(&mut buf).ok()?;
        let eth = ethernet::Frame::new_checked(&buf[..n]).unwrap();
        assert_eq!(eth.dst(), MAC);
        assert_eq!(eth.src(), [0x52, 0x55, 10, 0, 2, 2]);
        let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
        let r = ipv4::Repr::parse(&ip).unwrap();
        assert_eq!(
            (r.src, r.dst),
            (Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::BROADCAST)
        );
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (67, 68));
        assert!(u.verify_checksum(&crate::wire::checksum::PseudoHeader::V4 {
            src: r.src,
            dst: r.dst
        }));
        Some(u.payload().to_vec())
    }

    /// passt's view: option 26 at 1500, 121 for a gateway outside the
    /// subnet (host route, then default), 81 for --fqdn, one MAC.
    #[test]
    fn passt_view_options() {
        let argv: Vec<std::ffi::OsString> = [
            "-a",
            "169.254.2.15",
            "-n",
            "16",
            "-m",
            "1500",
            "--fqdn",
            "vm1.example",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let crate::passt::Parsed::Run(o, mut p) = crate::passt::parse(&argv).unwrap() else {
            panic!("no options")
        };
        p.host[0] = Some(crate::hostif::HostAddr {
            index: 2,
            addr: Some(("192.0.2.2".parse().unwrap(), 24)),
            gateway: Some("192.0.2.1".parse().unwrap()),
            link_local: None,
        });
        let cfg = crate::passt::config(&o, &p, Some("nameserver 127.0.0.1\n")).unwrap();
        let (vmm, ours) = UnixDatagram::pair().unwrap();
        vmm.set_nonblocking(true).unwrap();
        let mut link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        let l2 = L2 {
            guest: [0xff; 6],
            router4: cfg.mac4(cfg.net4.as_ref().unwrap().host),
            router6: [0; 6],
        };
        let mut c = Counters::default();
        let msg = client(1, &[]);
        Server::new(&cfg).handle(&cfg, &l2, Ipv4Addr::UNSPECIFIED, &msg, &mut link.tx, &mut c);
        link.tx.flush();
        let mut buf = [0u8; 2048];
        let n = vmm.recv(&mut buf).unwrap();
        let eth = ethernet::Frame::new_checked(&buf[..n]).unwrap();
        assert_eq!(eth.src(), crate::passt::PASST_MAC);
        let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
        let u = udp::Packet::new_checked(ip.payload()).unwrap();
        let opts = options(u.payload());
        let get = |code| opts.iter().find(|o| o.0 == code).map(|o| o.1.clone());
        assert_eq!(get(1), Some(vec![255, 255, 0, 0]));
        assert_eq!(get(3), Some(vec![192, 0, 2, 1]));
        assert_eq!(get(6), Some(vec![192, 0, 2, 1]));
        assert_eq!(get(26), Some(1500u16.to_be_bytes().to_vec()));
        assert_eq!(
            get(121),
            Some(vec![32, 192, 0, 2, 1, 0, 0, 0, 0, 0, 192, 0, 2, 1])
        );
        let mut fqdn = vec![4, 0xff, 0xff, 3];
        fqdn.extend_from_slice(b"vm1\x07example\x00");
        assert_eq!(get(81), Some(fqdn));
    }

    /// (code, data) of every option, in order.
    fn options(reply: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let p = dhcpv4::Packet::new_checked(reply).unwrap();
        p.options_iter()
            .map(|o| o.unwrap())
            .map(|o| (o.code, o.data.to_vec()))
            .collect()
    }

    #[test]
    fn discover_gets_slirps_offer_in_slirps_order() {
        let reply = exchange(&[], &client(1, &[])).unwrap();
        let p = dhcpv4::Packet::new_checked(&reply[..]).unwrap();
        assert_eq!(p.op(), dhcpv4::OP_REPLY);
        assert_eq!(p.xid(), 0x1234_5678);
        assert_eq!(p.yiaddr(), Ipv4Addr::new(10, 0, 2, 15));
        let codes: Vec<u8> = options(&reply).iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, vec![53, 54, 51, 1, 3, 6, 26]);
        let o = options(&reply);
        assert_eq!(o[0].1, vec![2]); // OFFER
        assert_eq!(o[1].1, vec![10, 0, 2, 2]);
        assert_eq!(o[2].1, 86400u32.to_be_bytes().to_vec());
        assert_eq!(o[3].1, vec![255, 255, 255, 0]);
        assert_eq!(o[5].1, vec![10, 0, 2, 3]);
        assert_eq!(o[6].1, 65520u16.to_be_bytes().to_vec());
    }

    #[test]
    fn mtu_1500_is_slirps_view_and_names_are_offered() {
        let reply = exchange(
            &[
                "--mtu",
                "1500",
                "--hostname",
                "vm1",
                "--dns-suffixes",
                "a.example",
            ],
            &client(1, &[]),
        )
        .unwrap();
        let codes: Vec<u8> = options(&reply).iter().map(|(c, _)| *c).collect();
        assert_eq!(codes, vec![53, 54, 51, 1, 3, 6, 12, 119]);
    }

    #[test]
    fn request_for_the_lease_is_acked_and_others_naked() {
        let ok = exchange(&[], &client(3, &[50, 4, 10, 0, 2, 15])).unwrap();
        assert_eq!(options(&ok)[0].1, vec![5]); // ACK
        let nak = exchange(&[], &client(3, &[50, 4, 10, 0, 2, 99])).unwrap();
        assert_eq!(options(&nak)[0].1, vec![6]); // NAK
                                                 // A request for another server is not ours to answer.
        assert!(exchange(&[], &client(3, &[50, 4, 10, 0, 2, 15, 54, 4, 10, 0, 2, 9])).is_none());
        // RELEASE: nothing to say.
        assert!(exchange(&[], &client(7, &[])).is_none());
    }
}
