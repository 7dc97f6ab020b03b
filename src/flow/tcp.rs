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
//! The host socket is reached through [`super::host`]'s seam, so the same
//! code runs against the kernel and against the simulator.

use super::forward::Listener;
use super::host::{Host, Kernel, TcpSocket};
use super::seq::Seq;
use super::{nat, Ctx, Flow, Held, Key, Table, Verdict};
use crate::config::Config;
use crate::counters::Counters;
use crate::frame::{self, L2};
use crate::link::PartialCsum;
use crate::poller::Token;
use crate::sys::SocketMemory;
use crate::wire::checksum::Checksum;
use crate::wire::{ip_proto, tcp as tcpw};
use nix::sys::epoll::EpollFlags;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
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
/// After both FINs: how long a flow waits for the last ACK. A half-closed
/// flow quiet this long is probed instead (its open direction may sit in
/// retransmission backoff, 60 s and more, or simply be quiet): a guest
/// that still has the connection answers with an ACK, one that lost it
/// with an RST, and no answer to `HALF_CLOSED_PROBES` ends it.
const CLOSING_TIMEOUT: Duration = Duration::from_secs(60);
/// Six probes 15 s apart: 150 s unanswered, past Linux's longest RTO
/// (120 s), and six lost in a row is rare even on a bad link.
const HALF_CLOSED_PROBES: u8 = 6;
const HALF_CLOSED_PROBE_INTERVAL: Duration = Duration::from_secs(15);
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
    pub seq: Seq,
    pub ack: Seq,
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

/// What airlock knows of the host socket's side of the flow.
#[derive(Debug, Default, Clone, Copy)]
struct HostSide {
    /// The socket may hold data we have not peeked yet (epoll is
    /// edge-triggered: set on EPOLLIN, cleared when a peek comes up short).
    readable: bool,
    /// The host peer shut down writing (EPOLLRDHUP or EPOLLHUP seen): its
    /// FIN is already queued behind the data, so a short peek means EOF is
    /// next, and no further epoll edge will come to say so.
    shut: bool,
    /// The host sent EOF and we have peeked up to it.
    eof: bool,
    /// The socket refused data: tell the guest when it has room.
    full: bool,
    /// The host had data for the guest while its window was zero.
    waiting: bool,
}

/// Work the flow owes at the end of this loop turn ([`Conn::end_of_turn`]).
#[derive(Debug, Default, Clone, Copy)]
struct TurnWork {
    /// An ACK (or window update) is owed to the guest.
    ack: bool,
    /// The guest's ACKs opened its window this turn: send more at the end
    /// of the turn, once, instead of peeking once per ACK.
    push: bool,
    /// TCP_CORK is on: the guest's segments of this turn coalesce.
    cork: bool,
    /// Already on the table's end-of-turn list.
    queued: bool,
}

/// How far the flow is toward its end.
#[derive(Debug, Default, Clone, Copy)]
struct Ending {
    /// Our FIN (the host's EOF) is out to the guest.
    fin_sent: bool,
    fin_acked: bool,
    /// The guest's FIN arrived (and the host socket is shut for writing).
    guest_fin: bool,
    /// The guest reset or the host failed: close as soon as possible.
    dead: bool,
}

/// One translated connection.
pub struct Conn<H: Host = Kernel> {
    sock: H::Tcp,
    token: Token,
    key: Key,
    state: State,
    /// Next sequence number expected from the guest, as far as the host
    /// socket has taken it (what we acknowledge).
    rcv_nxt: Seq,
    /// In-order payload after `rcv_nxt` held until the receive batch ends
    /// ([`Held`]); the next segment expected starts after it.
    held: u32,
    /// Our initial sequence number toward the guest.
    isn: Seq,
    /// Oldest byte the guest has not acknowledged.
    snd_una: Seq,
    /// Next byte to send; `snd_nxt - snd_una` is the peek offset.
    snd_nxt: Seq,
    /// The guest's receive window, in bytes.
    snd_wnd: u32,
    /// Since when the guest's window has been zero (checked on ticks).
    zero_since: Option<Instant>,
    guest_ws: u8,
    our_ws: u8,
    /// Payload bytes per segment toward the guest.
    mss: u16,
    /// Timestamps (RFC 7323) were negotiated.
    ts: bool,
    ts_recent: u32,
    dup_acks: u8,
    rto: Duration,
    rto_at: Option<Instant>,
    retries: u8,
    last_seen: Instant,
    /// The window last offered, repeated unchanged in duplicate ACKs (a
    /// changed window would not count as a duplicate).
    last_wnd: u32,
    /// Duplicate ACKs sent for the current hole.
    dup_sent: u8,
    /// Bytes the guest acknowledged that are still at the head of the
    /// socket's queue: discarded once per turn, not once per ACK.
    acked_unread: u32,
    host: HostSide,
    turn: TurnWork,
    end: Ending,
    /// Host memory this flow may hold each way (`flow_memory`).
    memory: usize,
    /// SO_RCVBUF set: the receive queue outgrew `memory`.
    rcvbuf_fixed: bool,
    /// Probes sent to a quiet half-closed flow's guest since it was heard.
    probes: u8,
}

