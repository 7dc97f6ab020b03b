//! Where guest connections leave the host from: `--outbound-addr ADDR` (one
//! per family; slirp4netns `--outbound-addr`, passt `-o`, libslirp
//! `outbound_addr`) and `--outbound-if4`/`--outbound-if6 IFNAME` (passt).
//!
//! Applied to every host socket a guest flow opens, before its connect:
//! the interface through `SO_BINDTODEVICE` (unprivileged since Linux 5.7 on
//! a socket not yet bound to a device), the address through `bind`. A TCP
//! socket sets `IP_BIND_ADDRESS_NO_PORT` first and binds port 0, so no port
//! is taken until connect picks one with the 4-tuple; landlock's TCP-bind
//! rule sees port 0 and nothing else (see docs/security.md), and `listen`
//! stays outside the runtime seccomp filter, so none of these sockets can
//! ever listen. UDP and ICMP sockets bind the address with the guest's
//! port as before (landlock does not govern them).
//!
//! Destinations on the host's loopback (the virtual host address mapped to
//! 127.0.0.1 or ::1) are left alone: loopback is no interface's traffic.
//!
//! #syscalls: setsockopt bind
#![forbid(unsafe_code)]

use nix::sys::socket::{self as sock, sockopt, SockaddrStorage};
use std::ffi::OsString;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

/// Longest interface name (IFNAMSIZ without the NUL).
const IFNAME_MAX: usize = 15;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbound {
    pub addr4: Option<Ipv4Addr>,
    pub addr6: Option<Ipv6Addr>,
    pub if4: Option<String>,
    pub if6: Option<String>,
}

