//! Child processes: short commands with a deadline, and long-running
//! daemons that are stopped and reaped when dropped.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What a finished (or timed-out) command left behind.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `None` if the command was killed at its deadline.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// One text for failure messages.
    pub fn describe(&self) -> String {
        let st = match self.status {
            Some(s) => format!("{s}"),
            None => "killed at its deadline".to_string(),
        };
        format!(
            "{st}\n--- stdout\n{}--- stderr\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Run `cmd` to completion, killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Outcome {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Outcome {
                status: None,
                stdout: String::new(),
                stderr: format!("cannot spawn {cmd:?}: {e}"),
            }
        }
    };
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let status = wait_deadline(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let join = |h: Option<thread::JoinHandle<String>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Outcome {
        status,
        stdout: join(out),
        stderr: join(err),
    }
}

/// Run `argv` (program first) with [`run`].
pub fn run_argv(argv: &[&str], timeout: Duration) -> Outcome {
    run(Command::new(argv[0]).args(&argv[1..]), timeout)
}

/// Run `argv` and panic with everything it printed unless it succeeds.
pub fn must(argv: &[&str]) -> String {
    let o = run_argv(argv, Duration::from_secs(20));
    if !o.success() {
        panic!("`{}` failed: {}", argv.join(" "), o.describe());
    }
    o.stdout
}

fn drain<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        String::from_utf8_lossy(&v).into_owned()
    })
}

/// Wait for `child` until `timeout`; `None` if it is still running.
pub fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let end = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => {}
            Err(_) => return None,
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A long-running child whose stdout and stderr go to a log file. Dropping
/// it stops it (SIGTERM, then SIGKILL) and reaps it.
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
    report_on_panic: bool,
}

impl Daemon {
    /// Spawn `cmd` with its output in `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Daemon {
        let f = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let f2 = f.try_clone().expect("dup log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(f))
            .stderr(Stdio::from(f2));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        Daemon {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            exited: None,
            report_on_panic: true,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether Drop on a panicking thread prints [`Daemon::diagnose`]
    /// (default yes).
    pub fn set_report_on_panic(&mut self, on: bool) {
        self.report_on_panic = on;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Wait up to `timeout` for it to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = wait_deadline(&mut self.child, timeout);
        }
        self.exited
    }

    /// SIGTERM, a grace period, then SIGKILL; returns how it ended.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.is_running() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if self.wait_exit(grace).is_none() {
                let _ = self.child.kill();
                self.exited = self.child.wait().ok();
            }
        }
        self.exited
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_else(|e| format!("(no log: {e})"))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Running or exited, and the log: for failure messages.
    pub fn diagnose(&mut self) -> String {
        let state = match self.exit_status() {
            None => "still running".to_string(),
            Some(s) => format!("EXITED ({s})"),
        };
        format!(
            "{} [pid {}] {state}; its log ({}):\n{}",
            self.name,
            self.pid(),
            self.log.display(),
            self.log()
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop(Duration::from_millis(500));
        if self.report_on_panic && thread::panicking() {
            eprintln!("{}", self.diagnose());
        }
    }
}
