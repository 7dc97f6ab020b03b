//! The virtual network as the guest sees it: one dispatcher from guest
//! frames to services (ARP, DHCP, echo) and flows (TCP, UDP, ICMP), and
//! from host socket events back to flows.
#![forbid(unsafe_code)]

use crate::config::{Config, Proto};
use crate::flow::host::{Host, Kernel};
use crate::flow::{self, dgram, forward, icmp, tcp, udp, Key};
use crate::frag;
use crate::frame::{ETH_LEN, IPV6_LEN, L2};
use crate::link::{RxMeta, Tx};
use crate::poller::{Poller, Token};
use crate::services;
use crate::wire::checksum::Checksum;
use crate::wire::{self, ethernet, ethertype, ip_proto, ipv4, ipv6, tcp as tcpw, udp as udpw, Mac};
use nix::sys::epoll::EpollFlags;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

pub use crate::counters::Counters;

pub struct Stack<H: Host = Kernel> {
    pub cfg: Config,
    /// Poller, host, L2 addresses, clock and MTU: what every flow call
    /// needs.
    pub env: flow::Env<H>,
    pub counters: Counters,
    flows: flow::Table<H>,
    services: services::Services,
    /// The IPv6 address the guest was last seen using.
    guest6: Option<std::net::Ipv6Addr>,
    frags: frag::Reassembler,
    /// TCP payload held until the link's receive batch ends.
    held: flow::Held,
    listeners: Vec<forward::Listener>,
    udp_rx: dgram::RxHeaders,
    /// Ping sockets were refused (EACCES): warned once, not tried again.
    ping_denied: bool,
    /// A service's datagram whose checksum the guest left partial,
    /// finished (services check their own checksums).
    finished: Vec<u8>,
}

impl Stack {
    /// The stack over the real kernel's sockets.
    pub fn new(cfg: Config, poller: Poller) -> Stack {
        Stack::with_host(cfg, poller, Kernel)
    }
}

