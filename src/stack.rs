//! The virtual network as the guest sees it: one dispatcher from guest
//! frames to services (ARP, DHCP, echo) and flows (TCP, UDP, ICMP), and
//! from host socket events back to flows.
#![forbid(unsafe_code)]

use crate::config::{router_mac4, router_mac6, Config};
use crate::engine::{Poller, Token};
use crate::flow::{self, nat, tcp, Flow, Key};
use crate::frame::L2;
use crate::link::Tx;
use crate::services;
use crate::wire::{self, ethernet, ethertype, icmpv6, ip_proto, ipv4, ipv6, tcp as tcpw, Mac};
use nix::sys::epoll::EpollFlags;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

macro_rules! counters {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {
        /// Why frames were dropped or refused, by reason.
        #[derive(Debug, Default, Clone)]
        pub struct Counters { $($(#[$m])* pub $name: u64,)* }
        impl fmt::Display for Counters {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                $(if self.$name != 0 { writeln!(f, "{}: {}", stringify!($name), self.$name)?; })*
                Ok(())
            }
        }
    };
}

counters! {
    /// Frames with an EtherType airlock does not speak.
    eth_unknown_type,
    arp_malformed,
    /// ARP for addresses that are not airlock's to answer.
    arp_ignored,
    ipv4_malformed,
    ipv4_bad_checksum,
    /// IPv4 when IPv4 is disabled, or from the wrong source.
    ipv4_ignored,
    ipv4_fragment_dropped,
    ipv6_malformed,
    /// IPv6 when IPv6 is disabled, or of a kind airlock does not carry.
    ipv6_ignored,
    /// IPv6 fragments (no reassembly yet).
    ipv6_fragment_dropped,
    /// NDP with a bad checksum, length, option, or a hop limit not 255.
    ndp_malformed,
    /// NDP airlock has no answer for (the guest's own addresses among them).
    ndp_ignored,
    tcp_malformed,
    tcp_bad_checksum,
    /// Guest connections refused: nothing there, restricted, or host error.
    tcp_refused,
    udp_malformed,
    udp_bad_checksum,
    udp_dropped,
    icmp_malformed,
    icmp_dropped,
    dhcp_malformed,
    dhcp_ignored,
    dhcpv6_malformed,
    dhcpv6_ignored,
    /// A new flow found the table full.
    flows_full,
    flows_opened,
    flows_closed,
}

pub struct Stack {
    pub cfg: Config,
    poller: Poller,
    pub l2: L2,
    pub counters: Counters,
    flows: flow::Table,
    dhcp: services::dhcp::Server,
    ndp: services::ndp::Router,
    dhcp6: services::dhcpv6::Server,
    epoch: Instant,
    /// Flows that owe the guest an ACK at the end of this turn.
    dirty: Vec<Token>,
    scratch: Vec<Token>,
}

impl Stack {
    pub fn new(cfg: Config, poller: Poller) -> Stack {
        let router4 = cfg
            .net4
            .as_ref()
            .map(|n| router_mac4(n.host))
            .unwrap_or([0x52, 0x55, 0, 0, 0, 2]);
        let router6 = cfg
            .net6
            .as_ref()
            .map(|n| router_mac6(n.host))
            .unwrap_or([0x52, 0x56, 0, 0, 0, 2]);
        let flows = flow::Table::new(cfg.max_flows);
        let dhcp = services::dhcp::Server::new(&cfg);
        let ndp = services::ndp::Router::new(&cfg);
        let dhcp6 = services::dhcpv6::Server::new(&cfg);
        Stack {
            cfg,
            poller,
            l2: L2 {
                guest: wire::MAC_BROADCAST,
                router4,
                router6,
            },
            counters: Counters::default(),
            flows,
            dhcp,
            ndp,
            dhcp6,
            epoch: Instant::now(),
            dirty: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn poller(&self) -> &Poller {
        &self.poller
    }

    pub fn flow_count(&self) -> usize {
        self.flows.len()
    }

    /// Once the link is up.
    pub fn start(&mut self, now: Instant, tx: &mut Tx) {
        self.ndp.start(&self.cfg, now, tx);
    }

    fn tcp_ctx<'a>(
        poller: &'a Poller,
        l2: &'a L2,
        epoch: Instant,
        mtu: u16,
        tx: &'a mut Tx,
        now: Instant,
    ) -> tcp::Ctx<'a> {
        tcp::Ctx {
            tx,
            poller,
            l2,
            now,
            clock_ms: now.saturating_duration_since(epoch).as_millis() as u32,
            mtu,
        }
    }

    /// A frame from the guest.
    pub fn on_frame(&mut self, frame: &[u8], tx: &mut Tx, now: Instant) {
        let Ok(eth) = ethernet::Frame::new_checked(frame) else {
            return;
        };
        let src = eth.src();
        match eth.ethertype() {
            ethertype::ARP => {
                if src[0] & 1 == 0 {
                    self.l2.guest = src;
                }
                services::arp::handle(&self.cfg, &self.l2, eth.payload(), tx, &mut self.counters);
            }
            ethertype::IPV4 => {
                if src[0] & 1 == 0 {
                    self.l2.guest = src;
                }
                self.on_ipv4(eth.payload(), tx, now);
            }
            ethertype::IPV6 => {
                if src[0] & 1 == 0 {
                    self.l2.guest = src;
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
            self.counters.ipv4_fragment_dropped += 1;
            return;
        }
        let l4 = p.payload();
        let (src, dst) = (IpAddr::V4(repr.src), IpAddr::V4(repr.dst));
        match repr.protocol {
            ip_proto::UDP => {
                if services::dhcp::is_dhcp(l4) {
                    self.dhcp
                        .handle(&self.cfg, &self.l2, repr.src, l4, tx, &mut self.counters);
                    return;
                }
                self.counters.udp_dropped += 1;
            }
            ip_proto::TCP => {
                if repr.src != net.guest {
                    self.counters.ipv4_ignored += 1;
                    return;
                }
                self.on_tcp(src, dst, l4, tx, now);
            }
            ip_proto::ICMP => {
                if net.is_virtual(repr.dst) {
                    services::echo::reply_v4(&self.l2, &repr, l4, tx, &mut self.counters);
                } else {
                    self.counters.icmp_dropped += 1;
                }
            }
            _ => self.counters.ipv4_ignored += 1,
        }
    }

    /// An IPv6 packet: NDP, DHCPv6 and echo to the virtual addresses are
    /// answered here, TCP goes to flows. Silent when IPv6 is disabled.
    fn on_ipv6(&mut self, eth_src: Mac, payload: &[u8], tx: &mut Tx, now: Instant) {
        let Some(net) = self.cfg.net6.as_ref() else {
            self.counters.ipv6_ignored += 1;
            return;
        };
        let Ok(p) = ipv6::Packet::new_checked(payload) else {
            self.counters.ipv6_malformed += 1;
            return;
        };
        let (Ok(repr), Ok(ext)) = (ipv6::Repr::parse(&p), p.extensions()) else {
            self.counters.ipv6_malformed += 1;
            return;
        };
        if ext.fragment.is_some() {
            self.on_ipv6_fragment();
            return;
        }
        let Some(l4) = p.payload().get(ext.offset..) else {
            self.counters.ipv6_malformed += 1;
            return;
        };
        if repr.src.is_multicast() {
            self.counters.ipv6_malformed += 1;
            return;
        }
        let pkt = services::ndp::Incoming {
            eth_src,
            src: repr.src,
            dst: repr.dst,
            hop_limit: repr.hop_limit,
        };
        match ext.next_header {
            ip_proto::ICMPV6 => {
                let Ok(icmp) = icmpv6::Packet::new_checked(l4) else {
                    self.counters.icmp_malformed += 1;
                    return;
                };
                match icmp.msg_type() {
                    icmpv6::msg_type::ROUTER_SOLICIT..=icmpv6::msg_type::REDIRECT => self
                        .ndp
                        .handle(&self.cfg, &pkt, l4, now, tx, &mut self.counters),
                    icmpv6::msg_type::ECHO_REQUEST if services::ndp::is_virtual(net, repr.dst) => {
                        services::echo::reply_v6(
                            eth_src,
                            repr.src,
                            repr.dst,
                            l4,
                            tx,
                            &mut self.counters,
                        )
                    }
                    // Echo to other addresses: ping-socket flows go here.
                    _ => self.counters.icmp_dropped += 1,
                }
            }
            ip_proto::UDP => {
                if services::dhcpv6::is_dhcpv6(l4) {
                    self.dhcp6
                        .handle(&self.cfg, &pkt, l4, tx, &mut self.counters);
                    return;
                }
                self.counters.udp_dropped += 1;
            }
            ip_proto::TCP => {
                if repr.src.is_unspecified() || repr.dst.is_multicast() {
                    self.counters.ipv6_ignored += 1;
                    return;
                }
                self.on_tcp(IpAddr::V6(repr.src), IpAddr::V6(repr.dst), l4, tx, now);
            }
            _ => self.counters.ipv6_ignored += 1,
        }
    }

    /// IPv6 fragments: the hook for reassembly; dropped until it lands.
    fn on_ipv6_fragment(&mut self) {
        self.counters.ipv6_fragment_dropped += 1;
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
            flags: r.flags as u8,
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
        let mut ctx = Self::tcp_ctx(&self.poller, &self.l2, self.epoch, self.cfg.mtu, tx, now);
        if let Some(i) = self.flows.lookup(&key) {
            if let Some((token, Flow::Tcp(conn))) = self.flows.at(i) {
                let verdict = conn.on_segment(&mut ctx, &seg);
                let wants_ack = conn.wants_ack();
                if verdict == tcp::Verdict::Close {
                    self.flows.remove(token);
                    self.counters.flows_closed += 1;
                } else if wants_ack {
                    self.dirty.push(token);
                }
            }
            return;
        }
        if seg.flags & (tcp::SYN | tcp::ACK | tcp::RST) != tcp::SYN {
            tcp::reply_rst(&mut ctx, &key, &seg);
            return;
        }
        let Some(host_dst) = nat::outbound(&self.cfg, key.remote) else {
            self.counters.tcp_refused += 1;
            tcp::reply_rst(&mut ctx, &key, &seg);
            return;
        };
        let token = match self.flows.vacant() {
            Ok(t) => t,
            Err(flow::Full) => {
                self.counters.flows_full += 1;
                tcp::reply_rst(&mut ctx, &key, &seg);
                return;
            }
        };
        match tcp::Conn::connect(&mut ctx, token, key, host_dst, &seg) {
            Ok(conn) => {
                self.flows.insert(token, key, Flow::Tcp(conn));
                self.counters.flows_opened += 1;
            }
            Err(e) => {
                log::debug!("tcp {} -> {host_dst}: {e}", key.guest);
                self.counters.tcp_refused += 1;
                tcp::reply_rst(&mut ctx, &key, &seg);
            }
        }
    }

    /// An event on a host socket.
    pub fn on_host_event(&mut self, token: Token, ev: EpollFlags, tx: &mut Tx, now: Instant) {
        let mut ctx = Self::tcp_ctx(&self.poller, &self.l2, self.epoch, self.cfg.mtu, tx, now);
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
                    None => return,
                };
                if verdict == tcp::Verdict::Close {
                    self.flows.remove(token);
                    self.counters.flows_closed += 1;
                }
            }
            Token::Listener(_) => {}
            Token::Link | Token::Signal => {}
        }
    }

    /// Periodic work: retransmissions, timeouts.
    pub fn on_tick(&mut self, now: Instant, tx: &mut Tx) {
        self.ndp.on_tick(&self.cfg, now, tx);
        let mut tokens = std::mem::take(&mut self.scratch);
        self.flows.tokens(&mut tokens);
        let mut ctx = Self::tcp_ctx(&self.poller, &self.l2, self.epoch, self.cfg.mtu, tx, now);
        for &t in &tokens {
            let v = match self.flows.get_mut(t) {
                Some(Flow::Tcp(c)) => c.on_tick(&mut ctx),
                None => continue,
            };
            if v == tcp::Verdict::Close {
                self.flows.remove(t);
                self.counters.flows_closed += 1;
            }
        }
        self.scratch = tokens;
    }

    /// End of a loop turn: one ACK per flow that received data.
    pub fn after_turn(&mut self, now: Instant, tx: &mut Tx) {
        if self.dirty.is_empty() {
            return;
        }
        let mut ctx = Self::tcp_ctx(&self.poller, &self.l2, self.epoch, self.cfg.mtu, tx, now);
        for t in self.dirty.drain(..) {
            if let Some(Flow::Tcp(c)) = self.flows.get_mut(t) {
                c.flush_ack(&mut ctx);
            }
        }
    }
}
