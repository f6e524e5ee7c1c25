"""Sandbox benchmarks (DESIGN.md §9), measured side by side in one run.

- Python call round trip in a warm Docker sandbox (agent over the attach socket; target p50 <= 2 ms);
- the same call as one ``docker exec`` per call (SDK exec API, and the ``docker`` CLI), as ratios;
- the same call through a published peer, llm-sandbox with its Docker backend (run with the interpreter
  given by ``--peer-python``, which must have ``llm-sandbox[docker]`` installed), as a ratio;
- the process backend's round trip, for reference;
- acquiring a sandbox from the warm pool (target p50 <= 50 ms), alone and with its first call;
- a cold container from nothing to ready;
- 8 sandboxes driven in parallel (8 threads, one call loop each): calls per second, for both backends.

Usage: ``python benchmarks/bench_sandbox.py [--image miroenv-sandbox:latest] [--peer-python PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

from miroenv.sandbox.docker import DockerSandboxBackend, default_image
from miroenv.sandbox.process import ProcessSandboxBackend

CALL = "1"
"""The measured Python cell: the smallest call, so the figures are the machinery's cost."""


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99 in milliseconds."""
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"n": len(ordered), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99)}


def timed(fn: Callable[[], Any], n: int, warmup: int = 0) -> list[float]:
    """Durations of `n` calls of `fn` (after `warmup` untimed ones)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def round_trip(backend: Any, calls: int) -> dict[str, float]:
    """A warm sandbox's `run_python` round trip."""
    sandbox = backend.create("bench-round-trip")
    try:
        result = sandbox.run_python(CALL, timeout=10)
        assert result.stdout == "1\n", result
        return percentiles(timed(lambda: sandbox.run_python(CALL, timeout=10), calls, warmup=200))
    finally:
        sandbox.close()


def docker_exec(backend: DockerSandboxBackend, calls: int, cli_calls: int) -> dict[str, dict[str, float]]:
    """The same call as ``python3 -c 1`` started by ``docker exec`` in a running sandbox container."""
    sandbox = backend.create("bench-exec")
    api = backend._api
    cid = sandbox.container_id

    def via_api() -> None:
        exec_id = api.exec_create(cid, ["python3", "-c", CALL], user="1000:1000")["Id"]
        api.exec_start(exec_id)

    def via_cli() -> None:
        subprocess.run(["docker", "exec", cid, "python3", "-c", CALL], check=True, capture_output=True)

    try:
        return {
            "sdk": percentiles(timed(via_api, calls, warmup=3)),
            "cli": percentiles(timed(via_cli, cli_calls, warmup=2)),
        }
    finally:
        sandbox.close()


