//! Process lifecycle: how VMMs start, watch and stop airlock.
//!
//! Two launch contracts meet here. libvirt (`--fd=N --exit-with-parent`)
//! starts the helper already reparented to PID 1, with stdout on /dev/null,
//! stderr on a pipe it stops reading, and a locked pidfile descriptor it
//! finds the helper by: airlock never forks there, keeps every inherited
//! descriptor, and survives a dead stderr. passt's launchers (libguestfs,
//! Kata) start `--socket PATH` and wait for it to return: airlock returns
//! once the socket listens and the pid file is written, and stays behind as
//! a daemon.
//!
//! Daemonizing without `fork()` in safe Rust: the launching process re-runs
//! its own executable (`posix_spawn` of `/proc/self/exe`, same arguments,
//! `AIRLOCK_DAEMON_CHILD=1`) with stdout on a pipe, and exits with status 0
//! when the child writes one byte there ([`Daemon::ready`]), or with the
//! child's own status if it dies first. The child calls `setsid()` and does
//! all the work itself (listen, pid file, sandbox), so nothing crosses the
//! exec but the pipe; its stderr stays the launcher's until it is ready, so
//! start-up errors reach the operator.
//!
//! Exit codes: [`EXIT_OK`] normal end, [`EXIT_FAILURE`] runtime failure,
//! [`EXIT_USAGE`] bad options or configuration.
//!
//! #syscalls: read getppid close sendto(5=0) accept4 poll|ppoll
//! #syscalls-startup: openat write dup2|dup3 fcntl getpid prctl rt_sigprocmask signalfd4
//! #syscalls-startup: socket connect bind listen newfstatat|statx|fstat|lstat getcwd
//! #syscalls-startup: fchownat|lchown unlink|unlinkat
//! #syscalls-startup: pipe2 clone|clone3|vfork execve wait4 kill setsid chdir exit_group
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::socket::{
    bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{getpid, getppid, pipe2, Pid};
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};

/// Normal end (SIGTERM, VMM gone, `--print-capabilities`).
pub const EXIT_OK: i32 = 0;
/// Runtime failure (a socket, the sandbox, the link).
pub const EXIT_FAILURE: i32 = 1;
/// Bad options or configuration: nothing was started.
pub const EXIT_USAGE: i32 = 2;

/// Environment variable marking the re-executed daemon child.
pub const DAEMON_ENV: &str = "AIRLOCK_DAEMON_CHILD";

/// Make sure fds 0, 1 and 2 are open (on /dev/null where they are closed),
/// so no socket airlock opens later lands on a standard descriptor and gets
/// a stray log line written into it. Open descriptors are left as given.
pub fn ensure_std_fds() -> Result<(), String> {
    // open() returns the lowest free descriptor: keep each /dev/null that
    // fills a hole below 3, stop at the first that does not.
    loop {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/null")
            .map_err(|e| format!("/dev/null: {e}"))?;
        if f.as_raw_fd() > 2 {
            return Ok(());
        }
        // The descriptor is now 0, 1 or 2 for the rest of the process.
        let fd = OwnedFd::from(f);
        // std opens with O_CLOEXEC: harmless for 0-2 as airlock never execs
        // after this point except to daemonize, which sets up its own stdio.
        let _ = fd.into_raw_fd();
    }
}

/// Writes to a pipe or socket whose reader has gone must fail with EPIPE,
/// never kill airlock. Rust's runtime already sets SIGPIPE to SIG_IGN
/// before `main`; blocking it as well covers a library or a test harness
/// that restored the default (a blocked SIGPIPE stays pending, harmlessly).
pub fn ignore_sigpipe() {
    let mut set = SigSet::empty();
    set.add(Signal::SIGPIPE);
    let _ = set.thread_block();
}

/// `--exit-with-parent`: the parent airlock was started by, and how to tell
/// it has gone.
///
/// `PR_SET_PDEATHSIG` delivers SIGTERM (seen on the engine's signalfd) when the
/// parent dies. libvirt starts its helper through a double fork, so the
/// parent is already PID 1 (or a subreaper) at start-up: that is not a
/// dead parent and must never end airlock. A parent that died before
/// start-up cannot be told from that case, so only a *change* of parent
/// after start-up counts ([`ParentWatch::parent_gone`]), which also catches
/// what PDEATHSIG misses: it fires when the parent *thread* that forked
/// exits, and the kernel clears it when credentials change (call
/// [`ParentWatch::rearm`] after dropping privileges).
///
/// A double-forking launcher has a race of its own: the helper may exec
/// while the intermediate process is still exiting. A parent that goes
/// within [`LAUNCH_GRACE`] of start-up is taken for that intermediate: the
/// new parent is watched instead. The parent-death signal is
/// [`PARENT_DEATH_SIGNAL`], not SIGTERM, so the loop can tell the two apart.
#[derive(Debug, Clone, Copy)]
pub struct ParentWatch {
    parent: Pid,
    since: std::time::Instant,
}

