//! D-Bus: libvirt's per-domain bus and QEMU's `dbus-vmstate` contract.
//!
//! With `--dbus-address ADDR --dbus-id ID` airlock connects to the bus
//! before the sandbox, queues for the name `org.qemu.VMState1` (every
//! helper of a domain does; QEMU walks the queue with `ListQueuedOwners`)
//! and serves `org.qemu.VMState1` at `/org/qemu/VMState1`: the `Id`
//! property, `Save() → ay` and `Load(ay)` ([`crate::migrate`] is the
//! format). With `--dbus-incoming` it waits, still before the sandbox,
//! for the `Load` of the state migrating in, so the forwards it names can
//! be bound.
//!
//! The crate is `dbus` (the libdbus binding): its connection is a
//! non-blocking socket whose watch descriptor goes into airlock's one epoll
//! set, so the bus needs no thread and no executor (zbus, even blocking,
//! runs its own). Messages are read with `recvmsg` and answered with
//! `sendmsg`; libdbus polls the socket with a zero timeout to read and
//! flushes replies with `poll` (a local bus daemon reads at once). A
//! descriptor received (`AddForward`'s `h`) is marked close-on-exec again
//! by libdbus (`F_SETFD` with `FD_CLOEXEC` only) and duplicated
//! (`F_DUPFD_CLOEXEC`).
//!
//! #syscalls: recvmsg sendmsg poll|ppoll fcntl(1=F_SETFD,2=1) fcntl(1=F_DUPFD_CLOEXEC)
//! #syscalls-startup: socket connect getuid geteuid getgid getegid
#![forbid(unsafe_code)]

use crate::config::{Config, Proto};
use crate::flow::forward::Listener;
use crate::link::Tx;
use crate::migrate::State;
use crate::stack::Stack;
use dbus::channel::Channel;
use dbus::message::{Message, MessageType};
use dbus::strings::ErrorName;
use std::ffi::CString;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// The name every migratable helper of a domain queues for.
pub const VMSTATE_NAME: &str = "org.qemu.VMState1";
pub const VMSTATE_PATH: &str = "/org/qemu/VMState1";
pub const VMSTATE_IFACE: &str = "org.qemu.VMState1";

const PROPERTIES: &str = "org.freedesktop.DBus.Properties";
const INTROSPECTABLE: &str = "org.freedesktop.DBus.Introspectable";
/// Bus calls made at start-up (Hello, RequestName) wait at most this.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The control object's own interface (`docs/integration.md` shows it).
const CONTROL_INTERFACES: &str = r#"  <interface name="org.airlock.Airlock1">
    <method name="ListForwards">
      <arg type="a(sssq)" name="forwards" direction="out"/>
    </method>
    <method name="AddForward">
      <arg type="s" name="proto" direction="in"/>
      <arg type="h" name="socket" direction="in"/>
      <arg type="s" name="guest_addr" direction="in"/>
      <arg type="q" name="guest_port" direction="in"/>
      <arg type="s" name="bind" direction="out"/>
    </method>
    <method name="RemoveForward">
      <arg type="s" name="proto" direction="in"/>
      <arg type="s" name="bind" direction="in"/>
    </method>
    <method name="ListFlows">
      <arg type="a(sss)" name="flows" direction="out"/>
    </method>
    <method name="Stats">
      <arg type="s" name="report" direction="out"/>
    </method>
  </interface>
"#;

/// The vmstate object's own interfaces.
const VMSTATE_INTERFACES: &str = r#"  <interface name="org.qemu.VMState1">
    <property name="Id" type="s" access="read"/>
    <method name="Load">
      <arg type="ay" name="data" direction="in"/>
    </method>
    <method name="Save">
      <arg type="ay" name="data" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Properties">
    <method name="Get">
      <arg type="s" name="interface" direction="in"/>
      <arg type="s" name="name" direction="in"/>
      <arg type="v" name="value" direction="out"/>
    </method>
    <method name="GetAll">
      <arg type="s" name="interface" direction="in"/>
      <arg type="a{sv}" name="properties" direction="out"/>
    </method>
  </interface>
"#;