PEER_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from llm_sandbox import SandboxSession
    image, calls = sys.argv[1], int(sys.argv[2])
    start = time.perf_counter()
    with SandboxSession(lang="python", image=image, keep_template=True, verbose=False,
                        skip_environment_setup=True) as session:
        opened = time.perf_counter() - start
        out = session.run("print(1)")
        assert out.exit_code == 0 and out.stdout.strip() == "1", (out.exit_code, out.stdout, out.stderr)
        times = []
        for _ in range(calls):
            t = time.perf_counter()
            session.run("print(1)")
            times.append(time.perf_counter() - t)
    print(json.dumps({"open_s": opened, "times": times}))
    """
)


def peer_image(base: str) -> str:
    """llm-sandbox runs ``python``; an image on top of `base` that has it (built offline, from `base`)."""
    name = "miroenv-bench-peer:latest"
    dockerfile = f"FROM {base}\nUSER root\nRUN ln -sf python3 /usr/bin/python\nUSER 1000:1000\n"
    subprocess.run(
        ["docker", "build", "-q", "-t", name, "-"],
        input=dockerfile,
        text=True,
        check=True,
        capture_output=True,
    )
    return name


def peer(peer_python: str, image: str, calls: int) -> dict[str, Any]:
    """llm-sandbox (Docker backend) running the same call: its session open and per-call times."""
    out = subprocess.run(
        [peer_python, "-c", PEER_SCRIPT, peer_image(image), str(calls)],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    version = subprocess.run(
        [peer_python, "-c", "import importlib.metadata as m; print(m.version('llm-sandbox'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {"version": version, "open_s": data["open_s"], **percentiles(data["times"])}


def acquisition(image: str, rounds: int, pool: int) -> dict[str, dict[str, float]]:
    """`create()` from a warm pool, alone and followed by the first call; pool refilled between rounds."""
    backend = DockerSandboxBackend(image, pool_size=pool)
    alone, first_call = [], []
    try:
        for _ in range(rounds):
            assert backend.wait_ready(pool, timeout=120)
            start = time.perf_counter()
            sandbox = backend.create("bench-acquire")
            got = time.perf_counter()
            sandbox.run_python(CALL, timeout=10)
            done = time.perf_counter()
            alone.append(got - start)
            first_call.append(done - start)
            sandbox.close()
        return {"acquire": percentiles(alone), "acquire_and_first_call": percentiles(first_call)}
    finally:
        backend.close()


def cold_start(make: Callable[[], Any], rounds: int) -> dict[str, float]:
    """From nothing to a health-checked sandbox (no pool)."""
    backend = make()
    times = []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            sandbox = backend.create("bench-cold")
            times.append(time.perf_counter() - start)
            sandbox.close()
            drain = getattr(backend, "drain_removals", None)
            if drain is not None:
                drain(60)
        return percentiles(times)
    finally:
        backend.close()


def parallel(backend: Any, sandboxes: int, seconds: float) -> dict[str, float]:
    """`sandboxes` sandboxes, one thread each calling `run_python` in a loop: total calls per second."""
    boxes = [backend.create(f"bench-parallel-{i}") for i in range(sandboxes)]
    counts = [0] * sandboxes
    latencies: list[list[float]] = [[] for _ in range(sandboxes)]
    start_gate = threading.Barrier(sandboxes + 1)
    stop = threading.Event()

    def loop(index: int) -> None:
        box = boxes[index]
        start_gate.wait()
        while not stop.is_set():
            t = time.perf_counter()
            box.run_python("sum(range(1000))", timeout=30)
            latencies[index].append(time.perf_counter() - t)
            counts[index] += 1

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(sandboxes)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    for box in boxes:
        box.close()
    merged = [x for per in latencies for x in per]
    return {"calls_per_s": sum(counts) / elapsed, **percentiles(merged)}


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    server = subprocess.run(
        ["docker", "version", "-f", "{{.Server.Version}}"], capture_output=True, text=True
    )
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "docker": server.stdout.strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=default_image())
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--exec-calls", type=int, default=100)
    parser.add_argument("--cli-calls", type=int, default=30)
    parser.add_argument("--peer-python", default=None, help="interpreter with llm-sandbox[docker] installed")
    parser.add_argument("--peer-calls", type=int, default=30)
    parser.add_argument("--acquire-rounds", type=int, default=40)
    parser.add_argument("--cold-rounds", type=int, default=10)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--json", default=None, help="also write the raw figures here")
    args = parser.parse_args()

    results: dict[str, Any] = {"machine": machine(), "image": args.image}
    docker_backend = DockerSandboxBackend(
        args.image, pool_size=args.parallel, max_containers=args.parallel + 4
    )
    process_backend = ProcessSandboxBackend()
    try:
        docker_backend.wait_ready(timeout=120)
        results["docker_round_trip"] = round_trip(docker_backend, args.calls)
        results["process_round_trip"] = round_trip(process_backend, args.calls)
        results["docker_exec"] = docker_exec(docker_backend, args.exec_calls, args.cli_calls)
        if args.peer_python:
            results["peer_llm_sandbox"] = peer(args.peer_python, args.image, args.peer_calls)
        docker_backend.wait_ready(timeout=120)
        results["docker_parallel"] = parallel(docker_backend, args.parallel, args.seconds)
        results["process_parallel"] = parallel(process_backend, args.parallel, args.seconds)
    finally:
        docker_backend.close()
        process_backend.close()
    results.update(acquisition(args.image, args.acquire_rounds, pool=4))
    results["docker_cold_start"] = cold_start(
        lambda: DockerSandboxBackend(args.image, pool_size=0), args.cold_rounds
    )
    results["process_cold_start"] = cold_start(ProcessSandboxBackend, args.cold_rounds)

    rt = results["docker_round_trip"]["p50_ms"]
    ratios = {
        "docker_exec_sdk_over_round_trip": results["docker_exec"]["sdk"]["p50_ms"] / rt,
        "docker_exec_cli_over_round_trip": results["docker_exec"]["cli"]["p50_ms"] / rt,
    }
    if "peer_llm_sandbox" in results:
        ratios["llm_sandbox_over_round_trip"] = results["peer_llm_sandbox"]["p50_ms"] / rt
    results["ratios"] = ratios
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    print(
        "\n| what | p50 | p90 | p99 |\n|---|---|---|---|",
        *(
            f"| {name} | {row['p50_ms']:.3f} ms | {row['p90_ms']:.3f} ms | {row['p99_ms']:.3f} ms |"
            for name, row in [
                ("python call, warm Docker sandbox", results["docker_round_trip"]),
                ("python call, process sandbox", results["process_round_trip"]),
                ("docker exec per call (SDK)", results["docker_exec"]["sdk"]),
                ("docker exec per call (CLI)", results["docker_exec"]["cli"]),
                *(
                    [("llm-sandbox run()", results["peer_llm_sandbox"])]
                    if "peer_llm_sandbox" in results
                    else []
                ),
                ("acquire from warm pool", results["acquire"]),
                ("acquire + first call", results["acquire_and_first_call"]),
                ("cold container to ready", results["docker_cold_start"]),
                ("cold process sandbox to ready", results["process_cold_start"]),
            ]
        ),
        sep="\n",
    )
    for name in ("docker_parallel", "process_parallel"):
        row = results[name]
        print(
            f"{name}: {row['calls_per_s']:.0f} calls/s, p50 {row['p50_ms']:.3f} ms, p99 {row['p99_ms']:.3f} ms"
        )
    print("ratios:", {k: round(v, 1) for k, v in ratios.items()})


if __name__ == "__main__":
    sys.exit(main())