impl<H: Host> Stack<H> {
    /// The stack over `host`'s TCP sockets (the simulator's, in tests).
    pub fn with_host(cfg: Config, poller: Poller, host: H) -> Self {
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
        let services = services::Services::new(&cfg);
        let env = flow::Env {
            poller,
            host,
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
            services,
            guest6: None,
            frags: frag::Reassembler::new(),
            held: flow::Held::new(),
            listeners: Vec::new(),
            udp_rx: dgram::RxHeaders::default(),
            ping_denied: false,
            finished: Vec::new(),
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
        self.services.ndp.start(&self.cfg, now, tx);
    }

    /// A frame from the guest.
    pub fn on_frame(&mut self, frame: &[u8], tx: &mut Tx, now: Instant) {
        self.on_frame_in(frame, RxMeta::default(), &[], tx, now);
    }

    /// A frame from the guest, with what the link knows of it, that lies
    /// in `batch`, the link's receive buffer, which stays in place until
    /// [`Stack::write_held`]: TCP payload in it may be held and written
    /// with the flow's next segments.
    pub fn on_frame_in(
        &mut self,
        frame: &[u8],
        meta: RxMeta,
        batch: &[u8],
        tx: &mut Tx,
        now: Instant,
    ) {
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
                self.on_ipv4(eth.payload(), meta, batch, tx, now);
            }
            ethertype::IPV6 => {
                if src[0] & 1 == 0 {
                    self.env.l2.guest = src;
                }
                self.on_ipv6(src, eth.payload(), meta, batch, tx, now);
            }
            _ => self.counters.eth_unknown_type += 1,
        }
    }

    fn on_ipv4(&mut self, payload: &[u8], meta: RxMeta, batch: &[u8], tx: &mut Tx, now: Instant) {
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
            let (hl, counters) = (p.header_len(), &mut self.counters);
            if let Some((whole, d)) = self.frags.push_v4(&repr, hl, p.payload(), now, counters) {
                let csum = Checksum::Full;
                self.on_ipv4_l4(&net, &whole, d.payload(), csum, &[], tx, now);
                self.frags.give_back(d);
            }
            return;
        }
        let csum = l4_checksum(meta, ETH_LEN + p.header_len(), repr.protocol);
        self.on_ipv4_l4(&net, &repr, p.payload(), csum, batch, tx, now);
    }

    /// An unfragmented (or reassembled) IPv4 datagram's payload, its
    /// checksum to be verified or not (`csum`).
    #[allow(clippy::too_many_arguments)]
    fn on_ipv4_l4(
        &mut self,
        net: &crate::config::Net4,
        repr: &ipv4::Repr,
        l4: &[u8],
        csum: Checksum,
        batch: &[u8],
        tx: &mut Tx,
        now: Instant,
    ) {
        let (src, dst) = (IpAddr::V4(repr.src), IpAddr::V4(repr.dst));
        match repr.protocol {
            ip_proto::UDP => {
                if services::dhcp::is_dhcp(l4) {
                    let l4 = finish_partial(&mut self.finished, l4, csum);
                    self.services.dhcp.handle(
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
                if self.services.tftp.wants(&self.cfg, repr.dst, l4) {
                    let l4 = finish_partial(&mut self.finished, l4, csum);
                    let (cfg, l2, c) = (&self.cfg, &self.env.l2, &mut self.counters);
                    return self.services.tftp.handle(cfg, l2, repr.src, l4, tx, now, c);
                }
                self.on_udp(src, dst, repr.ttl, l4, csum, tx, now);
            }
            ip_proto::TCP => {
                if repr.src != net.guest {
                    self.counters.ipv4_ignored += 1;
                    return;
                }
                self.on_tcp(src, dst, l4, csum, batch, tx, now);
            }
            ip_proto::ICMP if self.cfg.off.icmp => self.counters.disabled += 1,
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

    #[allow(clippy::too_many_arguments)]
    fn on_tcp(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        l4: &[u8],
        csum: Checksum,
        batch: &[u8],
        tx: &mut Tx,
        now: Instant,
    ) {
        if self.cfg.off.tcp {
            self.counters.disabled += 1;
            return;
        }
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
        let r = match tcpw::Repr::parse_with(&p, &pseudo, csum) {
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
            seq: flow::seq::Seq(r.seq),
            ack: flow::seq::Seq(r.ack),
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
        ctx.batch = Some(batch);
        ctx.held = Some(&mut self.held);
        let (flows, counters) = (&mut self.flows, &mut self.counters);
        tcp::on_guest_segment(flows, &mut ctx, &self.cfg, counters, key, &seg);
    }

    /// The link's receive batch ends: what flows held of it is written.
    pub fn write_held(&mut self, batch: &[u8], tx: &mut Tx, now: Instant) {
        let mut ctx = self.env.ctx(tx, now);
        ctx.batch = Some(batch);
        ctx.held = Some(&mut self.held);
        self.flows.write_held(&mut ctx, &mut self.counters);
    }

    /// An event on a host socket.
    pub fn on_host_event(&mut self, token: Token, ev: EpollFlags, tx: &mut Tx, now: Instant) {
        let mut ctx = self.env.ctx(tx, now);
        let (flows, counters) = (&mut self.flows, &mut self.counters);
        match token {
            Token::Flow(..) => flows.on_host_event(token, &mut ctx, ev, &mut self.udp_rx, counters),
            Token::Listener(i) => {
                let Some(l) = self.listeners.get(i as usize) else {
                    return;
                };
                let (cfg, guest6) = (&self.cfg, self.guest6);
                match l.proto() {
                    Proto::Tcp => tcp::on_accept(flows, &mut ctx, cfg, counters, l, i, guest6),
                    Proto::Udp => {
                        let rx = &mut self.udp_rx;
                        udp::on_forward_readable(flows, &mut ctx, cfg, counters, rx, l, i, guest6)
                    }
                }
            }
            Token::Link | Token::Signal | Token::Bus => {}
        }
    }

    /// Periodic work: retransmissions, timeouts.
    pub fn on_tick(&mut self, now: Instant, tx: &mut Tx) {
        self.services.ndp.on_tick(&self.cfg, now, tx);
        self.counters.frag_expired += self.frags.expire(now) as u64;
        self.services.tftp.on_tick(&self.cfg, &self.env.l2, tx, now);
        let udp_timeouts = udp::Timeouts {
            unreplied: std::time::Duration::from_secs(self.cfg.udp_timeout_s),
            stream: std::time::Duration::from_secs(self.cfg.udp_stream_timeout_s),
        };
        let mut ctx = self.env.ctx(tx, now);
        self.flows
            .on_tick(&mut ctx, &udp_timeouts, &mut self.counters);
    }

    /// End of a loop turn: each flow that registered work does it once.
    pub fn after_turn(&mut self, now: Instant, tx: &mut Tx) {
        let mut ctx = self.env.ctx(tx, now);
        self.flows.end_of_turn(&mut ctx, &mut self.counters);
    }
}

// ---- forwards, IPv6, UDP and ICMP echo ----

impl<H: Host> Stack<H> {
    /// The forwards' sockets back (they outlive one VMM connection).
    pub fn take_forwards(&mut self) -> Vec<forward::Listener> {
        for fd in self.listeners.iter().filter_map(|l| l.as_fd()) {
            self.env.poller.delete(fd);
        }
        std::mem::take(&mut self.listeners)
    }

    /// Take the forwards' sockets (bound before the sandbox by
    /// [`forward::bind_forwards`]) and watch them.
    pub fn add_forwards(&mut self, listeners: Vec<forward::Listener>) -> std::io::Result<()> {
        for l in listeners {
            self.add_listener(l)?;
        }
        Ok(())
    }

    /// Watch one more forward's socket (bound before the sandbox, or
    /// passed over D-Bus at run time); its index.
    pub fn add_listener(&mut self, l: forward::Listener) -> std::io::Result<u32> {
        let i = self.listeners.len() as u32;
        if let Some(fd) = l.as_fd() {
            self.env
                .poller
                .add(fd, Token::Listener(i), EpollFlags::EPOLLIN)?;
        }
        self.listeners.push(l);
        Ok(i)
    }

    /// Stop a forward and close its socket (its flows live on until they
    /// end or time out). False if no live forward has that rule.
    pub fn remove_forward(&mut self, proto: Proto, bind: SocketAddr) -> bool {
        let Some(l) = self
            .listeners
            .iter_mut()
            .find(|l| l.is_live() && l.proto() == proto && l.fwd.bind == bind)
        else {
            return false;
        };
        if let Some(fd) = l.as_fd() {
            self.env.poller.delete(fd);
        }
        l.retire();
        true
    }

    /// A host connection for a forward that came from elsewhere than the
    /// listeners (the simulator's peers), offered to the guest as a flow;
    /// `open` makes its socket, registered under the flow's token.
    pub fn open_forwarded(
        &mut self,
        key: Key,
        open: impl FnOnce(Token) -> std::io::Result<H::Tcp>,
        tx: &mut Tx,
        now: Instant,
    ) -> std::io::Result<()> {
        let mut ctx = self.env.ctx(tx, now);
        tcp::open_forwarded(&mut self.flows, &mut ctx, &mut self.counters, key, open)
    }

    /// IPv6 from the guest. NDP, DHCPv6 and echo to the virtual addresses
    /// are answered first (they come from link-local and unspecified
    /// sources too); UDP, TCP and other echo requests must come from the
    /// guest's addresses in the prefix, reassembled if fragmented. Silent
    /// when IPv6 is disabled.
    fn on_ipv6(
        &mut self,
        eth_src: Mac,
        payload: &[u8],
        meta: RxMeta,
        batch: &[u8],
        tx: &mut Tx,
        now: Instant,
    ) {
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
        let data = p.payload().get(ext.offset..).unwrap_or(&[]);
        let csum = match ext.fragment {
            None => l4_checksum(meta, ETH_LEN + IPV6_LEN + ext.offset, ext.next_header),
            Some(_) => Checksum::Full,
        };
        if ext.fragment.is_none() {
            let proto = ext.next_header;
            let svc = match proto {
                ip_proto::UDP if services::dhcpv6::is_dhcpv6(data) => {
                    finish_partial(&mut self.finished, data, csum)
                }
                _ => data,
            };
            let (cfg, counters) = (&self.cfg, &mut self.counters);
            if self
                .services
                .on_ipv6(cfg, eth_src, &repr, proto, svc, tx, now, counters)
            {
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
        let (src, dst) = (IpAddr::V6(src), IpAddr::V6(dst));
        let Some(fi) = ext.fragment else {
            let (hop, proto) = (repr.hop_limit, ext.next_header);
            self.on_ipv6_l4(src, dst, hop, proto, data, csum, batch, tx, now);
            return;
        };
        let counters = &mut self.counters;
        if let Some(d) = self.frags.push_v6(&repr, &ext, &fi, data, now, counters) {
            let (proto, full) = (d.key.proto, Checksum::Full);
            self.on_ipv6_l4(src, dst, d.ttl, proto, d.payload(), full, &[], tx, now);
            self.frags.give_back(d);
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
        csum: Checksum,
        batch: &[u8],
        tx: &mut Tx,
        now: Instant,
    ) {
        match proto {
            ip_proto::UDP => self.on_udp(src, dst, hop_limit, l4, csum, tx, now),
            ip_proto::TCP => self.on_tcp(src, dst, l4, csum, batch, tx, now),
            ip_proto::ICMPV6 if self.cfg.off.icmp => self.counters.disabled += 1,
            ip_proto::ICMPV6 => {
                if !self.on_echo_request(src, dst, hop_limit, l4, tx, now) {
                    self.counters.icmp_dropped += 1;
                }
            }
            _ => self.counters.ipv6_ignored += 1,
        }
    }

    /// A UDP datagram from the guest (not DHCP).
    #[allow(clippy::too_many_arguments)]
    fn on_udp(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        ttl: u8,
        l4: &[u8],
        csum: Checksum,
        tx: &mut Tx,
        now: Instant,
    ) {
        if self.cfg.off.udp {
            self.counters.disabled += 1;
            return;
        }
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
        match udpw::Repr::parse_with(&p, &pseudo, csum) {
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
}

/// Whether to verify a guest frame's TCP or UDP checksum: not when the
/// guest's driver left it partial (virtio `NEEDS_CSUM`, which a NIC would
/// finish) and says so for exactly this protocol's checksum field, `l4`
/// bytes into the frame; airlock ends the flow itself, so nothing checks
/// it after. A mark pointing anywhere else is no claim about this frame,
/// which is verified like any other (everything else is checked anyway).
fn l4_checksum(meta: RxMeta, l4: usize, proto: u8) -> Checksum {
    let field = match proto {
        ip_proto::TCP => tcpw::CHECKSUM_AT,
        ip_proto::UDP => udpw::CHECKSUM_AT,
        _ => return Checksum::Full,
    };
    match meta.partial {
        Some(p) if usize::from(p.start) == l4 && usize::from(p.offset) == field => {
            Checksum::Partial
        }
        _ => Checksum::Full,
    }
}

/// A UDP datagram for a service, which checks its checksum itself: as it
/// came, or, left partial by the guest, finished in `scratch` (a copy, off
/// the data path).
fn finish_partial<'a>(scratch: &'a mut Vec<u8>, l4: &'a [u8], csum: Checksum) -> &'a [u8] {
    if csum == Checksum::Full {
        return l4;
    }
    scratch.clear();
    scratch.extend_from_slice(l4);
    let field = udpw::CHECKSUM_AT as u16;
    let _ = wire::virtio_net::complete_checksum(scratch, 0, field);
    scratch
}

// ---- migration (issue 16) ----

impl Stack {
    /// The state a migration carries (`Save`).
    pub fn export(&self) -> crate::migrate::State {
        use crate::migrate;
        let mut st = migrate::State::new(migrate::Network::of(&self.cfg));
        st.guest_mac = Some(self.env.l2.guest).filter(|m| *m != wire::MAC_BROADCAST);
        st.guest6 = self.guest6;
        st.lease4 = self
            .cfg
            .net4
            .as_ref()
            .map(|n| (n.guest, services::dhcp::LEASE_SECS));
        st.lease6 = self.cfg.net6.as_ref().map(|n| n.guest);
        for l in self.listeners.iter().filter(|l| l.is_live()) {
            st.forwards.push(migrate::Forward {
                proto: l.fwd.proto,
                bind: l.fwd.bind,
                guest_addr: l.fwd.guest_addr,
                guest_port: l.fwd.guest_port,
            });
        }
        let listeners = &self.listeners;
        self.flows.for_each_flow(|f| match f {
            flow::Flow::Tcp(c) => st.tcp.push(c.migration_view()),
            flow::Flow::Udp(c) => st.udp.push(migrate::Udp {
                guest: c.key().guest,
                remote: c.key().remote,
                host: c.host(),
                forward: c
                    .forward()
                    .and_then(|i| listeners.get(i as usize))
                    .map(|l| l.fwd.bind),
            }),
            // An echo that does not follow is simply unanswered.
            flow::Flow::Icmp(_) => {}
        });
        st
    }

    /// Take over a migrated state (`Load`, already checked against this
    /// network): the guest's addresses, UDP flows on fresh host sockets
    /// (or their forward's), and a reset toward the guest for every TCP
    /// flow. Returns (UDP flows resumed, TCP flows reset).
    pub fn import(
        &mut self,
        st: &crate::migrate::State,
        tx: &mut Tx,
        now: Instant,
    ) -> (usize, usize) {
        if let Some(m) = st.guest_mac {
            self.env.l2.guest = m;
        }
        if st.guest6.is_some() {
            self.guest6 = st.guest6;
        }
        let mut ctx = self.env.ctx(tx, now);
        let mut resumed = 0;
        for u in &st.udp {
            let key = Key {
                proto: ip_proto::UDP,
                guest: u.guest,
                remote: u.remote,
            };
            if self.flows.lookup(&key).is_some() {
                continue;
            }
            let Ok(token) = self.flows.vacant() else {
                break;
            };
            let conn =
                match u.forward {
                    Some(bind) => {
                        let Some(i) = self.listeners.iter().position(|l| {
                            l.is_live() && l.proto() == Proto::Udp && l.fwd.bind == bind
                        }) else {
                            continue;
                        };
                        udp::Conn::forwarded(key, i as u32, u.host, now)
                    }
                    // The same policy as a new flow: the destination's
                    // --restrict and loopback rules apply.
                    None => match flow::nat::outbound(&self.cfg, u.remote) {
                        Some(dst) => {
                            match udp::Conn::open(&mut ctx, &self.cfg.outbound, token, key, dst) {
                                Ok(c) => c,
                                Err(e) => {
                                    log::debug!("migrated udp {} -> {dst}: {e}", u.guest);
                                    continue;
                                }
                            }
                        }
                        None => continue,
                    },
                };
            self.flows.insert(token, key, flow::Flow::Udp(conn));
            self.counters.flows_opened += 1;
            resumed += 1;
        }
        for t in &st.tcp {
            tcp::reset_migrated(&mut ctx, t);
        }
        (resumed, st.tcp.len())
    }

    /// Every flow's protocol name and key (the D-Bus flow list).
    pub fn for_each_flow_key(&self, mut f: impl FnMut(&'static str, &Key)) {
        self.flows.for_each_flow(|flow| match flow {
            flow::Flow::Tcp(c) => f("tcp", c.key()),
            flow::Flow::Udp(c) => f("udp", c.key()),
            flow::Flow::Icmp(c) => f("icmp", c.key()),
        });
    }

    /// The forwards' rules, as bound (for the state and the D-Bus list).
    pub fn forwards(&self) -> impl Iterator<Item = &crate::config::Forward> {
        self.listeners
            .iter()
            .filter(|l| l.is_live())
            .map(|l| &l.fwd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::{Link, PartialCsum};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixDatagram;

    /// A stack that opens no socket (`--restrict`: no flow reaches the
    /// host) on a DGRAM link, and the VMM's end of it.
    fn stack() -> (Stack, Link, UnixDatagram) {
        use clap::Parser;
        let o = crate::cli::Options::try_parse_from([
            "airlock",
            "--restrict",
            "--disable-dns",
            "--disable-ipv6",
        ])
        .unwrap();
        let cfg = Config::from_options(&o, None).unwrap();
        let (vmm, ours) = UnixDatagram::pair().unwrap();
        vmm.set_nonblocking(true).unwrap();
        let link = Link::from_socket(OwnedFd::from(ours)).unwrap();
        (Stack::new(cfg, Poller::new().unwrap()), link, vmm)
    }

    /// A bare ACK from the guest to 10.0.2.2:80, for which no flow exists
    /// (airlock answers with an RST), its checksum field set to `field`.
    fn ack_frame(field: Option<u16>) -> Vec<u8> {
        let l2 = L2 {
            guest: [0x52, 0x55, 10, 0, 2, 2],
            router4: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            router6: [0; 6],
        };
        let (src, dst) = ("10.0.2.15".parse().unwrap(), "10.0.2.2".parse().unwrap());
        let repr = tcpw::Repr {
            src_port: 40000,
            dst_port: 80,
            seq: 1,
            ack: 1,
            flags: tcpw::flags::ACK,
            window: 1000,
            ..tcpw::Repr::default()
        };
        let mut f = vec![0u8; 54];
        let off = crate::frame::write_ip(&mut f, &l2, src, dst, ip_proto::TCP, 20, 64);
        let p = crate::frame::pseudo(src, dst).unwrap();
        repr.emit(&mut f[off..], &p).unwrap();
        if let Some(v) = field {
            f[off + tcpw::CHECKSUM_AT..off + tcpw::CHECKSUM_AT + 2]
                .copy_from_slice(&v.to_be_bytes());
        }
        f
    }

    /// Counters after one frame, and whether airlock answered it.
    fn deliver(frame: &[u8], meta: RxMeta) -> (Counters, bool) {
        let (mut s, mut link, vmm) = stack();
        s.on_frame_in(frame, meta, &[], &mut link.tx, Instant::now());
        link.tx.flush();
        let answered = vmm.recv(&mut [0u8; 128]).is_ok();
        (s.counters, answered)
    }

    const TCP_AT_34: RxMeta = RxMeta {
        partial: Some(PartialCsum {
            start: 34,
            offset: 16,
        }),
    };

    #[test]
    fn a_partial_checksum_where_the_tcp_checksum_is_is_not_verified() {
        let garbage = ack_frame(Some(0x1234));
        let (c, answered) = deliver(&garbage, TCP_AT_34);
        assert_eq!(c.tcp_bad_checksum, 0);
        assert!(answered, "the segment reached TCP");
        // The same frame, unmarked, fails as any bad checksum does.
        let (c, answered) = deliver(&garbage, RxMeta::default());
        assert_eq!(c.tcp_bad_checksum, 1);
        assert!(!answered);
        // And so does one whose mark points elsewhere than the checksum.
        for (start, offset) in [(34, 6), (14, 16), (35, 15), (u16::MAX, u16::MAX)] {
            let partial = Some(PartialCsum { start, offset });
            let (c, answered) = deliver(&garbage, RxMeta { partial });
            assert_eq!(c.tcp_bad_checksum, 1, "mark {start}+{offset}");
            assert!(!answered);
        }
        // A valid frame marked elsewhere is verified, and passes.
        let good = ack_frame(None);
        let partial = Some(PartialCsum {
            start: 0,
            offset: 0,
        });
        let (c, answered) = deliver(&good, RxMeta { partial });
        assert_eq!((c.tcp_bad_checksum, answered), (0, true));
    }

    #[test]
    fn a_partial_checksum_skips_nothing_else() {
        // The IPv4 header checksum is still checked.
        let mut f = ack_frame(Some(0x1234));
        f[24] ^= 0xff;
        let (c, answered) = deliver(&f, TCP_AT_34);
        assert_eq!((c.ipv4_bad_checksum, answered), (1, false));
        // Port 0 is still malformed.
        let mut f = ack_frame(Some(0x1234));
        f[34..36].fill(0);
        let (c, answered) = deliver(&f, TCP_AT_34);
        assert_eq!((c.tcp_malformed, answered), (1, false));
        // A UDP datagram's checksum is 6 bytes in, not 16.
        let l2 = L2 {
            guest: [0x52, 0x55, 10, 0, 2, 2],
            router4: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            router6: [0; 6],
        };
        let (src, dst) = (
            "10.0.2.15:40000".parse().unwrap(),
            "10.0.2.2:9".parse().unwrap(),
        );
        let mut f = vec![0u8; 46];
        let n = crate::frame::write_udp(&mut f, &l2, src, dst, 4);
        assert_eq!(n, 46);
        f[34 + udpw::CHECKSUM_AT] ^= 0x55;
        let (c, _) = deliver(&f, TCP_AT_34);
        assert_eq!(c.udp_bad_checksum, 1);
        let partial = Some(PartialCsum::udp(34));
        let (c, _) = deliver(&f, RxMeta { partial });
        // Past the checksum; --restrict has no way out for it.
        assert_eq!((c.udp_bad_checksum, c.udp_dropped), (0, 1));
    }

    #[test]
    fn a_service_gets_a_partial_udp_checksum_finished() {
        let (src, dst) = (
            std::net::Ipv4Addr::new(10, 0, 2, 15),
            std::net::Ipv4Addr::new(10, 0, 2, 2),
        );
        let pseudo = wire::checksum::PseudoHeader::V4 { src, dst };
        let repr = udpw::Repr {
            src_port: 68,
            dst_port: 67,
            payload_len: 5,
        };
        let mut d = vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5];
        repr.emit_with(&mut d, &pseudo, Checksum::Partial).unwrap();
        let mut scratch = Vec::new();
        assert_eq!(finish_partial(&mut scratch, &d, Checksum::Full), &d[..]);
        let done = finish_partial(&mut scratch, &d, Checksum::Partial);
        let p = udpw::Packet::new_checked(done).unwrap();
        assert!(p.verify_checksum(&pseudo));
        assert!(!udpw::Packet::new_checked(&d[..])
            .unwrap()
            .verify_checksum(&pseudo));
    }
}
