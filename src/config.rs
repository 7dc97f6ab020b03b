//! One resolved, validated description of the virtual network.
//!
//! Everything the guest can see is decided here, before any socket opens:
//! slirp's address arithmetic, the overrides, the forwards. A bad
//! combination is a [`ConfigError`] naming the option (exit status 2).

use crate::cli::Options;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A startup error that names the option at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub option: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.option, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(option: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        option,
        message: message.into(),
    }
}

/// The IPv4 side of the virtual network, in slirp's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net4 {
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub guest: Ipv4Addr,
    pub host: Ipv4Addr,
    pub dns: Ipv4Addr,
}

impl Net4 {
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(prefix_mask(self.prefix))
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !prefix_mask(self.prefix))
    }
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & prefix_mask(self.prefix) == u32::from(self.network)
    }
    /// An address airlock itself answers for (ARP, echo): every address of
    /// the virtual network except the guest's, the network and broadcast.
    pub fn is_virtual(&self, a: Ipv4Addr) -> bool {
        // The router may lie outside the subnet (passt copies the host's
        // gateway; DHCP then gives the guest a host route to it).
        a == self.host
            || (self.contains(a) && a != self.guest && a != self.network && a != self.broadcast())
    }
}

/// The IPv6 side of the virtual network, in slirp's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Net6 {
    pub prefix: Ipv6Addr,
    pub prefix_len: u8,
    pub host: Ipv6Addr,
    pub dns: Ipv6Addr,
    /// The address DHCPv6 leases in stateful mode.
    pub guest: Ipv6Addr,
    /// The router's link-local address when it is not [`Net6::link_local`]
    /// of `host` (passt's: the host interface's own).
    pub router_ll: Option<Ipv6Addr>,
}

impl Net6 {
    /// `fe80::/64` with the interface identifier of `a`: slirp's router is
    /// `fe80::2` for the host `fec0::2`.
    pub fn link_local(a: Ipv6Addr) -> Ipv6Addr {
        Ipv6Addr::from((0xfe80u128 << 112) | (u128::from(a) & u128::from(u64::MAX)))
    }
    /// The router's link-local address: its source in NDP and DHCPv6.
    pub fn router_link_local(&self) -> Ipv6Addr {
        self.router_ll
            .unwrap_or_else(|| Net6::link_local(self.host))
    }
    /// Addresses airlock itself holds: the virtual host and DNS addresses
    /// and their link-local forms.
    pub fn is_own(&self, a: Ipv6Addr) -> bool {
        a == self.host
            || a == self.dns
            || a == self.router_link_local()
            || a == Net6::link_local(self.dns)
    }
    /// Addresses airlock answers for (neighbour discovery, echo): its own,
    /// and, as ARP for IPv4, every other address of the prefix except the
    /// guest's leased address and the subnet-router anycast address.
    pub fn is_virtual(&self, a: Ipv6Addr) -> bool {
        self.is_own(a) || (self.contains(a) && a != self.guest && a != self.prefix)
    }
    pub fn contains(&self, a: Ipv6Addr) -> bool {
        let m = if self.prefix_len == 0 {
            0
        } else {
            u128::MAX << (128 - self.prefix_len as u32)
        };
        u128::from(a) & m == u128::from(self.prefix) & m
    }
}

/// Transport of a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One host-to-guest forward: a host socket bound at `bind` whose traffic
/// goes to `guest_port` on `guest_addr` (the guest's own address if `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub proto: Proto,
    pub bind: SocketAddr,
    pub guest_addr: Option<IpAddr>,
    pub guest_port: u16,
    /// Bind to this host interface too (passt's `ADDR%DEV/`).
    pub device: Option<String>,
    /// Skip the port quietly if it cannot be bound (passt's `all`).
    pub best_effort: bool,
}

