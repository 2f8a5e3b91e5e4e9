#!/usr/bin/env python3
"""A Python worker that stores COUNT distinct keys as fast as the broker takes them, pipelined, signed like the
original client, and prints each key the broker acknowledged (in batches, flushed).

    set_worker.py PREFIX COUNT        (EPHEMERAL_PIPE, EPHEMERAL_SECRET from the environment)

Keys are PREFIX-0 … PREFIX-(COUNT-1); each value is value_for(key): the key repeated to 100 characters, so a value
cut short or stored under another key cannot match. Used by the "nothing lost" test, which SIGKILLs some workers
midway.
"""
import hashlib
import hmac
import json
import os
import socket
import sys

WINDOW = 64


def value_for(key: str) -> str:
    return ((key + "|") * (100 // (len(key) + 1) + 1))[:100]


def main() -> int:
    prefix, count = sys.argv[1], int(sys.argv[2])
    secret = os.environ.get("EPHEMERAL_SECRET", "").encode()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(os.environ["EPHEMERAL_PIPE"])
    reader = conn.makefile("rb")
    sent = 0
    acked = 0
    unprinted = []
    while acked < count:
        batch = []
        while sent < count and sent - acked < WINDOW:
            key = f"{prefix}-{sent}"
            payload = json.dumps(
                {"action": "set", "key": key, "value": value_for(key), "ttl": 600000, "id": sent},
                separators=(",", ":"))
            if secret:
                mac = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
                payload = payload[:-1] + ',"hmac":"' + mac + '"}'
            batch.append(payload.encode() + b"\n")
            sent += 1
        if batch:
            conn.sendall(b"".join(batch))
        reply = json.loads(reader.readline())
        if not reply.get("ok"):
            print("set failed:", reply, file=sys.stderr)
            return 1
        acked += 1
        unprinted.append(f"{prefix}-{reply['id']}\n")
        if len(unprinted) == 256 or acked == count:
            sys.stdout.write("".join(unprinted))
            sys.stdout.flush()
            unprinted.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
