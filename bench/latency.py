#!/usr/bin/env python3
"""Latency at idle for bench/run.sh: commit -> request received.

Publishes N events one at a time through one psql session (no process is
started per event, so the measurement is not the cost of forking), and
finds each request in nginx's access log ("$msec $http_webhook_id").  The
time runs from clock_timestamp() in the publishing statement, evaluated
after webhook_publish and just before the commit, to nginx's log entry.
nginx logs milliseconds, truncated: each entry is taken at the middle of
its millisecond, so the error is +-0.5 ms and unbiased.  Events are 20 ms
apart, so each one finds the worker idle.

    latency.py "psql command line" access.log N   ->  prints "p50 p99" in ms
"""
import subprocess
import sys
import time

psql, log, n = sys.argv[1].split(), sys.argv[2], int(sys.argv[3])
p = subprocess.Popen(psql, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
f = open(log)
f.seek(0, 2)
seen = {}
lat = []
for _ in range(n):
    p.stdin.write("SELECT 'msg_' || webhook_publish('bench.lat', '{}')"
                  " || ' ' || extract(epoch FROM clock_timestamp());\n")
    p.stdin.flush()
    mid, t = p.stdout.readline().split()
    deadline = time.monotonic() + 30
    while mid not in seen:
        for line in f.readlines():
            ts, i = line.split()
            seen.setdefault(i, float(ts) + 0.0005)
        if mid not in seen:
            if time.monotonic() > deadline:
                sys.exit("latency.py: no request for " + mid)
            time.sleep(0.0002)
    lat.append((seen[mid] - float(t)) * 1000)
    time.sleep(0.02)
p.stdin.close()
p.wait()
d = sorted(lat)
q = lambda x: d[min(len(d) - 1, int(x * len(d)))]
print(f"{q(0.5):.2f} {q(0.99):.2f}")
