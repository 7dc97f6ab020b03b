//! `--tftp DIR`: a read-only TFTP server (RFC 1350, options per RFC
//! 2347-2349: blksize, timeout, tsize) at the virtual host address, UDP 69,
//! as libslirp's `tftp=` is. What PXE firmware (QEMU's iPXE ROM) boots from,
//! with DHCP's boot file and next server (`--dhcp-bootfile`, `--dhcp-nbp`).
//!
//! Bounded: at most [`MAX_TRANSFERS`] at a time, each a fixed-size record
//! and one open file; a block is read from the file straight into the
//! frame for the guest (no buffer per transfer, no allocation per frame),
//! and re-read to retransmit. A transfer the guest stops acknowledging is
//! retransmitted [`RETRIES`] times, then dropped.
//!
//! Names cannot leave DIR: a name that is absolute, has a `..` component,
//! a NUL or is longer than [`MAX_NAME`] is refused before any lookup, and
//! the file is opened with `openat2(RESOLVE_BENEATH)` relative to DIR's
//! descriptor (held since before the sandbox), so no symlink leads out
//! either; landlock grants read access beneath DIR and nowhere else. Only
//! regular files are served (opened `O_NONBLOCK`, so a FIFO cannot stall
//! the loop).
//!
//! #syscalls: openat2 pread64 fstat|statx|newfstatat close
//! #syscalls-startup: openat
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::counters::Counters;
use crate::frame::{self, L2};
use crate::link::Tx;
use crate::wire::checksum::PseudoHeader;
use crate::wire::tftp::{self, error_code, Mode, Options, Repr};
use crate::wire::{ip_proto, udp};
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// The well-known port requests arrive on.
pub const PORT: u16 = 69;
/// Transfers at once; a request beyond them gets an error.
pub const MAX_TRANSFERS: usize = 16;
/// Retransmissions of one packet before the transfer is dropped.
pub const RETRIES: u8 = 5;
/// Longest file name served.
pub const MAX_NAME: usize = 255;
const DEFAULT_BLKSIZE: u16 = 512;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Server transfer identifiers (source ports) are drawn from here.
const TID_BASE: u16 = 49152;

/// Open `--tftp DIR` (before the sandbox): the descriptor names resolve
/// beneath.
pub fn open_root(dir: &Path) -> Result<OwnedFd, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| format!("--tftp {}: {e}", dir.display()))?;
    Ok(OwnedFd::from(f))
}

/// What was last sent, to retransmit it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The option acknowledgement; the guest answers with ACK 0.
    OptionAck,
    /// DATA `block` from file offset `offset`, `len` bytes.
    Data { block: u16, offset: u64, len: usize },
}

struct Transfer {
    guest: SocketAddrV4,
    /// Our transfer identifier (the UDP port the transfer runs on).
    tid: u16,
    file: File,
    size: u64,
    blksize: u16,
    /// The options acknowledged (what the OACK says).
    acked: Options,
    timeout: Duration,
    sent: Sent,
    deadline: Instant,
    tries: u8,
}

pub struct Server {
    root: Option<std::sync::Arc<OwnedFd>>,
    transfers: Vec<Transfer>,
    next_tid: u16,
}

impl Server {
    pub fn new(cfg: &Config) -> Server {
        Server {
            root: cfg.tftp_root.clone(),
            transfers: Vec::with_capacity(MAX_TRANSFERS),
            next_tid: 0,
        }
    }

    pub fn enabled(&self) -> bool {
        self.root.is_some()
    }

    /// Whether a guest datagram to `dst` is this server's: port 69 or a
    /// running transfer's port at the virtual host address.
    pub fn wants(&self, cfg: &Config, dst: Ipv4Addr, l4: &[u8]) -> bool {
        let (Some(_), Some(net)) = (&self.root, &cfg.net4) else {
            return false;
        };
        let Ok(p) = udp::Packet::new_checked(l4) else {
            return false;
        };
        dst == net.host
            && (p.dst_port() == PORT || self.transfers.iter().any(|t| t.tid == p.dst_port()))
    }

