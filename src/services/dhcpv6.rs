//! DHCPv6 server (RFC 8415) with slirp's view, stateless and stateful.
//!
//! Stateless: Information-Request gets DNS servers (23, the virtual DNS
//! address when DNS forwarding is on) and the domain list (24).
//! Stateful: one address, the configured guest address (`fec0::15`), in
//! the client's IA_NA: Solicit gets an Advertise (preference 255), or a
//! Reply when it asks for rapid commit; Request, Renew and Rebind get a
//! Reply binding it (other addresses the client holds from elsewhere come
//! back with zero lifetimes); Confirm says whether the client's addresses
//! are on link; Release and Decline are acknowledged.
//!
//! With `--fqdn` (passt's personality) every configuring reply carries the
//! client FQDN option (39, RFC 4704), with passt's flags: O set when the
//! client asked to update the AAAA record itself (S), else none.
//!
//! The server's DUID is a DUID-LL of the router MAC; answers go from the
//! router's link-local address to the client's address and port.
//! Pure frame-in, frame-out: no sockets, no syscalls.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use super::ndp::{self, Incoming};
use crate::config::{Config, Net6};
use crate::counters::Counters;
use crate::frame::{self, L2};
use crate::link::Tx;
use crate::wire::checksum::PseudoHeader;
use crate::wire::dhcpv6::{self, opt, status, IaAddress, MessageType, OptionRepr, Reply};
use crate::wire::{domain, udp};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1).
pub const ALL_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);
/// The lease: a day, like the DHCPv4 server's; T1 and T2 at the RFC's
/// recommended 0.5 and 0.8 of it.
pub const LIFETIME_S: u32 = 24 * 3600;
pub const T1_S: u32 = LIFETIME_S / 2;
pub const T2_S: u32 = LIFETIME_S / 5 * 4;
/// Addresses of a client's IA echoed back with zero lifetimes, at most.
const STALE_ADDRS: usize = 4;
/// Room for the domain list option.
const MAX_DOMAINS_LEN: usize = 1024;

/// Whether a UDP datagram is addressed to the DHCPv6 server port.
pub fn is_dhcpv6(l4: &[u8]) -> bool {
    matches!(udp::Packet::new_checked(l4), Ok(p) if p.dst_port() == dhcpv6::SERVER_PORT)
}

/// The server's identity and resolved options, computed once.
pub struct Server {
    /// DUID-LL (type 3, hardware type 1) of the router MAC.
    duid: [u8; 10],
    /// Option 24's data: the search list, encoded.
    domains: Vec<u8>,
    /// Option 39's data (flags 0, then the name) and the same with the O
    /// flag; empty without `--fqdn`.
    fqdn: [Vec<u8>; 2],
}

/// RFC 4704 §4.1: S, the client would update its AAAA record; O, the
/// server overrode that.
const FQDN_S: u8 = 0x01;
const FQDN_O: u8 = 0x02;

/// What a client message calls for.
struct Answer {
    msg_type: MessageType,
    /// Bind our address in the client's IA_NA.
    bind: bool,
    /// Echo the client's other IA addresses with zero lifetimes.
    zero_others: bool,
    status: Option<(u16, &'static str)>,
    rapid_commit: bool,
    preference: bool,
    /// DNS servers and domain list.
    config: bool,
}

impl Server {
    pub fn new(cfg: &Config) -> Server {
        let mac = cfg
            .net6
            .as_ref()
            .map(|n| cfg.mac6(n.host))
            .unwrap_or_default();
        let mut duid = [0, 3, 0, 1, 0, 0, 0, 0, 0, 0];
        if let Some(d) = duid.get_mut(4..) {
            d.copy_from_slice(&mac);
        }
        let names = ndp::fitting_names(&cfg.dns_suffixes, MAX_DOMAINS_LEN);
        let mut domains = vec![0u8; domain::encoded_len(&names).unwrap_or(0)];
        if domain::encode(&names, &mut domains).is_err() {
            domains.clear();
        }
        let fqdn = cfg
            .fqdn
            .as_deref()
            .and_then(|f| {
                let mut v = vec![0u8; 1 + domain::encoded_len(&[f]).ok()?];
                domain::encode(&[f], v.get_mut(1..)?).ok()?;
                Some(v)
            })
            .unwrap_or_default();
        let mut fqdn_o = fqdn.clone();
        if let Some(flags) = fqdn_o.first_mut() {
            *flags = FQDN_O;
        }
        Server {
            duid,
            domains,
            fqdn: [fqdn, fqdn_o],
        }
    }

