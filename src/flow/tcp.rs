//! TCP translation: the guest's segments to and from a host socket's byte
//! stream, without a second TCP stack.
//!
//! Guest to host: a segment's payload is written straight into the host
//! socket and acknowledged only as far as the socket took it; the window
//! offered to the guest is what the socket can take now, so a guest sending
//! flat out is never dropped. Host to guest: data stays in the socket's
//! receive queue until the guest acknowledges it. Segments are *peeked*
//! (`SO_PEEK_OFF` walks forward) straight into frames in the link's
//! transmit queue, many per syscall, and *discarded* (`MSG_TRUNC`) on ACK.
//! Retransmission rewinds the peek offset. No per-connection buffer exists.
//!
//! Host sockets are plain TCP (protocol 0: never MPTCP or raw), written with
//! no address. `connect` always passes a whole `sockaddr_storage` (128
//! bytes, as nix does for inet addresses): longer than any `sockaddr_un`
//! (110), so no UNIX socket can be connected at runtime.
//! #syscalls: socket(0=AF_INET|AF_INET6,1&SOCK_TYPE_MASK=SOCK_STREAM,2=0)
//! #syscalls: connect(2=128) setsockopt getsockopt sendto(5=0) shutdown close

use super::forward::Listener;
use super::{nat, Ctx, Flow, Key, Table, Verdict};
use crate::config::Config;
use crate::counters::Counters;
use crate::frame::{self, L2};
use crate::poller::Token;
use crate::sys;
use crate::wire::{ip_proto, tcp as tcpw};
use nix::sys::epoll::EpollFlags;
use nix::sys::socket::{self as sock, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

pub use crate::wire::tcp::flags::{ACK, FIN, PSH, RST, SYN};

/// Our window scale: up to 8 MiB in flight from the guest.
const OUR_WS: u8 = 7;
/// At most this many of the guest's segments in flight toward airlock: a
/// tap device (or a relay through one) drops what its queue cannot hold
/// rather than push back, and at MTU 1500 a socket-sized window would be
/// thousands of frames. 256 full segments keep a 100 µs link full at
/// 30 Gbit/s.
const WINDOW_SEGMENTS: usize = 256;
/// Segments peeked per syscall.
const BATCH: usize = 64;
const RTO_MIN: Duration = Duration::from_millis(200);
const RTO_MAX: Duration = Duration::from_secs(30);
const MAX_RETRIES: u8 = 10;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After both FINs or one side gone: how long a half-dead flow may linger.
const CLOSING_TIMEOUT: Duration = Duration::from_secs(60);
/// Host socket memory one guest's flows may hold each way before each new
/// flow gets a smaller share: the first flows run with the kernel's buffer
/// autotuning, and a guest that opens thousands of flows and stalls them
/// all still holds a bounded total (docs/security.md: the worst case).
const MEMORY_BUDGET: usize = 64 << 20;
const FLOW_MEMORY_MAX: usize = 4 << 20;
const FLOW_MEMORY_MIN: usize = 128 << 10;
/// A guest that keeps its window closed this long, with data waiting for
/// it, loses the flow: its host buffer is pinned meanwhile.
const ZERO_WINDOW_TIMEOUT: Duration = Duration::from_secs(120);
/// Flows with no traffic at all for this long are dropped (the kernel's
/// keepalive on the host side finds dead peers long before).
const IDLE_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// A TCP segment from the guest, parsed by the dispatcher.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub seq: u32,
    pub ack: u32,
    /// FIN..CWR; the AE (nonce) bit is dropped.
    pub flags: u16,
    pub window: u16,
    pub mss: Option<u16>,
    pub ws: Option<u8>,
    pub ts: Option<(u32, u32)>,
    pub payload: &'a [u8],
}

impl Segment<'_> {
    /// Sequence space the segment occupies.
    fn seq_len(&self) -> u32 {
        self.payload.len() as u32 + (self.flags & SYN != 0) as u32 + (self.flags & FIN != 0) as u32
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Guest SYN seen; the host connect is in progress.
    Connecting,
    /// Host connected; our SYN-ACK is out, waiting for the guest's ACK.
    SynAckSent,
    /// A forward: our SYN is out to the guest, waiting for its SYN-ACK.
    SynSent,
    Established,
}

fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// One translated connection.
pub struct Conn {
    sock: OwnedFd,
    token: Token,
    key: Key,
    state: State,
    /// Next sequence number expected from the guest.
    rcv_nxt: u32,
    /// Our initial sequence number toward the guest.
    isn: u32,
    /// Oldest byte the guest has not acknowledged.
    snd_una: u32,
    /// Next byte to send; `snd_nxt - snd_una` is the peek offset.
    snd_nxt: u32,
    /// The guest's receive window, in bytes.
    snd_wnd: u32,
    /// Since when the guest's window has been zero (checked on ticks).
    zero_since: Option<Instant>,
    /// The host had data for the guest while its window was zero.
    host_waiting: bool,
    guest_ws: u8,
    our_ws: u8,
    /// Payload bytes per segment toward the guest.
    mss: u16,
    ts: bool,
    ts_recent: u32,
    dup_acks: u8,
    rto: Duration,
    rto_at: Option<Instant>,
    retries: u8,
    last_seen: Instant,
    /// An ACK (or window update) is owed to the guest.
    ack_pending: bool,
    /// The host socket refused data: tell the guest when it has room.
    wnd_blocked: bool,
    /// The window last offered, repeated unchanged in duplicate ACKs (a
    /// changed window would not count as a duplicate).
    last_wnd: u32,
    /// Duplicate ACKs sent for the current hole.
    dup_sent: u8,
    /// TCP_CORK is on: the guest's segments of this turn coalesce.
    corked: bool,
    /// Already on the table's end-of-turn list.
    queued: bool,
    /// Bytes the guest acknowledged that are still at the head of the
    /// socket's queue: discarded once per turn, not once per ACK.
    acked_unread: u32,
    /// The guest's ACKs opened its window this turn: send more at the end
    /// of the turn, once, instead of peeking once per ACK.
    push_pending: bool,
    /// The host sent EOF and we have peeked up to it.
    host_eof: bool,
    /// The host socket may hold data we have not peeked yet (epoll is
    /// edge-triggered: set on EPOLLIN, cleared when a peek comes up short).
    host_readable: bool,
    /// The host peer shut down writing (EPOLLRDHUP or EPOLLHUP seen): its
    /// FIN is already queued behind the data, so a short peek means EOF is
    /// next, and no further epoll edge will come to say so.
    host_shut: bool,
    fin_sent: bool,
    fin_acked: bool,
    guest_fin: bool,
    /// The guest reset or the host failed: close as soon as possible.
    dead: bool,
    /// Host memory this flow may hold each way (`flow_memory`).
    memory: usize,
    /// SO_RCVBUF set: the receive queue outgrew `memory`.
    rcvbuf_fixed: bool,
}

fn new_socket(dst: &SocketAddr) -> io::Result<OwnedFd> {
    let fam = if dst.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = sock::socket(
        fam,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    Ok(fd)
}

/// The host memory a new flow may hold each way, with `flows` open.
fn flow_memory(flows: usize) -> usize {
    (MEMORY_BUDGET / flows.max(1)).clamp(FLOW_MEMORY_MIN, FLOW_MEMORY_MAX)
}

fn tune(fd: &OwnedFd) {
    // Latency: the guest already coalesces; a second Nagle delay would add
    // up. Keepalive finds dead host peers. Buffers stay autotuned (a fixed
    // SO_RCVBUF turns autotuning off and rmem_max cuts it to 208 KiB on a
    // stock host): `Conn::bound_receive_memory` and `our_window` bound them.
    let _ = sock::setsockopt(fd, sockopt::TcpNoDelay, &true);
    let _ = sock::setsockopt(fd, sockopt::KeepAlive, &true);
    let _ = sys::set_peek_off(fd.as_fd(), 0);
}

/// RFC 6528: a 4 µs clock plus a keyed hash of the flow, the key drawn
/// once per process, so the guest cannot predict another flow's numbers.
fn isn(key: &Key) -> u32 {
    use std::hash::{BuildHasher, RandomState};
    static SECRET: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let f = SECRET.get_or_init(RandomState::new).hash_one(key);
    let m = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d.as_micros() / 4) as u32);
    m.wrapping_add(f as u32)
}

const EVENTS: EpollFlags = EpollFlags::EPOLLIN
    .union(EpollFlags::EPOLLOUT)
    .union(EpollFlags::EPOLLRDHUP)
    .union(EpollFlags::EPOLLET);