/// The whole resolved configuration of the virtual network.
#[derive(Debug, Clone)]
pub struct Config {
    pub net4: Option<Net4>,
    pub net6: Option<Net6>,
    pub mtu: u16,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    /// DHCP option 81 (passt's `--fqdn`).
    pub fqdn: Option<String>,
    pub dns_suffixes: Vec<String>,
    pub host_loopback: bool,
    pub restrict: bool,
    pub dns_forward: bool,
    pub dns_upstream: Vec<SocketAddr>,
    pub forwards: Vec<Forward>,
    pub max_flows: usize,
    pub udp_timeout_s: u64,
    pub udp_stream_timeout_s: u64,
    /// `--outbound-addr`, `--outbound-if4`, `--outbound-if6`.
    pub outbound: crate::outbound::Outbound,
    /// `--tftp DIR`, as given (opened into `tftp_root` before the sandbox).
    pub tftp: Option<std::path::PathBuf>,
    /// The `--tftp` directory, set by startup.
    pub tftp_root: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    /// DHCP's boot file (option 67), from `--dhcp-bootfile` or the path of
    /// `--dhcp-nbp`.
    pub dhcp_bootfile: Option<String>,
    /// DHCP's next server (siaddr and option 66) from `--dhcp-nbp`;
    /// default the virtual host address.
    pub dhcp_next_server: Option<Ipv4Addr>,
    /// One MAC for every address airlock answers for (passt's view); `None`
    /// is slirp's per-address MACs ([`router_mac4`], [`router_mac6`]).
    pub mac: Option<[u8; 6]>,
    /// Addresses of the subnet other than the guest's are airlock's own
    /// (slirp); `false` when they are the host network's (passt).
    pub virtual_subnet: bool,
    /// DHCP option 26 even at 1500 (passt sends it always; slirp never).
    pub mtu_option_always: bool,
    /// Offer `net6.dns` to the guest (RDNSS, DHCPv6 option 23).
    pub dns6: bool,
    /// Router advertisements and DHCPv6 leases as passt writes them:
    /// lifetimes infinite, router lifetime 65535, current hop limit 255,
    /// M without O. Otherwise RFC 4861's defaults and a day's lease.
    pub passt_ipv6: bool,
    /// What the guest gets no answer or carriage for (passt's `--no-*`).
    pub off: Off,
    /// passt's `--map-guest-addr`: guest traffic to this address goes to
    /// the guest's own address on the host side, and host peers at that
    /// address appear from here.
    pub map_guest: MapGuest,
}

/// passt's `--no-dhcp`, `--no-dhcpv6`, `--no-ndp`, `--no-ra`, `--no-tcp`,
/// `--no-udp`, `--no-icmp`: each drops the guest's messages of that kind
/// silently. `ndp` implies `ra` (no RA is sent without NDP).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Off {
    pub dhcp: bool,
    pub dhcpv6: bool,
    pub ndp: bool,
    pub ra: bool,
    pub tcp: bool,
    pub udp: bool,
    pub icmp: bool,
}

/// `--map-guest-addr`, one address per family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapGuest {
    pub v4: Option<Ipv4Addr>,
    pub v6: Option<Ipv6Addr>,
}

impl Config {
    /// The MAC that answers for IPv4 address `a`.
    pub fn mac4(&self, a: Ipv4Addr) -> [u8; 6] {
        self.mac.unwrap_or_else(|| router_mac4(a))
    }
    /// The MAC that answers for IPv6 address `a`.
    pub fn mac6(&self, a: Ipv6Addr) -> [u8; 6] {
        self.mac.unwrap_or_else(|| router_mac6(a))
    }
}

/// `--dhcp-nbp tftp://SERVER/PATH`: the next server and the boot file.
fn parse_nbp(url: &str) -> Result<(Ipv4Addr, String), ConfigError> {
    let bad = || {
        err(
            "--dhcp-nbp",
            format!("'{url}': want tftp://IPV4-ADDRESS/FILE"),
        )
    };
    let rest = url.strip_prefix("tftp://").ok_or_else(bad)?;
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    let host: Ipv4Addr = host.parse().map_err(|_| bad())?;
    if path.is_empty() {
        return Err(bad());
    }
    Ok((host, path.to_string()))
}

