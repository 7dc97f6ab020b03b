#!/usr/bin/env python3
"""TCP endpoints for tests/tcp.rs, run in the guest or the host namespace.

Every mode prints one JSON object on stdout when it is done (servers also
print "ready" first, once they listen). Payloads are random (os.urandom)
or derived from a seed (random.Random(seed).randbytes), and every transfer
is checked with SHA-256 on both ends.
"""
import errno
import hashlib
import json
import os
import random
import socket
import struct
import sys
import threading
import time

CHUNK = 1 << 20


def out(**kw):
    print(json.dumps(kw), flush=True)


def ready():
    print("ready", flush=True)


def listener(bind, port, backlog=128):
    fam = socket.AF_INET6 if ":" in bind else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((bind, port))
    s.listen(backlog)
    return s


def connect(host, port, wait=10.0):
    """Connect, retrying while the server is not up yet."""
    end = time.monotonic() + wait
    while True:
        try:
            return socket.create_connection((host, port), timeout=60)
        except (ConnectionRefusedError, ConnectionResetError):
            if time.monotonic() > end:
                raise
            time.sleep(0.05)


def seeded(seed, n):
    return random.Random(seed).randbytes(n)


def recv_all(s, h=None):
    """Read to EOF; returns (bytes read, sha256 hex)."""
    h = h or hashlib.sha256()
    n = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while True:
        k = s.recv_into(view)
        if k == 0:
            return n, h.hexdigest()
        h.update(view[:k])
        n += k


def send_random(s, total):
    """Send `total` random bytes; returns their sha256 hex."""
    h = hashlib.sha256()
    left = total
    while left:
        b = os.urandom(min(CHUNK, left))
        h.update(b)
        s.sendall(b)
        left -= len(b)
    return h.hexdigest()


def sink(bind, port, reply_bytes):
    """Take one connection: read to EOF (the peer's half-close), then
    answer with what was received and a reply payload, and close."""
    ls = listener(bind, int(port))
    ready()
    c, peer = ls.accept()
    t0 = time.monotonic()
    n, sha = recv_all(c)
    secs = time.monotonic() - t0
    reply = seeded(7, int(reply_bytes))
    rsha = hashlib.sha256(reply).hexdigest()
    c.sendall(f"{sha} {n} {rsha} {len(reply)}\n".encode() + reply)
    c.close()
    out(sha=sha, n=n, secs=secs, peer=peer[0])


def send(host, port, nbytes):
    """Send `nbytes` random bytes, half-close, then read the sink's full
    answer after our FIN and check it."""
    s = connect(host, int(port))
    t0 = time.monotonic()
    sha = send_random(s, int(nbytes))
    s.shutdown(socket.SHUT_WR)
    data = bytearray()
    while True:
        b = s.recv(CHUNK)
        if not b:
            break
        data += b
    secs = time.monotonic() - t0
    line, _, reply = bytes(data).partition(b"\n")
    f = line.decode().split()
    ok = (
        len(f) == 4
        and f[0] == sha
        and int(f[1]) == int(nbytes)
        and int(f[3]) == len(reply)
        and hashlib.sha256(reply).hexdigest() == f[2]
    )
    out(sha=sha, n=int(nbytes), peer_line=line.decode(), reply=len(reply), ok=ok, secs=secs)


def fanout(bind, port):
    """Many clients: each sends an 8-byte seed and a 4-byte length and gets
    that many seeded bytes. Reports the peak number of open connections."""
    ls = listener(bind, int(port), 1024)
    ready()
    lock = threading.Lock()
    state = {"open": 0, "peak": 0, "served": 0}

    def serve(c):
        with lock:
            state["open"] += 1
            state["peak"] = max(state["peak"], state["open"])
        try:
            hdr = b""
            while len(hdr) < 12:
                b = c.recv(12 - len(hdr))
                if not b:
                    return
                hdr += b
            seed, n = struct.unpack("!QI", hdr)
            c.sendall(seeded(seed, n))
            with lock:
                state["served"] += 1
        finally:
            c.close()
            with lock:
                state["open"] -= 1
                if state["open"] == 0:
                    out(**state)

    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def fanin(host, port, count, size):
    """`count` threads connect, wait until all are connected, then each asks
    for `size` seeded bytes and checks them."""
    count, size = int(count), int(size)
    barrier = threading.Barrier(count, timeout=60)
    results = [None] * count

    def one(i):
        try:
            s = connect(host, int(port))
            barrier.wait()
            s.sendall(struct.pack("!QI", 1000 + i, size))
            n, sha = recv_all(s)
            s.close()
            want = hashlib.sha256(seeded(1000 + i, size)).hexdigest()
            results[i] = "ok" if (n, sha) == (size, want) else f"bad {n} bytes"
        except Exception as e:  # noqa: BLE001 - reported, not hidden
            results[i] = f"{type(e).__name__}: {e}"
            barrier.abort()

    t0 = time.monotonic()
    ts = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    bad = [r for r in results if r != "ok"]
    out(ok=count - len(bad), errors=bad[:5], secs=time.monotonic() - t0)


