//! The virtual network as the guest sees it: one dispatcher from guest
//! frames to services (ARP, DHCP, echo) and flows (TCP, UDP, ICMP), and
//! from host socket events back to flows.
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::flow::{self, dgram, forward, icmp, tcp, udp, Flow, Key};
use crate::frag;
use crate::frame::L2;
use crate::link::Tx;
use crate::poller::{Poller, Token};
use crate::services;
use crate::wire::{
    self, ethernet, ethertype, icmpv6, ip_proto, ipv4, ipv6, tcp as tcpw, udp as udpw, Mac,
};
use nix::sys::epoll::EpollFlags;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

pub use crate::counters::Counters;

pub struct Stack {
    pub cfg: Config,
    /// Poller, L2 addresses, clock and MTU: what every flow call needs.
    pub env: flow::Env,
    pub counters: Counters,
    flows: flow::Table,
    dhcp: services::dhcp::Server,
    ndp: services::ndp::Router,
    dhcp6: services::dhcpv6::Server,
    tftp: services::tftp::Server,
    /// Flows that owe the guest an ACK at the end of this turn.
    dirty: Vec<Token>,
    /// The IPv6 address the guest was last seen using.
    guest6: Option<std::net::Ipv6Addr>,
    scratch: Vec<Token>,
    // UDP, ICMP echo, fragments, forwards:
    frags: frag::Reassembler,
    listeners: Vec<forward::Listener>,
    udp_rx: dgram::RxHeaders,
    /// Ping sockets were refused (EACCES): warned once, not tried again.
    ping_denied: bool,
}

impl Stack {
    pub fn new(cfg: Config, poller: Poller) -> Stack {
        let router4 = cfg
            .net4
            .as_ref()
            .map(|n| cfg.mac4(n.host))
            .unwrap_or([0x52, 0x55, 0, 0, 0, 2]);
        let router6 = cfg
            .net6
            .as_ref()
            .map(|n| cfg.mac6(n.host))
            .unwrap_or([0x52, 0x56, 0, 0, 0, 2]);
        let flows = flow::Table::new(cfg.max_flows);
        let dhcp = services::dhcp::Server::new(&cfg);
        let ndp = services::ndp::Router::new(&cfg);
        let dhcp6 = services::dhcpv6::Server::new(&cfg);
        let tftp = services::tftp::Server::new(&cfg);
        let env = flow::Env {
            poller,
            l2: L2 {
                guest: wire::MAC_BROADCAST,
                router4,
                router6,
            },
            epoch: Instant::now(),
            mtu: cfg.mtu,
        };
        Stack {
            cfg,
            env,
            counters: Counters::default(),
            flows,
            dhcp,
            ndp,
            dhcp6,
            tftp,
            dirty: Vec::new(),
            guest6: None,
            scratch: Vec::new(),
            frags: frag::Reassembler::new(),
            listeners: Vec::new(),
            udp_rx: dgram::RxHeaders::default(),
            ping_denied: false,
        }
    }