/// The host memory a new flow may hold each way, with `flows` open.
fn flow_memory(flows: usize) -> usize {
    (MEMORY_BUDGET / flows.max(1)).clamp(FLOW_MEMORY_MIN, FLOW_MEMORY_MAX)
}

const EVENTS: EpollFlags = EpollFlags::EPOLLIN
    .union(EpollFlags::EPOLLOUT)
    .union(EpollFlags::EPOLLRDHUP)
    .union(EpollFlags::EPOLLET);

impl<H: Host> Conn<H> {
    /// A guest SYN: start connecting to `host_dst` on the host.
    #[allow(clippy::too_many_arguments)]
    pub fn connect(
        ctx: &mut Ctx<'_, H>,
        outbound: &crate::outbound::Outbound,
        token: Token,
        key: Key,
        host_dst: SocketAddr,
        syn: &Segment<'_>,
        memory: usize,
    ) -> io::Result<Self> {
        let sock = ctx
            .host
            .tcp_connect(ctx.poller, token, EVENTS, host_dst, outbound)?;
        let mut c = Conn::blank(sock, token, key, ctx.host.isn(&key), ctx.now);
        c.memory = memory;
        c.state = State::Connecting;
        c.take_syn_options(syn, ctx.mtu);
        c.rcv_nxt = syn.seq + 1;
        c.rto_at = Some(ctx.now + CONNECT_TIMEOUT);
        Ok(c)
    }

    /// A host connection accepted on a forward: offer it to the guest.
    /// `sock` is registered under `token` already.
    fn accepted(ctx: &mut Ctx<'_, H>, token: Token, key: Key, sock: H::Tcp, memory: usize) -> Self {
        let mut c = Conn::blank(sock, token, key, ctx.host.isn(&key), ctx.now);
        c.memory = memory;
        c.state = State::SynSent;
        c.mss = mss_for(ctx.mtu, key.guest.is_ipv6());
        c.send_syn(ctx, false);
        c.rto = Duration::from_secs(1);
        c.rto_at = Some(ctx.now + c.rto);
        c
    }

