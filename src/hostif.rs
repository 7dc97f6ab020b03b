//! The host interface passt's addressing copies: its address, prefix and
//! default gateway, read once at startup over a NETLINK_ROUTE socket (the
//! socket is closed before the sandbox; nothing here runs later).
//!
//! #syscalls-startup: socket sendto recvfrom close ioctl
#![forbid(unsafe_code)]

use crate::wire::netlink::{self, AddrRepr, RouteRepr};
use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

/// What one family of the host interface offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostAddr {
    /// The interface (index) these were read from.
    pub index: u32,
    pub addr: Option<(IpAddr, u8)>,
    pub gateway: Option<IpAddr>,
    /// Its IPv6 link-local address: passt's router address on the link.
    pub link_local: Option<std::net::Ipv6Addr>,
}

/// Everything one dump returns, for [`pick`].
#[derive(Debug, Default, Clone)]
pub struct Dump {
    pub addrs: Vec<AddrRepr>,
    pub routes: Vec<RouteRepr>,
}

fn query(family: AddressFamily) -> std::io::Result<Dump> {
    let fd: OwnedFd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    let kernel = NetlinkAddr::new(0, 0);
    let mut out = Dump::default();
    // A startup-only buffer; the kernel's dump messages fit in 32 KiB.
    let mut buf = vec![0u8; 32 * 1024];
    for (seq, kind) in [(1, netlink::RTM_GETADDR), (2, netlink::RTM_GETROUTE)] {
        let n = netlink::emit_dump_request(&mut buf, kind, family as u8, seq)
            .map_err(std::io::Error::other)?;
        sendto(fd.as_raw_fd(), &buf[..n], &kernel, MsgFlags::empty())?;
        'dump: loop {
            let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            if n == 0 {
                break;
            }
            for m in netlink::messages(&buf[..n]) {
                if m.seq != seq {
                    continue;
                }
                match m.kind {
                    netlink::NLMSG_DONE => break 'dump,
                    netlink::NLMSG_ERROR => {
                        let e = netlink::error_code(m.payload).map_err(std::io::Error::other)?;
                        if e != 0 {
                            return Err(std::io::Error::from_raw_os_error(e));
                        }
                        break 'dump;
                    }
                    netlink::RTM_NEWADDR => out.addrs.extend(AddrRepr::parse(m.payload).ok()),
                    netlink::RTM_NEWROUTE => out.routes.extend(RouteRepr::parse(m.payload).ok()),
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// passt's choice: the interface named (`-i`), else the one the default
/// route of this family leaves through (the lowest metric); its first
/// global address, its IPv6 link-local one, and the gateway of its default
/// route.
pub fn pick(d: &Dump, index: Option<u32>) -> Option<HostAddr> {
    let mut defaults: Vec<&RouteRepr> = d
        .routes
        .iter()
        .filter(|r| r.is_default() && r.oif != 0)
        .collect();
    defaults.sort_by_key(|r| r.priority);
    let index = index.or_else(|| defaults.first().map(|r| r.oif))?;
    let addr = d
        .addrs
        .iter()
        .find(|a| a.index == index && a.scope == netlink::SCOPE_UNIVERSE)
        .map(|a| (a.addr, a.prefix_len));
    let gateway = defaults
        .iter()
        .find(|r| r.oif == index)
        .and_then(|r| r.gateway);
    let link_local = d.addrs.iter().find_map(|a| match a.addr {
        IpAddr::V6(x) if a.index == index && x.segments()[0] & 0xffc0 == 0xfe80 => Some(x),
        _ => None,
    });
    Some(HostAddr {
        index,
        addr,
        gateway,
        link_local,
    })
}

/// Read the host interface of each family (`name` as in `-i`, or the
/// default route's). `Ok(None)` for a family with nothing to copy.
pub fn read(name: Option<&str>) -> Result<[Option<HostAddr>; 2], String> {
    let index = match name {
        Some(n) => Some(
            nix::net::if_::if_nametoindex(n)
                .map_err(|e| format!("--interface {n}: no such host interface ({e})"))?,
        ),
        None => None,
    };
    let mut out = [None, None];
    for (i, fam) in [AddressFamily::Inet, AddressFamily::Inet6]
        .into_iter()
        .enumerate()
    {
        let d = query(fam).map_err(|e| format!("reading host addresses over netlink: {e}"))?;
        out[i] = pick(&d, index);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(oif: u32, gw: [u8; 4], priority: u32) -> RouteRepr {
        RouteRepr {
            dst: None,
            dst_len: 0,
            gateway: Some(IpAddr::from(gw)),
            oif,
            priority,
            table: netlink::RT_TABLE_MAIN,
            unicast: true,
        }
    }

    #[test]
    fn picks_the_lowest_metric_default_and_its_address() {
        let d = Dump {
            addrs: vec![
                AddrRepr {
                    index: 1,
                    prefix_len: 8,
                    scope: 254,
                    addr: IpAddr::from([127, 0, 0, 1]),
                },
                AddrRepr {
                    index: 3,
                    prefix_len: 24,
                    scope: 0,
                    addr: IpAddr::from([192, 0, 2, 2]),
                },
                AddrRepr {
                    index: 4,
                    prefix_len: 16,
                    scope: 0,
                    addr: IpAddr::from([10, 9, 0, 5]),
                },
            ],
            routes: vec![route(4, [10, 9, 0, 1], 200), route(3, [192, 0, 2, 1], 100)],
        };
        let h = pick(&d, None).unwrap();
        assert_eq!(h.index, 3);
        assert_eq!(h.addr, Some((IpAddr::from([192, 0, 2, 2]), 24)));
        assert_eq!(h.gateway, Some(IpAddr::from([192, 0, 2, 1])));
        let h = pick(&d, Some(4)).unwrap();
        assert_eq!(h.addr, Some((IpAddr::from([10, 9, 0, 5]), 16)));
        assert_eq!(h.gateway, Some(IpAddr::from([10, 9, 0, 1])));
        assert_eq!(pick(&Dump::default(), None), None);
    }
}
