//! DHCPv6 (RFC 8415) client messages and server replies, with the options
//! a stateful or stateless server needs: client/server id, IA_NA with IA
//! addresses, ORO, elapsed time, rapid commit, status code, DNS servers
//! (23) and domain list (24, RFC 3646).
#![forbid(unsafe_code)]

use std::net::Ipv6Addr;

use super::{domain, put, walk_step, Error, Result};

pub const CLIENT_PORT: u16 = 546;
pub const SERVER_PORT: u16 = 547;
/// Message type and transaction id.
pub const HEADER_LEN: usize = 4;

/// Option codes.
pub mod opt {
    pub const CLIENT_ID: u16 = 1;
    pub const SERVER_ID: u16 = 2;
    pub const IA_NA: u16 = 3;
    pub const IA_TA: u16 = 4;
    pub const IA_ADDR: u16 = 5;
    pub const ORO: u16 = 6;
    pub const PREFERENCE: u16 = 7;
    pub const ELAPSED_TIME: u16 = 8;
    pub const STATUS_CODE: u16 = 13;
    pub const RAPID_COMMIT: u16 = 14;
    pub const DNS_SERVERS: u16 = 23;
    pub const DOMAIN_LIST: u16 = 24;
    /// Client FQDN (RFC 4704): flags, then the name in DNS wire format.
    pub const CLIENT_FQDN: u16 = 39;
}

/// Status codes (option 13).
pub mod status {
    pub const SUCCESS: u16 = 0;
    pub const UNSPEC_FAIL: u16 = 1;
    pub const NO_ADDRS_AVAIL: u16 = 2;
    pub const NO_BINDING: u16 = 3;
    pub const NOT_ON_LINK: u16 = 4;
    pub const USE_MULTICAST: u16 = 5;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Solicit,
    Advertise,
    Request,
    Confirm,
    Renew,
    Rebind,
    Reply,
    Release,
    Decline,
    Reconfigure,
    InformationRequest,
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(v: u8) -> MessageType {
        use MessageType::*;
        match v {
            1 => Solicit,
            2 => Advertise,
            3 => Request,
            4 => Confirm,
            5 => Renew,
            6 => Rebind,
            7 => Reply,
            8 => Release,
            9 => Decline,
            10 => Reconfigure,
            11 => InformationRequest,
            v => Unknown(v),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(t: MessageType) -> u8 {
        use MessageType::*;
        match t {
            Solicit => 1,
            Advertise => 2,
            Request => 3,
            Confirm => 4,
            Renew => 5,
            Rebind => 6,
            Reply => 7,
            Release => 8,
            Decline => 9,
            Reconfigure => 10,
            InformationRequest => 11,
            Unknown(v) => v,
        }
    }
}

/// A checked view of a DHCPv6 client/server message (the UDP payload).
/// Relay messages are not handled.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn byte(&self, i: usize) -> u8 {
        self.buffer.as_ref().get(i).copied().unwrap_or(0)
    }
    pub fn msg_type(&self) -> MessageType {
        self.byte(0).into()
    }
    /// The 24-bit transaction id.
    pub fn transaction_id(&self) -> u32 {
        u32::from_be_bytes([0, self.byte(1), self.byte(2), self.byte(3)])
    }
    pub fn options(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_msg_type(&mut self, t: MessageType) {
        if let Some(b) = self.buffer.as_mut().first_mut() {
            *b = t.into();
        }
    }
    pub fn options_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// One option: code and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dhcpv6Option<'a> {
    pub code: u16,
    pub data: &'a [u8],
}

/// Iterates options (also those nested in IA_NA/IA_ADDR); yields one
/// `Err(Truncated)` and stops when a header or length runs past the end.
#[derive(Debug, Clone)]
pub struct OptionsIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionsIter<'a> {
    pub fn new(options: &'a [u8]) -> OptionsIter<'a> {
        OptionsIter { rest: options }
    }
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = Result<Dhcpv6Option<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let parsed = self.rest.split_first_chunk::<4>().and_then(|(h, tail)| {
            let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
            let (data, rest) = tail.split_at_checked(len)?;
            let code = u16::from_be_bytes([h[0], h[1]]);
            Some((Dhcpv6Option { code, data }, rest))
        });
        Some(walk_step(&mut self.rest, parsed))
    }
}

/// An IA_NA as found in a client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IaNa<'a> {
    pub iaid: u32,
    pub t1: u32,
    pub t2: u32,
    /// The nested options (IA addresses the client asks for, ...).
    pub options: &'a [u8],
}

