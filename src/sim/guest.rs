//! The simulated guest: smoltcp's TCP/IP stack on the virtual Ethernet,
//! configured by airlock's DHCP, running one small application per flow
//! (send the flow's stream, read and check the other, close).

use super::dgram::{self, DgramPeer};
use super::host::pattern;
use super::{DgramPlan, FlowPlan, Scenario};
use crate::flow::Key;
use crate::stack::Stack;
use crate::wire::ip_proto;
use smoltcp::iface::{Config as IfConfig, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::{dhcpv4, icmp, tcp, udp};
use smoltcp::time::Instant as SInstant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How long a half-closed guest application waits in FIN-WAIT-2 with
/// nothing arriving before it gives up (Linux's tcp_fin_timeout, which
/// Linux applies only to orphaned sockets: one still read stays as long
/// as data comes).
const FIN_TIMEOUT: Duration = Duration::from_secs(60);
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

/// The guest's side of the virtual link.
struct Nic {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
    mtu: usize,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut v = vec![0u8; len];
        let r = f(&mut v);
        self.0.push(v);
        r
    }
}

impl Device for Nic {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _t: SInstant) -> Option<(Rx, Tx<'_>)> {
        let f = self.rx.pop_front()?;
        Some((Rx(f), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _t: SInstant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        // smoltcp does not take the timestamp option out of the peer's MSS
        // as a guest kernel does: leave it room, or its full segments
        // would not fit and be dropped inside smoltcp.
        c.max_transmission_unit = self.mtu + 14 + 12;
        c
    }
}

/// One guest connection's application and what it saw.
pub struct GuestFlow {
    pub index: usize,
    pub plan: FlowPlan,
    pub remote: SocketAddr,
    pub streams: (u32, u32),
    handle: Option<SocketHandle>,
    pub sent: u64,
    pub received: u64,
    close_called: bool,
    aborted: bool,
    /// The socket went established at some point.
    pub established: bool,
    /// The remote's FIN arrived (CloseWait, LastAck, Closing, TimeWait).
    pub remote_fin: bool,
    pub ended: bool,
    /// A forward: airlock was handed the host side of the connection.
    pub forward_opened: bool,
    forward_asked: bool,
    /// In FIN-WAIT-2 since when nothing arrived, and what had by then.
    fin_wait2_quiet: Option<(Duration, u64)>,
}

impl GuestFlow {
    pub fn new(index: usize, plan: &FlowPlan, remote: SocketAddr, streams: (u32, u32)) -> Self {
        GuestFlow {
            index,
            plan: plan.clone(),
            remote,
            streams,
            handle: None,
            sent: 0,
            received: 0,
            close_called: false,
            aborted: false,
            established: false,
            remote_fin: false,
            ended: false,
            forward_opened: false,
            forward_asked: false,
            fin_wait2_quiet: None,
        }
    }

    /// Nothing in the plan cuts this flow short, so it must carry both
    /// streams whole and end with FINs both ways.
    pub fn planned_clean(&self) -> bool {
        self.plan.guest_abort.is_none()
            && self.plan.peer.reset_at.is_none()
            && matches!(self.plan.peer.connect, super::host::Connect::Accept(_))
    }

    /// It did end with the remote's FIN, never reset.
    pub fn clean_end(&self) -> bool {
        self.ended && self.remote_fin && !self.aborted
    }
}

/// One guest datagram flow (UDP, or ICMP echo) and what it saw.
pub struct GuestDgram {
    pub index: usize,
    pub plan: DgramPlan,
    pub remote: SocketAddr,
    handle: Option<SocketHandle>,
    /// Datagrams sent so far (the next one's sequence number).
    pub sent: u16,
    next_at: Duration,
    /// Replies seen per (sequence number, copy).
    seen: Vec<u8>,
    pub replies: u64,
    /// ICMP errors from airlock quoting this flow's datagrams.
    pub errors: u64,
    /// Everything sent and the replies' time is over.
    pub finished: bool,
}

impl GuestDgram {
    pub fn new(index: usize, plan: &DgramPlan, remote: SocketAddr) -> Self {
        let copies = match plan.peer {
            DgramPeer::Echo { copies, .. } => copies as usize,
            _ => 0,
        };
        GuestDgram {
            index,
            plan: plan.clone(),
            remote,
            handle: None,
            sent: 0,
            next_at: plan.start,
            seen: vec![0; plan.count as usize * copies],
            replies: 0,
            errors: 0,
            finished: false,
        }
    }

    /// The guest's UDP port or echo identifier.
    pub fn local(&self) -> u16 {
        if self.plan.echo {
            0x4000 + self.index as u16
        } else {
            50000 + self.index as u16
        }
    }

    /// Distinct replies (a duplicated frame is seen twice, counted once).
    pub fn distinct_replies(&self) -> usize {
        self.seen.iter().filter(|&&n| n > 0).count()
    }

    pub fn duplicate_replies(&self) -> bool {
        self.seen.iter().any(|&n| n > 1)
    }
}

pub struct Guest {
    iface: Interface,
    nic: Nic,
    sockets: SocketSet<'static>,
    dhcp: SocketHandle,
    pub addr: Option<Ipv4Addr>,
    pub flows: Vec<GuestFlow>,
    pub dgrams: Vec<GuestDgram>,
    buf_size: usize,
    timestamps: bool,
    /// Table-full scenarios may refuse any flow; others must not.
    may_refuse: bool,
    pub fault: Option<String>,
}

thread_local! {
    /// smoltcp's timestamp generator takes no argument: a counter per
    /// thread, reset with each guest so that a run replays exactly.
    static TSVAL: std::cell::Cell<u32> = const { std::cell::Cell::new(1) };
}

fn tsval() -> u32 {
    TSVAL.with(|c| {
        let v = c.get();
        c.set(v.wrapping_add(1));
        v
    })
}

impl Guest {
    pub fn new(s: &Scenario, seed: u64) -> Guest {
        let mut nic = Nic {
            rx: VecDeque::new(),
            tx: Vec::new(),
            mtu: s.mtu as usize,
        };
        let mut cfg = IfConfig::new(HardwareAddress::Ethernet(EthernetAddress(GUEST_MAC)));
        cfg.random_seed = seed;
        TSVAL.with(|c| c.set(1));
        let iface = Interface::new(cfg, &mut nic, SInstant::ZERO);
        let mut sockets = SocketSet::new(Vec::new());
        let dhcp = sockets.add(dhcpv4::Socket::new());
        Guest {
            iface,
            nic,
            sockets,
            dhcp,
            addr: None,
            flows: Vec::new(),
            dgrams: Vec::new(),
            buf_size: s.guest_buf,
            timestamps: s.timestamps,
            may_refuse: s.flows.len() + s.dgrams.len() > s.max_flows,
            fault: None,
        }
    }

    /// Forwards whose host peer connects now: the guest listens already.
    pub fn forwards_due(&mut self, now: Duration) -> Vec<usize> {
        let mut v = Vec::new();
        for f in &mut self.flows {
            if f.plan.forward && f.handle.is_some() && !f.forward_asked && now > f.plan.start {
                f.forward_asked = true;
                v.push(f.index);
            }
        }
        v
    }

    /// The flow key of forward `i` as airlock's table will see it.
    pub fn forward_key<H: crate::flow::host::Host>(&self, i: usize, stack: &Stack<H>) -> Key {
        let guest = self.addr.unwrap_or(Ipv4Addr::UNSPECIFIED);
        let host = stack
            .cfg
            .net4
            .as_ref()
            .map_or(Ipv4Addr::UNSPECIFIED, |n| n.host);
        Key {
            proto: ip_proto::TCP,
            guest: SocketAddr::new(IpAddr::V4(guest), 8000 + i as u16),
            remote: SocketAddr::new(IpAddr::V4(host), 40000 + i as u16),
        }
    }

    fn tcp_socket(&self) -> tcp::Socket<'static> {
        let rx = tcp::SocketBuffer::new(vec![0; self.buf_size]);
        let tx = tcp::SocketBuffer::new(vec![0; self.buf_size]);
        let mut t = tcp::Socket::new(rx, tx);
        if self.timestamps {
            t.set_tsval_generator(Some(tsval));
        }
        t
    }

    /// One turn of the guest at `now`: take the frames that arrived, run
    /// the stack and the applications, hand out what it sends.
    pub fn poll(&mut self, now: Duration, arrived: &mut Vec<Vec<u8>>, mut send: impl FnMut(&[u8])) {
        let t = SInstant::from_micros(now.as_micros() as i64);
        self.nic.rx.extend(arrived.drain(..));
        for _ in 0..4 {
            self.iface.poll(t, &mut self.nic, &mut self.sockets);
            self.dhcp_event();
            let before = self.nic.tx.len();
            self.apps(now);
            self.dgram_apps(now);
            self.iface.poll(t, &mut self.nic, &mut self.sockets);
            if self.nic.rx.is_empty() && self.nic.tx.len() == before {
                break;
            }
        }
        if std::env::var_os("AIRLOCK_SIM_TRACE").is_some() {
            eprintln!("{now:?} guest poll: {} frames out", self.nic.tx.len());
        }
        for f in self.nic.tx.drain(..) {
            send(&f);
        }
    }

    fn dhcp_event(&mut self) {
        let ev = self.sockets.get_mut::<dhcpv4::Socket>(self.dhcp).poll();
        if let Some(dhcpv4::Event::Configured(c)) = ev {
            let a = c.address;
            self.iface.update_ip_addrs(|addrs| {
                addrs.clear();
                let _ = addrs.push(IpCidr::Ipv4(a));
            });
            if let Some(r) = c.router {
                let _ = self.iface.routes_mut().add_default_ipv4_route(r);
            }
            self.addr = Some(Ipv4Addr::from(a.address().octets()));
        }
    }

    fn apps(&mut self, now: Duration) {
        if self.addr.is_none() {
            return;
        }
        let mut chunk = [0u8; 8192];
        for i in 0..self.flows.len() {
            let f = &self.flows[i];
            if f.ended || now < f.plan.start {
                continue;
            }
            let h = match f.handle {
                Some(h) => h,
                None => {
                    let sock = self.tcp_socket();
                    let h = self.sockets.add(sock);
                    let f = &mut self.flows[i];
                    f.handle = Some(h);
                    let s = self.sockets.get_mut::<tcp::Socket>(h);
                    let r = if f.plan.forward {
                        s.listen(8000 + i as u16).map_err(|e| format!("{e:?}"))
                    } else {
                        let remote = match f.remote.ip() {
                            IpAddr::V4(a) => Ipv4Address::from(a.octets()),
                            IpAddr::V6(_) => unreachable!("IPv4 only"),
                        };
                        s.connect(
                            self.iface.context(),
                            (remote, f.remote.port()),
                            49152 + i as u16,
                        )
                        .map_err(|e| format!("{e:?}"))
                    };
                    if let Err(e) = r {
                        self.fault = Some(format!("flow {i}: guest socket: {e}"));
                    }
                    h
                }
            };
            let s = self.sockets.get_mut::<tcp::Socket>(h);
            let f = &mut self.flows[i];
            let state = s.state();
            // Synchronized (a fast exchange can pass Established between
            // two polls).
            if !matches!(
                state,
                tcp::State::Closed
                    | tcp::State::Listen
                    | tcp::State::SynSent
                    | tcp::State::SynReceived
            ) {
                f.established = true;
            }
            // A half-closed application still reads; it gives up on a
            // FIN-WAIT-2 once nothing has come for a while (the peer's RST
            // may have been lost). Timing the state alone cut a slow host's
            // stream off at 60 s (fuzz/regressions/sim_tcp/half-closed-*).
            if state == tcp::State::FinWait2 {
                let got = f.received;
                let quiet = f.fin_wait2_quiet.get_or_insert((now, got));
                if quiet.1 != got {
                    *quiet = (now, got);
                }
                if now >= quiet.0 + FIN_TIMEOUT && !f.aborted {
                    f.aborted = true;
                    s.abort();
                    continue;
                }
            }
            if matches!(
                state,
                tcp::State::CloseWait
                    | tcp::State::LastAck
                    | tcp::State::Closing
                    | tcp::State::TimeWait
            ) {
                f.remote_fin = true;
            }
            if f.plan.guest_abort.is_some_and(|at| now >= at) && !f.aborted {
                f.aborted = true;
                s.abort();
                continue;
            }
            // Read and check the host's stream.
            let stalled = f
                .plan
                .guest_read_stall
                .is_some_and(|(from, len)| now >= from && now < from + len);
            while !stalled && s.can_recv() {
                let (base, stream) = (f.received, f.streams.1);
                let r = s.recv(|buf| {
                    let bad = buf
                        .iter()
                        .enumerate()
                        .find(|(k, &b)| b != pattern(stream, base + *k as u64))
                        .map(|(k, _)| base + k as u64);
                    (buf.len(), (buf.len(), bad))
                });
                match r {
                    Ok((n, bad)) => {
                        if let Some(off) = bad {
                            self.fault = Some(format!("flow {i}: host-to-guest byte {off} wrong"));
                        }
                        f.received += n as u64;
                        if n == 0 {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            if f.received > f.plan.peer.h2g {
                self.fault = Some(format!(
                    "flow {i}: guest got {} bytes, more than the host's {}",
                    f.received, f.plan.peer.h2g
                ));
            }
            // Send the guest's stream, then FIN.
            while s.can_send() && f.sent < f.plan.g2h {
                let n = ((f.plan.g2h - f.sent) as usize).min(chunk.len());
                for (k, b) in chunk[..n].iter_mut().enumerate() {
                    *b = pattern(f.streams.0, f.sent + k as u64);
                }
                match s.send_slice(&chunk[..n]) {
                    Ok(0) | Err(_) => break,
                    Ok(m) => f.sent += m as u64,
                }
            }
            // FIN once all data is acknowledged: smoltcp 0.12 was seen to
            // stop retransmitting a tail its peer acknowledged only in
            // part once both FINs had crossed (found by this simulator).
            if f.sent == f.plan.g2h && s.send_queue() == 0 && !f.close_called && f.established {
                f.close_called = true;
                s.close();
            }
            // Closed (reset, refused, timed out, or after TIME-WAIT) or in
            // TIME-WAIT, with everything that arrived read.
            let finished = matches!(state, tcp::State::Closed | tcp::State::TimeWait)
                && (s.recv_queue() == 0 || f.aborted);
            if finished && (!f.plan.forward || f.forward_asked) {
                f.ended = true;
            }
            if f.ended {
                self.check_end(i);
            }
        }
    }

    fn check_end(&mut self, i: usize) {
        let f = &self.flows[i];
        let clean = f.planned_clean() && !self.may_refuse;
        if clean && !f.clean_end() {
            self.fault = Some(format!(
                "flow {i} was cut short (established {}, remote FIN {}, sent {}/{}, got {}/{})",
                f.established, f.remote_fin, f.sent, f.plan.g2h, f.received, f.plan.peer.h2g
            ));
        }
        if !matches!(f.plan.peer.connect, super::host::Connect::Accept(_)) && f.established {
            self.fault = Some(format!("flow {i}: a refused connect was established"));
        }
    }

    /// A frame from airlock, before the stack sees it: ICMP errors must
    /// quote one of the guest's datagram flows exactly.
    pub fn observe(&mut self, frame: &[u8]) {
        use crate::wire::{ethernet, icmpv4, ipv4};
        let Ok(eth) = ethernet::Frame::new_checked(frame) else {
            return;
        };
        let Ok(ip) = ipv4::Packet::new_checked(eth.payload()) else {
            return;
        };
        if ip.protocol() != ip_proto::ICMP {
            return;
        }
        let Ok(m) = icmpv4::Packet::new_checked(ip.payload()) else {
            return;
        };
        if m.msg_type() != icmpv4::msg_type::DST_UNREACHABLE {
            return;
        }
        let Ok(q) = icmpv4::Quoted::parse(m.data()) else {
            self.fault = Some(format!(
                "an ICMP error quoting no IP header: {:02x?}",
                m.data()
            ));
            return;
        };
        let (src, dst, proto, l4) = (q.src, q.dst, q.protocol, q.payload);
        let Some(addr) = self.addr else {
            return;
        };
        let ports = (l4.len() >= 4).then(|| {
            (
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
            )
        });
        let ident = (l4.len() >= 6).then(|| u16::from_be_bytes([l4[4], l4[5]]));
        let flow = self.dgrams.iter_mut().find(|d| {
            let remote = match d.remote.ip() {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => return false,
            };
            src == addr
                && dst == remote
                && if d.plan.echo {
                    proto == ip_proto::ICMP && l4.first() == Some(&8) && ident == Some(d.local())
                } else {
                    proto == ip_proto::UDP && ports == Some((d.local(), d.remote.port()))
                }
        });
        match flow {
            Some(d) if ip.src() == dst => d.errors += 1,
            Some(d) => {
                self.fault = Some(format!(
                    "flow {}'s ICMP error comes from {}, not {dst}",
                    d.index,
                    ip.src()
                ))
            }
            None => {
                self.fault = Some(format!(
                    "an ICMP error quoting {src} > {dst} proto {proto} {l4:02x?}: no such flow"
                ))
            }
        }
    }

    fn dgram_apps(&mut self, now: Duration) {
        if self.addr.is_none() {
            return;
        }
        let mut buf = Vec::with_capacity(2048);
        let mut rbuf = [0u8; 4096];
        for i in 0..self.dgrams.len() {
            let d = &mut self.dgrams[i];
            if now < d.plan.start {
                continue;
            }
            let remote = match d.remote.ip() {
                IpAddr::V4(a) => IpAddress::Ipv4(Ipv4Address::from(a.octets())),
                IpAddr::V6(_) => unreachable!("IPv4 only"),
            };
            let h = match d.handle {
                Some(h) => h,
                None => {
                    let h = if d.plan.echo {
                        let meta = || vec![icmp::PacketMetadata::EMPTY; 64];
                        let mut sock = icmp::Socket::new(
                            icmp::PacketBuffer::new(meta(), vec![0; 65536]),
                            icmp::PacketBuffer::new(meta(), vec![0; 65536]),
                        );
                        let _ = sock.bind(icmp::Endpoint::Ident(d.local()));
                        self.sockets.add(sock)
                    } else {
                        let meta = || vec![udp::PacketMetadata::EMPTY; 64];
                        let mut sock = udp::Socket::new(
                            udp::PacketBuffer::new(meta(), vec![0; 65536]),
                            udp::PacketBuffer::new(meta(), vec![0; 65536]),
                        );
                        let _ = sock.bind(d.local());
                        self.sockets.add(sock)
                    };
                    d.handle = Some(h);
                    h
                }
            };
            // Send what is due.
            while d.sent < d.plan.count && now >= d.next_at {
                dgram::payload(d.index, d.sent, d.plan.size, &mut buf);
                let ok = if d.plan.echo {
                    let mut m = vec![8u8, 0, 0, 0];
                    m.extend_from_slice(&d.local().to_be_bytes());
                    m.extend_from_slice(&d.sent.to_be_bytes());
                    m.extend_from_slice(&buf);
                    if let Ok(mut p) = crate::wire::icmpv4::Packet::new_checked(&mut m[..]) {
                        p.fill_checksum();
                    }
                    let s = self.sockets.get_mut::<icmp::Socket>(h);
                    s.send_slice(&m, remote).is_ok()
                } else {
                    let s = self.sockets.get_mut::<udp::Socket>(h);
                    s.send_slice(&buf, (remote, d.remote.port())).is_ok()
                };
                if !ok {
                    break;
                }
                d.sent += 1;
                d.next_at = now + d.plan.gap;
                if let Some((after, quiet)) = d.plan.pause {
                    if d.sent == after {
                        d.next_at = now + quiet;
                    }
                }
            }
            // Read and check the replies.
            let copies = d.seen.len() / (d.plan.count.max(1) as usize);
            loop {
                let (n, from_ok, body_at) = if d.plan.echo {
                    let s = self.sockets.get_mut::<icmp::Socket>(h);
                    match s.recv_slice(&mut rbuf) {
                        Ok((n, from)) => (n, from == remote, 8),
                        Err(_) => break,
                    }
                } else {
                    let s = self.sockets.get_mut::<udp::Socket>(h);
                    match s.recv_slice(&mut rbuf) {
                        Ok((n, meta)) => (
                            n,
                            meta.endpoint.addr == remote && meta.endpoint.port == d.remote.port(),
                            0,
                        ),
                        Err(_) => break,
                    }
                };
                let r = &rbuf[..n];
                let header_ok = !d.plan.echo
                    || n >= 8 && r[0] == 0 && u16::from_be_bytes([r[4], r[5]]) == d.local();
                // An echo reply carries the request's data as it was.
                let echo = d.plan.echo;
                let mark = |c| if echo { b'G' } else { dgram::reply_mark(c) };
                let found = (0..copies as u8).find_map(|c| {
                    let body = r.get(body_at..)?;
                    dgram::check(d.index, body, mark(c)).map(|seq| (seq, c))
                });
                match found {
                    Some((seq, c)) if from_ok && header_ok && seq < d.sent => {
                        d.replies += 1;
                        let k = seq as usize * copies + c as usize;
                        if let Some(v) = d.seen.get_mut(k) {
                            *v = v.saturating_add(1);
                        }
                    }
                    _ => {
                        self.fault = Some(format!(
                            "datagram flow {i}: a wrong reply {r:02x?} (from ok {from_ok})"
                        ));
                    }
                }
            }
            // Replies have had their time: 2 s after the last send.
            if d.sent == d.plan.count && now >= d.next_at + Duration::from_secs(2) {
                d.finished = true;
            }
        }
    }

    /// Every flow's application is finished.
    /// A forward the guest never saw (airlock refused it, or its host side
    /// died before the SYN got through) leaves the guest listening.
    pub fn done(&self) -> bool {
        self.dgrams.iter().all(|d| d.finished)
            && self.flows.iter().all(|f| {
                f.ended
                    || f.plan.forward
                        && f.forward_asked
                        && f.handle.is_some_and(|h| {
                            self.sockets.get::<tcp::Socket>(h).state() == tcp::State::Listen
                        })
            })
    }

    /// Table-full scenarios may refuse any flow.
    pub fn may_refuse(&self) -> bool {
        self.may_refuse
    }

    /// Something is in motion: data to send or read.
    pub fn busy(&self) -> bool {
        self.flows.iter().any(|f| {
            f.handle.is_some_and(|h| {
                let s = self.sockets.get::<tcp::Socket>(h);
                s.state() == tcp::State::Established && (f.sent < f.plan.g2h || s.recv_queue() > 0)
            })
        })
    }

    /// The next time the guest has something due (its stack's timers, a
    /// flow's start, an abort).
    pub fn next_due(&mut self, now: Duration) -> Option<Duration> {
        let t = SInstant::from_micros(now.as_micros() as i64);
        let mut next = self
            .iface
            .poll_delay(t, &self.sockets)
            .map(|d| now + Duration::from_micros(d.total_micros()));
        let mut at = |x: Duration| {
            if x > now {
                next = Some(next.map_or(x, |n| n.min(x)));
            }
        };
        for d in self.dgrams.iter().filter(|d| !d.finished) {
            at(d.next_at);
            at(d.next_at + Duration::from_secs(2));
        }
        for f in &self.flows {
            at(f.plan.start);
            if let Some(a) = f.plan.guest_abort {
                at(a);
            }
            if let Some((from, len)) = f.plan.guest_read_stall {
                at(from + len);
            }
        }
        next
    }

    pub fn status(&self) -> String {
        let mut out = format!("addr {:?};", self.addr);
        for f in &self.flows {
            let st = f.handle.map(|h| self.sockets.get::<tcp::Socket>(h).state());
            out.push_str(&format!(
                " [{}: {:?} sent {}/{} got {}/{} ended {}]",
                f.index, st, f.sent, f.plan.g2h, f.received, f.plan.peer.h2g, f.ended
            ));
        }
        out
    }
}
