//! ICMP echo over unprivileged ping sockets (`SOCK_DGRAM` + `IPPROTO_ICMP`
//! or `IPPROTO_ICMPV6`): no raw sockets, no capabilities.
//!
//! One flow per (destination, echo identifier). The kernel owns the
//! identifier of a ping socket (its "port"): airlock asks for the guest's
//! by binding it, and when the host hands out another one the replies are
//! rewritten back to the guest's identifier (checksum recomputed), so the
//! guest's `ping` always recognises its answers. Replies are received in
//! batches straight into frames in the transmit queue, as for UDP. Errors
//! (unreachable, TTL exceeded) come back through `IP_RECVERR` and reach the
//! guest as ICMP errors quoting its echo request.
//!
//! Ping sockets need the process's group inside
//! `net.ipv4.ping_group_range`; when it is not, socket creation fails with
//! EACCES and the stack warns once and falls back to answering the virtual
//! addresses itself.
//!
//! Host sockets are ICMP echo sockets (`SOCK_DGRAM`, never `SOCK_RAW`),
//! made through `flow::host`'s seam.
//! #syscalls: bind connect(2=128) setsockopt sendto(5=0) recvmmsg recvmsg close
//! #syscalls: getegid
#![forbid(unsafe_code)]

use super::dgram::{self, HostError, Quote, RxHeaders};
use super::host::{Dgram, DgramSocket, Host, Kernel};
use super::{nat, Ctx, Flow, Key, Table, Token, Verdict};
use crate::config::Config;
use crate::counters::Counters;
use crate::frame;
use crate::wire::{icmpv4, icmpv6, ip_proto};
use nix::sys::epoll::EpollFlags;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// An echo flow with no traffic for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Batches read per host event.
const BATCHES_PER_EVENT: usize = 2;

const ECHO_REQUEST_V4: u8 = icmpv4::msg_type::ECHO_REQUEST;
const ECHO_REPLY_V4: u8 = icmpv4::msg_type::ECHO_REPLY;
const ECHO_REQUEST_V6: u8 = icmpv6::msg_type::ECHO_REQUEST;
const ECHO_REPLY_V6: u8 = icmpv6::msg_type::ECHO_REPLY;

/// The flow key of an echo request: the guest's address and identifier,
/// and the destination (port 0).
pub fn key(src: IpAddr, dst: IpAddr, ident: u16) -> Key {
    Key {
        proto: if src.is_ipv6() {
            ip_proto::ICMPV6
        } else {
            ip_proto::ICMP
        },
        guest: SocketAddr::new(src, ident),
        remote: SocketAddr::new(dst, 0),
    }
}