/// An object's introspection document: its own `interfaces`, and
/// `Introspectable`, which every object here has.
fn introspection(interfaces: &str) -> String {
    format!(
        r#"<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
{interfaces}  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect">
      <arg type="s" name="xml" direction="out"/>
    </method>
  </interface>
</node>
"#
    )
}

/// A forward as [`CONTROL_IFACE`] lists it: protocol, host bind address,
/// guest address (empty: the guest's own), guest port.
pub type ForwardRow = (String, String, String, u16);

/// What the calls act on: the running stack, or (before the sandbox,
/// `--dbus-incoming`) a slot for the state migrating in, which has no
/// forwards or flows to show yet.
pub trait Vmstate {
    fn save(&mut self) -> Result<Vec<u8>, String>;
    /// Refuse (and change nothing) unless the whole state is acceptable.
    fn load(&mut self, bytes: &[u8]) -> Result<(), String>;
    fn forwards(&mut self) -> Result<Vec<ForwardRow>, String> {
        Err(NOT_YET.into())
    }
    /// Take a forward from a socket the caller bound; its bind address.
    fn add_forward(
        &mut self,
        _proto: Proto,
        _fd: OwnedFd,
        _guest_addr: Option<IpAddr>,
        _guest_port: u16,
    ) -> Result<String, String> {
        Err(NOT_YET.into())
    }
    fn remove_forward(&mut self, _proto: Proto, _bind: SocketAddr) -> Result<(), String> {
        Err(NOT_YET.into())
    }
    /// Protocol, guest address, remote address of every flow.
    fn flows(&mut self) -> Result<Vec<(String, String, String)>, String> {
        Err(NOT_YET.into())
    }
    fn stats(&mut self) -> Result<String, String> {
        Err(NOT_YET.into())
    }
}

const NOT_YET: &str = "airlock is waiting for the incoming migration: no stack yet";

/// airlock's own interface on the same connection: runtime forwards (the
/// caller binds and passes the socket: airlock's sandbox forbids binding
/// after start-up), flows and counters. `airlock ctl` is its client.
pub const CONTROL_PATH: &str = "/org/airlock/Airlock1";
pub const CONTROL_IFACE: &str = "org.airlock.Airlock1";

fn parse_proto(p: &str) -> Result<Proto, String> {
    match p {
        "tcp" => Ok(Proto::Tcp),
        "udp" => Ok(Proto::Udp),
        _ => Err(format!("protocol {p:?}: tcp or udp")),
    }
}