impl<'a> IaNa<'a> {
    fn parse(data: &'a [u8]) -> Result<IaNa<'a>> {
        let (h, options) = data.split_first_chunk::<12>().ok_or(Error::Malformed)?;
        let [a0, a1, a2, a3, b0, b1, b2, b3, c0, c1, c2, c3] = *h;
        Ok(IaNa {
            iaid: u32::from_be_bytes([a0, a1, a2, a3]),
            t1: u32::from_be_bytes([b0, b1, b2, b3]),
            t2: u32::from_be_bytes([c0, c1, c2, c3]),
            options,
        })
    }

    /// The addresses inside (hints from a client, leases from a server).
    pub fn addresses(&self) -> impl Iterator<Item = IaAddress> + 'a {
        OptionsIter::new(self.options)
            .map_while(|o| o.ok())
            .filter(|o| o.code == opt::IA_ADDR)
            .filter_map(|o| {
                let (a, rest) = o.data.split_first_chunk::<16>()?;
                let (l, _) = rest.split_first_chunk::<8>()?;
                Some(IaAddress {
                    addr: Ipv6Addr::from(*a),
                    preferred_lifetime: u32::from_be_bytes([l[0], l[1], l[2], l[3]]),
                    valid_lifetime: u32::from_be_bytes([l[4], l[5], l[6], l[7]]),
                })
            })
    }
}

/// An IA address (option 5) without nested options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IaAddress {
    pub addr: Ipv6Addr,
    pub preferred_lifetime: u32,
    pub valid_lifetime: u32,
}

/// A client message, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    pub msg_type: MessageType,
    pub transaction_id: u32,
    /// The client's DUID.
    pub client_id: Option<&'a [u8]>,
    pub server_id: Option<&'a [u8]>,
    /// The first IA_NA (one per client is all airlock hands out).
    pub ia_na: Option<IaNa<'a>>,
    /// Raw option request list: big-endian u16 codes.
    pub oro: Option<&'a [u8]>,
    pub elapsed_time: Option<u16>,
    pub rapid_commit: bool,
}

impl<'a> Repr<'a> {
    /// Fails with `Malformed` on a truncated option list or wrongly sized
    /// fixed options. Unknown options are skipped.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>> {
        let b: &'a [u8] = (*p.clone().into_inner()).as_ref();
        let mut r = Repr {
            msg_type: p.msg_type(),
            transaction_id: p.transaction_id(),
            client_id: None,
            server_id: None,
            ia_na: None,
            oro: None,
            elapsed_time: None,
            rapid_commit: false,
        };
        for o in OptionsIter::new(b.get(HEADER_LEN..).unwrap_or(&[])) {
            let o = o.map_err(|_| Error::Malformed)?;
            match o.code {
                opt::CLIENT_ID => r.client_id = Some(o.data),
                opt::SERVER_ID => r.server_id = Some(o.data),
                opt::IA_NA if r.ia_na.is_none() => r.ia_na = Some(IaNa::parse(o.data)?),
                opt::ORO if o.data.len() % 2 == 0 => r.oro = Some(o.data),
                opt::ELAPSED_TIME => {
                    let v: [u8; 2] = o.data.try_into().map_err(|_| Error::Malformed)?;
                    r.elapsed_time = Some(u16::from_be_bytes(v));
                }
                opt::RAPID_COMMIT => r.rapid_commit = true,
                opt::ORO => return Err(Error::Malformed),
                _ => {}
            }
        }
        Ok(r)
    }

    /// True if the client's ORO lists `code`.
    pub fn requests(&self, code: u16) -> bool {
        self.oro.is_some_and(|o| {
            o.chunks_exact(2)
                .any(|c| c == code.to_be_bytes().as_slice())
        })
    }
}

