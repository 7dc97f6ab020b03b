//! rtnetlink (RFC 3549, `linux/rtnetlink.h`), only what passt's addressing
//! needs at startup: dump requests for addresses and routes, and the
//! replies' `ifaddrmsg`/`rtmsg` headers with their attributes. Netlink is
//! host-endian; the kernel is the only peer, but its replies are still
//! length-checked like anything else.
#![forbid(unsafe_code)]

use std::net::IpAddr;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::{header, put, Error, Result};

pub const NLMSG_HDR_LEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_NEWADDR: u16 = 20;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_GETROUTE: u16 = 26;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_TABLE: u16 = 15;
/// The main routing table.
pub const RT_TABLE_MAIN: u32 = 254;
/// `RT_SCOPE_UNIVERSE`: a global address.
pub const SCOPE_UNIVERSE: u8 = 0;

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `ifaddrmsg`, and `rtgenmsg` padded to the same size for requests.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct IfAddrMsg {
    family: u8,
    prefix_len: u8,
    flags: u8,
    scope: u8,
    index: u32,
}

#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct RtMsg {
    family: u8,
    dst_len: u8,
    src_len: u8,
    tos: u8,
    table: u8,
    protocol: u8,
    scope: u8,
    kind: u8,
    flags: u32,
}

const IFADDRMSG_LEN: usize = 8;
const RTMSG_LEN: usize = 12;
/// `RTN_UNICAST`: an ordinary route.
const RTN_UNICAST: u8 = 1;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A dump request for `kind` (RTM_GETADDR, RTM_GETROUTE) of one family.
pub fn emit_dump_request(buf: &mut [u8], kind: u16, family: u8, seq: u32) -> Result<usize> {
    let body = if kind == RTM_GETROUTE {
        RTMSG_LEN
    } else {
        IFADDRMSG_LEN
    };
    let len = NLMSG_HDR_LEN + body;
    let h = NlMsgHdr {
        len: len as u32,
        kind,
        flags: NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        pid: 0,
    };
    put(buf, h.as_bytes())?;
    let rest = buf.get_mut(NLMSG_HDR_LEN..len).ok_or(Error::Truncated)?;
    rest.fill(0);
    put(rest, &[family])?;
    Ok(len)
}

/// One message of a reply: its type, sequence number and payload.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub kind: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

/// The messages of one `recv` buffer, stopping at the first bad length.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let h: &NlMsgHdr = header(rest)?;
        let len = h.len as usize;
        if len < NLMSG_HDR_LEN || len > rest.len() {
            return None;
        }
        let m = Message {
            kind: h.kind,
            seq: h.seq,
            payload: rest.get(NLMSG_HDR_LEN..len)?,
        };
        rest = rest.get(align4(len).min(rest.len())..).unwrap_or(&[]);
        Some(m)
    })
}

/// The errno of an `NLMSG_ERROR` payload (0 is an acknowledgement).
pub fn error_code(payload: &[u8]) -> Result<i32> {
    let b: [u8; 4] = payload
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::Truncated)?;
    Ok(-i32::from_ne_bytes(b))
}

fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes(rest.get(..2)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(rest.get(2..4)?.try_into().ok()?);
        if len < 4 || len > rest.len() {
            return None;
        }
        let data = rest.get(4..len)?;
        rest = rest.get(align4(len).min(rest.len())..).unwrap_or(&[]);
        Some((kind & 0x3fff, data))
    })
}

fn ip(family: u8, data: &[u8]) -> Option<IpAddr> {
    match (family as i32, data.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(data).ok()?)),
        (libc::AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
        _ => None,
    }
}

/// An `RTM_NEWADDR` message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRepr {
    pub index: u32,
    pub prefix_len: u8,
    pub scope: u8,
    pub addr: IpAddr,
}

impl AddrRepr {
    /// Parse the payload of an `RTM_NEWADDR`. IPv4 prefers `IFA_LOCAL`
    /// (the interface's own address; `IFA_ADDRESS` is the peer's on
    /// point-to-point links).
    pub fn parse(payload: &[u8]) -> Result<AddrRepr> {
        let m: &IfAddrMsg = header(payload).ok_or(Error::Truncated)?;
        let rest = payload.get(IFADDRMSG_LEN..).ok_or(Error::Truncated)?;
        let (mut local, mut address) = (None, None);
        for (kind, data) in attrs(rest) {
            match kind {
                IFA_LOCAL => local = ip(m.family, data),
                IFA_ADDRESS => address = ip(m.family, data),
                _ => {}
            }
        }
        let addr = local.or(address).ok_or(Error::Malformed)?;
        Ok(AddrRepr {
            index: m.index,
            prefix_len: m.prefix_len,
            scope: m.scope,
            addr,
        })
    }
}