fn proto_name(p: Proto) -> &'static str {
    match p {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

/// A connection to the domain's bus.
pub struct Bus {
    chan: Channel,
    id: String,
    /// A duplicate of the channel's socket, for epoll and poll.
    fd: OwnedFd,
}

/// The bus went away: airlock goes on without it.
#[derive(Debug)]
pub struct Gone;

impl Bus {
    /// Connect to `address`, say hello and queue for [`VMSTATE_NAME`].
    pub fn connect(address: &str, id: &str) -> Result<Bus, String> {
        let err = |what: &str, e: dbus::Error| {
            format!(
                "--dbus-address {address}: {what}: {}",
                e.message().unwrap_or("failed")
            )
        };
        let mut chan = Channel::open_private(address).map_err(|e| err("connect", e))?;
        chan.register().map_err(|e| err("Hello", e))?;
        let req = Message::new_method_call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "RequestName",
        )
        .map_err(|e| format!("RequestName: {e}"))?
        // No flags: queue behind other helpers, never replace them.
        .append2(VMSTATE_NAME, 0u32);
        let reply = chan
            .send_with_reply_and_block(req, SETUP_TIMEOUT)
            .map_err(|e| err("RequestName", e))?;
        // 1: primary owner, 2: in the queue; both are what QEMU looks for.
        match reply.read1::<u32>() {
            Ok(1) | Ok(2) => {}
            other => return Err(format!("RequestName {VMSTATE_NAME}: answer {other:?}")),
        }
        chan.set_watch_enabled(true);
        let fd = crate::sys::dup_raw(chan.watch().fd).map_err(|e| format!("D-Bus socket: {e}"))?;
        log::info!(
            "D-Bus: {} on {address}, {VMSTATE_NAME} id {id}",
            chan.unique_name().unwrap_or("?")
        );
        Ok(Bus {
            chan,
            id: id.to_string(),
            fd,
        })
    }

    /// The socket to watch for reading.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Read what the bus sent and answer every call. `Err(Gone)` when the
    /// bus hung up.
    pub fn dispatch(&mut self, target: &mut dyn Vmstate) -> Result<(), Gone> {
        let mut result = self.chan.read_write(Some(Duration::ZERO)).map_err(|_| Gone);
        while let Some(msg) = self.chan.pop_message() {
            if let Some(reply) = self.answer(&msg, target) {
                if self.chan.send(reply).is_err() {
                    result = Err(Gone);
                }
            }
        }
        self.chan.flush();
        if !self.chan.is_connected() {
            result = Err(Gone);
        }
        result
    }

    fn answer(&self, msg: &Message, target: &mut dyn Vmstate) -> Option<Message> {
        if msg.msg_type() != MessageType::MethodCall {
            return None;
        }
        let reply = self.call(msg, target);
        (!msg.get_no_reply()).then_some(reply)
    }

    fn call(&self, msg: &Message, target: &mut dyn Vmstate) -> Message {
        let path = msg.path();
        let (iface, member) = (msg.interface(), msg.member());
        let iface = iface.as_deref().unwrap_or("");
        let member = member.as_deref().unwrap_or("");
        if path.as_deref() == Some(CONTROL_PATH) {
            return control(msg, iface, member, target);
        }
        if path.as_deref() != Some(VMSTATE_PATH) {
            return error(
                msg,
                "org.freedesktop.DBus.Error.UnknownObject",
                "no such object",
            );
        }
        match (iface, member) {
            (PROPERTIES, "Get") => match msg.read2::<&str, &str>() {
                Ok((VMSTATE_IFACE, "Id")) => msg
                    .method_return()
                    .append1(dbus::arg::Variant(self.id.as_str())),
                Ok(_) => error(
                    msg,
                    "org.freedesktop.DBus.Error.UnknownProperty",
                    "no such property",
                ),
                Err(e) => error(
                    msg,
                    "org.freedesktop.DBus.Error.InvalidArgs",
                    &e.to_string(),
                ),
            },
            (PROPERTIES, "GetAll") => match msg.read1::<&str>() {
                Ok(i) => {
                    let mut props: dbus::arg::PropMap = Default::default();
                    if i == VMSTATE_IFACE {
                        props.insert(
                            "Id".to_string(),
                            dbus::arg::Variant(Box::new(self.id.clone())),
                        );
                    }
                    msg.method_return().append1(props)
                }
                Err(e) => error(
                    msg,
                    "org.freedesktop.DBus.Error.InvalidArgs",
                    &e.to_string(),
                ),
            },
            (PROPERTIES, "Set") => error(
                msg,
                "org.freedesktop.DBus.Error.PropertyReadOnly",
                "Id is read-only",
            ),
            (INTROSPECTABLE, "Introspect") => msg
                .method_return()
                .append1(introspection(VMSTATE_INTERFACES)),
            (VMSTATE_IFACE, "Save") | ("", "Save") => match target.save() {
                Ok(bytes) => msg.method_return().append1(bytes),
                Err(e) => {
                    log::warn!("D-Bus Save: {e}");
                    error(msg, "org.freedesktop.DBus.Error.Failed", &e)
                }
            },
            (VMSTATE_IFACE, "Load") | ("", "Load") => match msg.read1::<Vec<u8>>() {
                Ok(bytes) => match target.load(&bytes) {
                    Ok(()) => msg.method_return(),
                    Err(e) => {
                        log::warn!("D-Bus Load refused: {e}");
                        error(msg, "org.freedesktop.DBus.Error.InvalidArgs", &e)
                    }
                },
                Err(e) => error(
                    msg,
                    "org.freedesktop.DBus.Error.InvalidArgs",
                    &e.to_string(),
                ),
            },
            _ => error(
                msg,
                "org.freedesktop.DBus.Error.UnknownMethod",
                "no such method",
            ),
        }
    }
}