/// How long after start-up a parent's exit is taken for a launcher's fork.
pub const LAUNCH_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The signal PR_SET_PDEATHSIG delivers (blocked, read from the signalfd).
pub const PARENT_DEATH_SIGNAL: Signal = Signal::SIGUSR2;

/// Arm `--exit-with-parent`: PR_SET_PDEATHSIG, then record the parent.
/// Call before blocking signals or anything slow.
pub fn exit_with_parent() -> Result<ParentWatch, String> {
    // Blocked from here on (the signalfd reads it later): a launcher's
    // intermediate that exits during start-up (connecting to D-Bus takes a
    // few round trips) must not kill airlock with the signal's default
    // action.
    let mut set = SigSet::empty();
    set.add(PARENT_DEATH_SIGNAL);
    let _ = set.thread_block();
    nix::sys::prctl::set_pdeathsig(PARENT_DEATH_SIGNAL)
        .map_err(|e| format!("--exit-with-parent: prctl(PR_SET_PDEATHSIG): {e}"))?;
    Ok(ParentWatch {
        parent: getppid(),
        since: std::time::Instant::now(),
    })
}

impl ParentWatch {
    /// The parent pid recorded at start-up.
    pub fn parent(&self) -> i32 {
        self.parent.as_raw()
    }

    /// True once airlock has been reparented since start-up: the parent
    /// died (poll this about once a second as a backstop for PDEATHSIG).
    /// A change within [`LAUNCH_GRACE`] only moves the watch to the new
    /// parent.
    pub fn parent_gone(&mut self) -> bool {
        let now = getppid();
        if now == self.parent {
            return false;
        }
        if self.since.elapsed() < LAUNCH_GRACE {
            // No re-arm: the parent-death signal stays set across
            // reparenting (prctl(2)), and prctl is a start-up syscall only.
            self.parent = now;
            return false;
        }
        true
    }

    /// Set PR_SET_PDEATHSIG again: the kernel clears it when the effective
    /// uid/gid change (`--runas`). If the parent already went meanwhile,
    /// [`Self::parent_gone`] says so.
    pub fn rearm(&self) -> Result<(), String> {
        nix::sys::prctl::set_pdeathsig(PARENT_DEATH_SIGNAL)
            .map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {e}"))
    }
}

/// Environment variable that makes airlock the [`Remover`] of its paths.
pub const REMOVER_ENV: &str = "AIRLOCK_REMOVER";

/// Removes the `--socket` and `--pid` files when airlock ends, from a small
/// process of its own, so that the sandbox keeps no right to remove
/// anything: a landlock rule for removal would cover every file in their
/// directories (the user's `$XDG_RUNTIME_DIR`, `/tmp`), and landlock cannot
/// name single files.
///
/// Spawned after the privilege drop and before the sandbox, it re-runs
/// airlock's executable with [`REMOVER_ENV`] and the absolute paths as
/// arguments, notes each file's inode, and waits for its stdin to reach
/// end-of-file: airlock closing it on exit, or the kernel when airlock dies
/// (even by SIGKILL). It then removes each path that still names the same
/// inode (not a successor's socket), closes its stdout, and exits. It reads
/// nothing airlock could steer: the paths are fixed when it starts.
#[derive(Debug)]
pub struct Remover {
    child: std::process::Child,
}

impl Remover {
    pub fn spawn(paths: &[PathBuf]) -> Result<Remover, String> {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        let child = Command::new("/proc/self/exe")
            .arg0("airlock-remover")
            .args(paths)
            .env(REMOVER_ENV, "1")
            .env_remove(DAEMON_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the file remover: {e}"))?;
        Ok(Remover { child })
    }
}

impl Drop for Remover {
    /// Ask for the removal and wait until it is done (its stdout closes),
    /// so that the files are gone when airlock's exit is seen.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if let Some(mut done) = self.child.stdout.take() {
            let _ = done.read(&mut [0u8; 1]);
        }
    }
}