/// An `RTM_NEWROUTE` message of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRepr {
    pub dst: Option<IpAddr>,
    pub dst_len: u8,
    pub gateway: Option<IpAddr>,
    pub oif: u32,
    pub priority: u32,
    pub table: u32,
    pub unicast: bool,
}

impl RouteRepr {
    pub fn parse(payload: &[u8]) -> Result<RouteRepr> {
        let m: &RtMsg = header(payload).ok_or(Error::Truncated)?;
        let rest = payload.get(RTMSG_LEN..).ok_or(Error::Truncated)?;
        let mut r = RouteRepr {
            dst: None,
            dst_len: m.dst_len,
            gateway: None,
            oif: 0,
            priority: 0,
            table: m.table as u32,
            unicast: m.kind == RTN_UNICAST,
        };
        let u32_of = |d: &[u8]| {
            d.get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
        };
        for (kind, data) in attrs(rest) {
            match kind {
                RTA_DST => r.dst = ip(m.family, data),
                RTA_GATEWAY => r.gateway = ip(m.family, data),
                RTA_OIF => r.oif = u32_of(data).unwrap_or(0),
                RTA_PRIORITY => r.priority = u32_of(data).unwrap_or(0),
                RTA_TABLE => r.table = u32_of(data).unwrap_or(r.table),
                _ => {}
            }
        }
        Ok(r)
    }

    /// A default route: no destination, prefix length 0.
    pub fn is_default(&self) -> bool {
        self.dst_len == 0 && self.unicast && self.table == RT_TABLE_MAIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::Rng;

    fn attr(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut v = ((4 + data.len()) as u16).to_ne_bytes().to_vec();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(data);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn msg(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut v = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&7u32.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(body);
        v
    }

    fn golden() -> Vec<u8> {
        let mut a = vec![libc::AF_INET as u8, 24, 0, 0];
        a.extend_from_slice(&3u32.to_ne_bytes());
        a.extend(attr(IFA_ADDRESS, &[192, 0, 2, 2]));
        a.extend(attr(IFA_LOCAL, &[192, 0, 2, 2]));
        let mut r = vec![libc::AF_INET as u8, 0, 0, 0, 254, 3, 0, 1];
        r.extend_from_slice(&0u32.to_ne_bytes());
        r.extend(attr(RTA_TABLE, &254u32.to_ne_bytes()));
        r.extend(attr(RTA_GATEWAY, &[192, 0, 2, 1]));
        r.extend(attr(RTA_OIF, &3u32.to_ne_bytes()));
        let mut buf = msg(RTM_NEWADDR, &a);
        buf.extend(msg(RTM_NEWROUTE, &r));
        buf.extend(msg(NLMSG_DONE, &0i32.to_ne_bytes()));
        buf
    }

    #[test]
    fn parses_an_address_and_a_default_route() {
        let buf = golden();
        let m: Vec<Message> = messages(&buf).collect();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].seq, 7);
        let a = AddrRepr::parse(m[0].payload).unwrap();
        assert_eq!((a.index, a.prefix_len), (3, 24));
        assert_eq!(a.addr, IpAddr::from([192, 0, 2, 2]));
        let r = RouteRepr::parse(m[1].payload).unwrap();
        assert!(r.is_default());
        assert_eq!(r.gateway, Some(IpAddr::from([192, 0, 2, 1])));
        assert_eq!(r.oif, 3);
        assert_eq!(m[2].kind, NLMSG_DONE);
    }

    #[test]
    fn dump_request_layout() {
        let mut b = [0xffu8; 64];
        let n = emit_dump_request(&mut b, RTM_GETROUTE, libc::AF_INET6 as u8, 9).unwrap();
        assert_eq!(n, 28);
        assert_eq!(u32::from_ne_bytes(b[..4].try_into().unwrap()), 28);
        assert_eq!(
            u16::from_ne_bytes(b[4..6].try_into().unwrap()),
            RTM_GETROUTE
        );
        assert_eq!(b[16], libc::AF_INET6 as u8);
        assert!(b[17..28].iter().all(|&x| x == 0));
        assert_eq!(
            emit_dump_request(&mut b[..20], RTM_GETADDR, 2, 1),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn no_panic_on_any_input() {
        let g = golden();
        let mut rng = Rng::new(5);
        let mut inputs: Vec<Vec<u8>> = (0..g.len()).map(|n| g[..n].to_vec()).collect();
        for _ in 0..2000 {
            let mut v = g.clone();
            let i = rng.below(v.len());
            v[i] ^= 1 << rng.below(8);
            inputs.push(v);
            let mut r = vec![0u8; rng.below(128)];
            rng.fill(&mut r);
            inputs.push(r);
        }
        for i in &inputs {
            for m in messages(i) {
                let _ = AddrRepr::parse(m.payload);
                let _ = RouteRepr::parse(m.payload);
                let _ = error_code(m.payload);
            }
        }
    }
}
