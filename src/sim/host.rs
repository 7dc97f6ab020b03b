//! The simulated host: in-memory TCP sockets behind `flow::host`'s seam,
//! each the near end of a connection to a simulated peer application.
//!
//! Byte streams are not stored: the byte at offset `i` of a stream is
//! [`pattern`]`(stream, i)`, so a socket's receive queue is two counters and
//! every byte airlock writes is checked against the pattern the moment the
//! socket takes it (exactly once, in order, or the run fails).
//!
//! What the kernel does that airlock relies on is modelled: a send buffer
//! whose memory (payload plus per-write overhead) limits `send`, partial
//! writes and `EAGAIN` when it is full, `SO_PEEK_OFF` walking forward
//! and moving back on discard, EOF after the peer's FIN, edge-triggered
//! events (`EPOLLOUT` only after the socket was seen full, as
//! `sk_stream_write_space` does), refused and never-answered connects,
//! resets while data is in flight.

use super::dgram::{DSock, DgramPeer, SimDgram};
use super::Entropy;
use crate::flow::host::{Dgram, Host, TcpSocket};
use crate::flow::seq::Seq;
use crate::flow::Key;
use crate::outbound::Outbound;
use crate::poller::{Poller, Token};
use nix::sys::epoll::EpollFlags;
use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::Duration;

/// The byte at `offset` of stream `stream` (a flow's direction).
pub fn pattern(stream: u32, offset: u64) -> u8 {
    let x = (offset ^ (stream as u64) << 40).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8
}

/// Kernel-style charge for one write in the send queue (skb overhead; the
/// turn's segments are corked, so writes share buffers).
const WRITE_OVERHEAD: usize = 64;

/// How a connect to a simulated peer ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connect {
    /// The peer accepts after this long.
    Accept(Duration),
    /// ECONNREFUSED after this long.
    Refuse(Duration),
    /// No answer ever (airlock's connect timeout ends it).
    Silent,
}

/// What the simulated peer behind one host socket does.
#[derive(Clone, Debug)]
pub struct Peer {
    pub connect: Connect,
    /// Bytes the peer sends toward the guest, then FIN.
    pub h2g: u64,
    /// Bytes per millisecond the peer reads and writes (0: stopped).
    pub rate: usize,
    /// The peer stops reading for this window of time (a slow reader).
    pub read_stall: Option<(Duration, Duration)>,
    /// The peer resets the connection at this time.
    pub reset_at: Option<Duration>,
    /// The socket's send and receive buffer sizes.
    pub sndbuf: usize,
    pub rcvbuf: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Connecting,
    Open,
    /// The peer reset the connection (or refused it).
    Reset,
}

/// One simulated socket and its peer.
#[derive(Debug)]
pub struct Sock {
    pub peer: Peer,
    /// The stream numbers of the two directions: guest to host, host to
    /// guest.
    pub streams: (u32, u32),
    pub token: Token,
    pub state: State,
    pub opened_at: Duration,
    /// Guest-to-host bytes airlock wrote (all checked against the
    /// pattern) and how many of them the peer has read.
    pub g2h_written: u64,
    pub g2h_read: u64,
    /// Memory charged to the send queue beyond its payload.
    pub overhead: usize,
    /// Airlock shut down writing (the guest's FIN).
    pub shut_wr: bool,
    /// Host-to-guest bytes the peer wrote, and how many airlock dropped
    /// from the front of the queue.
    pub h2g_written: u64,
    pub h2g_discarded: u64,
    /// The peer's FIN is queued behind its data.
    pub h2g_fin: bool,
    pub peek_off: usize,
    pub cork: bool,
    /// A write found the socket full: the next freed space raises EPOLLOUT.
    pub nospace: bool,
    pub error: i32,
    /// Both directions finished and EPOLLHUP was reported.
    pub hup: bool,
    /// Airlock set SO_LINGER 0 (the close is a reset).
    pub aborted: bool,
    /// Airlock dropped its socket.
    pub closed: bool,
    /// A broken invariant seen on this socket.
    pub fault: Option<String>,
}

impl Sock {
    fn new(peer: Peer, streams: (u32, u32), token: Token, state: State, at: Duration) -> Sock {
        Sock {
            peer,
            streams,
            token,
            state,
            opened_at: at,
            g2h_written: 0,
            g2h_read: 0,
            overhead: 0,
            shut_wr: false,
            h2g_written: 0,
            h2g_discarded: 0,
            h2g_fin: false,
            peek_off: 0,
            cork: false,
            nospace: false,
            error: 0,
            hup: false,
            aborted: false,
            closed: false,
            fault: None,
        }
    }

    fn send_memory(&self) -> usize {
        (self.g2h_written - self.g2h_read) as usize + self.overhead
    }

