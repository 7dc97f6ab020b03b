//! Neighbour discovery (RFC 4861) messages carried in ICMPv6: router
//! solicitation/advertisement, neighbour solicitation/advertisement, and
//! the options airlock uses (link-layer address, prefix information, MTU,
//! RDNSS and DNSSL from RFC 8106).
//!
//! Options appear in two forms: as parsed (`Wire`, borrowing validated
//! packet bytes) and as built by the caller (`List`), so a `Repr` both
//! parses and emits without allocating.
#![forbid(unsafe_code)]

use std::net::Ipv6Addr;

use super::icmpv6::{self, msg_type, Packet};
use super::{domain, put, Error, Mac, Result};

/// Router advertisement flags.
pub const ROUTER_FLAG_MANAGED: u8 = 0x80;
pub const ROUTER_FLAG_OTHER: u8 = 0x40;
/// Neighbour advertisement flags (first byte of the word after checksum).
pub const NEIGHBOR_FLAG_ROUTER: u8 = 0x80;
pub const NEIGHBOR_FLAG_SOLICITED: u8 = 0x40;
pub const NEIGHBOR_FLAG_OVERRIDE: u8 = 0x20;
/// Prefix information flags.
pub const PREFIX_FLAG_ON_LINK: u8 = 0x80;
pub const PREFIX_FLAG_AUTONOMOUS: u8 = 0x40;

/// Option types.
pub mod kind {
    pub const SOURCE_LLADDR: u8 = 1;
    pub const TARGET_LLADDR: u8 = 2;
    pub const PREFIX_INFO: u8 = 3;
    pub const MTU: u8 = 5;
    pub const RDNSS: u8 = 25;
    pub const DNSSL: u8 = 31;
}

/// Prefix information option body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixInfo {
    pub prefix_len: u8,
    /// `PREFIX_FLAG_*` bits.
    pub flags: u8,
    pub valid_lifetime: u32,
    pub preferred_lifetime: u32,
    pub prefix: Ipv6Addr,
}

/// IPv6 addresses, as packet bytes (a multiple of 16) or a caller's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrList<'a> {
    Wire(&'a [u8]),
    Addrs(&'a [Ipv6Addr]),
}

impl<'a> AddrList<'a> {
    pub fn len(&self) -> usize {
        match self {
            AddrList::Wire(b) => b.len() / 16,
            AddrList::Addrs(a) => a.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn iter(&self) -> impl Iterator<Item = Ipv6Addr> + 'a {
        let (wire, addrs): (&'a [u8], &'a [Ipv6Addr]) = match *self {
            AddrList::Wire(b) => (b, &[]),
            AddrList::Addrs(a) => (&[], a),
        };
        wire.chunks_exact(16)
            .filter_map(|c| <[u8; 16]>::try_from(c).ok().map(Ipv6Addr::from))
            .chain(addrs.iter().copied())
    }
}

/// Domain names, as packet bytes (RFC 1035 encoding plus zero padding) or a
/// caller's list of dotted names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameList<'a> {
    Wire(&'a [u8]),
    Names(&'a [&'a str]),
}

impl<'a> NameList<'a> {
    fn encoded_len(&self) -> Result<usize> {
        match *self {
            NameList::Wire(b) => Ok(b.len()),
            NameList::Names(n) => domain::encoded_len(n),
        }
    }
    fn encode(&self, out: &mut [u8]) -> Result<usize> {
        match *self {
            NameList::Wire(b) => put(out, b).map(|_| b.len()),
            NameList::Names(n) => domain::encode(n, out),
        }
    }
}

/// One option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NdpOption<'a> {
    SourceLinkAddr(Mac),
    TargetLinkAddr(Mac),
    PrefixInfo(PrefixInfo),
    Mtu(u32),
    /// Recursive DNS servers (RFC 8106 §5.1).
    Rdnss {
        lifetime: u32,
        servers: AddrList<'a>,
    },
    /// DNS search list (RFC 8106 §5.2).
    Dnssl {
        lifetime: u32,
        domains: NameList<'a>,
    },
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, u32::from_be_bytes)
}

