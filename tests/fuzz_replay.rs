//! Replays every committed fuzz input — the seed corpus under
//! `fuzz/corpus/TARGET/` and the crash inputs under `fuzz/regressions/TARGET/`
//! — through the same `airlock::fuzz_api` function the cargo-fuzz target
//! calls, so the stable test suite guards every bug a fuzzer ever found.
//! See docs/fuzzing.md.

use airlock::fuzz_api;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// A fuzz target's entry point.
type Entry = fn(&[u8]);

/// Target name (= directory name) to entry point. A directory with no entry
/// here fails the test: every target must be replayed.
const TARGETS: &[(&str, Entry)] = &[
    ("frame", fuzz_api::frame),
    ("engine", fuzz_api::engine),
    ("ethernet", fuzz_api::ethernet),
    ("arp", fuzz_api::arp),
    ("ipv4", fuzz_api::ipv4),
    ("tcp", fuzz_api::tcp),
    ("tcp_options", fuzz_api::tcp_options),
    ("udp", fuzz_api::udp),
    ("icmpv4", fuzz_api::icmpv4),
    ("dhcpv4", fuzz_api::dhcpv4),
    ("ipv6", fuzz_api::ipv6),
    ("icmpv6", fuzz_api::icmpv6),
    ("ndp", fuzz_api::ndp),
    ("dhcpv6", fuzz_api::dhcpv6),
    ("stream_deframe", fuzz_api::stream_deframe),
    ("options", fuzz_api::options),
    ("vhost_rings", fuzz_api::vhost_rings),
    ("migrate_state", fuzz_api::migrate_state),
    ("sim_tcp", airlock::sim::fuzz_tcp),
    ("sim_udp", airlock::sim::fuzz_udp),
];

/// Second wall besides the stack targets' `--restrict` configuration: this
/// test thread (network namespaces are per thread) moves to an empty
/// network namespace when it may (root).
fn isolate_network() {
    let _ = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET);
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// `TARGET/FILE` entries of `fuzz/regressions/KNOWN_OPEN`: reported bugs
/// not fixed yet.
fn known_open() -> Vec<String> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/KNOWN_OPEN");
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

/// Replays `fuzz/<kind>/*/*`; returns how many inputs ran. Inputs listed
/// in KNOWN_OPEN must still fail (the bugs are integer overflows, caught
/// with debug assertions): one that passes means the bug was fixed and its
/// line must go, so the input guards the fix from then on.
fn replay(kind: &str) -> usize {
    isolate_network();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind);
    let open = if kind == "regressions" {
        known_open()
    } else {
        Vec::new()
    };
    let mut failures = Vec::new();
    let mut ran = 0;
    for dir in files(&root).into_iter().filter(|d| d.is_dir()) {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let Some(&(_, f)) = TARGETS.iter().find(|(t, _)| *t == name) else {
            failures.push(format!(
                "{}: no fuzz_api entry for target '{name}'",
                dir.display()
            ));
            continue;
        };
        for file in files(&dir).into_iter().filter(|p| p.is_file()) {
            let data = std::fs::read(&file).unwrap();
            let id = format!("{name}/{}", file.file_name().unwrap().to_string_lossy());
            let expect_failure = open.contains(&id);
            if expect_failure && !cfg!(debug_assertions) {
                continue;
            }
            ran += 1;
            match (catch_unwind(AssertUnwindSafe(|| f(&data))), expect_failure) {
                (Ok(()), false) => {}
                (Err(_), true) => eprintln!("{id}: still fails (KNOWN_OPEN)"),
                (Ok(()), true) => failures.push(format!(
                    "{id}: passes now; remove it from fuzz/regressions/KNOWN_OPEN"
                )),
                (Err(e), false) => {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.push(format!("{}: {msg}", file.display()));
                }
            }
        }
    }
    for id in &open {
        if !root.join(id).is_file() {
            failures.push(format!("KNOWN_OPEN names {id}, which does not exist"));
        }
    }
    assert!(
        failures.is_empty(),
        "failing inputs:\n{}",
        failures.join("\n")
    );
    ran
}

#[test]
fn corpus_replays() {
    let n = replay("corpus");
    // Every target has seeds.
    for (t, _) in TARGETS {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(t);
        assert!(!files(&dir).is_empty(), "no seeds for target {t}");
    }
    assert!(n >= TARGETS.len());
}

#[test]
fn regressions_replay() {
    replay("regressions");
}