/// The MAC address the virtual router answers with: slirp's `52:55` plus the
/// four bytes of the IPv4 address that answers.
pub fn router_mac4(a: Ipv4Addr) -> [u8; 6] {
    let o = a.octets();
    [0x52, 0x55, o[0], o[1], o[2], o[3]]
}

/// slirp's IPv6 router MAC: `52:56` plus the last four bytes of the address.
pub fn router_mac6(a: Ipv6Addr) -> [u8; 6] {
    let o = a.octets();
    [0x52, 0x56, o[12], o[13], o[14], o[15]]
}

fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

fn parse_v4(option: &'static str, s: &str) -> Result<Ipv4Addr, ConfigError> {
    s.trim()
        .parse()
        .map_err(|_| err(option, format!("'{s}' is not an IPv4 address")))
}

fn parse_v6(option: &'static str, s: &str) -> Result<Ipv6Addr, ConfigError> {
    s.trim()
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| err(option, format!("'{s}' is not an IPv6 address")))
}

fn mask_to_prefix(option: &'static str, m: Ipv4Addr) -> Result<u8, ConfigError> {
    let v = u32::from(m);
    let p = v.leading_ones();
    if v.checked_shl(p).unwrap_or(0) != 0 {
        return Err(err(option, format!("'{m}' is not a contiguous netmask")));
    }
    Ok(p as u8)
}

/// slirp's arithmetic: `net | (x.x.2.N within the host bits)`.
fn slirp_addr(network: Ipv4Addr, prefix: u8, low: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(network) | (low & !prefix_mask(prefix)))
}

fn resolve_net4(o: &Options) -> Result<Option<Net4>, ConfigError> {
    if o.disable_ipv4 {
        return Ok(None);
    }
    let (addr, prefix) = match &o.net {
        None => (Ipv4Addr::new(10, 0, 2, 0), 24),
        Some(s) => match s.split_once('/') {
            Some((a, p)) => {
                if o.mask.is_some() {
                    return Err(err("--mask", "--net already has a prefix length"));
                }
                let a = parse_v4("--net", a)?;
                let p: u8 = p
                    .parse()
                    .map_err(|_| err("--net", format!("'{p}' is not a prefix length")))?;
                (a, p)
            }
            None => {
                let a = parse_v4("--net", s)?;
                let p = match &o.mask {
                    Some(m) => mask_to_prefix("--mask", parse_v4("--mask", m)?)?,
                    None => 24,
                };
                (a, p)
            }
        },
    };
    if o.net.is_none() && o.mask.is_some() {
        return Err(err("--mask", "needs --net"));
    }
    if prefix > 30 {
        return Err(err(
            "--net",
            format!("prefix /{prefix} leaves no room for host, DNS and guest (at most /30)"),
        ));
    }
    let mask = prefix_mask(prefix);
    let network = Ipv4Addr::from(u32::from(addr) & mask);
    let host_bits = u32::from(addr) & !mask;
    // An address with host bits set is the guest's exact address: what QEMU's
    // and libvirt's documentation promise (seed 001); a bare network gets
    // slirp's .2.15.
    let mut guest = if host_bits != 0 {
        addr
    } else {
        slirp_addr(network, prefix, 0x0000_020f)
    };
    let mut host = slirp_addr(network, prefix, 0x0000_0202);
    let mut dns = slirp_addr(network, prefix, 0x0000_0203);
    if let Some(h) = &o.host {
        host = parse_v4("--host", h)?;
    }
    if let Some(d) = &o.dns {
        dns = parse_v4("--dns", d)?;
    }
    if let Some(g) = &o.dhcp_start {
        guest = parse_v4("--dhcp-start", g)?;
    }
    let n = Net4 {
        network,
        prefix,
        guest,
        host,
        dns,
    };
    for (opt, a) in [("--host", host), ("--dns", dns), ("--dhcp-start", guest)] {
        if !n.contains(a) {
            return Err(err(opt, format!("{a} is outside {network}/{prefix}")));
        }
        if a == network || a == n.broadcast() {
            return Err(err(opt, format!("{a} is the network or broadcast address")));
        }
    }
    if guest == host {
        return Err(err(
            "--dhcp-start",
            format!("guest address {guest} is the host's"),
        ));
    }
    if guest == dns {
        return Err(err(
            "--dhcp-start",
            format!("guest address {guest} is the DNS address"),
        ));
    }
    Ok(Some(n))
}