impl<'a> NdpOption<'a> {
    /// Parses one option from its full bytes (type and length included,
    /// length already checked to be `opt.len() / 8`).
    fn parse(opt: &'a [u8]) -> Result<NdpOption<'a>> {
        let k = *opt.first().ok_or(Error::Truncated)?;
        let units = opt.len() / 8;
        let mac = || -> Result<Mac> {
            opt.get(2..8)
                .and_then(|m| Mac::try_from(m).ok())
                .ok_or(Error::Malformed)
        };
        Ok(match k {
            kind::SOURCE_LLADDR => NdpOption::SourceLinkAddr(mac()?),
            kind::TARGET_LLADDR => NdpOption::TargetLinkAddr(mac()?),
            kind::PREFIX_INFO => {
                if units != 4 {
                    return Err(Error::Malformed);
                }
                let prefix = opt
                    .get(16..32)
                    .and_then(|p| <[u8; 16]>::try_from(p).ok())
                    .ok_or(Error::Malformed)?;
                NdpOption::PrefixInfo(PrefixInfo {
                    prefix_len: opt.get(2).copied().unwrap_or(0),
                    flags: opt.get(3).copied().unwrap_or(0),
                    valid_lifetime: be32(opt, 4),
                    preferred_lifetime: be32(opt, 8),
                    prefix: prefix.into(),
                })
            }
            kind::MTU if units == 1 => NdpOption::Mtu(be32(opt, 4)),
            kind::RDNSS if units >= 3 && units % 2 == 1 => NdpOption::Rdnss {
                lifetime: be32(opt, 4),
                servers: AddrList::Wire(opt.get(8..).unwrap_or(&[])),
            },
            kind::DNSSL if units >= 2 => NdpOption::Dnssl {
                lifetime: be32(opt, 4),
                domains: NameList::Wire(opt.get(8..).unwrap_or(&[])),
            },
            kind::MTU | kind::RDNSS | kind::DNSSL => return Err(Error::Malformed),
            _ => NdpOption::Unknown {
                kind: k,
                data: opt.get(2..).unwrap_or(&[]),
            },
        })
    }

    /// Encoded length in bytes (a multiple of 8).
    pub fn buffer_len(&self) -> Result<usize> {
        let len = match self {
            NdpOption::SourceLinkAddr(_) | NdpOption::TargetLinkAddr(_) | NdpOption::Mtu(_) => 8,
            NdpOption::PrefixInfo(_) => 32,
            NdpOption::Rdnss { servers, .. } => 8 + 16 * servers.len(),
            NdpOption::Dnssl { domains, .. } => (8 + domains.encoded_len()?).next_multiple_of(8),
            NdpOption::Unknown { data, .. } => (2 + data.len()).next_multiple_of(8),
        };
        if len > 255 * 8 {
            return Err(Error::Malformed);
        }
        Ok(len)
    }

    /// Writes the option (zero-padded) at the start of `buf`.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len()?;
        let out = buf.get_mut(..len).ok_or(Error::Truncated)?;
        out.fill(0);
        let k = match self {
            NdpOption::SourceLinkAddr(m) => {
                put(out.get_mut(2..).ok_or(Error::Truncated)?, m)?;
                kind::SOURCE_LLADDR
            }
            NdpOption::TargetLinkAddr(m) => {
                put(out.get_mut(2..).ok_or(Error::Truncated)?, m)?;
                kind::TARGET_LLADDR
            }
            NdpOption::PrefixInfo(p) => {
                let mut b = [0u8; 30];
                b[0] = p.prefix_len;
                b[1] = p.flags;
                b[2..6].copy_from_slice(&p.valid_lifetime.to_be_bytes());
                b[6..10].copy_from_slice(&p.preferred_lifetime.to_be_bytes());
                b[14..30].copy_from_slice(&p.prefix.octets());
                put(out.get_mut(2..).ok_or(Error::Truncated)?, &b)?;
                kind::PREFIX_INFO
            }
            NdpOption::Mtu(m) => {
                put(out.get_mut(4..).ok_or(Error::Truncated)?, &m.to_be_bytes())?;
                kind::MTU
            }
            NdpOption::Rdnss { lifetime, servers } => {
                put(
                    out.get_mut(4..).ok_or(Error::Truncated)?,
                    &lifetime.to_be_bytes(),
                )?;
                for (i, a) in servers.iter().enumerate() {
                    put(
                        out.get_mut(8 + 16 * i..).ok_or(Error::Truncated)?,
                        &a.octets(),
                    )?;
                }
                kind::RDNSS
            }
            NdpOption::Dnssl { lifetime, domains } => {
                put(
                    out.get_mut(4..).ok_or(Error::Truncated)?,
                    &lifetime.to_be_bytes(),
                )?;
                domains.encode(out.get_mut(8..).ok_or(Error::Truncated)?)?;
                kind::DNSSL
            }
            NdpOption::Unknown { kind, data } => {
                put(out.get_mut(2..).ok_or(Error::Truncated)?, data)?;
                *kind
            }
        };
        put(out, &[k, (len / 8) as u8])?;
        Ok(len)
    }
}

