//! A networking helper (airlock, or passt for the harness self-check)
//! running in the host namespace, joined to the guest by one of the links a
//! VMM would use.

use super::process::Daemon;
use super::relay::{Framing, PacketSocket, Relay};
use super::topo::Topology;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// How the helper reaches the guest's tap0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// `--netns /run/netns/<guest>`: the helper opens tap0 itself.
    Netns,
    /// `--fd N`, SOCK_DGRAM socketpair through the relay.
    Dgram,
    /// `--fd N`, SOCK_STREAM socketpair (length-prefixed) through the relay.
    Stream,
}

impl LinkMode {
    pub const ALL: [LinkMode; 3] = [LinkMode::Netns, LinkMode::Dgram, LinkMode::Stream];

    fn framing(self) -> Option<Framing> {
        match self {
            LinkMode::Netns => None,
            LinkMode::Dgram => Some(Framing::Dgram),
            LinkMode::Stream => Some(Framing::Stream),
        }
    }

    /// Frame sizes that can reach the helper over this link as frames:
    /// a tap carries 14..=65535 bytes; STREAM lengths outside 14..=65535 are
    /// framing errors, not frames; a datagram can be any size.
    pub fn carries(self, len: usize) -> bool {
        match self {
            LinkMode::Dgram => true,
            LinkMode::Netns | LinkMode::Stream => (14..=65535).contains(&len),
        }
    }
}

/// A running helper. Dropping it stops the process (SIGTERM, then SIGKILL)
/// and the relay; on a panicking thread its log is printed.
pub struct Helper {
    mode: LinkMode,
    relay: Option<Relay>,
    injector: Option<PacketSocket>,
    daemon: Daemon,
}

impl Helper {
    /// Start airlock in the host namespace of `topo` over `mode`, with
    /// `args` after the link option.
    pub fn airlock(topo: &Topology, mode: LinkMode, args: &[&str]) -> Helper {
        let netns = topo.guest_netns_path().to_string_lossy().into_owned();
        let mut argv = vec![super::AIRLOCK];
        match mode {
            LinkMode::Netns => argv.extend(["--netns", netns.as_str()]),
            LinkMode::Dgram | LinkMode::Stream => argv.extend(["--fd", "{fd}"]),
        }
        argv.extend_from_slice(args);
        Helper::spawn(topo, "airlock", mode, &argv)
    }

    /// Start `argv` (program first) in the host namespace of `topo`. For
    /// the `--fd` modes, `{fd}` in any argument becomes the number of the
    /// inherited socket; for [`LinkMode::Netns`] the helper must open tap0
    /// itself.
    pub fn spawn(topo: &Topology, name: &str, mode: LinkMode, argv: &[&str]) -> Helper {
        let log = topo.dir().join(format!("{name}.log"));
        let (relay, theirs) = match mode.framing() {
            None => (None, None),
            Some(f) => {
                let (r, fd) = Relay::start(topo.guest_ns(), f)
                    .unwrap_or_else(|e| panic!("relay on {}/tap0: {e}", topo.guest_ns()));
                (Some(r), Some(fd))
            }
        };
        let fd_num = theirs.as_ref().map(|f| f.as_raw_fd());
        let args: Vec<String> = argv
            .iter()
            .map(|a| match fd_num {
                Some(n) => a.replace("{fd}", &n.to_string()),
                None => a.to_string(),
            })
            .collect();
        let argv_ref: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = topo.host_cmd(&argv_ref);
        if let Some(n) = fd_num {
            // SAFETY: the closure only calls fcntl(2), which is
            // async-signal-safe, on a descriptor number that stays open in
            // the parent until after spawn() returns.
            unsafe {
                cmd.pre_exec(move || inherit(n));
            }
        }
        let mut daemon = Daemon::spawn(name, &mut cmd, &log);
        daemon.set_report_on_panic(false);
        drop::<Option<OwnedFd>>(theirs);
        let injector = match mode {
            LinkMode::Netns => Some(
                PacketSocket::open(topo.guest_ns(), "tap0", false)
                    .unwrap_or_else(|e| panic!("packet socket on tap0: {e}")),
            ),
            _ => None,
        };
        Helper {
            mode,
            relay,
            injector,
            daemon,
        }
    }