fn resolve_net6(o: &Options) -> Result<Option<Net6>, ConfigError> {
    if o.disable_ipv6 {
        return Ok(None);
    }
    let (prefix, len) = match (&o.net6, &o.prefix_ipv6) {
        (Some(_), Some(_)) => return Err(err("--prefix-ipv6", "conflicts with --net6")),
        (Some(s), None) => {
            let (a, p) = s
                .split_once('/')
                .ok_or_else(|| err("--net6", format!("'{s}' is not ADDR/PREFIX")))?;
            let p: u8 = p
                .parse()
                .map_err(|_| err("--net6", format!("'{p}' is not a prefix length")))?;
            (parse_v6("--net6", a)?, p)
        }
        (None, Some(a)) => (
            parse_v6("--prefix-ipv6", a)?,
            o.prefix_length_ipv6.unwrap_or(64),
        ),
        (None, None) => {
            if o.prefix_length_ipv6.is_some() {
                return Err(err("--prefix-length-ipv6", "needs --prefix-ipv6"));
            }
            ("fec0::".parse().expect("literal"), 64)
        }
    };
    if !(8..=126).contains(&len) {
        return Err(err(
            "--net6",
            format!("prefix length /{len} must be 8..=126"),
        ));
    }
    let mask = u128::MAX << (128 - len as u32);
    let base = u128::from(prefix) & mask;
    let at = |low: u128| Ipv6Addr::from(base | (low & !mask));
    let mut n = Net6 {
        prefix: Ipv6Addr::from(base),
        prefix_len: len,
        host: at(2),
        dns: at(3),
        guest: at(0x15),
        router_ll: None,
    };
    if let Some(h) = &o.host_ipv6 {
        n.host = parse_v6("--host-ipv6", h)?;
    }
    if let Some(d) = &o.dns_ipv6 {
        n.dns = parse_v6("--dns-ipv6", d)?;
    }
    for (opt, a) in [("--host-ipv6", n.host), ("--dns-ipv6", n.dns)] {
        if !n.contains(a) {
            return Err(err(opt, format!("{a} is outside {}/{len}", n.prefix)));
        }
        if a == n.guest {
            return Err(err(opt, format!("{a} is the guest's address")));
        }
    }
    Ok(Some(n))
}

/// Parse `ADDR[:PORT]`, `[V6]:PORT` or a bare IPv6 address.
pub fn parse_upstream(s: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if let Ok(ip) = s.trim_matches(|c| c == '[' || c == ']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    Err(err(
        "--dns-upstream",
        format!("'{s}' is not ADDR, ADDR:PORT or [V6]:PORT"),
    ))
}

/// Nameservers and search list from a resolv.conf text.
pub fn parse_resolv_conf(text: &str) -> (Vec<SocketAddr>, Vec<String>) {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("nameserver") => {
                // Scoped addresses (fe80::1%eth0) cannot be reached from
                // another namespace's view; skip what does not parse.
                if let Some(ip) = w.next().and_then(|a| a.parse::<IpAddr>().ok()) {
                    servers.push(SocketAddr::new(ip, 53));
                }
            }
            Some("search") | Some("domain") => {
                search = w.map(str::to_owned).collect();
            }
            _ => {}
        }
    }
    (servers, search)
}