/// The remover's side (airlock run with [`REMOVER_ENV`]): `paths` are its
/// arguments. Returns the exit status.
pub fn run_remover(paths: &[std::ffi::OsString]) -> i32 {
    use std::os::unix::fs::MetadataExt;
    // A terminal's ^C reaches the whole group: outlive airlock, not die with it.
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    let _ = set.thread_block();
    let files: Vec<(PathBuf, u64, u64)> = paths
        .iter()
        .filter_map(|p| {
            let m = std::fs::symlink_metadata(p).ok()?;
            Some((PathBuf::from(p), m.dev(), m.ino()))
        })
        .collect();
    let mut buf = [0u8; 64];
    let mut stdin = std::io::stdin();
    while !matches!(stdin.read(&mut buf), Ok(0) | Err(_)) {}
    for (path, dev, ino) in &files {
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if (m.dev(), m.ino()) == (*dev, *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
    EXIT_OK
}

/// Gives `path` to the `--runas` user, so that a VMM running as that user
/// can connect to the socket and the remover, running as that user, can
/// remove it from a sticky directory such as `/tmp`.
pub fn chown_to(path: &Path, ids: Option<(u32, u32)>) -> Result<(), String> {
    let Some((uid, gid)) = ids else {
        return Ok(());
    };
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| format!("{}: chown to {uid}:{gid}: {e}", path.display()))
}

/// `--pid FILE`: airlock's pid, written by the process that keeps running
/// (the daemon). The [`Remover`] deletes it.
#[derive(Debug)]
pub struct PidFile;

impl PidFile {
    /// Create or truncate FILE (close-on-exec, mode 0644) and write the
    /// current pid and a newline.
    pub fn create(path: &Path) -> Result<PidFile, String> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| format!("--pid {}: {e}", path.display()))?;
        writeln!(f, "{}", getpid().as_raw())
            .map_err(|e| format!("--pid {}: {e}", path.display()))?;
        Ok(PidFile)
    }
}

/// `--socket PATH`: a listening UNIX stream socket (close-on-exec, backlog 1:
/// one VMM at a time). A path that a live listener holds is refused; a stale
/// socket file left by a dead process is replaced; any other existing file
/// is refused. The [`Remover`] deletes it at exit.
pub fn listen_unix(path: &Path) -> Result<OwnedFd, String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(format!("--socket {shown}: in use by a running process")),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)
                    .map_err(|e| format!("--socket {shown}: removing stale socket: {e}"))?;
            }
            Err(e) => return Err(format!("--socket {shown}: {e}")),
        },
        Ok(_) => return Err(format!("--socket {shown}: exists and is not a socket")),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("--socket {shown}: {e}")),
    }
    let addr = UnixAddr::new(path).map_err(|e| format!("--socket {shown}: {e}"))?;
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    bind(fd.as_raw_fd(), &addr).map_err(|e| format!("--socket {shown}: bind: {e}"))?;
    let backlog = Backlog::new(1).map_err(|e| format!("listen: {e}"))?;
    listen(&fd, backlog).map_err(|e| format!("--socket {shown}: listen: {e}"))?;
    Ok(fd)
}

/// The QEMU options that connect a virtio-net device to `--socket PATH`
/// (QEMU >= 7.2). Commas in the path are doubled, as QEMU's option parser
/// wants.
pub fn qemu_netdev_line(path: &Path) -> String {
    let p = String::from_utf8_lossy(path.as_os_str().as_bytes()).replace(',', ",,");
    format!(
        "-device virtio-net-pci,netdev=net0 -netdev stream,id=net0,server=off,addr.type=unix,addr.path={p}"
    )
}

/// The QEMU options that connect a vhost-user virtio-net device to `path`
/// (guest memory must be a shared memfd for the backend to map it).
pub fn qemu_vhost_user_line(path: &Path) -> String {
    let p = String::from_utf8_lossy(path.as_os_str().as_bytes()).replace(',', ",,");
    format!(
        "-object memory-backend-memfd,id=mem,size=RAM,share=on -numa node,memdev=mem -chardev socket,id=chr0,path={p} -netdev vhost-user,id=net0,chardev=chr0 -device virtio-net-pci,netdev=net0"
    )
}

/// sd_notify: a datagram socket connected to `$NOTIFY_SOCKET` (an abstract
/// name when it starts with `@`, else a path). Connected at start-up, so
/// [`Notifier::ready`] needs no path once the sandbox is up.
#[derive(Debug)]
pub struct Notifier {
    sock: UnixDatagram,
}

