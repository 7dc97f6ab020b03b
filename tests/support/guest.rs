//! The guest's point of view: busybox `udhcpc` applying a lease like a guest
//! OS (and recording everything the lease said), `ping`, and `ip`'s JSON
//! views of addresses, routes, neighbours and the link.

use super::process::Outcome;
use super::topo::Topology;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

/// The guest's NIC.
pub const IFACE: &str = "tap0";

/// udhcpc hook: record the lease verbatim, then apply it like a guest OS.
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
# udhcpc hook for the test guest: records everything the lease said
# (udhcpc's environment) and applies it like a guest OS would.
echo "$1" >> "$LEASE_DIR/events"
case "$1" in
deconfig)
  ip -4 addr flush dev "$interface"
  ip link set dev "$interface" up ;;
bound|renew)
  env | sort > "$LEASE_DIR/lease.tmp" && mv "$LEASE_DIR/lease.tmp" "$LEASE_DIR/lease"
  ip -4 addr flush dev "$interface"
  ip addr add "$ip/${mask:-24}" dev "$interface"
  [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
  for r in $router; do ip route replace default via "$r" dev "$interface"; break; done ;;
esac
exit 0
"#;

/// Variables of the script's environment that are not part of the lease.
const NOT_LEASE: &[&str] = &["LEASE_DIR", "PATH", "PWD", "OLDPWD", "SHLVL", "_", "HOME"];

/// Everything a DHCP lease told the guest, as udhcpc exported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Every variable udhcpc exported (`ip`, `mask`, `subnet`, `router`,
    /// `dns`, `serverid`, `lease`, `mtu`, `hostname`, `domain`, `search`,
    /// `interface`, `siaddr`, `optN`, ...).
    pub vars: BTreeMap<String, String>,
    pub ip: Ipv4Addr,
    /// Prefix length (udhcpc's `mask`).
    pub prefix: u8,
    /// Option 1 as a dotted mask (udhcpc's `subnet`).
    pub subnet: Option<Ipv4Addr>,
    /// Option 3.
    pub routers: Vec<Ipv4Addr>,
    /// Option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 51, seconds.
    pub lease_secs: Option<u32>,
    /// Option 26.
    pub mtu: Option<u32>,
    /// Option 12.
    pub hostname: Option<String>,
    /// Option 15.
    pub domain: Option<String>,
    /// Option 119, decoded.
    pub search: Vec<String>,
    /// Option 28.
    pub broadcast: Option<Ipv4Addr>,
}

impl Lease {
    /// Parse the `env | sort` text the hook recorded.
    pub fn parse(text: &str) -> Result<Lease, String> {
        let vars: BTreeMap<String, String> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| !NOT_LEASE.contains(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let get = |k: &str| vars.get(k).map(String::as_str);
        let v4 = |k: &str| -> Result<Option<Ipv4Addr>, String> {
            get(k)
                .map(|v| {
                    v.parse()
                        .map_err(|_| format!("lease {k}={v:?} is not IPv4"))
                })
                .transpose()
        };
        let v4_list = |k: &str| -> Result<Vec<Ipv4Addr>, String> {
            get(k)
                .unwrap_or("")
                .split_whitespace()
                .map(|v| {
                    v.parse()
                        .map_err(|_| format!("lease {k}: {v:?} is not IPv4"))
                })
                .collect()
        };
        let num = |k: &str| -> Result<Option<u32>, String> {
            get(k)
                .map(|v| {
                    v.parse()
                        .map_err(|_| format!("lease {k}={v:?} is not a number"))
                })
                .transpose()
        };
        let ip = v4("ip")?.ok_or_else(|| format!("lease without ip: {vars:?}"))?;
        let prefix = num("mask")?.ok_or_else(|| format!("lease without mask: {vars:?}"))?;
        Ok(Lease {
            ip,
            prefix: u8::try_from(prefix).map_err(|_| format!("mask {prefix}"))?,
            subnet: v4("subnet")?,
            routers: v4_list("router")?,
            dns: v4_list("dns")?,
            server_id: v4("serverid")?,
            lease_secs: num("lease")?,
            mtu: num("mtu")?,
            hostname: get("hostname").map(str::to_string),
            domain: get("domain").map(str::to_string),
            search: get("search")
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            broadcast: v4("broadcast")?,
            vars,
        })
    }
}

/// One address of an interface (`ip -j addr`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// One route (`ip -j route`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// `default` or `ADDR/PREFIX` (or a bare address).
    pub dst: String,
    pub gateway: Option<IpAddr>,
    pub dev: Option<String>,
}

/// One neighbour entry (`ip -j neigh`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbor {
    pub dst: IpAddr,
    /// Lowercase `aa:bb:cc:dd:ee:ff`.
    pub lladdr: Option<String>,
    pub state: Vec<String>,
}

