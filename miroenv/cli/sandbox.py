"""`miroenv sandbox ...`: build and inspect the Docker sandbox image."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from miroenv.cli.app import app, console
from miroenv.sandbox.base import ExecResult, Sandbox, SandboxBackend, SandboxError
from miroenv.sandbox.image import IMAGE, ImageError, ImageInfo, build_image, image_status

sandbox_app = typer.Typer(help="Build and inspect the Docker sandbox image.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")

TagOption = Annotated[str, typer.Option("--tag", help="Image name:tag.")]


def _log(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _table(info: ImageInfo) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("image", f"{info.tag} ({info.image_id.removeprefix('sha256:')[:12]})")
    table.add_row("built", f"{info.flavor}, {info.created[:19].replace('T', ' ')} UTC")
    table.add_row("size", f"{info.size / 1e6:.0f} MB")
    table.add_row("miroenv version", info.version or "-")
    agent = "current" if info.agent_current else "[red]stale[/]"
    table.add_row("agent sha256", f"{(info.agent_sha256 or '-')[:16]} ({agent})")
    table.add_row("recipe", "current" if info.recipe_current else "[red]changed since the build[/]")
    if info.base_build_seconds is not None:
        table.add_row("debootstrap base took", f"{info.base_build_seconds:.0f} s")
    if info.build_seconds is not None:
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in info.timings.items())
        table.add_row("this build", f"{info.build_seconds:.1f} s" + (f" ({phases})" if phases else ""))
    return table


@sandbox_app.command("build")
def sandbox_build(
    offline: Annotated[
        bool | None,
        typer.Option(
            "--offline/--online",
            help="Offline: Debian root filesystem via debootstrap (needs root; what CI uses). "
            "Online: from the python:3.12-slim registry image. Default: online when a registry answers.",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild everything, the Debian base included.")
    ] = False,
    tag: TagOption = IMAGE,
) -> None:
    """Build the sandbox image, or keep it when its agent and recipe are current."""
    try:
        info = build_image(offline, tag=tag, force=force, log=_log)
    except ImageError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    console.print(_table(info))


@sandbox_app.command("status")
def sandbox_status(tag: TagOption = IMAGE) -> None:
    """Show the sandbox image; exit 1 when it is missing or stale (agent or recipe changed)."""
    try:
        info = image_status(tag)
    except ImageError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    if info is None:
        console.print(f"{escape(tag)} is not built: run `miroenv sandbox build`")
        raise typer.Exit(1)
    console.print(_table(info))
    if not info.current:
        console.print(f"[red]stale:[/] {escape('; '.join(info.stale_reasons))}: run `miroenv sandbox build`")
        raise typer.Exit(1)


# --------------------------------------------------------------------------------------------- check


@dataclass(frozen=True)
class Check:
    """One smoke check: `run` returns (passed, detail); it may break its sandbox, `fresh` then gets another."""

    name: str
    run: Callable[[Sandbox, Callable[[], Sandbox]], tuple[bool, str]]
    image_only: bool = False
    """Checks the sandbox image itself: skipped for backends that run the host's Python."""


def _out(result: ExecResult) -> str:
    return (result.stdout + result.stderr).strip()


def _recovers(fresh: Callable[[], Sandbox]) -> tuple[bool, str]:
    after = fresh().run_python("6 * 7", 10)
    return "42" in after.stdout, "next call in a fresh sandbox works" if "42" in after.stdout else _out(after)


