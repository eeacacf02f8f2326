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
With STOPFILE, it goes on after N counted events until that file exists
(the head-of-line run: events sent while a bulk import is captured and
fanned out), and sends one every 20 ms without waiting for its request, so
that a request held back holds back no event after it; then waits for
them all.

    latency.py "psql command line" access.log N [WARMUP [STOPFILE]]
      ->  prints "p50 p99 commit_p50 count" in ms
"""
import os
import subprocess
import sys
import time

psql, log, n = sys.argv[1].split(), sys.argv[2], int(sys.argv[3])
warmup = int(sys.argv[4]) if len(sys.argv) > 4 else 0
stopfile = sys.argv[5] if len(sys.argv) > 5 else None
p = subprocess.Popen(psql, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
f = open(log)
f.seek(0, 2)
seen = {}
partial = ""


def read_log():
    """Takes the new entries of nginx's log (it may be caught mid-line)."""
    global partial
    partial += f.read()
    *lines, partial = partial.split("\n")
    for line in lines:
        ts, i = line.split()
        seen.setdefault(i, float(ts) + 0.0005)


def wait_for(mids, seconds):
    deadline = time.monotonic() + seconds
    while True:
        read_log()
        missing = [m for m in mids if m not in seen]
        if not missing:
            return
        if time.monotonic() > deadline:
            sys.exit("latency.py: no request for " + missing[0])
        time.sleep(0.0002)


sent = []                               # (message id, commit time, reply time)
k = 0
give_up = time.monotonic() + 1800       # a STOPFILE that never comes
while k < warmup + n or (stopfile and not os.path.exists(stopfile)):
    if time.monotonic() > give_up:
        sys.exit("latency.py: " + stopfile + " did not appear in 30 minutes")
    p.stdin.write("SELECT 'msg_' || webhook_publish('bench.lat', '{}')"
                  " || ' ' || extract(epoch FROM clock_timestamp());\n")
    p.stdin.flush()
    mid, t = p.stdout.readline().split()
    returned = time.time()
    # at idle, each event waits for its request, so that the next finds the
    # worker idle; with STOPFILE they go out on time whatever is delivered
    # (a request held back must not hold back the events after it)
    if not stopfile:
        wait_for([mid], 30)
    if k >= warmup:
        sent.append((mid, float(t), returned))
    k += 1
    time.sleep(0.02)
p.stdin.close()
p.wait()
wait_for([m for m, _, _ in sent], 600)
lat = [(seen[m] - t) * 1000 for m, t, _ in sent]
commit = [(r - t) * 1000 for _, t, r in sent]
q = lambda v, x: sorted(v)[min(len(v) - 1, int(x * len(v)))]
print(f"{q(lat, 0.5):.2f} {q(lat, 0.99):.2f} {q(commit, 0.5):.2f} {len(lat)}")
