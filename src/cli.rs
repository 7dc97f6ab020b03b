//! Command-line options, as VMMs and users spell them.
//!
//! The spellings follow libvirt's `slirp-helper` contract (`--fd=N`,
//! `--net=ADDR/PREFIX`, `--exit-with-parent`), QEMU's user networking
//! (`--hostfwd`), and passt (`-t`/`-u`, `--socket`, `--pid`). Options are
//! only parsed here; [`crate::config`] turns them into one validated network.

use clap::{ArgAction, Parser, ValueEnum};
use std::path::PathBuf;

/// How much of the sandbox to enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Default)]
pub enum SandboxMode {
    /// Every layer required: a missing one is a startup error.
    Strict,
    /// Every layer the kernel supports (the default).
    #[default]
    Enforce,
    /// seccomp logs instead of killing: for finding a missing syscall.
    Log,
    /// No landlock, no seccomp (privileges are still dropped).
    Off,
}

#[derive(Parser, Debug, Clone, Default)]
#[command(
    name = "airlock",
    version,
    about = "Sandboxed user-mode networking helper for virtual machines",
    long_about = None,
    // `--udp-timeout -1` is a bad number, not a missing value.
    allow_negative_numbers = true
)]
pub struct Options {
    /// Print the capability JSON and exit (every other option is ignored).
    #[arg(long)]
    pub print_capabilities: bool,