    fn blank(sock: H::Tcp, token: Token, key: Key, isn: Seq, now: Instant) -> Self {
        Conn {
            sock,
            token,
            key,
            state: State::Connecting,
            rcv_nxt: Seq(0),
            held: 0,
            isn,
            snd_una: isn,
            snd_nxt: isn,
            snd_wnd: 0,
            zero_since: None,
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
            last_wnd: 0,
            dup_sent: 0,
            acked_unread: 0,
            // Data may be waiting before the first edge is seen.
            host: HostSide {
                readable: true,
                ..HostSide::default()
            },
            turn: TurnWork::default(),
            end: Ending::default(),
            memory: FLOW_MEMORY_MIN,
            rcvbuf_fixed: false,
            probes: 0,
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
            snd_nxt: self.snd_nxt.0,
            rcv_nxt: self.rcv_nxt.0,
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
        let m = self.sock.memory().unwrap_or_default();
        self.bound_receive_memory(&m);
        let free = m.sndbuf.min(self.memory).saturating_sub(m.wmem_queued) / 2;
        let max = ((u16::MAX as usize) << self.our_ws).min(WINDOW_SEGMENTS * self.mss as usize);
        free.min(max) as u32
    }

    /// What the guest has not acknowledged stays unread in the receive
    /// queue, and a host peer faster than the guest fills it as far as
    /// autotuning grows the buffer (tcp_rmem's maximum: 32 MiB seen); a
    /// guest that never opens its window would pin all of that. Once
    /// autotuning has taken the buffer past half this flow's share, lock it
    /// where it is (`SO_RCVBUF`): the peer then stops at the share, and
    /// nothing it was already allowed to send is dropped. Shrinking the
    /// buffer under a queue the window admitted makes the kernel prune and
    /// collapse the queue and drop what is in flight, so that is done only
    /// when nothing else bounds it: a queue past the share on a host whose
    /// `rmem_max` cannot hold the buffer where it is (208 KiB on a stock
    /// host, where `SO_RCVBUF` cuts the buffer to twice that).
    fn bound_receive_memory(&mut self, m: &SocketMemory) {
        if self.rcvbuf_fixed {
            return;
        }
        let keep = m.rcvbuf.min(self.memory);
        if m.rcvbuf >= self.memory / 2 && keep <= 2 * crate::sys::rmem_max() {
            // The kernel doubles the figure for its overhead.
            self.sock.set_rcvbuf(keep / 2);
            self.rcvbuf_fixed = true;
        } else if m.rmem_alloc > self.memory {
            self.sock.set_rcvbuf(self.memory / 2);
            self.rcvbuf_fixed = true;
        }
    }

    /// Remember whether the window just offered was too small for the guest
    /// to send a full segment. Then the guest waits for a window update,
    /// which only an `EPOLLOUT` edge can trigger, and the kernel arms that
    /// edge only for a socket it has seen full: re-arming the registration
    /// makes it look (and set SOCK_NOSPACE) now.
    fn note_window(&mut self, ctx: &Ctx<'_, H>, window: u32) {
        self.last_wnd = window;
        let blocked = window < 2 * self.mss as u32 && !self.end.guest_fin;
        if blocked && !self.host.full {
            self.sock.rearm(ctx.poller, self.token, EVENTS);
        }
        self.host.full = blocked;
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
        seq: Seq,
        payload: usize,
        window: u32,
        csum: Checksum,
    ) -> usize {
        let repr = tcpw::Repr {
            src_port: self.key.remote.port(),
            dst_port: self.key.guest.port(),
            seq: seq.0,
            ack: if flags & ACK != 0 { self.rcv_nxt.0 } else { 0 },
            flags,
            window: (window >> self.our_ws).min(u16::MAX as u32) as u16,
            timestamp: self.ts.then_some((clock_ms, self.ts_recent)),
            payload_len: payload,
            ..tcpw::Repr::default()
        };
        emit(
            buf,
            l2,
            self.key.remote.ip(),
            self.key.guest.ip(),
            &repr,
            csum,
        )
    }

    /// A segment without payload (ACK, FIN, RST).
    fn send_flags(&mut self, ctx: &mut Ctx<'_, H>, flags: u16, seq: Seq) {
        let window = if flags & RST != 0 {
            0
        } else {
            self.our_window()
        };
        self.send_flags_with(ctx, flags, seq, window);
    }

    fn send_flags_with(&mut self, ctx: &mut Ctx<'_, H>, flags: u16, seq: Seq, window: u32) {
        let (l2, clock) = (*ctx.l2, ctx.clock_ms);
        let this = &*self;
        ctx.tx.send_with(|buf| {
            this.write_segment(&l2, clock, buf, flags, seq, 0, window, Checksum::Full)
        });
        if flags & RST == 0 {
            self.note_window(ctx, window);
        }
        self.turn.ack = false;
    }

    /// A segment beyond a hole: at once, a duplicate ACK with the window
    /// unchanged, so three of them make the guest retransmit the missing
    /// segment now instead of after its retransmission timeout.
    fn dup_ack(&mut self, ctx: &mut Ctx<'_, H>) {
        if self.dup_sent < 3 {
            self.dup_sent += 1;
            let (seq, window) = (self.snd_nxt, self.last_wnd);
            self.send_flags_with(ctx, ACK, seq, window);
        }
    }

    /// SYN (forward) or SYN-ACK (guest-initiated), with our options.
    fn send_syn(&mut self, ctx: &mut Ctx<'_, H>, ack: bool) {
        let v6 = self.key.guest.is_ipv6();
        let mss = mss_for(ctx.mtu, v6);
        // Forwards offer scaling and timestamps; a SYN-ACK mirrors the guest.
        let ws = !ack || self.our_ws != 0;
        let ts = !ack || self.ts;
        let repr = tcpw::Repr {
            src_port: self.key.remote.port(),
            dst_port: self.key.guest.port(),
            seq: self.isn.0,
            ack: if ack { self.rcv_nxt.0 } else { 0 },
            flags: if ack { SYN | ACK } else { SYN },
            window: u16::MAX,
            mss: Some(mss),
            window_scale: ws.then_some(OUR_WS),
            timestamp: ts.then_some((ctx.clock_ms, if ack { self.ts_recent } else { 0 })),
            ..tcpw::Repr::default()
        };
        let (src, dst, l2) = (self.key.remote.ip(), self.key.guest.ip(), *ctx.l2);
        ctx.tx
            .send_with(|buf| emit(buf, &l2, src, dst, &repr, Checksum::Full));
        self.snd_nxt = self.isn + 1;
        self.snd_una = self.isn;
    }

    /// Send host data to the guest as far as its window allows.
    fn push(&mut self, ctx: &mut Ctx<'_, H>) -> Verdict {
        if self.state != State::Established || self.end.fin_sent || self.end.dead {
            return Verdict::Keep;
        }
        if !self.host.readable && !self.host.eof {
            return Verdict::Keep;
        }
        if self.snd_nxt == self.snd_una {
            // Nothing in flight: a timer still set is the persist timer.
            self.rto_at = None;
        }
        let hdr = self.hdr_len();
        let mss = ctx.tx.tcp_segment(self.mss as usize, hdr);
        let frame_len = hdr + mss;
        // Data segments only: the pass over the payload is what it saves.
        let csum = ctx.tx.checksum();
        let partial = (csum == Checksum::Partial)
            .then(|| PartialCsum::tcp(frame::l4_offset(self.key.guest.ip())));
        let mut window = None;
        let (l2, clock) = (*ctx.l2, ctx.clock_ms);
        loop {
            let in_flight = self.snd_nxt - self.snd_una;
            let avail = self.snd_wnd.saturating_sub(in_flight) as usize;
            if avail == 0 {
                if in_flight == 0 && self.rto_at.is_none() {
                    // Persist timer (RFC 9293 3.8.6.1): the guest's window
                    // update may be lost, and nothing else would ask.
                    self.rto_at = Some(ctx.now + self.rto);
                }
                // Host data queues up behind a full guest window.
                if !self.rcvbuf_fixed {
                    if let Ok(m) = self.sock.memory() {
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
            let got = match self.sock.peek(&mut iov[..k]) {
                Ok(0) => {
                    self.host.eof = true;
                    self.host.shut = true;
                    self.host.readable = false;
                    0
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.host.readable = false;
                    0
                }
                Err(_) => usize::MAX,
            };
            if got == usize::MAX {
                drop(slots);
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
                lens[i] = self.write_segment(&l2, clock, frame, flags, seq, n, window, csum);
                count = i + 1;
                seq += n as u32;
                left -= n;
            }
            slots.commit_with(&lens[..count], partial);
            self.snd_nxt += got as u32;
            self.turn.ack = false;
            self.note_window(ctx, window);
            if got < asked {
                if self.host.shut {
                    // All data is peeked and the FIN is in: peek again to
                    // see the EOF (a 0-byte read), so our FIN goes out now.
                    continue;
                }
                self.host.readable = false;
                break;
            }
        }
        if self.host.eof && !self.end.fin_sent {
            let seq = self.snd_nxt;
            self.send_flags(ctx, FIN | ACK, seq);
            self.snd_nxt += 1;
            self.end.fin_sent = true;
        }
        if self.snd_nxt != self.snd_una && self.rto_at.is_none() {
            self.rto_at = Some(ctx.now + self.rto);
        }
        Verdict::Keep
    }

    /// Go back to the oldest unacknowledged byte and send again.
    fn retransmit(&mut self, ctx: &mut Ctx<'_, H>) -> Verdict {
        self.snd_nxt = self.snd_una;
        self.host.readable = true;
        if self.end.fin_sent && !self.end.fin_acked {
            self.end.fin_sent = false;
            // The EOF lies ahead again: a FIN sent before the data is
            // re-peeked (a zero window holds it) would cut the stream
            // short at snd_una (found by the sim).
            self.host.eof = false;
        }
        // Peek again from the oldest unacknowledged byte, which sits behind
        // what was acknowledged this turn and not yet discarded.
        if self.sock.set_peek_off(self.acked_unread as i32).is_err() {
            self.reset_guest(ctx);
            return Verdict::Close;
        }
        self.rto_at = None;
        self.push(ctx)
    }

    /// An ACK one byte behind what the guest has acknowledged (as Linux's
    /// `tcp_xmit_probe_skb`): a guest with the connection must answer with
    /// an ACK and its window, one without it with an RST.
    fn probe(&mut self, ctx: &mut Ctx<'_, H>) {
        let seq = Seq(self.snd_una.0.wrapping_sub(1));
        self.send_flags(ctx, ACK, seq);
    }

    /// A zero-window probe, backing off; `ZERO_WINDOW_TIMEOUT` ends it.
    fn probe_window(&mut self, ctx: &mut Ctx<'_, H>) {
        self.probe(ctx);
        self.rto = (self.rto * 2).min(RTO_MAX);
        self.rto_at = Some(ctx.now + self.rto);
    }

    fn reset_guest(&mut self, ctx: &mut Ctx<'_, H>) {
        let seq = self.snd_nxt;
        self.send_flags(ctx, RST | ACK, seq);
        self.end.dead = true;
    }

    /// Close the host side with a reset (SO_LINGER 0), as a guest RST asks.
    fn abort_host(&mut self) {
        self.sock.abort();
        self.end.dead = true;
    }

    /// A segment from the guest for this flow.
    pub fn on_segment(&mut self, ctx: &mut Ctx<'_, H>, seg: &Segment<'_>) -> Verdict {
        self.last_seen = ctx.now;
        self.probes = 0;
        if seg.flags & RST != 0 {
            // RFC 5961's exact-match check would need state we don't keep;
            // accept an RST inside the window we offered.
            if self.state == State::SynSent || self.rcv_nxt <= seg.seq || seg.seq == self.rcv_nxt {
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
                if seg.flags & ACK == 0 || seg.ack != self.isn + 1 {
                    return Verdict::Keep;
                }
                self.state = State::Established;
                self.snd_una = seg.ack;
                self.snd_nxt = seg.ack;
                self.rto_at = None;
                self.rto = RTO_MIN;
                self.retries = 0;
                // Duplicate ACKs repeat the last window offered: before
                // any was, it must not read as zero (found by the sim).
                self.last_wnd = self.our_window();
            }
            State::SynSent => {
                if seg.flags & (SYN | ACK) != SYN | ACK || seg.ack != self.isn + 1 {
                    return Verdict::Keep;
                }
                self.take_syn_options(seg, ctx.mtu);
                self.rcv_nxt = seg.seq + 1;
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
                    self.turn.ack = true;
                    return Verdict::Keep;
                }
            }
        }
        if seg.flags & ACK != 0 {
            self.on_ack(ctx, seg);
        }
        if self.end.dead {
            return Verdict::Close;
        }
        self.on_data(ctx, seg);
        if self.end.dead {
            return Verdict::Close;
        }
        if self.end.guest_fin && self.end.fin_acked {
            let _ = self.end_of_turn(ctx);
            return Verdict::Close;
        }
        self.turn.push = true;
        Verdict::Keep
    }

    fn on_ack(&mut self, ctx: &mut Ctx<'_, H>, seg: &Segment<'_>) {
        if seg.ack < self.snd_una {
            // An old ACK, overtaken (RFC 9293 3.10.7.4: ignore it): its
            // window is stale too, and a zero one would stall the flow.
            return;
        }
        let new_wnd = (seg.window as u32) << self.guest_ws;
        let acked = seg.ack - self.snd_una;
        let in_flight = self.snd_nxt - self.snd_una;
        if acked > 0 && acked <= in_flight {
            let fin_now_acked = self.end.fin_sent && seg.ack == self.snd_nxt;
            let data = acked - fin_now_acked as u32;
            self.acked_unread = self.acked_unread.wrapping_add(data);
            if fin_now_acked {
                self.end.fin_acked = true;
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
        if self.snd_wnd == 0 && new_wnd != 0 && in_flight == 0 {
            // The window reopened: the probes' backoff is over.
            self.rto = RTO_MIN;
        }
        self.snd_wnd = new_wnd;
    }

    fn on_data(&mut self, ctx: &mut Ctx<'_, H>, seg: &Segment<'_>) {
        let mut payload = seg.payload;
        let mut seq = seg.seq;
        let next = self.rcv_nxt + self.held;
        if !payload.is_empty() || seg.flags & FIN != 0 {
            self.turn.ack = true;
        }
        // Trim what the host already has (a retransmission overlapping).
        if seq < next {
            let dup = (next - seq) as usize;
            if dup > payload.len() {
                // Wholly old (a keepalive probe, a segment whose ACK was
                // lost): RFC 9293 3.10.7.4 answers it with an ACK, or the
                // guest retransmits until it gives up (found by the sim).
                self.turn.ack = true;
                return;
            }
            payload = &payload[dup..];
            seq = next;
        }
        if seq != next {
            // A hole (the guest's frame before this one was lost, or the
            // host socket refused part of it): drop, and duplicate ACKs make
            // the guest retransmit. Not for a pure ACK (RFC 5681 counts
            // segments with data): after a lost FIN, acking each of the
            // guest's later ACKs drove smoltcp into a fast retransmit of a
            // bare FIN, which it never sends (found by the sim).
            if seg.seq_len() != 0 {
                self.dup_ack(ctx);
            }
            return;
        }
        self.dup_sent = 0;
        if !payload.is_empty() {
            if self.end.guest_fin {
                return;
            }
            // Bulk data (full segments) coalesces until the end of the turn;
            // a short segment is the end of a write: it goes out at once.
            if !self.turn.cork
                && payload.len() >= self.mss as usize
                && self.sock.set_cork(true).is_ok()
            {
                self.turn.cork = true;
            }
            if seg.flags & FIN == 0 && self.hold(ctx, payload) {
                return;
            }
            if !self.write_held(ctx) {
                return;
            }
            match self.sock.send(payload) {
                Ok(n) => {
                    self.rcv_nxt += n as u32;
                    if n < payload.len() {
                        self.host.full = true;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.host.full = true;
                    return;
                }
                Err(_) => {
                    self.reset_guest(ctx);
                    return;
                }
            }
        }
        if seg.flags & FIN != 0 && !self.end.guest_fin {
            if !self.write_held(ctx) {
                return;
            }
            self.rcv_nxt += 1;
            self.end.guest_fin = true;
            self.sock.shutdown_write();
        }
    }

    /// Keep `payload` in the link's receive batch, to be written with the
    /// flow's other segments of the batch ([`Held`]).
    fn hold(&mut self, ctx: &mut Ctx<'_, H>, payload: &[u8]) -> bool {
        let (Some(batch), Some(held)) = (ctx.batch, ctx.held.as_deref_mut()) else {
            return false;
        };
        if !held.hold(self.token, batch, payload) {
            return false;
        }
        self.held += payload.len() as u32;
        true
    }

    /// Write what this flow holds in one `sendmsg`; `false` if the host
    /// socket did not take all of it (or failed), so that nothing after it
    /// is written out of order.
    pub fn write_held(&mut self, ctx: &mut Ctx<'_, H>) -> bool {
        let total = std::mem::take(&mut self.held) as usize;
        let (Some(batch), Some(held)) = (ctx.batch, ctx.held.as_deref_mut()) else {
            return true;
        };
        let mut iov = [IoSlice::new(&[]); Held::MAX];
        let k = held.take(self.token, batch, &mut iov);
        if k == 0 || total == 0 {
            return true;
        }
        match self.sock.send_vectored(&iov[..k]) {
            Ok(n) => {
                self.rcv_nxt += n as u32;
                if n < total {
                    self.host.full = true;
                    return false;
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.host.full = true;
                false
            }
            Err(_) => {
                self.reset_guest(ctx);
                false
            }
        }
    }

    /// Whether the flow is over (after [`Conn::write_held`]).
    pub fn verdict(&self) -> Verdict {
        if self.end.dead {
            Verdict::Close
        } else {
            Verdict::Keep
        }
    }

    /// The end of a loop turn for a flow that heard from the guest: drop
    /// what it acknowledged from the socket, release corked data, send what
    /// its window now allows, and the ACK it is owed if no data carried it.
    pub fn end_of_turn(&mut self, ctx: &mut Ctx<'_, H>) -> Verdict {
        self.turn.queued = false;
        if self.acked_unread > 0 {
            let n = std::mem::take(&mut self.acked_unread) as usize;
            if self.sock.discard(n).is_err() {
                self.reset_guest(ctx);
                return Verdict::Close;
            }
        }
        if self.turn.cork {
            // Release what this turn's segments left in a partial frame.
            let _ = self.sock.set_cork(false);
            self.turn.cork = false;
        }
        if std::mem::take(&mut self.turn.push) && self.push(ctx) == Verdict::Close {
            return Verdict::Close;
        }
        if self.turn.ack && !self.end.dead && self.state == State::Established {
            let seq = self.snd_nxt;
            self.send_flags(ctx, ACK, seq);
        }
        self.verdict()
    }

    /// Whether this flow must go on the end-of-turn list: it owes the
    /// guest an ACK (or the host an uncork) and is not listed yet. Listing
    /// it once per turn keeps the list as short as the flows that spoke.
    pub fn wants_ack(&mut self) -> bool {
        let want = (self.turn.ack || self.turn.cork || self.acked_unread > 0 || self.turn.push)
            && !self.turn.queued;
        self.turn.queued |= want;
        want
    }

    /// An event on the host socket.
    pub fn on_host_event(&mut self, ctx: &mut Ctx<'_, H>, ev: EpollFlags) -> Verdict {
        self.last_seen = ctx.now;
        if self.state == State::Connecting {
            if !ev.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
                return Verdict::Keep;
            }
            let err = self.sock.take_error();
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
            let err = self.sock.take_error();
            if err != 0 {
                self.reset_guest(ctx);
                return Verdict::Close;
            }
        }
        if ev.contains(EpollFlags::EPOLLIN) && self.snd_wnd == 0 {
            self.host.waiting = true;
        }
        if ev.contains(EpollFlags::EPOLLOUT) && self.host.full && self.state == State::Established {
            // The host socket drained: tell the guest it may send again.
            self.turn.ack = true;
        }
        if ev.intersects(EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP) {
            self.host.shut = true;
        }
        if ev.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLHUP) {
            self.host.readable = true;
            let v = self.push(ctx);
            if v == Verdict::Close || self.end.dead {
                return Verdict::Close;
            }
        }
        Verdict::Keep
    }

    fn send_rst_for_syn(&mut self, ctx: &mut Ctx<'_, H>) {
        let (l2, clock) = (*ctx.l2, ctx.clock_ms);
        let this = &*self;
        let seq = this.isn + 1;
        ctx.tx.send_with(|buf| {
            this.write_segment(&l2, clock, buf, RST | ACK, seq, 0, 0, Checksum::Full)
        });
        self.end.dead = true;
    }

    /// Timers: retransmission, handshakes, idle flows.
    pub fn on_tick(&mut self, ctx: &mut Ctx<'_, H>) -> Verdict {
        if self.end.dead {
            return Verdict::Close;
        }
        let idle = ctx.now.saturating_duration_since(self.last_seen);
        let shut = if self.state == State::Established && self.snd_wnd == 0 {
            let since = *self.zero_since.get_or_insert(ctx.now);
            let pinned = self.host.waiting || self.snd_nxt != self.snd_una;
            pinned && ctx.now.saturating_duration_since(since) > ZERO_WINDOW_TIMEOUT
        } else {
            self.zero_since = None;
            self.host.waiting = false;
            false
        };
        let closing = self.end.guest_fin && self.end.fin_sent;
        let half_closed = self.end.guest_fin != self.end.fin_sent;
        let probe_at = CLOSING_TIMEOUT + HALF_CLOSED_PROBE_INTERVAL * u32::from(self.probes);
        let quiet = half_closed && idle > probe_at;
        if quiet && self.probes < HALF_CLOSED_PROBES {
            self.probes += 1;
            self.probe(ctx);
        }
        if shut
            || closing && idle > CLOSING_TIMEOUT
            || quiet && self.probes == HALF_CLOSED_PROBES
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
        if self.snd_nxt == self.snd_una && self.snd_wnd == 0 {
            self.probe_window(ctx);
            return Verdict::Keep;
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

/// A segment from the guest: to its flow; a SYN opens one (answered once
/// the host connect completes); anything else, or a refusal, gets an RST.
/// Returns the flow's token when it owes the guest an ACK this turn.
pub fn on_guest_segment<H: Host>(
    table: &mut Table<H>,
    ctx: &mut Ctx<'_, H>,
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
            if let Some(h) = ctx.held.as_deref_mut() {
                h.forget(token);
            }
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
pub fn on_accept<H: Host>(
    table: &mut Table<H>,
    ctx: &mut Ctx<'_, H>,
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
        let (poller, host) = (ctx.poller, ctx.host);
        let open = |token| host.tcp_accepted(poller, token, EVENTS, fd);
        if let Err(e) = open_forwarded(table, ctx, counters, key, open) {
            log::debug!("forward {i}: {e}");
            counters.forward_accept_failed += 1;
        }
    }
}

/// A host connection for a forward, offered to the guest as a new flow
/// (our SYN goes out); `open` makes its socket, registered under the
/// flow's token. The table being full is counted, not an error.
pub fn open_forwarded<H: Host>(
    table: &mut Table<H>,
    ctx: &mut Ctx<'_, H>,
    counters: &mut Counters,
    key: Key,
    open: impl FnOnce(Token) -> io::Result<H::Tcp>,
) -> io::Result<()> {
    if table.lookup(&key).is_some() {
        return Err(io::Error::from(io::ErrorKind::AddrInUse));
    }
    let Ok(token) = table.vacant() else {
        counters.flows_full += 1;
        return Ok(());
    };
    let sock = open(token)?;
    let memory = flow_memory(table.len() + 1);
    let conn = Conn::accepted(ctx, token, key, sock, memory);
    table.insert(token, key, Flow::Tcp(conn));
    counters.flows_opened += 1;
    Ok(())
}

/// Ethernet, IP and TCP headers of `repr` from `src` to `dst`, in front of
/// the payload already in place after them; returns the frame length (0
/// if it does not fit).
fn emit(
    buf: &mut [u8],
    l2: &L2,
    src: IpAddr,
    dst: IpAddr,
    repr: &tcpw::Repr,
    csum: Checksum,
) -> usize {
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
    match repr.emit_with(&mut buf[off..], &pseudo, csum) {
        Ok(n) => off + n,
        Err(_) => 0,
    }
}

pub fn mss_for(mtu: u16, v6: bool) -> u16 {
    mtu.saturating_sub(if v6 { 60 } else { 40 })
}

/// A flow that did not follow a migration: reset it toward the guest with
/// the sequence number the guest expects next, so nothing there hangs.
pub fn reset_migrated<H: Host>(ctx: &mut Ctx<'_, H>, t: &crate::migrate::Tcp) {
    let repr = tcpw::Repr {
        src_port: t.remote.port(),
        dst_port: t.guest.port(),
        seq: t.snd_nxt,
        ack: t.rcv_nxt,
        flags: RST | ACK,
        ..tcpw::Repr::default()
    };
    let (src, dst, l2) = (t.remote.ip(), t.guest.ip(), *ctx.l2);
    ctx.tx
        .send_with(|buf| emit(buf, &l2, src, dst, &repr, Checksum::Full));
}

/// Answer a segment that matches no flow, as a host with no such
/// connection would (RFC 793 "reset generation").
pub fn reply_rst<H: Host>(ctx: &mut Ctx<'_, H>, key: &Key, seg: &Segment<'_>) {
    if seg.flags & RST != 0 {
        return;
    }
    let (seq, ack, flags) = if seg.flags & ACK != 0 {
        (seg.ack.0, 0, RST)
    } else {
        (0, (seg.seq + seg.seq_len()).0, RST | ACK)
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
    ctx.tx
        .send_with(|buf| emit(buf, &l2, src, dst, &repr, Checksum::Full));
}
