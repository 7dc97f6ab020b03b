//! Flows: the guest's connections and conversations, each carried over one
//! ordinary host socket.
//!
//! The [`Table`] is a slab of flows (the slot index and a generation make the
//! epoll token, so a stale event never reaches a reused slot) plus a hash
//! index from the guest-side addresses. Its size is bounded by
//! `--max-flows`; per flow airlock keeps a fixed-size record and no data:
//! what is in flight stays in the kernel socket.
#![forbid(unsafe_code)]

pub mod dgram;
pub mod forward;
pub mod host;
pub mod icmp;
pub mod nat;
pub mod seq;
pub mod tcp;
pub mod udp;

/// What every flow gets from the stack for one call, and what it answers.
use crate::counters::Counters;
use crate::frame::L2;
use crate::link::Tx;
use crate::poller::{Poller, Token};
use host::{Host, Kernel};
use nix::sys::epoll::EpollFlags;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The surroundings every flow shares, for the life of the stack: the
/// epoll set, who is who on the virtual Ethernet, the clock's epoch and
/// the link's MTU. [`Env::ctx`] lends them for one call.
pub struct Env<H: Host = Kernel> {
    pub poller: Poller,
    /// Where TCP flows get their host sockets: the kernel, or the
    /// simulator.
    pub host: H,
    pub l2: L2,
    /// Timestamps count milliseconds from here.
    pub epoch: Instant,
    pub mtu: u16,
}

impl<H: Host> Env<H> {
    /// The context for one call, at `now`, with frames going to `tx`.
    pub fn ctx<'a>(&'a self, tx: &'a mut Tx, now: Instant) -> Ctx<'a, H> {
        Ctx {
            tx,
            poller: &self.poller,
            host: &self.host,
            l2: &self.l2,
            now,
            clock_ms: now.saturating_duration_since(self.epoch).as_millis() as u32,
            mtu: self.mtu,
            batch: None,
            held: None,
        }
    }
}

/// Guest payload held back until its receive batch ends, so that a flow's
/// in-order segments leave in one `sendmsg` instead of one `send` each. A
/// DGRAM or STREAM link keeps a batch's frames in its receive buffer until
/// the next read; an entry is the flow and where its payload lies in that
/// buffer.
#[derive(Debug, Default)]
pub struct Held {
    entries: Vec<(Token, u32, u32)>,
    /// Writes made of held payloads, and the payloads, since last tallied.
    writes: u64,
    segments: u64,
}

impl Held {
    /// At most this many payloads wait at once (a DGRAM batch's frames at
    /// MTU 1500); a payload beyond them first writes what its flow holds.
    pub const MAX: usize = 64;

    pub fn new() -> Held {
        Held {
            entries: Vec::with_capacity(Self::MAX),
            ..Held::default()
        }
    }

    /// Hold `payload` for `token` if it lies in `batch` and there is room.
    fn hold(&mut self, token: Token, batch: &[u8], payload: &[u8]) -> bool {
        let Some(at) = offset_within(batch, payload) else {
            return false;
        };
        if self.entries.len() == Self::MAX {
            return false;
        }
        self.entries.push((token, at as u32, payload.len() as u32));
        true
    }

    /// Take `token`'s payloads, in order, as slices of `batch` (at most
    /// [`Held::MAX`]); returns how many were written into `out`.
    fn take<'b>(&mut self, token: Token, batch: &'b [u8], out: &mut [IoSlice<'b>]) -> usize {
        let mut n = 0;
        self.entries.retain(|&(t, at, len)| {
            if t != token || n == out.len() {
                return true;
            }
            let (at, len) = (at as usize, len as usize);
            out[n] = IoSlice::new(batch.get(at..at + len).unwrap_or(&[]));
            n += 1;
            false
        });
        if n > 0 {
            self.writes += 1;
            self.segments += n as u64;
        }
        n
    }

    /// Writes and payloads taken since the last call.
    fn tally(&mut self) -> (u64, u64) {
        (
            std::mem::take(&mut self.writes),
            std::mem::take(&mut self.segments),
        )
    }