def greet_first(bind, port, nbytes):
    """The server half-closes first: sends seeded bytes and FIN, then reads
    what the client sends after that, to EOF."""
    ls = listener(bind, int(port))
    ready()
    c, _ = ls.accept()
    c.sendall(seeded(11, int(nbytes)))
    c.shutdown(socket.SHUT_WR)
    n, sha = recv_all(c)
    c.close()
    out(sha=sha, n=n)


def after_greeting(host, port, nbytes, answer):
    """Client for greet_first: read to the server's FIN, then send."""
    s = connect(host, int(port))
    n, sha = recv_all(s)
    want = hashlib.sha256(seeded(11, int(nbytes))).hexdigest()
    asha = send_random(s, int(answer))
    s.shutdown(socket.SHUT_WR)
    tail = s.recv(1)
    s.close()
    out(greeting_ok=(n, sha) == (int(nbytes), want), n=n, sha=asha, tail=len(tail))


def refused(host, port):
    """How a connect to a closed port fails, and how fast."""
    s = socket.socket()
    s.settimeout(10)
    t0 = time.monotonic()
    try:
        s.connect((host, int(port)))
        err = "connected"
    except OSError as e:
        err = errno.errorcode.get(e.errno, str(e)) if e.errno else type(e).__name__
    out(err=err, secs=time.monotonic() - t0)


def linger0(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def resetter(bind, port):
    """First connection: read a request, then abort (RST). Second: wait for
    the client to abort, and report what recv said."""
    ls = listener(bind, int(port))
    ready()
    c, _ = ls.accept()
    c.recv(100)
    linger0(c)
    c.close()
    c, _ = ls.accept()
    c.settimeout(10)
    try:
        got = c.recv(100)
        first = "data" if got else "eof"
        got = c.recv(100)
        err = "eof" if not got else "data"
    except OSError as e:
        err = errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__
    out(first=first, err=err)


def reset_client(host, port):
    s = connect(host, int(port))
    s.settimeout(10)
    s.sendall(b"hello?")
    t0 = time.monotonic()
    try:
        got = s.recv(100)
        err = "eof" if not got else "data"
    except OSError as e:
        err = errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__
    secs = time.monotonic() - t0
    s.close()
    s = connect(host, int(port))
    s.sendall(b"x")
    time.sleep(0.3)
    linger0(s)
    s.close()
    out(err=err, secs=secs)


def paced(bind, port, flag):
    """One connection: send random 256 KiB blocks every 20 ms until the file
    `flag` exists (and at least 2 s passed), then close."""
    ls = listener(bind, int(port))
    ready()
    c, _ = ls.accept()
    h = hashlib.sha256()
    n = 0
    t0 = time.monotonic()
    while not (os.path.exists(flag) and time.monotonic() - t0 > 2):
        b = os.urandom(256 << 10)
        h.update(b)
        c.sendall(b)
        n += len(b)
        time.sleep(0.02)
    c.close()
    out(sha=h.hexdigest(), n=n, secs=time.monotonic() - t0)


def drain(host, port):
    s = connect(host, int(port))
    t0 = time.monotonic()
    n, sha = recv_all(s)
    out(sha=sha, n=n, secs=time.monotonic() - t0)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def flood(src, dst, port, count, secs):
    """`count` SYNs from random source ports of `src` to dst:port on a raw
    socket (the kernel adds the IP header), spread over about `secs`."""
    count, secs, port = int(count), float(secs), int(port)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, 20)
    # Sum of the constant words: pseudo header, dst port, offset/flags, window.
    base = checksum(pseudo + struct.pack("!HHLLBBHHH", 0, port, 0, 0, 5 << 4, 0x02, 64240, 0, 0))
    rnd = random.Random(5)
    sent = errors = 0
    burst = 500
    t0 = time.monotonic()
    for i in range(count):
        sport = rnd.randrange(1024, 65536)
        seq = rnd.getrandbits(32)
        c = base + sport + (seq >> 16) + (seq & 0xFFFF)
        while c >> 16:
            c = (c & 0xFFFF) + (c >> 16)
        hdr = struct.pack("!HHLLBBHHH", sport, port, seq, 0, 5 << 4, 0x02, 64240, ~c & 0xFFFF, 0)
        try:
            s.sendto(hdr, (dst, 0))
            sent += 1
        except OSError:
            errors += 1
        if i % burst == burst - 1:
            # Keep to the schedule: `secs` in all, a burst at a time.
            due = t0 + secs * (i + 1) / count
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    out(sent=sent, errors=errors, secs=time.monotonic() - t0)


def hold(bind, port, backlog):
    """Listen and never accept."""
    ls = listener(bind, int(port), int(backlog))
    ready()
    time.sleep(3600)


MODES = {
    "sink": sink,
    "send": send,
    "fanout": fanout,
    "fanin": fanin,
    "greet_first": greet_first,
    "after_greeting": after_greeting,
    "refused": refused,
    "resetter": resetter,
    "reset_client": reset_client,
    "paced": paced,
    "drain": drain,
    "flood": flood,
    "hold": hold,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
