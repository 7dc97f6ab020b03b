//! BOOTP/DHCPv4 messages (RFC 951, RFC 2131, RFC 2132), the options a
//! client sends and the options airlock's server answers with. Options
//! longer than 255 bytes are split across repeated options (RFC 3396).
//! Option overload (52) is not honoured: options in `sname`/`file` are
//! ignored, which clients we serve never rely on.
#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use zerocopy::byteorder::network_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{domain, header, header_mut, walk_step, Error, Mac, Result};

pub const SERVER_PORT: u16 = 67;
pub const CLIENT_PORT: u16 = 68;
/// The fixed BOOTP fields plus the magic cookie.
pub const HEADER_LEN: usize = 240;
/// Smallest message `emit` sends (RFC 951's 300-byte BOOTP message; some
/// clients drop shorter replies).
pub const MIN_MESSAGE_LEN: usize = 300;
pub const MAGIC_COOKIE: u32 = 0x6382_5363;
pub const OP_REQUEST: u8 = 1;
pub const OP_REPLY: u8 = 2;
const FLAG_BROADCAST: u16 = 0x8000;

/// Option codes.
pub mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVERS: u8 = 6;
    pub const HOSTNAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const INTERFACE_MTU: u8 = 26;
    pub const BROADCAST_ADDR: u8 = 28;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const TFTP_SERVER: u8 = 66;
    pub const BOOTFILE_NAME: u8 = 67;
    pub const RAPID_COMMIT: u8 = 80;
    pub const DOMAIN_SEARCH: u8 = 119;
    pub const CLASSLESS_ROUTES: u8 = 121;
    pub const END: u8 = 255;
}

/// The fixed part of a BOOTP message, cookie included.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct DhcpHeader {
    pub op: u8,
    pub htype: u8,
    pub hlen: u8,
    pub hops: u8,
    pub xid: U32,
    pub secs: U16,
    pub flags: U16,
    pub ciaddr: [u8; 4],
    pub yiaddr: [u8; 4],
    pub siaddr: [u8; 4],
    pub giaddr: [u8; 4],
    pub chaddr: [u8; 16],
    pub sname: [u8; 64],
    pub file: [u8; 128],
    pub magic: U32,
}

const ZERO: DhcpHeader = DhcpHeader {
    op: 0,
    htype: 0,
    hlen: 0,
    hops: 0,
    xid: U32::ZERO,
    secs: U16::ZERO,
    flags: U16::ZERO,
    ciaddr: [0; 4],
    yiaddr: [0; 4],
    siaddr: [0; 4],
    giaddr: [0; 4],
    chaddr: [0; 16],
    sname: [0; 64],
    file: [0; 128],
    magic: U32::ZERO,
};

/// DHCP message type (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Discover,
    Offer,
    Request,
    Decline,
    Ack,
    Nak,
    Release,
    Inform,
    Unknown(u8),
}

impl From<u8> for MessageType {
    fn from(v: u8) -> MessageType {
        match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            v => MessageType::Unknown(v),
        }
    }
}

impl From<MessageType> for u8 {
    fn from(t: MessageType) -> u8 {
        match t {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
            MessageType::Unknown(v) => v,
        }
    }
}