/// A fixed bug, reduced to one call: an IPv6 pseudo header whose two
/// addresses summed past `u64::MAX` before folding. Kept next to the
/// regression inputs as its minimal case.
#[test]
fn pseudo_v6_checksum_does_not_overflow() {
    use airlock::wire::checksum::PseudoHeader;
    use std::net::Ipv6Addr;
    /// RFC 1071 the slow way over the IPv6 pseudo header and `data`.
    fn slow(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, data: &[u8]) -> u16 {
        let mut bytes = [src.octets(), dst.octets()].concat();
        bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, proto]);
        bytes.extend_from_slice(data);
        let mut acc: u64 = bytes
            .chunks(2)
            .map(|c| u64::from(c[0]) << 8 | u64::from(*c.get(1).unwrap_or(&0)))
            .sum();
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }
    let msg = [0x80, 0, 0, 0, 0xab, 0xcd, 0, 1];
    // The slow reference agrees with airlock where airlock works.
    let (g, h): (Ipv6Addr, Ipv6Addr) = (
        "fec0::5054:ff:fe12:3456".parse().unwrap(),
        "fec0::2".parse().unwrap(),
    );
    let ok = PseudoHeader::V6 { src: g, dst: h };
    assert_eq!(ok.checksum(58, &msg), slow(g, h, 58, &msg));
    let a = Ipv6Addr::from([0xff; 16]);
    let p = PseudoHeader::V6 { src: a, dst: a };
    let r = catch_unwind(|| p.checksum(58, &msg));
    let open = known_open()
        .iter()
        .any(|l| l.starts_with("icmpv6/checksum-pseudo-v6"));
    if open && cfg!(debug_assertions) {
        assert!(
            r.is_err(),
            "fixed? remove the lines from fuzz/regressions/KNOWN_OPEN"
        );
    } else if !open {
        assert_eq!(r.unwrap(), slow(a, a, 58, &msg));
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// The harness really checks what the stack sends: an echo request to the
/// virtual router gets exactly one verified reply, an ARP request one
/// reply, a SYN the restricted stack refuses one RST, and no flow opens.
#[test]
fn harness_sees_replies() {
    isolate_network();
    let ping = hex("52550a000202 525400123456 0800
         4500 0024 abcd 4000 4001 76fb 0a00020f 0a000202
         0800 5435 1234 0001 6162636465666768");
    let arp = hex("ffffffffffff 525400123456 0806
         0001 0800 06 04 0001 525400123456 0a00020f 000000000000 0a000202");
    let mut syn = hex("52550a000202 525400123456 0800
         4500 003c 0001 4000 4006 0000 0a00020f 0a000202
         a8ca 1f90 12345678 00000000 a002 faf0 0000 0000
         020405b4 0402080a 0001e240 00000000 01030307");
    fuzz_api::fix_checksums(&mut syn);
    let mut h = fuzz_api::Harness::new(4);
    for (f, want) in [(&ping, 50), (&arp, 42), (&syn, 54)] {
        h.frame(f);
        let (n, bytes) = h.drain();
        assert_eq!((n, bytes), (1, want));
        h.check();
    }
    assert_eq!(h.stack.counters.tcp_refused, 1);
    // A checksum the fix-up did not touch is refused silently.
    syn[40] ^= 1;
    h.frame(&syn);
    assert_eq!(h.drain(), (0, 0));
    assert_eq!(h.stack.counters.tcp_bad_checksum, 1);
}

#[test]
#[should_panic(expected = "IPv4 header checksum")]
fn verifier_rejects_a_bad_checksum() {
    let h = fuzz_api::Harness::new(1);
    let mut reply = hex("525400123456 52550a000202 0800
         4500 0024 abcd 4000 4001 76fb 0a00020f 0a000202
         0800 5435 1234 0001 6162636465666768");
    reply[24] ^= 0xff; // the IPv4 header checksum
    fuzz_api::verify_guest_frame(&reply, &h.stack);
}

#[test]
fn stream_deframer_matches_model_on_splits() {
    isolate_network();
    let mut bytes = Vec::new();
    for n in [60u32, 1514, 14] {
        bytes.extend_from_slice(&n.to_be_bytes());
        bytes.extend(std::iter::repeat_n(n as u8, n as usize));
    }
    for cut in 0..=bytes.len() {
        let (a, b) = bytes.split_at(cut);
        fuzz_api::stream_deframe_chunks(&[a, b]);
    }
    let mut bad = bytes.clone();
    bad.extend_from_slice(&13u32.to_be_bytes());
    fuzz_api::stream_deframe_chunks(&[&bad]);
}

/// The engine grammar decodes as docs/fuzzing.md and fuzz/gen_seeds.py say:
/// seed 0 is an ARP request and an echo request to the router (two
/// replies), seed 1 a refused SYN (one RST) and a segment for no flow (one
/// RST), seed 2 a DHCP DISCOVER, a DNS query, a stale event and a raw frame.
#[test]
fn engine_seeds_decode_as_written() {
    isolate_network();
    let seed = |n: u32| {
        let p = format!(
            "{}/fuzz/corpus/engine/seed-{n:02}",
            env!("CARGO_MANIFEST_DIR")
        );
        fuzz_api::engine_run(&std::fs::read(p).unwrap())
    };
    let h = seed(0);
    assert_eq!(h.sent_frames, 2);
    assert_eq!(
        h.stack.counters.arp_malformed + h.stack.counters.icmp_malformed,
        0
    );
    let h = seed(1);
    assert_eq!(h.sent_frames, 2);
    assert_eq!(h.stack.counters.tcp_refused, 1);
    let h = seed(2);
    let c = &h.stack.counters;
    // The DISCOVER reached the DHCP server well formed (answered once the
    // server lands, counted as ignored by the placeholder); the DNS query
    // was a valid UDP datagram.
    assert_eq!(c.dhcp_malformed + c.udp_malformed + c.udp_bad_checksum, 0);
    assert!(c.dhcp_ignored + h.sent_frames as u64 >= 1);
    assert_eq!(h.stack.counters.eth_unknown_type, 1);
}

/// Engine seed 4 is IPv6: a router solicitation and a DHCPv6 SOLICIT behind
/// a hop-by-hop header; both reach the stack's IPv6 path well formed.
#[test]
fn engine_ipv6_seed_reaches_the_stack() {
    isolate_network();
    let p = format!("{}/fuzz/corpus/engine/seed-04", env!("CARGO_MANIFEST_DIR"));
    let h = fuzz_api::engine_run(&std::fs::read(p).unwrap());
    let c = &h.stack.counters;
    assert_eq!(c.ipv6_malformed, 0);
    assert!(c.ipv6_ignored + h.sent_frames as u64 >= 2);
}
