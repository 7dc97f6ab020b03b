//! passt's personality: its command line, its defaults, its addressing.
//!
//! Chosen by the program name (`passt`, so a `passt` symlink to airlock is
//! what a launcher finds) or `--compat=passt` first. The grammar is
//! getopt_long's with passt's option string: short clusters (`-1fq`),
//! attached or separate arguments (`-t22`, `-t 22`), `--opt=value` and
//! `--opt value`, unique prefixes of long names, `--` ending the options.
//! Every option passt has either gets passt's meaning or is refused with one
//! line naming it (exit 2): none is accepted and ignored.
//!
//! passt's addressing differs from slirp's: the guest gets the host
//! interface's own address, prefix and gateway (read by [`crate::hostif`]
//! before the sandbox) unless `--address`/`--netmask`/`--gateway` say
//! otherwise, every address answers with one MAC (`9a:55:9a:55:9a:55`
//! unless `--mac-addr`), and the gateway address reaches the host's
//! loopback (unless `--no-map-gw`).
#![forbid(unsafe_code)]

use crate::cli::Options;
use crate::config::{self, Config, ConfigError, Forward, MapGuest, Net4, Net6, Off, Proto};
use crate::hostif::HostAddr;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// passt's own MAC address, as the guest sees it.
pub const PASST_MAC: [u8; 6] = [0x9a, 0x55, 0x9a, 0x55, 0x9a, 0x55];

/// The first ephemeral port, where `all` stops (Linux's default
/// `ip_local_port_range`; the running kernel's value is read at startup).
pub const EPHEMERAL_DEFAULT: u16 = 32768;

/// What passt's command line says about addressing and forwards; resolved
/// into a [`Config`] by [`config`] once the host interface is known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passt {
    pub addr4: Option<Ipv4Addr>,
    pub prefix4: Option<u8>,
    pub gw4: Option<Ipv4Addr>,
    pub addr6: Option<Ipv6Addr>,
    pub gw6: Option<Ipv6Addr>,
    pub mac: Option<[u8; 6]>,
    pub dns: Vec<IpAddr>,
    pub no_dns: bool,
    pub dns_forward: Option<IpAddr>,
    pub search: Vec<String>,
    pub no_search: bool,
    pub fqdn: Option<String>,
    /// `-i`: the host interface to copy from.
    pub interface: Option<String>,
    pub no_map_gw: bool,
    /// `--no-dhcp` and the other `--no-*` switches, as given.
    pub off: Off,
    /// `--map-guest-addr`.
    pub map_guest: MapGuest,
    pub forwards: Vec<Spec>,
    /// `--print-capabilities` answers as a vhost-user backend.
    pub print_capabilities: bool,
    /// Filled in at startup: the host interface, per family.
    pub host: [Option<HostAddr>; 2],
    /// Filled in at startup: the first ephemeral port.
    pub ephemeral: u16,
}

/// One `-t`/`-u` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub proto: Proto,
    pub text: String,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    /// airlock's options and passt's own view of them.
    Run(Box<Options>, Box<Passt>),
    /// `--help`/`--version` printed; exit 0.
    Done,
}

/// A usage error: one line naming the option, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage(pub String);

fn usage(opt: &str, msg: impl std::fmt::Display) -> Usage {
    Usage(format!("{opt}: {msg}"))
}