    /// The server's DUID.
    pub fn duid(&self) -> &[u8] {
        &self.duid
    }

    /// A datagram from the guest to port 547.
    pub fn handle(
        &self,
        cfg: &Config,
        pkt: &Incoming,
        l4: &[u8],
        tx: &mut Tx,
        counters: &mut Counters,
    ) {
        tx.send_with(|buf| self.answer(cfg, pkt, l4, buf, counters));
    }

    /// Like [`Server::handle`], writing the answer (if any) into `buf`;
    /// returns the frame's length, 0 for none.
    pub fn answer(
        &self,
        cfg: &Config,
        pkt: &Incoming,
        l4: &[u8],
        buf: &mut [u8],
        counters: &mut Counters,
    ) -> usize {
        let Some(net) = cfg.net6.as_ref() else {
            counters.ipv6_ignored += 1;
            return 0;
        };
        if (pkt.dst != ALL_SERVERS && !net.is_own(pkt.dst))
            || pkt.src.is_unspecified()
            || pkt.src.is_multicast()
        {
            counters.dhcpv6_ignored += 1;
            return 0;
        }
        let Ok(u) = udp::Packet::new_checked(l4) else {
            counters.dhcpv6_malformed += 1;
            return 0;
        };
        if !u.verify_checksum(&PseudoHeader::V6 {
            src: pkt.src,
            dst: pkt.dst,
        }) {
            counters.udp_bad_checksum += 1;
            return 0;
        }
        if u.src_port() == 0 {
            // Nothing can be sent back to port 0.
            counters.dhcpv6_malformed += 1;
            return 0;
        }
        let Ok(p) = dhcpv6::Packet::new_checked(u.payload()) else {
            counters.dhcpv6_malformed += 1;
            return 0;
        };
        let Ok(req) = dhcpv6::Repr::parse(&p) else {
            counters.dhcpv6_malformed += 1;
            return 0;
        };
        // The client's FQDN flags, for option 39's answer (the list parsed
        // whole above).
        let s_flag = p
            .options_iter()
            .filter_map(Result::ok)
            .find(|o| o.code == opt::CLIENT_FQDN)
            .and_then(|o| o.data.first())
            .is_some_and(|f| f & FQDN_S != 0);
        let Some(a) = self.decide(net, &req) else {
            counters.dhcpv6_ignored += 1;
            return 0;
        };
        let [plain, overridden] = &self.fqdn;
        let fqdn = if s_flag { overridden } else { plain };
        self.write_reply(cfg, net, pkt, u.src_port(), &req, &a, fqdn, buf)
    }

