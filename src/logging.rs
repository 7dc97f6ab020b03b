//! Logging: stderr in the foreground, syslog when daemonized, or a file.
//!
//! A write must never kill or stall airlock. libvirt hands the helper a
//! stderr pipe whose reader it closes after start-up, and a foreground
//! terminal can be flow-controlled. So: SIGPIPE is blocked
//! ([`crate::lifecycle::ignore_sigpipe`]), stderr is written through a private,
//! non-blocking open file description (reopened from `/proc/self/fd/2`, so the
//! O_NONBLOCK flag never leaks into the terminal or pipe the parent shares),
//! a line that would block is dropped, and the first failure (EPIPE, ENXIO,
//! EIO...) moves logging to syslog for good. Everything that needs a path
//! (the syslog socket, the log file, the stderr reopen) is opened in [`init`],
//! before the sandbox closes the filesystem.
//!
//! `--log-size` bounds a `--log-file` as passt does: the file is rotated in
//! place, never renamed (the sandbox could not create a new one). When the
//! next line would pass the bound, the oldest lines are dropped by moving
//! the newest ~70% to the start and truncating, so the file always ends
//! with the latest lines and never grows past the size.
//!
//! #syscalls: write sendto getpid
//! #syscalls: pread64 pwrite64 ftruncate
//! #syscalls-startup: socket connect openat close fcntl fstat|statx|newfstatat
use crate::cli::Options;
use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::sys::socket::{send, MsgFlags};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest line written: keeps a pipe write atomic (PIPE_BUF) and a syslog
/// datagram small. Longer messages are cut.
pub const MAX_LINE: usize = 1024;

/// syslog facility LOG_DAEMON, shifted as RFC 3164 wants it in `<PRI>`.
const FACILITY_DAEMON: u8 = 3 << 3;

/// The level the options ask for: `-q` error, default info, `-d` debug,
/// `--trace` trace (the most verbose option wins).
pub fn level_from(opts: &Options) -> LevelFilter {
    if opts.trace {
        LevelFilter::Trace
    } else if opts.debug {
        LevelFilter::Debug
    } else if opts.quiet {
        LevelFilter::Error
    } else {
        LevelFilter::Info
    }
}

/// Where a line goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Stderr,
    Syslog,
    File,
}

/// How stderr is written without blocking.
enum StderrWay {
    /// A private non-blocking open file description (pipe, tty, file).
    Reopened(File),
    /// stderr is a socket: `send(MSG_DONTWAIT | MSG_NOSIGNAL)` on fd 2.
    Socket,
    /// No way to avoid blocking was found: plain writes to fd 2.
    Plain,
}

struct Sinks {
    stderr: Option<StderrWay>,
    stderr_fd: i32,
    syslog: Option<UnixDatagram>,
    file: Option<LogFile>,
    line: String,
}

/// Smallest `--log-size`: a few of the longest lines must fit after a
/// rotation.
pub const MIN_LOG_SIZE: u64 = 4 * MAX_LINE as u64;

/// Share of `--log-size` kept by a rotation (passt cuts 30%).
const KEEP_PERCENT: u64 = 70;

/// `--log-file`, appended to, and with `--log-size` rotated in place.
struct LogFile {
    file: File,
    /// `--log-size`, or `None` for an unbounded, O_APPEND file.
    limit: Option<u64>,
    /// Where the next line goes (the file's length) when `limit` is set.
    end: u64,
    /// The copy buffer for a rotation, allocated once.
    buf: Vec<u8>,
}

