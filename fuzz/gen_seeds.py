#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/TARGET/.

Seeds are the golden bytes of src/wire's unit tests plus whole frames built
here (checksums computed here, independently of airlock), each in the input
format of its target (see src/fuzz_api.rs). Run from anywhere; rewrites the
seed files it owns (seed-*) and leaves everything else alone.
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def hx(s):
    return bytes.fromhex("".join(s.split()))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip4(a):
    return bytes(int(x) for x in a.split("."))


GUEST_MAC = hx("525400123456")
ROUTER_MAC = hx("52550a000202")
BCAST = b"\xff" * 6
GUEST, HOST, DNS = ip4("10.0.2.15"), ip4("10.0.2.2"), ip4("10.0.2.3")


def ipv4(src, dst, proto, l4, ident=1, frag=0x4000):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident, frag, 64, proto, 0, src, dst)
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + l4


def l4sum(src, dst, proto, l4, at):
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
    c = csum(pseudo + l4)
    if proto == 17 and c == 0:
        c = 0xFFFF
    return l4[:at] + struct.pack("!H", c) + l4[at + 2:]


def tcp(src, dst, sp, dp, seq, ack, flags, opts=b"", payload=b""):
    hl = 20 + len(opts)
    t = struct.pack("!HHIIBBHHH", sp, dp, seq, ack, (hl // 4) << 4, flags, 64240, 0, 0) + opts + payload
    return l4sum(src, dst, 6, t, 16)


def udp(src, dst, sp, dp, payload):
    u = struct.pack("!HHHH", sp, dp, 8 + len(payload), 0) + payload
    return l4sum(src, dst, 17, u, 6)


def icmp_echo(ident, seq, data):
    m = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def eth(dst, src, ethertype, payload):
    return dst + src + struct.pack("!H", ethertype) + payload


def dhcp(msg_type, extra=b"", mac=GUEST_MAC, xid=0x3903F326):
    fixed = struct.pack("!BBBBIHH4s4s4s4s", 1, 1, 6, 0, xid, 0, 0, b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4)
    fixed += mac + b"\0" * 10 + b"\0" * 192
    opts = hx("63825363") + bytes([53, 1, msg_type]) + hx("3d0701525400123456 3707010306 0c0f1c2a 0c056775657374") + extra + b"\xff"
    m = fixed + opts
    return m + b"\0" * max(0, 300 - len(m))


SYN_OPTS = hx("020405b4 0402080a 0001e240 00000000 01030307")
DNS_QUERY = hx("beef 0100 0001 0000 0000 0000 076578616d706c6503636f6d00 0001 0001")
ARP_REQ = hx("0001 0800 06 04 0001 525400123456 0a00020f 000000000000 0a000202")
ARP_REPLY = hx("0001 0800 06 04 0002 52550a000202 0a000202 525400123456 0a00020f")

# Guest frames: (name, frame).
FRAMES = [
    ("arp-request-router", eth(BCAST, GUEST_MAC, 0x0806, ARP_REQ + b"\0" * 18)),
    ("arp-request-dns", eth(BCAST, GUEST_MAC, 0x0806, ARP_REQ[:24] + DNS)),
    ("arp-probe-self", eth(BCAST, GUEST_MAC, 0x0806, ARP_REQ[:14] + b"\0" * 10 + GUEST)),
    ("ping-router", eth(ROUTER_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, HOST, 1, icmp_echo(0x1234, 1, b"abcdefgh")))),
    ("ping-dns", eth(ROUTER_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, DNS, 1, icmp_echo(7, 2, b"x" * 56)))),
    ("tcp-syn-router", eth(ROUTER_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, HOST, 6, tcp(GUEST, HOST, 43210, 8080, 0x12345678, 0, 0x02, SYN_OPTS)))),
    ("tcp-ack-noflow", eth(ROUTER_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, HOST, 6, tcp(GUEST, HOST, 43210, 80, 5, 9, 0x18, b"", b"GET / HTTP/1.0\r\n\r\n")))),
    ("tcp-syn-outside", eth(ROUTER_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, ip4("192.0.2.1"), 6, tcp(GUEST, ip4("192.0.2.1"), 40000, 443, 1, 0, 0x02, SYN_OPTS)))),
    ("udp-dns", eth(ROUTER_MAC, GUEST_MAC, 0x0800, ipv4(GUEST, DNS, 17, udp(GUEST, DNS, 40000, 53, DNS_QUERY)))),
    ("dhcp-discover", eth(BCAST, GUEST_MAC, 0x0800, ipv4(ip4("0.0.0.0"), ip4("255.255.255.255"), 17, udp(ip4("0.0.0.0"), ip4("255.255.255.255"), 68, 67, dhcp(1))))),
    ("dhcp-request", eth(BCAST, GUEST_MAC, 0x0800, ipv4(ip4("0.0.0.0"), ip4("255.255.255.255"), 17, udp(ip4("0.0.0.0"), ip4("255.255.255.255"), 68, 67, dhcp(3, hx("32040a00020f 36040a000202")))))),
    ("ipv4-fragment", eth(ROUTER_MAC, GUEST_MAC, 0x0800, hx("4500 001c abce 20b9 4011 9639 0a00020f 0a000202 0102030405060708"))),
    ("ipv6-frame", eth(hx("333300000001"), GUEST_MAC, 0x86DD, hx("6000000000083aff fe800000000000000000000000000001 ff020000000000000000000000000002 8500 0000 00000000"))),
    ("ndp-rs", eth(hx("333300000002"), GUEST_MAC, 0x86DD, hx("60000000 0010 3a ff fe80000000000000505400fffe123456 ff020000000000000000000000000002 8500 0000 00000000 0101525400123456"))),
    ("ping6-host", eth(hx("525600000002"), GUEST_MAC, 0x86DD, hx("60000000 000c 3a 40 fec0000000000000505400fffe123456 fec00000000000000000000000000002 8000 0000 abcd 0001 70696e67"))),
    ("unknown-ethertype", eth(BCAST, GUEST_MAC, 0x88CC, b"\0" * 46)),
]

