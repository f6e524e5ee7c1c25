"""The sandbox image: recipes and staleness logic, and the built image on a real Docker engine.

The engine tests reuse the image `miroenv sandbox build` made (CI builds it in sandboxes/ci-setup.sh);
they skip when there is no daemon or no image, and fail instead when CI=true.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from typer.testing import CliRunner

from miroenv.cli import app
from miroenv.sandbox import image as image_module
from miroenv.sandbox.image import (
    AGENT_IN_IMAGE,
    BASE_IMAGE,
    IMAGE,
    LABEL_AGENT,
    LABEL_BASE_RECIPE,
    SANDBOX_HOME,
    SANDBOX_UID,
    ImageError,
    ImageInfo,
    agent_sha256,
    base_recipe_sha256,
    build_image,
    docker_client,
    image_status,
    recipe_sha256,
    remove_image,
)

ROOT = Path(__file__).resolve().parents[2]
ENABLE = "run `sandboxes/ci-setup.sh .venv` as root (installs and starts Docker Engine, builds the image)"


def _unavailable(message: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (CI=true: the Docker tests must run)")
    pytest.skip(f"{message}; to enable: {ENABLE}")


# ---------------------------------------------------------------------------------------- no engine


def _info(**overrides: Any) -> ImageInfo:
    fields: dict[str, Any] = {
        "tag": "t:1",
        "image_id": "sha256:0",
        "size": 1,
        "created": "",
        "flavor": "offline",
        "version": "0.1.0",
        "agent_sha256": "a" * 64,
        "expected_agent_sha256": "a" * 64,
    }
    fields.update(overrides)
    return ImageInfo(**fields)


def test_image_info_staleness() -> None:
    assert _info().current and _info().stale_reasons == []
    changed = _info(expected_agent_sha256="b" * 64)
    assert not changed.current and "agent changed" in changed.stale_reasons[0]
    assert not _info(agent_sha256=None).agent_current
    assert "missing" in _info(expected_agent_sha256=None).stale_reasons[0]
    assert _info(recipe_current=False).stale_reasons == ["the recipe under sandboxes/ changed"]


def test_recipes_are_present_and_hashed(tmp_path: Path) -> None:
    recipes = ROOT / "sandboxes"
    for name in (
        "Dockerfile",
        "Dockerfile.offline",
        "build-rootfs.sh",
        "debian-packages.txt",
        "requirements.txt",
    ):
        assert (recipes / name).is_file(), name
    packages = (recipes / "debian-packages.txt").read_text()
    for package in ("python3-numpy", "python3-pandas", "python3-pypdf", "python3-bs4", "python3-scipy"):
        assert package in packages
    # A recipe edit changes the hash the image is labelled with, so the image shows up as stale.
    copy = tmp_path / "sandboxes"
    copy.mkdir()
    for path in recipes.iterdir():
        if path.is_file():
            (copy / path.name).write_bytes(path.read_bytes())
    assert recipe_sha256("offline", copy) == recipe_sha256("offline", recipes)
    with (copy / "debian-packages.txt").open("a") as file:
        file.write("python3-yaml\n")
    assert base_recipe_sha256(copy) != base_recipe_sha256(recipes)
    assert recipe_sha256("offline", copy) != recipe_sha256("offline", recipes)
    assert recipe_sha256("online", copy) == recipe_sha256("online", recipes)


def test_missing_recipes_and_agent_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIROENV_SANDBOXES_DIR", str(tmp_path))
    with pytest.raises(ImageError, match="MIROENV_SANDBOXES_DIR"):
        image_module.sandboxes_dir()
    with pytest.raises(ImageError, match="agent is missing"):
        agent_sha256(tmp_path / "agent.py")


def test_build_context_files_are_read_only_for_the_sandbox_user() -> None:
    context = image_module._context_tar({"agent.py": b"print(1)\n", "Dockerfile": b"FROM scratch\n"})
    with tarfile.open(fileobj=io.BytesIO(context.read())) as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert set(members) == {"agent.py", "Dockerfile"}
    assert all(m.mode == 0o644 and m.uid == 0 and m.gid == 0 for m in members.values())


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("true", True), ("0", False), ("off", False), ("", None)]
)
def test_offline_override_from_environment(
    value: str, expected: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIROENV_OFFLINE_BUILD", value)
    assert image_module._offline_from_env() is expected


def test_unreachable_daemon_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ImageError, match=r"no Docker daemon reachable|docker Python SDK is missing"):
        image_status()
    result = CliRunner().invoke(app, ["sandbox", "status"])
    assert result.exit_code == 2
    assert "error:" in result.output


def test_build_trees_are_removed_only_without_mounts_inside(tmp_path: Path) -> None:
    assert image_module._mount_points(tmp_path) == []
    assert "/" in image_module._mount_points(Path("/"))
    tree = tmp_path / "scratch" / "rootfs" / "usr"
    tree.mkdir(parents=True)
    (tree / "file").write_text("x")
    image_module._remove_tree(tmp_path / "scratch", log=lambda _line: None)
    assert not (tmp_path / "scratch").exists()


def test_offline_build_explains_root_and_debootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image_module.os, "geteuid", lambda: 1000)
    with pytest.raises(ImageError, match="need root"):
        image_module._check_offline_prerequisites()


FAKE_MIRROR = "http://mirror.invalid/debian"
"""A made-up archive URL (the `.invalid` top-level domain never resolves)."""


def _fake_host(
    root: Path, files: dict[str, str], os_release: str = "ID=debian\nVERSION_CODENAME=bookworm\n"
) -> Path:
    """A fabricated machine root: `etc/os-release` and apt source files under `etc/apt`."""
    (root / "etc" / "apt" / "sources.list.d").mkdir(parents=True)
    (root / "etc" / "os-release").write_text(os_release)
    for name, text in files.items():
        (root / "etc" / "apt" / name).write_text(text)
    return root


def test_debian_mirror_comes_from_the_hosts_deb822_sources(tmp_path: Path) -> None:
    root = _fake_host(
        tmp_path,
        {
            "sources.list.d/00-off.sources": (
                "Types: deb\nURIs: http://disabled.invalid/debian\nSuites: bookworm\nEnabled: no\n"
            ),
            "sources.list.d/debian.sources": (
                "Types: deb-src\nURIs: http://source-only.invalid/debian\nSuites: bookworm\n\n"
                "Types: deb\n# a comment inside the stanza\nURIs: http://security.invalid/debian-security\n"
                "Suites: bookworm-security\nComponents: main\n\n"
                f"Types: deb deb-src\nURIs:\n {FAKE_MIRROR}/\n http://second.invalid/debian\n"
                "Suites: bookworm bookworm-updates\nComponents: main\n"
            ),
            "sources.list.d/zz-other.list.disabled": "deb http://ignored.invalid/debian bookworm main\n",
        },
    )
    found = image_module.debian_mirror("bookworm", root=root, environ={})
    assert found.uri == FAKE_MIRROR
    assert found.origin == f"{root / 'etc/apt/sources.list.d/debian.sources'}:11"


def test_debian_mirror_from_one_line_sources_in_apts_order(tmp_path: Path) -> None:
    root = _fake_host(
        tmp_path,
        {
            "sources.list": (
                "# deb http://commented.invalid/debian bookworm main\n"
                "deb-src http://source-only.invalid/debian bookworm main\n"
                "deb cdrom:[Debian 12]/ bookworm main\n"
                f"deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] {FAKE_MIRROR} bookworm main  # ours\n"
            ),
            "sources.list.d/later.list": "deb http://later.invalid/debian bookworm main\n",
        },
    )
    found = image_module.debian_mirror("bookworm", root=root, environ={})
    assert (found.uri, found.origin) == (FAKE_MIRROR, f"{root / 'etc/apt/sources.list'}:4")


def test_debian_mirror_falls_back_to_the_debian_hosts_own_suite(tmp_path: Path) -> None:
    root = _fake_host(
        tmp_path,
        {"sources.list.d/debian.sources": f"Types: deb\nURIs: {FAKE_MIRROR}\nSuites: trixie\n"},
        os_release='ID=debian\nVERSION_CODENAME="trixie"\n',
    )
    assert image_module.debian_mirror("bookworm", root=root, environ={}).uri == FAKE_MIRROR


def test_debian_mirror_from_the_environment_wins_and_is_checked(tmp_path: Path) -> None:
    root = _fake_host(tmp_path, {"sources.list": "deb http://host.invalid/debian bookworm main\n"})
    environ = {"MIROENV_DEBIAN_MIRROR": FAKE_MIRROR}
    assert image_module.debian_mirror("bookworm", root=root, environ=environ) == image_module.DebianMirror(
        FAKE_MIRROR, "MIROENV_DEBIAN_MIRROR"
    )
    with pytest.raises(
        ImageError, match=r"MIROENV_DEBIAN_MIRROR='mirror\.invalid' is not a Debian archive URL"
    ):
        image_module.debian_mirror("bookworm", root=root, environ={"MIROENV_DEBIAN_MIRROR": "mirror.invalid"})


def test_no_debian_mirror_is_a_clear_error(tmp_path: Path) -> None:
    root = _fake_host(
        tmp_path,
        {"sources.list": "deb http://ports.invalid/ubuntu noble main\n"},
        os_release="ID=ubuntu\nVERSION_CODENAME=noble\n",
    )
    with pytest.raises(ImageError) as raised:
        image_module.debian_mirror("bookworm", root=root, environ={"MIROENV_DEBIAN_MIRROR": " "})
    message = str(raised.value)
    assert "no Debian mirror to debootstrap bookworm from" in message
    assert str(root / "etc/apt/sources.list") in message
    assert "set MIROENV_DEBIAN_MIRROR to the URL of a Debian archive" in message


def test_build_rootfs_needs_a_mirror(tmp_path: Path) -> None:
    script = ROOT / "sandboxes" / "build-rootfs.sh"
    done = subprocess.run(["bash", str(script), str(tmp_path / "rootfs")], capture_output=True, text=True)
    assert done.returncode == 2
    assert "usage:" in done.stderr and "MIRROR" in done.stderr
    assert not (tmp_path / "rootfs").exists()


# ------------------------------------------------------------------------------------------ engine


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    try:
        docker = docker_client()
    except ImageError as exc:
        _unavailable(str(exc))
    yield docker
    docker.close()


def _base_current(client: Any) -> bool:
    try:
        base = client.images.get(BASE_IMAGE)
    except Exception:
        return False
    return bool(base.labels.get(LABEL_BASE_RECIPE) == base_recipe_sha256())


@pytest.fixture(scope="module")
def built(client: Any) -> ImageInfo:
    """The image, its top layer rebuilt first if only the agent changed (seconds; never a debootstrap)."""
    info = image_status(IMAGE)
    if info is None:
        _unavailable(f"the sandbox image {IMAGE} is not built")
    offline = info.flavor == "offline"
    if not info.current and info.recipe_current and (not offline or _base_current(client)):
        info = build_image(offline, tag=IMAGE, log=lambda _line: None)
    return info


PROBE = r"""
import grp, hashlib, importlib, json, os, pwd, stat, sys
modules = ["numpy", "pandas", "scipy", "sympy", "matplotlib", "requests", "bs4", "openpyxl", "pypdf"]
failed = {}
for name in modules:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = repr(exc)
agent = sys.argv[1]
info = os.stat(agent)
try:
    open("/miroenv-root-write", "w")
    root_writable = True