/// Does this argv ask for the passt personality? Returns the arguments
/// after the program name (and after `--compat=passt`).
pub fn wants_passt(args: &[OsString]) -> Option<&[OsString]> {
    let name = args.first()?;
    let base = std::path::Path::new(name).file_name()?;
    if base == "passt" || base == "passt.avx2" {
        return args.get(1..);
    }
    match args.get(1).and_then(|a| a.to_str()) {
        Some("--compat=passt") => args.get(2..),
        Some("--compat") if args.get(2).and_then(|a| a.to_str()) == Some("passt") => args.get(3..),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Arg {
    None,
    Required,
}

/// passt's long options (conf.c), each with its short letter or none.
const LONG: &[(&str, Option<char>, Arg)] = &[
    ("debug", Some('d'), Arg::None),
    ("quiet", Some('q'), Arg::None),
    ("foreground", Some('f'), Arg::None),
    ("stderr", Some('e'), Arg::None),
    ("log-file", Some('l'), Arg::Required),
    ("help", Some('h'), Arg::None),
    ("socket", Some('s'), Arg::Required),
    ("socket-path", Some('s'), Arg::Required),
    ("fd", Some('F'), Arg::Required),
    ("ns-ifname", Some('I'), Arg::Required),
    ("pcap", Some('p'), Arg::Required),
    ("pid", Some('P'), Arg::Required),
    ("mtu", Some('m'), Arg::Required),
    ("address", Some('a'), Arg::Required),
    ("netmask", Some('n'), Arg::Required),
    ("mac-addr", Some('M'), Arg::Required),
    ("gateway", Some('g'), Arg::Required),
    ("interface", Some('i'), Arg::Required),
    ("outbound", Some('o'), Arg::Required),
    ("dns", Some('D'), Arg::Required),
    ("search", Some('S'), Arg::Required),
    ("hostname", Some('H'), Arg::Required),
    ("ipv4-only", Some('4'), Arg::None),
    ("ipv6-only", Some('6'), Arg::None),
    ("one-off", Some('1'), Arg::None),
    ("tcp-ports", Some('t'), Arg::Required),
    ("udp-ports", Some('u'), Arg::Required),
    ("tcp-ns", Some('T'), Arg::Required),
    ("udp-ns", Some('U'), Arg::Required),
    ("conf-path", Some('c'), Arg::Required),
    ("no-tcp", None, Arg::None),
    ("no-udp", None, Arg::None),
    ("no-icmp", None, Arg::None),
    ("no-dhcp", None, Arg::None),
    ("no-dhcpv6", None, Arg::None),
    ("no-ndp", None, Arg::None),
    ("no-ra", None, Arg::None),
    ("no-splice", None, Arg::None),
    ("splice-only", None, Arg::None),
    ("freebind", None, Arg::None),
    ("no-map-gw", None, Arg::None),
    ("userns", None, Arg::Required),
    ("netns", None, Arg::Required),
    ("ns-mac-addr", None, Arg::Required),
    ("dhcp-dns", None, Arg::None),
    ("no-dhcp-dns", None, Arg::None),
    ("dhcp-search", None, Arg::None),
    ("no-dhcp-search", None, Arg::None),
    ("dns-forward", None, Arg::Required),
    ("no-netns-quit", None, Arg::None),
    ("trace", None, Arg::None),
    ("runas", None, Arg::Required),
    ("log-size", None, Arg::Required),
    ("version", None, Arg::None),
    ("outbound-if4", None, Arg::Required),
    ("outbound-if6", None, Arg::Required),
    ("config-net", None, Arg::None),
    ("no-copy-routes", None, Arg::None),
    ("no-copy-addrs", None, Arg::None),
    ("netns-only", None, Arg::None),
    ("map-host-loopback", None, Arg::Required),
    ("map-guest-addr", None, Arg::Required),
    ("host-lo-to-ns-lo", None, Arg::None),
    ("dns-host", None, Arg::Required),
    ("vhost-user", None, Arg::None),
    ("print-capabilities", None, Arg::None),
    ("fqdn", None, Arg::Required),
    ("repair-path", None, Arg::Required),
    ("migrate-exit", None, Arg::None),
    ("migrate-no-linger", None, Arg::None),
    ("stats", None, Arg::Required),
    ("chroot-fallback", None, Arg::None),
];

/// getopt_long's lookup: an exact name, else a unique prefix.
fn find_long(name: &str) -> Result<(&'static str, Option<char>, Arg), Usage> {
    if let Some(e) = LONG.iter().find(|e| e.0 == name) {
        return Ok(*e);
    }
    let mut hits = LONG.iter().filter(|e| e.0.starts_with(name));
    let first = hits.next();
    // glibc: prefixes of aliases of one option are not ambiguous.
    let other = hits.find(|e| first.is_some_and(|f| e.1.is_none() || e.1 != f.1));
    match (first, other) {
        (Some(e), None) => Ok(*e),
        (Some(_), Some(_)) => Err(usage(&format!("--{name}"), "ambiguous option")),
        _ => Err(usage(&format!("--{name}"), "unknown option")),
    }
}

fn short_arg(c: char) -> Option<Arg> {
    LONG.iter().find(|e| e.1 == Some(c)).map(|e| e.2)
}

/// Split the argument vector into (name, value) pairs, getopt_long style.
/// The name is the long name (for a short letter, its long name).
fn tokens(args: &[OsString]) -> Result<Vec<(&'static str, Option<String>)>, Usage> {
    let mut out = Vec::new();
    let mut i = 0;
    let text = |a: &OsString| {
        a.to_str()
            .map(str::to_owned)
            .ok_or_else(|| usage(&a.to_string_lossy(), "not valid UTF-8"))
    };
    while i < args.len() {
        let a = text(&args[i])?;
        i += 1;
        if a == "--" {
            if let Some(extra) = args.get(i) {
                return Err(usage(
                    &extra.to_string_lossy(),
                    "passt takes no command (that is pasta)",
                ));
            }
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (body, None),
            };
            let (long, _, kind) = find_long(name)?;
            let value = match (kind, inline) {
                (Arg::None, Some(_)) => {
                    return Err(usage(&format!("--{long}"), "takes no argument"))
                }
                (Arg::None, None) => None,
                (Arg::Required, Some(v)) => Some(v),
                (Arg::Required, None) => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| usage(&format!("--{long}"), "requires an argument"))?;
                    i += 1;
                    Some(text(v)?)
                }
            };
            out.push((long, value));
        } else if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) {
            for (at, c) in cluster.char_indices() {
                let kind = short_arg(c).ok_or_else(|| usage(&format!("-{c}"), "unknown option"))?;
                let long = LONG
                    .iter()
                    .find(|e| e.1 == Some(c))
                    .map(|e| e.0)
                    .unwrap_or("");
                if kind == Arg::None {
                    out.push((long, None));
                    continue;
                }
                let rest = &cluster[at + c.len_utf8()..];
                let v = if !rest.is_empty() {
                    rest.to_owned()
                } else {
                    let v = args
                        .get(i)
                        .ok_or_else(|| usage(&format!("-{c}"), "requires an argument"))?;
                    i += 1;
                    text(v)?
                };
                out.push((long, Some(v)));
                break;
            }
        } else {
            return Err(usage(&a, "passt takes no command (that is pasta)"));
        }
    }
    Ok(out)
}

fn parse_ip(opt: &str, s: &str) -> Result<IpAddr, Usage> {
    s.trim_matches(|c| c == '[' || c == ']')
        .parse()
        .map_err(|_| usage(opt, format!("'{s}' is not an IP address")))
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in m.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

/// Options airlock does not implement in passt mode: refused, named.
fn refused(long: &str) -> Option<&'static str> {
    Some(match long {
        "ns-ifname" | "tcp-ns" | "udp-ns" | "userns" | "netns" | "no-netns-quit" | "config-net"
        | "netns-only" | "ns-mac-addr" | "host-lo-to-ns-lo" | "splice-only" | "no-splice" => {
            "a pasta option, meaningless for passt"
        }
        "freebind" | "no-copy-routes" | "no-copy-addrs" | "dns-host" | "migrate-exit"
        | "migrate-no-linger" | "stats" | "conf-path" | "chroot-fallback" | "stderr" => {
            "not implemented by airlock"
        }
        _ => return None,
    })
}

