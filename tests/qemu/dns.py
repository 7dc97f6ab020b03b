#!/usr/bin/env python3
"""dns.py ADDR PORT NAME=IPV4 [NAME=IPV4 ...]: a tiny authoritative DNS
server for the real-VMM tests. It stands in for the host's resolver inside the
test's host network namespace (its resolv.conf names 127.0.0.1), so a guest
lookup through the helper's virtual DNS address ends here and nowhere else.
Answers A queries for the names given, NXDOMAIN for any other name, and
exits after 600 s so a forgotten server cannot linger."""
import socket
import struct
import sys
import time


def parse_name(msg, off):
    labels = []
    while off < len(msg):
        n = msg[off]
        off += 1
        if n == 0:
            return ".".join(labels).lower(), off
        if n & 0xC0 or off + n > len(msg):
            return None, off
        labels.append(msg[off:off + n].decode("ascii", "replace"))
        off += n
    return None, off


def answer(msg, table):
    if len(msg) < 12:
        return None
    qid, flags, qd = struct.unpack("!HHH", msg[:6])
    if flags & 0x8000 or qd != 1:
        return None
    name, off = parse_name(msg, 12)
    if name is None or off + 4 > len(msg):
        return None
    qtype, qclass = struct.unpack("!HH", msg[off:off + 4])
    question = msg[12:off + 4]
    addr = table.get(name)
    rd = flags & 0x0100
    if addr is None:
        return struct.pack("!HHHHHH", qid, 0x8400 | rd | 3, 1, 0, 0, 0) + question
    if qtype != 1 or qclass != 1:
        return struct.pack("!HHHHHH", qid, 0x8400 | rd, 1, 0, 0, 0) + question
    rr = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(addr)
    return struct.pack("!HHHHHH", qid, 0x8400 | rd, 1, 1, 0, 0) + question + rr


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    table = {}
    for arg in sys.argv[3:]:
        name, addr = arg.split("=", 1)
        table[name.lower().rstrip(".")] = addr
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    s.settimeout(1.0)
    print("ready", flush=True)
    end = time.monotonic() + 600
    while time.monotonic() < end:
        try:
            msg, peer = s.recvfrom(4096)
        except socket.timeout:
            continue
        reply = answer(msg, table)
        if reply is not None:
            s.sendto(reply, peer)


if __name__ == "__main__":
    main()
