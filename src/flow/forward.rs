//! Host-to-guest forwards (`--hostfwd`, `-t`, `-u`): their host sockets,
//! bound at startup before the sandbox, and the guest-side addresses of
//! what arrives on them.
//!
//! TCP forwards listen (SO_REUSEADDR, as every server does); UDP forwards
//! are plain bound sockets whose datagrams open forwarded UDP flows. An
//! IPv6 bind address is IPv6-only, so that `0.0.0.0:P` and `[::]:P` can be
//! forwarded separately. A port that cannot be bound is a startup error
//! naming the forward.
//!
//! The sockets are made, bound and put to listen at startup only (a
//! `listen` at runtime would autobind a port landlock's bind rule never
//! sees); what the event loop does is accept and tune connections.
//! #syscalls: accept4 ioctl(1=FIONBIO) getpeername setsockopt close
//! #syscalls: getsockopt getsockname
//! #syscalls-startup: socket bind listen
#![forbid(unsafe_code)]

use super::{nat, Key};
use crate::config::{Config, Forward, Proto};
use crate::wire::ip_proto;
use nix::sys::socket::{
    self as sock, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage,
};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// A forward's bound host socket.
pub struct Listener {
    pub fwd: Forward,
    sock: Sock,
}

enum Sock {
    Tcp(TcpListener),
    Udp(OwnedFd),
    /// Removed at run time: the socket is closed, the slot (an epoll
    /// token, flows' forward index) stays so no other index moves.
    Retired,
}

struct Shown<'a>(&'a Forward);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = match self.0.proto {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        };
        write!(f, "forward {p}:{}-", self.0.bind)?;
        match self.0.guest_addr {
            Some(IpAddr::V6(a)) => write!(f, "[{a}]")?,
            Some(a) => write!(f, "{a}")?,
            None => {}
        }
        write!(f, ":{}", self.0.guest_port)
    }
}

