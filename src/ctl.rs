//! `airlock ctl`: a small client of a running airlock's D-Bus interface
//! ([`crate::dbus::CONTROL_IFACE`]), in the spirit of passt's `pesto`. It
//! binds a forward's socket itself (airlock's sandbox refuses `bind` after
//! start-up) and passes it over the bus as a file descriptor. It finds its
//! airlock as QEMU's dbus-vmstate does: among the queued owners of
//! `org.qemu.VMState1`, the one whose `Id` is `--dbus-id`.
//!
//! (A client, not part of the sandboxed process: no `#syscalls:` here.)

use crate::dbus::{CONTROL_IFACE, CONTROL_PATH, VMSTATE_IFACE, VMSTATE_NAME, VMSTATE_PATH};
use clap::{Parser, Subcommand};
use dbus::channel::Channel;
use dbus::message::Message;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(name = "airlock ctl", about = "Control a running airlock over D-Bus")]
pub struct CtlOptions {
    /// The bus airlock was started on (its --dbus-address).
    #[arg(long, value_name = "ADDR")]
    pub dbus_address: String,
    /// Which airlock on that bus (its --dbus-id).
    #[arg(long, value_name = "ID")]
    pub dbus_id: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the forwards.
    List,
    /// Forward host [ADDR]:PORT to the guest's [ADDR]:PORT (binds here).
    Add {
        /// tcp or udp.
        proto: String,
        /// Host side: [ADDR]:PORT (no ADDR: 0.0.0.0).
        host: String,
        /// Guest side: [ADDR]:PORT (no ADDR: the guest's own).
        guest: String,
    },
    /// Remove the forward bound to host ADDR:PORT.
    Remove { proto: String, host: String },
    /// List the flows: protocol, guest address, remote address.
    Flows,
    /// Counters, as SIGUSR1 logs them.
    Stats,
}

/// `[ADDR]:PORT`, ADDR absent or `[v6]`.
fn split_addr(s: &str, default: Option<IpAddr>) -> Result<(Option<IpAddr>, u16), String> {
    let (a, p) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?}: [ADDR]:PORT"))?;
    let port = p.parse::<u16>().map_err(|e| format!("{s:?}: port: {e}"))?;
    let a = a.trim_start_matches('[').trim_end_matches(']');
    let ip = match a {
        "" => default,
        a => Some(a.parse().map_err(|e| format!("{s:?}: address: {e}"))?),
    };
    Ok((ip, port))
}

/// Run `airlock ctl ARGS`; the exit status.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    let opts = match CtlOptions::try_parse_from(args) {
        Ok(o) => o,
        Err(e) if e.use_stderr() => {
            eprintln!(
                "airlock ctl: {}",
                e.to_string().lines().next().unwrap_or("")
            );
            return 2;
        }
        Err(e) => e.exit(),
    };
    match run(&opts) {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            0
        }
        Err(e) => {
            eprintln!("airlock ctl: {e}");
            1
        }
    }
}

fn call(dest: &str, path: &str, iface: &str, member: &str) -> Result<Message, String> {
    Message::new_method_call(dest, path, iface, member).map_err(|e| e.to_string())
}

fn send(chan: &Channel, m: Message) -> Result<Message, String> {
    chan.send_with_reply_and_block(m, TIMEOUT).map_err(|e| {
        format!(
            "{}: {}",
            e.name().unwrap_or("error"),
            e.message().unwrap_or("")
        )
    })
}

/// The unique name of the airlock whose Id is `id`.
fn find(chan: &Channel, id: &str) -> Result<String, String> {
    let m = call(
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "ListQueuedOwners",
    )?
    .append1(VMSTATE_NAME);
    let owners: Vec<String> = send(chan, m)?.read1().map_err(|e| e.to_string())?;
    for o in owners {
        let m = call(&o, VMSTATE_PATH, "org.freedesktop.DBus.Properties", "Get")?
            .append2(VMSTATE_IFACE, "Id");
        let Ok(r) = send(chan, m) else { continue };
        if let Ok(v) = r.read1::<dbus::arg::Variant<String>>() {
            if v.0 == id {
                return Ok(o);
            }
        }
    }
    Err(format!("no airlock with --dbus-id {id} on the bus"))
}

fn run(opts: &CtlOptions) -> Result<String, String> {
    let mut chan = Channel::open_private(&opts.dbus_address).map_err(|e| {
        format!(
            "--dbus-address {}: {}",
            opts.dbus_address,
            e.message().unwrap_or("")
        )
    })?;
    chan.register()
        .map_err(|e| e.message().unwrap_or("Hello failed").to_string())?;
    let dest = find(&chan, &opts.dbus_id)?;
    let method = |member: &str| call(&dest, CONTROL_PATH, CONTROL_IFACE, member);
    match &opts.command {
        Command::List => {
            let rows: Vec<(String, String, String, u16)> = send(&chan, method("ListForwards")?)?
                .read1()
                .map_err(|e| e.to_string())?;
            Ok(rows
                .iter()
                .map(|(p, b, g, port)| format!("{p} {b} -> {g}:{port}"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        Command::Add { proto, host, guest } => {
            let (haddr, hport) = split_addr(host, Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))?;
            let bind = SocketAddr::new(haddr.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), hport);
            let (gaddr, gport) = split_addr(guest, None)?;
            let fd: OwnedFd = match proto.as_str() {
                "tcp" => std::net::TcpListener::bind(bind).map(OwnedFd::from),
                "udp" => std::net::UdpSocket::bind(bind).map(OwnedFd::from),
                p => return Err(format!("protocol {p:?}: tcp or udp")),
            }
            .map_err(|e| format!("bind {bind}: {e}"))?;
            let g = gaddr.map(|a| a.to_string()).unwrap_or_default();
            let m = method("AddForward")?
                .append3(proto.as_str(), fd, g.as_str())
                .append1(gport);
            let bound: String = send(&chan, m)?.read1().map_err(|e| e.to_string())?;
            Ok(format!("{proto} {bound} -> {g}:{gport}"))
        }
        Command::Remove { proto, host } => {
            let m = method("RemoveForward")?.append2(proto.as_str(), host.as_str());
            send(&chan, m)?;
            Ok(String::new())
        }
        Command::Flows => {
            let rows: Vec<(String, String, String)> = send(&chan, method("ListFlows")?)?
                .read1()
                .map_err(|e| e.to_string())?;
            Ok(rows
                .iter()
                .map(|(p, g, r)| format!("{p} {g} {r}"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
        Command::Stats => send(&chan, method("Stats")?)?
            .read1::<String>()
            .map_err(|e| e.to_string()),
    }
}