    fn writable(&self) -> bool {
        let mem = self.send_memory();
        self.peer.sndbuf.saturating_sub(mem) >= mem / 2
    }

    fn rcv_queued(&self) -> usize {
        (self.h2g_written - self.h2g_discarded) as usize
    }
}

/// Everything the simulated host holds, shared by its sockets.
pub struct Net {
    pub now: Duration,
    pub entropy: Entropy,
    pub sockets: Vec<Sock>,
    /// Events not yet delivered to airlock (what epoll would report).
    pub events: Vec<(Token, EpollFlags)>,
    /// The peer each destination leads to, by destination.
    pub peers: Vec<(SocketAddr, Peer, (u32, u32))>,
    /// Connects to a destination with no peer (a broken scenario).
    pub unknown_connects: usize,
    /// Datagram sockets, and each destination's peer: (destination, what
    /// it does, the scenario's datagram flow, echo rather than UDP).
    pub dgrams: Vec<DSock>,
    pub dgram_peers: Vec<(SocketAddr, DgramPeer, usize, bool)>,
    /// The last ephemeral port handed out.
    pub next_port: u16,
}

impl Net {
    /// The peers' work for the last `dt` of virtual time.
    pub fn step(&mut self, dt: Duration) {
        let now = self.now;
        let ms = dt.as_millis().max(1) as usize;
        let mut events = Vec::new();
        for s in self.sockets.iter_mut() {
            let t = s.token;
            if s.closed {
                // A plain close leaves the send queue to be delivered, as
                // the kernel does; an abort or a reset drops it.
                if !s.aborted && s.state == State::Open {
                    s.g2h_read = s.g2h_written;
                }
                continue;
            }
            match s.state {
                State::Connecting => match s.peer.connect {
                    Connect::Accept(d) if now >= s.opened_at + d => {
                        s.state = State::Open;
                        events.push((t, EpollFlags::EPOLLOUT));
                    }
                    Connect::Refuse(d) if now >= s.opened_at + d => {
                        s.state = State::Reset;
                        s.error = nix::libc::ECONNREFUSED;
                        events.push((t, EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP));
                    }
                    _ => {}
                },
                State::Reset => {}
                State::Open => {
                    if s.peer.reset_at.is_some_and(|at| now >= at) {
                        s.state = State::Reset;
                        s.error = nix::libc::ECONNRESET;
                        let f = EpollFlags::EPOLLERR
                            | EpollFlags::EPOLLHUP
                            | EpollFlags::EPOLLIN
                            | EpollFlags::EPOLLRDHUP;
                        events.push((t, f));
                        continue;
                    }
                    let budget = s.peer.rate.saturating_mul(ms);
                    // The peer reads what airlock wrote.
                    let stalled = s
                        .peer
                        .read_stall
                        .is_some_and(|(from, len)| now >= from && now < from + len);
                    let unread = s.g2h_written - s.g2h_read;
                    if !stalled && unread > 0 {
                        let n = unread.min(budget as u64);
                        s.g2h_read += n;
                        if s.g2h_read == s.g2h_written {
                            s.overhead = 0;
                        } else {
                            s.overhead = s.overhead.saturating_sub(WRITE_OVERHEAD);
                        }
                        if s.nospace && s.writable() {
                            s.nospace = false;
                            events.push((t, EpollFlags::EPOLLOUT));
                        }
                    }
                    // The peer writes toward the guest, then its FIN.
                    let room = s.peer.rcvbuf.saturating_sub(s.rcv_queued()) as u64;
                    let left = s.peer.h2g - s.h2g_written;
                    let n = left.min(room).min(budget as u64);
                    if n > 0 {
                        s.h2g_written += n;
                        events.push((t, EpollFlags::EPOLLIN));
                    }
                    if s.h2g_written == s.peer.h2g && !s.h2g_fin {
                        s.h2g_fin = true;
                        events.push((t, EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP));
                    }
                    if s.h2g_fin && s.shut_wr && s.g2h_read == s.g2h_written {
                        // Both directions are done: the kernel reports HUP.
                        if s.h2g_discarded == s.h2g_written && !s.hup {
                            s.hup = true;
                            events.push((t, EpollFlags::EPOLLHUP | EpollFlags::EPOLLIN));
                        }
                    }
                }
            }
        }
        self.events.extend(events);
        self.step_dgrams();
    }

    /// Every socket is closed and what airlock wrote is delivered (or
    /// dropped by a reset).
    pub fn all_closed(&self) -> bool {
        self.sockets.iter().all(|s| {
            s.closed && (s.aborted || s.state != State::Open || s.g2h_read == s.g2h_written)
        }) && self.dgrams.iter().all(|s| s.closed_at.is_some())
    }