impl Listener {
    /// The socket; `None` once retired.
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.sock {
            Sock::Tcp(l) => Some(l.as_fd()),
            Sock::Udp(s) => Some(s.as_fd()),
            Sock::Retired => None,
        }
    }

    pub fn is_live(&self) -> bool {
        !matches!(self.sock, Sock::Retired)
    }

    /// Close the socket (a forward removed at run time).
    pub fn retire(&mut self) {
        self.sock = Sock::Retired;
    }

    /// A forward from a socket the caller bound (`airlock ctl`, over
    /// D-Bus): it must be an IPv4/IPv6 socket of `proto`'s type, bound, and
    /// for TCP listening. It becomes non-blocking.
    pub fn adopt(
        fd: OwnedFd,
        proto: Proto,
        guest_addr: Option<IpAddr>,
        guest_port: u16,
    ) -> io::Result<Listener> {
        let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_string());
        let ty = sock::getsockopt(&fd, sockopt::SockType).map_err(|_| bad("not a socket"))?;
        let want = match proto {
            Proto::Tcp => SockType::Stream,
            Proto::Udp => SockType::Datagram,
        };
        if ty != want {
            return Err(bad("the socket's type does not match the protocol"));
        }
        let local: SockaddrStorage = sock::getsockname(fd.as_raw_fd())?;
        let bind = super::dgram::to_std(&local).ok_or_else(|| bad("not an IPv4 or IPv6 socket"))?;
        if bind.port() == 0 {
            return Err(bad("the socket is not bound to a port"));
        }
        if guest_port == 0 {
            return Err(bad("guest port 0"));
        }
        let sock = match proto {
            Proto::Tcp => {
                if !sock::getsockopt(&fd, sockopt::AcceptConn)? {
                    return Err(bad("the TCP socket is not listening"));
                }
                let l = TcpListener::from(fd);
                l.set_nonblocking(true)?;
                Sock::Tcp(l)
            }
            Proto::Udp => {
                let u = std::net::UdpSocket::from(fd);
                u.set_nonblocking(true)?;
                Sock::Udp(OwnedFd::from(u))
            }
        };
        Ok(Listener {
            fwd: Forward {
                proto,
                bind,
                guest_addr,
                guest_port,
                device: None,
                best_effort: false,
            },
            sock,
        })
    }

    pub fn proto(&self) -> Proto {
        self.fwd.proto
    }

    /// Accept one pending connection (non-blocking, close-on-exec), with
    /// the peer's address. `Ok(None)` when none is pending.
    pub fn accept(&self) -> io::Result<Option<(OwnedFd, SocketAddr)>> {
        let Sock::Tcp(l) = &self.sock else {
            return Ok(None);
        };
        match l.accept() {
            Ok((s, peer)) => {
                s.set_nonblocking(true)?;
                Ok(Some((OwnedFd::from(s), peer)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The guest's side of this forward: its address (the configured one,
    /// else the guest's address of the bind address's family when it has
    /// one) and port. `guest6` is the IPv6 address the guest was last seen
    /// using (SLAAC picks it, not airlock); the DHCPv6 lease otherwise.
    pub fn guest(&self, cfg: &Config, guest6: Option<Ipv6Addr>) -> Option<SocketAddr> {
        let ip = match self.fwd.guest_addr {
            Some(a) => a,
            None => {
                let v4 = cfg.net4.as_ref().map(|n| IpAddr::V4(n.guest));
                let v6 = cfg
                    .net6
                    .as_ref()
                    .map(|n| IpAddr::V6(guest6.unwrap_or(n.guest)));
                if self.fwd.bind.is_ipv6() {
                    v6.or(v4)?
                } else {
                    v4.or(v6)?
                }
            }
        };
        Some(SocketAddr::new(ip, self.fwd.guest_port))
    }

    /// The flow key for something from host `peer` on this forward.
    pub fn key(&self, cfg: &Config, guest6: Option<Ipv6Addr>, peer: SocketAddr) -> Option<Key> {
        let guest = self.guest(cfg, guest6)?;
        let remote = nat::inbound_source(cfg, peer, guest.is_ipv6())?;
        Some(Key {
            proto: match self.fwd.proto {
                Proto::Tcp => ip_proto::TCP,
                Proto::Udp => ip_proto::UDP,
            },
            guest,
            remote,
        })
    }
}

fn bind_one(fwd: &Forward) -> io::Result<Sock> {
    let fam = if fwd.bind.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let ty = match fwd.proto {
        Proto::Tcp => SockType::Stream,
        Proto::Udp => SockType::Datagram,
    };
    let fd = sock::socket(
        fam,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if fwd.bind.is_ipv6() {
        sock::setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    if fwd.proto == Proto::Tcp {
        sock::setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    }
    if let Some(dev) = &fwd.device {
        sock::setsockopt(&fd, sockopt::BindToDevice, &std::ffi::OsString::from(dev))?;
    }
    sock::bind(fd.as_raw_fd(), &SockaddrStorage::from(fwd.bind))?;
    Ok(match fwd.proto {
        Proto::Tcp => {
            sock::listen(&fd, Backlog::new(128).unwrap_or(Backlog::MAXCONN))?;
            Sock::Tcp(TcpListener::from(fd))
        }
        Proto::Udp => Sock::Udp(fd),
    })
}

/// Bind every forward of `cfg`; the error names the forward that failed.
/// A best-effort forward (passt's `all`) that cannot be bound is skipped,
/// unless none of them could be; they stop where binding more would leave
/// fewer descriptors than `--max-flows` needs.
pub fn bind_forwards(cfg: &Config) -> io::Result<Vec<Listener>> {
    let mut out = Vec::with_capacity(cfg.forwards.len());
    let (mut tried, mut skipped) = (0usize, 0usize);
    let budget = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft as usize)
        .unwrap_or(1024)
        .saturating_sub(cfg.max_flows + 256);
    for fwd in &cfg.forwards {
        if fwd.best_effort && out.len() >= budget {
            tried += 1;
            skipped += 1;
            continue;
        }
        match bind_one(fwd) {
            Ok(sock) => out.push(Listener {
                fwd: fwd.clone(),
                sock,
            }),
            Err(_) if fwd.best_effort => skipped += 1,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", Shown(fwd)))),
        }
        tried += usize::from(fwd.best_effort);
    }
    if tried > 0 && skipped == tried {
        return Err(io::Error::other(
            "no port of an 'all' forward could be bound",
        ));
    }
    if skipped > 0 {
        log::warn!("{skipped} of {tried} ports of 'all' forwards not bound (in use, or beyond the descriptor limit)");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port free right now on loopback (for both UDP and TCP, likely).
    fn free_port() -> u16 {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    }

    #[test]
    fn binds_and_names_a_taken_port() {
        let (u, t) = (free_port(), free_port());
        let (u, t) = (
            format!("udp:127.0.0.1:{u}-:7"),
            format!("tcp:127.0.0.1:{t}-:8"),
        );
        let c = Config::for_test_upstream(&["--hostfwd", &u, "--hostfwd", &t]);
        let ls = bind_forwards(&c).unwrap();
        assert_eq!(ls.len(), 2);
        assert_eq!(ls[0].proto(), Proto::Udp);
        assert!(ls[1].accept().unwrap().is_none());
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let c = Config::for_test_upstream(&[
            "--hostfwd",
            &format!("udp:127.0.0.1:{port}-10.0.2.15:53"),
        ]);
        let e = bind_forwards(&c).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("forward udp:127.0.0.1:{port}-10.0.2.15:53")),
            "{msg}"
        );
    }

    #[test]
    fn keys_show_loopback_peers_as_the_virtual_host() {
        let c = Config::for_test_upstream(&[
            "--hostfwd",
            &format!("udp:127.0.0.1:{}-:5000", free_port()),
        ]);
        let ls = bind_forwards(&c).unwrap();
        let k = ls[0]
            .key(&c, None, "127.0.0.1:4444".parse().unwrap())
            .unwrap();
        assert_eq!(k.guest, "10.0.2.15:5000".parse().unwrap());
        assert_eq!(k.remote, "10.0.2.2:4444".parse().unwrap());
        assert_eq!(k.proto, ip_proto::UDP);
    }
}