ICMP = [
    hx("0800 5435 1234 0001 6162636465666768"),
    hx("0000 5c35 1234 0001 6162636465666768"),
    hx("0303 a3a2 00000000 4500003d000140004011229e0a00020f0a000203 9c4000350025bcbf"),
    hx("0304 9dc5 000005dc 4500003d000140004011229e0a00020f0a000203 9c4000350025bcbf"),
    hx("0b00 9ba5 00000000 4500003d000140004011229e0a00020f0a000203 9c4000350025bcbf"),
]

PSEUDO = GUEST + HOST


def u16(n):
    return struct.pack("!H", n)


def stream(*frames):
    out = b""
    for f in frames:
        out += struct.pack("!I", len(f)) + f
    return out


def chunks(*cs):
    return b"".join(u16(len(c)) + c for c in cs)


def seeds():
    s = {}
    s["ethernet"] = [f for _, f in FRAMES[:6]] + [hx("010203040506 070707070707 86dd aa")]
    s["arp"] = [ARP_REQ, ARP_REPLY, ARP_REQ + b"\0" * 18]
    s["ipv4"] = [
        b"\0" + hx("4500 0024 abcd 4000 4001 76fb 0a00020f 0a000202 0800 5435 1234 0001 6162636465666768 000000000000"),
        b"\0" + hx("46c0 0020 0000 4000 0102 f807 0a00020f e0000001 94040000 1600 09fe e0000001"),
        b"\0" + hx("4500 001c abce 20b9 4011 9639 0a00020f 0a000202 0102030405060708"),
        b"\1" + hx("4f00 0040 0000 0000 4006 0000 0a00020f 0a000202") + hx("0101") * 20 + b"\0" * 4,
    ]
    syn = hx("a8ca 1f90 12345678 00000000 a002 faf0 21b6 0000 020405b4 0402080a 0001e240 00000000 01030307")
    s["tcp"] = [
        PSEUDO + b"\0" + syn,
        PSEUDO + b"\1" + tcp(GUEST, HOST, 1, 2, 3, 4, 0x18, hx("0101080a 0001e241 9abcdef0"), b"GET / HTTP/1.0\r\n\r\n"),
        PSEUDO + b"\1" + tcp(GUEST, HOST, 1, 2, 3, 4, 0x10, hx("0101 050a 00000001 00000002")),
    ]
    s["tcp_options"] = [
        hx("020405b4 0402080a 0001e240 00000000 01030307"),
        hx("0101 0522 00000001 00000002 00000003 00000004 00000005 00000006 00000007 00000008"),
        hx("0101 080a 00000001 00000002 0402 0303 0e00"),
        hx("02 05 0000"),
        hx("fe 04 1234 00"),
    ]
    s["udp"] = [
        PSEUDO[:4] + DNS + b"\0" + hx("9c40 0035 0025 bcbf") + DNS_QUERY,
        PSEUDO[:4] + DNS + b"\0" + hx("9c40 0035 0025 0000") + DNS_QUERY,
        PSEUDO + b"\1" + udp(GUEST, HOST, 68, 67, dhcp(1)),
    ]
    s["icmpv4"] = [b"\0" + m for m in ICMP] + [b"\1" + hx("0d00 0000 0001 0002") + b"\0" * 12]
    s["dhcpv4"] = [
        dhcp(1),
        dhcp(3, hx("32040a00020f 36040a000202 5000 39020240")),
        dhcp(8, hx("7708 076578616d706c6500 7909 180a0002 0a000202")),
        dhcp(1, hx("0c0b612c622c632c642e65 3d03ff0102")),
    ]
    a, b, c = FRAMES[0][1], FRAMES[3][1], FRAMES[5][1]
    whole = stream(a, b, c)
    s["stream_deframe"] = [
        chunks(whole),
        chunks(whole[:3], whole[3:70], whole[70:]),
        chunks(stream(a)[:2], stream(a)[2:] + u16(0) + u16(13)),
        chunks(stream(b"\0" * 1514)[:700], stream(b"\0" * 1514)[700:]),
        chunks(struct.pack("!I", 65536)),
    ]
    s["options"] = [
        b"--net\x0010.0.2.0/24\x00--hostfwd\x00tcp::2222-:22",
        b"--net=192.168.76.0/24\x00--hostfwd\x00udp:127.0.0.1:5353-10.0.2.15:53\x00--hostfwd\x00tcp:[::1]:8080-[fec0::15]:80",
        b"-t\x008080:80,9000-9010\x00-u\x00127.0.0.1/53\x00--mtu\x001500",
        b"--net\x0010.1.0.5\x00--mask\x00255.255.0.0\x00--dhcp-start\x0010.1.0.50\x00--dns\x0010.1.0.3",
        b"--net6\x00fd00::/64\x00--host-ipv6\x00fd00::2\x00--dns-suffixes\x00a.example,b.example",
        b"--disable-ipv4\x00--prefix-ipv6\x00fec0::\x00--prefix-length-ipv6\x0064\x00\x00nameserver 10.9.9.9\nsearch corp.example\n",
    ]
    g6, h6 = hx("fec0000000000000505400fffe123456"), hx("fec00000000000000000000000000002")
    ll, allr = hx("fe80000000000000505400fffe123456"), hx("ff020000000000000000000000000002")
    s["ipv6"] = [
        b"\0" + hx("60000000 000c 3a 40") + g6 + h6 + hx("800073d9abcd000170696e67 0000"),
        b"\0" + hx("60000000 0020 00 40") + g6 + h6 + hx("2c00050200000100 11000001deadbeef 9c40003500100000 0102030405060708"),
        b"\0" + hx("60000000 0010 2c 40") + g6 + h6 + hx("110005c8deadbeef 4142434445464748"),
        b"\1" + hx("00 3c00010400000000 2b02000000000000 0000000000000000 0000000000000000 3a00000000000000"),
    ]
    s["icmpv6"] = [
        g6 + h6 + b"\0" + hx("8000 73d9 abcd 0001 70696e67"),
        g6 + h6 + b"\1" + hx("0104 0000 00000000") + hx("60000000 000c 11 40") + h6 + g6,
        g6 + h6 + b"\1" + hx("0200 0000 000005dc") + hx("60000000 0500 06 40") + h6 + g6,
    ]
    s["ndp"] = [
        ll + allr + b"\1" + hx("8500 71b5 00000000 0101525400123456"),
        ll + hx("ff0200000000000000000001ff000002") + b"\1" + hx("8700 71a0 00000000 fec00000000000000000000000000002 0101525400123456"),
        h6 + ll + b"\1" + hx("8800 4348 60000000 fec00000000000000000000000000002 0201525600000002"),
        ll + hx("ff020000000000000000000000000001") + b"\1" + hx("""8600 9e40 40 40 0708 00000000 00000000
             0101525600000002 050100000000fff0
             030440c0 00015180 00003840 00000000 fec00000000000000000000000000000
             19030000 00000e10 fec00000000000000000000000000003
             1f030000 00000e10 076578616d706c65036f726700 000000"""),
    ]
    s["dhcpv6"] = [
        hx("01 5a1b2c 0001000a00030001525400123456 000800020000 000600040017 0018 0003000c123456780000000000000000 000e0000"),
        hx("""03 5a1b2c 0002000a00030001525600000002 0001000a00030001525400123456
             00030028 12345678 00000e10 00001518
               00050018 fec0000000000000505400fffe123456 00000e10 00001c20"""),
        hx("0b 000001 0001000b 612e6f72672c622e636f 00060002 0017"),
    ]
    s["frame"] = [b"\0" + f for _, f in FRAMES] + [b"\1" + FRAMES[5][1][:-2] + b"\0\0"]
    s["engine"] = engine_seeds()
    return s


