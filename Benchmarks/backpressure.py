#!/usr/bin/env python3
"""What a peer that does not read costs the broker, and what other clients wait meanwhile, on a release build.

usage: python3 Benchmarks/backpressure.py [BROKER_BINARY]   (default .build-release/release/ephemeral-broker)

Prints a Markdown table for BENCHMARKS.md: the broker's peak RSS growth (VmHWM) and another client's ping latency
(p50, p99, max over the attack) for replies piled behind a parked wait, 16 clients that never read, and 64,000 waits
lapsing within a second. The tests (BackpressureTests, CI's load step) assert loose bounds on the debug build; these
are the figures.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

binary = sys.argv[1] if len(sys.argv) > 1 else ".build-release/release/ephemeral-broker"
VALUE = '"' + "x" * 262_142 + '"'  # 256 KiB, the largest value by default


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class Line:
    """A blocking NDJSON connection."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.reader = self.sock.makefile("rb")

    def request(self, text):
        self.sock.sendall(text.encode() + b"\n")
        return json.loads(self.reader.readline())


def send_while_read(sock, data, stall=1.0):
    """Sends as much as the peer takes before it stops taking any for `stall` seconds."""
    sock.settimeout(stall)
    sent = 0
    try:
        while sent < len(data):
            sent += sock.send(data[sent:])
    except (socket.timeout, BlockingIOError, BrokenPipeError, ConnectionResetError):
        pass
    return sent


def pings(control, seconds=None, count=None):
    """Ping latencies in ms, for `seconds` or `count` pings."""
    times = []
    end = time.monotonic() + (seconds or 1e9)
    while time.monotonic() < end and (count is None or len(times) < count):
        start = time.perf_counter()
        control.request('{"action":"ping"}')
        times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times):
    times = sorted(times)
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))]
    return f"{pick(0.5):.2f} / {pick(0.99):.2f} / {times[-1]:.2f}"


def broker():
    directory = tempfile.mkdtemp(prefix="ebbp-")
    path = directory + "/b.sock"
    process = subprocess.Popen([binary, "serve", "--socket", path, "--log-level", "error"], stdout=subprocess.PIPE)
    process.stdout.readline()
    control = Line(path)
    control.request('{"action":"set","key":"big","ttl":600000,"value":%s}' % VALUE)
    return process, path, control


def gets(count):
    return ('{"action":"get","key":"big"}\n' * count).encode()


def connect(path, count):
    sockets = [socket.socket(socket.AF_UNIX) for _ in range(count)]
    for sock in sockets:
        sock.connect(path)
    return sockets


def under_attack(process, control, attackers, data):
    """Each attacker sends `data` while it is read; meanwhile another client pings. The RSS growth and the pings."""
    before = peak_rss(process.pid)
    senders = [threading.Thread(target=send_while_read, args=(attacker, data)) for attacker in attackers]
    for sender in senders:
        sender.start()
    latencies = pings(control, seconds=1.5)
    for sender in senders:
        sender.join()
    growth = peak_rss(process.pid) - before
    process.kill()
    return growth, latencies


def behind_a_parked_wait():
    process, path, control = broker()
    attackers = connect(path, 1)
    attackers[0].sendall(b'{"action":"wait","key":"never","timeout":60000}\n')
    growth, latencies = under_attack(process, control, attackers, gets(4_000))
    return "4,000 `get`s of 256 KiB behind a parked `wait`, one connection", growth, latencies


def never_reading():
    process, path, control = broker()
    growth, latencies = under_attack(process, control, connect(path, 16), gets(400))
    return "16 clients that never read, 400 `get`s of 256 KiB each", growth, latencies


def mass_expiry():
    process, path, control = broker()
    connections = connect(path, 64)
    before = peak_rss(process.pid)
    deadline = time.monotonic() + 2
    burst = b'{"action":"wait","key":"never","timeout":2000}\n' * 1_000
    for connection in connections:
        connection.sendall(burst)
    while time.monotonic() < deadline - 0.3:
        control.request('{"action":"ping"}')
    latencies = pings(control, seconds=1.8)
    growth = peak_rss(process.pid) - before
    process.kill()
    return "64,000 waits lapsing within a second (64 connections)", growth, latencies


print("| attack | peak RSS growth | another client's ping: p50 / p99 / max (ms) |")
print("|---|---|---|")
for scenario in (behind_a_parked_wait, never_reading, mass_expiry):
    name, growth, latencies = scenario()
    print(f"| {name} | {growth / 1048576:.1f} MiB | {summary(latencies)} |")
