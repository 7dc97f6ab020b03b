#!/usr/bin/env python3
"""ready.py N AIRLOCK [ARGS...] — startup time to READY=1.

Runs AIRLOCK N times with `--fd K` on one end of a DGRAM socketpair and
$NOTIFY_SOCKET on an abstract datagram socket this script listens on; each
time, the clock runs from just before the spawn to the READY=1 datagram.
The same spawn of /bin/true (to exit) gives the cost of the spawn itself.
Prints ready_ms (median), ready_ms_min, ready_ms_max, spawn_ms (median)."""
import os, socket, statistics, subprocess, sys, time

n, cmd = int(sys.argv[1]), sys.argv[2:]
ready, spawn = [], []
for i in range(n):
    name = f"airlock-bench-ready-{os.getpid()}-{i}"
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind("\0" + name)
    ns.settimeout(5.0)
    vmm, ours = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    env = dict(os.environ, NOTIFY_SOCKET="@" + name)
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd + ["--fd", str(ours.fileno())], pass_fds=[ours.fileno()],
                         env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            msg = ns.recv(4096)
            if b"READY=1" in msg.split(b"\n"):
                break
        ready.append((time.perf_counter() - t0) * 1e3)
    except socket.timeout:
        print("ready: no READY=1 within 5 s", file=sys.stderr)
        p.kill()
        sys.exit(1)
    finally:
        ours.close()
        p.terminate()
        p.wait(timeout=5)
        vmm.close()
        ns.close()
    t0 = time.perf_counter()
    subprocess.run(["/bin/true"], env=env)
    spawn.append((time.perf_counter() - t0) * 1e3)
print(f"ready_ms={statistics.median(ready):.2f} ready_ms_min={min(ready):.2f} "
      f"ready_ms_max={max(ready):.2f} spawn_ms={statistics.median(spawn):.2f}")
