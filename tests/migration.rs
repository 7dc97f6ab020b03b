//! D-Bus and migration state (issue 16), against a real `dbus-daemon` in the
//! host namespace: airlock queues for `org.qemu.VMState1`, answers `Id`,
//! `Save`s its state and refuses to `Load` bytes that are truncated, from
//! another version, random, or from another network, and keeps serving the
//! guest. The QEMU-to-QEMU migration itself is `tests/vmm.rs::migrate_over_dbus_vmstate`.

mod support;

use std::time::Duration;
use support::bus::{byte_arg, reply_bytes, Bus};
use support::{Helper, LinkMode, Topology};

const PATH: &str = "/org/qemu/VMState1";

fn start(t: &Topology, bus: &Bus, extra: &[&str]) -> Helper {
    let mut args = vec![
        "--dbus-address",
        bus.address.as_str(),
        "--dbus-id",
        "slirp-net0",
        "--dns-upstream",
        "127.0.0.1:5353",
    ];
    args.extend_from_slice(extra);
    let mut h = Helper::airlock(t, LinkMode::Dgram, &args);
    h.wait_ready(t, Duration::from_secs(10)).unwrap();
    h
}

/// The queued owner of org.qemu.VMState1 that is airlock (waits for it).
fn owner(bus: &Bus, h: &mut Helper) -> String {
    for _ in 0..250 {
        if let Some(o) = bus.queued_owners("org.qemu.VMState1").pop() {
            return o;
        }
        assert!(h.is_running(), "{}", h.diagnose());
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "airlock never queued for org.qemu.VMState1\n{}",
        h.diagnose()
    );
}

fn save(bus: &Bus, dest: &str) -> Vec<u8> {
    let out = bus.call(dest, PATH, "org.qemu.VMState1.Save", &[]);
    assert!(out.success(), "Save: {}", out.describe());
    reply_bytes(&out.stdout).unwrap_or_else(|| panic!("Save reply: {}", out.stdout))
}

#[test]
fn id_save_and_load_refusals_keep_airlock_serving() {
    let t = Topology::new();
    let bus = Bus::start(t.host_ns(), t.dir());
    let mut h = start(&t, &bus, &[]);
    let dest = owner(&bus, &mut h);

    // QEMU's dbus-vmstate reads Id through GetAll (a GDBusProxy's cache).
    let all = bus.call(
        &dest,
        PATH,
        "org.freedesktop.DBus.Properties.GetAll",
        &["string:org.qemu.VMState1".into()],
    );
    assert!(all.success(), "{}", all.describe());
    assert!(
        all.stdout.contains("\"Id\"") && all.stdout.contains("\"slirp-net0\""),
        "{}",
        all.stdout
    );
    let get = bus.call(
        &dest,
        PATH,
        "org.freedesktop.DBus.Properties.Get",
        &["string:org.qemu.VMState1".into(), "string:Id".into()],
    );
    assert!(get.stdout.contains("\"slirp-net0\""), "{}", get.describe());

    let lease = t.guest().dhcp().unwrap();
    assert_eq!(lease.ip.to_string(), "10.0.2.15");
    let state = save(&bus, &dest);
    assert!(state.starts_with(b"AIRLOCK\0"), "{state:?}");

    // Each refused with a D-Bus error naming why; nothing changes.
    let mut wrong_version = state.clone();
    wrong_version[9] ^= 0x7f;
    let mut random = vec![0u8; 700];
    airlock::rng::Rng::new(16).fill(&mut random);
    let cases: [(&str, Vec<u8>, &str); 4] = [
        ("truncated", state[..state.len() - 3].to_vec(), "truncated"),
        ("wrong version", wrong_version, "version"),
        ("random", random, "not an airlock state"),
        ("short", vec![0x41], "not an airlock state"),
    ];
    for (what, bytes, why) in cases {
        let out = bus.call(&dest, PATH, "org.qemu.VMState1.Load", &[byte_arg(&bytes)]);
        assert!(!out.success(), "{what}: Load accepted: {}", out.describe());
        assert!(
            out.stderr
                .contains("org.freedesktop.DBus.Error.InvalidArgs")
                && out.stderr.contains(why),
            "{what}: {}",
            out.describe()
        );
        assert!(h.is_running(), "{what}: {}", h.diagnose());
    }
    // Still serving: the guest renews and pings the router.
    t.guest().ping("10.0.2.2").unwrap();
    assert_eq!(t.guest().dhcp().unwrap().ip, lease.ip);
    // Its own state loads back (a no-op migration), and Save still works.
    let ok = bus.call(&dest, PATH, "org.qemu.VMState1.Load", &[byte_arg(&state)]);
    assert!(ok.success(), "{}", ok.describe());
    assert!(save(&bus, &dest).starts_with(b"AIRLOCK\0"));
    assert!(h.log().contains("migration: state loaded"), "{}", h.log());
    drop(h);

    // Another network configuration refuses the same state.
    let mut other = start(&t, &bus, &["--net", "10.9.0.0/24"]);
    let dest = owner(&bus, &mut other);
    let out = bus.call(&dest, PATH, "org.qemu.VMState1.Load", &[byte_arg(&state)]);
    assert!(
        !out.success() && out.stderr.contains("different network configuration"),
        "{}",
        out.describe()
    );
    assert!(other.is_running(), "{}", other.diagnose());
}

fn ctl(t: &Topology, bus: &Bus, args: &[&str]) -> support::process::Outcome {
    let mut argv = vec![
        support::AIRLOCK,
        "ctl",
        "--dbus-address",
        bus.address.as_str(),
        "--dbus-id",
        "slirp-net0",
    ];
    argv.extend_from_slice(args);
    t.host_run(&argv, Duration::from_secs(15))
}