impl Conn {
    /// A guest SYN: start connecting to `host_dst` on the host.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        ctx: &mut Ctx<'_>,
        outbound: &crate::outbound::Outbound,
        token: Token,
        key: Key,
        host_dst: SocketAddr,
        syn: &Segment<'_>,
        memory: usize,
    ) -> io::Result<Conn> {
        let fd = new_socket(&host_dst)?;
        tune(&fd);
        outbound.prepare_tcp(&fd, &host_dst)?;
        match sock::connect(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &SockaddrStorage::from(host_dst),
        ) {
            Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
            Err(e) => return Err(e.into()),
        }
        ctx.poller.add(fd.as_fd(), token, EVENTS)?;
        let mut c = Conn::blank(fd, token, key, ctx.now);
        c.memory = memory;
        c.state = State::Connecting;
        c.take_syn_options(syn, ctx.mtu);
        c.rcv_nxt = syn.seq.wrapping_add(1);
        c.rto_at = Some(ctx.now + CONNECT_TIMEOUT);
        Ok(c)
    }

    /// A host connection accepted on a forward: offer it to the guest.
    pub fn accepted(
        ctx: &mut Ctx<'_>,
        token: Token,
        key: Key,
        fd: OwnedFd,
        memory: usize,
    ) -> io::Result<Conn> {
        tune(&fd);
        ctx.poller.add(fd.as_fd(), token, EVENTS)?;
        let mut c = Conn::blank(fd, token, key, ctx.now);
        c.memory = memory;
        c.state = State::SynSent;
        c.mss = mss_for(ctx.mtu, key.guest.is_ipv6());
        c.send_syn(ctx, false);
        c.rto = Duration::from_secs(1);
        c.rto_at = Some(ctx.now + c.rto);
        Ok(c)
    }

    fn blank(sock: OwnedFd, token: Token, key: Key, now: Instant) -> Conn {
        let isn = isn(&key);
        Conn {
            sock,
            token,
            key,
            state: State::Connecting,
            rcv_nxt: 0,
            isn,
            snd_una: isn,
            snd_nxt: isn,
            snd_wnd: 0,
            zero_since: None,
            host_waiting: false,
            guest_ws: 0,
            our_ws: 0,
            mss: 536,
            ts: false,
            ts_recent: 0,
            dup_acks: 0,
            rto: RTO_MIN,
            rto_at: None,
            retries: 0,
            last_seen: now,
            ack_pending: false,
            wnd_blocked: false,
            last_wnd: 0,
            dup_sent: 0,
            corked: false,
            queued: false,
            acked_unread: 0,
            push_pending: false,
            host_eof: false,
            host_readable: true,
            host_shut: false,
            fin_sent: false,
            fin_acked: false,
            guest_fin: false,
            dead: false,
            memory: FLOW_MEMORY_MIN,
            rcvbuf_fixed: false,
        }
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    /// What migrates of this flow: its endpoints and sequence numbers (the
    /// connected host socket cannot follow without TCP_REPAIR).
    pub fn migration_view(&self) -> crate::migrate::Tcp {
        crate::migrate::Tcp {
            guest: self.key.guest,
            remote: self.key.remote,
            snd_nxt: self.snd_nxt,
            rcv_nxt: self.rcv_nxt,
        }
    }

    fn take_syn_options(&mut self, s: &Segment<'_>, mtu: u16) {
        let v6 = self.key.guest.is_ipv6();
        let ours = mss_for(mtu, v6);
        self.mss = s.mss.unwrap_or(536).clamp(64, ours);
        if let Some(ws) = s.ws {
            self.guest_ws = ws.min(14);
            self.our_ws = OUR_WS;
        }
        if let Some((val, _)) = s.ts {
            self.ts = true;
            self.ts_recent = val;
            self.mss = self.mss.saturating_sub(12).max(64);
        }
        // The window in a SYN is never scaled.
        self.snd_wnd = s.window as u32;
    }

    /// Header bytes (Ethernet + IP + TCP) of a data segment.
    fn hdr_len(&self) -> usize {
        frame::l4_offset(self.key.guest.ip()) + 20 + if self.ts { 12 } else { 0 }
    }

    /// The window to offer the guest: what the host socket can take now.
    /// The kernel charges each buffer's overhead against `SO_SNDBUF` too,
    /// so offer half the free memory: with the turn's segments corked into
    /// large buffers, what we offer then always fits, and no segment the
    /// window allowed is ever refused.
    fn our_window(&mut self) -> u32 {
        let m = sys::socket_memory(self.sock.as_fd()).unwrap_or_default();
        self.bound_receive_memory(&m);
        let free = m.sndbuf.min(self.memory).saturating_sub(m.wmem_queued) / 2;
        let max = ((u16::MAX as usize) << self.our_ws).min(WINDOW_SEGMENTS * self.mss as usize);
        free.min(max) as u32
    }

    /// What the guest has not acknowledged stays unread in the receive
    /// queue, and a host peer faster than the guest fills it as far as
    /// autotuning grows it (tcp_rmem's maximum: 32 MiB seen); a guest that
    /// never opens its window would pin all of that. Past this flow's share,
    /// fix the buffer at the share: the peer then stops, and what is queued
    /// still drains.
    fn bound_receive_memory(&mut self, m: &sys::SocketMemory) {
        if !self.rcvbuf_fixed && m.rmem_alloc > self.memory {
            // The kernel doubles the figure for its overhead.
            let _ = sock::setsockopt(&self.sock, sockopt::RcvBuf, &(self.memory / 2));
            self.rcvbuf_fixed = true;
        }
    }

    /// Remember whether the window just offered was too small for the guest
    /// to send a full segment. Then the guest waits for a window update,
    /// which only an `EPOLLOUT` edge can trigger, and the kernel arms that
    /// edge only for a socket it has seen full: re-arming the registration
    /// makes it look (and set SOCK_NOSPACE) now.
    fn note_window(&mut self, ctx: &Ctx<'_>, window: u32) {
        self.last_wnd = window;
        let blocked = window < 2 * self.mss as u32 && !self.guest_fin;
        if blocked && !self.wnd_blocked {
            let _ = ctx.poller.modify(self.sock.as_fd(), self.token, EVENTS);
        }
        self.wnd_blocked = blocked;
    }

    /// Write one segment's headers into `buf` (payload already in place
    /// after them); returns the frame length.
    #[allow(clippy::too_many_arguments)]
    fn write_segment(
        &self,
        l2: &L2,
        clock_ms: u32,
        buf: &mut [u8],
        flags: u16,
        seq: u32,
        payload: usize,
        window: u32,
    ) -> usize {
        let repr = tcpw::Repr {
            src_port: self.key.remote.port(),
            dst_port: self.key.guest.port(),
            seq,
            ack: if flags & ACK != 0 { self.rcv_nxt } else { 0 },
            flags,
            window: (window >> self.our_ws).min(u16::MAX as u32) as u16,
            timestamp: self.ts.then_some((clock_ms, self.ts_recent)),
            payload_len: payload,
            ..tcpw::Repr::default()
        };
        emit(buf, l2, self.key.remote.ip(), self.key.guest.ip(), &repr)
    }

    /// A segment without payload (ACK, FIN, RST).
    fn send_flags(&mut self, ctx: &mut Ctx<'_>, flags: u16, seq: u32) {
        let window = if flags & RST != 0 {
            0
        } else {
            self.our_window()
        };
        self.send_flags_with(ctx, flags, seq, window);
    }

    fn send_flags_with(&mut self, ctx: &mut Ctx<'_>, flags: u16, seq: u32, window: u32) {
        let (l2, clock) = (*ctx.l2, ctx.clock_ms);
        let this = &*self;
        ctx.tx
            .send_with(|buf| this.write_segment(&l2, clock, buf, flags, seq, 0, window));
        if flags & RST == 0 {
            self.note_window(ctx, window);
        }
        self.ack_pending = false;
    }

    /// A segment beyond a hole: at once, a duplicate ACK with the window
    /// unchanged, so three of them make the guest retransmit the missing
    /// segment now instead of after its retransmission timeout.
    fn dup_ack(&mut self, ctx: &mut Ctx<'_>) {
        if self.dup_sent < 3 {
            self.dup_sent += 1;
            let (seq, window) = (self.snd_nxt, self.last_wnd);
            self.send_flags_with(ctx, ACK, seq, window);
        }
    }

    /// SYN (forward) or SYN-ACK (guest-initiated), with our options.
    fn send_syn(&mut self, ctx: &mut Ctx<'_>, ack: bool) {
        let v6 = self.key.guest.is_ipv6();
        let mss = mss_for(ctx.mtu, v6);
        // Forwards offer scaling and timestamps; a SYN-ACK mirrors the guest.
        let ws = !ack || self.our_ws != 0;
        let ts = !ack || self.ts;
        let repr = tcpw::Repr {
            src_port: self.key.remote.port(),
            dst_port: self.key.guest.port(),
            seq: self.isn,
            ack: if ack { self.rcv_nxt } else { 0 },
            flags: if ack { SYN | ACK } else { SYN },
            window: u16::MAX,
            mss: Some(mss),
            window_scale: ws.then_some(OUR_WS),
            timestamp: ts.then_some((ctx.clock_ms, if ack { self.ts_recent } else { 0 })),
            ..tcpw::Repr::default()
        };
        let (src, dst, l2) = (self.key.remote.ip(), self.key.guest.ip(), *ctx.l2);
        ctx.tx.send_with(|buf| emit(buf, &l2, src, dst, &repr));
        self.snd_nxt = self.isn.wrapping_add(1);
        self.snd_una = self.isn;
    }

    /// Send host data to the guest as far as its window allows.
    fn push(&mut self, ctx: &mut Ctx<'_>) -> Verdict {
        if self.state != State::Established || self.fin_sent || self.dead {
            return Verdict::Keep;
        }
        if !self.host_readable && !self.host_eof {
            return Verdict::Keep;
        }
        let hdr = self.hdr_len();
        let mss = self.mss as usize;
        let frame_len = hdr + mss;
        let mut window = None;
        let (l2, clock) = (*ctx.l2, ctx.clock_ms);
        loop {
            let in_flight = self.snd_nxt.wrapping_sub(self.snd_una);
            let avail = self.snd_wnd.saturating_sub(in_flight) as usize;
            if avail == 0 {
                // Host data queues up behind a full guest window.
                if !self.rcvbuf_fixed {
                    if let Ok(m) = sys::socket_memory(self.sock.as_fd()) {
                        self.bound_receive_memory(&m);
                    }
                }
                break;
            }
            let want = avail.div_ceil(mss).min(BATCH);
            let mut slots = ctx.tx.reserve(want, frame_len);
            let k = slots.count().min(want);
            // One peek fills the payload of up to BATCH segments in place.
            let mut iov: [IoSliceMut<'_>; BATCH] =
                std::array::from_fn(|_| IoSliceMut::new(&mut []));
            let mut asked = 0;
            for (i, frame) in slots.iter_mut().take(k).enumerate() {
                let n = mss.min(avail - i * mss);
                iov[i] = IoSliceMut::new(&mut frame[hdr..hdr + n]);
                asked += n;
            }
            let got = match sys::peek_into(self.sock.as_fd(), &mut iov[..k]) {
                Ok(0) => {
                    self.host_eof = true;
                    self.host_readable = false;
                    0
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.host_readable = false;
                    0
                }
                Err(_) => usize::MAX,
            };
            if got == usize::MAX {
                self.reset_guest(ctx);
                return Verdict::Close;
            }
            if got == 0 {
                break;
            }
            let window = *window.get_or_insert_with(|| self.our_window());
            let mut lens = [0usize; BATCH];
            let mut count = 0;
            let mut left = got;
            let mut seq = self.snd_nxt;
            for (i, frame) in slots.iter_mut().take(k).enumerate() {
                if left == 0 {
                    break;
                }
                let n = left.min(mss);
                let flags = if left == n { ACK | PSH } else { ACK };
                lens[i] = self.write_segment(&l2, clock, frame, flags, seq, n, window);
                count = i + 1;
                seq = seq.wrapping_add(n as u32);
                left -= n;
            }
            slots.commit(&lens[..count]);
            self.snd_nxt = self.snd_nxt.wrapping_add(got as u32);
            self.ack_pending = false;
            self.note_window(ctx, window);
            if got < asked {
                if self.host_shut {
                    // All data is peeked and the FIN is in: peek again to
                    // see the EOF (a 0-byte read), so our FIN goes out now.
                    continue;
                }
                self.host_readable = false;
                break;
            }
        }
        if self.host_eof && !self.fin_sent {
            let seq = self.snd_nxt;
            self.send_flags(ctx, FIN | ACK, seq);
            self.snd_nxt = self.snd_nxt.wrapping_add(1);
            self.fin_sent = true;
        }
        if self.snd_nxt != self.snd_una && self.rto_at.is_none() {
            self.rto_at = Some(ctx.now + self.rto);
        }
        Verdict::Keep
    }

    /// Go back to the oldest unacknowledged byte and send again.
    fn retransmit(&mut self, ctx: &mut Ctx<'_>) -> Verdict {
        self.snd_nxt = self.snd_una;
        self.host_readable = true;
        if self.fin_sent && !self.fin_acked {
            self.fin_sent = false;
        }
        // Peek again from the oldest unacknowledged byte, which sits behind
        // what was acknowledged this turn and not yet discarded.
        if sys::set_peek_off(self.sock.as_fd(), self.acked_unread as i32).is_err() {
            self.reset_guest(ctx);
            return Verdict::Close;
        }
        self.rto_at = None;
        self.push(ctx)
    }

    fn reset_guest(&mut self, ctx: &mut Ctx<'_>) {
        let seq = self.snd_nxt;
        self.send_flags(ctx, RST | ACK, seq);
        self.dead = true;
    }

    /// Close the host side with a reset (SO_LINGER 0), as a guest RST asks.
    fn abort_host(&mut self) {
        let _ = sock::setsockopt(
            &self.sock,
            sockopt::Linger,
            &nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            },
        );
        self.dead = true;
    }

    /// A segment from the guest for this flow.
    pub fn on_segment(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) -> Verdict {
        self.last_seen = ctx.now;
        if seg.flags & RST != 0 {
            // RFC 5961's exact-match check would need state we don't keep;
            // accept an RST inside the window we offered.
            if self.state == State::SynSent
                || seq_le(self.rcv_nxt, seg.seq)
                || seg.seq == self.rcv_nxt
            {
                self.abort_host();
                return Verdict::Close;
            }
            return Verdict::Keep;
        }
        if let Some((val, _)) = seg.ts {
            if self.ts {
                self.ts_recent = val;
            }
        }
        match self.state {
            State::Connecting => return Verdict::Keep, // a retransmitted SYN: still connecting
            State::SynAckSent => {
                if seg.flags & SYN != 0 {
                    // Our SYN-ACK was lost: send it again.
                    self.send_syn(ctx, true);
                    return Verdict::Keep;
                }
                if seg.flags & ACK == 0 || seg.ack != self.isn.wrapping_add(1) {
                    return Verdict::Keep;
                }
                self.state = State::Established;
                self.snd_una = seg.ack;
                self.snd_nxt = seg.ack;
                self.rto_at = None;
                self.rto = RTO_MIN;
                self.retries = 0;
            }
            State::SynSent => {
                if seg.flags & (SYN | ACK) != SYN | ACK || seg.ack != self.isn.wrapping_add(1) {
                    return Verdict::Keep;
                }
                self.take_syn_options(seg, ctx.mtu);
                self.rcv_nxt = seg.seq.wrapping_add(1);
                self.state = State::Established;
                self.snd_una = seg.ack;
                self.snd_nxt = seg.ack;
                self.rto_at = None;
                self.rto = RTO_MIN;
                self.retries = 0;
                let seq = self.snd_nxt;
                self.send_flags(ctx, ACK, seq);
                return self.push(ctx);
            }
            State::Established => {
                if seg.flags & SYN != 0 {
                    // A retransmitted SYN after we went established: re-ACK.
                    self.ack_pending = true;
                    return Verdict::Keep;
                }
            }
        }
        if seg.flags & ACK != 0 {
            self.on_ack(ctx, seg);
        }
        if self.dead {
            return Verdict::Close;
        }
        self.on_data(ctx, seg);
        if self.dead {
            return Verdict::Close;
        }
        if self.guest_fin && self.fin_acked {
            let _ = self.end_of_turn(ctx);
            return Verdict::Close;
        }
        self.push_pending = true;
        Verdict::Keep
    }

    fn on_ack(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
        let new_wnd = (seg.window as u32) << self.guest_ws;
        let acked = seg.ack.wrapping_sub(self.snd_una);
        let in_flight = self.snd_nxt.wrapping_sub(self.snd_una);
        if acked > 0 && acked <= in_flight {
            let fin_now_acked = self.fin_sent && seg.ack == self.snd_nxt;
            let data = acked - fin_now_acked as u32;
            self.acked_unread = self.acked_unread.wrapping_add(data);
            if fin_now_acked {
                self.fin_acked = true;
            }
            self.snd_una = seg.ack;
            self.dup_acks = 0;
            self.retries = 0;
            self.rto = RTO_MIN;
            self.rto_at = if self.snd_una == self.snd_nxt {
                None
            } else {
                Some(ctx.now + self.rto)
            };
        } else if acked == 0
            && seg.payload.is_empty()
            && seg.flags & FIN == 0
            && in_flight > 0
            && new_wnd == self.snd_wnd
        {
            self.dup_acks = self.dup_acks.saturating_add(1);
            if self.dup_acks == 3 {
                self.snd_wnd = new_wnd;
                let _ = self.retransmit(ctx);
                return;
            }
        }
        self.snd_wnd = new_wnd;
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_>, seg: &Segment<'_>) {
        let mut payload = seg.payload;
        let mut seq = seg.seq;
        if !payload.is_empty() || seg.flags & FIN != 0 {
            self.ack_pending = true;
        }
        // Trim what the host already has (a retransmission overlapping).
        if seq_lt(seq, self.rcv_nxt) {
            let dup = self.rcv_nxt.wrapping_sub(seq) as usize;
            if dup > payload.len() {
                return;
            }
            payload = &payload[dup..];
            seq = self.rcv_nxt;
        }
        if seq != self.rcv_nxt {
            // A hole (the guest's frame before this one was lost, or the
            // host socket refused part of it): drop, and duplicate ACKs make
            // the guest retransmit.
            self.dup_ack(ctx);
            return;
        }
        self.dup_sent = 0;
        if !payload.is_empty() {
            if self.guest_fin {
                return;
            }
            // Bulk data (full segments) coalesces until the end of the turn;
            // a short segment is the end of a write: it goes out at once.
            if !self.corked
                && payload.len() >= self.mss as usize
                && sys::set_cork(self.sock.as_fd(), true).is_ok()
            {
                self.corked = true;
            }
            match sock::send(
                std::os::fd::AsRawFd::as_raw_fd(&self.sock),
                payload,
                sock::MsgFlags::MSG_DONTWAIT | sock::MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(n) => {
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(n as u32);
                    if n < payload.len() {
                        self.wnd_blocked = true;
                        return;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => {
                    self.wnd_blocked = true;
                    return;
                }
                Err(_) => {
                    self.reset_guest(ctx);
                    return;
                }
            }
        }
        if seg.flags & FIN != 0 && !self.guest_fin {
            self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
            self.guest_fin = true;
            let _ = sock::shutdown(
                std::os::fd::AsRawFd::as_raw_fd(&self.sock),
                sock::Shutdown::Write,
            );
        }
    }

    /// The end of a loop turn for a flow that heard from the guest: drop
    /// what it acknowledged from the socket, release corked data, send what
    /// its window now allows, and the ACK it is owed if no data carried it.
    pub fn end_of_turn(&mut self, ctx: &mut Ctx<'_>) -> Verdict {
        self.queued = false;
        if self.acked_unread > 0 {
            let n = std::mem::take(&mut self.acked_unread) as usize;
            if sys::recv_discard(self.sock.as_fd(), n).is_err() {
                self.reset_guest(ctx);
                return Verdict::Close;
            }
        }
        if self.corked {
            // Release what this turn's segments left in a partial frame.
            let _ = sys::set_cork(self.sock.as_fd(), false);
            self.corked = false;
        }
        if std::mem::take(&mut self.push_pending) && self.push(ctx) == Verdict::Close {
            return Verdict::Close;
        }
        if self.ack_pending && !self.dead && self.state == State::Established {
            let seq = self.snd_nxt;
            self.send_flags(ctx, ACK, seq);
        }
        if self.dead {
            Verdict::Close
        } else {
            Verdict::Keep
        }
    }

    /// Whether this flow must go on the end-of-turn list: it owes the
    /// guest an ACK (or the host an uncork) and is not listed yet. Listing
    /// it once per turn keeps the list as short as the flows that spoke.
    pub fn wants_ack(&mut self) -> bool {
        let want = (self.ack_pending || self.corked || self.acked_unread > 0 || self.push_pending)
            && !self.queued;
        self.queued |= want;
        want
    }

    /// An event on the host socket.
    pub fn on_host_event(&mut self, ctx: &mut Ctx<'_>, ev: EpollFlags) -> Verdict {
        self.last_seen = ctx.now;
        if self.state == State::Connecting {
            if !ev.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
                return Verdict::Keep;
            }
            let err = sock::getsockopt(&self.sock, sockopt::SocketError).unwrap_or(nix::libc::EIO);
            if err != 0 {
                // Refused or unreachable: the guest's connect fails at once.
                self.send_rst_for_syn(ctx);
                return Verdict::Close;
            }
            self.state = State::SynAckSent;
            self.send_syn(ctx, true);
            self.rto = Duration::from_secs(1);
            self.rto_at = Some(ctx.now + self.rto);
            return Verdict::Keep;
        }
        if ev.contains(EpollFlags::EPOLLERR) {
            let err = sock::getsockopt(&self.sock, sockopt::SocketError).unwrap_or(0);
            if err != 0 {
                self.reset_guest(ctx);
                return Verdict::Close;
            }
        }
        if ev.contains(EpollFlags::EPOLLIN) && self.snd_wnd == 0 {
            self.host_waiting = true;
        }
        if ev.contains(EpollFlags::EPOLLOUT) && self.wnd_blocked && self.state == State::Established
        {
            // The host socket drained: tell the guest it may send again.
            self.ack_pending = true;
        }
        if ev.intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP) {
            self.host_shut = true;
        }
        if ev.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP) {
            self.host_readable = true;
            let v = self.push(ctx);
            if v == Verdict::Close || self.dead {
                return Verdict::Close;
            }
        }
        Verdict::Keep
    }

    fn send_rst_for_syn(&mut self, ctx: &mut Ctx<'_>) {
        let (l2, clock) = (*ctx.l2, ctx.clock_ms);
        let this = &*self;
        let seq = this.isn.wrapping_add(1);
        ctx.tx
            .send_with(|buf| this.write_segment(&l2, clock, buf, RST | ACK, seq, 0, 0));
        self.dead = true;
    }

    /// Timers: retransmission, handshakes, idle flows.
    pub fn on_tick(&mut self, ctx: &mut Ctx<'_>) -> Verdict {
        if self.dead {
            return Verdict::Close;
        }
        let idle = ctx.now.saturating_duration_since(self.last_seen);
        let shut = if self.state == State::Established && self.snd_wnd == 0 {
            let since = *self.zero_since.get_or_insert(ctx.now);
            let pinned = self.host_waiting || self.snd_nxt != self.snd_una;
            pinned && ctx.now.saturating_duration_since(since) > ZERO_WINDOW_TIMEOUT
        } else {
            self.zero_since = None;
            self.host_waiting = false;
            false
        };
        if shut
            || (self.guest_fin || self.fin_sent) && idle > CLOSING_TIMEOUT
            || idle > IDLE_TIMEOUT
        {
            self.reset_guest(ctx);
            self.abort_host();
            return Verdict::Close;
        }
        let Some(at) = self.rto_at else {
            return Verdict::Keep;
        };
        if ctx.now < at {
            return Verdict::Keep;
        }
        match self.state {
            State::Connecting => {
                self.send_rst_for_syn(ctx);
                return Verdict::Close;
            }
            State::SynAckSent | State::SynSent => {
                if idle > HANDSHAKE_TIMEOUT {
                    if self.state == State::SynAckSent {
                        self.reset_guest(ctx);
                    }
                    self.abort_host();
                    return Verdict::Close;
                }
                self.send_syn(ctx, self.state == State::SynAckSent);
                self.rto = (self.rto * 2).min(RTO_MAX);
                self.rto_at = Some(ctx.now + self.rto);
                return Verdict::Keep;
            }
            State::Established => {}
        }
        self.retries += 1;
        if self.retries > MAX_RETRIES {
            self.reset_guest(ctx);
            self.abort_host();
            return Verdict::Close;
        }
        self.rto = (self.rto * 2).min(RTO_MAX);
        self.retransmit(ctx)
    }
}

