//! The sandbox, driven through airlock's own code in forked children (the
//! filter and the landlock domain bind the calling thread, and a fork is
//! single-threaded). Needs root, as the machines running the suite are.
//!
//! Children talk to the parent over a pipe with the raw `write` syscall
//! (allowed by the baseline policy) and leave with `_exit` (`exit_group`).
//! No network traffic: the bind test runs in a fresh network namespace.

use airlock::cli::SandboxMode;
use airlock::sandbox::{self, privileges};
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One fork at a time, and no other test thread inside NSS or malloc locks
/// while the child is created.
static SERIAL: Mutex<()> = Mutex::new(());

const DEADLINE: Duration = Duration::from_secs(20);

fn nobody() -> (u32, u32) {
    let u = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    (u.uid.as_raw(), u.gid.as_raw())
}

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the sandbox tests must run as root"
    );
}

/// Sends raw bytes to the parent; no allocation, one `write` syscall.
fn tell(fd: i32, bytes: &[u8]) {
    // SAFETY: `bytes` is valid for its length; `fd` is the child's pipe end.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

fn tell_i32(fd: i32, v: i32) {
    tell(fd, &v.to_le_bytes());
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Forks; the child runs `body(pipe)` and `_exit`s with its result (101
/// if it panicked). Returns the child's pid and the pipe's read end.
fn spawn(body: impl FnOnce(i32) -> i32) -> (Pid, OwnedFd) {
    let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // SAFETY: the test lock is held, so no other test thread is inside a
    // lock the child could need; the child only runs `body` and `_exit`s.
    match unsafe { nix::unistd::fork() }.unwrap() {
        ForkResult::Child => {
            drop(rx);
            let fd = tx.as_raw_fd();
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(fd))).unwrap_or(101);
            // SAFETY: leaves the child at once, without running the parent's
            // atexit handlers or the test harness.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => (child, rx),
    }
}

/// Waits for the child to end, killing it after [`DEADLINE`].
fn wait(child: Pid) -> WaitStatus {
    let start = Instant::now();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive if start.elapsed() < DEADLINE => {
                std::thread::sleep(Duration::from_millis(10))
            }
            WaitStatus::StillAlive => {
                let _ = signal::kill(child, Signal::SIGKILL);
                panic!("child {child} hung; killed: {:?}", waitpid(child, None));
            }
            status => return status,
        }
    }
}

/// Everything the child wrote (read after it ended: pipes buffer enough).
fn output(rx: OwnedFd) -> Vec<u8> {
    let mut buf = Vec::new();
    std::fs::File::from(rx).read_to_end(&mut buf).unwrap();
    buf
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// `openat(AT_FDCWD, "/etc/hostname", O_RDONLY)` made directly, so nothing
/// else (no fstat, no allocation) happens around it.
fn raw_open_hostname() -> i64 {
    // SAFETY: a NUL-terminated static path; the result is only inspected.
    unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            c"/etc/hostname".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    }
}

#[test]
fn enforce_kills_a_forbidden_syscall_with_sigsys() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    assert!(
        raw_open_hostname() >= 0,
        "the file opens outside the sandbox"
    );
    let (child, rx) = spawn(|fd| {
        if sandbox::drop_privileges(None).is_err() {
            return 2;
        }
        if sandbox::lock_down(SandboxMode::Enforce).is_err() {
            return 3;
        }
        tell(fd, b"locked");
        raw_open_hostname();
        tell(fd, b", survived openat");
        0
    });
    let status = wait(child);
    assert_eq!(String::from_utf8_lossy(&output(rx)), "locked");
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{status:?}"
    );
}

#[test]
fn log_mode_lets_landlock_refuse_a_file_and_a_tcp_bind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let layers = sandbox::kernel_layers();
    let (child, rx) = spawn(|fd| {
        // A namespace of our own: nothing here can reach a real network.
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return 2;
        }
        if sandbox::drop_privileges(None).is_err() {
            return 3;
        }
        let Ok(report) = sandbox::lock_down(SandboxMode::Log) else {
            return 4;
        };
        if report.seccomp.mode != sandbox::seccomp::Mode::Log {
            return 5;
        }
        // seccomp lets these through (and logs them); landlock decides.
        let open = raw_open_hostname();
        tell_i32(fd, if open < 0 { errno() } else { 0 });
        // SAFETY: plain socket(2) call, result inspected below.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        tell_i32(fd, if sock < 0 { errno() } else { 0 });
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        // SAFETY: `addr` is a valid sockaddr_in for the length passed.
        let bound = unsafe {
            libc::bind(
                sock,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        tell_i32(fd, if bound < 0 { errno() } else { 0 });
        0
    });
    let status = wait(child);
    assert_eq!(status, WaitStatus::Exited(child, 0));
    let results = i32s(&output(rx));
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(layers.contains(&"landlock"), "kernel layers: {layers:?}");
    assert_eq!(results[0], libc::EACCES, "open refused by landlock");
    assert_eq!(results[1], 0, "socket() itself is allowed");
    if layers.contains(&"landlock-net") {
        assert_eq!(results[2], libc::EACCES, "bind refused by landlock");
    } else {
        assert_eq!(results[2], 0, "no landlock-net: bind works");
    }
}