    /// Whether any peer has work it could do now (time must move in small
    /// steps while so).
    pub fn busy(&self) -> bool {
        self.sockets.iter().any(|s| {
            !s.closed
                && s.state == State::Open
                && (s.g2h_read < s.g2h_written
                    || s.h2g_written < s.peer.h2g && s.rcv_queued() < s.peer.rcvbuf)
        })
    }

    /// The next time a scheduled peer action (connect answer, reset, end
    /// of a stall) is due.
    pub fn next_due(&self) -> Option<Duration> {
        let mut next: Option<Duration> = None;
        let mut at = |t: Duration| next = Some(next.map_or(t, |n: Duration| n.min(t)));
        for s in self.sockets.iter().filter(|s| !s.closed) {
            match (s.state, s.peer.connect) {
                (State::Connecting, Connect::Accept(d) | Connect::Refuse(d)) => at(s.opened_at + d),
                (State::Open, _) => {
                    if let Some(r) = s.peer.reset_at {
                        at(r);
                    }
                    if let Some((from, len)) = s.peer.read_stall {
                        at(from + len);
                    }
                }
                _ => {}
            }
        }
        if let Some(t) = self.next_dgram_due() {
            at(t);
        }
        next.filter(|&t| t > self.now)
    }
}

/// The host side of the seam, shared with its sockets.
#[derive(Clone)]
pub struct SimHost {
    pub net: Rc<RefCell<Net>>,
}

impl SimHost {
    pub fn new(entropy: Entropy) -> SimHost {
        SimHost {
            net: Rc::new(RefCell::new(Net {
                now: Duration::ZERO,
                entropy,
                sockets: Vec::new(),
                events: Vec::new(),
                peers: Vec::new(),
                unknown_connects: 0,
                dgrams: Vec::new(),
                dgram_peers: Vec::new(),
                next_port: 40000,
            })),
        }
    }
}

/// Airlock's handle on one simulated socket.
pub struct SimTcp {
    net: Rc<RefCell<Net>>,
    id: usize,
}

impl Host for SimHost {
    type Tcp = SimTcp;
    type Dgram = SimDgram;

    fn dgram_connect(
        &self,
        _poller: &Poller,
        token: Token,
        kind: Dgram,
        dst: SocketAddr,
        _outbound: &Outbound,
    ) -> io::Result<SimDgram> {
        super::dgram::connect(self, token, kind, dst)
    }

    fn tcp_connect(
        &self,
        _poller: &Poller,
        token: Token,
        _events: EpollFlags,
        dst: SocketAddr,
        _outbound: &Outbound,
    ) -> io::Result<SimTcp> {
        let mut net = self.net.borrow_mut();
        let Some((_, peer, streams)) = net.peers.iter().find(|p| p.0 == dst).cloned() else {
            net.unknown_connects += 1;
            return Err(io::Error::from_raw_os_error(nix::libc::ENETUNREACH));
        };
        let opened_at = net.now;
        net.sockets.push(Sock::new(
            peer,
            streams,
            token,
            State::Connecting,
            opened_at,
        ));
        let id = net.sockets.len() - 1;
        Ok(SimTcp {
            net: self.net.clone(),
            id,
        })
    }

    fn tcp_accepted(
        &self,
        _poller: &Poller,
        _token: Token,
        _events: EpollFlags,
        _fd: OwnedFd,
    ) -> io::Result<SimTcp> {
        // The simulation has no kernel listeners: its forwards are opened
        // with `sim::World::forward` instead.
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }

    fn isn(&self, _key: &Key) -> Seq {
        Seq(self.net.borrow_mut().entropy.next_u64() as u32)
    }
}

/// A simulated peer connects in through a forward: the connection is
/// handed to airlock as an accepted socket would be. True if airlock
/// took it (the flow table may be full).
pub fn open_forward(
    host: &SimHost,
    stack: &mut crate::stack::Stack<SimHost>,
    key: Key,
    peer: Peer,
    streams: (u32, u32),
    tx: &mut crate::link::Tx,
    now: std::time::Instant,
) -> bool {
    let before = stack.counters.flows_opened;
    let open = |token| {
        let mut net = host.net.borrow_mut();
        let opened_at = net.now;
        net.sockets
            .push(Sock::new(peer, streams, token, State::Open, opened_at));
        Ok(SimTcp {
            net: host.net.clone(),
            id: net.sockets.len() - 1,
        })
    };
    let _ = stack.open_forwarded(key, open, tx, now);
    stack.counters.flows_opened > before
}

impl SimTcp {
    fn with<R>(&self, f: impl FnOnce(&mut Sock, &mut Vec<(Token, EpollFlags)>) -> R) -> R {
        let mut net = self.net.borrow_mut();
        let net = &mut *net;
        f(&mut net.sockets[self.id], &mut net.events)
    }
}

fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl TcpSocket for SimTcp {
    fn take_error(&self) -> i32 {
        self.with(|s, _| std::mem::take(&mut s.error))
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.with(|s, _| {
            match s.state {
                State::Connecting => return Err(err(nix::libc::EAGAIN)),
                State::Reset => return Err(err(nix::libc::ECONNRESET)),
                State::Open => {}
            }
            if s.shut_wr {
                return Err(err(nix::libc::EPIPE));
            }
            let free = s
                .peer
                .sndbuf
                .saturating_sub(s.send_memory() + WRITE_OVERHEAD);
            let n = buf.len().min(free);
            if n == 0 {
                s.nospace = true;
                return Err(err(nix::libc::EAGAIN));
            }
            if n < buf.len() {
                s.nospace = true;
            }
            for (i, &b) in buf[..n].iter().enumerate() {
                let want = pattern(s.streams.0, s.g2h_written + i as u64);
                if b != want && s.fault.is_none() {
                    s.fault = Some(format!(
                        "guest-to-host byte {} is {b:#04x}, not {want:#04x}",
                        s.g2h_written + i as u64
                    ));
                }
            }
            s.g2h_written += n as u64;
            s.overhead += WRITE_OVERHEAD;
            Ok(n)
        })
    }

    fn peek(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        self.with(|s, _| {
            match s.state {
                State::Connecting => return Err(err(nix::libc::EAGAIN)),
                State::Reset => return Err(err(nix::libc::ECONNRESET)),
                State::Open => {}
            }
            let queued = s.rcv_queued();
            if s.peek_off > queued {
                s.fault = Some(format!("peek offset {} past {queued} queued", s.peek_off));
                return Err(err(nix::libc::EINVAL));
            }
            if s.peek_off == queued {
                return if s.h2g_fin {
                    Ok(0)
                } else {
                    Err(err(nix::libc::EAGAIN))
                };
            }
            let mut got = 0;
            let base = s.h2g_discarded + s.peek_off as u64;
            let avail = queued - s.peek_off;
            for b in bufs.iter_mut() {
                for byte in b.iter_mut() {
                    if got == avail {
                        break;
                    }
                    *byte = pattern(s.streams.1, base + got as u64);
                    got += 1;
                }
            }
            s.peek_off += got;
            Ok(got)
        })
    }

    fn discard(&self, n: usize) -> io::Result<usize> {
        self.with(|s, _| {
            if s.state == State::Reset {
                return Err(err(nix::libc::ECONNRESET));
            }
            let queued = s.rcv_queued();
            if n > queued {
                s.fault = Some(format!("discarded {n} of {queued} queued bytes"));
            }
            let n = n.min(queued);
            s.h2g_discarded += n as u64;
            s.peek_off = s.peek_off.saturating_sub(n);
            Ok(n)
        })
    }

    fn set_peek_off(&self, off: i32) -> io::Result<()> {
        self.with(|s, _| {
            if off < 0 {
                return Err(err(nix::libc::EINVAL));
            }
            s.peek_off = off as usize;
            Ok(())
        })
    }

    fn set_cork(&self, on: bool) -> io::Result<()> {
        self.with(|s, _| s.cork = on);
        Ok(())
    }

    fn memory(&self) -> io::Result<crate::sys::SocketMemory> {
        Ok(self.with(|s, _| crate::sys::SocketMemory {
            rmem_alloc: s.rcv_queued(),
            rcvbuf: s.peer.rcvbuf,
            sndbuf: s.peer.sndbuf,
            wmem_queued: s.send_memory(),
        }))
    }

    fn set_rcvbuf(&self, bytes: usize) {
        // The kernel doubles the figure; the peer then fills no further.
        self.with(|s, _| s.peer.rcvbuf = s.peer.rcvbuf.min(bytes * 2));
    }

    fn shutdown_write(&self) {
        self.with(|s, _| s.shut_wr = true);
    }

    fn abort(&self) {
        self.with(|s, _| s.aborted = true);
    }

    fn rearm(&self, _poller: &Poller, token: Token, _events: EpollFlags) {
        // EPOLL_CTL_MOD looks at readiness now and reports it, and marks a
        // full socket so that freed space raises EPOLLOUT later.
        self.with(|s, events| {
            if s.state != State::Open {
                return;
            }
            let mut f = EpollFlags::empty();
            if s.writable() {
                f |= EpollFlags::EPOLLOUT;
            } else {
                s.nospace = true;
            }
            if s.rcv_queued() > s.peek_off || s.h2g_fin {
                f |= EpollFlags::EPOLLIN;
            }
            if !f.is_empty() {
                events.push((token, f));
            }
        });
    }
}

impl Drop for SimTcp {
    fn drop(&mut self) {
        if let Ok(mut net) = self.net.try_borrow_mut() {
            net.sockets[self.id].closed = true;
        }
    }
}
