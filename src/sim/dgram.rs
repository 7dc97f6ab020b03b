//! Simulated datagram sockets behind `flow::host`'s seam: UDP and ICMP echo
//! ("ping") sockets, each connected to a simulated destination.
//!
//! What airlock relies on is modelled: a bounded receive queue (what
//! overflows is dropped, as the kernel does), `EAGAIN` when too much is
//! unsent, ephemeral UDP ports and echo identifiers the host may choose
//! itself, replies after a delay, ICMP errors through the error queue
//! (`IP_RECVERR`: port unreachable for UDP, host unreachable for echo), and
//! level-triggered `EPOLLIN`/`EPOLLERR`. Every datagram airlock sends is
//! checked against what the guest sent; the time each socket was last
//! used and closed is kept for the idle-timeout invariant.

use super::host::{pattern, Net, SimHost};
use crate::flow::dgram::{self, HostError, RxHeaders, Shape, BATCH};
use crate::flow::host::{Dgram, DgramSocket};
use crate::link::Tx;
use crate::poller::Token;
use crate::wire::checksum::Checksum;
use nix::sys::epoll::EpollFlags;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// Datagrams a socket's receive queue holds; more are dropped.
pub const RCV_QUEUE: usize = 64;
/// Datagrams the send buffer takes in one millisecond; more get EAGAIN.
pub const SND_QUEUE: usize = 16;
/// The stream numbers datagram payloads are patterned from (TCP flows use
/// `2 * i` and `2 * i + 1`).
const STREAM_BASE: u32 = 1 << 20;

/// What a simulated datagram destination does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DgramPeer {
    /// Answers each datagram `copies` times after `delay` (a request and
    /// its stream of replies: traffic both ways).
    Echo { delay: Duration, copies: u8 },
    /// Never answers.
    Silent,
    /// Answers with an ICMP error: port unreachable (UDP), host
    /// unreachable (echo).
    Unreachable,
}

/// The payload of the guest's datagram `seq` of flow `flow`: a 4-byte
/// header (`G`, flow, seq) and patterned bytes.
pub fn payload(flow: usize, seq: u16, len: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[b'G', flow as u8]);
    out.extend_from_slice(&seq.to_be_bytes());
    let stream = STREAM_BASE + flow as u32;
    out.extend((4..len.max(4)).map(|k| pattern(stream, (u64::from(seq) << 16) + k as u64)));
}

/// Whether `p` is exactly the guest's datagram `seq` of `flow`, with its
/// first byte replaced by `first`. Returns the sequence number.
pub fn check(flow: usize, p: &[u8], first: u8) -> Option<u16> {
    if p.len() < 4 || p[0] != first || p[1] != flow as u8 {
        return None;
    }
    let seq = u16::from_be_bytes([p[2], p[3]]);
    let stream = STREAM_BASE + flow as u32;
    let ok = p[4..]
        .iter()
        .enumerate()
        .all(|(k, &b)| b == pattern(stream, (u64::from(seq) << 16) + 4 + k as u64));
    ok.then_some(seq)
}

/// The first payload byte of reply copy `c`.
pub fn reply_mark(c: u8) -> u8 {
    b'R' + c
}

/// One simulated datagram socket.
#[derive(Debug)]
pub struct DSock {
    pub kind: Dgram,
    pub dst: SocketAddr,
    pub token: Token,
    /// The scenario's datagram flow this socket serves.
    pub flow: usize,
    pub peer: DgramPeer,
    /// The local port (UDP) or identifier (echo) the host chose.
    pub local: u16,
    /// Replies on their way, by due time.
    pending: VecDeque<(Duration, Vec<u8>)>,
    rx: VecDeque<Vec<u8>>,
    errq: VecDeque<HostError>,
    pub ttl: u8,
    /// Datagrams airlock sent and the peer took.
    pub sent: u64,
    /// Sent this millisecond (the send buffer's fill), and refused.
    unsent: usize,
    pub eagain: u64,
    /// Replies dropped because the receive queue was full.
    pub overflowed: u64,
    pub opened_at: Duration,
    /// Airlock read a datagram from it (the host side spoke).
    pub read_any: bool,
    /// Airlock last sent or read (what its idle timer counts from).
    pub last_used: Duration,
    pub closed_at: Option<Duration>,
    pub fault: Option<String>,
}

