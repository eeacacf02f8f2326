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

The same clock_timestamp() to the moment psql hands back the reply is the
publisher's own commit (the WAL flush it waits for, and the way back): the
part of the latency no worker can remove.  Its median is printed third.

The first WARMUP events (default 0) are sent the same way but not counted.

    latency.py "psql command line" access.log N [WARMUP]  ->  prints "p50 p99 commit_p50" in ms
"""
import subprocess
import sys
import time

psql, log, n = sys.argv[1].split(), sys.argv[2], int(sys.argv[3])
warmup = int(sys.argv[4]) if len(sys.argv) > 4 else 0
p = subprocess.Popen(psql, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
f = open(log)
f.seek(0, 2)
seen = {}
partial = ""
lat = []
commit = []
for k in range(warmup + n):
    p.stdin.write("SELECT 'msg_' || webhook_publish('bench.lat', '{}')"
                  " || ' ' || extract(epoch FROM clock_timestamp());\n")
    p.stdin.flush()
    mid, t = p.stdout.readline().split()
    returned = time.time()
    deadline = time.monotonic() + 30
    while mid not in seen:
        # nginx may be caught mid-line: keep a partial line for the next read
        partial += f.read()
        *lines, partial = partial.split("\n")
        for line in lines:
            ts, i = line.split()
            seen.setdefault(i, float(ts) + 0.0005)
        if mid not in seen:
            if time.monotonic() > deadline:
                sys.exit("latency.py: no request for " + mid)
            time.sleep(0.0002)
    if k >= warmup:
        lat.append((seen[mid] - float(t)) * 1000)
        commit.append((returned - float(t)) * 1000)
    time.sleep(0.02)
p.stdin.close()
p.wait()
q = lambda v, x: sorted(v)[min(len(v) - 1, int(x * len(v)))]
print(f"{q(lat, 0.5):.2f} {q(lat, 0.99):.2f} {q(commit, 0.5):.2f}")
