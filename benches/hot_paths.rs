//! Micro-benchmarks of the per-frame hot paths (issue 9), on airlock's
//! public API: frame parse, Internet checksum, segment build, flow lookup,
//! and the whole receive dispatch of a frame the stack answers itself.
//!
//! `cargo bench --bench hot_paths` (add `-- --quick` for a short run).
//! Figures and how they were taken: docs/performance.md.
//!
//! Network safety: the only sockets here are a Unix socketpair (the link)
//! and an epoll instance; the stack is built with `fuzz_api::safe_config`
//! (`--restrict --disable-host-loopback --disable-dns`), under which no
//! guest frame can open a host socket, and the frame it gets is an ARP
//! request the stack answers itself.

use airlock::engine::Poller;
use airlock::flow::{self, udp, Flow, Key};
use airlock::frame::{self, L2};
use airlock::fuzz_api::safe_config;
use airlock::link::{Kind, Link, MAX_FRAME};
use airlock::stack::Stack;
use airlock::wire::checksum::{self, PseudoHeader};
use airlock::wire::{ethernet, ethertype, ip_proto, ipv4, tcp};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

const GUEST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
const HOST: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const ROUTER_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

/// IP packet sizes: the default MTU (65520, the "64 KiB" frame) and Ethernet's.
const IP_LENS: [(&str, usize); 2] = [("mtu65520", 65520), ("mtu1500", 1500)];

fn pseudo() -> PseudoHeader {
    PseudoHeader::V4 {
        src: GUEST,
        dst: HOST,
    }
}

/// A guest→host TCP data segment (timestamps on, as Linux sends) in an
/// Ethernet frame carrying an `ip_len`-byte IP packet, checksums valid.
fn tcp_frame(ip_len: usize) -> Vec<u8> {
    let mut f = vec![0u8; ethernet::HEADER_LEN + ip_len];
    ethernet::emit_header(&mut f, ROUTER_MAC, GUEST_MAC, ethertype::IPV4).unwrap();
    let r = tcp::Repr {
        src_port: 40000,
        dst_port: 5201,
        seq: 0x1234_5678,
        ack: 0x9abc_def0,
        flags: tcp::flags::ACK | tcp::flags::PSH,
        window: 512,
        timestamp: Some((1, 2)),
        ..tcp::Repr::default()
    };
    let l4 = ethernet::HEADER_LEN + ipv4::HEADER_LEN;
    let hl = r.header_len();
    let payload_len = ip_len - ipv4::HEADER_LEN - hl;
    let r = tcp::Repr { payload_len, ..r };
    for (i, b) in f[l4 + hl..].iter_mut().enumerate() {
        *b = (i * 7 + 3) as u8;
    }
    assert_eq!(r.emit(&mut f[l4..], &pseudo()), Ok(hl + payload_len));
    let ip = ipv4::Repr::new(
        GUEST,
        HOST,
        ip_proto::TCP,
        (ip_len - ipv4::HEADER_LEN) as u16,
    );
    assert_eq!(
        ip.emit(&mut f[ethernet::HEADER_LEN..]),
        Ok(ipv4::HEADER_LEN)
    );
    f
}

/// What the stack's receive path does first with a TCP frame: Ethernet,
/// IPv4 (header checksum), TCP (checksum over the whole segment, options).
fn parse_tcp_frame(f: &[u8]) -> Option<(ipv4::Repr, tcp::Repr)> {
    let eth = ethernet::Frame::new_checked(f).ok()?;
    if eth.ethertype() != ethertype::IPV4 {
        return None;
    }
    let ip = ipv4::Packet::new_checked(eth.payload()).ok()?;
    let ipr = ipv4::Repr::parse(&ip).ok()?;
    let seg = tcp::Packet::new_checked(ip.payload()).ok()?;
    let pseudo = PseudoHeader::V4 {
        src: ipr.src,
        dst: ipr.dst,
    };
    let t = tcp::Repr::parse(&seg, &pseudo).ok()?;
    Some((ipr, t))
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (name, ip_len) in IP_LENS {
        let f = tcp_frame(ip_len);
        let (_, t) = parse_tcp_frame(&f).expect("the frame parses");
        assert_eq!(t.payload_len, ip_len - ipv4::HEADER_LEN - 32);
        g.throughput(Throughput::Bytes(f.len() as u64));
        g.bench_function(format!("eth_ipv4_tcp/{name}"), |b| {
            b.iter(|| parse_tcp_frame(black_box(&f)))
        });
    }
    g.finish();
}