/// Payload per segment the link carries for this family.
/// A segment from the guest: to its flow; a SYN opens one (answered once
/// the host connect completes); anything else, or a refusal, gets an RST.
/// Returns the flow's token when it owes the guest an ACK this turn.
pub fn on_guest_segment(
    table: &mut Table,
    ctx: &mut Ctx<'_>,
    cfg: &Config,
    counters: &mut Counters,
    key: Key,
    seg: &Segment<'_>,
) {
    if let Some(i) = table.lookup(&key) {
        let Some((token, Flow::Tcp(conn))) = table.at(i) else {
            return;
        };
        let verdict = conn.on_segment(ctx, seg);
        let wants_ack = conn.wants_ack();
        if verdict == Verdict::Close {
            table.settle(token, verdict, counters);
        } else if wants_ack {
            table.defer(token);
        }
        return;
    }
    if seg.flags & (SYN | ACK | RST) != SYN {
        reply_rst(ctx, &key, seg);
        return;
    }
    let Some(host_dst) = nat::outbound(cfg, key.remote) else {
        counters.tcp_refused += 1;
        reply_rst(ctx, &key, seg);
        return;
    };
    let Ok(token) = table.vacant() else {
        counters.flows_full += 1;
        reply_rst(ctx, &key, seg);
        return;
    };
    let memory = flow_memory(table.len() + 1);
    match Conn::connect(ctx, &cfg.outbound, token, key, host_dst, seg, memory) {
        Ok(conn) => {
            table.insert(token, key, Flow::Tcp(conn));
            counters.flows_opened += 1;
        }
        Err(e) => {
            log::debug!("tcp {} -> {host_dst}: {e}", key.guest);
            counters.tcp_refused += 1;
            reply_rst(ctx, &key, seg);
        }
    }
}