/// The help text: what this personality accepts.
pub const HELP: &str = "\
Usage: passt [OPTION]...   (airlock's passt personality)
  -s, --socket PATH    listen for the VMM on PATH, daemonize once listening
  -F, --fd N           use the connected stream socket N (daemonizes too)
  -1, --one-off        exit when the VMM disconnects
  -f, --foreground     do not daemonize
  -P, --pid FILE       write the daemon's PID to FILE
  -q, --quiet  -d, --debug  --trace  -l, --log-file FILE  --runas UID[:GID]
  -4, --ipv4-only  -6, --ipv6-only
  -a, --address ADDR  -n, --netmask MASK  -g, --gateway ADDR  -M, --mac-addr MAC
  -m, --mtu N  -D, --dns ADDR|none  --dns-forward ADDR  -S, --search LIST|none
  -H, --hostname NAME  --fqdn NAME  -i, --interface NAME  --no-map-gw
  --map-host-loopback ADDR|none  --map-guest-addr ADDR|none
  --no-dhcp-dns  --no-dhcp-search  --no-dhcp  --no-dhcpv6  --no-ndp  --no-ra
  --no-tcp  --no-udp  --no-icmp
  -t, --tcp-ports SPEC  -u, --udp-ports SPEC   (none, all, [ADDR[%DEV]/]A[-B][:[TOADDR/]C[-D]], ~A[-B])
  --print-capabilities  --version  --help
";

/// Parse passt's command line (without the program name).
pub fn parse(args: &[OsString]) -> Result<Parsed, Usage> {
    let mut o = Options {
        interface: "tap0".into(),
        mtu: 65520,
        max_flows: 4096,
        udp_timeout: 30,
        udp_stream_timeout: 120,
        // passt's default: the gateway reaches the host's loopback.
        ..Options::default()
    };
    let mut p = Passt {
        ephemeral: EPHEMERAL_DEFAULT,
        ..Passt::default()
    };
    for (long, v) in tokens(args)? {
        let opt = format!("--{long}");
        let val = v.unwrap_or_default();
        if let Some(why) = refused(long) {
            return Err(usage(&opt, why));
        }
        match long {
            "help" => {
                print!("{HELP}");
                return Ok(Parsed::Done);
            }
            "version" => {
                println!("airlock {} (passt personality)", env!("CARGO_PKG_VERSION"));
                return Ok(Parsed::Done);
            }
            "print-capabilities" => {
                o.print_capabilities = true;
                p.print_capabilities = true;
            }
            "debug" => o.debug = true,
            "quiet" => o.quiet = true,
            "trace" => {
                o.trace = true;
                o.debug = true;
            }
            "foreground" => o.foreground = true,
            "log-file" => o.log_file = Some(val.into()),
            "log-size" => {
                o.log_size = Some(
                    val.parse()
                        .map_err(|_| usage(&opt, format!("'{val}' is not a size in bytes")))?,
                )
            }
            "pcap" => o.pcap = Some(val.into()),
            "outbound" => o.outbound_addr.push(val),
            "outbound-if4" => o.outbound_if4 = Some(val),
            "outbound-if6" => o.outbound_if6 = Some(val),
            "vhost-user" => o.vhost_user = true,
            "runas" => o.runas = Some(val),
            "socket" | "socket-path" => o.socket = Some(val.into()),
            "fd" => {
                o.fd = Some(
                    val.parse()
                        .map_err(|_| usage(&opt, format!("'{val}' is not a descriptor")))?,
                )
            }
            "pid" => o.pid = Some(val.into()),
            "one-off" => o.one_off = true,
            "mtu" => {
                o.mtu = val
                    .parse()
                    .map_err(|_| usage(&opt, format!("'{val}' is not an MTU")))?
            }
            "ipv4-only" => o.disable_ipv6 = true,
            "ipv6-only" => o.disable_ipv4 = true,
            "address" => match parse_ip(&opt, &val)? {
                IpAddr::V4(a) if p.addr4.is_none() => p.addr4 = Some(a),
                IpAddr::V6(a) if p.addr6.is_none() => p.addr6 = Some(a),
                _ => return Err(usage(&opt, "given twice for one family")),
            },
            "netmask" => {
                let prefix = match val.parse::<u8>() {
                    Ok(n) if n <= 32 => n,
                    _ => match val.parse::<Ipv4Addr>() {
                        Ok(m)
                            if u32::from(m).leading_ones() + u32::from(m).trailing_zeros()
                                == 32 =>
                        {
                            u32::from(m).leading_ones() as u8
                        }
                        _ => return Err(usage(&opt, format!("'{val}' is not a netmask"))),
                    },
                };
                p.prefix4 = Some(prefix);
            }
            "gateway" => match parse_ip(&opt, &val)? {
                IpAddr::V4(a) => p.gw4 = Some(a),
                IpAddr::V6(a) => p.gw6 = Some(a),
            },
            "mac-addr" => {
                p.mac = Some(
                    parse_mac(&val)
                        .ok_or_else(|| usage(&opt, format!("'{val}' is not a MAC address")))?,
                )
            }
            "interface" => p.interface = Some(val),
            "dns" => {
                if val == "none" {
                    p.no_dns = true;
                } else {
                    p.dns.push(parse_ip(&opt, &val)?);
                }
            }
            "no-dhcp-dns" => p.no_dns = true,
            "dhcp-dns" => p.no_dns = false,
            "dns-forward" => p.dns_forward = Some(parse_ip(&opt, &val)?),
            "search" => {
                if val == "none" {
                    p.no_search = true;
                } else {
                    p.search.extend(
                        val.split([' ', ','])
                            .filter(|s| !s.is_empty())
                            .map(String::from),
                    );
                }
            }
            "no-dhcp-search" => p.no_search = true,
            "dhcp-search" => p.no_search = false,
            "hostname" => o.hostname = Some(val),
            "fqdn" => p.fqdn = Some(val),
            "no-map-gw" => p.no_map_gw = true,
            // vhost-user launchers (crosvm's, Cuttlefish's) say there is no
            // passt-repair helper; airlock has no migration to repair.
            "repair-path" if val == "none" => {}
            "repair-path" => return Err(usage(&opt, "not implemented by airlock (only 'none')")),
            "no-dhcp" => p.off.dhcp = true,
            "no-dhcpv6" => p.off.dhcpv6 = true,
            "no-ndp" => p.off.ndp = true,
            "no-ra" => p.off.ra = true,
            "no-tcp" => p.off.tcp = true,
            "no-udp" => p.off.udp = true,
            "no-icmp" => p.off.icmp = true,
            "map-guest-addr" => {
                if val == "none" {
                    p.map_guest = MapGuest::default();
                } else {
                    // passt's conf_nat: the last one of each family wins.
                    match parse_ip(&opt, &val)? {
                        a if a.is_unspecified() || a.is_loopback() || a.is_multicast() => {
                            return Err(usage(&opt, format!("'{val}' cannot be remapped")))
                        }
                        IpAddr::V4(a) => p.map_guest.v4 = Some(a),
                        IpAddr::V6(a) => p.map_guest.v6 = Some(a),
                    }
                }
            }
            "map-host-loopback" => {
                if val == "none" {
                    p.no_map_gw = true;
                } else {
                    // Only the gateway itself can be the loopback mapping:
                    // airlock's router address is what reaches loopback.
                    let a = parse_ip(&opt, &val)?;
                    if Some(a) != p.gw4.map(IpAddr::V4) && Some(a) != p.gw6.map(IpAddr::V6) {
                        return Err(usage(
                            &opt,
                            "airlock maps only the gateway address (give --gateway first, or none)",
                        ));
                    }
                }
            }
            "tcp-ports" => p.forwards.push(Spec {
                proto: Proto::Tcp,
                text: val,
            }),
            "udp-ports" => p.forwards.push(Spec {
                proto: Proto::Udp,
                text: val,
            }),
            other => return Err(usage(&format!("--{other}"), "not implemented by airlock")),
        }
    }
    if o.fd.is_some() && o.socket.is_some() {
        return Err(usage("--fd", "conflicts with --socket"));
    }
    if o.disable_ipv4 && o.disable_ipv6 {
        return Err(usage("--ipv4-only", "conflicts with --ipv6-only"));
    }
    if o.fd.is_none() && o.socket.is_none() && !o.print_capabilities {
        // passt's default: the first free /tmp/passt_N.socket.
        o.socket = (1..=1024)
            .map(|n| std::path::PathBuf::from(format!("/tmp/passt_{n}.socket")))
            .find(|p| !p.exists());
    }
    Ok(Parsed::Run(Box::new(o), Box::new(p)))
}