fn bench_checksum(c: &mut Criterion) {
    let mut g = c.benchmark_group("checksum");
    for len in [65536usize, 1460] {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(format!("sum/{len}"), |b| {
            b.iter(|| checksum::sum(black_box(&data)))
        });
    }
    g.finish();
}

/// Headers of a host→guest data segment written in front of a payload
/// already in the buffer (where `recv` put it), then the TCP checksum.
fn build_segment(buf: &mut [u8], l2: &L2, payload_len: usize) -> usize {
    let (src, dst) = (IpAddr::V4(HOST), IpAddr::V4(GUEST));
    let hl = tcp::HEADER_LEN + 12; // timestamps
    let off = frame::write_ip(buf, l2, src, dst, ip_proto::TCP, hl + payload_len, 64);
    if off == 0 {
        return 0;
    }
    let l4 = &mut buf[off..off + hl + payload_len];
    {
        let mut p = tcp::Packet::new_checked(&mut l4[..]).expect("room for a header");
        p.set_src_port(5201);
        p.set_dst_port(40000);
        p.set_seq_number(0x1000);
        p.set_ack_number(0x2000);
        p.set_header_len(hl);
        p.set_flags(tcp::flags::ACK | tcp::flags::PSH);
        p.set_window_len(0xffff);
        p.set_urgent_at(0);
        let o = p.options_mut();
        let mut w = tcp::OptionWriter::new(o);
        w.nop().and_then(|_| w.nop()).expect("options fit");
        w.timestamp(7, 8).expect("options fit");
        p.fill_checksum(&frame::pseudo(src, dst).expect("one family"));
    }
    off + hl + payload_len
}

/// The same segment as `build_segment`, as airlock's TCP path builds it:
/// a `tcp::Repr` emitted behind `frame::write_ip`.
fn build_segment_repr(buf: &mut [u8], l2: &L2, payload_len: usize) -> usize {
    let (src, dst) = (IpAddr::V4(HOST), IpAddr::V4(GUEST));
    let repr = tcp::Repr {
        src_port: 5201,
        dst_port: 40000,
        seq: 0x1000,
        ack: 0x2000,
        flags: tcp::flags::ACK | tcp::flags::PSH,
        window: 0xffff,
        timestamp: Some((7, 8)),
        payload_len,
        ..tcp::Repr::default()
    };
    let hl = tcp::HEADER_LEN + 12;
    let off = frame::write_ip(buf, l2, src, dst, ip_proto::TCP, hl + payload_len, 64);
    let Some(p) = frame::pseudo(src, dst).filter(|_| off != 0) else {
        return 0;
    };
    repr.emit(&mut buf[off..], &p).map_or(0, |n| off + n)
}

fn bench_segment_build(c: &mut Criterion) {
    let l2 = L2 {
        guest: GUEST_MAC,
        router4: ROUTER_MAC,
        router6: [0x52, 0x56, 0, 0, 0, 2],
    };
    let mut g = c.benchmark_group("segment_build");
    for (name, ip_len) in IP_LENS {
        let payload = ip_len - ipv4::HEADER_LEN - tcp::HEADER_LEN - 12;
        let mut buf = vec![0u8; MAX_FRAME];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i * 13 + 1) as u8;
        }
        let n = build_segment(&mut buf, &l2, payload);
        assert_eq!(n, ethernet::HEADER_LEN + ip_len);
        // What was built must verify with airlock's own parsers.
        let (ipr, t) = parse_tcp_frame(&buf[..n]).expect("the built segment verifies");
        assert_eq!((ipr.src, t.payload_len), (HOST, payload));
        g.throughput(Throughput::Bytes(n as u64));
        g.bench_function(format!("write_ip_fill_l4_checksum/{name}"), |b| {
            b.iter(|| build_segment(black_box(&mut buf), &l2, payload))
        });
        let mut twin = buf.clone();
        assert_eq!(build_segment_repr(&mut twin, &l2, payload), n);
        // The same segment (the setters above keep the buffer's stale
        // reserved bits, Repr::emit clears them: compare what parses).
        let twin_parsed = parse_tcp_frame(&twin[..n]).expect("the Repr segment verifies");
        assert_eq!(twin_parsed, (ipr, t));
        g.bench_function(format!("repr_emit/{name}"), |b| {
            b.iter(|| build_segment_repr(black_box(&mut buf), &l2, payload))
        });
    }
    g.finish();
}

