#!/usr/bin/env python3
"""flows.py server PORT | client HOST PORT N — idle TCP flows for the memory figure.

server: accepts every connection on 127.0.0.1:PORT and holds it open, idle,
until killed (at most 10 minutes).
client: opens N connections to HOST:PORT, prints `open=N` once all are
established, then holds them until its stdin closes (at most 10 minutes)."""
import resource, select, socket, sys, time

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
deadline = time.monotonic() + 600

if sys.argv[1] == "server":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[2])))
    s.listen(4096)
    s.settimeout(1.0)
    held = []
    while time.monotonic() < deadline:
        try:
            c, _ = s.accept()
            held.append(c)
        except socket.timeout:
            pass
else:
    host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    conns = []
    for _ in range(n):
        conns.append(socket.create_connection((host, port), timeout=10))
    # A byte each way would prove the path; established is what we count.
    print(f"open={len(conns)}", flush=True)
    select.select([sys.stdin], [], [], max(0.0, deadline - time.monotonic()))
