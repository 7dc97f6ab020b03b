//! Migration state: the bytes airlock gives QEMU's `dbus-vmstate` at `Save`
//! and takes back at `Load` on the destination host.
//!
//! The format is versioned and self-describing: an 8-byte magic, a 16-bit
//! version, the 32-bit length of what follows (so a cut anywhere is seen),
//! then records, each a tag byte, a 16-bit length and that many bytes
//! (big-endian throughout). A reader skips tags it does not know
//! (a newer writer of the same version may add some) and refuses another
//! version outright. The whole state is at most [`MAX_LEN`] (QEMU carries
//! at most 1 MiB per helper) and holds at most [`MAX_RECORDS`] records.
//!
//! [`State::decode`] is total: truncated, oversized or hostile input is an
//! [`Error`], never a panic (`fuzz/fuzz_targets/migrate_state.rs`).
#![forbid(unsafe_code)]

use crate::config::{Config, Proto};
use crate::wire::Mac;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The first bytes of every state.
pub const MAGIC: &[u8; 8] = b"AIRLOCK\x00";
/// The version this build writes and the only one it reads.
pub const VERSION: u16 = 1;
/// QEMU's limit for one helper's state (`DBUS_VMSTATE_SIZE_LIMIT`).
pub const MAX_LEN: usize = 1 << 20;
/// Records in one state: flows and forwards are bounded by the table.
pub const MAX_RECORDS: usize = 65536;

/// Magic, version, length.
const HEADER_LEN: usize = 14;

const TAG_NETWORK: u8 = 1;
const TAG_GUEST_MAC: u8 = 2;
const TAG_GUEST6: u8 = 3;
const TAG_LEASE4: u8 = 4;
const TAG_LEASE6: u8 = 5;
const TAG_FORWARD: u8 = 6;
const TAG_UDP: u8 = 7;
const TAG_TCP: u8 = 8;

/// Why a state was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    BadMagic,
    Version(u16),
    Truncated,
    TooLong,
    TooManyRecords,
    /// A record's body does not parse as its tag says.
    BadRecord(u8),
    /// No network record: nothing to check the destination against.
    NoNetwork,
    /// The state comes from a differently configured network.
    OtherNetwork,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadMagic => write!(f, "not an airlock state"),
            Error::Version(v) => write!(f, "state version {v}, this airlock reads {VERSION}"),
            Error::Truncated => write!(f, "state truncated"),
            Error::TooLong => write!(f, "state longer than {MAX_LEN} bytes"),
            Error::TooManyRecords => write!(f, "state has more than {MAX_RECORDS} records"),
            Error::BadRecord(t) => write!(f, "malformed record (tag {t})"),
            Error::NoNetwork => write!(f, "state has no network record"),
            Error::OtherNetwork => write!(
                f,
                "state comes from a different network configuration (addresses or MTU)"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// What the guest was told about its network: a state only loads into an
/// airlock that tells it exactly the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    /// Network, prefix length, guest, host, DNS.
    pub v4: Option<(Ipv4Addr, u8, Ipv4Addr, Ipv4Addr, Ipv4Addr)>,
    /// Prefix, prefix length, guest, host, DNS.
    pub v6: Option<(Ipv6Addr, u8, Ipv6Addr, Ipv6Addr, Ipv6Addr)>,
    pub mtu: u16,
}

impl Network {
    pub fn of(cfg: &Config) -> Network {
        Network {
            v4: cfg
                .net4
                .as_ref()
                .map(|n| (n.network, n.prefix, n.guest, n.host, n.dns)),
            v6: cfg
                .net6
                .as_ref()
                .map(|n| (n.prefix, n.prefix_len, n.guest, n.host, n.dns)),
            mtu: cfg.mtu,
        }
    }
}

/// A forward as the state names it (its socket stays on the source host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forward {
    pub proto: Proto,
    pub bind: SocketAddr,
    pub guest_addr: Option<IpAddr>,
    pub guest_port: u16,
}

/// A UDP flow: the guest's and the remote's addresses as the guest sees
/// them, the host side it was carried to, and the forward it came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp {
    pub guest: SocketAddr,
    pub remote: SocketAddr,
    pub host: SocketAddr,
    /// The bind address of the forward whose socket carries it, if any.
    pub forward: Option<SocketAddr>,
}

/// A TCP flow's endpoints and sequence state, enough to reset it toward
/// the guest with a segment the guest accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp {
    pub guest: SocketAddr,
    pub remote: SocketAddr,
    /// The next sequence number airlock would send (the guest's RCV.NXT).
    pub snd_nxt: u32,
    /// The next sequence number airlock expects from the guest.
    pub rcv_nxt: u32,
}

