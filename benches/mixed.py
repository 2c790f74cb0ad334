#!/usr/bin/env python3
"""Many transfers at once against one server: N uploads of FILE (each to a new image) and N
downloads of IMAGE, all started together with curl; prints one line of JSON: the aggregate
MB/s (all bytes moved over the wall time), the server's peak RSS in MiB (PIDS and their
children, sampled every 0.1 s), the failures, and the ids of the images uploaded.

    benches/mixed.py URL FILE IMAGE N PID...     (TOKEN in the environment: X-Auth-Token)
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

url, path, image, n, pids = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]
token = os.environ.get("TOKEN")
auth = {"X-Auth-Token": token} if token else {}
size = os.path.getsize(path)


def create():
    body = json.dumps({"name": "mixed", "disk_format": "raw", "container_format": "bare"})
    r = urllib.request.Request(url + "/v2/images", body.encode(), method="POST",
                               headers=dict(auth, **{"Content-Type": "application/json"}))
    return json.load(urllib.request.urlopen(r))["id"]


def rss_mib():
    total, seen = 0, set(pids)
    for p in list(seen):
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                seen.update(f.read().split())
        except OSError:
            pass
    for p in seen:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


ids = [create() for _ in range(n)]
hdr = [a for k, v in auth.items() for a in ("-H", f"{k}: {v}")]
peak, done = [0.0], threading.Event()


def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss_mib())
        time.sleep(0.1)


threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
procs = [subprocess.Popen(["curl", "-sf", "-X", "PUT", f"{url}/v2/images/{i}/file", *hdr,
                           "-H", "Content-Type: application/octet-stream", "-T", path,
                           "-o", "/dev/null"]) for i in ids]
procs += [subprocess.Popen(["curl", "-sf", f"{url}/v2/images/{image}/file", *hdr,
                            "-o", "/dev/null"]) for _ in range(n)]
failures = sum(p.wait() != 0 for p in procs)
wall = time.perf_counter() - t0
done.set()
print(json.dumps({"mbps": round(2 * n * size / wall / 1e6), "peak_rss_mib": round(peak[0]),
                  "failures": failures, "seconds": round(wall, 1), "ids": ids}))
