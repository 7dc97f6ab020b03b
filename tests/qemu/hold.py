#!/usr/bin/env python3
"""hold.py ADDR PORT: a TCP server that greets each connection with
"hello" and then keeps it open, silent, for as long as the peer does (the
migration test's connection that cannot follow). Prints "ready"."""
import socket, sys, threading

srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(16)
print("ready", flush=True)
held = []


def hold(c):
    c.sendall(b"hello\n")
    while c.recv(4096):
        pass


while True:
    c, _ = srv.accept()
    held.append(c)
    threading.Thread(target=hold, args=(c,), daemon=True).start()