fn err(option: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        option,
        message: message.into(),
    }
}

/// passt's classful default for an `--address` given without `--netmask`.
fn classful(a: Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => 32,
    }
}

fn mask4(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - prefix as u32).unwrap_or(0)
}

fn port_range(opt: &'static str, s: &str) -> Result<(u16, u16), ConfigError> {
    let p = |x: &str| {
        x.parse::<u16>()
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| err(opt, format!("'{x}' is not a port (1-65535)")))
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (p(a)?, p(b)?),
        None => (p(s)?, p(s)?),
    };
    if a > b {
        return Err(err(opt, format!("range '{s}' runs backwards")));
    }
    Ok((a, b))
}

/// One `-t`/`-u` SPEC in passt's grammar, expanded to forwards.
/// `ephemeral` is where `all` (and an exclusions-only spec) stops.
pub fn expand_spec(
    proto: Proto,
    spec: &str,
    ephemeral: u16,
    out: &mut Vec<Forward>,
) -> Result<(), ConfigError> {
    let opt = match proto {
        Proto::Tcp => "--tcp-ports",
        Proto::Udp => "--udp-ports",
    };
    if spec == "none" {
        return Ok(());
    }
    // [ADDR][%DEV]/ prefix: what precedes the first '/', when it is an
    // address (or empty, or %DEV) rather than ports with a target.
    let prefix = spec.split_once('/').filter(|(h, _)| {
        let a = h.split('%').next().unwrap_or("");
        a.is_empty()
            || a.trim_matches(|c| c == '[' || c == ']')
                .parse::<IpAddr>()
                .is_ok()
    });
    let (bind_addr, device, list) = match prefix {
        Some((head, list)) => {
            let (a, d) = match head.split_once('%') {
                Some((a, d)) if !d.is_empty() => (a, Some(d.to_owned())),
                Some(_) => return Err(err(opt, format!("'{spec}': empty interface name"))),
                None => (head, None),
            };
            let a = if a.is_empty() {
                None
            } else {
                a.trim_matches(|c| c == '[' || c == ']')
                    .parse::<IpAddr>()
                    .ok()
            };
            (a, d, list)
        }
        None => (None, None, spec),
    };
    // (host ports, target address, first target port)
    type Include = ((u16, u16), Option<IpAddr>, Option<u16>);
    let mut include: Vec<Include> = Vec::new();
    let mut exclude: Vec<(u16, u16)> = Vec::new();
    let mut all: Option<Option<IpAddr>> = None;
    for item in list.split(',') {
        if let Some(x) = item.strip_prefix('~') {
            exclude.push(port_range(opt, x)?);
            continue;
        }
        let (ports, to) = match item.split_once(':') {
            Some((h, t)) => (h, Some(t)),
            None => (item, None),
        };
        // :[TOADDR/]TOFIRST[-TOLAST], or :TOADDR alone (after all).
        let (to_addr, to_ports) = match to {
            None => (None, None),
            Some(t) => match t.rsplit_once('/') {
                Some((a, r)) => (Some(a), Some(r)),
                None if t.parse::<IpAddr>().is_ok()
                    && !t.chars().all(|c| c.is_ascii_digit() || c == '-') =>
                {
                    (Some(t), None)
                }
                None => (None, Some(t)),
            },
        };
        let to_addr = match to_addr {
            Some(a) => Some(
                a.trim_matches(|c| c == '[' || c == ']')
                    .parse::<IpAddr>()
                    .map_err(|_| err(opt, format!("'{a}' is not a target address")))?,
            ),
            None => None,
        };
        if ports == "all" {
            if to_ports.is_some() {
                return Err(err(opt, format!("'{item}': 'all' maps to an address only")));
            }
            all = Some(to_addr);
            continue;
        }
        if ports == "auto" {
            return Err(err(opt, "'auto' is pasta only"));
        }
        let h = port_range(opt, ports)?;
        let g = match to_ports {
            Some(t) => {
                let g = port_range(opt, t)?;
                if g.1 - g.0 != h.1 - h.0 {
                    return Err(err(
                        opt,
                        format!("'{item}': host and guest ranges differ in length"),
                    ));
                }
                Some(g.0)
            }
            None => None,
        };
        include.push((h, to_addr, g));
    }
    // Only exclusions: everything else that is not ephemeral.
    if include.is_empty() && all.is_none() {
        all = Some(None);
    }
    let excluded = |p: u16| exclude.iter().any(|&(a, b)| (a..=b).contains(&p));
    let bind = bind_addr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let mut push = |port: u16, guest_addr: Option<IpAddr>, guest_port: u16, best_effort| {
        out.push(Forward {
            proto,
            bind: SocketAddr::new(bind, port),
            guest_addr,
            guest_port,
            device: device.clone(),
            best_effort,
        })
    };
    for ((a, b), to, g) in include {
        for port in a..=b {
            if !excluded(port) {
                push(port, to, g.map_or(port, |g| g + (port - a)), false);
            }
        }
    }
    if let Some(to) = all {
        for port in 1..ephemeral {
            if !excluded(port) {
                push(port, to, port, true);
            }
        }
    }
    Ok(())
}

