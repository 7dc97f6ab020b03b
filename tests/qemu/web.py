#!/usr/bin/env python3
"""web.py ADDR PORT DIR: serve DIR over HTTP for the real-VMM tests, quietly.
Prints "ready" once listening; exits by itself after 600 s."""
import functools
import http.server
import sys
import threading
import time


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main():
    addr, port, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    handler = functools.partial(Quiet, directory=root)
    srv = http.server.ThreadingHTTPServer((addr, port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("ready", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    main()