    /// RFC 8415 §16's validity rules, then the answer for each type.
    fn decide(&self, net: &Net6, req: &dhcpv6::Repr) -> Option<Answer> {
        let ours = req.server_id == Some(&self.duid[..]);
        let none = req.server_id.is_none();
        let client = req.client_id.is_some();
        let ia = req.ia_na.is_some();
        let reply = |bind: bool| Answer {
            msg_type: MessageType::Reply,
            bind,
            zero_others: false,
            status: None,
            rapid_commit: false,
            preference: false,
            config: true,
        };
        let ack = |code, text| Answer {
            status: Some((code, text)),
            config: false,
            ..reply(false)
        };
        Some(match req.msg_type {
            MessageType::Solicit if client && none => {
                if !ia {
                    Answer {
                        msg_type: MessageType::Advertise,
                        status: Some((status::NO_ADDRS_AVAIL, "only IA_NA is served")),
                        ..reply(false)
                    }
                } else if req.rapid_commit {
                    Answer {
                        rapid_commit: true,
                        ..reply(true)
                    }
                } else {
                    Answer {
                        msg_type: MessageType::Advertise,
                        preference: true,
                        ..reply(true)
                    }
                }
            }
            MessageType::Request if client && ours => reply(ia),
            MessageType::Renew | MessageType::Rebind
                if client && (ours || (none && req.msg_type == MessageType::Rebind)) =>
            {
                Answer {
                    zero_others: true,
                    ..reply(ia)
                }
            }
            MessageType::Confirm if client && none => {
                let mut addrs = req.ia_na.iter().flat_map(|i| i.addresses()).peekable();
                // Nothing to confirm: no answer (RFC 8415 §18.3.3).
                addrs.peek()?;
                if addrs.all(|x| net.contains(x.addr)) {
                    ack(status::SUCCESS, "on link")
                } else {
                    ack(status::NOT_ON_LINK, "not on link")
                }
            }
            MessageType::Release if client && ours => ack(status::SUCCESS, "released"),
            MessageType::Decline if client && ours => ack(status::SUCCESS, "declined"),
            MessageType::InformationRequest if (none || ours) && !ia => reply(false),
            _ => return None,
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn write_reply(
        &self,
        cfg: &Config,
        net: &Net6,
        pkt: &Incoming,
        client_port: u16,
        req: &dhcpv6::Repr,
        a: &Answer,
        fqdn: &[u8],
        buf: &mut [u8],
    ) -> usize {
        // passt leases forever ([`Config::passt_ipv6`]).
        let (life, t1, t2) = if cfg.passt_ipv6 {
            (u32::MAX, u32::MAX, u32::MAX)
        } else {
            (LIFETIME_S, T1_S, T2_S)
        };
        let bound = IaAddress {
            addr: net.guest,
            preferred_lifetime: life,
            valid_lifetime: life,
        };
        let mut addrs = [bound; 1 + STALE_ADDRS];
        let mut n_addrs = 1;
        if a.zero_others {
            for x in req.ia_na.iter().flat_map(|i| i.addresses()) {
                if x.addr == net.guest
                    || addrs
                        .get(..n_addrs)
                        .is_some_and(|s| s.iter().any(|y| y.addr == x.addr))
                {
                    continue;
                }
                let Some(slot) = addrs.get_mut(n_addrs) else {
                    break;
                };
                *slot = IaAddress {
                    addr: x.addr,
                    preferred_lifetime: 0,
                    valid_lifetime: 0,
                };
                n_addrs += 1;
            }
        }
        let dns = [net.dns];
        let mut opts = [OptionRepr::RapidCommit; 9];
        let mut n = 0;
        let mut push = |o| {
            if let Some(slot) = opts.get_mut(n) {
                *slot = o;
                n += 1;
            }
        };
        push(OptionRepr::ServerId(&self.duid));
        if let Some(c) = req.client_id {
            push(OptionRepr::ClientId(c));
        }
        if let (true, Some(ia)) = (a.bind, req.ia_na) {
            push(OptionRepr::IaNa {
                iaid: ia.iaid,
                t1,
                t2,
                addresses: addrs.get(..n_addrs).unwrap_or(&[]),
                status: None,
            });
        }
        if let Some((code, text)) = a.status {
            push(OptionRepr::StatusCode(code, text));
        }
        if a.rapid_commit {
            push(OptionRepr::RapidCommit);
        }
        if a.preference && !cfg.passt_ipv6 {
            // The highest: the client need not wait for other servers
            // (passt sends none).
            push(OptionRepr::Preference(255));
        }
        if a.config && cfg.dns6 {
            push(OptionRepr::DnsServers(&dns));
        }
        if a.config && !self.domains.is_empty() {
            push(OptionRepr::Raw {
                code: opt::DOMAIN_LIST,
                data: &self.domains,
            });
        }
        if a.config && !fqdn.is_empty() {
            push(OptionRepr::Raw {
                code: opt::CLIENT_FQDN,
                data: fqdn,
            });
        }
        let opts = opts.get(..n).unwrap_or(&[]);
        let head = Reply {
            msg_type: a.msg_type,
            transaction_id: req.transaction_id,
        };
        // The message first, behind room for the headers.
        let at = frame::l4_offset(IpAddr::V6(net.host)) + udp::HEADER_LEN;
        let Some(Ok(len)) = buf.get_mut(at..).map(|b| head.emit(b, opts)) else {
            return 0;
        };
        let (src, dst) = (net.router_link_local(), pkt.src);
        let l2 = L2 {
            guest: pkt.eth_src,
            router4: cfg.mac6(net.host),
            router6: cfg.mac6(net.host),
        };
        let s = SocketAddr::new(IpAddr::V6(src), dhcpv6::SERVER_PORT);
        let d = SocketAddr::new(IpAddr::V6(dst), client_port);
        frame::write_udp(buf, &l2, s, d, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex, ip6, GUEST_MAC};
    use crate::wire::{ethernet, ip_proto, ipv6};

    const CLIENT_DUID: &str = "00030001525400123456";
    const SERVER_DUID: &str = "00030001525600000002";

    fn incoming() -> Incoming {
        Incoming {
            eth_src: GUEST_MAC,
            src: ip6("fe80::5054:ff:fe12:3456"),
            dst: ALL_SERVERS,
            hop_limit: 1,
        }
    }

    /// The DHCPv6 message in a UDP datagram 546 -> 547 with its checksum.
    fn datagram(pkt: &Incoming, msg: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 8];
        d.extend_from_slice(msg);
        let mut u = udp::Packet::new_checked({
            let len = d.len() as u16;
            d[4..6].copy_from_slice(&len.to_be_bytes());
            &mut d[..]
        })
        .unwrap();
        u.set_src_port(546);
        u.set_dst_port(547);
        u.fill_checksum(&PseudoHeader::V6 {
            src: pkt.src,
            dst: pkt.dst,
        });
        d
    }

    /// Runs one message through a server; returns the reply's DHCPv6
    /// payload after checking its Ethernet, IPv6 and UDP headers.
    fn exchange(c: &Config, msg: &[u8]) -> Option<Vec<u8>> {
        let s = Server::new(c);
        let pkt = incoming();
        let mut buf = vec![0u8; 2048];
        let mut counters = Counters::default();
        let n = s.answer(c, &pkt, &datagram(&pkt, msg), &mut buf, &mut counters);
        if n == 0 {
            return None;
        }
        let f = &buf[..n];
        let e = ethernet::Frame::new_checked(f).unwrap();
        assert_eq!((e.dst(), e.src()), (GUEST_MAC, [0x52, 0x56, 0, 0, 0, 2]));
        let p = ipv6::Packet::new_checked(&f[14..]).unwrap();
        let ip = ipv6::Repr::parse(&p).unwrap();
        assert_eq!((ip.src, ip.dst), (ip6("fe80::2"), pkt.src));
        assert_eq!(ip.next_header, ip_proto::UDP);
        let u = udp::Packet::new_checked(p.payload()).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (547, 546));
        assert!(u.verify_checksum(&PseudoHeader::V6 {
            src: ip.src,
            dst: ip.dst
        }));
        Some(u.payload().to_vec())
    }

    /// Solicit with rapid commit (golden, from the wire tests) -> Reply
    /// with IA_NA binding fec0::15, golden.
    #[test]
    fn solicit_with_rapid_commit_gets_reply() {
        let c = Config::for_test(&["--dns-suffixes", "example.org"]);
        let solicit = hex(
            "01 5a1b2c 0001000a00030001525400123456 000800020000 000600040017 0018
             0003000c123456780000000000000000 000e0000",
        );
        let got = exchange(&c, &solicit).unwrap();
        let want = hex(
            "07 5a1b2c 0002000a00030001525600000002 0001000a00030001525400123456
             00030028 12345678 0000a8c0 00010e00
               00050018 fec00000000000000000000000000015 00015180 00015180
             000e0000
             00170010 fec00000000000000000000000000003
             0018000d 076578616d706c65036f726700",
        );
        assert_eq!(got, want);
    }

    fn msg(t: u8, opts: &str) -> Vec<u8> {
        let mut m = vec![t, 0xab, 0xcd, 0xef];
        m.extend_from_slice(&hex(opts));
        m
    }
    fn client() -> String {
        format!("0001000a{CLIENT_DUID}")
    }
    fn server() -> String {
        format!("0002000a{SERVER_DUID}")
    }
    const IA_EMPTY: &str = "0003000c 00000007 00000000 00000000";
    /// An IA_NA holding fec0::15 and 2001:db8::9 (from another server).
    const IA_TWO: &str = "00030044 00000007 00000000 00000000
        00050018 fec00000000000000000000000000015 00000000 00000000
        00050018 20010db8000000000000000000000009 00000000 00000000";

    fn parse(b: &[u8]) -> dhcpv6::Repr<'_> {
        dhcpv6::Repr::parse(&dhcpv6::Packet::new_checked(b).unwrap()).unwrap()
    }

    #[test]
    fn stateful_exchange() {
        let c = Config::for_test(&[]);
        // Solicit -> Advertise with the address and preference 255.
        let adv = exchange(&c, &msg(1, &format!("{} {IA_EMPTY}", client()))).unwrap();
        let r = parse(&adv);
        assert_eq!(r.msg_type, MessageType::Advertise);
        assert_eq!(r.transaction_id, 0xabcdef);
        assert_eq!(r.server_id, Some(&hex(SERVER_DUID)[..]));
        assert_eq!(r.client_id, Some(&hex(CLIENT_DUID)[..]));
        let ia = r.ia_na.unwrap();
        assert_eq!((ia.iaid, ia.t1, ia.t2), (7, T1_S, T2_S));
        let got: Vec<_> = ia.addresses().collect();
        assert_eq!(
            got,
            [IaAddress {
                addr: ip6("fec0::15"),
                preferred_lifetime: LIFETIME_S,
                valid_lifetime: LIFETIME_S
            }]
        );
        assert!(adv.windows(5).any(|w| w == hex("00070001ff")));
        assert!(!r.rapid_commit);
        // Request (naming us) -> Reply binding it.
        let rep = exchange(
            &c,
            &msg(3, &format!("{} {} {IA_EMPTY}", client(), server())),
        )
        .unwrap();
        let r = parse(&rep);
        assert_eq!(r.msg_type, MessageType::Reply);
        assert_eq!(
            r.ia_na.unwrap().addresses().next().unwrap().addr,
            ip6("fec0::15")
        );
        // Renew with an address from elsewhere -> it comes back dead.
        let rep = exchange(&c, &msg(5, &format!("{} {} {IA_TWO}", client(), server()))).unwrap();
        let got: Vec<_> = parse(&rep).ia_na.unwrap().addresses().collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(
            (got[0].addr, got[0].valid_lifetime),
            (ip6("fec0::15"), LIFETIME_S)
        );
        assert_eq!(
            (got[1].addr, got[1].valid_lifetime),
            (ip6("2001:db8::9"), 0)
        );
        // Rebind (no server id) -> Reply.
        let rep = exchange(&c, &msg(6, &format!("{} {IA_EMPTY}", client()))).unwrap();
        assert_eq!(parse(&rep).msg_type, MessageType::Reply);
        // Release -> Reply with success.
        let rep = exchange(
            &c,
            &msg(8, &format!("{} {} {IA_EMPTY}", client(), server())),
        )
        .unwrap();
        assert_eq!(parse(&rep).msg_type, MessageType::Reply);
        assert!(rep.windows(6).any(|w| w == hex("000d000a0000")));
        // Confirm: on link, then not.
        let on = "0003002800000007000000000000000000050018fec00000000000000000000000000015 0000000000000000";
        let rep = exchange(&c, &msg(4, &format!("{} {on}", client()))).unwrap();
        assert!(
            rep.windows(6).any(|w| w == hex("000d00090000")),
            "{rep:02x?}"
        );
        let rep = exchange(&c, &msg(4, &format!("{} {IA_TWO}", client()))).unwrap();
        assert!(
            rep.windows(6).any(|w| w == hex("000d000d0004")),
            "{rep:02x?}"
        );
    }

    /// passt's lease: forever, no preference option, DNS only with an
    /// IPv6 resolver.
    #[test]
    fn passt_style_lease() {
        let mut c = Config::for_test(&[]);
        c.passt_ipv6 = true;
        c.dns6 = false;
        let adv = exchange(&c, &msg(1, &format!("{} {IA_EMPTY}", client()))).unwrap();
        let r = parse(&adv);
        assert_eq!(r.msg_type, MessageType::Advertise);
        let ia = r.ia_na.unwrap();
        assert_eq!((ia.t1, ia.t2), (u32::MAX, u32::MAX));
        let a0 = ia.addresses().next().unwrap();
        assert_eq!(
            (a0.preferred_lifetime, a0.valid_lifetime),
            (u32::MAX, u32::MAX)
        );
        let p = dhcpv6::Packet::new_checked(&adv[..]).unwrap();
        let codes: Vec<u16> = p.options_iter().map(|o| o.unwrap().code).collect();
        assert_eq!(codes, [opt::SERVER_ID, opt::CLIENT_ID, opt::IA_NA]);
    }

    /// `--fqdn`: option 39 in every configuring reply, flags 0, or O when
    /// the client set S (passt's answer); none without `--fqdn`.
    #[test]
    fn client_fqdn_option() {
        let mut c = Config::for_test(&[]);
        let fqdn39 = |rep: &[u8]| {
            let p = dhcpv6::Packet::new_checked(rep).unwrap();
            let o = p.options_iter().map(|o| o.unwrap());
            o.filter(|o| o.code == opt::CLIENT_FQDN)
                .map(|o| o.data.to_vec())
                .collect::<Vec<_>>()
        };
        let info = msg(11, &client());
        assert!(fqdn39(&exchange(&c, &info).unwrap()).is_empty());
        c.fqdn = Some("vm1.example.test".into());
        let name = "03766d31076578616d706c650474657374 00";
        assert_eq!(
            fqdn39(&exchange(&c, &info).unwrap()),
            [hex(&format!("00 {name}"))]
        );
        // The client would update AAAA itself (S): the server overrides (O).
        let with_s = msg(11, &format!("{} 0027000301 0000", client()));
        assert_eq!(
            fqdn39(&exchange(&c, &with_s).unwrap()),
            [hex(&format!("02 {name}"))]
        );
        let solicit = msg(1, &format!("{} {IA_EMPTY} 000e0000", client()));
        assert_eq!(fqdn39(&exchange(&c, &solicit).unwrap()).len(), 1);
    }

    #[test]
    fn stateless_information_request() {
        let c = Config::for_test(&["--dns-suffixes", "a.example,b.example"]);
        let rep = exchange(&c, &msg(11, &format!("{} 000600040017 0018", client()))).unwrap();
        let r = parse(&rep);
        assert_eq!(r.msg_type, MessageType::Reply);
        assert!(r.ia_na.is_none());
        let p = dhcpv6::Packet::new_checked(&rep[..]).unwrap();
        let opts: Vec<_> = p.options_iter().map(|o| o.unwrap()).collect();
        let codes: Vec<u16> = opts.iter().map(|o| o.code).collect();
        assert_eq!(codes, [opt::SERVER_ID, opt::CLIENT_ID, 23, 24]);
        assert_eq!(opts[2].data, ip6("fec0::3").octets());
        assert_eq!(
            opts[3].data,
            hex("0161076578616d706c6500 0162076578616d706c6500")
        );
        // No DNS forwarding: no DNS servers; no search list: no option 24.
        let c = Config::for_test(&["--disable-dns"]);
        let rep = exchange(&c, &msg(11, "")).unwrap();
        let p = dhcpv6::Packet::new_checked(&rep[..]).unwrap();
        let codes: Vec<u16> = p.options_iter().map(|o| o.unwrap().code).collect();
        assert_eq!(codes, [opt::SERVER_ID]);
    }

    #[test]
    fn rejects() {
        let c = Config::for_test(&[]);
        let other = "0002000a00030001aabbccddeeff";
        let cases = [
            // Solicit without client id, or naming a server.
            msg(1, IA_EMPTY),
            msg(1, &format!("{} {} {IA_EMPTY}", client(), server())),
            // Request for another server, or none.
            msg(3, &format!("{} {other} {IA_EMPTY}", client())),
            msg(3, &format!("{} {IA_EMPTY}", client())),
            // Renew without server id.
            msg(5, &format!("{} {IA_EMPTY}", client())),
            // Information-request for another server, or with an IA.
            msg(11, other),
            msg(11, IA_EMPTY),
            // Confirm with nothing to confirm.
            msg(4, &format!("{} {IA_EMPTY}", client())),
            // Server-to-client types, relay messages.
            msg(2, &client()),
            msg(7, &client()),
            msg(12, &client()),
            // Truncated option.
            msg(1, "0001000a0003"),
        ];
        for m in cases {
            assert_eq!(exchange(&c, &m), None, "{m:02x?}");
        }
        // Wrong destination, bad checksum, no IPv6.
        let s = Server::new(&c);
        let mut buf = vec![0u8; 1024];
        let mut counters = Counters::default();
        let good = msg(11, "");
        let pkt = Incoming {
            dst: ip6("fec0::15"),
            ..incoming()
        };
        assert_eq!(
            s.answer(&c, &pkt, &datagram(&pkt, &good), &mut buf, &mut counters),
            0
        );
        let pkt = incoming();
        let mut d = datagram(&pkt, &good);
        d[6] ^= 1;
        assert_eq!(s.answer(&c, &pkt, &d, &mut buf, &mut counters), 0);
        assert_eq!(counters.udp_bad_checksum, 1);
        let off = Config::for_test(&["--disable-ipv6"]);
        assert_eq!(
            s.answer(&off, &pkt, &datagram(&pkt, &good), &mut buf, &mut counters),
            0
        );
        // The router itself is a valid destination too.
        let pkt = Incoming {
            dst: ip6("fe80::2"),
            ..incoming()
        };
        assert_ne!(
            s.answer(&c, &pkt, &datagram(&pkt, &good), &mut buf, &mut counters),
            0
        );
    }

    #[test]
    fn no_panic_on_any_input() {
        let c = Config::for_test(&["--dns-suffixes", "example.org"]);
        let s = Server::new(&c);
        let pkt = incoming();
        let goldens = [
            datagram(&pkt, &msg(1, &format!("{} {IA_TWO} 000e0000", client()))),
            datagram(
                &pkt,
                &msg(5, &format!("{} {} {IA_TWO}", client(), server())),
            ),
        ];
        let mut out = vec![0u8; 2048];
        let mut counters = Counters::default();
        fuzz(&[&goldens[0], &goldens[1]], 3000, 200, |b| {
            if let Ok(mut u) = udp::Packet::new_checked(&mut *b) {
                u.fill_checksum(&PseudoHeader::V6 {
                    src: pkt.src,
                    dst: pkt.dst,
                });
            }
            let n = s.answer(&c, &pkt, b, &mut out, &mut counters);
            assert!(n <= out.len());
        });
    }
}
