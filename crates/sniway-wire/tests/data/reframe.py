#!/usr/bin/env python3
"""Re-frame a captured ClientHello: the same handshake bytes in records of at most N bytes.

Dev tool for the fixtures in this folder. Keeps the first record's legacy_record_version.

    python3 reframe.py IN OUT N
"""

import sys


def main():
    src, out, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    data = open(src, "rb").read()
    version, pos, handshake = data[1:3], 0, b""
    while pos < len(data):
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        handshake += data[pos + 5 : pos + 5 + length]
        pos += 5 + length
    records = b""
    for i in range(0, len(handshake), size):
        fragment = handshake[i : i + size]
        records += b"\x16" + version + len(fragment).to_bytes(2, "big") + fragment
    open(out, "wb").write(records)
    print(f"{out}: {len(records)} bytes, {-(-len(handshake) // size)} records")


if __name__ == "__main__":
    main()