/// Whether an ICMP message from the guest is an echo request, and its
/// identifier: the only ICMP the host side carries.
pub fn echo_request_ident(msg: &[u8], v6: bool) -> Option<u16> {
    let want = if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 };
    match msg {
        [t, 0, _, _, a, b, _, _, ..] if *t == want => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// An echo request from the guest to `dst` (not a virtual address): to
/// its flow, or through a new ping socket. False when no flow can carry
/// it (ping sockets refused, or no destination), so the caller counts it
/// dropped.
#[allow(clippy::too_many_arguments)]
pub fn on_guest_echo<H: Host>(
    table: &mut Table<H>,
    ctx: &mut Ctx<'_, H>,
    cfg: &Config,
    counters: &mut Counters,
    ping_denied: &mut bool,
    dst: IpAddr,
    key: Key,
    msg: &[u8],
    ttl: u8,
) -> bool {
    let now = ctx.now;
    if let Some(i) = table.lookup(&key) {
        if let Some((_, Flow::Icmp(c))) = table.at(i) {
            if c.on_guest(now, msg, ttl).is_err() {
                counters.icmp_dropped += 1;
            }
        }
        return true;
    }
    if *ping_denied {
        counters.icmp_ping_denied += 1;
        return false;
    }
    let Some(host_dst) = nat::outbound(cfg, SocketAddr::new(dst, 0)) else {
        if !nat::refused(dst) {
            return false;
        }
        let src = key.guest.ip();
        let proto = if src.is_ipv6() {
            ip_proto::ICMPV6
        } else {
            ip_proto::ICMP
        };
        let quote = super::dgram::Quote::of(src, dst, proto, ttl, msg);
        super::dgram::send_refusal(ctx.tx, ctx.l2, &quote);
        counters.icmp_dropped += 1;
        return true;
    };
    let Ok(token) = table.vacant() else {
        counters.flows_full += 1;
        return true;
    };
    match Echo::open(ctx, &cfg.outbound, token, key, host_dst.ip()) {
        Ok(mut c) => {
            if c.on_guest(now, msg, ttl).is_err() {
                counters.icmp_dropped += 1;
            }
            table.insert(token, key, Flow::Icmp(c));
            counters.flows_opened += 1;
            true
        }
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            *ping_denied = true;
            counters.icmp_ping_denied += 1;
            log::warn!(
                "ping sockets are not allowed for group {}: the guest can ping only the \
                 virtual addresses; to let it ping the outside, include that group in \
                 net.ipv4.ping_group_range (e.g. sysctl -w net.ipv4.ping_group_range='0 2147483647')",
                nix::unistd::getegid()
            );
            false
        }
        Err(e) => {
            log::debug!("ping {dst} -> {host_dst}: {e}");
            counters.icmp_dropped += 1;
            true
        }
    }
}

/// One echo flow.
pub struct Echo<H: Host = Kernel> {
    sock: H::Dgram,
    key: Key,
    /// The address pinged on the host (10.0.2.2 becomes 127.0.0.1).
    host_dst: IpAddr,
    ttl: u8,
    last_len: u16,
    last_seen: Instant,
}