    pub fn mode(&self) -> LinkMode {
        self.mode
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The relay playing the VMM (`None` for [`LinkMode::Netns`]).
    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref()
    }

    /// Hand `frame` to the helper as if the guest had sent it: over the
    /// relay's socket for `--fd`, from a packet socket on tap0 for
    /// `--netns`. Sizes the link cannot carry ([`LinkMode::carries`]) are an
    /// error here, not a silent skip.
    pub fn inject(&self, frame: &[u8]) -> io::Result<()> {
        match (&self.relay, &self.injector) {
            (Some(r), _) => r.inject(frame),
            (None, Some(p)) => {
                if !self.mode.carries(frame.len()) {
                    return Err(io::Error::other(format!(
                        "a tap cannot carry a {}-byte frame",
                        frame.len()
                    )));
                }
                p.send(frame)
            }
            (None, None) => Err(io::Error::other("no way to inject")),
        }
    }

    /// Raw bytes on the `--fd` socket with no framing added (forged STREAM
    /// headers). Errors for [`LinkMode::Netns`].
    pub fn inject_raw(&self, bytes: &[u8]) -> io::Result<()> {
        match &self.relay {
            Some(r) => r.inject_raw(bytes),
            None => Err(io::Error::other("--netns has no socket to write to")),
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.daemon.is_running()
    }

    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.daemon.exit_status()
    }

    /// Wait up to `timeout` for the helper to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.daemon.wait_exit(timeout)
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.daemon.stop(grace)
    }

    /// Everything the helper printed so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// State, log and relay counters, for failure messages.
    pub fn diagnose(&mut self) -> String {
        let mut s = self.daemon.diagnose();
        if let Some(r) = &self.relay {
            s.push('\n');
            s.push_str(&r.describe());
        }
        s
    }

    /// A field of the helper's /proc/PID/status, in kB.
    pub fn status_kb(&self, field: &str) -> u64 {
        let pid = self.pid();
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {field} for pid {pid}: {s}"))
    }

    /// How many descriptors the helper holds.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Stop the helper (SIGTERM), which must exit cleanly; its log, where
    /// `--debug` left its counters (read them with [`counter`]).
    pub fn stop_counters(&mut self) -> String {
        let st = self.stop(Duration::from_secs(5));
        assert!(
            st.is_some_and(|s| s.success()),
            "the helper did not exit cleanly: {}",
            self.diagnose()
        );
        self.log()
    }

    /// Wait until the guest's tap0 has carrier (the helper attached to it;
    /// immediate for the relay modes). Errors, with the diagnosis, if the
    /// helper exits or the deadline passes first.
    pub fn wait_ready(&mut self, topo: &Topology, timeout: Duration) -> Result<(), String> {
        let end = Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return Err(format!("the helper exited early:\n{}", self.diagnose()));
            }
            if topo.guest().carrier() {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(format!(
                    "tap0 has no carrier after {timeout:?}:\n{}",
                    self.diagnose()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        // Stop the process first so the relay's socket sees it go.
        self.daemon.stop(Duration::from_millis(500));
        if std::thread::panicking() {
            eprintln!("at teardown: {}", self.diagnose());
        }
    }
}

/// A counter from airlock's `--debug` report in `log` ("name: value"
/// lines, maybe behind a log prefix); the last report wins, 0 if absent
/// (only non-zero counters are printed).
pub fn counter(log: &str, name: &str) -> u64 {
    log.lines()
        .rev()
        .filter_map(|l| l.rsplit_once(": "))
        .filter(|(k, _)| *k == name || k.strip_suffix(name).is_some_and(|p| p.ends_with(": ")))
        .find_map(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// In the child between fork and exec: let descriptor `n` survive exec.
fn inherit(n: i32) -> io::Result<()> {
    // SAFETY: fcntl on an integer descriptor has no memory-safety
    // requirements; errors are reported through the return value.
    let flags = unsafe { libc::fcntl(n, libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(n, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