impl LogFile {
    fn open(path: &Path, limit: Option<u64>) -> Result<LogFile, String> {
        let shown = path.display();
        if let Some(l) = limit {
            if l < MIN_LOG_SIZE {
                return Err(format!("--log-size {l}: at least {MIN_LOG_SIZE} bytes"));
            }
        }
        let mut o = OpenOptions::new();
        o.create(true)
            .mode(0o640)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY);
        // O_APPEND would make pwrite ignore its offset: a rotated file is
        // written at the offset kept here instead.
        if limit.is_some() {
            o.read(true).write(true);
        } else {
            o.append(true);
        }
        let file = o
            .open(path)
            .map_err(|e| format!("--log-file {shown}: {e}"))?;
        let end = file
            .metadata()
            .map_err(|e| format!("--log-file {shown}: {e}"))?
            .len();
        Ok(LogFile {
            file,
            limit,
            end,
            buf: if limit.is_some() {
                vec![0; 4096]
            } else {
                Vec::new()
            },
        })
    }

    /// Write one line, rotating first if it would pass the limit.
    fn write_line(&mut self, line: &[u8]) {
        let Some(limit) = self.limit else {
            let _ = self.file.write_all(line);
            return;
        };
        if self.end + line.len() as u64 > limit && self.rotate(limit, line.len() as u64).is_err() {
            // A file that cannot be rotated is emptied rather than grown.
            let _ = self.file.set_len(0);
            self.end = 0;
        }
        if self.file.write_all_at(line, self.end).is_ok() {
            self.end += line.len() as u64;
        }
    }

    /// Keep the newest lines that fit in KEEP_PERCENT of `limit` (minus room
    /// for the next line), starting on a line boundary, at the start of the
    /// file.
    fn rotate(&mut self, limit: u64, next: u64) -> std::io::Result<()> {
        let keep = (limit * KEEP_PERCENT / 100)
            .saturating_sub(next)
            .min(self.end);
        let mut from = self.end - keep;
        // Skip the partial line at the cut.
        'find: while from < self.end {
            let n = self.file.read_at(&mut self.buf, from)?;
            if n == 0 {
                break;
            }
            if let Some(i) = self.buf[..n].iter().position(|&b| b == b'\n') {
                from += i as u64 + 1;
                break 'find;
            }
            from += n as u64;
        }
        let mut to = 0u64;
        while from < self.end {
            let want = ((self.end - from) as usize).min(self.buf.len());
            let n = self.file.read_at(&mut self.buf[..want], from)?;
            if n == 0 {
                break;
            }
            self.file.write_all_at(&self.buf[..n], to)?;
            from += n as u64;
            to += n as u64;
        }
        self.file.set_len(to)?;
        self.end = to;
        Ok(())
    }
}

/// The `log::Log` implementation. One per process, installed by [`init`].
pub struct Logger {
    level: LevelFilter,
    /// Set once stderr failed or the process daemonized.
    use_syslog: AtomicBool,
    sinks: Mutex<Sinks>,
}