/// The options of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Options<'a> {
    /// Packet bytes, validated by `Repr::parse`.
    Wire(&'a [u8]),
    /// Built by the caller, emitted in order.
    List(&'a [NdpOption<'a>]),
}

impl<'a> Options<'a> {
    pub const NONE: Options<'static> = Options::List(&[]);

    pub fn iter(&self) -> OptionsIter<'a> {
        match *self {
            Options::Wire(b) => OptionsIter::Wire(b),
            Options::List(l) => OptionsIter::List(l.iter()),
        }
    }

    pub fn source_lladdr(&self) -> Option<Mac> {
        self.iter().flatten().find_map(|o| match o {
            NdpOption::SourceLinkAddr(m) => Some(m),
            _ => None,
        })
    }

    pub fn target_lladdr(&self) -> Option<Mac> {
        self.iter().flatten().find_map(|o| match o {
            NdpOption::TargetLinkAddr(m) => Some(m),
            _ => None,
        })
    }

    fn buffer_len(&self) -> Result<usize> {
        match *self {
            Options::Wire(b) => Ok(b.len()),
            Options::List(l) => l.iter().try_fold(0, |n, o| Ok(n + o.buffer_len()?)),
        }
    }

    fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        match *self {
            Options::Wire(b) => put(buf, b).map(|_| b.len()),
            Options::List(l) => l.iter().try_fold(0, |n, o| {
                Ok(n + o.emit(buf.get_mut(n..).ok_or(Error::Truncated)?)?)
            }),
        }
    }
}

/// Iterates options; on a zero or overrunning length yields one
/// `Err(Malformed)` and stops.
#[derive(Debug, Clone)]
pub enum OptionsIter<'a> {
    Wire(&'a [u8]),
    List(core::slice::Iter<'a, NdpOption<'a>>),
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<NdpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            OptionsIter::List(l) => l.next().copied().map(Ok),
            OptionsIter::Wire(rest) => {
                if rest.is_empty() {
                    return None;
                }
                let len = usize::from(rest.get(1).copied().unwrap_or(0)) * 8;
                let r = match rest.split_at_checked(len) {
                    Some((opt, tail)) if len > 0 => {
                        *rest = tail;
                        NdpOption::parse(opt)
                    }
                    _ => Err(Error::Malformed),
                };
                if r.is_err() {
                    *rest = &[];
                }
                Some(r)
            }
        }
    }
}

/// A neighbour discovery message, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    RouterSolicit {
        options: Options<'a>,
    },
    RouterAdvert {
        hop_limit: u8,
        /// `ROUTER_FLAG_*` bits.
        flags: u8,
        router_lifetime: u16,
        reachable_time: u32,
        retrans_timer: u32,
        options: Options<'a>,
    },
    NeighborSolicit {
        target: Ipv6Addr,
        options: Options<'a>,
    },
    NeighborAdvert {
        /// `NEIGHBOR_FLAG_*` bits.
        flags: u8,
        target: Ipv6Addr,
        options: Options<'a>,
    },
}

fn addr_at(b: &[u8], at: usize) -> Result<Ipv6Addr> {
    b.get(at..at + 16)
        .and_then(|s| <[u8; 16]>::try_from(s).ok())
        .map(Ipv6Addr::from)
        .ok_or(Error::Truncated)
}