/// A port free on the host namespace's loopback right now.
fn free_port(t: &Topology) -> u16 {
    support::relay::in_netns(t.host_ns(), || {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    })
    .unwrap()
}

/// Runtime forwards through `airlock ctl`: it binds a TCP and a UDP socket
/// on the host, passes them over D-Bus, and the host reaches the guest's
/// servers through them; `list` and `flows` show them; `remove` closes them
/// (the port is free again); a socket of the wrong kind is refused.
#[test]
fn ctl_adds_lists_and_removes_runtime_forwards() {
    use std::io::{Read, Write};
    let t = Topology::new();
    let bus = Bus::start(t.host_ns(), t.dir());
    let mut h = start(&t, &bus, &[]);
    owner(&bus, &mut h);
    t.guest().dhcp().unwrap();
    let (tl, us) = support::relay::in_netns(t.guest_ns(), || {
        Ok((
            std::net::TcpListener::bind("0.0.0.0:8080")?,
            std::net::UdpSocket::bind("0.0.0.0:5353")?,
        ))
    })
    .unwrap();
    std::thread::spawn(move || {
        for c in tl.incoming() {
            let Ok(mut c) = c else { break };
            let _ = c.write_all(b"guest-tcp\n");
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = us.recv_from(&mut buf) {
            let mut r = b"guest-udp:".to_vec();
            r.extend_from_slice(&buf[..n]);
            let _ = us.send_to(&r, peer);
        }
    });

    let (pt, pu) = (free_port(&t), free_port(&t));
    let (ht, hu) = (format!("127.0.0.1:{pt}"), format!("127.0.0.1:{pu}"));
    let add_t = ctl(&t, &bus, &["add", "tcp", &ht, ":8080"]);
    assert!(add_t.success(), "{}\n{}", add_t.describe(), h.log());
    assert_eq!(add_t.stdout.trim(), format!("tcp {ht} -> :8080"));
    let add_u = ctl(&t, &bus, &["add", "udp", &hu, "10.0.2.15:5353"]);
    assert!(add_u.success(), "{}\n{}", add_u.describe(), h.log());
    let list = ctl(&t, &bus, &["list"]);
    assert!(
        list.stdout.contains(&format!("tcp {ht} -> :8080"))
            && list.stdout.contains(&format!("udp {hu} -> 10.0.2.15:5353")),
        "{}",
        list.describe()
    );

    let (got_t, got_u) = support::relay::in_netns(t.host_ns(), move || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", pt))?;
        c.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut s = String::new();
        c.read_to_string(&mut s)?;
        let u = std::net::UdpSocket::bind("127.0.0.1:0")?;
        u.set_read_timeout(Some(Duration::from_secs(5)))?;
        u.connect(("127.0.0.1", pu))?;
        u.send(b"ping")?;
        let mut buf = [0u8; 100];
        let n = u.recv(&mut buf)?;
        Ok((s, String::from_utf8_lossy(&buf[..n]).into_owned()))
    })
    .unwrap();
    assert_eq!(got_t, "guest-tcp\n");
    assert_eq!(got_u, "guest-udp:ping");
    let flows = ctl(&t, &bus, &["flows"]);
    assert!(
        flows.stdout.contains("udp 10.0.2.15:5353 10.0.2.2:"),
        "{}",
        flows.describe()
    );
    assert!(ctl(&t, &bus, &["stats"]).stdout.contains("flows: "));

    // Refused: a UDP socket offered as TCP, and a forward already there.
    let dup = ctl(&t, &bus, &["add", "tcp", &ht, ":8080"]);
    assert!(!dup.success(), "{}", dup.describe());
    for (proto, host) in [("tcp", &ht), ("udp", &hu)] {
        let rm = ctl(&t, &bus, &["remove", proto, host]);
        assert!(rm.success(), "{}", rm.describe());
    }
    assert_eq!(ctl(&t, &bus, &["list"]).stdout.trim(), "");
    let again = ctl(&t, &bus, &["remove", "tcp", &ht]);
    assert!(
        !again.success() && again.stderr.contains("no tcp forward"),
        "{}",
        again.describe()
    );
    // Closed: the host port refuses connections and can be bound again.
    let after = support::relay::in_netns(t.host_ns(), move || {
        let refused = std::net::TcpStream::connect(("127.0.0.1", pt)).is_err();
        let rebound = std::net::UdpSocket::bind(("127.0.0.1", pu)).is_ok();
        Ok((refused, rebound))
    })
    .unwrap();
    assert_eq!(after, (true, true));
    assert!(h.is_running(), "{}", h.diagnose());
}

/// The D-Bus options go together; `--dbus-p2p` (older libvirt's listening
/// bus) is refused, not ignored: exit 2, one line naming the option.
#[test]
fn dbus_options_are_checked_at_start() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--dbus-p2p=unix:path=/nonexistent/p2p"],
            "--dbus-p2p: not supported",
        ),
        (
            &["--dbus-address=unix:path=/nonexistent/bus"],
            "--dbus-address needs --dbus-id",
        ),
        (&["--dbus-incoming", "--dbus-id=x"], "need --dbus-address"),
    ];
    for (args, want) in cases {
        let out = std::process::Command::new(support::AIRLOCK)
            .args([
                "--netns",
                "/nonexistent/netns",
                "--dns-upstream",
                "127.0.0.1:53",
            ])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