    pub fn transfers(&self) -> usize {
        self.transfers.len()
    }

    /// A UDP datagram [`Server::wants`].
    #[allow(clippy::too_many_arguments)]
    pub fn handle(
        &mut self,
        cfg: &Config,
        l2: &L2,
        src: Ipv4Addr,
        l4: &[u8],
        tx: &mut Tx,
        now: Instant,
        counters: &mut Counters,
    ) {
        let Some(net) = &cfg.net4 else { return };
        let pseudo = PseudoHeader::V4 { src, dst: net.host };
        let Ok(p) = udp::Packet::new_checked(l4) else {
            counters.udp_malformed += 1;
            return;
        };
        if udp::Repr::parse(&p, &pseudo).is_err() || p.src_port() == 0 {
            counters.udp_malformed += 1;
            return;
        }
        let guest = SocketAddrV4::new(src, p.src_port());
        let out = Out {
            l2,
            host: net.host,
            mtu: cfg.mtu,
        };
        let Ok(msg) = Repr::parse(p.payload()) else {
            counters.tftp_malformed += 1;
            return;
        };
        if p.dst_port() == PORT {
            self.on_request(&out, guest, msg, tx, now, counters);
            return;
        }
        let Some(i) = self
            .transfers
            .iter()
            .position(|t| t.tid == p.dst_port() && t.guest == guest)
        else {
            // RFC 1350: a packet for another transfer gets error 5.
            out.error(
                tx,
                p.dst_port(),
                guest,
                error_code::UNKNOWN_TID,
                "unknown transfer",
            );
            return;
        };
        match msg {
            Repr::Ack { block } => {
                let t = &mut self.transfers[i];
                let next = match t.sent {
                    Sent::OptionAck if block == 0 => Some((1, 0)),
                    Sent::Data {
                        block: b,
                        offset,
                        len,
                    } if block == b => {
                        if len < t.blksize as usize {
                            // The short block was acknowledged: done.
                            self.transfers.swap_remove(i);
                            counters.tftp_transfers_done += 1;
                            return;
                        }
                        Some((b.wrapping_add(1), offset + len as u64))
                    }
                    // A duplicate ACK of an earlier block: ignore it
                    // (answering would start the Sorcerer's Apprentice).
                    _ => None,
                };
                if let Some((block, offset)) = next {
                    t.tries = 0;
                    if !out.data(tx, t, block, offset, now) {
                        counters.tftp_errors += 1;
                        self.transfers.swap_remove(i);
                    }
                }
            }
            Repr::Error { .. } => {
                // The guest gave up.
                self.transfers.swap_remove(i);
            }
            _ => {
                let t = self.transfers.swap_remove(i);
                out.error(
                    tx,
                    t.tid,
                    guest,
                    error_code::ILLEGAL_OPERATION,
                    "unexpected packet",
                );
                counters.tftp_errors += 1;
            }
        }
    }