impl<'a> Repr<'a> {
    /// Verifies the checksum, code 0, message length, that every option is
    /// well formed, and that an NS target is not multicast. The caller
    /// checks the IPv6 hop limit is 255 (RFC 4861 §6.1).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        p: &Packet<&'a T>,
        src: Ipv6Addr,
        dst: Ipv6Addr,
    ) -> Result<Repr<'a>> {
        let b: &'a [u8] = (*p.clone().into_inner()).as_ref();
        let (t, code) = (p.msg_type(), p.code());
        let options_at = match t {
            msg_type::ROUTER_SOLICIT => 8,
            msg_type::ROUTER_ADVERT => 16,
            msg_type::NEIGHBOR_SOLICIT | msg_type::NEIGHBOR_ADVERT => 24,
            _ => return Err(Error::Unsupported),
        };
        if !p.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        if code != 0 {
            return Err(Error::Malformed);
        }
        let options = Options::Wire(b.get(options_at..).ok_or(Error::Truncated)?);
        if options.iter().any(|o| o.is_err()) {
            return Err(Error::Malformed);
        }
        let byte = |i: usize| b.get(i).copied().unwrap_or(0);
        Ok(match t {
            msg_type::ROUTER_SOLICIT => Repr::RouterSolicit { options },
            msg_type::ROUTER_ADVERT => Repr::RouterAdvert {
                hop_limit: byte(4),
                flags: byte(5),
                router_lifetime: u16::from_be_bytes([byte(6), byte(7)]),
                reachable_time: be32(b, 8),
                retrans_timer: be32(b, 12),
                options,
            },
            msg_type::NEIGHBOR_SOLICIT => {
                let target = addr_at(b, 8)?;
                if target.is_multicast() {
                    return Err(Error::Malformed);
                }
                Repr::NeighborSolicit { target, options }
            }
            _ => Repr::NeighborAdvert {
                flags: byte(4),
                target: addr_at(b, 8)?,
                options,
            },
        })
    }

    fn options(&self) -> Options<'a> {
        match *self {
            Repr::RouterSolicit { options }
            | Repr::RouterAdvert { options, .. }
            | Repr::NeighborSolicit { options, .. }
            | Repr::NeighborAdvert { options, .. } => options,
        }
    }

    fn fixed_len(&self) -> usize {
        match self {
            Repr::RouterSolicit { .. } => 8,
            Repr::RouterAdvert { .. } => 16,
            _ => 24,
        }
    }

    pub fn buffer_len(&self) -> Result<usize> {
        Ok(self.fixed_len() + self.options().buffer_len()?)
    }

    /// Writes the whole ICMPv6 message with its checksum.
    pub fn emit(&self, buf: &mut [u8], src: Ipv6Addr, dst: Ipv6Addr) -> Result<usize> {
        let len = self.buffer_len()?;
        let msg = buf.get_mut(..len).ok_or(Error::Truncated)?;
        msg.fill(0);
        let fixed = self.fixed_len();
        let mut head = [0u8; 24];
        match *self {
            Repr::RouterSolicit { .. } => head[0] = msg_type::ROUTER_SOLICIT,
            Repr::RouterAdvert {
                hop_limit,
                flags,
                router_lifetime,
                reachable_time,
                retrans_timer,
                ..
            } => {
                head[0] = msg_type::ROUTER_ADVERT;
                head[4] = hop_limit;
                head[5] = flags;
                head[6..8].copy_from_slice(&router_lifetime.to_be_bytes());
                head[8..12].copy_from_slice(&reachable_time.to_be_bytes());
                head[12..16].copy_from_slice(&retrans_timer.to_be_bytes());
            }
            Repr::NeighborSolicit { target, .. } => {
                head[0] = msg_type::NEIGHBOR_SOLICIT;
                head[8..24].copy_from_slice(&target.octets());
            }
            Repr::NeighborAdvert { flags, target, .. } => {
                head[0] = msg_type::NEIGHBOR_ADVERT;
                head[4] = flags;
                head[8..24].copy_from_slice(&target.octets());
            }
        }
        put(msg, head.get(..fixed).unwrap_or(&head))?;
        self.options()
            .emit(msg.get_mut(fixed..).ok_or(Error::Truncated)?)?;
        let mut p = icmpv6::Packet::new_checked(msg)?;
        p.fill_checksum(src, dst);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex, ip6, GUEST_MAC, ROUTER_MAC};

    fn rs() -> Vec<u8> {
        hex("8500 71b5 00000000 0101525400123456")
    }
    fn ns() -> Vec<u8> {
        hex("8700 71a0 00000000 fec00000000000000000000000000002 0101525400123456")
    }
    fn na() -> Vec<u8> {
        hex("8800 4348 60000000 fec00000000000000000000000000002 0201525600000002")
    }
    /// RA: hop limit 64, O flag, lifetime 1800 s, SLLA, MTU 65520, prefix
    /// fec0::/64 (L, A), RDNSS fec0::3, DNSSL example.org.
    fn ra() -> Vec<u8> {
        hex("8600 9e40 40 40 0708 00000000 00000000
             0101525600000002
             050100000000fff0
             030440c0 00015180 00003840 00000000 fec00000000000000000000000000000
             19030000 00000e10 fec00000000000000000000000000003
             1f030000 00000e10 076578616d706c65036f726700 000000")
    }

    fn ra_options() -> [NdpOption<'static>; 5] {
        const DNS: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 3)];
        const SEARCH: [&str; 1] = ["example.org"];
        [
            NdpOption::SourceLinkAddr(ROUTER_MAC),
            NdpOption::Mtu(65520),
            NdpOption::PrefixInfo(PrefixInfo {
                prefix_len: 64,
                flags: PREFIX_FLAG_ON_LINK | PREFIX_FLAG_AUTONOMOUS,
                valid_lifetime: 86400,
                preferred_lifetime: 14400,
                prefix: Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
            }),
            NdpOption::Rdnss {
                lifetime: 3600,
                servers: AddrList::Addrs(&DNS),
            },
            NdpOption::Dnssl {
                lifetime: 3600,
                domains: NameList::Names(&SEARCH),
            },
        ]
    }

    #[test]
    fn router_solicit_golden() {
        let g = rs();
        let p = Packet::new_checked(&g[..]).unwrap();
        let src = ip6("fe80::5054:ff:fe12:3456");
        let r = Repr::parse(&p, src, ip6("ff02::2")).unwrap();
        assert_eq!(r.options().source_lladdr(), Some(GUEST_MAC));
        let opts = [NdpOption::SourceLinkAddr(GUEST_MAC)];
        let built = Repr::RouterSolicit {
            options: Options::List(&opts),
        };
        let mut out = [0u8; 16];
        assert_eq!(built.emit(&mut out, src, ip6("ff02::2")), Ok(16));
        assert_eq!(out[..], g[..]);
    }

    #[test]
    fn router_advert_golden() {
        let src = ip6("fe80::5056:ff:fe00:2");
        let dst = ip6("ff02::1");
        let opts = ra_options();
        let built = Repr::RouterAdvert {
            hop_limit: 64,
            flags: ROUTER_FLAG_OTHER,
            router_lifetime: 1800,
            reachable_time: 0,
            retrans_timer: 0,
            options: Options::List(&opts),
        };
        let g = ra();
        assert_eq!(built.buffer_len(), Ok(g.len()));
        let mut out = vec![0u8; g.len()];
        assert_eq!(built.emit(&mut out, src, dst), Ok(g.len()));
        assert_eq!(out, g);
        assert_eq!(
            built.emit(&mut out[..g.len() - 1], src, dst),
            Err(Error::Truncated)
        );

        let p = Packet::new_checked(&g[..]).unwrap();
        let r = Repr::parse(&p, src, dst).unwrap();
        let Repr::RouterAdvert {
            hop_limit,
            flags,
            router_lifetime,
            options,
            ..
        } = r
        else {
            panic!("not an RA: {r:?}");
        };
        assert_eq!(
            (hop_limit, flags, router_lifetime),
            (64, ROUTER_FLAG_OTHER, 1800)
        );
        let parsed: Vec<_> = options.iter().map(|o| o.unwrap()).collect();
        assert_eq!(parsed.len(), 5);
        assert_eq!(parsed[..3], opts[..3]);
        match parsed[3] {
            NdpOption::Rdnss { lifetime, servers } => {
                assert_eq!(lifetime, 3600);
                assert_eq!(servers.iter().collect::<Vec<_>>(), vec![ip6("fec0::3")]);
            }
            o => panic!("{o:?}"),
        }
        match parsed[4] {
            NdpOption::Dnssl {
                lifetime,
                domains: NameList::Wire(w),
            } => {
                assert_eq!(lifetime, 3600);
                let names: Vec<_> = domain::NameIter::new(w).collect();
                assert_eq!(names.len(), 1);
                assert!(names[0].unwrap().eq_dotted("example.org"));
            }
            o => panic!("{o:?}"),
        }
        // Re-emitting the parsed form reproduces the bytes.
        let mut again = vec![0u8; g.len()];
        r.emit(&mut again, src, dst).unwrap();
        assert_eq!(again, g);
    }

    #[test]
    fn neighbor_golden() {
        let guest = ip6("fec0::5054:ff:fe12:3456");
        let host = ip6("fec0::2");
        let g = ns();
        let p = Packet::new_checked(&g[..]).unwrap();
        let r = Repr::parse(&p, guest, ip6("ff02::1:ff00:2")).unwrap();
        match r {
            Repr::NeighborSolicit { target, options } => {
                assert_eq!(target, host);
                assert_eq!(options.source_lladdr(), Some(GUEST_MAC));
            }
            _ => panic!("{r:?}"),
        }
        let opts = [NdpOption::TargetLinkAddr(ROUTER_MAC)];
        let reply = Repr::NeighborAdvert {
            flags: NEIGHBOR_FLAG_SOLICITED | NEIGHBOR_FLAG_OVERRIDE,
            target: host,
            options: Options::List(&opts),
        };
        let mut out = [0u8; 32];
        assert_eq!(reply.emit(&mut out, host, guest), Ok(32));
        assert_eq!(out[..], na()[..]);
        let p = Packet::new_checked(&out[..]).unwrap();
        let back = Repr::parse(&p, host, guest).unwrap();
        assert_eq!(
            match back {
                Repr::NeighborAdvert { options, .. } => options.target_lladdr(),
                _ => None,
            },
            Some(ROUTER_MAC)
        );
    }

    #[test]
    fn rejects() {
        let guest = ip6("fec0::5054:ff:fe12:3456");
        let dst = ip6("ff02::1:ff00:2");
        let check = |bytes: &[u8], want: Error| {
            let mut b = bytes.to_vec();
            let mut p = Packet::new_checked(&mut b[..]).unwrap();
            p.fill_checksum(guest, dst);
            let p = Packet::new_checked(&b[..]).unwrap();
            assert_eq!(Repr::parse(&p, guest, dst), Err(want), "{bytes:02x?}");
        };
        let mut b = ns();
        b[25] = 0; // option length 0
        check(&b, Error::Malformed);
        let mut b = ns();
        b[25] = 2; // overruns
        check(&b, Error::Malformed);
        let mut b = ns();
        b[8] = 0xff; // multicast target
        check(&b, Error::Malformed);
        let mut b = ns();
        b[1] = 1; // code
        check(&b, Error::Malformed);
        check(&ns()[..20], Error::Truncated);
        let mut b = ns();
        b[0] = msg_type::REDIRECT;
        check(&b, Error::Unsupported);
        // Bad RDNSS length (even).
        let mut b = rs();
        b.extend_from_slice(&hex("1902000000000e10 fec00000000000000000000000000003"));
        check(&b, Error::Malformed);
        let p_bad = ns();
        let p = Packet::new_checked(&p_bad[..]).unwrap();
        assert_eq!(Repr::parse(&p, guest, guest), Err(Error::Checksum));
    }

    #[test]
    fn no_panic_on_any_input() {
        let src = ip6("fe80::5056:ff:fe00:2");
        let dst = ip6("ff02::1");
        let g = [rs(), ns(), na(), ra()];
        fuzz(&[&g[0], &g[1], &g[2], &g[3]], 3000, 140, |b| {
            // Reach past the checksum: fix it up for every input.
            if let Ok(mut p) = Packet::new_checked(&mut *b) {
                p.fill_checksum(src, dst);
            }
            let _ = OptionsIter::Wire(b).count();
            if let Ok(p) = Packet::new_checked(&*b) {
                if let Ok(r) = Repr::parse(&p, src, dst) {
                    let _ = r.options().iter().count();
                    let mut out = [0u8; 160];
                    // Reserved bytes are not kept; everything else is.
                    assert_eq!(r.emit(&mut out, src, dst), Ok(b.len()));
                    let p = Packet::new_checked(&out[..b.len()]).unwrap();
                    assert_eq!(Repr::parse(&p, src, dst), Ok(r));
                }
            }
        });
    }
}
