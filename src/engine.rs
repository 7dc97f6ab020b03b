//! The event loop: one thread, one epoll set, no async runtime.
//!
//! `link ↔ engine ↔ services/flows ↔ host sockets`. A guest frame read from
//! the link goes to [`Stack::on_frame`], which answers it from a service or
//! hands it to the flow table; a host socket event goes to its flow. Every
//! frame for the guest lands in the link's transmit queue, flushed once per
//! loop turn, so one turn costs one write to the VMM however many flows spoke.
//!
//! #syscalls: read
//! #syscalls-startup: signalfd4 rt_sigprocmask

use crate::config::Config;
use crate::lifecycle::ParentWatch;
use crate::link::{Closed, Link, Recv};
pub use crate::poller::{Poller, Token};
use crate::stack::Stack;
use nix::sys::epoll::{EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Why the loop ended.
#[derive(Debug)]
pub enum Exit {
    Signal(Signal),
    Link(Closed),
    /// `--exit-with-parent` and the parent is gone.
    ParentGone,
}

/// The signal that asks for the [`Engine::report`] summary in the log.
pub const STATS_SIGNAL: Signal = Signal::SIGUSR1;

/// Signals that end airlock cleanly (SIGQUIT too: Kata's runtime stops
/// passt with it), and [`STATS_SIGNAL`]; blocked and read from a signalfd
/// so that they stay safe under the seccomp filter.
pub fn block_exit_signals() -> std::io::Result<SignalFd> {
    let mut set = SigSet::empty();
    for sig in [
        STATS_SIGNAL,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        crate::lifecycle::PARENT_DEATH_SIGNAL,
    ] {
        crate::sys::default_disposition(sig)?;
        set.add(sig);
    }
    set.thread_block()?;
    Ok(SignalFd::with_flags(
        &set,
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )?)
}

/// Frames handled per link wakeup before host sockets get a turn.
const LINK_BUDGET: usize = 16;
/// Timer granularity: retransmission, idle timeouts, router advertisements.
const TICK: Duration = Duration::from_millis(50);

/// epoll's timeout for `wait`, rounded *up* to whole milliseconds: rounded
/// down, the last millisecond before each tick became a spin of zero
/// timeouts (700 000 empty `epoll_wait` calls in one 10 s benchmark).
fn tick_timeout(wait: Duration) -> EpollTimeout {
    let ms = wait.as_micros().div_ceil(1000);
    EpollTimeout::try_from(ms.min(i32::MAX as u128) as i32).unwrap_or(EpollTimeout::ZERO)
}

pub struct Engine {
    link: Link,
    stack: Stack,
    signals: SignalFd,
    parent: Option<ParentWatch>,
    #[cfg(feature = "dbus")]
    bus: Option<crate::dbus::Bus>,
}

impl Engine {
    /// On failure the signalfd comes back, so the caller can go on.
    pub fn new(
        link: Link,
        cfg: Config,
        signals: SignalFd,
        parent: Option<ParentWatch>,
    ) -> Result<Engine, (std::io::Error, SignalFd)> {
        let setup = || -> std::io::Result<Poller> {
            let poller = Poller::new()?;
            poller.add(link.as_fd(), Token::Link, EpollFlags::EPOLLIN)?;
            poller.add(signals.as_fd(), Token::Signal, EpollFlags::EPOLLIN)?;
            Ok(poller)
        };
        let poller = match setup() {
            Ok(p) => p,
            Err(e) => return Err((e, signals)),
        };
        let stack = Stack::new(cfg, poller);
        Ok(Engine {
            link,
            stack,
            signals,
            parent,
            #[cfg(feature = "dbus")]
            bus: None,
        })
    }

    /// Serve the D-Bus connection from this loop too.
    #[cfg(feature = "dbus")]
    pub fn set_bus(&mut self, bus: crate::dbus::Bus) -> std::io::Result<()> {
        self.stack
            .poller()
            .add(bus.as_fd(), Token::Bus, EpollFlags::EPOLLIN)?;
        self.bus = Some(bus);
        Ok(())
    }

    /// The D-Bus connection back, to carry it to the next VMM connection.
    #[cfg(feature = "dbus")]
    pub fn take_bus(&mut self) -> Option<crate::dbus::Bus> {
        let bus = self.bus.take()?;
        self.stack.poller().delete(bus.as_fd());
        Some(bus)
    }

    /// Take over a state that migrated in (`--dbus-incoming`): its frames
    /// (resets of the TCP flows that could not follow) go out at once.
    pub fn import(&mut self, st: &crate::migrate::State) {
        let (udp, tcp) = self.stack.import(st, &mut self.link.tx, Instant::now());
        self.link.tx.flush();
        log::info!("migration: state loaded, {udp} UDP flows resumed, {tcp} TCP flows reset toward the guest");
    }

    /// The stack (for its counters) and the signalfd, once the loop is over.
    pub fn into_parts(self) -> (Stack, SignalFd) {
        (self.stack, self.signals)
    }

    /// `--pcap`'s writer, to carry it to the next VMM connection.
    pub fn take_pcap(&mut self) -> Option<crate::pcap::Pcap> {
        self.link.tx.pcap.take()
    }

    /// The stack, to hand it the forwards' sockets (bound before the
    /// sandbox).
    pub fn stack_mut(&mut self) -> &mut Stack {
        &mut self.stack
    }

    /// Run until a signal or the link ends.
    pub fn run(&mut self) -> Exit {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut next_tick = Instant::now() + TICK;
        self.stack.start(Instant::now(), &mut self.link.tx);
        self.link.tx.flush();
        loop {
            let now = Instant::now();
            let wait = next_tick.saturating_duration_since(now);
            let timeout = tick_timeout(wait);
            let n = match self.stack.poller().wait(&mut events, timeout) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => return Exit::Link(Closed::Error(e.into())),
            };
            let now = Instant::now();
            for ev in &events[..n] {
                match Token::decode(ev.data()) {
                    Token::Link => {
                        for _ in 0..LINK_BUDGET {
                            let stack = &mut self.stack;
                            let r = self.link.recv_batched(|f, meta, batch, tx| {
                                stack.on_frame_in(f, meta, batch, tx, now)
                            });
                            let (batch, tx) = self.link.batch();
                            stack.write_held(batch, tx, now);
                            match r {
                                Ok(Recv::More) => continue,
                                Ok(Recv::Drained) => break,
                                Err(c) => return Exit::Link(c),
                            }
                        }
                    }
                    Token::Signal => {
                        while let Ok(Some(si)) = self.signals.read_signal() {
                            match Signal::try_from(si.ssi_signo as i32) {
                                Ok(crate::lifecycle::PARENT_DEATH_SIGNAL) => {
                                    if self.parent.as_mut().is_some_and(|p| p.parent_gone()) {
                                        return Exit::ParentGone;
                                    }
                                }
                                Ok(STATS_SIGNAL) => {
                                    for line in self.report().lines() {
                                        log::info!("stats: {line}");
                                    }
                                }
                                Ok(sig) => return Exit::Signal(sig),
                                Err(_) => {}
                            }
                        }
                    }
                    #[cfg(feature = "dbus")]
                    Token::Bus => {
                        let Some(bus) = self.bus.as_mut() else {
                            continue;
                        };
                        let mut target = crate::dbus::Running {
                            stack: &mut self.stack,
                            tx: &mut self.link.tx,
                            now,
                        };
                        if bus.dispatch(&mut target).is_err() {
                            log::warn!("D-Bus: the bus hung up; going on without it");
                            if let Some(b) = self.bus.take() {
                                self.stack.poller().delete(b.as_fd());
                            }
                        }
                    }
                    t => self
                        .stack
                        .on_host_event(t, ev.events(), &mut self.link.tx, now),
                }
            }
            if now >= next_tick {
                self.stack.on_tick(now, &mut self.link.tx);
                next_tick = now + TICK;
                if self.parent.as_mut().is_some_and(|p| p.parent_gone()) {
                    return Exit::ParentGone;
                }
            }
            self.stack.after_turn(now, &mut self.link.tx);
            self.link.tx.flush();
            if let Some(c) = self.link.tx.closed() {
                return Exit::Link(c);
            }
        }
    }

    /// Counters for `--debug` at exit and SIGUSR1: link totals, flows by
    /// protocol, then one line per non-zero drop counter.
    pub fn report(&self) -> String {
        let s = &self.link.tx.stats;
        let (tcp, udp, icmp) = self.stack.flows_by_proto();
        let mut out = format!(
            "link: rx {} frames / {} bytes, tx {} frames / {} bytes in {} flushes, runts {}, oversize {}, tx dropped {}\nflows: tcp {tcp}, udp {udp}, icmp {icmp}\n",
            s.rx_frames, s.rx_bytes, s.tx_frames, s.tx_bytes, s.tx_flushes, s.rx_runt, s.rx_oversize, s.tx_dropped
        );
        if let Some(p) = &self.link.tx.pcap {
            let p = p.stats;
            out.push_str(&format!(
                "pcap: {} frames, {} dropped (file behind), {} over --pcap-size\n",
                p.frames, p.dropped, p.over_size
            ));
        }
        if let Some(v) = self.link.vhost_stats() {
            out.push_str(&format!(
                "vhost-user: device resets {}, refused requests {}, oversize {}, rx dropped {}, calls {}, rx in place {}, rx copied {}\n",
                v.faults, v.bad_requests, v.tx_oversize, v.rx_dropped, v.calls, v.rx_in_place, v.rx_copied
            ));
        }
        out.push_str(&self.stack.counters.to_string());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_timeout_rounds_up_so_the_loop_never_spins() {
        let ms = |us| tick_timeout(Duration::from_micros(us)).as_millis();
        assert_eq!(ms(0), Some(0));
        assert_eq!(ms(1), Some(1));
        assert_eq!(ms(999), Some(1));
        assert_eq!(ms(1000), Some(1));
        assert_eq!(ms(49_001), Some(50));
    }

    /// The next signal the signalfd reports, waiting up to 1 s.
    fn next_signal(sfd: &SignalFd) -> Option<Signal> {
        for _ in 0..100 {
            if let Ok(Some(si)) = sfd.read_signal() {
                return Signal::try_from(si.ssi_signo as i32).ok();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    #[test]
    fn signalfd_reports_exit_signals() {
        // Blocks in this thread only; raise() targets this thread, so the
        // signal is queued here and never reaches another test thread.
        let sfd = block_exit_signals().unwrap();
        assert!(matches!(sfd.read_signal(), Ok(None)));
        nix::sys::signal::raise(Signal::SIGHUP).unwrap();
        let got = next_signal(&sfd);
        assert_eq!(got, Some(Signal::SIGHUP));
    }

    #[test]
    fn sigquit_ends_airlock_even_if_the_launcher_ignored_it() {
        // What a background shell leaves behind for its children.
        crate::sys::ignore_signal(Signal::SIGQUIT).unwrap();
        let sfd = block_exit_signals().unwrap();
        nix::sys::signal::raise(Signal::SIGQUIT).unwrap();
        let got = next_signal(&sfd);
        assert_eq!(got, Some(Signal::SIGQUIT));
    }
}