fn status_field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in /proc/PID/status"))
        .trim()
}

/// In a child: become `uid`:`gid` with no supplementary groups, as a
/// launcher starts an unprivileged helper.
fn become_user(uid: u32, gid: u32) -> bool {
    let (u, g) = (
        nix::unistd::Uid::from_raw(uid),
        nix::unistd::Gid::from_raw(gid),
    );
    nix::unistd::setgroups(&[]).is_ok()
        && nix::unistd::setresgid(g, g, g).is_ok()
        && nix::unistd::setresuid(u, u, u).is_ok()
}

/// In a locked-down child: wait to be inspected and killed (clock_gettime
/// is allowed, a sleep may not be).
fn await_inspection() {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        std::hint::spin_loop();
    }
}

/// Once the child has told `want` on `rx`, its /proc/PID/status; then
/// kills it.
fn status_once_told(child: Pid, rx: OwnedFd, want: &[u8]) -> String {
    let mut rx = std::fs::File::from(rx);
    let mut told = vec![0u8; want.len()];
    let mut got = 0;
    while got < want.len() {
        match rx.read(&mut told[got..]) {
            Ok(n) if n > 0 => got += n,
            _ => break,
        }
    }
    let status = std::fs::read_to_string(format!("/proc/{child}/status"));
    let _ = signal::kill(child, Signal::SIGKILL);
    let ended = wait(child);
    assert_eq!(&told[..got], want, "child ended early: {ended:?}");
    status.unwrap()
}

#[test]
fn locked_down_process_is_nobody_without_privileges() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let (uid, gid) = nobody();
    let (child, rx) = spawn(|fd| {
        let Ok(dropped) = sandbox::drop_privileges(None) else {
            return 2;
        };
        if !dropped.changed || sandbox::lock_down(SandboxMode::Enforce).is_err() {
            return 3;
        }
        tell(fd, b"R");
        await_inspection();
        4
    });
    let status = status_once_told(child, rx, b"R");
    let ids = |u: u32| format!("{u}\t{u}\t{u}\t{u}");
    assert_eq!(status_field(&status, "Uid"), ids(uid));
    assert_eq!(status_field(&status, "Gid"), ids(gid));
    assert_eq!(status_field(&status, "Groups"), "");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert_eq!(status_field(&status, "Seccomp"), "2");
    for caps in ["CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"] {
        assert_eq!(status_field(&status, caps), "0000000000000000", "{caps}");
    }
}

/// SIGTERM's handler runs and returns (rt_sigreturn) under the filter, and
/// the process then exits normally (exit_group).
#[test]
fn sigterm_handler_works_under_the_filter() {
    static TERM: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    extern "C" fn on_term(_: libc::c_int) {
        TERM.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let (child, rx) = spawn(|fd| {
        // SAFETY: the handler only stores to an atomic.
        if unsafe { signal::signal(Signal::SIGTERM, SigHandler::Handler(on_term)) }.is_err() {
            return 2;
        }
        if sandbox::drop_privileges(None).is_err()
            || sandbox::lock_down(SandboxMode::Enforce).is_err()
        {
            return 3;
        }
        tell(fd, b"R");
        let start = Instant::now();
        while !TERM.load(std::sync::atomic::Ordering::SeqCst) {
            if start.elapsed() > DEADLINE {
                return 4;
            }
            std::hint::spin_loop();
        }
        tell(fd, b"T");
        0
    });
    let mut rx = std::fs::File::from(rx);
    let mut ready = [0u8; 1];
    assert_eq!(rx.read(&mut ready).unwrap(), 1);
    signal::kill(child, Signal::SIGTERM).unwrap();
    assert_eq!(wait(child), WaitStatus::Exited(child, 0));
    let mut rest = Vec::new();
    rx.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"T");
}