/// Options for one udhcpc run.
#[derive(Clone, Debug)]
pub struct Udhcpc {
    /// Discover attempts (`-t`).
    pub tries: u32,
    /// Seconds between attempts (`-T`).
    pub interval_s: u32,
    /// Extra arguments (e.g. `-O`, `-x`, `-r`).
    pub extra: Vec<String>,
    /// Overall deadline.
    pub timeout: Duration,
}

impl Default for Udhcpc {
    fn default() -> Self {
        Udhcpc {
            tries: 3,
            interval_s: 1,
            // A guest OS asks for these too; a server that honours the
            // parameter request list must still send them.
            extra: ["-O", "mtu", "-O", "search", "-O", "lease"]
                .map(String::from)
                .to_vec(),
            timeout: Duration::from_secs(15),
        }
    }
}

/// The guest namespace of a [`Topology`], seen from inside.
pub struct Guest<'a> {
    topo: &'a Topology,
}

impl<'a> Guest<'a> {
    pub fn new(topo: &'a Topology) -> Guest<'a> {
        Guest { topo }
    }

    /// Run `argv` in the guest namespace.
    pub fn run(&self, argv: &[&str], timeout: Duration) -> Outcome {
        self.topo.guest_run(argv, timeout)
    }

    /// Lease an address with udhcpc (3 tries, 1 s apart) and apply it.
    pub fn dhcp(&self) -> Result<Lease, String> {
        self.dhcp_with(&Udhcpc::default())
    }

    /// Lease with explicit udhcpc options. The error says what udhcpc
    /// printed and which script events ran.
    pub fn dhcp_with(&self, o: &Udhcpc) -> Result<Lease, String> {
        let dir = self.lease_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("lease dir: {e}"))?;
        let script = dir.join("udhcpc.script");
        std::fs::write(&script, UDHCPC_SCRIPT).map_err(|e| format!("script: {e}"))?;
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| format!("chmod script: {e}"))?;
        let (t, tt, s) = (
            o.tries.to_string(),
            o.interval_s.to_string(),
            script.to_string_lossy().into_owned(),
        );
        let mut argv = vec![
            "busybox", "udhcpc", "-f", "-q", "-n", "-i", IFACE, "-t", &t, "-T", &tt, "-A", "1",
            "-s", &s,
        ];
        argv.extend(o.extra.iter().map(String::as_str));
        let mut cmd = self.topo.guest_cmd(&argv);
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LEASE_DIR", &dir);
        let out = super::process::run(&mut cmd, o.timeout);
        let events = std::fs::read_to_string(dir.join("events")).unwrap_or_default();
        let lease = std::fs::read_to_string(dir.join("lease"));
        match (out.success(), lease) {
            (true, Ok(text)) => Lease::parse(&text),
            (_, lease) => Err(format!(
                "udhcpc got no lease ({}); script events: [{}]; recorded lease: {:?}",
                out.describe(),
                events.split_whitespace().collect::<Vec<_>>().join(" "),
                lease.ok()
            )),
        }
    }

    /// Configure tap0 by hand, as a guest with a static configuration:
    /// `addr/prefix`, default route via `gateway`, and `mtu`.
    pub fn configure_static(&self, addr: Ipv4Addr, prefix: u8, gateway: Ipv4Addr, mtu: u32) {
        let (a, g, m) = (
            format!("{addr}/{prefix}"),
            gateway.to_string(),
            mtu.to_string(),
        );
        for argv in [
            &["ip", "link", "set", "dev", IFACE, "mtu", &m][..],
            &["ip", "addr", "replace", &a, "dev", IFACE],
            &["ip", "route", "replace", "default", "via", &g, "dev", IFACE],
        ] {
            let o = self.run(argv, Duration::from_secs(10));
            assert!(o.success(), "{}: {}", argv.join(" "), o.describe());
        }
    }

    fn lease_dir(&self) -> PathBuf {
        self.topo.dir().join("udhcpc")
    }

    /// One echo request to `addr`, waiting up to 3 s; the error holds
    /// ping's output.
    pub fn ping(&self, addr: impl std::fmt::Display) -> Result<(), String> {
        self.ping_n(addr, 1, 3)
    }

    /// `count` echo requests, each waited for up to `wait_s` seconds;
    /// succeeds if any reply came back.
    pub fn ping_n(
        &self,
        addr: impl std::fmt::Display,
        count: u32,
        wait_s: u32,
    ) -> Result<(), String> {
        let (a, c, w) = (addr.to_string(), count.to_string(), wait_s.to_string());
        let o = self.run(
            &["busybox", "ping", "-c", &c, "-W", &w, &a],
            Duration::from_secs(u64::from(count * wait_s) + 5),
        );
        if o.success() {
            Ok(())
        } else {
            Err(format!("ping {a}: {}", o.describe()))
        }
    }

    fn ip_json(&self, args: &[&str]) -> serde_json::Value {
        let mut argv = vec!["ip", "-j"];
        argv.extend_from_slice(args);
        let o = self.run(&argv, Duration::from_secs(10));
        if !o.success() {
            panic!("{}: {}", argv.join(" "), o.describe());
        }
        serde_json::from_str(&o.stdout)
            .unwrap_or_else(|e| panic!("{}: bad JSON ({e}): {}", argv.join(" "), o.stdout))
    }

    /// Addresses on tap0 (`ip -j addr show dev tap0`), both families.
    pub fn addrs(&self) -> Vec<IfAddr> {
        let v = self.ip_json(&["addr", "show", "dev", IFACE]);
        let mut out = Vec::new();
        for link in v.as_array().into_iter().flatten() {
            for a in link["addr_info"].as_array().into_iter().flatten() {
                let (Some(local), Some(p)) = (a["local"].as_str(), a["prefixlen"].as_u64()) else {
                    continue;
                };
                if let Ok(addr) = local.parse() {
                    out.push(IfAddr {
                        addr,
                        prefix: p as u8,
                    });
                }
            }
        }
        out
    }

    /// IPv4 routes of the main table (`ip -j -4 route`).
    pub fn routes4(&self) -> Vec<Route> {
        self.routes(&["-4", "route", "show"])
    }

    /// IPv6 routes of the main table (`ip -j -6 route`).
    pub fn routes6(&self) -> Vec<Route> {
        self.routes(&["-6", "route", "show"])
    }

    fn routes(&self, args: &[&str]) -> Vec<Route> {
        let v = self.ip_json(args);
        v.as_array()
            .into_iter()
            .flatten()
            .map(|r| Route {
                dst: r["dst"].as_str().unwrap_or("").to_string(),
                gateway: r["gateway"].as_str().and_then(|g| g.parse().ok()),
                dev: r["dev"].as_str().map(str::to_string),
            })
            .collect()
    }

    /// The default IPv4 route's gateway.
    pub fn default_gateway4(&self) -> Option<IpAddr> {
        self.routes4()
            .into_iter()
            .find(|r| r.dst == "default")
            .and_then(|r| r.gateway)
    }

    /// Neighbour entries on tap0 (`ip -j neigh show dev tap0`).
    pub fn neighbors(&self) -> Vec<Neighbor> {
        let v = self.ip_json(&["neigh", "show", "dev", IFACE]);
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| {
                Some(Neighbor {
                    dst: n["dst"].as_str()?.parse().ok()?,
                    lladdr: n["lladdr"].as_str().map(|s| s.to_ascii_lowercase()),
                    state: n["state"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect(),
                })
            })
            .collect()
    }

    /// The MAC address the guest's neighbour table holds for `addr`.
    pub fn neighbor_mac(&self, addr: IpAddr) -> Option<String> {
        self.neighbors()
            .into_iter()
            .find(|n| n.dst == addr)
            .and_then(|n| n.lladdr)
    }

    fn link(&self) -> serde_json::Value {
        let v = self.ip_json(&["link", "show", "dev", IFACE]);
        v.get(0).cloned().unwrap_or(serde_json::Value::Null)
    }

    /// tap0's MTU.
    pub fn mtu(&self) -> u32 {
        self.link()["mtu"].as_u64().unwrap_or(0) as u32
    }

    /// Set tap0's MTU (e.g. 65521, the largest a tap takes, to send 64 KiB frames).
    pub fn set_mtu(&self, mtu: u32) {
        let m = mtu.to_string();
        let o = self.run(
            &["ip", "link", "set", "dev", IFACE, "mtu", &m],
            Duration::from_secs(10),
        );
        assert!(o.success(), "set mtu {mtu}: {}", o.describe());
    }

    /// Act as a host that takes router advertisements on tap0 (a fresh
    /// namespace already does; stated so a test does not depend on the
    /// machine's defaults). Before the link has carrier. Without `dad` the
    /// addresses are usable at once.
    pub fn accept_ra(&self, dad: bool) {
        let dad = format!("net.ipv6.conf.tap0.accept_dad={}", u8::from(dad));
        let o = self.run(
            &[
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.forwarding=0",
                "net.ipv6.conf.tap0.forwarding=0",
                "net.ipv6.conf.tap0.accept_ra=2",
                "net.ipv6.conf.tap0.autoconf=1",
                &dad,
                "net.ipv6.conf.tap0.use_tempaddr=0",
                "net.ipv6.conf.tap0.router_solicitation_delay=0",
            ],
            Duration::from_secs(10),
        );
        assert!(o.success(), "guest sysctls: {}", o.describe());
    }

    /// tap0's MAC address, lowercase.
    pub fn mac(&self) -> String {
        self.link()["address"]
            .as_str()
            .unwrap_or("")
            .to_ascii_lowercase()
    }

    /// tap0's MAC address as bytes.
    pub fn mac_bytes(&self) -> [u8; 6] {
        super::frames::parse_mac(&self.mac()).expect("tap0 has a MAC")
    }

    /// Whether tap0 has carrier, i.e. someone holds the tap open.
    pub fn carrier(&self) -> bool {
        self.link()["flags"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|f| f.as_str() == Some("LOWER_UP"))
    }
}