impl Notifier {
    /// `Ok(None)` when `$NOTIFY_SOCKET` is unset or empty.
    pub fn from_env() -> Result<Option<Notifier>, String> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(v) if !v.is_empty() => Notifier::connect(&v).map(Some),
            _ => Ok(None),
        }
    }

    /// Connect to a `$NOTIFY_SOCKET`-style address.
    pub fn connect(addr: &std::ffi::OsStr) -> Result<Notifier, String> {
        let sock = UnixDatagram::unbound().map_err(|e| format!("NOTIFY_SOCKET: {e}"))?;
        let bytes = addr.as_bytes();
        let shown = addr.to_string_lossy();
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            let a = std::os::unix::net::SocketAddr::from_abstract_name(name)
                .map_err(|e| format!("NOTIFY_SOCKET {shown}: {e}"))?;
            sock.connect_addr(&a)
                .map_err(|e| format!("NOTIFY_SOCKET {shown}: {e}"))?;
        } else {
            sock.connect(Path::new(addr))
                .map_err(|e| format!("NOTIFY_SOCKET {shown}: {e}"))?;
        }
        sock.set_nonblocking(true)
            .map_err(|e| format!("NOTIFY_SOCKET: {e}"))?;
        Ok(Notifier { sock })
    }

    /// Send `READY=1` (the link is up).
    pub fn ready(&self) -> Result<(), String> {
        self.send("READY=1")
    }

    fn send(&self, msg: &str) -> Result<(), String> {
        self.sock
            .send(msg.as_bytes())
            .map(|_| ())
            .map_err(|e| format!("NOTIFY_SOCKET: {e}"))
    }
}

/// The daemon side of `--socket` without `--foreground`.
#[derive(Debug)]
pub struct Daemon {
    /// The pipe to the launcher, once stdout has moved to /dev/null.
    report: Option<File>,
}

impl Daemon {
    /// Daemonize. In the launching process this never returns: it re-runs
    /// airlock as a new session leader, waits until that child calls
    /// [`Daemon::ready`] and exits with [`EXIT_OK`] (or with the child's own
    /// status if it died first, [`EXIT_FAILURE`] if it hung for 60 s). In the
    /// child it returns the handle to report readiness with. Call early,
    /// before any socket opens: the child redoes everything from `main`.
    pub fn start() -> Result<Daemon, String> {
        if std::env::var_os(DAEMON_ENV).is_some() {
            std::env::remove_var(DAEMON_ENV);
            nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
            return Ok(Daemon { report: None });
        }
        let code = launch_and_wait()?;
        std::process::exit(code);
    }

    /// Leave the launcher's terminal: stdio onto /dev/null, cwd `/`,
    /// logging to syslog, keeping only the pipe that [`Daemon::ready`]
    /// writes to. Call before the sandbox (it opens /dev/null).
    pub fn detach(&mut self) -> Result<(), String> {
        if self.report.is_some() {
            return Ok(());
        }
        let pipe = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("daemon: {e}"))?;
        let null = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| format!("/dev/null: {e}"))?;
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
        let _ = nix::unistd::chdir("/");
        crate::logging::switch_to_syslog();
        self.report = Some(File::from(pipe));
        Ok(())
    }

    /// The child is ready (socket listening, pid file written, sandbox up):
    /// one byte tells the launcher it may return. Idempotent.
    pub fn ready(&mut self) {
        if let Some(mut p) = self.report.take() {
            let _ = p.write_all(b"R");
        }
    }
}

fn cstring(s: &std::ffi::OsStr) -> Result<CString, String> {
    CString::new(s.as_bytes()).map_err(|_| "argument contains a NUL byte".to_string())
}