    pub fn poller(&self) -> &Poller {
        &self.env.poller
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Live flows: (TCP, UDP, ICMP echo).
    pub fn flows_by_proto(&self) -> (usize, usize, usize) {
        self.flows.by_proto()
    }

    /// Once the link is up.
    pub fn start(&mut self, now: Instant, tx: &mut Tx) {
        self.ndp.start(&self.cfg, now, tx);
    }

    /// A frame from the guest.
    pub fn on_frame(&mut self, frame: &[u8], tx: &mut Tx, now: Instant) {
        let Ok(eth) = ethernet::Frame::new_checked(frame) else {
            return;
        };
        let src = eth.src();
        log::trace!(
            "guest frame: {} bytes, type {:#06x}, from {:02x?}",
            frame.len(),
            eth.ethertype(),
            src
        );
        match eth.ethertype() {
            ethertype::ARP => {
                if src[0] & 1 == 0 {
                    self.env.l2.guest = src;
                }
                services::arp::handle(
                    &self.cfg,
                    &self.env.l2,
                    eth.payload(),
                    tx,
                    &mut self.counters,
                );
            }
            ethertype::IPV4 => {
                if src[0] & 1 == 0 {
                    self.env.l2.guest = src;
                }
                self.on_ipv4(eth.payload(), tx, now);
            }
            ethertype::IPV6 => {
                if src[0] & 1 == 0 {
                    self.env.l2.guest = src;
                }
                self.on_ipv6(src, eth.payload(), tx, now);
            }
            _ => self.counters.eth_unknown_type += 1,
        }
    }

    fn on_ipv4(&mut self, payload: &[u8], tx: &mut Tx, now: Instant) {
        let Some(net) = self.cfg.net4.clone() else {
            self.counters.ipv4_ignored += 1;
            return;
        };
        let p = match ipv4::Packet::new_checked(payload) {
            Ok(p) => p,
            Err(_) => {
                self.counters.ipv4_malformed += 1;
                return;
            }
        };
        let repr = match ipv4::Repr::parse(&p) {
            Ok(r) => r,
            Err(wire::Error::Checksum) => {
                self.counters.ipv4_bad_checksum += 1;
                return;
            }
            Err(_) => {
                self.counters.ipv4_malformed += 1;
                return;
            }
        };
        if p.is_fragment() {
            self.on_ipv4_fragment(&net, &repr, p.header_len(), p.payload(), tx, now);
            return;
        }
        self.on_ipv4_l4(&net, &repr, p.payload(), tx, now);
    }

    /// An unfragmented (or reassembled) IPv4 datagram's payload.
    fn on_ipv4_l4(
        &mut self,
        net: &crate::config::Net4,
        repr: &ipv4::Repr,
        l4: &[u8],
        tx: &mut Tx,
        now: Instant,
    ) {
        let (src, dst) = (IpAddr::V4(repr.src), IpAddr::V4(repr.dst));
        match repr.protocol {
            ip_proto::UDP => {
                if services::dhcp::is_dhcp(l4) {
                    self.dhcp.handle(
                        &self.cfg,
                        &self.env.l2,
                        repr.src,
                        l4,
                        tx,
                        &mut self.counters,
                    );
                    return;
                }
                if repr.src != net.guest {
                    self.counters.ipv4_ignored += 1;
                    return;
                }
                if self.tftp.wants(&self.cfg, repr.dst, l4) {
                    let (cfg, l2, c) = (&self.cfg, &self.env.l2, &mut self.counters);
                    return self.tftp.handle(cfg, l2, repr.src, l4, tx, now, c);
                }
                self.on_udp(src, dst, repr.ttl, l4, tx, now);
            }
            ip_proto::TCP => {
                if repr.src != net.guest {
                    self.counters.ipv4_ignored += 1;
                    return;
                }
                self.on_tcp(src, dst, l4, tx, now);
            }
            ip_proto::ICMP => {
                // The virtual addresses answer for themselves, as slirp's do;
                // anything else goes out through a ping socket.
                if net.is_virtual(repr.dst) {
                    services::echo::reply_v4(&self.env.l2, repr, l4, tx, &mut self.counters);
                } else if repr.src != net.guest
                    || !self.on_echo_request(src, dst, repr.ttl, l4, tx, now)
                {
                    self.counters.icmp_dropped += 1;
                }
            }
            _ => self.counters.ipv4_ignored += 1,
        }
    }

    fn on_tcp(&mut self, src: IpAddr, dst: IpAddr, l4: &[u8], tx: &mut Tx, now: Instant) {
        let Some(pseudo) = crate::frame::pseudo(src, dst) else {
            return;
        };
        let p = match tcpw::Packet::new_checked(l4) {
            Ok(p) => p,
            Err(_) => {
                self.counters.tcp_malformed += 1;
                return;
            }
        };
        let r = match tcpw::Repr::parse(&p, &pseudo) {
            Ok(r) => r,
            Err(wire::Error::Checksum) => {
                self.counters.tcp_bad_checksum += 1;
                return;
            }
            Err(_) => {
                self.counters.tcp_malformed += 1;
                return;
            }
        };
        let seg = tcp::Segment {
            seq: r.seq,
            ack: r.ack,
            flags: r.flags & 0xff,
            window: r.window,
            mss: r.mss,
            ws: r.window_scale,
            ts: r.timestamp,
            payload: p.payload(),
        };
        let key = Key {
            proto: ip_proto::TCP,
            guest: SocketAddr::new(src, p.src_port()),
            remote: SocketAddr::new(dst, p.dst_port()),
        };
        let mut ctx = self.env.ctx(tx, now);
        let (flows, counters) = (&mut self.flows, &mut self.counters);
        if let Some(token) = tcp::on_guest_segment(flows, &mut ctx, &self.cfg, counters, key, &seg)
        {
            self.dirty.push(token);
        }
    }

    /// An event on a host socket.
    pub fn on_host_event(&mut self, token: Token, ev: EpollFlags, tx: &mut Tx, now: Instant) {
        let mut ctx = self.env.ctx(tx, now);
        match token {
            Token::Flow(..) => {
                let verdict = match self.flows.get_mut(token) {
                    Some(Flow::Tcp(c)) => {
                        let v = c.on_host_event(&mut ctx, ev);
                        if c.wants_ack() {
                            self.dirty.push(token);
                        }
                        v
                    }
                    Some(Flow::Udp(c)) => {
                        c.on_host_event(&mut ctx, ev, &mut self.udp_rx, &mut self.counters)
                    }
                    Some(Flow::Icmp(c)) => {
                        c.on_host_event(&mut ctx, ev, &mut self.udp_rx, &mut self.counters)
                    }
                    None => return,
                };
                self.flows.settle(token, verdict, &mut self.counters);
            }
            Token::Listener(i) => self.on_listener(i, tx, now),
            Token::Link | Token::Signal => {}
        }
    }

    /// Periodic work: retransmissions, timeouts.
    pub fn on_tick(&mut self, now: Instant, tx: &mut Tx) {
        self.ndp.on_tick(&self.cfg, now, tx);
        self.tftp.on_tick(&self.cfg, &self.env.l2, tx, now);
        let mut tokens = std::mem::take(&mut self.scratch);
        self.flows.tokens(&mut tokens);
        let mut ctx = self.env.ctx(tx, now);
        let udp_timeouts = udp::Timeouts {
            unreplied: std::time::Duration::from_secs(self.cfg.udp_timeout_s),
            stream: std::time::Duration::from_secs(self.cfg.udp_stream_timeout_s),
        };
        self.counters.frag_expired += self.frags.expire(now) as u64;
        for &t in &tokens {
            let v = match self.flows.get_mut(t) {
                Some(Flow::Tcp(c)) => c.on_tick(&mut ctx),
                Some(Flow::Udp(c)) => c.on_tick(now, &udp_timeouts),
                Some(Flow::Icmp(c)) => c.on_tick(now),
                None => continue,
            };
            self.flows.settle(t, v, &mut self.counters);
        }
        self.scratch = tokens;
    }

    /// End of a loop turn: each flow that heard from the guest acts once.
    pub fn after_turn(&mut self, now: Instant, tx: &mut Tx) {
        if self.dirty.is_empty() {
            return;
        }
        let mut ctx = self.env.ctx(tx, now);
        for t in self.dirty.drain(..) {
            if let Some(Flow::Tcp(c)) = self.flows.get_mut(t) {
                let v = c.end_of_turn(&mut ctx);
                self.flows.settle(t, v, &mut self.counters);
            }
        }
    }
}

// ---- UDP, ICMP echo, IPv4 fragments, forwards ----

impl Stack {
    /// Take the forwards' sockets (bound before the sandbox by
    /// [`forward::bind_forwards`]) and watch them.
    /// The forwards' sockets back (they outlive one VMM connection).
    pub fn take_forwards(&mut self) -> Vec<forward::Listener> {
        for l in &self.listeners {
            self.env.poller.delete(l.as_fd());
        }
        std::mem::take(&mut self.listeners)
    }