fn parse_port(option: &'static str, s: &str) -> Result<u16, ConfigError> {
    match s.parse::<u16>() {
        Ok(p) if p != 0 => Ok(p),
        _ => Err(err(option, format!("'{s}' is not a port (1-65535)"))),
    }
}

/// Split `[V6]:rest`, `V4:rest` or `:rest` into an optional address and the rest.
fn split_addr_port<'a>(
    option: &'static str,
    s: &'a str,
) -> Result<(Option<IpAddr>, &'a str), ConfigError> {
    if let Some(r) = s.strip_prefix('[') {
        let (a, rest) = r
            .split_once(']')
            .ok_or_else(|| err(option, format!("unclosed '[' in '{s}'")))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| err(option, format!("expected ':' after ']' in '{s}'")))?;
        return Ok((Some(IpAddr::V6(parse_v6(option, a)?)), rest));
    }
    let (a, rest) = s
        .rsplit_once(':')
        .ok_or_else(|| err(option, format!("expected ADDR:PORT in '{s}'")))?;
    if a.is_empty() {
        return Ok((None, rest));
    }
    let ip: IpAddr = a
        .parse()
        .map_err(|_| err(option, format!("'{a}' is not an address")))?;
    Ok((Some(ip), rest))
}

/// QEMU's `tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT`.
pub fn parse_hostfwd(s: &str) -> Result<Forward, ConfigError> {
    const O: &str = "--hostfwd";
    let (proto, rest) = match s.split_once(':') {
        Some(("tcp", r)) | Some(("", r)) => (Proto::Tcp, r),
        Some(("udp", r)) => (Proto::Udp, r),
        _ => return Err(err(O, format!("'{s}' must start with tcp: or udp:"))),
    };
    // The host part ends at the '-' that follows the host port.
    let (host, guest) = split_host_guest(rest).ok_or_else(|| {
        err(
            O,
            format!("'{s}' is not PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT"),
        )
    })?;
    let (haddr, hport) = split_addr_port(O, host)?;
    let (gaddr, gport) = split_addr_port(O, guest)?;
    let hport = parse_port(O, hport)?;
    let gport = parse_port(O, gport)?;
    let haddr = haddr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Ok(Forward {
        proto,
        bind: SocketAddr::new(haddr, hport),
        guest_addr: gaddr,
        guest_port: gport,
        device: None,
        best_effort: false,
    })
}

fn split_host_guest(s: &str) -> Option<(&str, &str)> {
    // Skip over a bracketed IPv6 host address before looking for '-'.
    let start = if s.starts_with('[') { s.find(']')? } else { 0 };
    let dash = start + s[start..].find('-')?;
    Some((&s[..dash], &s[dash + 1..]))
}

fn parse_range(option: &'static str, s: &str) -> Result<(u16, u16), ConfigError> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse_port(option, a)?, parse_port(option, b)?);
            if a > b {
                return Err(err(option, format!("range '{s}' runs backwards")));
            }
            Ok((a, b))
        }
        None => {
            let p = parse_port(option, s)?;
            Ok((p, p))
        }
    }
}

/// passt's `-t`/`-u` SPEC: `[ADDR/]PORT[-LAST][:GPORT[-GLAST]]`, comma lists.
pub fn parse_port_spec(
    option: &'static str,
    proto: Proto,
    spec: &str,
) -> Result<Vec<Forward>, ConfigError> {
    let mut out = Vec::new();
    let (bind, list) = match spec.rsplit_once('/') {
        Some((a, l)) => {
            let a = a.trim_matches(|c| c == '[' || c == ']');
            let ip: IpAddr = a
                .parse()
                .map_err(|_| err(option, format!("'{a}' is not a bind address")))?;
            (ip, l)
        }
        None => (IpAddr::V4(Ipv4Addr::UNSPECIFIED), spec),
    };
    for item in list.split(',') {
        let (h, g) = match item.split_once(':') {
            Some((h, g)) => (parse_range(option, h)?, Some(parse_range(option, g)?)),
            None => (parse_range(option, item)?, None),
        };
        let g = g.unwrap_or(h);
        if h.1 - h.0 != g.1 - g.0 {
            return Err(err(
                option,
                format!("'{item}': host and guest ranges differ in length"),
            ));
        }
        for i in 0..=(h.1 - h.0) {
            out.push(Forward {
                proto,
                bind: SocketAddr::new(bind, h.0 + i),
                guest_addr: None,
                guest_port: g.0 + i,
                device: None,
                best_effort: false,
            });
        }
    }
    Ok(out)
}