/// A TCP forward's socket is readable: accept what waits (a bounded batch
/// per event, so one busy forward cannot starve the loop) and open a flow
/// for each connection.
#[allow(clippy::too_many_arguments)]
pub fn on_accept(
    table: &mut Table,
    ctx: &mut Ctx<'_>,
    cfg: &Config,
    counters: &mut Counters,
    listener: &Listener,
    i: u32,
    guest6: Option<Ipv6Addr>,
) {
    for _ in 0..32 {
        let (fd, peer) = match listener.accept() {
            Ok(Some(c)) => c,
            Ok(None) => break,
            Err(e) => {
                log::debug!("accept on forward {i}: {e}");
                counters.forward_accept_failed += 1;
                break;
            }
        };
        let Some(key) = listener.key(cfg, guest6, peer) else {
            counters.forward_accept_failed += 1;
            continue;
        };
        if table.lookup(&key).is_some() {
            counters.forward_accept_failed += 1;
            continue;
        }
        let Ok(token) = table.vacant() else {
            counters.flows_full += 1;
            continue;
        };
        match Conn::accepted(ctx, token, key, fd, flow_memory(table.len() + 1)) {
            Ok(c) => {
                table.insert(token, key, Flow::Tcp(c));
                counters.flows_opened += 1;
            }
            Err(e) => {
                log::debug!("forward {i}: {e}");
                counters.forward_accept_failed += 1;
            }
        }
    }
}