#[test]
fn strict_succeeds_exactly_when_the_kernel_has_every_layer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let complete = sandbox::kernel_layers() == sandbox::ALL_LAYERS;
    let (child, rx) = spawn(|fd| match sandbox::lock_down(SandboxMode::Strict) {
        Ok(report) => {
            tell(fd, &[report.layers().len() as u8]);
            0
        }
        Err(sandbox::Error::Missing(_)) => 1,
        Err(_) => 2,
    });
    let status = wait(child);
    let out = output(rx);
    if complete {
        assert_eq!(status, WaitStatus::Exited(child, 0));
        assert_eq!(out, [4]);
    } else {
        assert_eq!(status, WaitStatus::Exited(child, 1));
    }
}

#[test]
fn off_changes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (child, rx) = spawn(|fd| {
        let Ok(report) = sandbox::lock_down(SandboxMode::Off) else {
            return 2;
        };
        tell(fd, &[report.layers().len() as u8]);
        // Still allowed to open files and to ask for the seccomp mode.
        let open = raw_open_hostname();
        // SAFETY: PR_GET_SECCOMP takes no pointers.
        let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP) };
        i32::from(open < 0) * 10 + mode
    });
    assert_eq!(wait(child), WaitStatus::Exited(child, 0));
    assert_eq!(output(rx), [0]);
}

#[test]
fn unprivileged_start_keeps_its_ids() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let (uid, gid) = nobody();
    let (child, rx) = spawn(|fd| {
        // Become an ordinary user the way libvirt would start us.
        if !become_user(uid, gid) {
            return 2;
        }
        for runas in [None, Some("root")] {
            let Ok(d) = sandbox::drop_privileges(runas) else {
                return 3;
            };
            tell_i32(fd, d.uid as i32);
            tell_i32(fd, d.gid as i32);
            tell_i32(fd, i32::from(d.changed));
        }
        0
    });
    assert_eq!(wait(child), WaitStatus::Exited(child, 0));
    let (u, g) = (uid as i32, gid as i32);
    assert_eq!(i32s(&output(rx)), [u, g, 0, u, g, 0]);
}

#[test]
fn runas_resolves_users_and_groups_and_refuses_root() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (uid, gid) = nobody();
    assert_eq!(privileges::resolve(None).unwrap(), (uid, gid));
    assert_eq!(privileges::resolve(Some("nobody")).unwrap(), (uid, gid));
    let nogroup = nix::unistd::Group::from_name("nogroup").unwrap().unwrap();
    assert_eq!(
        privileges::resolve(Some("nobody:nogroup")).unwrap(),
        (uid, nogroup.gid.as_raw())
    );
    assert_eq!(
        privileges::resolve(Some("4321:4322")).unwrap(),
        (4321, 4322)
    );
    assert!(privileges::resolve(Some("root")).is_err());
    assert!(privileges::resolve(Some("nobody:root")).is_err());
    assert!(privileges::resolve(Some("0:4322")).is_err());
    assert!(privileges::resolve(Some("no-such-user-here")).is_err());
    assert!(privileges::resolve(Some("nobody:no-such-group")).is_err());
}

/// `--print-capabilities` reports what this kernel offers, judged here
/// without airlock's code: the landlock ABI from the raw syscall, seccomp
/// filters from `/proc/self/status` (a `Seccomp_filters:` line exists only
/// with CONFIG_SECCOMP_FILTER).
#[test]
fn kernel_layers_match_the_kernel() {
    // SAFETY: LANDLOCK_CREATE_RULESET_VERSION (1) with no attribute only
    // returns the ABI version.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0,
            1,
        )
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mut expected = Vec::new();
    if status.lines().any(|l| l.starts_with("Seccomp_filters:")) {
        expected.push("seccomp");
    }
    for (layer, since) in [("landlock", 1), ("landlock-net", 4), ("landlock-scope", 6)] {
        if abi >= since {
            expected.push(layer);
        }
    }
    assert_eq!(sandbox::kernel_layers(), expected, "landlock ABI {abi}");
}

/// Locks down (enforce) in a fresh network namespace, says "L", runs
/// `probe` and says "S" if it survived. Returns what was said and how the
/// child ended.
fn probe_after_lockdown(probe: fn(i32)) -> (String, WaitStatus) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let (child, rx) = spawn(move |fd| {
        if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
            return 2;
        }
        if sandbox::drop_privileges(None).is_err()
            || sandbox::lock_down(SandboxMode::Enforce).is_err()
        {
            return 3;
        }
        tell(fd, b"L");
        probe(fd);
        tell(fd, b"S");
        0
    });
    let status = wait(child);
    (String::from_utf8_lossy(&output(rx)).into_owned(), status)
}

