#!/usr/bin/env python3
"""flows.py server PORT | client HOST PORT N — idle TCP flows for the memory figure;
flows.py acceptor PORT | churn HOST PORT N — time to open N new connections.

server: accepts every connection on 127.0.0.1:PORT and holds it open, idle,
until killed (at most 10 minutes).
acceptor: accepts and closes every connection on 127.0.0.1:PORT.
churn: opens N connections to HOST:PORT, 100 at a time (each batch opened,
then closed), and prints the seconds it took.
client: opens N connections to HOST:PORT, prints `open=N` once all are
established, then holds them until its stdin closes (at most 10 minutes)."""
import resource, select, socket, sys, time

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
deadline = time.monotonic() + 600

if sys.argv[1] == "acceptor":
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[2])))
    s.listen(4096)
    while time.monotonic() < deadline:
        s.accept()[0].close()
elif sys.argv[1] == "churn":
    host, port, n = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    t = time.perf_counter()
    done = 0
    while done < n:
        batch = [socket.create_connection((host, port), timeout=10) for _ in range(min(100, n - done))]
        for c in batch:
            c.close()
        done += len(batch)
    print(f"{time.perf_counter() - t:.2f}")
elif sys.argv[1] == "server":
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
