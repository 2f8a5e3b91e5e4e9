#!/usr/bin/env python3
"""Reads the tables `Benchmarks/run.sh` printed and prints the issue's targets as ratios, with met or not.

    python3 Benchmarks/ratios.py < /tmp/bench.md
"""
import re
import sys

text = sys.stdin.read()
rows = {}
for line in text.splitlines():
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    if len(cells) == 8 and cells[1].isdigit() and cells[7][:1].isdigit():
        workload, conns, target, ops, p50, p99, p999, cpu = cells
        total, user = (float(x) for x in re.findall(r"[\d.]+", cpu)[:2])
        rows[(workload, int(conns), target)] = dict(ops=float(ops), p999=float(p999), cpu=total, user=user)
figures = {}
for line in text.splitlines():
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    if len(cells) == 2:
        figures[cells[0]] = cells[1]


def row(workload, conns, target):
    return rows[(workload, conns, target)]


def verdict(ok):
    return "yes" if all(ok) else ("no" if not any(ok) else "partly")


print("| target | result | met? |")
print("|---|---|---|")
points = [(w, c) for w in ("get", "set") for c in (8, 32)]
ratios = [row(w, c, "broker")["ops"] / row(w, c, "redis")["ops"] for w, c in points]
print("| get/set at 8 and 32 connections ≥ Redis's throughput | %s | %s |" % (
    ", ".join("%s %.2f (%d)" % (w, r, c) for (w, c), r in zip(points, ratios)), verdict([r >= 1 for r in ratios])))
cpu = [(row(w, c, "broker")["cpu"], row(w, c, "redis")["cpu"]) for w, c in points]
print("| … and no more server CPU per request than Redis (µs, broker vs Redis) | %s | %s |" % (
    ", ".join("%s %.2f vs %.2f (%d)" % (w, b, r, c) for (w, c), (b, r) in zip(points, cpu)),
    verdict([b <= r for b, r in cpu])))
floor = [row(w, c, "broker")["ops"] / row(w, c, "floor")["ops"] for w, c in points]
print("| get/set ≥ 0.75 of the floor's throughput | %s | %s |" % (
    ", ".join("%s %.2f (%d)" % (w, r, c) for (w, c), r in zip(points, floor)), verdict([r >= 0.75 for r in floor])))
tail = [row(w, c, "broker")["p999"] / row(w, c, "floor")["p999"] for w, c in points]
print("| p99.9 ≤ 2× the floor's | %s | %s |" % (
    ", ".join("%s %.2f× (%d)" % (w, r, c) for (w, c), r in zip(points, tail)), verdict([r <= 2 for r in tail])))
ping16 = row("lease+release, pipelined", 16, "ping-floor")["ops"]
sequential = row("lease+release", 16, "broker")["ops"]
pipelined = row("lease+release, pipelined", 16, "broker")["ops"]
print("| lease+release at 16 connections ≥ 0.6 of the floor's ping rate (16) | pipelined %.0f / %.0f = %.2f; "
      "one round trip each %.0f / %.0f = %.2f (two round trips cannot pass 0.5) | %s |" % (
          pipelined, ping16, pipelined / ping16, sequential, ping16, sequential / ping16,
          "pipelined only" if pipelined / ping16 >= 0.6 > sequential / ping16 else verdict([pipelined / ping16 >= 0.6])))
signed = row("set, unsigned vs signed", 8, "signed")["ops"] / row("set, unsigned vs signed", 8, "broker")["ops"]
print("| HMAC-signed set at 8 connections ≥ 0.5 of unsigned | %.2f | %s |" % (signed, verdict([signed >= 0.5])))
per_item = [int(re.search(r"\((\d+) B/item\)", v).group(1)) for k, v in figures.items() if k.startswith("RSS after")]
print("| ≤ 300 bytes of RSS per stored 100-byte item | %s | %s |" % (
    ", ".join("%d B (%s items)" % (b, n) for b, n in zip(per_item, ("10,000", "100,000"))),
    verdict([b <= 300 for b in per_item])))
def change(key):
    return float(re.search(r"\(([+-][\d.]+) %\)", figures[key]).group(1))
side = {k: v for k, v in figures.items() if k.startswith("side by side")}
side_broker = change(next(k for k in side if k.startswith("side by side, broker")))
long_fill = [change(k) for k in figures if k.startswith("one long fill")]
print("| fill rate at 100,000 items within 10 %% of the rate at 0 (not falling more than 10 %%) | side by side: "
      "broker %+.1f %%, Redis %+.1f %%, floor %+.1f %%, the store alone %+.1f %%; one long fill (broker, Redis, floor): %s "
      "| %s |" % (
          side_broker, change("side by side, Redis, the same way"),
          change("side by side, the floor (stores nothing), the same way"),
          change(next(k for k in figures if k.startswith("the store alone"))),
          ", ".join("%+.1f %%" % f for f in long_fill), verdict([side_broker >= -10])))
plain = float(figures["`/bin/true`, median of 20"].split()[0])
wrapped = float(figures["`ephemeral-broker run -- true`, median of 20"].split()[0])
print("| wrap overhead ≤ 10 ms median | %.1f ms − %.1f ms = %.1f ms | %s |" % (
    wrapped, plain, wrapped - plain, verdict([wrapped - plain <= 10])))
