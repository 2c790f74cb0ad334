#!/usr/bin/env python3
"""The least an HTTP server can do to send a file: answer every request on loopback with FILE,
as one os.sendfile loop on a blocking socket. compare-glance.sh downloads from it beside the
servers it compares, so that the cold download has a ceiling measured on this machine for the
HTTP path itself (a page-cache read, the loopback TCP stack and curl), not only `cat`'s.

    benches/sendfile-server.py FILE   (prints the port it listens on, serves until killed)
"""
import os
import socket
import sys

path = sys.argv[1]
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    with conn:
        conn.recv(65536)  # one request, whatever it asks: the bench sends a plain GET
        size = os.path.getsize(path)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % size)
        fd = os.open(path, os.O_RDONLY)
        try:
            sent = 0
            while sent < size:
                sent += os.sendfile(conn.fileno(), fd, sent, min(size - sent, 16 << 20))
        finally:
            os.close(fd)
