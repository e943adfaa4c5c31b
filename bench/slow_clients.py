#!/usr/bin/env python3
"""The issue-11 slow-client check against a running server (loopback only).

    python3 bench/slow_clients.py PORT [COUNT]

Opens COUNT (900) connections that send `GET / HTTP/1.1\\r\\nHost: x\\r\\n` and nothing more,
then times a normal request (`GET /healthz`) while they hang, and how long until the server has
closed every one of them and what it said. Needs `ulimit -n` above COUNT + a few.
"""
import selectors
import socket
import sys
import time

port = int(sys.argv[1])
count = int(sys.argv[2]) if len(sys.argv) > 2 else 900
addr = ("127.0.0.1", port)

opened = time.monotonic()
stalled = []
refused = 0
for _ in range(count):
    s = socket.create_connection(addr)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    s.setblocking(False)
    stalled.append(s)
print(f"{count} stalled connections open in {time.monotonic() - opened:.2f} s")

t = time.monotonic()
normal = socket.create_connection(addr, timeout=30)
normal.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
reply = normal.recv(200).split(b"\r\n", 1)[0].decode()
print(f"a normal request meanwhile: {reply!r} in {(time.monotonic() - t) * 1000:.1f} ms")

sel = selectors.DefaultSelector()
for s in stalled:
    sel.register(s, selectors.EVENT_READ)
answers = {}
closed_at = []
deadline = time.monotonic() + 120
while len(closed_at) < count and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=1):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except (ConnectionResetError, BlockingIOError):
            data = b""
        if data:
            line = data.split(b"\r\n", 1)[0].decode(errors="replace")
            answers[line] = answers.get(line, 0) + 1
            continue
        sel.unregister(s)
        s.close()
        closed_at.append(time.monotonic() - opened)
still_open = count - len(closed_at)
print(f"closed by the server: {len(closed_at)} (still open after 120 s: {still_open})")
if closed_at:
    print(f"first closed at {min(closed_at):.2f} s, last at {max(closed_at):.2f} s after the first opened")
print("answers:", answers)
sys.exit(1 if still_open else 0)