impl<H: Host> Echo<H> {
    /// Open a ping socket toward `host_dst`. An EACCES error means
    /// `net.ipv4.ping_group_range` excludes airlock's group.
    pub fn open(
        ctx: &mut Ctx<'_, H>,
        outbound: &crate::outbound::Outbound,
        token: Token,
        key: Key,
        host_dst: IpAddr,
    ) -> io::Result<Self> {
        let kind = Dgram::Ping {
            ident: key.guest.port(),
        };
        let dst = SocketAddr::new(host_dst, 0);
        let sock = ctx
            .host
            .dgram_connect(ctx.poller, token, kind, dst, outbound)?;
        Ok(Echo {
            sock,
            key,
            host_dst,
            ttl: 64,
            last_len: 8,
            last_seen: ctx.now,
        })
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    /// An echo request from the guest (the whole ICMP message); the kernel
    /// sets the identifier and checksum.
    pub fn on_guest(&mut self, now: Instant, msg: &[u8], ttl: u8) -> io::Result<()> {
        self.last_seen = now;
        self.last_len = msg.len().min(u16::MAX as usize) as u16;
        self.sock.send_at_ttl(msg, ttl, &mut self.ttl)
    }

    /// Replies or errors on the ping socket.
    pub fn on_host_event(
        &mut self,
        ctx: &mut Ctx<'_, H>,
        ev: EpollFlags,
        rx: &mut RxHeaders,
        counters: &mut Counters,
    ) -> Verdict {
        let v6 = self.key.guest.is_ipv6();
        let proto = self.key.proto;
        if ev.contains(EpollFlags::EPOLLERR) {
            while let Some(e) = self.sock.next_error() {
                self.relay_error(ctx, &e, counters);
            }
        }
        if !ev.contains(EpollFlags::EPOLLIN) {
            return Verdict::Keep;
        }
        let (src, dst, ident, l2) = (
            self.key.remote.ip(),
            self.key.guest.ip(),
            self.key.guest.port(),
            *ctx.l2,
        );
        let hdr = frame::l4_offset(dst);
        let max = (ctx.mtu as usize).saturating_sub(if v6 { 40 } else { 20 });
        let reply = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
        for _ in 0..BATCHES_PER_EVENT {
            let n = self.sock.recv_frames(
                ctx.tx,
                rx,
                dgram::Shape {
                    hdr,
                    max,
                    partial: None,
                },
                &mut counters.icmp_dropped,
                |f, len, _, _| {
                    let off = frame::write_ip(f, &l2, src, dst, proto, len, 64);
                    let Some(m) = f.get_mut(off..off + len).filter(|_| off != 0 && len >= 8) else {
                        return 0;
                    };
                    // The host's identifier back to the guest's.
                    match (src, dst) {
                        (IpAddr::V6(s), IpAddr::V6(d)) => {
                            let Ok(mut p) = icmpv6::Packet::new_checked(&mut *m) else {
                                return 0;
                            };
                            if p.msg_type() != reply {
                                return 0;
                            }
                            p.set_echo_ident(ident);
                            p.fill_checksum(s, d);
                        }
                        _ => {
                            let Ok(mut p) = icmpv4::Packet::new_checked(&mut *m) else {
                                return 0;
                            };
                            if p.msg_type() != reply {
                                return 0;
                            }
                            p.set_echo_ident(ident);
                            p.fill_checksum();
                        }
                    }
                    off + len
                },
            );
            if n == 0 {
                break;
            }
            self.last_seen = ctx.now;
            if n < dgram::BATCH {
                break;
            }
        }
        Verdict::Keep
    }

    fn relay_error(&self, ctx: &mut Ctx<'_, H>, e: &HostError, counters: &mut Counters) {
        let v6 = self.key.guest.is_ipv6();
        let from = dgram::error_source(e.offender, self.key.remote.ip(), self.host_dst);
        // The echo request as the guest sent it: its type, its identifier,
        // the host's sequence number (the kernel keeps the guest's).
        let mut head = e.head;
        let ident = self.key.guest.port();
        if v6 {
            if let Ok(mut p) = icmpv6::Packet::new_checked(&mut head[..]) {
                p.set_msg_type(ECHO_REQUEST_V6);
                p.set_code(0);
                p.set_checksum(0);
                p.set_echo_ident(ident);
            }
        } else if let Ok(mut p) = icmpv4::Packet::new_checked(&mut head[..]) {
            p.set_msg_type(ECHO_REQUEST_V4);
            p.set_code(0);
            p.set_checksum(0);
            p.set_echo_ident(ident);
        }
        let quote = Quote {
            src: self.key.guest.ip(),
            dst: self.key.remote.ip(),
            proto: self.key.proto,
            ttl: self.ttl,
            l4_len: self.last_len.max(8) as usize,
            l4_head: head,
        };
        if dgram::send_icmp_error(ctx.tx, ctx.l2, from, e, &quote) {
            counters.icmp_errors_to_guest += 1;
        }
    }

    /// Idle expiry.
    pub fn on_tick(&self, now: Instant) -> Verdict {
        Verdict::unless_idle(self.last_seen, now, IDLE_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_echo_requests_are_carried() {
        assert_eq!(
            echo_request_ident(&[8, 0, 0, 0, 0x12, 0x34, 0, 1], false),
            Some(0x1234)
        );
        assert_eq!(
            echo_request_ident(&[8, 1, 0, 0, 0x12, 0x34, 0, 1], false),
            None
        );
        assert_eq!(
            echo_request_ident(&[0, 0, 0, 0, 0x12, 0x34, 0, 1], false),
            None
        );
        assert_eq!(echo_request_ident(&[8, 0, 0, 0, 0x12], false), None);
        assert_eq!(
            echo_request_ident(&[128, 0, 0, 0, 0, 7, 0, 1], true),
            Some(7)
        );
        assert_eq!(echo_request_ident(&[8, 0, 0, 0, 0, 7, 0, 1], true), None);
        let k = key("10.0.2.15".parse().unwrap(), "10.0.2.2".parse().unwrap(), 9);
        assert_eq!(k.proto, ip_proto::ICMP);
        assert_eq!(k.guest.port(), 9);
    }
}