/// Ethernet, IP and TCP headers of `repr` from `src` to `dst`, in front of
/// the payload already in place after them; returns the frame length (0
/// if it does not fit).
fn emit(buf: &mut [u8], l2: &L2, src: IpAddr, dst: IpAddr, repr: &tcpw::Repr) -> usize {
    let hl = tcpw::HEADER_LEN + if repr.timestamp.is_some() { 12 } else { 0 };
    // Only SYNs carry more options than timestamps: count them exactly.
    let hl = if repr.mss.is_some() {
        repr.header_len()
    } else {
        hl
    };
    let tcp_len = hl + repr.payload_len;
    let off = frame::write_ip(buf, l2, src, dst, ip_proto::TCP, tcp_len, 64);
    let Some(pseudo) = frame::pseudo(src, dst).filter(|_| off != 0) else {
        return 0;
    };
    match repr.emit(&mut buf[off..], &pseudo) {
        Ok(n) => off + n,
        Err(_) => 0,
    }
}

pub fn mss_for(mtu: u16, v6: bool) -> u16 {
    mtu.saturating_sub(if v6 { 60 } else { 40 })
}

/// Answer a segment that matches no flow, as a host with no such
/// connection would (RFC 793 "reset generation").
/// A flow that did not follow a migration: reset it toward the guest with
/// the sequence number the guest expects next, so nothing there hangs.
pub fn reset_migrated(ctx: &mut Ctx<'_>, t: &crate::migrate::Tcp) {
    let repr = tcpw::Repr {
        src_port: t.remote.port(),
        dst_port: t.guest.port(),
        seq: t.snd_nxt,
        ack: t.rcv_nxt,
        flags: RST | ACK,
        ..tcpw::Repr::default()
    };
    let (src, dst, l2) = (t.remote.ip(), t.guest.ip(), *ctx.l2);
    ctx.tx.send_with(|buf| emit(buf, &l2, src, dst, &repr));
}

pub fn reply_rst(ctx: &mut Ctx<'_>, key: &Key, seg: &Segment<'_>) {
    if seg.flags & RST != 0 {
        return;
    }
    let (seq, ack, flags) = if seg.flags & ACK != 0 {
        (seg.ack, 0, RST)
    } else {
        (0, seg.seq.wrapping_add(seg.seq_len()), RST | ACK)
    };
    let repr = tcpw::Repr {
        src_port: key.remote.port(),
        dst_port: key.guest.port(),
        seq,
        ack,
        flags,
        ..tcpw::Repr::default()
    };
    let (src, dst, l2) = (key.remote.ip(), key.guest.ip(), *ctx.l2);
    ctx.tx.send_with(|buf| emit(buf, &l2, src, dst, &repr));
}