impl Outbound {
    /// From `--outbound-addr` (at most one per family) and the interfaces;
    /// an error names the option at fault.
    pub fn parse(
        addrs: &[String],
        if4: Option<&str>,
        if6: Option<&str>,
    ) -> Result<Outbound, (&'static str, String)> {
        const ADDR: &str = "--outbound-addr";
        let mut o = Outbound::default();
        for a in addrs {
            match a.trim().parse::<IpAddr>() {
                Ok(IpAddr::V4(v)) if o.addr4.is_none() => o.addr4 = Some(v),
                Ok(IpAddr::V6(v)) if o.addr6.is_none() => o.addr6 = Some(v),
                Ok(_) => return Err((ADDR, format!("'{a}': one address per family"))),
                Err(_) => return Err((ADDR, format!("'{a}' is not an IP address"))),
            }
        }
        for a in o
            .addr4
            .map(IpAddr::V4)
            .into_iter()
            .chain(o.addr6.map(IpAddr::V6))
        {
            if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
                return Err((ADDR, format!("{a}: not a unicast host address")));
            }
        }
        let name = |opt, n: Option<&str>| match n {
            None => Ok(None),
            Some(n) if n.is_empty() || n.len() > IFNAME_MAX || n.contains(['/', ' ', '\0']) => {
                Err((opt, format!("'{n}' is not an interface name")))
            }
            Some(n) => Ok(Some(n.to_string())),
        };
        o.if4 = name("--outbound-if4", if4)?;
        o.if6 = name("--outbound-if6", if6)?;
        Ok(o)
    }

    /// The source address for a socket to `dst`: the configured one, or
    /// the family's unspecified address.
    pub fn local(&self, dst: &SocketAddr) -> IpAddr {
        match (dst.ip(), self.applies(dst)) {
            (IpAddr::V4(_), true) => IpAddr::V4(self.addr4.unwrap_or(Ipv4Addr::UNSPECIFIED)),
            (IpAddr::V4(_), false) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            (IpAddr::V6(_), true) => IpAddr::V6(self.addr6.unwrap_or(Ipv6Addr::UNSPECIFIED)),
            (IpAddr::V6(_), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }

    /// Whether a TCP socket will bind (landlock then needs its port-0 rule).
    pub fn binds_tcp(&self) -> bool {
        self.addr4.is_some() || self.addr6.is_some()
    }

    fn applies(&self, dst: &SocketAddr) -> bool {
        !dst.ip().is_loopback()
    }

    fn interface(&self, dst: &SocketAddr) -> Option<&str> {
        if !self.applies(dst) {
            return None;
        }
        match dst {
            SocketAddr::V4(_) => self.if4.as_deref(),
            SocketAddr::V6(_) => self.if6.as_deref(),
        }
    }

    /// The interface, for any socket to `dst` (call before bind/connect).
    pub fn bind_device(&self, fd: &OwnedFd, dst: &SocketAddr) -> io::Result<()> {
        if let Some(name) = self.interface(dst) {
            sock::setsockopt(fd, sockopt::BindToDevice, &OsString::from(name))?;
        }
        Ok(())
    }

    /// Interface and address for a TCP socket to `dst`, before connect.
    pub fn prepare_tcp(&self, fd: &OwnedFd, dst: &SocketAddr) -> io::Result<()> {
        self.bind_device(fd, dst)?;
        let local = self.local(dst);
        if local.is_unspecified() {
            return Ok(());
        }
        sock::setsockopt(fd, sockopt::IpBindAddressNoPort, &true)?;
        sock::bind(
            fd.as_raw_fd(),
            &SockaddrStorage::from(SocketAddr::new(local, 0)),
        )?;
        Ok(())
    }

    /// Interface and address for a UDP or ICMP socket to `dst`: the
    /// guest's `port` (identifier) if free, else any port of the address.
    pub fn prepare_dgram(&self, fd: &OwnedFd, dst: &SocketAddr, port: u16) -> io::Result<()> {
        self.bind_device(fd, dst)?;
        let local = self.local(dst);
        let at = |p| SockaddrStorage::from(SocketAddr::new(local, p));
        if sock::bind(fd.as_raw_fd(), &at(port)).is_ok() {
            return Ok(());
        }
        // Without an outbound address connect picks a port itself.
        if !local.is_unspecified() {
            sock::bind(fd.as_raw_fd(), &at(0))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{getsockname, socket, AddressFamily, SockFlag, SockType};

    fn o(addrs: &[&str]) -> Result<Outbound, (&'static str, String)> {
        let v: Vec<String> = addrs.iter().map(|s| s.to_string()).collect();
        Outbound::parse(&v, None, None)
    }

    #[test]
    fn one_address_per_family() {
        let x = o(&["192.0.2.9", "2001:db8::9"]).unwrap();
        assert_eq!(x.addr4, Some(Ipv4Addr::new(192, 0, 2, 9)));
        assert_eq!(x.addr6, Some("2001:db8::9".parse().unwrap()));
        assert!(x.binds_tcp());
        assert!(o(&["192.0.2.9", "192.0.2.10"]).is_err());
        assert!(o(&["0.0.0.0"]).is_err());
        assert!(o(&["127.0.0.1"]).is_err());
        assert!(o(&["nonsense"]).is_err());
        assert!(!o(&[]).unwrap().binds_tcp());
        assert!(Outbound::parse(&[], Some("a/b"), None).is_err());
        assert!(Outbound::parse(&[], None, Some("sixteen-chars-xx")).is_err());
        assert_eq!(
            Outbound::parse(&[], Some("eth1"), None)
                .unwrap()
                .if4
                .as_deref(),
            Some("eth1")
        );
    }

    #[test]
    fn loopback_destinations_keep_the_default_source() {
        let x = o(&["192.0.2.9"]).unwrap();
        let lo: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let far: SocketAddr = "198.51.100.1:80".parse().unwrap();
        let far6: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
        assert!(x.local(&lo).is_unspecified());
        assert_eq!(x.local(&far), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)));
        assert!(x.local(&far6).is_unspecified(), "no IPv6 address set");
    }

    #[test]
    fn tcp_binds_the_address_without_a_port() {
        // 127.0.0.2 is a local address on any Linux loopback; the
        // destination only picks the family here.
        let x = Outbound {
            addr4: Some(Ipv4Addr::new(127, 0, 0, 2)),
            ..Outbound::default()
        };
        let fd = socket(
            AddressFamily::Inet,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        x.prepare_tcp(&fd, &"198.51.100.1:80".parse().unwrap())
            .unwrap();
        let name: SockaddrStorage = getsockname(fd.as_raw_fd()).unwrap();
        let sin = name.as_sockaddr_in().unwrap();
        assert_eq!((sin.ip(), sin.port()), (Ipv4Addr::new(127, 0, 0, 2), 0));
        assert!(sock::getsockopt(&fd, sockopt::IpBindAddressNoPort).unwrap());
    }
}