    fn on_request(
        &mut self,
        out: &Out<'_>,
        guest: SocketAddrV4,
        msg: Repr<'_>,
        tx: &mut Tx,
        now: Instant,
        counters: &mut Counters,
    ) {
        let (filename, mode, options) = match msg {
            Repr::Read {
                filename,
                mode,
                options,
            } => (filename, mode, options),
            Repr::Write { .. } => {
                counters.tftp_errors += 1;
                let e = "read-only server";
                return out.error(tx, PORT, guest, error_code::ACCESS_VIOLATION, e);
            }
            _ => {
                counters.tftp_errors += 1;
                let e = "not a request";
                return out.error(tx, PORT, guest, error_code::ILLEGAL_OPERATION, e);
            }
        };
        // A repeated request restarts its transfer.
        self.transfers.retain(|t| t.guest != guest);
        let tid = self.tid();
        let mut refuse = |code, text: &str, counters: &mut Counters| {
            counters.tftp_errors += 1;
            out.error(tx, tid, guest, code, text);
        };
        if mode != Mode::Octet {
            return refuse(error_code::ILLEGAL_OPERATION, "octet mode only", counters);
        }
        if self.transfers.len() >= MAX_TRANSFERS {
            return refuse(error_code::NOT_DEFINED, "too many transfers", counters);
        }
        let Some(root) = &self.root else { return };
        let file = match open(root.as_fd(), filename) {
            Ok(f) => f,
            Err(Refused::NotFound) => {
                return refuse(error_code::FILE_NOT_FOUND, "file not found", counters)
            }
            Err(Refused::Escapes) => {
                return refuse(error_code::ACCESS_VIOLATION, "access violation", counters)
            }
        };
        let size = match file.metadata() {
            Ok(m) if m.is_file() => m.len(),
            _ => return refuse(error_code::FILE_NOT_FOUND, "not a regular file", counters),
        };
        log::debug!(
            "tftp: {guest} reads {} ({size} bytes)",
            String::from_utf8_lossy(filename)
        );
        // What fits in one frame: IPv4, UDP and TFTP headers within the MTU.
        let fits = (out.mtu as usize).saturating_sub(frame::IPV4_LEN + udp::HEADER_LEN + 4);
        let acked = Options {
            blksize: options
                .blksize
                .map(|b| b.min(fits.min(tftp::BLKSIZE_MAX as usize) as u16)),
            timeout: options.timeout,
            tsize: options.tsize.map(|_| size),
        };
        let mut t = Transfer {
            guest,
            tid,
            file,
            size,
            blksize: acked.blksize.unwrap_or(DEFAULT_BLKSIZE),
            acked,
            timeout: options
                .timeout
                .map_or(DEFAULT_TIMEOUT, |s| Duration::from_secs(s.into())),
            sent: Sent::OptionAck,
            deadline: now,
            tries: 0,
        };
        counters.tftp_transfers += 1;
        let ok = if acked.is_empty() {
            out.data(tx, &mut t, 1, 0, now)
        } else {
            out.option_ack(tx, &mut t, now);
            true
        };
        if ok {
            self.transfers.push(t);
        }
    }

    /// Retransmit what timed out; drop what timed out too often.
    pub fn on_tick(&mut self, cfg: &Config, l2: &L2, tx: &mut Tx, now: Instant) {
        let Some(net) = &cfg.net4 else { return };
        let out = Out {
            l2,
            host: net.host,
            mtu: cfg.mtu,
        };
        self.transfers.retain_mut(|t| {
            if now < t.deadline {
                return true;
            }
            if t.tries >= RETRIES {
                log::debug!("tftp: {} stopped acknowledging: dropped", t.guest);
                return false;
            }
            t.tries += 1;
            match t.sent {
                Sent::OptionAck => {
                    out.option_ack(tx, t, now);
                    true
                }
                Sent::Data { block, offset, .. } => out.data(tx, t, block, offset, now),
            }
        });
    }

    /// A transfer identifier no running transfer uses.
    fn tid(&mut self) -> u16 {
        loop {
            self.next_tid = (self.next_tid + 1) % (u16::MAX - TID_BASE);
            let tid = TID_BASE + self.next_tid;
            if !self.transfers.iter().any(|t| t.tid == tid) {
                return tid;
            }
        }
    }
}

enum Refused {
    NotFound,
    Escapes,
}

/// Open `name` beneath `root`, or say why not.
fn open(root: std::os::fd::BorrowedFd<'_>, name: &[u8]) -> Result<File, Refused> {
    if !name_is_safe(name) {
        return Err(Refused::Escapes);
    }
    let mut c = [0u8; MAX_NAME + 1];
    c[..name.len()].copy_from_slice(name);
    let Ok(cname) = std::ffi::CStr::from_bytes_with_nul(&c[..=name.len()]) else {
        return Err(Refused::Escapes);
    };
    match crate::sys::open_beneath(root, cname) {
        Ok(fd) => Ok(File::from(fd)),
        // EXDEV: resolution left DIR (a symlink out); ELOOP: too many links.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV) | Some(libc::ELOOP)) => {
            Err(Refused::Escapes)
        }
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => Err(Refused::Escapes),
        Err(_) => Err(Refused::NotFound),
    }
}