/// Airlock's handle on one simulated datagram socket.
pub struct SimDgram {
    net: Rc<RefCell<Net>>,
    id: usize,
}

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// `SimHost::dgram_connect`: a socket toward a destination the scenario
/// knows.
pub fn connect(host: &SimHost, token: Token, kind: Dgram, dst: SocketAddr) -> io::Result<SimDgram> {
    let mut net = host.net.borrow_mut();
    let found = net.dgram_peers.iter().find(|p| match kind {
        Dgram::Udp => p.0 == dst && !p.3,
        Dgram::Ping { .. } => p.0.ip() == dst.ip() && p.3,
    });
    let Some(&(_, peer, flow, _)) = found else {
        net.unknown_connects += 1;
        return Err(err(nix::libc::ENETUNREACH));
    };
    let local = match kind {
        Dgram::Udp => {
            net.next_port = net.next_port.wrapping_add(1).max(32768);
            net.next_port
        }
        // The host may have given the guest's identifier away.
        Dgram::Ping { ident } if net.entropy.chance(300) => ident ^ 0x5a5a,
        Dgram::Ping { ident } => ident,
    };
    let now = net.now;
    net.dgrams.push(DSock {
        kind,
        dst,
        token,
        flow,
        peer,
        local,
        pending: VecDeque::new(),
        rx: VecDeque::new(),
        errq: VecDeque::new(),
        ttl: 64,
        sent: 0,
        unsent: 0,
        eagain: 0,
        overflowed: 0,
        opened_at: now,
        read_any: false,
        last_used: now,
        closed_at: None,
        fault: None,
    });
    Ok(SimDgram {
        net: host.net.clone(),
        id: net.dgrams.len() - 1,
    })
}

impl DSock {
    /// The peer's answer to `msg` (checked already), by `self.kind`.
    fn answer(&mut self, now: Duration, msg: &[u8]) {
        match self.peer {
            DgramPeer::Silent => {}
            DgramPeer::Unreachable => {
                let (icmp_type, code) = match self.kind {
                    Dgram::Udp => (3, 3),
                    Dgram::Ping { .. } => (3, 1),
                };
                let mut head = [0u8; 8];
                let n = msg.len().min(8);
                head[..n].copy_from_slice(&msg[..n]);
                self.errq.push_back(HostError {
                    icmp_type,
                    code,
                    info: 0,
                    offender: Some(self.dst.ip()),
                    head,
                });
            }
            DgramPeer::Echo { delay, copies } => {
                for c in 0..copies {
                    let at = now + delay + Duration::from_millis(u64::from(c));
                    let reply = match self.kind {
                        Dgram::Udp => {
                            let mut r = msg.to_vec();
                            r[0] = reply_mark(c);
                            r
                        }
                        Dgram::Ping { .. } => {
                            // An echo reply as the kernel hands it over:
                            // the host's identifier, a valid checksum.
                            let mut r = msg.to_vec();
                            r[0] = crate::wire::icmpv4::msg_type::ECHO_REPLY;
                            r[4..6].copy_from_slice(&self.local.to_be_bytes());
                            if let Ok(mut p) = crate::wire::icmpv4::Packet::new_checked(&mut r[..])
                            {
                                p.fill_checksum();
                            }
                            r
                        }
                    };
                    self.pending.push_back((at, reply));
                }
            }
        }
    }
}

impl Net {
    /// The datagram peers' work up to `now`; level-triggered readiness.
    pub fn step_dgrams(&mut self) {
        let now = self.now;
        for s in self.dgrams.iter_mut().filter(|s| s.closed_at.is_none()) {
            s.unsent = 0;
            while s.pending.front().is_some_and(|(t, _)| *t <= now) {
                let Some((_, d)) = s.pending.pop_front() else {
                    break;
                };
                if s.rx.len() < RCV_QUEUE {
                    s.rx.push_back(d);
                } else {
                    s.overflowed += 1;
                }
            }
            let mut f = EpollFlags::empty();
            if !s.rx.is_empty() {
                f |= EpollFlags::EPOLLIN;
            }
            if !s.errq.is_empty() {
                f |= EpollFlags::EPOLLERR;
            }
            if !f.is_empty() {
                self.events.push((s.token, f));
            }
        }
    }