fn key(i: u32, remote_port: u16) -> Key {
    Key {
        proto: ip_proto::TCP,
        guest: SocketAddr::new(IpAddr::V4(GUEST), 1024 + (i % 60000) as u16),
        remote: SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i / 60000 + 2))),
            remote_port,
        ),
    }
}

fn bench_flow_lookup(c: &mut Criterion) {
    const N: u32 = 10_000;
    let now = Instant::now();
    let mut table: flow::Table = flow::Table::new(N as usize);
    let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9);
    let hits: Vec<Key> = (0..N).map(|i| key(i, 80)).collect();
    let misses: Vec<Key> = (0..N).map(|i| key(i, 81)).collect();
    for k in &hits {
        // A forwarded UDP flow carries no socket of its own: 10 000 flows, no fds.
        let t = table.vacant().expect("room");
        table.insert(t, *k, Flow::Udp(udp::Conn::forwarded(*k, 0, peer, now)));
    }
    assert_eq!(table.len(), N as usize);
    assert!(hits.iter().all(|k| table.lookup(k).is_some()));
    assert!(misses.iter().all(|k| table.lookup(k).is_none()));

    let mut g = c.benchmark_group("flow_lookup_10000");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("hit", |b| {
        b.iter(|| {
            i = (i + 7919) % hits.len();
            table.lookup(black_box(&hits[i]))
        })
    });
    g.bench_function("miss", |b| {
        b.iter(|| {
            i = (i + 7919) % misses.len();
            table.lookup(black_box(&misses[i]))
        })
    });
    g.finish();
}

/// An ARP request from the guest for the router's address.
fn arp_request() -> Vec<u8> {
    let mut f = vec![0u8; 42];
    ethernet::emit_header(&mut f, [0xff; 6], GUEST_MAC, ethertype::ARP).unwrap();
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&GUEST_MAC);
    f[28..32].copy_from_slice(&GUEST.octets());
    f[38..42].copy_from_slice(&HOST.octets());
    f
}

/// Read every frame waiting on the VMM's end; returns how many.
fn drain(vmm: &UnixDatagram, buf: &mut [u8]) -> usize {
    let mut n = 0;
    loop {
        match vmm.recv(buf) {
            Ok(_) => n += 1,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return n,
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn bench_dispatch(c: &mut Criterion) {
    let mut stack = Stack::new(safe_config(16), Poller::new().expect("epoll"));
    let (vmm, ours) = UnixDatagram::pair().expect("socketpair");
    vmm.set_nonblocking(true).expect("nonblocking");
    let mut link = Link::new(OwnedFd::from(ours), Kind::Dgram).expect("link");
    let mut rx = vec![0u8; MAX_FRAME + 1];
    let req = arp_request();
    let now = Instant::now();

    // The stack answers: one ARP reply from the router's MAC.
    stack.on_frame(&req, &mut link.tx, now);
    link.tx.flush();
    let n = vmm.recv(&mut rx).expect("an ARP reply");
    assert_eq!(n, 42);
    assert_eq!(&rx[0..6], &GUEST_MAC);
    assert_eq!(&rx[12..14], &[0x08, 0x06]);
    assert_eq!(&rx[20..22], &[0, 2], "ARP reply");
    assert_eq!(&rx[22..28], &ROUTER_MAC);
    assert_eq!(stack.flow_count(), 0);

    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(1));
    // on_frame alone: the reply is queued, not sent. Batches of 8 stay
    // below the queue's auto-flush; the flush and the guest's reads are
    // outside the timed part.
    g.bench_function("arp_on_frame", |b| {
        b.iter_custom(|iters| {
            let mut t = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let k = left.min(8);
                let start = Instant::now();
                for _ in 0..k {
                    stack.on_frame(black_box(&req), &mut link.tx, now);
                }
                t += start.elapsed();
                link.tx.flush();
                assert_eq!(drain(&vmm, &mut rx), k as usize);
                left -= k;
            }
            t
        })
    });
    // The whole turn for one frame: on_frame, flush (sendmmsg), and the
    // VMM's recv of the reply.
    g.bench_function("arp_on_frame_flush_recv", |b| {
        b.iter(|| {
            stack.on_frame(black_box(&req), &mut link.tx, now);
            link.tx.flush();
            vmm.recv(&mut rx).expect("reply")
        })
    });
    g.finish();
    assert_eq!(link.tx.stats.tx_dropped, 0);
}

fn config() -> Criterion {
    // A shared two-core machine: short, repeated measurements.
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_parse, bench_checksum, bench_segment_build, bench_flow_lookup, bench_dispatch
}
criterion_main!(benches);
