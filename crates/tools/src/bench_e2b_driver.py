"""The Python half of `firepit bench e2b`: one process per SDK, told what to time on stdin.

argv[1] is `e2b` (E2B's SDK, configured by E2B's own environment variables) or `firepit`
(firepit's SDK on $FIREPIT_SOCKET). Commands, one per line; each answers one JSON line:
  first-run [T]     create a sandbox (lease a VM) of template T (default $FIREPIT_BENCH_TEMPLATE
                    or `base`), run `true`, time both; then kill it (untimed)
  write MIB         create, write MIB MiB to a file (timed), kill
"""

import json
import os
import sys
import time

SDK = sys.argv[1]
TEMPLATE = os.environ.get("FIREPIT_BENCH_TEMPLATE", "base")

if SDK == "e2b":
    from e2b import Sandbox
else:
    import firepit

    client = firepit.Client(os.environ["FIREPIT_SOCKET"])


def first_run(template: str) -> dict:
    started = time.perf_counter()
    if SDK == "e2b":
        sandbox = Sandbox.create(template, timeout=120)
        sandbox.commands.run("true")
        elapsed = time.perf_counter() - started
        sandbox.kill()
    else:
        lease = client.lease(template, ttl=120)
        lease.exec(["true"])
        elapsed = time.perf_counter() - started
        lease.release()
    return {"ms": elapsed * 1000}


def write(mib: int) -> dict:
    data = os.urandom(mib << 20)
    if SDK == "e2b":
        sandbox = Sandbox.create(TEMPLATE, timeout=120)
        started = time.perf_counter()
        sandbox.files.write("/tmp/bench.bin", data)
        elapsed = time.perf_counter() - started
        sandbox.kill()
    else:
        lease = client.lease(TEMPLATE, ttl=120)
        started = time.perf_counter()
        lease.write_file("/tmp/bench.bin", data)
        elapsed = time.perf_counter() - started
        lease.release()
    return {"mb_s": (mib * 1.048576) / elapsed}


for line in sys.stdin:
    command, *args = line.split()
    try:
        answer = first_run(args[0] if args else TEMPLATE) if command == "first-run" else write(int(args[0]))
    except Exception as error:  # reported to the bench, which fails with it
        answer = {"error": f"{type(error).__name__}: {error}"}
    print(json.dumps(answer), flush=True)