    /// The next reply due.
    pub fn next_dgram_due(&self) -> Option<Duration> {
        self.dgrams
            .iter()
            .filter(|s| s.closed_at.is_none())
            .filter_map(|s| s.pending.front().map(|(t, _)| *t))
            .min()
    }

    /// Something is readable (airlock must get a turn at once).
    pub fn dgram_ready(&self) -> bool {
        self.dgrams
            .iter()
            .any(|s| s.closed_at.is_none() && !(s.rx.is_empty() && s.errq.is_empty()))
    }
}

impl SimDgram {
    fn with<R>(&self, f: impl FnOnce(&mut DSock, Duration) -> R) -> R {
        let mut net = self.net.borrow_mut();
        let now = net.now;
        f(&mut net.dgrams[self.id], now)
    }
}

impl DgramSocket for SimDgram {
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.with(|s, now| {
            s.last_used = now;
            if s.unsent >= SND_QUEUE {
                s.eagain += 1;
                return Err(err(nix::libc::EAGAIN));
            }
            s.unsent += 1;
            let ok = match s.kind {
                Dgram::Udp => check(s.flow, buf, b'G').is_some(),
                // The guest's echo request: type 8 code 0, its payload
                // after the 8-byte header.
                Dgram::Ping { .. } => {
                    buf.len() >= 8
                        && buf[0] == 8
                        && buf[1] == 0
                        && check(s.flow, &buf[8..], b'G').is_some()
                }
            };
            if !ok && s.fault.is_none() {
                s.fault = Some(format!("datagram flow {}: airlock sent {buf:02x?}", s.flow));
            }
            s.sent += 1;
            s.answer(now, buf);
            Ok(buf.len())
        })
    }

    fn set_ttl(&self, ttl: u8) -> io::Result<()> {
        self.with(|s, _| s.ttl = ttl);
        Ok(())
    }

    fn recv_frames(
        &self,
        tx: &mut Tx,
        _rx: &mut RxHeaders,
        shape: Shape,
        oversize: &mut u64,
        mut finish: impl FnMut(&mut [u8], usize, Option<SocketAddr>, Checksum) -> usize,
    ) -> usize {
        // As `dgram::recv_frames`: frames reserved up front, payloads in
        // place behind `hdr`, oversized datagrams dropped and counted.
        let hdr = shape.hdr;
        let csum = shape.checksum(tx);
        let (mut slots, max) = dgram::reserve_frames(tx, hdr, shape.max);
        let room = slots.count().min(BATCH);
        let (got, dst) = self.with(|s, now| {
            let n = s.rx.len().min(room);
            if n > 0 {
                s.last_used = now;
                s.read_any = true;
            }
            (s.rx.drain(..n).collect::<Vec<_>>(), s.dst)
        });
        let k = got.len();
        if k == 0 {
            return 0;
        }
        let mut lens = [0usize; BATCH];
        for ((len, frame), d) in lens.iter_mut().zip(slots.iter_mut()).zip(&got) {
            if d.len() > max {
                *oversize += 1;
                continue;
            }
            frame[hdr..hdr + d.len()].copy_from_slice(d);
            *len = finish(frame, d.len(), Some(dst), csum);
        }
        slots.commit_with(&lens[..k], shape.mark(csum));
        k
    }

    fn next_error(&self) -> Option<HostError> {
        self.with(|s, _| s.errq.pop_front())
    }
}

impl Drop for SimDgram {
    fn drop(&mut self) {
        if let Ok(mut net) = self.net.try_borrow_mut() {
            let now = net.now;
            net.dgrams[self.id].closed_at = Some(now);
        }
    }
}
