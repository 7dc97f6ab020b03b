//! `--pcap FILE`: every frame, both ways, in pcap format (passt's `-p`).
//!
//! The file is opened before the sandbox (nothing after it may open paths)
//! with O_NONBLOCK, so a FIFO that `tcpdump -r -` stops reading cannot stall
//! the loop. Frames are copied into one buffer allocated at start-up and
//! written once per link flush; when the file cannot take them (a full
//! FIFO) and the buffer is full, frames are dropped and counted, never
//! queued without bound. `--pcap-size` bounds the file: the first record
//! that would pass it ends the capture for good.
//!
//! #syscalls: write
//! #syscalls-startup: openat fcntl
#![forbid(unsafe_code)]

use crate::wire::pcap::{FileRepr, RecordRepr, LINKTYPE_ETHERNET, RECORD_HEADER_LEN};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// `--pcap-size` default: 64 MiB.
pub const DEFAULT_SIZE: u64 = 64 << 20;
/// Frames longer than this are cut in the capture (the largest MTU plus
/// the Ethernet header still fits).
pub const SNAPLEN: u32 = 65535;
/// The write-behind buffer: a few turns of full-size frames.
const BUFFER: usize = 1 << 20;

/// Counters for the `--debug` and SIGUSR1 summaries.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub frames: u64,
    /// The file or FIFO could not keep up: frames left out.
    pub dropped: u64,
    /// Frames left out because `--pcap-size` was reached.
    pub over_size: u64,
}

pub struct Pcap {
    file: File,
    buf: Vec<u8>,
    /// Bytes of `buf` not yet written.
    pending: usize,
    /// Bytes written or queued, file header included.
    size: u64,
    limit: u64,
    full: bool,
    pub stats: Stats,
}

impl Pcap {
    /// Create or truncate FILE (mode 0600) and queue the file header.
    pub fn create(path: &Path, limit: u64) -> Result<Pcap, String> {
        let shown = path.display();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| format!("--pcap {shown}: {e}"))?;
        let mut p = Pcap {
            file,
            buf: vec![0; BUFFER],
            pending: 0,
            size: 0,
            limit,
            full: false,
            stats: Stats::default(),
        };
        let h = FileRepr {
            snaplen: SNAPLEN,
            linktype: LINKTYPE_ETHERNET,
        };
        if limit < (h.buffer_len() + RECORD_HEADER_LEN) as u64 {
            return Err(format!("--pcap-size {limit}: too small for one record"));
        }
        p.pending = h.emit(&mut p.buf).map_err(|e| format!("--pcap: {e}"))?;
        p.size = p.pending as u64;
        Ok(p)
    }

    /// Queue one frame, stamped now.
    pub fn frame(&mut self, frame: &[u8]) {
        self.frame_partial(frame, None);
    }

    /// [`Pcap::frame`] for a frame whose checksum is left `partial` to a
    /// virtio device (`--vhost-user`): the capture shows it finished, as
    /// the guest sees it, unlike tcpdump on an offloading NIC.
    pub fn frame_partial(
        &mut self,
        frame: &[u8],
        partial: Option<crate::wire::checksum::PartialCsum>,
    ) {
        if self.full {
            self.stats.over_size += 1;
            return;
        }
        let incl = frame.len().min(SNAPLEN as usize);
        let need = RECORD_HEADER_LEN + incl;
        if self.size + need as u64 > self.limit {
            self.full = true;
            self.stats.over_size += 1;
            log::warn!(
                "--pcap: reached --pcap-size {}: capture stopped",
                self.limit
            );
            return;
        }
        if self.buf.len() - self.pending < need {
            self.flush();
            if self.buf.len() - self.pending < need {
                self.stats.dropped += 1;
                return;
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let rec = RecordRepr {
            ts_sec: now.as_secs() as u32,
            ts_usec: now.subsec_micros(),
            incl_len: incl as u32,
            orig_len: frame.len() as u32,
        };
        let at = self.pending;
        let Some(out) = self.buf.get_mut(at..at + need) else {
            return;
        };
        if rec.emit(out).is_err() {
            return;
        }
        out[RECORD_HEADER_LEN..].copy_from_slice(&frame[..incl]);
        if let Some(p) = partial {
            // Bounds checked there; a mark outside the frame leaves it.
            let rec = &mut out[RECORD_HEADER_LEN..];
            let _ = crate::wire::virtio_net::complete_checksum(rec, p.start, p.offset);
        }
        self.pending += need;
        self.size += need as u64;
        self.stats.frames += 1;
    }

    /// Write what is queued, as far as the file takes it without blocking.
    pub fn flush(&mut self) {
        let mut done = 0;
        while done < self.pending {
            match self.file.write(&self.buf[done..self.pending]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // A FIFO nobody drains: keep the rest for the next flush.
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::warn!("--pcap: {e}: capture stopped");
                    self.full = true;
                    self.pending = 0;
                    return;
                }
            }
        }
        self.buf.copy_within(done..self.pending, 0);
        self.pending -= done;
    }
}

impl Drop for Pcap {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::pcap::FILE_HEADER_LEN;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("airlock-pcap-{}-{name}", std::process::id()))
    }

    #[test]
    fn records_follow_the_header_and_the_bound_holds() {
        let p = tmp("bound");
        let limit = (FILE_HEADER_LEN + 3 * (RECORD_HEADER_LEN + 100)) as u64;
        let mut c = Pcap::create(&p, limit).unwrap();
        for i in 0..5u8 {
            c.frame(&[i; 100]);
        }
        c.flush();
        assert_eq!((c.stats.frames, c.stats.over_size), (3, 2));
        drop(c);
        let b = std::fs::read(&p).unwrap();
        assert_eq!(b.len() as u64, limit);
        let h = FileRepr::parse(&b).unwrap();
        assert_eq!((h.snaplen, h.linktype), (SNAPLEN, LINKTYPE_ETHERNET));
        let mut at = FILE_HEADER_LEN;
        for i in 0..3u8 {
            let r = RecordRepr::parse(&b[at..]).unwrap();
            assert_eq!((r.incl_len, r.orig_len), (100, 100));
            at += RECORD_HEADER_LEN;
            assert_eq!(&b[at..at + 100], &[i; 100][..]);
            at += 100;
        }
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn long_frames_are_cut_at_the_snap_length() {
        let p = tmp("snap");
        let mut c = Pcap::create(&p, DEFAULT_SIZE).unwrap();
        c.frame(&vec![7u8; SNAPLEN as usize + 10]);
        drop(c);
        let b = std::fs::read(&p).unwrap();
        let r = RecordRepr::parse(&b[FILE_HEADER_LEN..]).unwrap();
        assert_eq!((r.incl_len, r.orig_len), (SNAPLEN, SNAPLEN + 10));
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn a_fifo_nobody_reads_never_blocks() {
        let p = tmp("fifo");
        let _ = std::fs::remove_file(&p);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // A reader must exist for a non-blocking open for writing.
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .unwrap();
        let mut c = Pcap::create(&p, DEFAULT_SIZE).unwrap();
        for _ in 0..100 {
            c.frame(&[1u8; 60000]);
        }
        c.flush();
        assert!(c.stats.dropped > 0, "a full FIFO drops frames");
        assert!(c.stats.frames > 0);
        let _ = std::fs::remove_file(&p);
    }
}