/// A checked view of a DHCP message (the UDP payload).
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Checks that the fixed fields and the cookie position are present.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        Ok(Packet { buffer })
    }
    pub fn into_inner(self) -> T {
        self.buffer
    }
    fn hdr(&self) -> &DhcpHeader {
        header(self.buffer.as_ref()).unwrap_or(&ZERO)
    }
    pub fn op(&self) -> u8 {
        self.hdr().op
    }
    pub fn htype(&self) -> u8 {
        self.hdr().htype
    }
    pub fn hlen(&self) -> u8 {
        self.hdr().hlen
    }
    pub fn xid(&self) -> u32 {
        self.hdr().xid.get()
    }
    fn secs(&self) -> u16 {
        self.hdr().secs.get()
    }
    pub fn flags(&self) -> u16 {
        self.hdr().flags.get()
    }
    pub fn broadcast(&self) -> bool {
        self.flags() & FLAG_BROADCAST != 0
    }
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.hdr().ciaddr.into()
    }
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.hdr().yiaddr.into()
    }
    fn siaddr(&self) -> Ipv4Addr {
        self.hdr().siaddr.into()
    }
    pub fn giaddr(&self) -> Ipv4Addr {
        self.hdr().giaddr.into()
    }
    /// The first six bytes of `chaddr`.
    pub fn client_mac(&self) -> Mac {
        let c = self.hdr().chaddr;
        [c[0], c[1], c[2], c[3], c[4], c[5]]
    }
    pub fn sname(&self) -> &[u8; 64] {
        &self.hdr().sname
    }
    pub fn file(&self) -> &[u8; 128] {
        &self.hdr().file
    }
    pub fn magic(&self) -> u32 {
        self.hdr().magic.get()
    }
    /// Raw option bytes after the cookie.
    pub fn options(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
    pub fn options_iter(&self) -> OptionsIter<'_> {
        OptionsIter::new(self.options())
    }
    /// Data of the first well-formed option `code` before any error.
    pub fn find_option(&self, code: u8) -> Option<&[u8]> {
        self.options_iter()
            .map_while(|o| o.ok())
            .find(|o| o.code == code)
            .map(|o| o.data)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn with(&mut self, f: impl FnOnce(&mut DhcpHeader)) {
        if let Some(h) = header_mut(self.buffer.as_mut()) {
            f(h)
        }
    }
    pub fn set_flags(&mut self, v: u16) {
        self.with(|h| h.flags.set(v))
    }
    pub fn options_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// One option as found in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DhcpOption<'a> {
    pub code: u8,
    pub data: &'a [u8],
}

/// Iterates options: skips PAD, stops at END or the end of the buffer;
/// yields one `Err(Truncated)` and stops when a length runs past the end.
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
    type Item = Result<DhcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (&code, tail) = self.rest.split_first()?;
            match code {
                opt::PAD => self.rest = tail,
                opt::END => {
                    self.rest = &[];
                    return None;
                }
                _ => {
                    let parsed = tail
                        .split_first()
                        .and_then(|(&len, tail)| tail.split_at_checked(usize::from(len)))
                        .map(|(data, rest)| (DhcpOption { code, data }, rest));
                    return Some(walk_step(&mut self.rest, parsed));
                }
            }
        }
    }
}

/// A client message, decoded: the fields and options a server needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    pub op: u8,
    pub message_type: MessageType,
    pub xid: u32,
    pub secs: u16,
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub client_mac: Mac,
    pub requested_ip: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub parameter_request_list: Option<&'a [u8]>,
    pub client_id: Option<&'a [u8]>,
    pub hostname: Option<&'a [u8]>,
    pub max_message_size: Option<u16>,
    pub rapid_commit: bool,
}

fn addr(data: &[u8]) -> Result<Ipv4Addr> {
    <[u8; 4]>::try_from(data)
        .map(Ipv4Addr::from)
        .map_err(|_| Error::Malformed)
}

impl<'a> Repr<'a> {
    /// Requires Ethernet hardware addresses, the cookie, and a one-byte
    /// message type; fixed-size options with the wrong size and options
    /// running off the end are `Malformed`. Unknown options are skipped.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(p: &Packet<&'a T>) -> Result<Repr<'a>> {
        if p.htype() != 1 || p.hlen() != 6 || p.magic() != MAGIC_COOKIE {
            return Err(Error::Unsupported);
        }
        let mut r = Repr {
            op: p.op(),
            message_type: MessageType::Unknown(0),
            xid: p.xid(),
            secs: p.secs(),
            broadcast: p.broadcast(),
            ciaddr: p.ciaddr(),
            yiaddr: p.yiaddr(),
            siaddr: p.siaddr(),
            giaddr: p.giaddr(),
            client_mac: p.client_mac(),
            requested_ip: None,
            server_id: None,
            parameter_request_list: None,
            client_id: None,
            hostname: None,
            max_message_size: None,
            rapid_commit: false,
        };
        let mut have_type = false;
        let options = (*p.buffer).as_ref().get(HEADER_LEN..).unwrap_or(&[]);
        for o in OptionsIter::new(options) {
            let o = o.map_err(|_| Error::Malformed)?;
            match o.code {
                opt::MESSAGE_TYPE => match o.data {
                    &[t] => {
                        r.message_type = t.into();
                        have_type = true;
                    }
                    _ => return Err(Error::Malformed),
                },
                opt::REQUESTED_IP => r.requested_ip = Some(addr(o.data)?),
                opt::SERVER_ID => r.server_id = Some(addr(o.data)?),
                opt::PARAMETER_REQUEST_LIST => r.parameter_request_list = Some(o.data),
                opt::CLIENT_ID => r.client_id = Some(o.data),
                opt::HOSTNAME => r.hostname = Some(o.data),
                opt::RAPID_COMMIT => r.rapid_commit = true,
                opt::MAX_MESSAGE_SIZE => {
                    let v: [u8; 2] = o.data.try_into().map_err(|_| Error::Malformed)?;
                    r.max_message_size = Some(u16::from_be_bytes(v));
                }
                _ => {}
            }
        }
        if !have_type {
            // Plain BOOTP.
            return Err(Error::Unsupported);
        }
        Ok(r)
    }
}