    /// The flow of the oldest payload still held.
    fn first(&self) -> Option<Token> {
        self.entries.first().map(|e| e.0)
    }

    /// A flow closed: what it held is dropped (its token may be reused).
    fn forget(&mut self, token: Token) {
        self.entries.retain(|e| e.0 != token);
    }
}

/// Where `inner` starts within `outer`, if it lies wholly inside it (a
/// payload parsed out of a frame of the batch; not one reassembled from
/// fragments elsewhere).
fn offset_within(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    let at = i.checked_sub(o)?;
    (at.checked_add(inner.len())? <= outer.len()).then_some(at)
}

/// Everything a flow needs from its surroundings for one call.
pub struct Ctx<'a, H: Host = Kernel> {
    pub tx: &'a mut Tx,
    pub poller: &'a Poller,
    pub host: &'a H,
    pub l2: &'a L2,
    pub now: Instant,
    /// Milliseconds since start, for timestamps.
    pub clock_ms: u32,
    /// MTU of the virtual link.
    pub mtu: u16,
    /// The link's receive batch the current frame lies in, while it stays
    /// in place ([`Held`]).
    pub batch: Option<&'a [u8]>,
    pub held: Option<&'a mut Held>,
}

/// What the caller should do with the flow after a call.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    Close,
}

impl Verdict {
    /// `Close` for a flow last seen at `last_seen` and idle since for
    /// longer than `limit`.
    pub fn unless_idle(last_seen: Instant, now: Instant, limit: Duration) -> Verdict {
        if now.saturating_duration_since(last_seen) > limit {
            Verdict::Close
        } else {
            Verdict::Keep
        }
    }
}

/// A flow as the guest sees it: protocol, its own address and port, and the
/// remote address and port (before translation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub proto: u8,
    pub guest: SocketAddr,
    pub remote: SocketAddr,
}

/// One flow's state.
pub enum Flow<H: Host = Kernel> {
    Tcp(tcp::Conn<H>),
    Udp(udp::Conn<H>),
    Icmp(icmp::Echo<H>),
}

/// FxHash: the flow index is keyed by guest-chosen values, but the table
/// size is bounded, so a fast non-keyed hash is enough here.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64)
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(v as u64)
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(v as u64)
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64)
    }
}

struct Slot<H: Host> {
    gen: u32,
    key: Option<Key>,
    flow: Option<Flow<H>>,
}

/// The table of flows.
pub struct Table<H: Host = Kernel> {
    slots: Vec<Slot<H>>,
    free: Vec<u32>,
    index: HashMap<Key, u32, BuildHasherDefault<FxHasher>>,
    max: usize,
    /// Flows that registered end-of-turn work ([`Table::defer`]).
    turn: Vec<Token>,
    /// Reused by [`Table::on_tick`] so a tick does not allocate.
    scratch: Vec<Token>,
}

/// The table is full: the guest gets a reset (TCP) or nothing (UDP/ICMP).
#[derive(Debug)]
pub struct Full;