/// Open syslog's `/dev/log` (datagram) now, so it still works once the
/// sandbox forbids new paths. `None` where no syslog daemon listens.
fn open_syslog(path: &Path) -> Option<UnixDatagram> {
    let s = UnixDatagram::unbound().ok()?;
    s.connect(path).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// A private, non-blocking open file description for `fd`.
fn stderr_way(fd: BorrowedFd<'_>) -> Option<StderrWay> {
    let raw = fd.as_raw_fd();
    let meta = File::from(fd.try_clone_to_owned().ok()?).metadata().ok();
    if meta.as_ref().is_some_and(|m| m.file_type().is_socket()) {
        return Some(StderrWay::Socket);
    }
    let reopened = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{raw}"));
    match reopened {
        Ok(f) => Some(StderrWay::Reopened(f)),
        // A pipe whose reader is gone cannot be opened for writing
        // without blocking: stderr is already dead.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => None,
        Err(_) => Some(StderrWay::Plain),
    }
}

impl Logger {
    /// A logger writing to `stderr` (normally fd 2), to `log_file` if given,
    /// or to the syslog socket at `syslog_path` when `daemon` is set or once
    /// stderr has failed.
    pub fn new(
        level: LevelFilter,
        daemon: bool,
        stderr: BorrowedFd<'_>,
        log_file: Option<&Path>,
        syslog_path: &Path,
    ) -> Result<Logger, String> {
        Logger::with_size(level, daemon, stderr, log_file, None, syslog_path)
    }

    /// [`Logger::new`], with `--log-size` bounding the log file.
    pub fn with_size(
        level: LevelFilter,
        daemon: bool,
        stderr: BorrowedFd<'_>,
        log_file: Option<&Path>,
        log_size: Option<u64>,
        syslog_path: &Path,
    ) -> Result<Logger, String> {
        if log_size.is_some() && log_file.is_none() {
            return Err("--log-size needs --log-file".into());
        }
        let file = match log_file {
            Some(p) => Some(LogFile::open(p, log_size)?),
            None => None,
        };
        let stderr_way = if daemon || file.is_some() {
            None
        } else {
            stderr_way(stderr)
        };
        let use_syslog = file.is_none() && (daemon || stderr_way.is_none());
        Ok(Logger {
            level,
            use_syslog: AtomicBool::new(use_syslog),
            sinks: Mutex::new(Sinks {
                stderr: stderr_way,
                stderr_fd: stderr.as_raw_fd(),
                syslog: if file.is_none() {
                    open_syslog(syslog_path)
                } else {
                    None
                },
                file,
                line: String::with_capacity(MAX_LINE + 64),
            }),
        })
    }

    /// Where the next line goes.
    pub fn target(&self) -> Target {
        let s = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        if s.file.is_some() {
            Target::File
        } else if self.use_syslog.load(Ordering::Relaxed) {
            Target::Syslog
        } else {
            Target::Stderr
        }
    }

    /// Send every later line to syslog (the process daemonized, or stderr
    /// went away). A `--log-file` stays in use.
    pub fn switch_to_syslog(&self) {
        self.use_syslog.store(true, Ordering::Relaxed);
        let mut s = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        s.stderr = None;
    }

    /// Format and write one line. Never blocks, never fails loudly.
    pub fn write_line(&self, level: Level, args: std::fmt::Arguments<'_>) {
        let mut guard = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;
        let syslog = self.use_syslog.load(Ordering::Relaxed);
        s.line.clear();
        let pid = std::process::id();
        let tag = match level {
            Level::Error => "error: ",
            Level::Warn => "warning: ",
            Level::Info => "",
            Level::Debug => "debug: ",
            Level::Trace => "trace: ",
        };
        if s.file.is_some() {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let _ = write!(
                s.line,
                "{}.{:03} airlock[{pid}]: {tag}",
                now.as_secs(),
                now.subsec_millis()
            );
        } else if syslog {
            let sev = match level {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            let _ = write!(s.line, "<{}>airlock[{pid}]: {tag}", FACILITY_DAEMON | sev);
        } else {
            let _ = write!(s.line, "airlock: {tag}");
        }
        let _ = s.line.write_fmt(args);
        truncate_at_char(&mut s.line, MAX_LINE);
        // syslog takes the datagram as the line; the others want '\n'.
        if let Some(f) = s.file.as_mut() {
            s.line.push('\n');
            f.write_line(s.line.as_bytes());
            return;
        }
        if syslog {
            send_syslog(s.syslog.as_ref(), &s.line);
            return;
        }
        s.line.push('\n');
        let ok = match s.stderr.as_mut() {
            Some(StderrWay::Reopened(f)) => match f.write(s.line.as_bytes()) {
                Ok(_) => true,
                // Full pipe or flow-controlled tty: drop this line only.
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                Err(e) if e.kind() == ErrorKind::Interrupted => true,
                Err(_) => false,
            },
            Some(StderrWay::Socket) => match send(
                s.stderr_fd,
                s.line.as_bytes(),
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(_) => true,
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => true,
                Err(_) => false,
            },
            Some(StderrWay::Plain) => std::io::stderr().write_all(s.line.as_bytes()).is_ok(),
            None => false,
        };
        if !ok {
            // stderr is gone (libvirt closed the pipe): syslog from now on,
            // starting with this line.
            s.stderr = None;
            self.use_syslog.store(true, Ordering::Relaxed);
            s.line.pop();
            let body = s.line.split_once(": ").map_or("", |(_, b)| b).to_owned();
            s.line.clear();
            let sev = match level {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            let _ = write!(s.line, "<{}>airlock[{pid}]: {body}", FACILITY_DAEMON | sev);
            send_syslog(s.syslog.as_ref(), &s.line);
        }
    }
}

fn send_syslog(sock: Option<&UnixDatagram>, line: &str) {
    if let Some(sock) = sock {
        // EAGAIN (syslog daemon behind) or ECONNREFUSED (restarted): drop.
        let _ = sock.send(line.as_bytes());
    }
}

fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            self.write_line(record.level(), *record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: std::sync::OnceLock<&'static Logger> = std::sync::OnceLock::new();

/// Install the process logger: stderr when `daemon` is false, syslog when
/// true, or `--log-file` (opened here, before the sandbox, O_APPEND|O_CLOEXEC,
/// or read-write and rotated in place under `--log-size`).
/// Level from `-q`/`-d`/`--trace`. Call once, early, after
/// [`crate::lifecycle::ensure_std_fds`].
pub fn init(opts: &Options, daemon: bool) -> Result<(), String> {
    let stderr = std::io::stderr();
    let logger = Logger::with_size(
        level_from(opts),
        daemon,
        stderr.as_fd(),
        opts.log_file.as_deref(),
        opts.log_size,
        Path::new("/dev/log"),
    )?;
    let logger: &'static Logger = Box::leak(Box::new(logger));
    log::set_logger(logger).map_err(|e| format!("logging: {e}"))?;
    log::set_max_level(logger.level);
    let _ = LOGGER.set(logger);
    Ok(())
}

/// Move the process logger to syslog (after daemonizing, when stderr is
/// redirected to /dev/null). No effect before [`init`] or with `--log-file`.
pub fn switch_to_syslog() {
    if let Some(l) = LOGGER.get() {
        l.switch_to_syslog();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::unistd::pipe;
    use std::io::Read;

    /// As `lifecycle::ignore_sigpipe` does for airlock (logging must not
    /// depend on lifecycle, which uses it).
    fn block_sigpipe() {
        let mut set = nix::sys::signal::SigSet::empty();
        set.add(nix::sys::signal::Signal::SIGPIPE);
        set.thread_block().unwrap();
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("airlock-log-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        d
    }

    #[test]
    fn levels_follow_options() {
        let mut o = Options::default();
        assert_eq!(level_from(&o), LevelFilter::Info);
        o.quiet = true;
        assert_eq!(level_from(&o), LevelFilter::Error);
        o.debug = true;
        assert_eq!(level_from(&o), LevelFilter::Debug);
        o.trace = true;
        assert_eq!(level_from(&o), LevelFilter::Trace);
    }

    #[test]
    fn stderr_pipe_gets_lines() {
        let (r, w) = pipe().unwrap();
        let l = Logger::new(LevelFilter::Info, false, w.as_fd(), None, &tmp("none")).unwrap();
        assert_eq!(l.target(), Target::Stderr);
        l.write_line(Level::Warn, format_args!("link {} up", 1));
        drop(w);
        let mut f = File::from(r);
        let mut buf = [0u8; 256];
        let n = f.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"airlock: warning: link 1 up\n");
    }

    #[test]
    fn full_pipe_drops_instead_of_blocking() {
        let (r, w) = pipe().unwrap();
        let l = Logger::new(LevelFilter::Info, false, w.as_fd(), None, &tmp("none")).unwrap();
        let long = "x".repeat(900);
        // 64 KiB pipe: 200 lines of ~920 bytes overflow it; must not block.
        for _ in 0..200 {
            l.write_line(Level::Info, format_args!("{long}"));
        }
        assert_eq!(l.target(), Target::Stderr, "a full pipe is not a dead one");
        drop(r);
    }

    #[test]
    fn closed_reader_moves_to_syslog() {
        let sock_path = tmp("syslog");
        let server = UnixDatagram::bind(&sock_path).unwrap();
        server.set_nonblocking(true).unwrap();
        let (r, w) = pipe().unwrap();
        let l = Logger::new(LevelFilter::Info, false, w.as_fd(), None, &sock_path).unwrap();
        drop(r);
        // SIGPIPE must not kill the test process: block it like airlock does.
        block_sigpipe();
        l.write_line(Level::Error, format_args!("lost {}", "peer"));
        assert_eq!(l.target(), Target::Syslog);
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        let want = format!("<27>airlock[{}]: error: lost peer", std::process::id());
        assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), want);
        l.write_line(Level::Debug, format_args!("next"));
        let n = server.recv(&mut buf).unwrap();
        let want = format!("<31>airlock[{}]: debug: next", std::process::id());
        assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), want);
        let _ = std::fs::remove_file(&sock_path);
    }

    #[test]
    fn reader_gone_before_start_means_syslog() {
        let (r, w) = pipe().unwrap();
        drop(r);
        let l = Logger::new(LevelFilter::Info, false, w.as_fd(), None, &tmp("none")).unwrap();
        block_sigpipe();
        // Reopening an anonymous pipe without a reader may succeed (the
        // first write then fails with EPIPE) or fail with ENXIO: either way
        // the first line moves logging to syslog, and without a syslog
        // daemon the line is dropped, silently.
        l.write_line(Level::Info, format_args!("no syslog: dropped, no panic"));
        assert_eq!(l.target(), Target::Syslog);
    }

    #[test]
    fn daemon_uses_syslog_and_file_wins() {
        let (_r, w) = pipe().unwrap();
        let l = Logger::new(LevelFilter::Info, true, w.as_fd(), None, &tmp("none")).unwrap();
        assert_eq!(l.target(), Target::Syslog);
        let p = tmp("file");
        std::fs::write(&p, "old\n").unwrap();
        let l = Logger::new(LevelFilter::Info, true, w.as_fd(), Some(&p), &tmp("none")).unwrap();
        assert_eq!(l.target(), Target::File);
        l.write_line(Level::Info, format_args!("{}", "é".repeat(MAX_LINE)));
        let text = std::fs::read_to_string(&p).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("old"), "O_APPEND keeps what was there");
        let line = lines.next().unwrap();
        assert!(line.contains(&format!(" airlock[{}]: é", std::process::id())));
        assert!(line.len() <= MAX_LINE, "long lines are cut");
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn log_size_rotates_in_place() {
        let (_r, w) = pipe().unwrap();
        let p = tmp("rotate");
        std::fs::write(&p, "x".repeat(5000) + "\n").unwrap();
        let size = MIN_LOG_SIZE;
        let l = Logger::with_size(
            LevelFilter::Info,
            false,
            w.as_fd(),
            Some(&p),
            Some(size),
            &tmp("n"),
        )
        .unwrap();
        let ino = std::fs::metadata(&p).unwrap().ino();
        for i in 0..2000 {
            l.write_line(
                Level::Info,
                format_args!("line {i:05} {}", "y".repeat(i % 200)),
            );
            let len = std::fs::metadata(&p).unwrap().len();
            assert!(len <= size, "{len} > {size} after line {i}");
        }
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().ino(),
            ino,
            "rotated in place"
        );
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.ends_with(&format!("line 01999 {}\n", "y".repeat(1999 % 200))));
        assert!(
            text.len() as u64 > size / 2,
            "a rotation keeps the newest lines"
        );
        // Every line is whole: rotation cuts on line boundaries.
        for line in text.lines() {
            assert!(
                line.contains(" airlock[") && line.contains(": line "),
                "{line:?}"
            );
        }
        assert!(!text.contains("xxx"), "the old content went first");
        assert!(Logger::with_size(
            LevelFilter::Info,
            false,
            w.as_fd(),
            Some(&p),
            Some(100),
            &tmp("n")
        )
        .is_err());
        assert!(Logger::with_size(
            LevelFilter::Info,
            false,
            w.as_fd(),
            None,
            Some(size),
            &tmp("n")
        )
        .is_err());
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn enabled_respects_level() {
        let (_r, w) = pipe().unwrap();
        let l = Logger::new(LevelFilter::Error, false, w.as_fd(), None, &tmp("none")).unwrap();
        let m = Metadata::builder().level(Level::Info).build();
        assert!(!l.enabled(&m));
        let m = Metadata::builder().level(Level::Error).build();
        assert!(l.enabled(&m));
    }
}