impl Config {
    /// Unit tests' configuration: `airlock ARGS...`, no resolv.conf.
    #[cfg(test)]
    pub(crate) fn for_test(args: &[&str]) -> Config {
        let argv = std::iter::once("airlock").chain(args.iter().copied());
        Config::from_options(
            &<Options as clap::Parser>::try_parse_from(argv).unwrap(),
            None,
        )
        .unwrap()
    }

    /// [`Config::for_test`] with a DNS upstream given, as flow tests need.
    #[cfg(test)]
    pub(crate) fn for_test_upstream(args: &[&str]) -> Config {
        let mut v = vec!["--dns-upstream", "127.0.0.1:5353"];
        v.extend_from_slice(args);
        Config::for_test(&v)
    }

    /// Resolve options; `resolv_conf` is the text of /etc/resolv.conf (read
    /// by the caller before the sandbox), used when no upstream is given.
    pub fn from_options(o: &Options, resolv_conf: Option<&str>) -> Result<Config, ConfigError> {
        if !(576..=65520).contains(&o.mtu) {
            return Err(err("--mtu", format!("{} is outside 576..=65520", o.mtu)));
        }
        let net4 = resolve_net4(o)?;
        let net6 = resolve_net6(o)?;
        if net4.is_none() && net6.is_none() {
            return Err(err("--disable-ipv4", "both IPv4 and IPv6 are disabled"));
        }
        if net6.is_some() && o.mtu < 1280 {
            return Err(err("--mtu", "IPv6 needs an MTU of at least 1280"));
        }
        let (rc_servers, rc_search) = resolv_conf.map(parse_resolv_conf).unwrap_or_default();
        let dns_upstream = if o.dns_upstream.is_empty() {
            rc_servers
        } else {
            o.dns_upstream
                .iter()
                .map(|s| parse_upstream(s))
                .collect::<Result<_, _>>()?
        };
        let dns_suffixes = if o.dns_suffixes.is_empty() {
            rc_search
        } else {
            o.dns_suffixes.clone()
        };
        for s in dns_suffixes
            .iter()
            .chain(o.domainname.iter())
            .chain(o.hostname.iter())
        {
            if !is_domain_name(s) {
                return Err(err("--dns-suffixes", format!("'{s}' is not a domain name")));
            }
        }
        let mut forwards = Vec::new();
        for h in &o.hostfwd {
            forwards.push(parse_hostfwd(h)?);
        }
        for s in &o.tcp_ports {
            forwards.extend(parse_port_spec("--tcp-ports", Proto::Tcp, s)?);
        }
        for s in &o.udp_ports {
            forwards.extend(parse_port_spec("--udp-ports", Proto::Udp, s)?);
        }
        if o.max_flows == 0 || o.max_flows > 1 << 20 {
            return Err(err("--max-flows", "must be 1..=1048576"));
        }
        let outbound = crate::outbound::Outbound::parse(
            &o.outbound_addr,
            o.outbound_if4.as_deref(),
            o.outbound_if6.as_deref(),
        )
        .map_err(|(option, m)| err(option, m))?;
        let nbp = o.dhcp_nbp.as_deref().map(parse_nbp).transpose()?;
        for (option, name) in [
            ("--dhcp-bootfile", o.dhcp_bootfile.as_deref()),
            ("--dhcp-nbp", nbp.as_ref().map(|n| n.1.as_str())),
        ] {
            // DHCP option 67 holds at most 255 bytes; PXE ROMs read text.
            if name.is_some_and(|n| n.len() > 255 || n.contains('\0')) {
                return Err(err(option, "the boot file name is too long"));
            }
        }
        if o.tftp.is_some() && net4.is_none() {
            return Err(err(
                "--tftp",
                "needs IPv4 (TFTP is served on the virtual host address)",
            ));
        }
        Ok(Config {
            net4,
            net6,
            mtu: o.mtu as u16,
            hostname: o.hostname.clone(),
            domainname: o.domainname.clone(),
            fqdn: None,
            dns_suffixes,
            host_loopback: !o.disable_host_loopback,
            restrict: o.restrict,
            dns_forward: !o.disable_dns,
            dns_upstream,
            forwards,
            max_flows: o.max_flows,
            udp_timeout_s: o.udp_timeout.max(1),
            udp_stream_timeout_s: o.udp_stream_timeout.max(1),
            outbound,
            tftp: o.tftp.clone(),
            tftp_root: None,
            dhcp_bootfile: o
                .dhcp_bootfile
                .clone()
                .or_else(|| nbp.as_ref().map(|n| n.1.clone())),
            dhcp_next_server: nbp.map(|n| n.0),
            mac: None,
            virtual_subnet: true,
            mtu_option_always: false,
            dns6: !o.disable_dns,
            passt_ipv6: false,
            off: Off::default(),
            map_guest: MapGuest::default(),
        })
    }
}