/// A call on [`CONTROL_PATH`].
fn control(msg: &Message, iface: &str, member: &str, target: &mut dyn Vmstate) -> Message {
    const FAILED: &str = "org.freedesktop.DBus.Error.Failed";
    const ARGS: &str = "org.freedesktop.DBus.Error.InvalidArgs";
    let reply = match (iface, member) {
        (INTROSPECTABLE, "Introspect") => Ok(msg
            .method_return()
            .append1(introspection(CONTROL_INTERFACES))),
        (CONTROL_IFACE, "ListForwards") | ("", "ListForwards") => target
            .forwards()
            .map(|rows| {
                let rows: Vec<(String, String, String, u16)> = rows;
                msg.method_return().append1(rows)
            })
            .map_err(|e| (FAILED, e)),
        (CONTROL_IFACE, "AddForward") | ("", "AddForward") => {
            match msg.read4::<&str, OwnedFd, &str, u16>() {
                Ok((proto, fd, guest, port)) => {
                    let guest = match guest {
                        "" => Ok(None),
                        g => g
                            .parse::<IpAddr>()
                            .map(Some)
                            .map_err(|e| format!("guest address {g:?}: {e}")),
                    };
                    match (parse_proto(proto), guest) {
                        (Ok(p), Ok(g)) => target
                            .add_forward(p, fd, g, port)
                            .map(|bind| msg.method_return().append1(bind))
                            .map_err(|e| (ARGS, e)),
                        (Err(e), _) | (_, Err(e)) => Err((ARGS, e)),
                    }
                }
                Err(e) => Err((ARGS, e.to_string())),
            }
        }
        (CONTROL_IFACE, "RemoveForward") | ("", "RemoveForward") => {
            match msg.read2::<&str, &str>() {
                Ok((proto, bind)) => {
                    let bind = bind
                        .parse::<SocketAddr>()
                        .map_err(|e| format!("bind address {bind:?}: {e}"));
                    match (parse_proto(proto), bind) {
                        (Ok(p), Ok(b)) => target
                            .remove_forward(p, b)
                            .map(|()| msg.method_return())
                            .map_err(|e| (ARGS, e)),
                        (Err(e), _) | (_, Err(e)) => Err((ARGS, e)),
                    }
                }
                Err(e) => Err((ARGS, e.to_string())),
            }
        }
        (CONTROL_IFACE, "ListFlows") | ("", "ListFlows") => target
            .flows()
            .map(|rows| msg.method_return().append1(rows))
            .map_err(|e| (FAILED, e)),
        (CONTROL_IFACE, "Stats") | ("", "Stats") => target
            .stats()
            .map(|s| msg.method_return().append1(s))
            .map_err(|e| (FAILED, e)),
        _ => Err((
            "org.freedesktop.DBus.Error.UnknownMethod",
            "no such method".into(),
        )),
    };
    reply.unwrap_or_else(|(name, text)| {
        log::info!("D-Bus {member}: {text}");
        error(msg, name, &text)
    })
}

/// An error reply; the text loses any NUL so it always fits a C string.
fn error(msg: &Message, name: &'static str, text: &str) -> Message {
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    match ErrorName::new(name) {
        Ok(n) => msg.error(&n, &text),
        Err(_) => msg.method_return(),
    }
}

/// `Save` and `Load` on the running stack.
pub struct Running<'a> {
    pub stack: &'a mut Stack,
    pub tx: &'a mut Tx,
    pub now: Instant,
}

