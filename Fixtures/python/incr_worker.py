#!/usr/bin/env python3
"""A Python worker: N increments of one counter over one connection, signed like the original client.

    incr_worker.py KEY COUNT        (EPHEMERAL_PIPE, EPHEMERAL_SECRET from the environment)
"""
import hashlib
import hmac
import json
import os
import socket
import sys


def main() -> int:
    key, count = sys.argv[1], int(sys.argv[2])
    secret = os.environ.get("EPHEMERAL_SECRET")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(os.environ["EPHEMERAL_PIPE"])
    stream = conn.makefile("rwb")
    for _ in range(count):
        payload = json.dumps({"action": "incr", "key": key, "by": 1}, separators=(",", ":"))
        if secret:
            mac = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            payload = payload[:-1] + ',"hmac":"' + mac + '"}'
        stream.write(payload.encode() + b"\n")
        stream.flush()
        reply = json.loads(stream.readline())
        if not reply.get("ok"):
            print("incr failed:", reply, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