/// `(dns address the guest is offered, where its queries go)` from passt's
/// rules: `-D` verbatim, else the host's first nameserver, a loopback one
/// being reached through the gateway (or the `--dns-forward` address).
fn pick_dns<A: Copy + Into<IpAddr> + PartialEq>(
    explicit: Option<A>,
    resolvers: &[SocketAddr],
    of_family: impl Fn(IpAddr) -> Option<A>,
    map_gw: Option<A>,
    forward: Option<A>,
    loopback: IpAddr,
) -> Option<(A, SocketAddr)> {
    let to_host = |a: A| {
        if Some(a) == map_gw {
            SocketAddr::new(loopback, 53)
        } else {
            SocketAddr::new(a.into(), 53)
        }
    };
    if let Some(a) = explicit {
        return Some((a, to_host(a)));
    }
    let ns = resolvers.iter().find(|s| of_family(s.ip()).is_some())?;
    let a = of_family(ns.ip())?;
    if ns.ip().is_loopback() {
        let shown = forward.or(map_gw)?;
        return Some((shown, *ns));
    }
    Some((a, *ns))
}

/// Resolve passt's options into airlock's configuration.
pub fn config(o: &Options, p: &Passt, resolv_conf: Option<&str>) -> Result<Config, ConfigError> {
    let (resolvers, rc_search) = resolv_conf
        .map(config::parse_resolv_conf)
        .unwrap_or_default();
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => Some(a),
        _ => None,
    };
    let v6 = |a: IpAddr| match a {
        IpAddr::V6(a) => Some(a),
        _ => None,
    };
    let mut dns_upstream = Vec::new();
    let mut dns6 = false;
    let net4 = if o.disable_ipv4 {
        None
    } else {
        let host = p.host[0];
        let gw = p.gw4.or(host.and_then(|h| h.gateway).and_then(v4));
        let from_host = host
            .and_then(|h| h.addr)
            .and_then(|(a, l)| Some((v4(a)?, l)));
        let (addr, prefix) = match (p.addr4, from_host) {
            (Some(a), _) => (Some(a), p.prefix4.unwrap_or_else(|| classful(a))),
            (None, Some((a, l))) => (Some(a), l),
            (None, None) => (None, 0),
        };
        match (addr, gw) {
            (Some(guest), Some(gw)) => {
                if guest == gw {
                    return Err(err("--gateway", format!("{gw} is the guest's address")));
                }
                let map_gw = (!p.no_map_gw).then_some(gw);
                let dns = if p.no_dns {
                    None
                } else {
                    pick_dns(
                        p.dns.iter().copied().find_map(v4),
                        &resolvers,
                        v4,
                        map_gw,
                        p.dns_forward.and_then(v4),
                        IpAddr::V4(Ipv4Addr::LOCALHOST),
                    )
                };
                dns_upstream.extend(dns.map(|d| d.1));
                Some(Net4 {
                    network: Ipv4Addr::from(u32::from(guest) & mask4(prefix)),
                    prefix,
                    guest,
                    host: gw,
                    dns: dns.map_or(gw, |d| d.0),
                })
            }
            _ => None,
        }
    };
    let net6 = if o.disable_ipv6 {
        None
    } else {
        let host = p.host[1];
        let gw = p.gw6.or(host.and_then(|h| h.gateway).and_then(v6));
        let from_host = host
            .and_then(|h| h.addr)
            .and_then(|(a, l)| Some((v6(a)?, l)));
        let addr = p.addr6.map(|a| (a, 64)).or(from_host);
        match (addr, gw) {
            (Some((guest, len)), Some(gw)) if (8..=126).contains(&len) => {
                let mask = u128::MAX << (128 - len as u32);
                let map_gw = (!p.no_map_gw).then_some(gw);
                let dns = if p.no_dns {
                    None
                } else {
                    pick_dns(
                        p.dns.iter().copied().find_map(v6),
                        &resolvers,
                        v6,
                        map_gw,
                        p.dns_forward.and_then(v6),
                        IpAddr::V6(Ipv6Addr::LOCALHOST),
                    )
                };
                dns_upstream.extend(dns.map(|d| d.1));
                // Without an IPv6 resolver passt offers none over IPv6.
                dns6 = dns.is_some();
                Some(Net6 {
                    prefix: Ipv6Addr::from(u128::from(guest) & mask),
                    prefix_len: len,
                    host: gw,
                    dns: dns.map_or(gw, |d| d.0),
                    guest,
                    // passt's: a link-local gateway itself, else the host
                    // interface's own link-local address.
                    router_ll: if gw.segments()[0] & 0xffc0 == 0xfe80 {
                        Some(gw)
                    } else {
                        host.and_then(|h| h.link_local)
                    },
                })
            }
            _ => None,
        }
    };
    if net4.is_none() && net6.is_none() {
        return Err(err(
            "--address",
            "no address to give the guest: the host interface has none (and no --address/--gateway)",
        ));
    }
    if !(576..=65520).contains(&o.mtu) {
        return Err(err("--mtu", format!("{} is outside 576..=65520", o.mtu)));
    }
    if net6.is_some() && o.mtu < 1280 {
        return Err(err("--mtu", "IPv6 needs an MTU of at least 1280"));
    }
    let dns_suffixes = if p.no_search {
        Vec::new()
    } else if p.search.is_empty() {
        rc_search
    } else {
        p.search.clone()
    };
    for s in dns_suffixes
        .iter()
        .chain(o.hostname.iter())
        .chain(p.fqdn.iter())
    {
        if !config::is_domain_name(s) {
            return Err(err("--search", format!("'{s}' is not a domain name")));
        }
    }
    // passt's implications: no ICMP handler means no NDP, and without NDP
    // no router advertisement goes out either.
    let mut off = p.off;
    off.ndp |= off.icmp;
    off.ra |= off.ndp;
    let mut forwards = Vec::new();
    for s in &p.forwards {
        match s.proto {
            Proto::Tcp if off.tcp => return Err(err("--tcp-ports", "TCP is off (--no-tcp)")),
            Proto::Udp if off.udp => return Err(err("--udp-ports", "UDP is off (--no-udp)")),
            _ => {}
        }
        expand_spec(s.proto, &s.text, p.ephemeral, &mut forwards)?;
    }
    dns_upstream.dedup();
    // Only a family the guest has: the mapping's target is its address.
    let map_guest = MapGuest {
        v4: p.map_guest.v4.filter(|_| net4.is_some()),
        v6: p.map_guest.v6.filter(|_| net6.is_some()),
    };
    Ok(Config {
        dns_forward: !dns_upstream.is_empty(),
        dns_upstream,
        net4,
        net6,
        mtu: o.mtu as u16,
        hostname: o.hostname.clone(),
        domainname: None,
        fqdn: p.fqdn.clone(),
        dns_suffixes,
        host_loopback: !p.no_map_gw,
        restrict: false,
        forwards,
        max_flows: o.max_flows,
        udp_timeout_s: o.udp_timeout.max(1),
        udp_stream_timeout_s: o.udp_stream_timeout.max(1),
        mac: Some(p.mac.unwrap_or(PASST_MAC)),
        virtual_subnet: false,
        mtu_option_always: true,
        outbound: crate::outbound::Outbound::parse(
            &o.outbound_addr,
            o.outbound_if4.as_deref(),
            o.outbound_if6.as_deref(),
        )
        .map_err(|(option, m)| err(option, m))?,
        // passt has no TFTP.
        tftp: None,
        tftp_root: None,
        dhcp_bootfile: None,
        dhcp_next_server: None,
        dns6,
        passt_ipv6: true,
        off,
        map_guest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn run(v: &[&str]) -> Options {
        run_passt(v).0
    }

    fn run_passt(v: &[&str]) -> (Options, Passt) {
        match parse(&args(v)).unwrap() {
            Parsed::Run(o, p) => (*o, *p),
            Parsed::Done => panic!("done"),
        }
    }

    fn host() -> [Option<HostAddr>; 2] {
        [
            Some(HostAddr {
                index: 2,
                addr: Some(("192.0.2.2".parse().unwrap(), 24)),
                gateway: Some("192.0.2.1".parse().unwrap()),
                link_local: None,
            }),
            Some(HostAddr {
                index: 2,
                addr: Some(("fd00::2".parse().unwrap(), 64)),
                gateway: Some("fd00::1".parse().unwrap()),
                link_local: Some("fe80::2c94:3aff:fe9c:1abe".parse().unwrap()),
            }),
        ]
    }

    fn cfg(v: &[&str]) -> Config {
        let (o, mut p) = run_passt(v);
        p.host = host();
        config(&o, &p, Some("nameserver 127.0.0.1\n")).unwrap()
    }

    #[test]
    fn personality_by_name_or_compat() {
        assert!(wants_passt(&args(&["/usr/bin/passt", "-f"])).is_some());
        assert_eq!(
            wants_passt(&args(&["airlock", "--compat=passt", "-f"]))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            wants_passt(&args(&["airlock", "--compat", "passt"]))
                .unwrap()
                .len(),
            0
        );
        assert!(wants_passt(&args(&["airlock", "--fd=3"])).is_none());
    }

    #[test]
    fn getopt_grammar() {
        let (o, p) = run_passt(&[
            "-1fq",
            "-t22",
            "-t",
            "80:8080",
            "--tcp-ports=443",
            "-P/x.pid",
            "--sock",
            "/s",
        ]);
        assert!(o.one_off && o.foreground && o.quiet);
        assert_eq!(o.pid.as_deref(), Some(std::path::Path::new("/x.pid")));
        assert_eq!(o.socket.as_deref(), Some(std::path::Path::new("/s")));
        let t: Vec<&str> = p.forwards.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(t, ["22", "80:8080", "443"]);
        // getopt's cluster: an option with an argument takes the rest.
        let o = run(&["-qm1500"]);
        assert!(o.quiet);
        assert_eq!(o.mtu, 1500);
        for bad in [
            &["--bogus"][..],
            &["-x"],
            &["--quiet=1"],
            &["--mtu"],
            &["--no"],
            &["cmd"],
            &["--freebind"],
            &["--log-size", "big"],
            &["-a", "10.0.0.1", "-a", "10.0.0.2"],
        ] {
            let e = parse(&args(bad)).unwrap_err();
            assert!(
                e.0.starts_with('-') || e.0.starts_with("cmd"),
                "{bad:?}: {}",
                e.0
            );
        }
        // Options passt shares with airlock's own: the same fields.
        let o = run(&[
            "--vhost-user",
            "-p",
            "/c.pcap",
            "--log-size",
            "65536",
            "-o",
            "192.0.2.9",
            "--outbound-if6",
            "up0",
        ]);
        assert!(o.vhost_user);
        assert_eq!(o.pcap.as_deref(), Some(std::path::Path::new("/c.pcap")));
        assert_eq!(o.log_size, Some(65536));
        assert_eq!(o.outbound_addr, ["192.0.2.9"]);
        assert_eq!(o.outbound_if6.as_deref(), Some("up0"));
        assert_eq!(
            cfg(&["-f", "--fd", "3", "-o", "192.0.2.9"]).outbound.addr4,
            Some(a4("192.0.2.9"))
        );
    }

    #[test]
    fn addressing_from_the_host() {
        let c = cfg(&["-f", "--fd", "3"]);
        let n = c.net4.unwrap();
        assert_eq!(
            (n.guest, n.prefix, n.host),
            (a4("192.0.2.2"), 24, a4("192.0.2.1"))
        );
        // resolv.conf names loopback: the guest asks the gateway.
        assert_eq!(n.dns, a4("192.0.2.1"));
        assert_eq!(c.dns_upstream, vec!["127.0.0.1:53".parse().unwrap()]);
        assert_eq!(c.mac, Some(PASST_MAC));
        let n6 = c.net6.unwrap();
        assert_eq!(
            (n6.guest, n6.host),
            ("fd00::2".parse().unwrap(), "fd00::1".parse().unwrap())
        );
        // The router speaks from the host interface's link-local address;
        // no IPv6 resolver in resolv.conf, so none offered over IPv6.
        let ll: Ipv6Addr = "fe80::2c94:3aff:fe9c:1abe".parse().unwrap();
        assert_eq!(n6.router_link_local(), ll);
        assert!(n6.is_own(ll));
        assert!(c.passt_ipv6 && !c.dns6);
        let (o, mut p) = run_passt(&["-f", "--fd", "3", "-g", "fe80::1"]);
        p.host = host();
        let c = config(&o, &p, Some("nameserver fd00::53\n")).unwrap();
        assert_eq!(
            c.net6.as_ref().unwrap().router_link_local(),
            "fe80::1".parse::<Ipv6Addr>().unwrap()
        );
        assert!(c.dns6);
    }

    #[test]
    fn seed_001_and_verbatim_addresses() {
        // libvirt 9.x: <ip address='169.254.2.15' prefix='16'/> plus the guest's MAC.
        let c = cfg(&["-a", "169.254.2.15", "-n", "16", "-M", "52:54:00:41:2c:49"]);
        let n = c.net4.unwrap();
        assert_eq!(
            (n.guest, n.prefix, n.host, n.dns),
            (a4("169.254.2.15"), 16, a4("192.0.2.1"), a4("192.0.2.1"))
        );
        assert_eq!(c.mac, Some([0x52, 0x54, 0, 0x41, 0x2c, 0x49]));
        // Classful without --netmask; dotted masks; explicit gateway and DNS.
        assert_eq!(cfg(&["-a", "10.1.2.3"]).net4.unwrap().prefix, 8);
        let c = cfg(&[
            "-a",
            "10.0.2.15",
            "-n",
            "255.255.255.0",
            "-g",
            "10.0.2.2",
            "-D",
            "10.0.2.3",
        ]);
        let n = c.net4.unwrap();
        assert_eq!(
            (n.prefix, n.host, n.dns),
            (24, a4("10.0.2.2"), a4("10.0.2.3"))
        );
        assert_eq!(c.dns_upstream[0], "10.0.2.3:53".parse().unwrap());
        assert!(cfg(&["-4"]).net6.is_none());
        assert!(cfg(&["--no-map-gw"]).dns_upstream.is_empty());
    }

    #[test]
    fn no_switches_and_their_implications() {
        let c = cfg(&["--no-icmp"]);
        assert!(c.off.icmp && c.off.ndp && c.off.ra && !c.off.dhcpv6);
        let c = cfg(&["--no-ndp"]);
        assert!(c.off.ndp && c.off.ra && !c.off.icmp);
        let c = cfg(&["--no-ra", "--no-dhcpv6"]);
        assert!(c.off.ra && c.off.dhcpv6 && !c.off.ndp);
        let c = cfg(&["--no-dhcp", "--no-tcp", "--no-udp"]);
        assert!(c.off.dhcp && c.off.tcp && c.off.udp && !c.off.icmp);
        assert_eq!(cfg(&[]).off, Off::default());
        // A forward of a protocol that is off: passt refuses it too.
        let (o, mut p) = run_passt(&["--no-udp", "-u", "53"]);
        p.host = host();
        assert_eq!(config(&o, &p, None).unwrap_err().option, "--udp-ports");
        assert!(cfg(&["--no-udp", "-t", "22"]).forwards.len() == 1);
        let (_, p) = run_passt(&["--repair-path", "none"]);
        assert_eq!(p, run_passt(&[]).1);
    }

    #[test]
    fn map_guest_addr_translates_both_ways() {
        use crate::flow::nat;
        let c = cfg(&[
            "--map-guest-addr",
            "192.0.2.99",
            "--map-guest-addr",
            "fd00::99",
        ]);
        let sa = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(c.map_guest.v4, Some(a4("192.0.2.99")));
        // Out: to the guest's own address (the host's) on the host side.
        assert_eq!(
            nat::outbound(&c, sa("192.0.2.99:80")),
            Some(sa("192.0.2.2:80"))
        );
        assert_eq!(
            nat::outbound(&c, sa("[fd00::99]:80")),
            Some(sa("[fd00::2]:80"))
        );
        // In: a host peer at that address appears from the mapped one.
        assert_eq!(
            nat::inbound_source(&c, sa("192.0.2.2:4000"), false),
            Some(sa("192.0.2.99:4000"))
        );
        // Without it, the address is just another one out there.
        let c = cfg(&[]);
        assert_eq!(
            nat::outbound(&c, sa("192.0.2.99:80")),
            Some(sa("192.0.2.99:80"))
        );
        // The last one of a family wins; none clears both; -4 drops IPv6's.
        let c = cfg(&[
            "--map-guest-addr",
            "10.9.9.9",
            "--map-guest-addr",
            "10.9.9.8",
        ]);
        assert_eq!(c.map_guest.v4, Some(a4("10.9.9.8")));
        let c = cfg(&["--map-guest-addr", "10.9.9.9", "--map-guest-addr", "none"]);
        assert_eq!(c.map_guest, MapGuest::default());
        assert_eq!(
            cfg(&["-4", "--map-guest-addr", "fd00::99"]).map_guest.v6,
            None
        );
        for bad in ["127.0.0.1", "0.0.0.0", "224.0.0.1", "::1", "nope"] {
            assert!(parse(&args(&["--map-guest-addr", bad])).is_err(), "{bad}");
        }
    }

    fn a4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn ports(spec: &str) -> Vec<(u16, u16)> {
        let mut v = Vec::new();
        expand_spec(Proto::Tcp, spec, 100, &mut v).unwrap();
        v.iter().map(|f| (f.bind.port(), f.guest_port)).collect()
    }

    #[test]
    fn port_spec_grammar() {
        assert_eq!(ports("22"), [(22, 22)]);
        assert_eq!(ports("22:2222"), [(22, 2222)]);
        assert_eq!(ports("20-22:30-32"), [(20, 30), (21, 31), (22, 32)]);
        assert_eq!(ports("20-24,~21-23"), [(20, 20), (24, 24)]);
        assert!(ports("none").is_empty());
        assert_eq!(ports("all").len(), 99);
        assert_eq!(ports("~2-98").len(), 2);
        assert_eq!(ports("all,~50").len(), 98);
        let mut v = Vec::new();
        expand_spec(Proto::Udp, "127.0.0.1%lo/5000:192.0.2.5/6000", 100, &mut v).unwrap();
        assert_eq!(v[0].bind, "127.0.0.1:5000".parse().unwrap());
        assert_eq!(v[0].device.as_deref(), Some("lo"));
        assert_eq!(v[0].guest_addr, Some("192.0.2.5".parse().unwrap()));
        assert_eq!(v[0].guest_port, 6000);
        v.clear();
        expand_spec(Proto::Tcp, "::1/80", 100, &mut v).unwrap();
        assert_eq!(v[0].bind, "[::1]:80".parse().unwrap());
        v.clear();
        expand_spec(Proto::Tcp, "%up0/80", 100, &mut v).unwrap();
        assert_eq!(v[0].device.as_deref(), Some("up0"));
        for bad in ["10-5", "1-3:4-5", "0", "x/1", "auto", "70000", "%/1"] {
            assert!(expand_spec(Proto::Tcp, bad, 100, &mut v).is_err(), "{bad}");
        }
    }
}