/// Relative, no `..` component, no NUL, not too long.
fn name_is_safe(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name[0] != b'/'
        && !name.contains(&0)
        && !name.split(|&b| b == b'/').any(|c| c == b"..")
}

/// Builds the server's datagrams.
struct Out<'a> {
    l2: &'a L2,
    host: Ipv4Addr,
    mtu: u16,
}

impl Out<'_> {
    /// One UDP datagram from `port` to `guest` whose payload `body` writes
    /// into the buffer it gets, returning its length (0: nothing sent).
    fn send(
        &self,
        tx: &mut Tx,
        port: u16,
        guest: SocketAddrV4,
        body: impl FnOnce(&mut [u8]) -> usize,
    ) {
        let (from, to) = (IpAddr::V4(self.host), IpAddr::V4(*guest.ip()));
        let pseudo = PseudoHeader::V4 {
            src: self.host,
            dst: *guest.ip(),
        };
        let mtu = self.mtu as usize;
        tx.send_with(|buf| {
            let at = frame::l4_offset(from);
            let room = mtu.saturating_sub(frame::IPV4_LEN + udp::HEADER_LEN);
            let Some(payload) = buf.get_mut(at + udp::HEADER_LEN..at + udp::HEADER_LEN + room)
            else {
                return 0;
            };
            let n = body(payload);
            if n == 0 {
                return 0;
            }
            let u = udp::Repr {
                src_port: port,
                dst_port: guest.port(),
                payload_len: n,
            };
            let off = frame::write_ip(buf, self.l2, from, to, ip_proto::UDP, u.buffer_len(), 64);
            if off == 0 || u.emit(&mut buf[off..], &pseudo).is_err() {
                return 0;
            }
            off + u.buffer_len()
        });
    }

    fn error(&self, tx: &mut Tx, port: u16, guest: SocketAddrV4, code: u16, message: &str) {
        self.send(tx, port, guest, |b| {
            Repr::Error { code, message }.emit(b).unwrap_or(0)
        });
    }

    fn option_ack(&self, tx: &mut Tx, t: &mut Transfer, now: Instant) {
        let options = t.acked;
        self.send(tx, t.tid, t.guest, |b| {
            Repr::OptionAck { options }.emit(b).unwrap_or(0)
        });
        t.sent = Sent::OptionAck;
        t.deadline = now + t.timeout;
    }

    /// DATA `block` from `offset`, read from the file into the frame.
    /// False if the file cannot be read.
    fn data(&self, tx: &mut Tx, t: &mut Transfer, block: u16, offset: u64, now: Instant) -> bool {
        let want = (t.size.saturating_sub(offset)).min(t.blksize as u64) as usize;
        let mut ok = true;
        let file = &t.file;
        self.send(tx, t.tid, t.guest, |b| {
            let Ok(h) = tftp::emit_data_header(b, block) else {
                ok = false;
                return 0;
            };
            let Some(dst) = b.get_mut(h..h + want) else {
                ok = false;
                return 0;
            };
            let mut got = 0;
            while got < want {
                match file.read_at(&mut dst[got..], offset + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        ok = false;
                        return 0;
                    }
                }
            }
            // A file that shrank ends the transfer with a short block.
            h + got
        });
        t.sent = Sent::Data {
            block,
            offset,
            len: want,
        };
        t.deadline = now + t.timeout;
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_refused_before_any_lookup() {
        for bad in [
            &b"/etc/passwd"[..],
            b"..",
            b"../x",
            b"a/../../x",
            b"a/..",
            b"",
            &[b'a'; MAX_NAME + 1],
        ] {
            assert!(!name_is_safe(bad), "{:?}", String::from_utf8_lossy(bad));
        }
        for good in [&b"pxelinux.0"[..], b"a/b/c", b"..a", b"a..", b"./x"] {
            assert!(name_is_safe(good));
        }
    }
}