/// Re-run this executable as the daemon child; the exit status the launcher
/// should end with.
fn launch_and_wait() -> Result<i32, String> {
    use nix::spawn::{posix_spawn, PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
    let (rd, wr) = pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| cstring(&a))
        .collect::<Result<_, _>>()?;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != DAEMON_ENV)
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            cstring(&kv)
        })
        .collect::<Result<_, _>>()?;
    env.push(CString::new(format!("{DAEMON_ENV}=1")).expect("no NUL"));

    let spawn_err = |e: Errno| format!("daemonize: posix_spawn: {e}");
    let mut actions = PosixSpawnFileActions::init().map_err(spawn_err)?;
    let null = File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    actions.add_dup2(null.as_raw_fd(), 0).map_err(spawn_err)?;
    actions.add_dup2(wr.as_raw_fd(), 1).map_err(spawn_err)?;
    let mut attr = PosixSpawnAttr::init().map_err(spawn_err)?;
    attr.set_sigmask(&SigSet::empty()).map_err(spawn_err)?;
    attr.set_flags(PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK)
        .map_err(spawn_err)?;
    let child = posix_spawn(Path::new("/proc/self/exe"), &actions, &attr, &args, &env)
        .map_err(spawn_err)?;
    drop(wr);

    let mut fds = [PollFd::new(rd.as_fd(), PollFlags::POLLIN)];
    let waited = loop {
        match poll(&mut fds, PollTimeout::from(60_000u16)) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    if matches!(waited, Ok(0)) {
        let _ = kill(child, Signal::SIGKILL);
        let _ = waitpid(child, None);
        return Err("daemonize: the daemon did not become ready within 60 s".into());
    }
    let mut byte = [0u8; 1];
    let n = File::from(rd).read(&mut byte).unwrap_or(0);
    if n == 1 {
        // The daemon lives on, reparented to init once we exit.
        return Ok(EXIT_OK);
    }
    // The child closed the pipe without reporting: it failed and has said
    // why on our stderr. Pass its status on.
    Ok(match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, code)) if code != 0 => code,
        _ => EXIT_FAILURE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn tmp(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("airlock-lc-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    #[test]
    fn exit_codes() {
        assert_eq!((EXIT_OK, EXIT_FAILURE, EXIT_USAGE), (0, 1, 2));
    }

    #[test]
    fn std_fds_are_open() {
        ensure_std_fds().unwrap();
        for fd in 0..3 {
            assert!(std::fs::metadata(format!("/proc/self/fd/{fd}")).is_ok());
        }
    }

    #[test]
    fn parent_watch_records_parent() {
        let mut w = exit_with_parent().unwrap();
        assert_eq!(w.parent(), getppid().as_raw());
        assert!(!w.parent_gone());
        w.rearm().unwrap();
        // Leave no PDEATHSIG behind on the test harness.
        nix::sys::prctl::set_pdeathsig(None).unwrap();
    }

    #[test]
    fn listen_refuses_live_replaces_stale() {
        let p = tmp("sock");
        let live = UnixListener::bind(&p).unwrap();
        let e = listen_unix(&p).unwrap_err();
        assert!(e.contains("in use"), "{e}");
        drop(live); // the file stays: now stale
        assert!(p.exists());
        let fd = listen_unix(&p).unwrap();
        let l = UnixListener::from(fd);
        let _c = UnixStream::connect(&p).unwrap();
        let (_s, _) = l.accept().unwrap();
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, "x").unwrap();
        let e = listen_unix(&p).unwrap_err();
        assert!(e.contains("not a socket"), "{e}");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn listen_is_cloexec_and_backlog_one() {
        let p = tmp("sock2");
        let fd = listen_unix(&p).unwrap();
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        // Backlog 1: the kernel queues backlog+1 connections, then refuses
        // (non-blocking connect gets EAGAIN). Count how many fit.
        let mut fit = 0;
        let mut keep = Vec::new();
        for _ in 0..8 {
            let s = socket(
                AddressFamily::Unix,
                SockType::Stream,
                SockFlag::SOCK_NONBLOCK,
                None,
            )
            .unwrap();
            let a = UnixAddr::new(&p).unwrap();
            if nix::sys::socket::connect(s.as_raw_fd(), &a).is_ok() {
                fit += 1;
                keep.push(s);
            }
        }
        assert_eq!(fit, 2, "backlog 1 queues two connections");
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn netdev_line_escapes_commas() {
        assert_eq!(
            qemu_netdev_line(Path::new("/run/a,b.sock")),
            "-device virtio-net-pci,netdev=net0 -netdev stream,id=net0,server=off,addr.type=unix,addr.path=/run/a,,b.sock"
        );
    }

    #[test]
    fn pid_file_written() {
        let p = tmp("pid");
        PidFile::create(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn notify_path_and_abstract() {
        let p = tmp("notify");
        let server = UnixDatagram::bind(&p).unwrap();
        let n = Notifier::connect(p.as_os_str()).unwrap();
        n.ready().unwrap();
        let mut buf = [0u8; 64];
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
        std::fs::remove_file(&p).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("airlock-test-notify-{}", std::process::id());
        let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&a).unwrap();
        let n = Notifier::connect(std::ffi::OsStr::new(&format!("@{name}"))).unwrap();
        n.ready().unwrap();
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"READY=1");
        assert!(Notifier::connect(std::ffi::OsStr::new("/nonexistent/notify")).is_err());
    }
}