/// A classless static route (option 121, RFC 3442).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dest: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
}

/// An option for [`Reply::emit`], written in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionRepr<'a> {
    SubnetMask(Ipv4Addr),
    Router(&'a [Ipv4Addr]),
    DnsServers(&'a [Ipv4Addr]),
    Hostname(&'a str),
    DomainName(&'a str),
    InterfaceMtu(u16),
    BroadcastAddr(Ipv4Addr),
    LeaseTime(u32),
    ServerId(Ipv4Addr),
    RenewalTime(u32),
    RebindingTime(u32),
    /// Error text in a NAK.
    Message(&'a str),
    RapidCommit,
    /// Option 119: names encoded per RFC 1035, uncompressed.
    DomainSearch(&'a [&'a str]),
    /// Option 121.
    ClasslessRoutes(&'a [Route]),
    /// Option 66: the TFTP server, as text.
    TftpServer(&'a str),
    /// Option 67: the boot file name.
    BootfileName(&'a str),
    Raw {
        code: u8,
        data: &'a [u8],
    },
}

/// Writes options, splitting any longer than 255 bytes (RFC 3396).
struct OptionSink<'b> {
    buf: &'b mut [u8],
    pos: usize,
    code: u8,
    len_at: usize,
    chunk: u8,
}

impl OptionSink<'_> {
    fn raw(&mut self, b: u8) -> Result<()> {
        *self.buf.get_mut(self.pos).ok_or(Error::Truncated)? = b;
        self.pos += 1;
        Ok(())
    }

    fn begin(&mut self, code: u8) -> Result<()> {
        self.code = code;
        self.raw(code)?;
        self.len_at = self.pos;
        self.chunk = 0;
        self.raw(0)
    }

    fn byte(&mut self, b: u8) -> Result<()> {
        if self.chunk == u8::MAX {
            self.begin(self.code)?;
        }
        self.raw(b)?;
        self.chunk += 1;
        *self.buf.get_mut(self.len_at).ok_or(Error::Truncated)? = self.chunk;
        Ok(())
    }

    fn bytes(&mut self, data: &[u8]) -> Result<()> {
        data.iter().try_for_each(|&b| self.byte(b))
    }

    fn option(&mut self, code: u8, data: &[u8]) -> Result<()> {
        self.begin(code)?;
        self.bytes(data)
    }

    fn addrs(&mut self, code: u8, addrs: &[Ipv4Addr]) -> Result<()> {
        self.begin(code)?;
        addrs.iter().try_for_each(|a| self.bytes(&a.octets()))
    }

    fn write(&mut self, o: &OptionRepr) -> Result<()> {
        match *o {
            OptionRepr::SubnetMask(a) => self.option(opt::SUBNET_MASK, &a.octets()),
            OptionRepr::Router(a) => self.addrs(opt::ROUTER, a),
            OptionRepr::DnsServers(a) => self.addrs(opt::DNS_SERVERS, a),
            OptionRepr::Hostname(s) => self.option(opt::HOSTNAME, s.as_bytes()),
            OptionRepr::DomainName(s) => self.option(opt::DOMAIN_NAME, s.as_bytes()),
            OptionRepr::InterfaceMtu(v) => self.option(opt::INTERFACE_MTU, &v.to_be_bytes()),
            OptionRepr::BroadcastAddr(a) => self.option(opt::BROADCAST_ADDR, &a.octets()),
            OptionRepr::LeaseTime(v) => self.option(opt::LEASE_TIME, &v.to_be_bytes()),
            OptionRepr::ServerId(a) => self.option(opt::SERVER_ID, &a.octets()),
            OptionRepr::RenewalTime(v) => self.option(opt::RENEWAL_TIME, &v.to_be_bytes()),
            OptionRepr::RebindingTime(v) => self.option(opt::REBINDING_TIME, &v.to_be_bytes()),
            OptionRepr::Message(s) => self.option(opt::MESSAGE, s.as_bytes()),
            OptionRepr::RapidCommit => self.option(opt::RAPID_COMMIT, &[]),
            OptionRepr::DomainSearch(names) => {
                self.begin(opt::DOMAIN_SEARCH)?;
                domain::encode_each(names, |b| self.byte(b))
            }
            OptionRepr::ClasslessRoutes(routes) => {
                self.begin(opt::CLASSLESS_ROUTES)?;
                for r in routes {
                    if r.prefix_len > 32 {
                        return Err(Error::Malformed);
                    }
                    self.byte(r.prefix_len)?;
                    let significant = usize::from(r.prefix_len).div_ceil(8);
                    let dest = r.dest.octets();
                    self.bytes(dest.get(..significant).unwrap_or(&dest))?;
                    self.bytes(&r.gateway.octets())?;
                }
                Ok(())
            }
            OptionRepr::TftpServer(s) => self.option(opt::TFTP_SERVER, s.as_bytes()),
            OptionRepr::BootfileName(s) => self.option(opt::BOOTFILE_NAME, s.as_bytes()),
            OptionRepr::Raw { code, data } => self.option(code, data),
        }
    }
}

/// A message's fixed fields as a server writes them (`OP` is
/// [`OP_REPLY`]: [`Reply`]) or a client does ([`OP_REQUEST`]: [`Request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<const OP: u8> {
    pub message_type: MessageType,
    pub xid: u32,
    pub broadcast: bool,
    pub ciaddr: Ipv4Addr,
    pub yiaddr: Ipv4Addr,
    pub siaddr: Ipv4Addr,
    pub giaddr: Ipv4Addr,
    pub client_mac: Mac,
}

/// A server reply (OFFER, ACK, NAK).
pub type Reply = Message<OP_REPLY>;

/// A client message (DISCOVER, REQUEST, RELEASE, …), as a guest sends it:
/// airlock only parses these; tests and fuzzers build them.
pub type Request = Message<OP_REQUEST>;

impl<const OP: u8> Message<OP> {
    /// The fixed part of the message with the magic cookie.
    fn emit_header(&self, buf: &mut [u8]) -> Result<()> {
        let h: &mut DhcpHeader = header_mut(buf).ok_or(Error::Truncated)?;
        let mut chaddr = [0u8; 16];
        for (d, s) in chaddr.iter_mut().zip(self.client_mac) {
            *d = s;
        }
        let [ciaddr, yiaddr, siaddr, giaddr] =
            [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr].map(|a| a.octets());
        *h = DhcpHeader {
            op: OP,
            htype: 1,
            hlen: 6,
            xid: self.xid.into(),
            flags: if self.broadcast { FLAG_BROADCAST } else { 0 }.into(),
            ciaddr,
            yiaddr,
            siaddr,
            giaddr,
            chaddr,
            magic: MAGIC_COOKIE.into(),
            ..ZERO
        };
        Ok(())
    }
}

impl Reply {
    /// Writes the fixed fields, option 53, then `options` in order, END,
    /// and zero padding up to [`MIN_MESSAGE_LEN`]. Returns the length.
    pub fn emit(&self, buf: &mut [u8], options: &[OptionRepr]) -> Result<usize> {
        self.emit_header(buf)?;
        emit_options(buf, self.message_type, options, MIN_MESSAGE_LEN)
    }

    /// Length `emit` will write.
    pub fn buffer_len(&self, options: &[OptionRepr]) -> Result<usize> {
        // Emitting into a scratch buffer is the only way to account for
        // RFC 3396 splits exactly; the longest DHCP message fits in 1500.
        let mut scratch = [0u8; 1500];
        self.emit(&mut scratch, options)
    }
}

impl Request {
    /// Writes the fixed fields and the magic cookie alone: options, well
    /// formed or not, are the caller's to add at [`HEADER_LEN`].
    pub fn emit_fixed(&self, buf: &mut [u8]) -> Result<usize> {
        self.emit_header(buf)?;
        Ok(HEADER_LEN)
    }

    /// Writes the fixed fields, option 53, `options` in order and END (no
    /// padding: clients need not pad). Returns the length.
    pub fn emit(&self, buf: &mut [u8], options: &[OptionRepr]) -> Result<usize> {
        self.emit_fixed(buf)?;
        emit_options(buf, self.message_type, options, 0)
    }
}

/// Option 53, `options`, END, then PAD up to `min_len`, after the fixed
/// part; returns the message's length.
fn emit_options(
    buf: &mut [u8],
    message_type: MessageType,
    options: &[OptionRepr],
    min_len: usize,
) -> Result<usize> {
    let mut sink = OptionSink {
        buf,
        pos: HEADER_LEN,
        code: 0,
        len_at: 0,
        chunk: 0,
    };
    sink.option(opt::MESSAGE_TYPE, &[message_type.into()])?;
    for o in options {
        sink.write(o)?;
    }
    sink.raw(opt::END)?;
    while sink.pos < min_len {
        sink.raw(opt::PAD)?;
    }
    Ok(sink.pos)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{fuzz, hex};

    const MAC: Mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn fixed(op_to_giaddr: &str) -> String {
        format!(
            "{op_to_giaddr} 525400123456 {} {}",
            "00".repeat(10),
            "00".repeat(192)
        )
    }

    /// A busybox-udhcpc-style DISCOVER, padded to 300 bytes.
    /// An ACK with no addresses, for tests about its options.
    fn bare_ack() -> Reply {
        Reply {
            message_type: MessageType::Ack,
            xid: 1,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            client_mac: MAC,
        }
    }

    fn discover() -> Vec<u8> {
        let mut v = hex(&fixed(
            "01010600 3903f326 0000 0000 00000000 00000000 00000000 00000000",
        ));
        v.extend(hex(
            "63825363 350101 3d0701525400123456 39020240 3707010306 0c0f1c2a
             0c056775657374 ff",
        ));
        v.resize(300, 0);
        v
    }

    /// The OFFER airlock sends for it (bytes built independently).
    fn offer() -> Vec<u8> {
        let mut v = hex(&fixed(
            "02010600 3903f326 0000 8000 00000000 0a00020f 0a000202 00000000",
        ));
        v.extend(hex(
            "63825363 350102 36040a000202 330400015180 0104ffffff00 03040a000202
             06040a000203 1a02fff0 0f0b6578616d706c652e6f7267
             771f076578616d706c65036f72670004636f7270076578616d706c6503636f6d00
             790d000a000202180a00030a000202 0c056775657374 ff",
        ));
        v
    }

    const SEARCH: [&str; 2] = ["example.org", "corp.example.com"];
    const ROUTES: [Route; 2] = [
        Route {
            dest: Ipv4Addr::UNSPECIFIED,
            prefix_len: 0,
            gateway: Ipv4Addr::new(10, 0, 2, 2),
        },
        Route {
            dest: Ipv4Addr::new(10, 0, 3, 0),
            prefix_len: 24,
            gateway: Ipv4Addr::new(10, 0, 2, 2),
        },
    ];

    /// An option whose length runs past the end yields one error and ends
    /// the walk.
    #[test]
    fn options_walk_stops_at_a_truncated_option() {
        let opts = hex("01 02 abcd 00 03 04 ab");
        let mut it = OptionsIter::new(&opts);
        assert_eq!(
            it.next(),
            Some(Ok(DhcpOption {
                code: 1,
                data: &[0xab, 0xcd]
            }))
        );
        assert_eq!(it.next(), Some(Err(Error::Truncated)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn parse_discover() {
        let g = discover();
        let p = Packet::new_checked(&g[..]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.op, OP_REQUEST);
        assert_eq!(r.message_type, MessageType::Discover);
        assert_eq!(r.xid, 0x3903_f326);
        assert!(!r.broadcast);
        assert_eq!(r.client_mac, MAC);
        assert_eq!(r.client_id, Some(&hex("01525400123456")[..]));
        assert_eq!(r.max_message_size, Some(576));
        assert_eq!(
            r.parameter_request_list,
            Some(&[1, 3, 6, 12, 15, 28, 42][..])
        );
        assert_eq!(r.hostname, Some(&b"guest"[..]));
        assert_eq!((r.requested_ip, r.server_id), (None, None));
        assert_eq!(p.find_option(opt::MAX_MESSAGE_SIZE), Some(&[2, 0x40][..]));
    }

    #[test]
    fn emit_discover_as_a_client_would() {
        let zero = Ipv4Addr::UNSPECIFIED;
        let request = Request {
            message_type: MessageType::Discover,
            xid: 0x3903_f326,
            broadcast: false,
            ciaddr: zero,
            yiaddr: zero,
            siaddr: zero,
            giaddr: zero,
            client_mac: MAC,
        };
        let options = [
            OptionRepr::Raw {
                code: opt::CLIENT_ID,
                data: &hex("01525400123456"),
            },
            OptionRepr::Raw {
                code: opt::MAX_MESSAGE_SIZE,
                data: &[2, 0x40],
            },
            OptionRepr::Raw {
                code: opt::PARAMETER_REQUEST_LIST,
                data: &[1, 3, 6, 12, 15, 28, 42],
            },
            OptionRepr::Hostname("guest"),
        ];
        let mut out = vec![0u8; 300];
        let n = request.emit(&mut out, &options).unwrap();
        assert_eq!(out, discover(), "the golden DISCOVER, padding included");
        assert_eq!(n, 273, "a client message is not padded");
        assert_eq!(
            request.emit(&mut out[..n - 1], &options),
            Err(Error::Truncated)
        );
        assert_eq!(request.emit_fixed(&mut out), Ok(HEADER_LEN));
    }

    #[test]
    fn emit_offer() {
        let ip = Ipv4Addr::new;
        let reply = Reply {
            message_type: MessageType::Offer,
            xid: 0x3903_f326,
            broadcast: true,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: ip(10, 0, 2, 15),
            siaddr: ip(10, 0, 2, 2),
            giaddr: Ipv4Addr::UNSPECIFIED,
            client_mac: MAC,
        };
        let opts = [
            OptionRepr::ServerId(ip(10, 0, 2, 2)),
            OptionRepr::LeaseTime(86400),
            OptionRepr::SubnetMask(ip(255, 255, 255, 0)),
            OptionRepr::Router(&[ip(10, 0, 2, 2)]),
            OptionRepr::DnsServers(&[ip(10, 0, 2, 3)]),
            OptionRepr::InterfaceMtu(65520),
            OptionRepr::DomainName("example.org"),
            OptionRepr::DomainSearch(&SEARCH),
            OptionRepr::ClasslessRoutes(&ROUTES),
            OptionRepr::Hostname("guest"),
        ];
        let mut out = [0u8; 600];
        let n = reply.emit(&mut out, &opts).unwrap();
        assert_eq!(out[..n], offer()[..]);
        assert_eq!(reply.buffer_len(&opts), Ok(n));
        assert_eq!(reply.emit(&mut out[..n - 1], &opts), Err(Error::Truncated));
        // Reads back through the view.
        let p = Packet::new_checked(&out[..n]).unwrap();
        assert!(p.broadcast());
        assert_eq!(p.yiaddr(), ip(10, 0, 2, 15));
        assert_eq!(p.find_option(opt::MESSAGE_TYPE), Some(&[2][..]));
        let search = p.find_option(opt::DOMAIN_SEARCH).unwrap();
        let names: Vec<_> = domain::NameIter::new(search).flatten().collect();
        assert!(names[0].eq_dotted("example.org") && names[1].eq_dotted("corp.example.com"));
        // A short reply is padded to 300 bytes.
        let nak = Reply {
            message_type: MessageType::Nak,
            ..reply
        };
        let n = nak.emit(&mut out, &[OptionRepr::Message("no")]).unwrap();
        assert_eq!(n, MIN_MESSAGE_LEN);
        assert_eq!(out[240..250], hex("350106 38026e6f ff 0000")[..]);
    }

    #[test]
    fn long_options_split_rfc3396() {
        let names: Vec<String> = (0..30).map(|i| format!("host{i:02}.example.net")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let total = domain::encoded_len(&refs).unwrap();
        assert!(total > 255);
        let reply = bare_ack();
        let mut out = [0u8; 1500];
        let n = reply
            .emit(&mut out, &[OptionRepr::DomainSearch(&refs)])
            .unwrap();
        let p = Packet::new_checked(&out[..n]).unwrap();
        let parts: Vec<_> = p
            .options_iter()
            .map(|o| o.unwrap())
            .filter(|o| o.code == opt::DOMAIN_SEARCH)
            .collect();
        assert_eq!(parts.len(), total.div_ceil(255));
        assert_eq!(parts[0].data.len(), 255);
        let joined: Vec<u8> = parts.iter().flat_map(|o| o.data.iter().copied()).collect();
        let mut want = vec![0u8; total];
        domain::encode(&refs, &mut want).unwrap();
        assert_eq!(joined, want);
    }

    #[test]
    fn rejects() {
        let mut g = discover();
        g[236..240].fill(0); // no magic cookie
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Unsupported));
        // No message type: plain BOOTP.
        let mut g = discover();
        g[240..243].copy_from_slice(&[0, 0, 0]);
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Unsupported));
        // Requested IP of the wrong size.
        let mut g = discover();
        g[240..246].copy_from_slice(&hex("350103 320100"));
        let p = Packet::new_checked(&g[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        // Option running off the end.
        let g = discover();
        let p = Packet::new_checked(&g[..250]).unwrap();
        assert_eq!(Repr::parse(&p), Err(Error::Malformed));
        assert_eq!(Packet::new_checked(&g[..239]).err(), Some(Error::Truncated));
        let bad = Route {
            prefix_len: 33,
            ..ROUTES[0]
        };
        let reply = bare_ack();
        let mut out = [0u8; 600];
        assert_eq!(
            reply.emit(&mut out, &[OptionRepr::ClasslessRoutes(&[bad])]),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn request_round_trip() {
        let ip = Ipv4Addr::new;
        let request = Request {
            message_type: MessageType::Request,
            xid: 7,
            broadcast: true,
            ciaddr: ip(10, 0, 2, 15),
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            client_mac: MAC,
        };
        let options = [
            OptionRepr::Raw {
                code: opt::REQUESTED_IP,
                data: &[10, 0, 2, 15],
            },
            OptionRepr::ServerId(ip(10, 0, 2, 2)),
        ];
        let mut g = vec![0u8; 300];
        let n = request.emit(&mut g, &options).unwrap();
        let p = Packet::new_checked(&g[..n]).unwrap();
        let r = Repr::parse(&p).unwrap();
        assert_eq!(r.op, OP_REQUEST);
        assert_eq!(r.message_type, MessageType::Request);
        assert!(r.broadcast);
        assert_eq!((r.xid, r.client_mac), (7, MAC));
        assert_eq!(r.ciaddr, ip(10, 0, 2, 15));
        assert_eq!(r.requested_ip, Some(ip(10, 0, 2, 15)));
        assert_eq!(r.server_id, Some(ip(10, 0, 2, 2)));
    }

    #[test]
    fn no_panic_on_any_input() {
        let goldens = [discover(), offer()];
        fuzz(&[&goldens[0], &goldens[1]], 2000, 400, |b| {
            // Force the cookie so random inputs reach the option parser.
            if let Some(c) = b.get_mut(236..240) {
                if c[0] == 0 {
                    c.copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                }
            }
            if let Some(o) = b.get(240..) {
                let _ = OptionsIter::new(o).count();
            }
            if let Ok(p) = Packet::new_checked(&*b) {
                let _ = Repr::parse(&p);
                let _ = p.find_option(opt::HOSTNAME);
            }
        });
    }
}