/// Everything that migrates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub network: Network,
    pub guest_mac: Option<Mac>,
    /// The IPv6 address the guest was last seen using (SLAAC).
    pub guest6: Option<Ipv6Addr>,
    /// The DHCPv4 lease: address and lease time. airlock's DHCP leases one
    /// address per network, so the destination checks it would lease the
    /// same one.
    pub lease4: Option<(Ipv4Addr, u32)>,
    /// The DHCPv6 lease (IA_NA address).
    pub lease6: Option<Ipv6Addr>,
    pub forwards: Vec<Forward>,
    pub udp: Vec<Udp>,
    pub tcp: Vec<Tcp>,
}

impl State {
    /// A state with the network and nothing else.
    pub fn new(network: Network) -> State {
        State {
            network,
            guest_mac: None,
            guest6: None,
            lease4: None,
            lease6: None,
            forwards: Vec::new(),
            udp: Vec::new(),
            tcp: Vec::new(),
        }
    }

    /// Refuse a state that was not made for `cfg`'s network.
    pub fn check(&self, cfg: &Config) -> Result<(), Error> {
        if self.network != Network::of(cfg) {
            return Err(Error::OtherNetwork);
        }
        let v4 = cfg.net4.as_ref().map(|n| n.guest);
        if self.lease4.is_some_and(|(a, _)| Some(a) != v4) {
            return Err(Error::OtherNetwork);
        }
        let v6 = cfg.net6.as_ref().map(|n| n.guest);
        if self.lease6.is_some_and(|a| Some(a) != v6) {
            return Err(Error::OtherNetwork);
        }
        Ok(())
    }

