#!/usr/bin/env python3
"""libvirt-launch.py SOCKFD PIDFILE HELPER ARGS...: start a slirp-helper the
way Debian 12's libvirt 9.0 does, for tests/vmm.rs.

1. Probe: HELPER --print-capabilities must exit 0 and print a JSON object
   (else exit 3, as libvirt fails the domain start).
2. Double fork with setsid in between, so the helper's parent is PID 1 (or the
   nearest subreaper) by the time it runs.
3. In the helper process, before exec: take an fcntl (POSIX) write lock on
   PIDFILE and write the pid there, keeping that descriptor open across exec
   (libvirt finds the helper by this lock); move the VMM socket from SOCKFD
   to descriptor 32; stdin and stdout on /dev/null; stderr on a pipe whose
   read end is closed at once (libvirt stops reading after start-up); SIGPIPE
   back to its default action (Python ignores it, libvirt does not).
4. Print the helper's pid on stdout and exit 0.
ARGS may contain {fd}, replaced by 32."""
import fcntl
import json
import os
import signal
import subprocess
import sys

TARGET_FD = 32


def main():
    sock_fd, pidfile, helper = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    args = [a.replace("{fd}", str(TARGET_FD)) for a in sys.argv[4:]]

    probe = subprocess.run([helper, "--print-capabilities"], capture_output=True)
    try:
        caps = json.loads(probe.stdout)
    except ValueError:
        caps = None
    if probe.returncode != 0 or not isinstance(caps, dict):
        sys.stderr.write("probe failed: rc=%d out=%r\n" % (probe.returncode, probe.stdout))
        sys.exit(3)

    rd, wr = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(rd)
        os.setsid()
        pid2 = os.fork()
        if pid2 == 0:
            os.close(wr)
            try:
                fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.write(fd, b"%d\n" % os.getpid())
                os.set_inheritable(fd, True)
                os.dup2(sock_fd, TARGET_FD)
                if sock_fd != TARGET_FD:
                    os.close(sock_fd)
                err_r, err_w = os.pipe()
                os.dup2(err_w, 2)
                os.close(err_w)
                os.close(err_r)
                null = os.open("/dev/null", os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(null, 1)
                os.close(null)
                signal.signal(signal.SIGPIPE, signal.SIG_DFL)
                os.execv(helper, [helper] + args)
            finally:
                os._exit(127)
        os.write(wr, b"%d\n" % pid2)
        os._exit(0)
    os.close(wr)
    os.waitpid(pid, 0)
    data = b""
    while True:
        chunk = os.read(rd, 64)
        if not chunk:
            break
        data += chunk
    sys.stdout.write(data.decode())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