/// An option to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionRepr<'a> {
    ClientId(&'a [u8]),
    ServerId(&'a [u8]),
    IaNa {
        iaid: u32,
        t1: u32,
        t2: u32,
        addresses: &'a [IaAddress],
        /// A status code nested in the IA (e.g. NoAddrsAvail).
        status: Option<(u16, &'a str)>,
    },
    Preference(u8),
    StatusCode(u16, &'a str),
    RapidCommit,
    DnsServers(&'a [Ipv6Addr]),
    DomainList(&'a [&'a str]),
    Raw {
        code: u16,
        data: &'a [u8],
    },
}

/// Writes `code`, a length placeholder, calls `body`, then fills the length.
fn write_option(
    buf: &mut [u8],
    code: u16,
    body: impl FnOnce(&mut [u8]) -> Result<usize>,
) -> Result<usize> {
    put(buf, &code.to_be_bytes())?;
    let len = body(buf.get_mut(4..).ok_or(Error::Truncated)?)?;
    let len16 = u16::try_from(len).map_err(|_| Error::Malformed)?;
    put(
        buf.get_mut(2..).ok_or(Error::Truncated)?,
        &len16.to_be_bytes(),
    )?;
    Ok(4 + len)
}

fn write_status(buf: &mut [u8], code: u16, msg: &str) -> Result<usize> {
    write_option(buf, opt::STATUS_CODE, |b| {
        put(b, &code.to_be_bytes())?;
        put(b.get_mut(2..).ok_or(Error::Truncated)?, msg.as_bytes())?;
        Ok(2 + msg.len())
    })
}

impl OptionRepr<'_> {
    /// Writes the option at the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        match *self {
            OptionRepr::ClientId(d) => {
                write_option(buf, opt::CLIENT_ID, |b| put(b, d).map(|_| d.len()))
            }
            OptionRepr::ServerId(d) => {
                write_option(buf, opt::SERVER_ID, |b| put(b, d).map(|_| d.len()))
            }
            OptionRepr::IaNa {
                iaid,
                t1,
                t2,
                addresses,
                status,
            } => write_option(buf, opt::IA_NA, |b| {
                let mut head = [0u8; 12];
                head[..4].copy_from_slice(&iaid.to_be_bytes());
                head[4..8].copy_from_slice(&t1.to_be_bytes());
                head[8..].copy_from_slice(&t2.to_be_bytes());
                put(b, &head)?;
                let mut n = 12;
                for a in addresses {
                    n +=
                        write_option(b.get_mut(n..).ok_or(Error::Truncated)?, opt::IA_ADDR, |b| {
                            put(b, &a.addr.octets())?;
                            put(
                                b.get_mut(16..).ok_or(Error::Truncated)?,
                                &a.preferred_lifetime.to_be_bytes(),
                            )?;
                            put(
                                b.get_mut(20..).ok_or(Error::Truncated)?,
                                &a.valid_lifetime.to_be_bytes(),
                            )?;
                            Ok(24)
                        })?;
                }
                if let Some((code, msg)) = status {
                    n += write_status(b.get_mut(n..).ok_or(Error::Truncated)?, code, msg)?;
                }
                Ok(n)
            }),
            OptionRepr::Preference(p) => {
                write_option(buf, opt::PREFERENCE, |b| put(b, &[p]).map(|_| 1))
            }
            OptionRepr::StatusCode(code, msg) => write_status(buf, code, msg),
            OptionRepr::RapidCommit => write_option(buf, opt::RAPID_COMMIT, |_| Ok(0)),
            OptionRepr::DnsServers(addrs) => write_option(buf, opt::DNS_SERVERS, |b| {
                for (i, a) in addrs.iter().enumerate() {
                    put(b.get_mut(16 * i..).ok_or(Error::Truncated)?, &a.octets())?;
                }
                Ok(16 * addrs.len())
            }),
            OptionRepr::DomainList(names) => {
                write_option(buf, opt::DOMAIN_LIST, |b| domain::encode(names, b))
            }
            OptionRepr::Raw { code, data } => {
                write_option(buf, code, |b| put(b, data).map(|_| data.len()))
            }
        }
    }
}

/// A server message (ADVERTISE, REPLY) header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub msg_type: MessageType,
    pub transaction_id: u32,
}

