#!/usr/bin/env python3
"""Record the TLS records carrying one ClientHello, as a client sends them.

Dev tool for the fixtures in this folder. Listens on 127.0.0.1 only, accepts one connection,
reads until the records carrying the first handshake message are complete, writes exactly those
bytes to OUT, then closes the connection (the client sees a reset or EOF and gives up).

    python3 capture.py OUT PORT &   # then point a client at 127.0.0.1:PORT
"""

import socket
import sys


def hello_records_len(buf):
    """Bytes of buf taken by the records carrying the first handshake message, or None."""
    pos, fragments = 0, b""
    while True:
        if len(buf) < pos + 5:
            return None
        if buf[pos] != 22:
            raise SystemExit(f"record at {pos} has content type {buf[pos]}, not handshake")
        length = int.from_bytes(buf[pos + 3 : pos + 5], "big")
        if len(buf) < pos + 5 + length:
            return None
        fragments += buf[pos + 5 : pos + 5 + length]
        pos += 5 + length
        if len(fragments) >= 4 and len(fragments) >= 4 + int.from_bytes(fragments[1:4], "big"):
            return pos


def main():
    out, port = sys.argv[1], int(sys.argv[2])
    with socket.create_server(("127.0.0.1", port)) as server:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            buf = b""
            while (end := hello_records_len(buf)) is None:
                chunk = conn.recv(65536)
                if not chunk:
                    raise SystemExit(f"client closed after {len(buf)} bytes")
                buf += chunk
    with open(out, "wb") as f:
        f.write(buf[:end])
    print(f"{out}: {end} bytes")


if __name__ == "__main__":
    main()