    /// The bytes for `Save`; too large a state (over [`MAX_LEN`]) is an
    /// error, so a migration fails rather than lose flows quietly.
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let records = 1 + self.forwards.len() + self.udp.len() + self.tcp.len() + 4;
        if records > MAX_RECORDS {
            return Err(Error::TooManyRecords);
        }
        let mut w = Writer(Vec::with_capacity(256 + records * 48));
        w.0.extend_from_slice(MAGIC);
        w.u16(VERSION);
        w.u32(0);
        w.record(TAG_NETWORK, |w| {
            match self.network.v4 {
                Some((net, len, guest, host, dns)) => {
                    w.u8(1);
                    w.v4(net);
                    w.u8(len);
                    w.v4(guest);
                    w.v4(host);
                    w.v4(dns);
                }
                None => w.u8(0),
            }
            match self.network.v6 {
                Some((net, len, guest, host, dns)) => {
                    w.u8(1);
                    w.v6(net);
                    w.u8(len);
                    w.v6(guest);
                    w.v6(host);
                    w.v6(dns);
                }
                None => w.u8(0),
            }
            w.u16(self.network.mtu);
        });
        if let Some(m) = self.guest_mac {
            w.record(TAG_GUEST_MAC, |w| w.0.extend_from_slice(&m));
        }
        if let Some(a) = self.guest6 {
            w.record(TAG_GUEST6, |w| w.v6(a));
        }
        if let Some((a, secs)) = self.lease4 {
            w.record(TAG_LEASE4, |w| {
                w.v4(a);
                w.u32(secs);
            });
        }
        if let Some(a) = self.lease6 {
            w.record(TAG_LEASE6, |w| w.v6(a));
        }
        for f in &self.forwards {
            w.record(TAG_FORWARD, |w| {
                w.u8(match f.proto {
                    Proto::Tcp => 6,
                    Proto::Udp => 17,
                });
                w.sockaddr(f.bind);
                w.opt_ip(f.guest_addr);
                w.u16(f.guest_port);
            });
        }
        for u in &self.udp {
            w.record(TAG_UDP, |w| {
                w.sockaddr(u.guest);
                w.sockaddr(u.remote);
                w.sockaddr(u.host);
                match u.forward {
                    Some(b) => {
                        w.u8(1);
                        w.sockaddr(b);
                    }
                    None => w.u8(0),
                }
            });
        }
        for t in &self.tcp {
            w.record(TAG_TCP, |w| {
                w.sockaddr(t.guest);
                w.sockaddr(t.remote);
                w.u32(t.snd_nxt);
                w.u32(t.rcv_nxt);
            });
        }
        if w.0.len() > MAX_LEN {
            return Err(Error::TooLong);
        }
        let body = (w.0.len() - HEADER_LEN) as u32;
        w.0[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&body.to_be_bytes());
        Ok(w.0)
    }

    /// Parse a state. Total: every input gives a state or an error.
    pub fn decode(bytes: &[u8]) -> Result<State, Error> {
        if bytes.len() > MAX_LEN {
            return Err(Error::TooLong);
        }
        let mut r = Reader { buf: bytes };
        if r.take(MAGIC.len()).map_err(|_| Error::BadMagic)? != MAGIC {
            return Err(Error::BadMagic);
        }
        let version = r.u16()?;
        if version != VERSION {
            return Err(Error::Version(version));
        }
        if r.u32()? as usize != r.buf.len() {
            return Err(Error::Truncated);
        }
        let mut network = None;
        let mut st = State::new(Network {
            v4: None,
            v6: None,
            mtu: 0,
        });
        let mut records = 0usize;
        while !r.buf.is_empty() {
            records += 1;
            if records > MAX_RECORDS {
                return Err(Error::TooManyRecords);
            }
            let tag = r.u8()?;
            let len = r.u16()? as usize;
            let mut body = Reader { buf: r.take(len)? };
            let bad = |_| Error::BadRecord(tag);
            match tag {
                TAG_NETWORK => network = Some(body.network().map_err(bad)?),
                TAG_GUEST_MAC => st.guest_mac = Some(body.mac().map_err(bad)?),
                TAG_GUEST6 => st.guest6 = Some(body.v6().map_err(bad)?),
                TAG_LEASE4 => st.lease4 = Some((body.v4().map_err(bad)?, body.u32().map_err(bad)?)),
                TAG_LEASE6 => st.lease6 = Some(body.v6().map_err(bad)?),
                TAG_FORWARD => st.forwards.push(body.forward().map_err(bad)?),
                TAG_UDP => st.udp.push(body.udp().map_err(bad)?),
                TAG_TCP => st.tcp.push(body.tcp().map_err(bad)?),
                // A record a newer writer added: skipped, it has its length.
                _ => continue,
            }
            if !body.buf.is_empty() {
                return Err(Error::BadRecord(tag));
            }
        }
        st.network = network.ok_or(Error::NoNetwork)?;
        Ok(st)
    }
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn v4(&mut self, a: Ipv4Addr) {
        self.0.extend_from_slice(&a.octets());
    }
    fn v6(&mut self, a: Ipv6Addr) {
        self.0.extend_from_slice(&a.octets());
    }
    fn ip(&mut self, a: IpAddr) {
        match a {
            IpAddr::V4(a) => {
                self.u8(4);
                self.v4(a);
            }
            IpAddr::V6(a) => {
                self.u8(6);
                self.v6(a);
            }
        }
    }
    fn opt_ip(&mut self, a: Option<IpAddr>) {
        match a {
            Some(a) => self.ip(a),
            None => self.u8(0),
        }
    }
    fn sockaddr(&mut self, a: SocketAddr) {
        self.ip(a.ip());
        self.u16(a.port());
    }
    /// A record: tag, length (patched once the body is written), body.
    /// Every body is far below 64 KiB.
    fn record(&mut self, tag: u8, body: impl FnOnce(&mut Writer)) {
        self.u8(tag);
        let at = self.0.len();
        self.u16(0);
        body(self);
        let len = (self.0.len() - at - 2) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_be_bytes());
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.buf.len() < n {
            return Err(Error::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn v4(&mut self) -> Result<Ipv4Addr, Error> {
        Ok(Ipv4Addr::from(self.array::<4>()?))
    }
    fn v6(&mut self) -> Result<Ipv6Addr, Error> {
        Ok(Ipv6Addr::from(self.array::<16>()?))
    }
    fn mac(&mut self) -> Result<Mac, Error> {
        self.array()
    }
    fn flag(&mut self) -> Result<bool, Error> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::BadRecord(0)),
        }
    }
    fn opt_ip(&mut self) -> Result<Option<IpAddr>, Error> {
        match self.u8()? {
            0 => Ok(None),
            4 => Ok(Some(IpAddr::V4(self.v4()?))),
            6 => Ok(Some(IpAddr::V6(self.v6()?))),
            _ => Err(Error::BadRecord(0)),
        }
    }
    fn sockaddr(&mut self) -> Result<SocketAddr, Error> {
        let ip = self.opt_ip()?.ok_or(Error::BadRecord(0))?;
        Ok(SocketAddr::new(ip, self.u16()?))
    }
    fn network(&mut self) -> Result<Network, Error> {
        let v4 = if self.flag()? {
            Some((self.v4()?, self.u8()?, self.v4()?, self.v4()?, self.v4()?))
        } else {
            None
        };
        let v6 = if self.flag()? {
            Some((self.v6()?, self.u8()?, self.v6()?, self.v6()?, self.v6()?))
        } else {
            None
        };
        Ok(Network {
            v4,
            v6,
            mtu: self.u16()?,
        })
    }
    fn forward(&mut self) -> Result<Forward, Error> {
        let proto = match self.u8()? {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            _ => return Err(Error::BadRecord(0)),
        };
        Ok(Forward {
            proto,
            bind: self.sockaddr()?,
            guest_addr: self.opt_ip()?,
            guest_port: self.u16()?,
        })
    }
    fn udp(&mut self) -> Result<Udp, Error> {
        let (guest, remote, host) = (self.sockaddr()?, self.sockaddr()?, self.sockaddr()?);
        let forward = if self.flag()? {
            Some(self.sockaddr()?)
        } else {
            None
        };
        Ok(Udp {
            guest,
            remote,
            host,
            forward,
        })
    }
    fn tcp(&mut self) -> Result<Tcp, Error> {
        Ok(Tcp {
            guest: self.sockaddr()?,
            remote: self.sockaddr()?,
            snd_nxt: self.u32()?,
            rcv_nxt: self.u32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let cfg = Config::for_test(&["--dns-upstream", "127.0.0.1:5353"]);
        let mut st = State::new(Network::of(&cfg));
        st.guest_mac = Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
        st.guest6 = Some("fec0::5054:ff:fe12:3456".parse().unwrap());
        st.lease4 = Some(("10.0.2.15".parse().unwrap(), 86400));
        st.forwards.push(Forward {
            proto: Proto::Udp,
            bind: "127.0.0.1:5000".parse().unwrap(),
            guest_addr: None,
            guest_port: 5000,
        });
        st.udp.push(Udp {
            guest: "10.0.2.15:4000".parse().unwrap(),
            remote: "10.0.2.2:53".parse().unwrap(),
            host: "127.0.0.1:53".parse().unwrap(),
            forward: Some("127.0.0.1:5000".parse().unwrap()),
        });
        st.tcp.push(Tcp {
            guest: "[fec0::15]:40000".parse().unwrap(),
            remote: "[fec0::2]:22".parse().unwrap(),
            snd_nxt: 7,
            rcv_nxt: u32::MAX,
        });
        st
    }

    #[test]
    fn round_trips_and_checks_the_network() {
        let st = sample();
        let bytes = st.encode().unwrap();
        assert_eq!(State::decode(&bytes).unwrap(), st);
        let cfg = Config::for_test(&["--dns-upstream", "127.0.0.1:5353"]);
        assert_eq!(st.check(&cfg), Ok(()));
        let other = Config::for_test(&["--dns-upstream", "127.0.0.1:5353", "--mtu", "1500"]);
        assert_eq!(st.check(&other), Err(Error::OtherNetwork));
        let other = Config::for_test(&["--dns-upstream", "127.0.0.1:5353", "--net", "10.9.0.0/24"]);
        assert_eq!(st.check(&other), Err(Error::OtherNetwork));
    }

    #[test]
    fn refuses_truncation_other_versions_and_garbage() {
        let bytes = sample().encode().unwrap();
        // A cut anywhere, even at a record boundary, is refused.
        assert_eq!(State::decode(&bytes[..3]), Err(Error::BadMagic));
        for n in 8..bytes.len() {
            assert_eq!(
                State::decode(&bytes[..n]),
                Err(Error::Truncated),
                "cut at {n}"
            );
        }
        let mut v2 = bytes.clone();
        v2[9] = 2;
        assert_eq!(State::decode(&v2), Err(Error::Version(2)));
        assert_eq!(State::decode(b"random bytes here"), Err(Error::BadMagic));
        let mut big = bytes.clone();
        big.resize(MAX_LEN + 1, 0);
        assert_eq!(State::decode(&big), Err(Error::TooLong));
        // An unknown tag is skipped; a known one with a bad body is not.
        let grow = |tail: &[u8]| {
            let mut b = bytes.clone();
            b.extend_from_slice(tail);
            let n = (b.len() - HEADER_LEN) as u32;
            b[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&n.to_be_bytes());
            b
        };
        assert_eq!(State::decode(&grow(&[200, 0, 2, 9, 9])).unwrap(), sample());
        let bad = grow(&[TAG_TCP, 0, 1, 9]);
        assert_eq!(State::decode(&bad), Err(Error::BadRecord(TAG_TCP)));
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(State::decode(&long), Err(Error::Truncated));
    }
}