impl Vmstate for Running<'_> {
    fn save(&mut self) -> Result<Vec<u8>, String> {
        let st = self.stack.export();
        let bytes = st.encode().map_err(|e| e.to_string())?;
        log::info!(
            "migration: state saved, {} bytes ({} UDP, {} TCP flows, {} forwards)",
            bytes.len(),
            st.udp.len(),
            st.tcp.len(),
            st.forwards.len()
        );
        Ok(bytes)
    }

    fn load(&mut self, bytes: &[u8]) -> Result<(), String> {
        let st = State::decode(bytes).map_err(|e| e.to_string())?;
        st.check(&self.stack.cfg).map_err(|e| e.to_string())?;
        let (udp, tcp) = self.stack.import(&st, self.tx, self.now);
        log::info!("migration: state loaded, {udp} UDP flows resumed, {tcp} TCP flows reset toward the guest");
        Ok(())
    }

    fn forwards(&mut self) -> Result<Vec<ForwardRow>, String> {
        Ok(self
            .stack
            .forwards()
            .map(|f| {
                let guest = f.guest_addr.map(|a| a.to_string()).unwrap_or_default();
                (
                    proto_name(f.proto).into(),
                    f.bind.to_string(),
                    guest,
                    f.guest_port,
                )
            })
            .collect())
    }

    fn add_forward(
        &mut self,
        proto: Proto,
        fd: OwnedFd,
        guest_addr: Option<IpAddr>,
        guest_port: u16,
    ) -> Result<String, String> {
        let cfg = &self.stack.cfg;
        if let Some(a) = guest_addr {
            let ours = match a {
                IpAddr::V4(a) => cfg.net4.as_ref().is_some_and(|n| n.guest == a),
                IpAddr::V6(a) => cfg.net6.as_ref().is_some_and(|n| n.contains(a)),
            };
            if !ours {
                return Err(format!("guest address {a}: not the guest's"));
            }
        }
        let l = Listener::adopt(fd, proto, guest_addr, guest_port).map_err(|e| e.to_string())?;
        let bind = l.fwd.bind;
        if self
            .stack
            .forwards()
            .any(|f| f.proto == proto && f.bind == bind)
        {
            return Err(format!("{} {bind}: already forwarded", proto_name(proto)));
        }
        self.stack.add_listener(l).map_err(|e| e.to_string())?;
        log::info!(
            "forward {} {bind} -> guest port {guest_port} added over D-Bus",
            proto_name(proto)
        );
        Ok(bind.to_string())
    }

    fn remove_forward(&mut self, proto: Proto, bind: SocketAddr) -> Result<(), String> {
        if !self.stack.remove_forward(proto, bind) {
            return Err(format!("no {} forward on {bind}", proto_name(proto)));
        }
        log::info!("forward {} {bind} removed over D-Bus", proto_name(proto));
        Ok(())
    }

    fn flows(&mut self) -> Result<Vec<(String, String, String)>, String> {
        let mut rows = Vec::new();
        self.stack.for_each_flow_key(|proto, k| {
            rows.push((proto.to_string(), k.guest.to_string(), k.remote.to_string()))
        });
        Ok(rows)
    }

    fn stats(&mut self) -> Result<String, String> {
        let (tcp, udp, icmp) = self.stack.flows_by_proto();
        Ok(format!(
            "flows: tcp {tcp}, udp {udp}, icmp {icmp}\n{}",
            self.stack.counters
        ))
    }
}

/// Before the sandbox (`--dbus-incoming`): `Load` checks the state and
/// keeps it for the stack that is yet to start; there is nothing to save.
pub struct Incoming<'a> {
    pub cfg: &'a Config,
    pub state: Option<State>,
}

impl Vmstate for Incoming<'_> {
    fn save(&mut self) -> Result<Vec<u8>, String> {
        Err("waiting for the incoming migration's state: nothing to save yet".into())
    }

    fn load(&mut self, bytes: &[u8]) -> Result<(), String> {
        let st = State::decode(bytes).map_err(|e| e.to_string())?;
        st.check(self.cfg).map_err(|e| e.to_string())?;
        self.state = Some(st);
        Ok(())
    }
}

/// `--dbus-incoming`: serve the bus until the migrating state is loaded.
/// Also ends when the link has a frame (the guest runs without a state:
/// nothing is coming) or a signal is pending (the caller reads it).
pub fn wait_for_load(
    bus: &mut Bus,
    cfg: &Config,
    link: BorrowedFd<'_>,
    signals: BorrowedFd<'_>,
) -> Result<Option<State>, Gone> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut slot = Incoming { cfg, state: None };
    // Calls read while connecting are queued already.
    bus.dispatch(&mut slot)?;
    while slot.state.is_none() {
        let mut fds = [
            PollFd::new(bus.as_fd(), PollFlags::POLLIN),
            PollFd::new(link, PollFlags::POLLIN),
            PollFd::new(signals, PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Err(Gone),
        }
        let ready = fds.map(|f| f.any().unwrap_or(false));
        if ready[0] {
            bus.dispatch(&mut slot)?;
        }
        if slot.state.is_none() && (ready[1] || ready[2]) {
            break;
        }
    }
    Ok(slot.state)
}