    pub fn add_forwards(&mut self, listeners: Vec<forward::Listener>) -> std::io::Result<()> {
        for l in listeners {
            let i = self.listeners.len() as u32;
            self.env
                .poller
                .add(l.as_fd(), Token::Listener(i), EpollFlags::EPOLLIN)?;
            self.listeners.push(l);
        }
        Ok(())
    }

    /// IPv6 from the guest. NDP, DHCPv6 and echo to the virtual addresses
    /// are answered first (they come from link-local and unspecified
    /// sources too); UDP, TCP and other echo requests must come from the
    /// guest's addresses in the prefix, reassembled if fragmented. Silent
    /// when IPv6 is disabled.
    fn on_ipv6(&mut self, eth_src: Mac, payload: &[u8], tx: &mut Tx, now: Instant) {
        let Some(net) = self.cfg.net6.clone() else {
            self.counters.ipv6_ignored += 1;
            return;
        };
        let Ok(p) = ipv6::Packet::new_checked(payload) else {
            self.counters.ipv6_malformed += 1;
            return;
        };
        let Ok(repr) = ipv6::Repr::parse(&p) else {
            self.counters.ipv6_malformed += 1;
            return;
        };
        let Ok(ext) = ipv6::walk_extensions(repr.next_header, p.payload()) else {
            self.counters.ipv6_malformed += 1;
            return;
        };
        let (src, dst) = (repr.src, repr.dst);
        if src.is_multicast() {
            self.counters.ipv6_malformed += 1;
            return;
        }
        if ext.fragment.is_none() {
            let l4 = p.payload().get(ext.offset..).unwrap_or(&[]);
            if self.on_ipv6_service(&net, eth_src, &repr, ext.next_header, l4, tx, now) {
                return;
            }
        }
        if !net.contains(src) || src == net.host || src == net.dns {
            self.counters.ipv6_ignored += 1;
            return;
        }
        // Forwards need the guest's own address: the DHCPv6 lease once the
        // guest uses it, else the last one it used (SLAAC, privacy).
        if self.guest6 != Some(net.guest) {
            self.guest6 = Some(src);
        }
        let data = p.payload().get(ext.offset..).unwrap_or(&[]);
        let (src, dst) = (IpAddr::V6(src), IpAddr::V6(dst));
        let Some(fi) = ext.fragment else {
            self.on_ipv6_l4(src, dst, repr.hop_limit, ext.next_header, data, tx, now);
            return;
        };
        let key = frag::Key {
            src,
            dst,
            proto: ext.next_header,
            id: fi.ident,
        };
        let f = frag::Fragment {
            offset: fi.offset as usize,
            more: fi.more,
            // The unfragmentable part stays; the fragment header goes.
            limit: (u16::MAX as usize + 8).saturating_sub(ext.offset),
            ttl: repr.hop_limit,
            data,
        };
        match self.frags.push(key, f, now) {
            Ok(None) => {}
            Ok(Some(d)) => {
                self.counters.frag_reassembled += 1;
                self.on_ipv6_l4(src, dst, d.ttl, d.key.proto, d.payload(), tx, now);
                self.frags.give_back(d);
            }
            Err(_) => self.counters.frag_dropped += 1,
        }
    }