# Engine grammar (src/fuzz_api.rs `engine`): a max_flows byte, then steps.
# Step op byte % 8: 0-3 grammar frame, 4 raw frame, 5 tick, 6 host event, 7 after_turn.
# Grammar frame: kind byte % 6 (0 ARP, 1 ICMP, 2 TCP SYN, 3 TCP any flags,
# 4 UDP, 5 raw after Ethernet), src MAC pick, dst MAC pick, then per kind.
ADDR = {"guest": 0, "host": 1, "dns": 2, "other": 5, "outside": 9, "zero": 6, "bcast": 7}


def pick_addr(name):
    return bytes([0, ADDR[name]])  # < 230: pick from the table


def engine_seeds():
    ok, as_is = b"\x00", b"\x10"  # fix checksums; no padding/cut/corruption
    arp = bytes([0, 0, 0, 1]) + b"\x01" + pick_addr("guest") + pick_addr("host") + ok + as_is
    ping = (bytes([0, 1, 0, 2]) + b"\x00" + pick_addr("guest") + pick_addr("host") + b"\x00" + b"\x40"
            + b"\x00" + b"\x00\x00\x00\x01" + u16(8) + b"abcdefgh" + ok + as_is)
    syn = (bytes([0, 2, 0, 2]) + b"\x00" + pick_addr("guest") + pick_addr("host") + b"\x00" + b"\x40"
           + bytes([0, 3]) + bytes([0, 4]) + struct.pack("!II", 1000, 0) + u16(20) + SYN_OPTS
           + u16(0xFAF0) + u16(0) + ok + as_is)
    ack = (bytes([0, 3, 0, 2]) + b"\x00" + pick_addr("guest") + pick_addr("outside") + b"\x00" + b"\x40"
           + bytes([0, 7]) + bytes([0, 4]) + struct.pack("!II", 1000, 77) + u16(0) + b"\x11"
           + u16(0xFAF0) + u16(5) + b"hello" + ok + as_is)
    dhcp_disc = (bytes([0, 4, 0, 1]) + b"\x00" + pick_addr("zero") + pick_addr("bcast") + b"\x00" + b"\x40"
                 + b"\x00" + bytes([0, 2]) + b"\x01" + struct.pack("!I", 0xABCD) + b"\x00"
                 + b"\x00" * 4 + bytes([0]) + bytes([1]) + bytes([2]) + ok + as_is)
    dns = (bytes([0, 4, 0, 2]) + b"\x00" + pick_addr("guest") + pick_addr("dns") + b"\x00" + b"\x40"
           + b"\x00" + bytes([0, 7]) + b"\x00" + bytes([0, 0]) + u16(len(DNS_QUERY)) + DNS_QUERY + ok + as_is)
    tick = b"\x05" + u16(1000) + b"\x00"
    long_tick = b"\x05" + u16(3600) + b"\x01"
    event = b"\x06" + b"\x03" + b"\x00\x00" + struct.pack("!I", 1)
    turn = b"\x07"
    # IPv6 kind 6: hop-limit byte, src, dst, ext count, upper-layer pick...
    rs6 = (bytes([0, 6, 0, 1]) + b"\x00" + bytes([0, 0]) + bytes([0, 5]) + b"\x00" + b"\x00"
           + bytes([1]) + b"\x01" + u16(0) + ok + as_is)
    dhcp6 = (bytes([0, 6, 0, 1]) + b"\x00" + bytes([0, 0]) + bytes([0, 6]) + b"\x01" + b"\x02" + b"\x00"
             + b"\x01" + b"\x01" + b"\x00" + b"\x00\x12\x34\x56" + b"\x01" + b"\x00\x00\x00\x07" + u16(0) + ok + as_is)
    raw = b"\x04" + u16(14) + BCAST + GUEST_MAC + hx("88cc")
    return [
        b"\x03" + arp + turn + ping + turn,
        b"\x01" + syn + turn + tick + ack + long_tick,
        b"\x07" + dhcp_disc + turn + dns + event + raw + turn,
        b"\x00" + syn * 3 + tick + event + long_tick,
        b"\x02" + rs6 + dhcp6 + turn + tick,
    ]


def main():
    for target, items in seeds().items():
        d = os.path.join(ROOT, target)
        os.makedirs(d, exist_ok=True)
        for f in os.listdir(d):
            if f.startswith("seed-"):
                os.remove(os.path.join(d, f))
        for i, data in enumerate(items):
            with open(os.path.join(d, "seed-%02d" % i), "wb") as fh:
                fh.write(data)
        print(target, len(items))


if __name__ == "__main__":
    main()