def _attack(
    code: str, *, shell: bool = False, timeout: float = 3, must_time_out: bool = False, leftover: str = ""
) -> Callable[..., tuple[bool, str]]:
    """An attack passes when it ends by the host's deadline (timing out if `must_time_out`), leaves no
    process named `leftover` behind in its sandbox (when that survived), and a fresh sandbox then works."""

    def run(sandbox: Sandbox, fresh: Callable[[], Sandbox]) -> tuple[bool, str]:
        ok = True
        try:
            result = (sandbox.run_command if shell else sandbox.run_python)(code, timeout)
            outcome = "timed out" if result.timed_out else (result.error or f"exit {result.exit_code}")
            ok = result.timed_out or not must_time_out
            if result.state_lost:
                outcome += ", state lost"
            if leftover:
                survivors = sandbox.run_command(f"ps -eo comm= | grep -cx {leftover} || true", 10)
                count = survivors.stdout.strip() or "?"
                ok = ok and count == "0"
                outcome += f", {count} {leftover} left"
        except SandboxError as exc:
            outcome = f"infra error: {exc}"
            ok = not must_time_out
        recovered, detail = _recovers(fresh)
        return ok and recovered, f"{outcome.splitlines()[0][:60]}; {detail}"

    return run


def _python_stack(sandbox: Sandbox, fresh: Callable[[], Sandbox]) -> tuple[bool, str]:
    result = sandbox.run_python("import numpy, pandas, scipy, sympy\nnumpy.__version__", 60)
    return result.error is None and not result.stderr.strip(), _out(result)[:60]


def _state_kept(sandbox: Sandbox, fresh: Callable[[], Sandbox]) -> tuple[bool, str]:
    sandbox.run_python("x = 41", 10)
    result = sandbox.run_python("x + 1", 10)
    return "42" in result.stdout, _out(result)[:60]


def _unprivileged(sandbox: Sandbox, fresh: Callable[[], Sandbox]) -> tuple[bool, str]:
    result = sandbox.run_command("id -u; grep CapEff /proc/self/status", 10)
    lines = _out(result).split()
    ok = bool(lines) and lines[0] != "0" and lines[-1].strip("0") == ""
    return ok, " ".join(lines)


def _read_only_root(sandbox: Sandbox, fresh: Callable[[], Sandbox]) -> tuple[bool, str]:
    result = sandbox.run_command("touch /usr/miroenv-probe", 10)
    return result.exit_code not in (0, None), _out(result)[:60]


def _no_network(sandbox: Sandbox, fresh: Callable[[], Sandbox]) -> tuple[bool, str]:
    code = """
import socket
for target in (("1.1.1.1", 53), ("example.com", 80)):
    try:
        socket.create_connection(target, timeout=2).close()
        print("reached", target[0])
    except OSError as exc:
        print("blocked", target[0], type(exc).__name__)
"""
    result = sandbox.run_python(code, 15)
    return "reached" not in result.stdout and result.stdout.count("blocked") == 2, _out(result)[:60]


def _flood(sandbox: Sandbox, fresh: Callable[[], Sandbox]) -> tuple[bool, str]:
    result = sandbox.run_python("import sys\nsys.stdout.write('x' * 100_000_000)", 30)
    size = len(result.stdout)
    return result.truncated and size < 5_000_000, f"100 MB printed, {size / 1e3:.0f} kB kept"


def _memory_bomb(sandbox: Sandbox, fresh: Callable[[], Sandbox]) -> tuple[bool, str]:
    result = sandbox.run_python("hog = []\nwhile True:\n    hog.append(b'x' * (64 << 20))", 30)
    text = f"{result.error or ''} {result.stderr}".lower()
    ok, detail = _recovers(fresh)
    reported = "memory" in text
    return reported and ok, f"{'reported as out of memory' if reported else _out(result)[:40]}; {detail}"


def _no_leak_between_sandboxes(sandbox: Sandbox, fresh: Callable[[], Sandbox]) -> tuple[bool, str]:
    sandbox.write_file("planted.txt", b"from a previous episode")
    result = fresh().run_command("ls planted.txt 2>&1 || echo absent", 10)
    return "absent" in result.stdout, "a file planted in one sandbox is absent from the next"


