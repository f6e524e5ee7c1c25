"""Sandbox-to-host downloads: host peak RSS growth and throughput of `download_file_from_sandbox_to_local`.

Each backend runs in a fresh child process (so its VmHWM starts clean): one episode creates a sandbox, makes a
sparse 250 MiB file (`truncate -s 250M`) and a dense one of random bytes, then downloads the sparse file six
times and the dense one three times through `ResearchEnv.step`, with the episode cap raised so every download
transfers. Reported: seconds per download (median), MiB/s, the host's peak RSS growth over the downloads, and
the disk the downloaded copies take on the host.

Command: `python benchmarks/bench_downloads.py [--dense-mib 64] [--backends process docker]`
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
from pathlib import Path
from miroenv import ResearchEnv, Task
from miroenv.protocol.calls import ToolCall
from miroenv.protocol.mcp_xml import McpXmlFormat
from miroenv.sandbox import make_backend

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
def call(tool, **arguments):
    return str(McpXmlFormat().render_call(ToolCall(server="tool-python", name=tool, arguments=arguments)))

snapshot, kind, out, dense_mib = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
backend = make_backend(kind)
env = ResearchEnv(snapshot, sandbox=backend, output_dir=out, max_episode_download_bytes=4 << 30)
env.reset(seed=0, options={"task": Task(task_id="bench", question="?")})
sid = env.step(call("create_sandbox"))[0].rsplit(" ", 1)[1]
env.step(call("run_command", sandbox_id=sid,
              command=f"truncate -s 250M sparse.bin && head -c {dense_mib}M /dev/urandom > dense.bin"))
before = hwm()
runs = {}
for name, count in (("sparse.bin", 6), ("dense.bin", 3)):
    times, disk = [], 0
    for i in range(count):
        start = time.perf_counter()
        observation = env.step(call("download_file_from_sandbox_to_local", sandbox_id=sid,
                                    sandbox_file_path=f"/home/user/{name}", local_filename=f"{i}-{name}"))[0]
        times.append(time.perf_counter() - start)
        path = Path(observation.removeprefix("File downloaded successfully to: "))
        size = path.stat().st_size
        disk += path.stat().st_blocks * 512
    runs[name] = {"times": times, "size": size, "disk": disk}
peak = hwm()
env.close()
backend.close()
print(json.dumps({"growth": peak - before, "runs": runs}))
"""


def main() -> None:
    """Run the child per backend and print one table row per backend and file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense-mib", type=int, default=64)
    parser.add_argument("--backends", nargs="+", default=["process", "docker"])
    args = parser.parse_args()
    from miroenv.demo import build_demo

    with tempfile.TemporaryDirectory(prefix="bench-downloads-") as work:
        snapshot = build_demo(Path(work) / "demo")
        print(
            "| backend | file | downloads | s per download (median) | MiB/s | host disk for all copies | peak RSS growth |"
        )
        print("|---|---|---|---|---|---|---|")
        for kind in args.backends:
            run = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    str(snapshot),
                    kind,
                    str(Path(work) / kind),
                    str(args.dense_mib),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            report = json.loads(run.stdout.strip().splitlines()[-1])
            growth = report["growth"] / 2**20
            for name, result in report["runs"].items():
                median = statistics.median(result["times"])
                mib = result["size"] / 2**20
                print(
                    f"| {kind} | {name} ({mib:.0f} MiB) | {len(result['times'])} | {median:.2f} | "
                    f"{mib / median:.0f} | {result['disk'] / 2**20:.1f} MiB | {growth:.1f} MiB |"
                )


if __name__ == "__main__":
    main()