/// A DNS name airlock will put in DHCP: 1..=253 bytes of letters, digits,
/// `-`, `_` and dots, labels of at most 63.
pub fn is_domain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| l.len() <= 63)
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn net4(args: &[&str]) -> Result<Net4, ConfigError> {
        let mut v = vec!["airlock"];
        v.extend_from_slice(args);
        let o = Options::try_parse_from(v).unwrap();
        Config::from_options(&o, None).map(|c| c.net4.unwrap())
    }

    fn a(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn slirp_table_from_the_issue() {
        type Case<'a> = (&'a [&'a str], &'a str, u8, &'a str, &'a str, [u8; 6]);
        let cases: &[Case] = &[
            (
                &[],
                "10.0.2.15",
                24,
                "10.0.2.2",
                "10.0.2.3",
                [0x52, 0x55, 10, 0, 2, 2],
            ),
            (
                &["--net=169.254.0.0/16"],
                "169.254.2.15",
                16,
                "169.254.2.2",
                "169.254.2.3",
                [0x52, 0x55, 0xa9, 0xfe, 2, 2],
            ),
            (
                &["--net=169.254.2.15/16"],
                "169.254.2.15",
                16,
                "169.254.2.2",
                "169.254.2.3",
                [0x52, 0x55, 0xa9, 0xfe, 2, 2],
            ),
            (
                &["--net=192.168.100.0", "--mask=255.255.255.0"],
                "192.168.100.15",
                24,
                "192.168.100.2",
                "192.168.100.3",
                [0x52, 0x55, 0xc0, 0xa8, 0x64, 2],
            ),
            (
                &["--net", "10.7.0.9/16"],
                "10.7.0.9",
                16,
                "10.7.2.2",
                "10.7.2.3",
                [0x52, 0x55, 10, 7, 2, 2],
            ),
        ];
        for (args, guest, prefix, host, dns, mac) in cases {
            let n = net4(args).unwrap();
            assert_eq!(n.guest, a(guest), "{args:?}");
            assert_eq!(n.prefix, *prefix, "{args:?}");
            assert_eq!(n.host, a(host), "{args:?}");
            assert_eq!(n.dns, a(dns), "{args:?}");
            assert_eq!(router_mac4(n.host), *mac, "{args:?}");
        }
    }

    #[test]
    fn bad_combinations_name_the_option() {
        assert_eq!(net4(&["--net=10.0.0.0/31"]).unwrap_err().option, "--net");
        assert_eq!(
            net4(&["--net=10.0.2.0/24", "--host=10.0.3.2"])
                .unwrap_err()
                .option,
            "--host"
        );
        assert_eq!(
            net4(&["--dhcp-start=10.0.2.2"]).unwrap_err().option,
            "--dhcp-start"
        );
        assert_eq!(
            net4(&["--dhcp-start=10.0.2.3"]).unwrap_err().option,
            "--dhcp-start"
        );
        assert_eq!(net4(&["--net=bogus"]).unwrap_err().option, "--net");
        assert_eq!(
            net4(&["--net=10.0.0.0", "--mask=255.0.255.0"])
                .unwrap_err()
                .option,
            "--mask"
        );
        // /30 is the smallest that fits: slirp's low bits land inside it.
        assert!(net4(&["--net=10.0.0.0/30"]).is_err());
    }

    #[test]
    fn hostfwd_forms() {
        let f = parse_hostfwd("tcp::5202-:5201").unwrap();
        assert_eq!(f.bind, "0.0.0.0:5202".parse().unwrap());
        assert_eq!((f.guest_addr, f.guest_port), (None, 5201));
        let f = parse_hostfwd("udp:127.0.0.1:53-10.0.2.15:5353").unwrap();
        assert_eq!(f.proto, Proto::Udp);
        assert_eq!(f.bind, "127.0.0.1:53".parse().unwrap());
        assert_eq!(f.guest_addr, Some("10.0.2.15".parse().unwrap()));
        let f = parse_hostfwd("tcp:[::1]:8080-:80").unwrap();
        assert_eq!(f.bind, "[::1]:8080".parse().unwrap());
        assert!(parse_hostfwd("sctp::1-:2").is_err());
        assert!(parse_hostfwd("tcp::0-:2").is_err());
        assert!(parse_hostfwd("tcp::70000-:2").is_err());
    }

    #[test]
    fn passt_port_specs() {
        let v = parse_port_spec("-t", Proto::Tcp, "22,8080:80,1000-1002:2000-2002").unwrap();
        let got: Vec<(u16, u16)> = v.iter().map(|f| (f.bind.port(), f.guest_port)).collect();
        assert_eq!(
            got,
            vec![
                (22, 22),
                (8080, 80),
                (1000, 2000),
                (1001, 2001),
                (1002, 2002)
            ]
        );
        let v = parse_port_spec("-t", Proto::Tcp, "127.0.0.1/5202:5201").unwrap();
        assert_eq!(v[0].bind, "127.0.0.1:5202".parse().unwrap());
        let v = parse_port_spec("-t", Proto::Tcp, "::1/9000").unwrap();
        assert_eq!(v[0].bind, "[::1]:9000".parse().unwrap());
        assert!(parse_port_spec("-t", Proto::Tcp, "10-5").is_err());
        assert!(parse_port_spec("-t", Proto::Tcp, "1-3:4-5").is_err());
    }

    #[test]
    fn resolv_conf_parsing() {
        let (s, d) = parse_resolv_conf(
            "# c\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver ::1\nsearch a.example b.example\n",
        );
        assert_eq!(
            s,
            vec![
                "127.0.0.53:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(d, vec!["a.example", "b.example"]);
    }

    #[test]
    fn ipv6_defaults_and_mac() {
        let o = Options::try_parse_from(["airlock"]).unwrap();
        let c = Config::from_options(&o, None).unwrap();
        let n = c.net6.unwrap();
        assert_eq!(n.host, "fec0::2".parse::<Ipv6Addr>().unwrap());
        assert_eq!(n.dns, "fec0::3".parse::<Ipv6Addr>().unwrap());
        assert_eq!(router_mac6(n.host), [0x52, 0x56, 0, 0, 0, 2]);
        let o = Options::try_parse_from(["airlock", "--net6=fd00:1::/64"]).unwrap();
        let n = Config::from_options(&o, None).unwrap().net6.unwrap();
        assert_eq!(n.host, "fd00:1::2".parse::<Ipv6Addr>().unwrap());
    }
}