CHECKS = [
    Check("the image's research stack imports", _python_stack, image_only=True),
    Check("state kept between calls", _state_kept),
    Check("non-root, no capabilities", _unprivileged),
    Check("root file system read-only", _read_only_root),
    Check("network egress blocked (IP, DNS)", _no_network),
    Check("`while True: pass` times out", _attack("while True: pass", timeout=2, must_time_out=True)),
    Check(
        "loop catching BaseException times out",
        _attack(
            "while True:\n    try:\n        while True: pass\n    except BaseException: pass",
            timeout=2,
            must_time_out=True,
        ),
    ),
    Check("shell fork bomb contained", _attack(":(){ :|:& };:", shell=True, timeout=3)),
    Check(
        "double-forked daemon swept",
        _attack(
            "(setsid sleep 1000 &); sleep 1000", shell=True, timeout=2, must_time_out=True, leftover="sleep"
        ),
    ),
    Check("100 MB stdout flood truncated", _flood),
    Check("memory bomb reported as OOM", _memory_bomb),
    Check("`os._exit(1)` in user code", _attack("import os\nos._exit(1)")),
    Check("`kill -9 -1` from user code", _attack("kill -9 -1", shell=True)),
    Check("files do not leak to the next sandbox", _no_leak_between_sandboxes),
]


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool | None
    """None: skipped."""
    detail: str
    seconds: float


def run_checks(
    backend: SandboxBackend, *, image_checks: bool = True, log: Callable[[str], None] = _log
) -> list[CheckResult]:
    """Run every check against sandboxes from `backend` (closing each sandbox it started)."""
    sandboxes: list[Sandbox] = []

    def fresh() -> Sandbox:
        sandbox = backend.create(f"miroenv-sandbox-check-{len(sandboxes)}")
        sandboxes.append(sandbox)
        return sandbox

    results = []
    try:
        current = fresh()
        for check in CHECKS:
            if check.image_only and not image_checks:
                results.append(CheckResult(check.name, None, "this backend runs the host's Python", 0.0))
                continue
            log(f"  {check.name} ...")
            before = len(sandboxes)
            started = time.monotonic()
            passed: bool | None
            try:
                passed, detail = check.run(current, fresh)
            except Exception as exc:  # a check that crashes has failed; the next one gets a fresh sandbox
                passed, detail = False, f"{type(exc).__name__}: {exc}"
                before = -1
            results.append(CheckResult(check.name, passed, detail, time.monotonic() - started))
            if len(sandboxes) != before:  # the check used (and may have broken) other sandboxes
                current = fresh()
    finally:
        for sandbox in sandboxes:
            try:
                sandbox.close()
            except Exception as exc:
                log(f"warning: closing sandbox {sandbox.sandbox_id}: {exc}")
    return results


@sandbox_app.command("check")
def sandbox_check(
    backend: Annotated[
        str, typer.Option("--backend", help="docker, process or auto (docker when the image is usable).")
    ] = "docker",
    tag: TagOption = IMAGE,
) -> None:
    """Start sandboxes and run the adversarial smoke checks against them; exit 1 when one fails."""
    from miroenv.sandbox.select import select_backend

    try:
        selection = select_backend(backend, image=tag, docker_options={"pool_size": 1})
    except (SandboxError, ValueError) as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from exc
    console.print(escape(str(selection)), soft_wrap=True)
    console.print(f"isolation: {escape(selection.backend.isolation)}")
    try:
        results = run_checks(selection.backend, image_checks=selection.kind == "docker")
    except SandboxError as exc:
        console.print(f"[red]error:[/] cannot start a sandbox: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    finally:
        selection.backend.close()
    table = Table(title=f"sandbox checks ({selection.kind} backend)")
    table.add_column("check")
    table.add_column("result")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    verdicts = {True: "[green]pass[/]", False: "[red]FAIL[/]", None: "skip"}
    for result in results:
        table.add_row(
            escape(result.name), verdicts[result.passed], f"{result.seconds:.1f} s", escape(result.detail)
        )
    console.print(table)
    ran = [result for result in results if result.passed is not None]
    failed = [result for result in ran if not result.passed]
    if failed:
        console.print(f"[red]{len(failed)} of {len(ran)} checks failed[/]")
        raise typer.Exit(1)
    console.print(f"[green]all {len(ran)} checks passed[/]")