    // ---- the VMM link: exactly one of --fd, --socket, --netns ----
    /// Connected AF_UNIX socket inherited from the VMM (DGRAM or STREAM).
    #[arg(long, value_name = "N", group = "link")]
    pub fd: Option<i32>,
    /// Listen on a UNIX stream socket for the VMM.
    #[arg(
        long,
        visible_alias = "socket-path",
        short = 's',
        value_name = "PATH",
        group = "link"
    )]
    pub socket: Option<PathBuf>,
    /// Use a tap device inside the network namespace at PATH.
    #[arg(long, value_name = "PATH", group = "link")]
    pub netns: Option<PathBuf>,
    /// Tap device name for --netns.
    #[arg(long, short = 'I', value_name = "NAME", default_value = "tap0")]
    pub interface: String,
    /// Be the vhost-user backend of a virtio-net device on --socket PATH
    /// (a listener) or --fd N (a connected vhost-user socket).
    #[arg(long)]
    pub vhost_user: bool,
    /// With --socket: exit when the VMM disconnects.
    #[arg(long, short = '1')]
    pub one_off: bool,
    /// With --socket: stay in the foreground instead of daemonizing.
    #[arg(long, short = 'f')]
    pub foreground: bool,
    /// Write the daemon's PID to FILE.
    #[arg(long, short = 'P', value_name = "FILE")]
    pub pid: Option<PathBuf>,

    // ---- IPv4 addressing (slirp's view) ----
    /// Virtual network: ADDR/PREFIX, or ADDR with --mask.
    #[arg(long, value_name = "ADDR[/PREFIX]")]
    pub net: Option<String>,
    /// Netmask for --net given without a prefix (older libvirt).
    #[arg(long, value_name = "MASK")]
    pub mask: Option<String>,
    /// The virtual host (router) address.
    #[arg(long, value_name = "ADDR")]
    pub host: Option<String>,
    /// The address leased to the guest.
    #[arg(long, value_name = "ADDR")]
    pub dhcp_start: Option<String>,
    /// The DNS address offered to the guest.
    #[arg(long, value_name = "ADDR")]
    pub dns: Option<String>,
    /// Link MTU offered to the guest (576..=65520).
    #[arg(long, short = 'm', value_name = "N", default_value_t = 65520)]
    pub mtu: u32,
    /// Host name offered by DHCP (option 12).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Domain name offered by DHCP (option 15).
    #[arg(long, value_name = "NAME")]
    pub domainname: Option<String>,
    /// DNS search list offered by DHCP (option 119), comma-separated.
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub dns_suffixes: Vec<String>,
    /// No IPv4 at all (IPv6-only guest).
    #[arg(long)]
    pub disable_ipv4: bool,

    // ---- IPv6 addressing ----
    /// Virtual IPv6 network: ADDR/PREFIX (libvirt's form).
    #[arg(long, value_name = "ADDR/PREFIX")]
    pub net6: Option<String>,
    /// IPv6 prefix (older libvirt), with --prefix-length-ipv6.
    #[arg(long, value_name = "ADDR")]
    pub prefix_ipv6: Option<String>,
    /// IPv6 prefix length for --prefix-ipv6.
    #[arg(long, value_name = "N")]
    pub prefix_length_ipv6: Option<u8>,
    /// The virtual host's IPv6 address.
    #[arg(long, value_name = "ADDR")]
    pub host_ipv6: Option<String>,
    /// The IPv6 DNS address offered to the guest.
    #[arg(long, value_name = "ADDR")]
    pub dns_ipv6: Option<String>,
    /// No IPv6 at all.
    #[arg(long)]
    pub disable_ipv6: bool,

    // ---- translation ----
    /// Do not map the virtual host address to the host's loopback.
    #[arg(long)]
    pub disable_host_loopback: bool,
    /// Forward: tcp|udp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT (repeatable).
    #[arg(long, value_name = "RULE", action = ArgAction::Append)]
    pub hostfwd: Vec<String>,
    /// passt-style TCP forwards: PORT, PORT:GPORT, A-B, A-B:C-D, ADDR/..., comma lists.
    #[arg(long = "tcp-ports", short = 't', value_name = "SPEC", action = ArgAction::Append)]
    pub tcp_ports: Vec<String>,
    /// passt-style UDP forwards (same grammar as -t).
    #[arg(long = "udp-ports", short = 'u', value_name = "SPEC", action = ArgAction::Append)]
    pub udp_ports: Vec<String>,
    /// Isolate the guest: no connections out, forwards still work.
    #[arg(long)]
    pub restrict: bool,
    /// Upper bound on flows (TCP, UDP, ICMP together).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_flows: usize,
    /// UDP idle timeout in seconds while only the guest has talked.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub udp_timeout: u64,
    /// UDP idle timeout in seconds once both sides have talked.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub udp_stream_timeout: u64,
    /// DNS upstream ADDR[:PORT] (repeatable); default: /etc/resolv.conf.
    #[arg(long, value_name = "ADDR[:PORT]", action = ArgAction::Append)]
    pub dns_upstream: Vec<String>,
    /// Do not forward DNS from the virtual DNS address.
    #[arg(long)]
    pub disable_dns: bool,
    /// Guest connections leave from ADDR (one per family; repeatable).
    #[arg(long, short = 'o', value_name = "ADDR", action = ArgAction::Append)]
    pub outbound_addr: Vec<String>,
    /// Guest IPv4 connections leave through interface IFNAME.
    #[arg(long, value_name = "IFNAME")]
    pub outbound_if4: Option<String>,
    /// Guest IPv6 connections leave through interface IFNAME.
    #[arg(long, value_name = "IFNAME")]
    pub outbound_if6: Option<String>,

    // ---- network boot ----
    /// Serve files read-only from DIR over TFTP at the virtual host address.
    #[arg(long, value_name = "DIR")]
    pub tftp: Option<PathBuf>,
    /// Boot file name offered by DHCP (option 67).
    #[arg(long, value_name = "NAME")]
    pub dhcp_bootfile: Option<String>,
    /// Network boot program: tftp://SERVER/FILE sets DHCP's next server and boot file.
    #[arg(long, value_name = "URL")]
    pub dhcp_nbp: Option<String>,

    // ---- sandbox and lifecycle ----
    /// How much of the sandbox to enforce.
    #[arg(long, value_enum, default_value_t = SandboxMode::Enforce)]
    pub sandbox: SandboxMode,
    /// USER[:GROUP] to run as when started as root (default nobody).
    #[arg(long, value_name = "USER[:GROUP]")]
    pub runas: Option<String>,
    /// Exit when the parent process exits.
    #[arg(long)]
    pub exit_with_parent: bool,
    /// Log to FILE instead of stderr/syslog.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,
    /// With --log-file: rotate the file in place, never past BYTES.
    #[arg(long, value_name = "BYTES")]
    pub log_size: Option<u64>,
    /// Only errors.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Debug logging and drop counters at exit.
    #[arg(long, short = 'd')]
    pub debug: bool,
    /// Log every frame (very verbose).
    #[arg(long)]
    pub trace: bool,
    // ---- D-Bus: libvirt's per-domain bus (migration) ----
    /// This helper's id among the domain's helpers (org.qemu.VMState1's Id).
    #[arg(long, value_name = "ID")]
    pub dbus_id: Option<String>,
    /// Connect to the bus at ADDR (a D-Bus address, e.g. unix:path=...).
    #[arg(long, value_name = "ADDR")]
    pub dbus_address: Option<String>,
    /// Peer-to-peer D-Bus at ADDR (older libvirt); not supported: refused.
    #[arg(long, value_name = "ADDR")]
    pub dbus_p2p: Option<String>,
    /// The domain is migrating in: wait for its state (Load) before the sandbox.
    #[arg(long)]
    pub dbus_incoming: bool,

    /// Capture every frame both ways to FILE (pcap, microseconds).
    #[arg(long, short = 'p', value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Stop capturing before FILE passes BYTES.
    #[arg(long, value_name = "BYTES", default_value_t = crate::pcap::DEFAULT_SIZE)]
    pub pcap_size: u64,
}