    /// NDP, DHCPv6 and echo to a virtual address; false if none of those.
    #[allow(clippy::too_many_arguments)]
    fn on_ipv6_service(
        &mut self,
        net: &crate::config::Net6,
        eth_src: Mac,
        repr: &ipv6::Repr,
        proto: u8,
        l4: &[u8],
        tx: &mut Tx,
        now: Instant,
    ) -> bool {
        let pkt = services::ndp::Incoming {
            eth_src,
            src: repr.src,
            dst: repr.dst,
            hop_limit: repr.hop_limit,
        };
        match proto {
            ip_proto::ICMPV6 => {
                let Ok(icmp) = icmpv6::Packet::new_checked(l4) else {
                    self.counters.icmp_malformed += 1;
                    return true;
                };
                match icmp.msg_type() {
                    icmpv6::msg_type::ROUTER_SOLICIT..=icmpv6::msg_type::REDIRECT => {
                        self.ndp
                            .handle(&self.cfg, &pkt, l4, now, tx, &mut self.counters);
                        true
                    }
                    icmpv6::msg_type::ECHO_REQUEST if net.is_virtual(repr.dst) => {
                        services::echo::reply_v6(
                            eth_src,
                            repr.src,
                            repr.dst,
                            l4,
                            tx,
                            &mut self.counters,
                        );
                        true
                    }
                    _ => false,
                }
            }
            ip_proto::UDP if services::dhcpv6::is_dhcpv6(l4) => {
                self.dhcp6
                    .handle(&self.cfg, &pkt, l4, tx, &mut self.counters);
                true
            }
            _ => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_ipv6_l4(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        hop_limit: u8,
        proto: u8,
        l4: &[u8],
        tx: &mut Tx,
        now: Instant,
    ) {
        match proto {
            ip_proto::UDP => self.on_udp(src, dst, hop_limit, l4, tx, now),
            ip_proto::TCP => self.on_tcp(src, dst, l4, tx, now),
            ip_proto::ICMPV6 => {
                if !self.on_echo_request(src, dst, hop_limit, l4, tx, now) {
                    self.counters.icmp_dropped += 1;
                }
            }
            _ => self.counters.ipv6_ignored += 1,
        }
    }

    fn on_ipv4_fragment(
        &mut self,
        net: &crate::config::Net4,
        repr: &ipv4::Repr,
        header_len: usize,
        data: &[u8],
        tx: &mut Tx,
        now: Instant,
    ) {
        let key = frag::Key {
            src: IpAddr::V4(repr.src),
            dst: IpAddr::V4(repr.dst),
            proto: repr.protocol,
            id: repr.ident as u32,
        };
        let f = frag::Fragment {
            offset: repr.frag_offset as usize,
            more: repr.more_frags,
            limit: u16::MAX as usize - header_len,
            ttl: repr.ttl,
            data,
        };
        match self.frags.push(key, f, now) {
            Ok(None) => {}
            Ok(Some(d)) => {
                self.counters.frag_reassembled += 1;
                let whole = ipv4::Repr {
                    more_frags: false,
                    frag_offset: 0,
                    ttl: d.ttl,
                    payload_len: d.payload().len() as u16,
                    ..*repr
                };
                self.on_ipv4_l4(net, &whole, d.payload(), tx, now);
                self.frags.give_back(d);
            }
            Err(_) => self.counters.frag_dropped += 1,
        }
    }

    /// A UDP datagram from the guest (not DHCP).
    fn on_udp(&mut self, src: IpAddr, dst: IpAddr, ttl: u8, l4: &[u8], tx: &mut Tx, now: Instant) {
        let Some(pseudo) = crate::frame::pseudo(src, dst) else {
            return;
        };
        let p = match udpw::Packet::new_checked(l4) {
            Ok(p) => p,
            Err(_) => {
                self.counters.udp_malformed += 1;
                return;
            }
        };
        match udpw::Repr::parse(&p, &pseudo) {
            Ok(_) => {}
            Err(wire::Error::Checksum) => {
                self.counters.udp_bad_checksum += 1;
                return;
            }
            Err(_) => {
                self.counters.udp_malformed += 1;
                return;
            }
        }
        if p.src_port() == 0 {
            // No reply could reach port 0.
            self.counters.udp_malformed += 1;
            return;
        }
        let key = Key {
            proto: ip_proto::UDP,
            guest: SocketAddr::new(src, p.src_port()),
            remote: SocketAddr::new(dst, p.dst_port()),
        };
        let mut ctx = self.env.ctx(tx, now);
        let (flows, counters) = (&mut self.flows, &mut self.counters);
        let listeners = &self.listeners;
        udp::on_guest_datagram(
            flows,
            &mut ctx,
            &self.cfg,
            counters,
            listeners,
            key,
            p.payload(),
            ttl,
        );
    }

    /// An ICMP message from the guest: true if it was an echo request
    /// carried (or deliberately dropped) by a ping-socket flow, false if
    /// the virtual-address echo service should have it.
    fn on_echo_request(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        l4: &[u8],
        tx: &mut Tx,
        now: Instant,
    ) -> bool {
        let Some(ident) = icmp::echo_request_ident(l4, src.is_ipv6()) else {
            return false;
        };
        let valid = match crate::frame::pseudo(src, dst) {
            Some(p) if src.is_ipv6() => p.verify(ip_proto::ICMPV6, l4),
            _ => wire::checksum::checksum(l4) == 0,
        };
        if !valid {
            self.counters.icmp_malformed += 1;
            return true;
        }
        let key = icmp::key(src, dst, ident);
        let mut ctx = self.env.ctx(tx, now);
        let (flows, counters) = (&mut self.flows, &mut self.counters);
        let denied = &mut self.ping_denied;
        icmp::on_guest_echo(
            flows, &mut ctx, &self.cfg, counters, denied, dst, key, l4, ttl,
        )
    }

    /// A forward's socket is readable: connections to accept (TCP) or
    /// datagrams to carry (UDP).
    fn on_listener(&mut self, i: u32, tx: &mut Tx, now: Instant) {
        let Some(l) = self.listeners.get(i as usize) else {
            return;
        };
        if l.proto() == crate::config::Proto::Udp {
            self.on_udp_forward(i, tx, now);
            return;
        }
        for _ in 0..32 {
            let (fd, peer) = match l.accept() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    log::debug!("accept on forward {i}: {e}");
                    self.counters.forward_accept_failed += 1;
                    break;
                }
            };
            let Some(key) = l.key(&self.cfg, self.guest6, peer) else {
                self.counters.forward_accept_failed += 1;
                continue;
            };
            if self.flows.lookup(&key).is_some() {
                self.counters.forward_accept_failed += 1;
                continue;
            }
            let Ok(token) = self.flows.vacant() else {
                self.counters.flows_full += 1;
                continue;
            };
            let mut ctx = self.env.ctx(tx, now);
            match tcp::Conn::accepted(&mut ctx, token, key, fd) {
                Ok(c) => {
                    self.flows.insert(token, key, Flow::Tcp(c));
                    self.counters.flows_opened += 1;
                }
                Err(e) => {
                    log::debug!("forward {i}: {e}");
                    self.counters.forward_accept_failed += 1;
                }
            }
        }
    }