impl<H: Host> Table<H> {
    pub fn new(max: usize) -> Self {
        Table {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            max,
            turn: Vec::new(),
            scratch: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The flow a guest packet belongs to.
    pub fn lookup(&self, key: &Key) -> Option<u32> {
        self.index.get(key).copied()
    }

    /// Reserve a slot and return the token its socket registers with.
    pub fn vacant(&mut self) -> Result<Token, Full> {
        if let Some(&i) = self.free.last() {
            return Ok(Token::Flow(i, self.slots[i as usize].gen));
        }
        if self.slots.len() >= self.max {
            return Err(Full);
        }
        self.slots.push(Slot {
            gen: 0,
            key: None,
            flow: None,
        });
        let i = (self.slots.len() - 1) as u32;
        self.free.push(i);
        Ok(Token::Flow(i, 0))
    }

    /// Fill the slot [`Table::vacant`] returned.
    pub fn insert(&mut self, token: Token, key: Key, flow: Flow<H>) {
        let Token::Flow(i, gen) = token else { return };
        let Some(slot) = self.slots.get_mut(i as usize) else {
            return;
        };
        if slot.gen != gen || slot.flow.is_some() {
            return;
        }
        if let Some(pos) = self.free.iter().rposition(|&f| f == i) {
            self.free.swap_remove(pos);
        }
        slot.key = Some(key);
        slot.flow = Some(flow);
        self.index.insert(key, i);
    }

    /// The live flow behind an epoll token, if the token is not stale.
    pub fn get_mut(&mut self, token: Token) -> Option<&mut Flow<H>> {
        let Token::Flow(i, gen) = token else {
            return None;
        };
        let slot = self.slots.get_mut(i as usize)?;
        if slot.gen != gen {
            return None;
        }
        slot.flow.as_mut()
    }

    /// A flow by slot index (from [`Table::lookup`]).
    pub fn at(&mut self, i: u32) -> Option<(Token, &mut Flow<H>)> {
        let slot = self.slots.get_mut(i as usize)?;
        let gen = slot.gen;
        slot.flow.as_mut().map(|f| (Token::Flow(i, gen), f))
    }

    /// Free a flow; its socket closes with it.
    pub fn remove(&mut self, token: Token) -> Option<Flow<H>> {
        let Token::Flow(i, gen) = token else {
            return None;
        };
        let slot = self.slots.get_mut(i as usize)?;
        if slot.gen != gen {
            return None;
        }
        let flow = slot.flow.take()?;
        if let Some(k) = slot.key.take() {
            self.index.remove(&k);
        }
        slot.gen = slot.gen.wrapping_add(1);
        self.free.push(i);
        Some(flow)
    }

    /// Live flows by protocol: (TCP, UDP, ICMP echo).
    pub fn by_proto(&self) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        for f in self.slots.iter().filter_map(|s| s.flow.as_ref()) {
            match f {
                Flow::Tcp(_) => n.0 += 1,
                Flow::Udp(_) => n.1 += 1,
                Flow::Icmp(_) => n.2 += 1,
            }
        }
        n
    }

    /// Every live flow, in slot order (for a migration's state).
    pub fn for_each_flow(&self, mut f: impl FnMut(&Flow<H>)) {
        for flow in self.slots.iter().filter_map(|s| s.flow.as_ref()) {
            f(flow);
        }
    }

    /// Act on what a flow said after a call: close it (and count that) or
    /// keep it.
    pub fn settle(&mut self, token: Token, verdict: Verdict, counters: &mut Counters) {
        if verdict == Verdict::Close && self.remove(token).is_some() {
            counters.flows_closed += 1;
        }
    }

    /// Tokens of every live flow (for timers).
    pub fn tokens(&self, out: &mut Vec<Token>) {
        out.clear();
        for (i, s) in self.slots.iter().enumerate() {
            if s.flow.is_some() {
                out.push(Token::Flow(i as u32, s.gen));
            }
        }
    }

    /// A flow owes work at the end of this turn (an ACK, an uncork, a
    /// discard, a push). The flow asks once per turn (see
    /// [`tcp::Conn::wants_ack`]), so the list stays as short as the flows
    /// that spoke.
    pub fn defer(&mut self, token: Token) {
        self.turn.push(token);
    }

    /// An event on a flow's host socket: the flow handles it, registers
    /// end-of-turn work if it has some, and is closed if it says so.
    pub fn on_host_event(
        &mut self,
        token: Token,
        ctx: &mut Ctx<'_, H>,
        ev: EpollFlags,
        rx: &mut dgram::RxHeaders,
        counters: &mut Counters,
    ) {
        let verdict = match self.get_mut(token) {
            Some(Flow::Tcp(c)) => {
                let v = c.on_host_event(ctx, ev);
                if c.wants_ack() {
                    self.defer(token);
                }
                v
            }
            Some(Flow::Udp(c)) => c.on_host_event(ctx, ev, rx, counters),
            Some(Flow::Icmp(c)) => c.on_host_event(ctx, ev, rx, counters),
            None => return,
        };
        self.settle(token, verdict, counters);
    }

    /// Timers of every flow: retransmissions and idle timeouts.
    pub fn on_tick(&mut self, ctx: &mut Ctx<'_, H>, udp: &udp::Timeouts, counters: &mut Counters) {
        let mut tokens = std::mem::take(&mut self.scratch);
        self.tokens(&mut tokens);
        for &t in &tokens {
            let v = match self.get_mut(t) {
                Some(Flow::Tcp(c)) => c.on_tick(ctx),
                Some(Flow::Udp(c)) => c.on_tick(ctx.now, udp),
                Some(Flow::Icmp(c)) => c.on_tick(ctx.now),
                None => continue,
            };
            self.settle(t, v, counters);
        }
        self.scratch = tokens;
    }

    /// End of a loop turn: each flow that registered work does it once.
    /// The receive batch ends: each flow writes what it held, in one
    /// `sendmsg`, before the batch's buffer is read into again.
    pub fn write_held(&mut self, ctx: &mut Ctx<'_, H>, counters: &mut Counters) {
        while let Some(token) = ctx.held.as_deref().and_then(Held::first) {
            if let Some(Flow::Tcp(c)) = self.get_mut(token) {
                c.write_held(ctx);
                let v = c.verdict();
                if c.wants_ack() {
                    self.defer(token);
                }
                self.settle(token, v, counters);
            }
            if let Some(h) = ctx.held.as_deref_mut() {
                h.forget(token);
            }
        }
        if let Some(h) = ctx.held.as_deref_mut() {
            let (writes, segments) = h.tally();
            counters.tcp_held_writes += writes;
            counters.tcp_held_segments += segments;
        }
    }

    pub fn end_of_turn(&mut self, ctx: &mut Ctx<'_, H>, counters: &mut Counters) {
        if self.turn.is_empty() {
            return;
        }
        let mut turn = std::mem::take(&mut self.turn);
        for &t in &turn {
            if let Some(Flow::Tcp(c)) = self.get_mut(t) {
                let v = c.end_of_turn(ctx);
                self.settle(t, v, counters);
            }
        }
        turn.clear();
        self.turn = turn;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_within_only_inside() {
        let buf = [0u8; 100];
        assert_eq!(offset_within(&buf, &buf[10..20]), Some(10));
        assert_eq!(offset_within(&buf, &buf[90..]), Some(90));
        let other = [0u8; 10];
        assert_eq!(offset_within(&buf, &other), None);
        assert_eq!(offset_within(&buf[..50], &buf[40..60]), None);
        assert_eq!(offset_within(&buf[50..], &buf[40..45]), None);
    }

    #[test]
    fn held_payloads_come_back_per_flow_in_order_and_bounded() {
        let batch: Vec<u8> = (0..=255u8).collect();
        let (a, b) = (Token::Flow(1, 0), Token::Flow(2, 0));
        let mut h = Held::new();
        assert!(h.hold(a, &batch, &batch[0..10]));
        assert!(h.hold(b, &batch, &batch[10..20]));
        assert!(h.hold(a, &batch, &batch[20..30]));
        // Not in the batch (reassembled elsewhere): not held.
        assert!(!h.hold(a, &batch, &[1, 2, 3]));
        assert_eq!(h.first(), Some(a));
        let mut out = [IoSlice::new(&[]); Held::MAX];
        assert_eq!(h.take(a, &batch, &mut out), 2);
        assert_eq!((out[0][0], out[1][0]), (0, 20));
        assert_eq!(h.first(), Some(b));
        h.forget(b);
        assert_eq!(h.first(), None);
        for _ in 0..Held::MAX {
            assert!(h.hold(a, &batch, &batch[..1]));
        }
        assert!(!h.hold(a, &batch, &batch[..1]), "bounded");
    }
}