except OSError:
    root_writable = False
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "euid": os.geteuid(),
    "user": pwd.getpwuid(os.getuid()).pw_name, "group": grp.getgrgid(os.getgid()).gr_name,
    "home": os.environ.get("HOME"), "cwd": os.getcwd(), "python": sys.version_info[:2],
    "failed_imports": failed, "agent_sha256": hashlib.sha256(open(agent, "rb").read()).hexdigest(),
    "agent_owner": info.st_uid, "agent_writable_by_group_or_other": bool(info.st_mode & 0o022),
    "root_writable": root_writable,
}))
"""


@pytest.fixture(scope="module")
def probe(client: Any, built: ImageInfo) -> dict[str, Any]:
    """One container of the image (default user and workdir, read-only root) reporting on itself."""
    output = client.containers.run(
        IMAGE,
        ["python3", "-c", PROBE, AGENT_IN_IMAGE],
        remove=True,
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": "size=64m", SANDBOX_HOME: f"size=64m,uid={SANDBOX_UID},gid={SANDBOX_UID}"},
        environment={"MPLCONFIGDIR": "/tmp/matplotlib"},
    )
    result: dict[str, Any] = json.loads(output.decode().strip().splitlines()[-1])
    return result


def test_image_is_built_with_the_current_agent(built: ImageInfo) -> None:
    assert built.flavor in {"offline", "online"}
    assert built.current, f"{IMAGE} is stale: {built.stale_reasons}; run `miroenv sandbox build`"
    assert built.size > 0 and built.version


def test_image_runs_as_uid_1000_not_root(probe: dict[str, Any]) -> None:
    assert (probe["uid"], probe["gid"], probe["euid"]) == (SANDBOX_UID, SANDBOX_UID, SANDBOX_UID)
    assert (probe["user"], probe["group"]) == ("sandbox", "sandbox")
    assert probe["home"] == SANDBOX_HOME and probe["cwd"] == SANDBOX_HOME
    assert probe["root_writable"] is False


def test_image_has_python_and_the_research_stack(probe: dict[str, Any]) -> None:
    assert tuple(probe["python"]) >= (3, 10)
    assert probe["failed_imports"] == {}


def test_agent_in_image_matches_its_label(probe: dict[str, Any], built: ImageInfo) -> None:
    assert probe["agent_sha256"] == built.agent_sha256 == agent_sha256()
    assert probe["agent_owner"] == 0 and not probe["agent_writable_by_group_or_other"]


def test_build_is_a_no_op_when_current(built: ImageInfo) -> None:
    assert built.current, f"{IMAGE} is stale: {built.stale_reasons}; run `miroenv sandbox build`"
    lines: list[str] = []
    info = build_image(tag=IMAGE, log=lines.append)
    assert info.image_id == built.image_id and info.build_seconds is None
    assert any("up to date" in line for line in lines)


def test_status_detects_a_stale_agent_and_rebuild_only_touches_the_top_layer(
    client: Any, built: ImageInfo, tmp_path: Path
) -> None:
    offline = built.flavor == "offline"
    if offline:
        assert _base_current(client), f"{BASE_IMAGE} is missing or stale: run `miroenv sandbox build`"
    tag = f"miroenv-sandbox-test:{os.getpid()}"
    changed = tmp_path / "agent.py"
    changed.write_bytes(image_module.default_agent_path().read_bytes() + b"\n# a changed agent\n")
    try:
        old = build_image(offline, tag=tag, agent=changed, log=lambda _line: None)
        assert old.agent_sha256 == agent_sha256(changed) and old.agent_current
        # Compared with the agent this package ships, that image is stale ...
        status = image_status(tag)
        assert status is not None and not status.agent_current and not status.current
        assert "agent changed" in status.stale_reasons[0]
        assert client.images.get(tag).labels[LABEL_AGENT] == agent_sha256(changed)
        # ... and building again replaces only the thin layer with the agent (no debootstrap, no pip).
        new = build_image(offline, tag=tag, log=lambda _line: None)
        assert new.current and new.agent_sha256 == agent_sha256()
        assert set(new.timings) <= {"top layer", "online build"}
        assert new.build_seconds is not None and new.build_seconds < 120
    finally:
        remove_image(tag)
    assert image_status(tag) is None


def test_cli_status_and_build_report_a_current_image(built: ImageInfo) -> None:
    runner = CliRunner()
    status = runner.invoke(app, ["sandbox", "status"])
    assert status.exit_code == 0, status.output
    assert "current" in status.output and built.image_id.removeprefix("sha256:")[:12] in status.output
    build = runner.invoke(app, ["sandbox", "build"])
    assert build.exit_code == 0, build.output
    assert "up to date" in build.output


@pytest.mark.slow
def test_cli_check_runs_the_smoke_checks_in_real_containers(built: ImageInfo) -> None:
    result = CliRunner().invoke(app, ["sandbox", "check"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output and "checks passed" in result.output