    /// Datagrams on a UDP forward: each opens or refreshes a forwarded flow
    /// and goes to the guest as from the peer's inbound address.
    fn on_udp_forward(&mut self, i: u32, tx: &mut Tx, now: Instant) {
        let Some(l) = self.listeners.get(i as usize) else {
            return;
        };
        let Some(guest) = l.guest(&self.cfg, self.guest6) else {
            return;
        };
        let v6 = guest.is_ipv6();
        let (hdr, max) = (udp::frame_header(v6), udp::max_payload(self.cfg.mtu, v6));
        let (cfg, flows, l2, guest6) = (&self.cfg, &mut self.flows, self.env.l2, self.guest6);
        let (mut oversize, mut full, mut opened) = (0, 0, 0);
        for _ in 0..4 {
            let n = dgram::recv_frames(
                tx,
                l.as_fd(),
                &mut self.udp_rx,
                hdr,
                max,
                &mut oversize,
                |f, len, peer| {
                    let Some(key) = peer.and_then(|p| l.key(cfg, guest6, p)) else {
                        return 0;
                    };
                    let peer = peer.unwrap_or(key.remote);
                    match flows.lookup(&key).and_then(|s| flows.at(s)) {
                        Some((_, Flow::Udp(c))) => c.on_forwarded(peer, now),
                        Some(_) => return 0,
                        None => {
                            let Ok(token) = flows.vacant() else {
                                full += 1;
                                return 0;
                            };
                            let c = udp::Conn::forwarded(key, i, peer, now);
                            flows.insert(token, key, Flow::Udp(c));
                            opened += 1;
                        }
                    }
                    udp::write_frame(f, &l2, key.remote, key.guest, len)
                },
            );
            if n < dgram::BATCH {
                break;
            }
        }
        self.counters.udp_host_oversize += oversize;
        self.counters.flows_full += full;
        self.counters.flows_opened += opened;
    }
}