fn assert_killed(what: &str, (said, status): (String, WaitStatus)) {
    assert_eq!(said, "L", "{what}: survived or failed early ({status:?})");
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{what}: {status:?}"
    );
}

fn raw_socket(domain: i32, ty: i32, proto: i32) -> i32 {
    // SAFETY: plain socket(2) call; the result is only inspected.
    unsafe { libc::socket(domain, ty, proto) }
}

/// `listen` on an unbound socket autobinds a port landlock never sees: it
/// is a startup-only syscall (finding 3).
#[test]
fn listen_after_lockdown_is_killed() {
    assert_killed(
        "listen",
        probe_after_lockdown(|_| {
            let s = raw_socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            // SAFETY: listen on a socket this probe owns.
            unsafe { libc::listen(s, 1) };
        }),
    );
}

/// Binding a TCP port after lockdown stays refused (landlock), which is
/// why runtime forwards come as sockets the caller bound and passed over
/// D-Bus (`airlock ctl`, issue 16).
#[test]
fn tcp_bind_after_lockdown_is_refused() {
    let (said, status) = probe_after_lockdown(|fd| {
        let s = raw_socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 18080u16.to_be(),
            sin_addr: libc::in_addr { s_addr: 0 },
            sin_zero: [0; 8],
        };
        // SAFETY: bind with a valid sockaddr_in of its exact size.
        let r = unsafe {
            libc::bind(
                s,
                (&addr as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        tell(
            fd,
            if r < 0 && errno() == libc::EACCES {
                b"A"
            } else {
                b"X"
            },
        );
    });
    if !sandbox::kernel_layers().contains(&"landlock-net") {
        return;
    }
    assert_eq!(said, "LAS", "bind after lockdown: {status:?}");
}

/// Only plain TCP, UDP and ICMP echo sockets: no raw socket, no MPTCP
/// (finding 4), even for a process that could otherwise make them.
#[test]
fn raw_and_mptcp_sockets_are_killed() {
    assert_killed(
        "SOCK_RAW",
        probe_after_lockdown(|_| {
            raw_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP);
        }),
    );
    assert_killed(
        "MPTCP",
        probe_after_lockdown(|_| {
            raw_socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_MPTCP);
        }),
    );
    // What the flows make stays allowed.
    let (said, status) = probe_after_lockdown(|fd| {
        for (d, t, p) in [
            (libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0),
            (libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0),
            (libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
            (libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6),
        ] {
            tell_i32(fd, i32::from(raw_socket(d, t, p) >= 0));
        }
    });
    assert_eq!(status, WaitStatus::Exited(status.pid().unwrap(), 0));
    assert!(said.starts_with('L') && said.ends_with('S'), "{said:?}");
}

/// A datagram to a pathname socket needs an address: `sendto` with one, or
/// `connect` to one, is killed, while `send` on a socket connected before
/// lockdown (the logger's /dev/log) still works (finding 6).
#[test]
fn sendto_with_an_address_is_killed() {
    unix_probe("sendto", |spare, victim| {
        let _ = spare.send_to(b"sendto", victim);
    });
}

#[test]
fn connect_to_a_pathname_socket_is_killed() {
    unix_probe("connect", |spare, victim| {
        if spare.connect(victim).is_ok() {
            let _ = spare.send(b"connect");
        }
    });
}

fn unix_probe(what: &str, probe: fn(&std::os::unix::net::UnixDatagram, &std::path::Path)) {
    let dir = std::env::temp_dir().join(format!("airlock-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("victim.sock");
    let server = std::os::unix::net::UnixDatagram::bind(&victim).unwrap();
    server.set_nonblocking(true).unwrap();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (child, rx) = spawn(|fd| {
        let Ok(connected) = std::os::unix::net::UnixDatagram::unbound() else {
            return 2;
        };
        if connected.connect(&victim).is_err() {
            return 2;
        }
        let Ok(spare) = std::os::unix::net::UnixDatagram::unbound() else {
            return 2;
        };
        if sandbox::lock_down(SandboxMode::Enforce).is_err() {
            return 3;
        }
        let _ = connected.send(b"connected");
        tell(fd, b"L");
        probe(&spare, &victim);
        tell(fd, b"S");
        0
    });
    let status = wait(child);
    let said = String::from_utf8_lossy(&output(rx)).into_owned();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while let Ok(n) = server.recv(&mut buf) {
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(got, ["connected"]);
    assert_killed(what, (said, status));
}

fn capset(caps: u64) -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    let (lo, hi) = (caps as u32, (caps >> 32) as u32);
    let data: [u32; 6] = [lo, lo, lo, hi, hi, hi];
    let mut h = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    // SAFETY: a version-3 header and its two (effective, permitted,
    // inheritable) words, valid for the call.
    unsafe { libc::syscall(libc::SYS_capset, &mut h, data.as_ptr()) == 0 }
}

/// Started unprivileged but holding capabilities (ambient CAP_NET_RAW and
/// CAP_NET_BIND_SERVICE, as a launcher may hand them down), airlock ends
/// with none, the bounding set included (finding 4).
#[test]
fn unprivileged_start_with_capabilities_keeps_none() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let (uid, gid) = nobody();
    let (child, rx) = spawn(|fd| {
        // SAFETY: PR_SET_KEEPCAPS takes integers only.
        if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 || !become_user(uid, gid)
        {
            return 2;
        }
        // CAP_NET_BIND_SERVICE 10, CAP_NET_RAW 13 (0x2400, as observed),
        // and CAP_SETPCAP 8 so that the bounding set can go too.
        const NET_BIND_SERVICE: u64 = 10;
        const NET_RAW: u64 = 13;
        let wanted = (1u64 << NET_RAW) | (1 << NET_BIND_SERVICE) | (1 << 8);
        if !capset(wanted) {
            return 3;
        }
        for cap in [NET_RAW, NET_BIND_SERVICE] {
            // SAFETY: PR_CAP_AMBIENT_RAISE takes integers only.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            if rc != 0 {
                return 4;
            }
        }
        tell(fd, b"C");
        if sandbox::drop_privileges(None).is_err()
            || sandbox::lock_down(SandboxMode::Enforce).is_err()
        {
            return 5;
        }
        tell(fd, b"R");
        await_inspection();
        6
    });
    let status = status_once_told(child, rx, b"CR");
    assert_eq!(
        status_field(&status, "Uid").split('\t').next(),
        Some(&*uid.to_string())
    );
    for caps in ["CapInh", "CapPrm", "CapEff", "CapAmb", "CapBnd"] {
        assert_eq!(status_field(&status, caps), "0000000000000000", "{caps}");
    }
}

/// The sandbox keeps no right to remove files: a removal rule would cover
/// every file beside the socket and pid file ($XDG_RUNTIME_DIR, /tmp), so
/// those two are removed by a process outside it (finding 5).
#[test]
fn locked_down_process_cannot_remove_files() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let dir = std::env::temp_dir().join(format!("airlock-unlink-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("users-file");
    std::fs::write(&victim, "keep me").unwrap();
    let path = std::ffi::CString::new(victim.as_os_str().as_encoded_bytes()).unwrap();
    let (child, rx) = spawn(move |fd| {
        // Log mode: seccomp lets unlink through, landlock alone decides.
        if sandbox::lock_down(SandboxMode::Log).is_err() {
            return 3;
        }
        // SAFETY: a NUL-terminated path; the result is only inspected.
        let rc = unsafe { libc::unlinkat(libc::AT_FDCWD, path.as_ptr(), 0) };
        tell_i32(fd, if rc < 0 { errno() } else { 0 });
        0
    });
    let status = wait(child);
    let results = i32s(&output(rx));
    let still_there = victim.exists();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status, WaitStatus::Exited(child, 0));
    assert_eq!(results, [libc::EACCES]);
    assert!(still_there);
}

/// landlock's signal scope (ABI 6): after lockdown, a signal to a process
/// outside the domain (here the parent, even with signal 0) is refused.
#[test]
fn landlock_scope_refuses_signals_outside_the_domain() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_root();
    let scoped = sandbox::kernel_layers().contains(&"landlock-scope");
    let parent = std::process::id() as i32;
    let (child, rx) = spawn(move |fd| {
        // SAFETY: signal 0 only checks permission.
        let before = unsafe { libc::kill(parent, 0) };
        tell_i32(fd, if before < 0 { errno() } else { 0 });
        if sandbox::lock_down(SandboxMode::Log).is_err() {
            return 3;
        }
        // SAFETY: as above.
        let after = unsafe { libc::kill(parent, 0) };
        tell_i32(fd, if after < 0 { errno() } else { 0 });
        0
    });
    assert_eq!(wait(child), WaitStatus::Exited(child, 0));
    let expected_after = if scoped { libc::EPERM } else { 0 };
    assert_eq!(i32s(&output(rx)), [0, expected_after]);
}