impl Reply {
    /// Writes the header and `options` in order; returns the length.
    pub fn emit(&self, buf: &mut [u8], options: &[OptionRepr]) -> Result<usize> {
        let id = self.transaction_id.to_be_bytes();
        put(buf, &[self.msg_type.into(), id[1], id[2], id[3]])?;
        options.iter().try_fold(HEADER_LEN, |n, o| {
            Ok(n + o.emit(buf.get_mut(n..).ok_or(Error::Truncated)?)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex};

    const CLIENT_DUID: &str = "00030001525400123456";
    const SERVER_DUID: &str = "00030001525600000002";

    fn solicit() -> Vec<u8> {
        hex(
            "01 5a1b2c 0001000a00030001525400123456 000800020000 000600040017 0018
             0003000c123456780000000000000000 000e0000",
        )
    }
    fn reply() -> Vec<u8> {
        hex(
            "07 5a1b2c 0002000a00030001525600000002 0001000a00030001525400123456
             00030028 12345678 00000e10 00001518
               00050018 fec0000000000000505400fffe123456 00000e10 00001c20
             00170010 fec00000000000000000000000000003
             0018000d 076578616d706c65036f726700 000e0000",
        )
    }
    fn status_reply() -> Vec<u8> {
        hex(
            "07 5a1b2c 0002000a00030001525600000002 0001000a00030001525400123456
             000d000a 0002 6e6f206164647273",
        )
    }

    /// An option whose length runs past the end yields one error and ends
    /// the walk.
    #[test]
    fn options_walk_stops_at_a_truncated_option() {
        let opts = hex("0001 0002 abcd 0002 0004 ab");
        let mut it = OptionsIter::new(&opts);
        assert_eq!(
            it.next(),
            Some(Ok(Dhcpv6Option {
                code: 1,
                data: &[0xab, 0xcd]
            }))
        );
        assert_eq!(it.next(), Some(Err(Error::Truncated)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn parse_solicit() {
        let g = solicit();
        let p = Packet::new_checked(&g[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.msg_type, MessageType::Solicit);
        assert_eq!(r.transaction_id, 0x5a1b2c);
        assert_eq!(r.client_id, Some(&hex(CLIENT_DUID)[..]));
        assert_eq!(r.server_id, None);
        assert_eq!(r.elapsed_time, Some(0));
        assert!(r.rapid_commit);
        assert!(r.requests(opt::DNS_SERVERS) && r.requests(opt::DOMAIN_LIST));
        assert!(!r.requests(opt::PREFERENCE));
        let ia = r.ia_na.unwrap();
        assert_eq!((ia.iaid, ia.t1, ia.t2), (0x1234_5678, 0, 0));
        assert_eq!(ia.addresses().count(), 0);
    }

    #[test]
    fn emit_reply_golden() {
        let guest: Ipv6Addr = "fec0::5054:ff:fe12:3456".parse().unwrap();
        let client = hex(CLIENT_DUID);
        let server = hex(SERVER_DUID);
        let addrs = [IaAddress {
            addr: guest,
            preferred_lifetime: 3600,
            valid_lifetime: 7200,
        }];
        let dns = ["fec0::3".parse().unwrap()];
        let reply_hdr = Reply {
            msg_type: MessageType::Reply,
            transaction_id: 0x5a1b2c,
        };
        let opts = [
            OptionRepr::ServerId(&server),
            OptionRepr::ClientId(&client),
            OptionRepr::IaNa {
                iaid: 0x1234_5678,
                t1: 3600,
                t2: 5400,
                addresses: &addrs,
                status: None,
            },
            OptionRepr::DnsServers(&dns),
            OptionRepr::DomainList(&["example.org"]),
            OptionRepr::RapidCommit,
        ];
        let g = reply();
        let mut out = [0u8; 200];
        assert_eq!(reply_hdr.emit(&mut out, &opts), Ok(g.len()));
        assert_eq!(out[..g.len()], g[..]);
        assert_eq!(
            reply_hdr.emit(&mut out[..g.len() - 1], &opts),
            Err(Error::Truncated)
        );
        // The emitted IA reads back.
        let p = Packet::new_checked(&g[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.server_id, Some(&server[..]));
        assert_eq!(r.ia_na.unwrap().addresses().collect::<Vec<_>>(), addrs);

        let st = [
            OptionRepr::ServerId(&server),
            OptionRepr::ClientId(&client),
            OptionRepr::StatusCode(status::NO_ADDRS_AVAIL, "no addrs"),
        ];
        let g = status_reply();
        let n = reply_hdr.emit(&mut out, &st).unwrap();
        assert_eq!(out[..n], g[..]);
    }

    #[test]
    fn nested_status_and_setters() {
        let mut out = [0u8; 64];
        let n = OptionRepr::IaNa {
            iaid: 1,
            t1: 0,
            t2: 0,
            addresses: &[],
            status: Some((status::NO_ADDRS_AVAIL, "x")),
        }
        .emit(&mut out)
        .unwrap();
        assert_eq!(
            out[..n],
            hex("0003 0013 00000001 00000000 00000000 000d0003 0002 78")[..]
        );
        let mut g = solicit();
        let mut p = Packet::new_checked(&mut g[..]).unwrap();
        p.set_msg_type(MessageType::Request);
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(
            (p.msg_type(), p.transaction_id()),
            (MessageType::Request, 0x5a1b2c)
        );
    }

    #[test]
    fn rejects() {
        let g = solicit();
        let p = Packet::new_checked(&g[..g.len() - 1]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        let mut g = solicit();
        g[19] = 3; // elapsed time of length 3 swallows the next byte
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        assert_eq!(Packet::new_checked(&g[..3]).err(), Some(Error::Truncated));
        let long = [0u8; 70_000];
        let mut out = vec![0u8; 70_010];
        assert_eq!(
            OptionRepr::ClientId(&long).emit(&mut out),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn no_panic_on_any_input() {
        let g = [solicit(), reply(), status_reply()];
        fuzz(&[&g[0], &g[1], &g[2]], 4000, 160, |b| {
            let _ = OptionsIter::new(b).count();
            if let Ok(p) = Packet::new_checked(&*b) {
                if let Ok(r) = Repr::parse(&p) {
                    let _ = r.requests(23);
                    if let Some(ia) = r.ia_na {
                        let _ = ia.addresses().count();
                    }
                }
            }
        });
    }
}
