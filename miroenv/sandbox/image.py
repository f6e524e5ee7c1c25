"""Build and inspect the sandbox image that the Docker backend runs.

Two recipes make the same image (`sandboxes/` in the source tree):

- **online** (`sandboxes/Dockerfile`): from a `python:3.12-slim` base with the research stack from PyPI,
  for machines that reach a container registry;
- **offline** (what CI uses): a Debian root filesystem made by `debootstrap` from the Debian archive
  (`sandboxes/build-rootfs.sh`, packages in `sandboxes/debian-packages.txt`), loaded with `docker import`
  as `miroenv-sandbox-base:bookworm`, then finished by `sandboxes/Dockerfile.offline` (user, agent).

Either way the image runs as uid/gid 1000 with home `/home/user`, holds the in-container agent at
`/opt/miroenv/agent.py` (copied from this package at build time) and carries labels: the miroenv version,
the agent's sha256 and the recipe's sha256, so a stale image is detected instead of silently used.
Builds are cached: the debootstrap base is reused while its recipe is unchanged, and only the thin top
layer is rebuilt when the agent changes.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from miroenv._version import __version__

IMAGE = "miroenv-sandbox:latest"
"""The sandbox image the Docker backend runs."""
BASE_IMAGE = "miroenv-sandbox-base:bookworm"
"""The imported Debian root filesystem the offline image is built on."""
ONLINE_BASE_IMAGE = "python:3.12-slim"
"""The registry image the online recipe starts from."""
DEBIAN_SUITE = "bookworm"

SANDBOX_UID = 1000
SANDBOX_HOME = "/home/user"
AGENT_IN_IMAGE = "/opt/miroenv/agent.py"

LABEL_VERSION = "org.miroenv.version"
LABEL_AGENT = "org.miroenv.agent.sha256"
LABEL_RECIPE = "org.miroenv.recipe.sha256"
LABEL_FLAVOR = "org.miroenv.build"
LABEL_BASE_ID = "org.miroenv.base.id"
LABEL_BASE_RECIPE = "org.miroenv.base.recipe.sha256"
LABEL_BASE_SECONDS = "org.miroenv.base.build-seconds"

ENV_OFFLINE = "MIROENV_OFFLINE_BUILD"
"""`1` forces the offline recipe, `0` the online one; unset: decided by probing the registry."""
ENV_MIRROR = "MIROENV_DEBIAN_MIRROR"
"""The Debian archive URL the offline build debootstraps from; unset: the host's apt configuration."""
MIRROR_SCHEMES = ("http://", "https://", "file:")
"""URI schemes debootstrap can fetch a distribution from."""
ENV_SANDBOXES = "MIROENV_SANDBOXES_DIR"
ENV_BUILD_TMP = "MIROENV_BUILD_TMP"
"""Folder for the offline build tree (default: a tmpfs under /var/tmp when memory allows, else disk)."""
TMPFS_MIN_MEMORY = 4 << 30

REGISTRY_HOST = "registry-1.docker.io"
PROBE_TIMEOUT = 3.0

Log = Callable[[str], None]


class ImageError(Exception):
    """The sandbox image cannot be built or inspected; the message says why and what to do."""


@dataclass(frozen=True)
class ImageInfo:
    """A sandbox image as Docker has it, and whether it matches the current agent and recipe."""

    tag: str
    image_id: str
    size: int
    """Bytes, as `docker images` reports."""
    created: str
    flavor: str
    """`offline`, `online`, or `unknown` for an image miroenv did not build."""
    version: str | None
    agent_sha256: str | None
    """The agent hash the image was labelled with."""
    expected_agent_sha256: str | None
    """The hash of the agent this package ships (None when that file is missing)."""
    recipe_current: bool = True
    """False when the recipe files under `sandboxes/` changed since the image was built."""
    build_seconds: float | None = None
    """Wall time of the `build_image` call that returned this (None from `image_status`)."""
    timings: Mapping[str, float] = field(default_factory=dict)
    """Seconds per build phase: `debootstrap` (with the package install), `import`, `top layer`, or
    `online build`."""
    base_build_seconds: float | None = None
    """How long the debootstrap base took when it was made (offline images)."""

    @property
    def agent_current(self) -> bool:
        return self.expected_agent_sha256 is not None and self.agent_sha256 == self.expected_agent_sha256

    @property
    def current(self) -> bool:
        return self.agent_current and self.recipe_current

    @property
    def stale_reasons(self) -> list[str]:
        reasons = []
        if self.expected_agent_sha256 is None:
            reasons.append("the agent file is missing from the miroenv package")
        elif self.agent_sha256 is None:
            reasons.append("the image has no agent hash label (not built by miroenv)")
        elif not self.agent_current:
            reasons.append(
                f"agent changed (image {self.agent_sha256[:12]}, package {self.expected_agent_sha256[:12]})"
            )
        if not self.recipe_current:
            reasons.append("the recipe under sandboxes/ changed")
        return reasons


# ----------------------------------------------------------------------------------------------- files


def default_agent_path() -> Path:
    """The in-container agent shipped with this package (`miroenv/sandbox/agent.py`)."""
    return Path(__file__).resolve().with_name("agent.py")


def sandboxes_dir() -> Path:
    """The image recipes: `$MIROENV_SANDBOXES_DIR`, else `sandboxes/` of the source tree."""
    configured = os.environ.get(ENV_SANDBOXES)
    path = Path(configured) if configured else Path(__file__).resolve().parents[2] / "sandboxes"
    if not (path / "Dockerfile.offline").is_file():
        raise ImageError(
            f"the image recipes were not found in {path}: build from a miroenv source checkout, "
            f"or point {ENV_SANDBOXES} at its sandboxes/ folder"
        )
    return path


def agent_sha256(agent: Path | None = None) -> str:
    """The sha256 of the agent file, as the image label records it."""
    path = agent or default_agent_path()
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError as exc:
        raise ImageError(f"the in-container agent is missing: {path}") from exc


def _hash_files(*paths: Path, extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _suite() -> str:
    return os.environ.get("MIROENV_DEBIAN_SUITE", DEBIAN_SUITE)


@dataclass(frozen=True)
class AptSource:
    """One binary (`deb`) source of an apt configuration: archive URI, suite, and where it is written."""

    uri: str
    suite: str
    origin: str
    """`file:line` of the line or stanza that declares it."""


@dataclass(frozen=True)
class DebianMirror:
    """The Debian archive the offline build debootstraps from, and what chose it."""

    uri: str
    origin: str


def apt_source_files(apt_dir: Path) -> list[Path]:
    """apt's source files in apt's order: `sources.list`, then `sources.list.d/*.list|*.sources` by name."""
    parts = apt_dir / "sources.list.d"
    found = sorted(p for p in parts.glob("*") if p.suffix in (".list", ".sources")) if parts.is_dir() else []
    return [apt_dir / "sources.list", *found]


_ONE_LINE_DEB = re.compile(r"deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)")


def _one_line_sources(path: Path, text: str) -> list[AptSource]:
    """The `deb URI SUITE ...` lines of a one-line-style file (`sources.list`, `*.list`)."""
    sources = []
    for number, line in enumerate(text.splitlines(), 1):
        found = _ONE_LINE_DEB.match(line.split("#", 1)[0].strip())
        if found:
            sources.append(AptSource(found[1], found[2], f"{path}:{number}"))
    return sources


def _deb822_sources(path: Path, text: str) -> list[AptSource]:
    """The enabled `Types: deb` stanzas of a deb822-style file (`*.sources`), one source per URI and suite."""
    sources = []
    stanza: dict[str, str] = {}
    start = 1
    key = ""
    for number, line in enumerate([*text.splitlines(), ""], 1):
        if line.startswith("#"):
            continue
        if not line.strip():
            if stanza and "deb" in stanza.get("types", "").split() and stanza.get("enabled", "yes") != "no":
                for uri in stanza.get("uris", "").split():
                    sources += [
                        AptSource(uri, suite, f"{path}:{start}") for suite in stanza.get("suites", "").split()
                    ]
            stanza, key = {}, ""
            continue
        if line[0].isspace() and key:
            stanza[key] += " " + line.strip()
            continue
        name, colon, value = line.partition(":")
        if colon:
            if not stanza:
                start = number
            key = name.strip().lower()
            stanza[key] = value.strip()
    return sources


def apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every binary source of the apt configuration under `apt_dir`, in apt's order (unreadable files skipped)."""
    sources = []
    for path in apt_source_files(apt_dir):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        parse = _deb822_sources if path.suffix == ".sources" else _one_line_sources
        sources += parse(path, text)
    return sources


def _os_release(root: Path) -> dict[str, str]:
    """`/etc/os-release` under `root` as a dict (empty when missing)."""
    try:
        text = (root / "etc" / "os-release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines())
    return {key.strip(): value.strip().strip("\"'") for key, eq, value in pairs if eq}


def debian_mirror(
    suite: str | None = None, *, root: Path = Path("/"), environ: Mapping[str, str] | None = None
) -> DebianMirror:
    """The Debian archive to debootstrap `suite` from: `$MIROENV_DEBIAN_MIRROR`, else the first `deb` URI of
    the host's apt configuration for `suite` (or, on a Debian host, for the host's own suite), so the build
    uses the mirror the machine already trusts; an `ImageError` says what to set when neither gives one."""
    suite = suite or _suite()
    configured = (os.environ if environ is None else environ).get(ENV_MIRROR, "").strip()
    if configured:
        if not configured.startswith(MIRROR_SCHEMES):
            raise ImageError(
                f"{ENV_MIRROR}={configured!r} is not a Debian archive URL: it must start with "
                f"{', '.join(MIRROR_SCHEMES)}"
            )
        return DebianMirror(configured, ENV_MIRROR)
    release = _os_release(root)
    wanted = [suite]
    if release.get("ID") == "debian" and release.get("VERSION_CODENAME") not in ("", None, suite):
        wanted.append(release["VERSION_CODENAME"])
    apt_dir = root / "etc" / "apt"
    sources = [s for s in apt_sources(apt_dir) if s.uri.startswith(MIRROR_SCHEMES)]
    for name in wanted:
        for source in sources:
            if source.suite == name:
                return DebianMirror(source.uri.rstrip("/"), source.origin)
    looked = ", ".join(str(path) for path in apt_source_files(apt_dir))
    raise ImageError(
        f"no Debian mirror to debootstrap {suite} from: {ENV_MIRROR} is unset and no `deb` source for "
        f"{' or '.join(wanted)} is configured in {looked}; set {ENV_MIRROR} to the URL of a Debian archive "
        f"(the URL of a `deb URL {suite} main` line)"
    )


def base_recipe_sha256(recipes: Path | None = None) -> str:
    """Hash of what makes the debootstrap base: the script, the package list and the suite."""
    recipes = recipes or sandboxes_dir()
    return _hash_files(recipes / "build-rootfs.sh", recipes / "debian-packages.txt", extra=_suite())


def recipe_sha256(flavor: str, recipes: Path | None = None) -> str:
    """Hash of the recipe of the finished image for `flavor` (`offline` includes its base's recipe)."""
    recipes = recipes or sandboxes_dir()
    if flavor == "offline":
        return _hash_files(recipes / "Dockerfile.offline", extra=base_recipe_sha256(recipes))
    return _hash_files(recipes / "Dockerfile", recipes / "requirements.txt", extra=ONLINE_BASE_IMAGE)


# ---------------------------------------------------------------------------------------------- docker


def docker_client(timeout: int | None = 120) -> Any:
    """A docker SDK client for the local daemon, or an `ImageError` saying how to get one."""
    try:
        import docker  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError as exc:
        raise ImageError("the docker Python SDK is missing: pip install 'miroenv[docker]'") from exc
    try:
        client = docker.from_env(version="auto", timeout=timeout)
        client.ping()
    except Exception as exc:  # DockerException, requests errors: the daemon is absent or refuses us
        raise ImageError(
            f"no Docker daemon reachable ({exc}); start one (Debian: apt-get install docker.io; "
            "dockerd --bridge=none --iptables=false &) or set DOCKER_HOST"
        ) from exc
    return client


def _not_found(exc: Exception) -> bool:
    return type(exc).__name__ in {"ImageNotFound", "NotFound"}


def _get_image(client: Any, tag: str) -> Any | None:
    try:
        return client.images.get(tag)
    except Exception as exc:
        if _not_found(exc):
            return None
        raise ImageError(f"cannot inspect image {tag}: {exc}") from exc


def _labels(image: Any) -> dict[str, str]:
    labels = (image.attrs.get("Config") or {}).get("Labels") or {}
    return dict(labels)


def _info(tag: str, image: Any, agent: Path | None) -> ImageInfo:
    labels = _labels(image)
    flavor = labels.get(LABEL_FLAVOR, "unknown")
    try:
        expected: str | None = agent_sha256(agent)
    except ImageError:
        expected = None
    recipe_current = True
    if flavor in {"offline", "online"}:
        try:
            recipe_current = labels.get(LABEL_RECIPE) == recipe_sha256(flavor)
        except ImageError:  # no source tree here: nothing to compare with
            recipe_current = True
    base_seconds = labels.get(LABEL_BASE_SECONDS)
    return ImageInfo(
        tag=tag,
        image_id=str(image.id),
        size=int(image.attrs.get("Size") or 0),
        created=str(image.attrs.get("Created", "")),
        flavor=flavor,
        version=labels.get(LABEL_VERSION),
        agent_sha256=labels.get(LABEL_AGENT),
        expected_agent_sha256=expected,
        recipe_current=recipe_current,
        base_build_seconds=float(base_seconds) if base_seconds else None,
    )


def image_status(tag: str = IMAGE, *, agent: Path | None = None) -> ImageInfo | None:
    """The image `tag` and whether its agent and recipe are current; None when Docker does not have it.

    `agent` is the agent file to compare with (default: the one this package ships).
    Raises `ImageError` when no daemon is reachable.
    """
    client = docker_client()
    try:
        image = _get_image(client, tag)
        return None if image is None else _info(tag, image, agent)
    finally:
        client.close()


# ------------------------------------------------------------------------------------------- detection


def _reachable(host: str, port: int, timeout: float) -> bool:
    def connect() -> bool:
        with socket.create_connection((host, port), timeout=timeout):
            return True

    # getaddrinfo has no timeout of its own: bound the whole probe from outside.
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        return pool.submit(connect).result(timeout=timeout + 0.5)
    except Exception:
        return False
    finally:
        pool.shutdown(wait=False)


def registry_reachable(client: Any | None = None, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether an online build can fetch its base image: already present, or a registry answers."""
    if client is not None:
        if _get_image(client, ONLINE_BASE_IMAGE) is not None:
            return True
        mirrors = ((client.info().get("RegistryConfig") or {}).get("Mirrors")) or []
        for mirror in mirrors:
            host = str(mirror).split("://", 1)[-1].split("/", 1)[0]
            name, _, port = host.partition(":")
            if _reachable(name, int(port or 443), timeout):
                return True
    return _reachable(REGISTRY_HOST, 443, timeout)


def _offline_from_env() -> bool | None:
    value = os.environ.get(ENV_OFFLINE, "").strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    return None


# ---------------------------------------------------------------------------------------------- builds


def _context_tar(files: Mapping[str, bytes]) -> io.BytesIO:
    """A build context with root-owned 0644 files (the agent must not be writable by the sandbox user)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in sorted(files.items()):
            member = tarfile.TarInfo(name)
            member.size = len(data)
            member.mode = 0o644
            member.mtime = 0
            tar.addfile(member, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def _docker_build(
    client: Any,
    files: Mapping[str, bytes],
    *,
    tag: str,
    labels: Mapping[str, str],
    buildargs: Mapping[str, str],
    network_mode: str | None,
    nocache: bool,
    log: Log,
) -> None:
    output: list[str] = []
    stream = client.api.build(
        fileobj=_context_tar(files),
        custom_context=True,
        tag=tag,
        labels=dict(labels),
        buildargs=dict(buildargs),
        network_mode=network_mode,
        nocache=nocache,
        rm=True,
        forcerm=True,
        pull=False,
        decode=True,
    )
    for chunk in stream:
        if "error" in chunk:
            tail = "".join(output[-20:]).rstrip()
            raise ImageError(f"docker build of {tag} failed: {str(chunk['error']).strip()}\n{tail}")
        text = str(chunk.get("stream", ""))
        if text:
            output.append(text)
            if text.startswith("Step "):
                log(f"  {text.strip()}")


def _mount_points(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first."""
    root = str(path.resolve()).rstrip("/")
    mounts = []
    with open("/proc/self/mounts", encoding="utf-8") as table:
        for line in table:
            fields = line.split()
            if len(fields) > 1:
                point = fields[1].replace("\\040", " ")
                if point == root or point.startswith(root + "/"):
                    mounts.append(point)
    return sorted(mounts, key=len, reverse=True)


def _available_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _make_scratch(log: Log) -> Path:
    """The build tree's folder: `$MIROENV_BUILD_TMP`, else a tmpfs under /var/tmp when memory allows (a
    root file system is ~0.6 GB; in memory the build is faster and removing it is instant), else disk."""
    configured = os.environ.get(ENV_BUILD_TMP)
    scratch = Path(tempfile.mkdtemp(prefix="miroenv-rootfs-", dir=configured or "/var/tmp"))
    if not configured and _available_memory() >= TMPFS_MIN_MEMORY:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=3g,mode=0755", "miroenv-rootfs", str(scratch)],
            check=False,
            capture_output=True,
        )
        if mounted.returncode == 0:
            log(f"building in memory (tmpfs at {scratch})")
    return scratch


def _remove_tree(path: Path, log: Log) -> None:
    """Remove a build tree, but never through a mount left behind (a killed debootstrap leaves /proc)."""
    for point in _mount_points(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    left = _mount_points(path)
    if left:
        log(f"warning: not removing {path}: still mounted: {', '.join(left)}")
        return
    # rm is several times faster than shutil.rmtree on a root file system, and never crosses a mount.
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False, capture_output=True)


def _run_logged(command: list[str], log: Log) -> None:
    lines: list[str] = []
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip())
            log(f"  {line.rstrip()}")
        code = process.wait()
    if code != 0:
        raise ImageError(f"{Path(command[1]).name} failed (exit {code}): {' / '.join(lines[-3:])}")


def _chunks(stream: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        block = stream.read(size)
        if not block:
            return
        yield block


def _check_offline_prerequisites() -> None:
    if os.geteuid() != 0:
        raise ImageError(
            "the offline build runs debootstrap and chroot, which need root: run it as root "
            "(sudo .venv/bin/miroenv sandbox build --offline), or build online where a registry is reachable"
        )
    missing = [tool for tool in ("debootstrap", "chroot", "tar") if shutil.which(tool) is None]
    if missing:
        raise ImageError(
            f"the offline build needs {', '.join(missing)}: apt-get install debootstrap (Debian/Ubuntu)"
        )


def _build_base(client: Any, recipes: Path, log: Log, timings: dict[str, float]) -> None:
    """debootstrap a root filesystem and `docker import` it as BASE_IMAGE, adding to `timings`."""
    _check_offline_prerequisites()
    mirror = debian_mirror()
    scratch = _make_scratch(log)
    rootfs = scratch / "rootfs"
    started = time.monotonic()
    try:
        log(f"debootstrap {_suite()} from {mirror.uri} (from {mirror.origin}) into {rootfs} (a few minutes)")
        _run_logged(["bash", str(recipes / "build-rootfs.sh"), str(rootfs), mirror.uri], log)
        debootstrap_seconds = time.monotonic() - started
        timings["debootstrap"] = debootstrap_seconds
        log(f"importing the root filesystem as {BASE_IMAGE}")
        repository, _, tag = BASE_IMAGE.rpartition(":")
        changes = [
            f"LABEL {LABEL_BASE_RECIPE}={base_recipe_sha256(recipes)}",
            f"LABEL {LABEL_BASE_SECONDS}={debootstrap_seconds:.1f}",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["python3"]',
        ]
        importer = docker_client(timeout=None)
        try:
            with subprocess.Popen(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
            ) as tar:
                result = importer.api.import_image(
                    src=_chunks(tar.stdout), repository=repository, tag=tag, changes=changes, stream_src=True
                )
                if tar.wait() != 0:
                    raise ImageError(f"tar of {rootfs} failed (exit {tar.returncode})")
        finally:
            importer.close()
        if '"error"' in str(result) or _get_image(client, BASE_IMAGE) is None:
            raise ImageError(f"docker import of {rootfs} failed: {str(result).strip()[-500:]}")
        timings["import"] = time.monotonic() - started - debootstrap_seconds
    finally:
        cleanup = time.monotonic()
        _remove_tree(scratch, log)
        timings["cleanup"] = time.monotonic() - cleanup


def _build_offline(
    client: Any, *, tag: str, agent: Path, force: bool, log: Log, timings: dict[str, float]
) -> None:
    recipes = sandboxes_dir()
    base_recipe = base_recipe_sha256(recipes)
    base = _get_image(client, BASE_IMAGE)
    if base is not None and not force and _labels(base).get(LABEL_BASE_RECIPE) != base_recipe:
        log(f"{BASE_IMAGE} was made from an older recipe: rebuilding it")
        base = None
    if base is None or force:
        _build_base(client, recipes, log, timings)
        base = _get_image(client, BASE_IMAGE)
        if base is None:
            raise ImageError(f"docker import did not produce {BASE_IMAGE}")
    else:
        log(f"reusing {BASE_IMAGE} ({base.short_id}); --force rebuilds it")
    base_seconds = _labels(base).get(LABEL_BASE_SECONDS, "")
    labels = {
        LABEL_VERSION: __version__,
        LABEL_AGENT: agent_sha256(agent),
        LABEL_RECIPE: recipe_sha256("offline", recipes),
        LABEL_FLAVOR: "offline",
        LABEL_BASE_ID: str(base.id),
        LABEL_BASE_SECONDS: base_seconds,
    }
    started = time.monotonic()
    log(f"building {tag} on {BASE_IMAGE}")
    _docker_build(
        client,
        {"Dockerfile": (recipes / "Dockerfile.offline").read_bytes(), "agent.py": agent.read_bytes()},
        tag=tag,
        labels=labels,
        buildargs={"BASE_IMAGE": str(base.id)},
        network_mode="none",
        nocache=force,
        log=log,
    )
    timings["top layer"] = time.monotonic() - started


def _build_online(
    client: Any, *, tag: str, agent: Path, force: bool, log: Log, timings: dict[str, float]
) -> None:
    recipes = sandboxes_dir()
    started = time.monotonic()
    if force or _get_image(client, ONLINE_BASE_IMAGE) is None:
        log(f"pulling {ONLINE_BASE_IMAGE}")
        repository, _, base_tag = ONLINE_BASE_IMAGE.rpartition(":")
        try:
            client.images.pull(repository, tag=base_tag)
        except Exception as exc:
            raise _RegistryUnreachable(
                f"cannot pull {ONLINE_BASE_IMAGE} (no container registry here? build with --offline): {exc}"
            ) from exc
    labels = {
        LABEL_VERSION: __version__,
        LABEL_AGENT: agent_sha256(agent),
        LABEL_RECIPE: recipe_sha256("online", recipes),
        LABEL_FLAVOR: "online",
    }
    log(f"building {tag} from {ONLINE_BASE_IMAGE} (pip install of the research stack)")
    _docker_build(
        client,
        {
            "Dockerfile": (recipes / "Dockerfile").read_bytes(),
            "requirements.txt": (recipes / "requirements.txt").read_bytes(),
            "agent.py": agent.read_bytes(),
        },
        tag=tag,
        labels=labels,
        buildargs={"PYTHON_IMAGE": ONLINE_BASE_IMAGE},
        network_mode=None,
        nocache=force,
        log=log,
    )
    timings["online build"] = time.monotonic() - started


def _remove_replaced(client: Any, images: list[Any | None], log: Log) -> None:
    """Delete images a rebuild left untagged (the old top layer, the old base), or each rebuild would keep
    another half gigabyte. Only miroenv's own images; ones still in use or with children stay."""
    for image in images:
        if image is None:
            continue
        current = _get_image(client, str(image.id))
        if current is None or current.tags or not set(_labels(current)) & {LABEL_FLAVOR, LABEL_BASE_RECIPE}:
            continue
        try:
            client.images.remove(str(image.id), noprune=False)
            log(f"removed the replaced image {image.short_id}")
        except Exception as exc:  # in use by a container, or another image was built on it
            log(f"kept the replaced image {image.short_id}: {exc}")


class _RegistryUnreachable(ImageError):
    pass


def build_image(
    offline: bool | None = None,
    *,
    tag: str = IMAGE,
    force: bool = False,
    agent: Path | None = None,
    log: Log = print,
) -> ImageInfo:
    """Build the sandbox image (or find it up to date) and return what Docker has.

    `offline`: True builds from Debian with debootstrap (needs root), False from the `python:3.12-slim`
    registry image; None picks: `$MIROENV_OFFLINE_BUILD` when set, else online when the registry answers
    (falling back to offline when the pull fails), else offline.
    `force` rebuilds everything, the debootstrap base included; otherwise an image whose agent and recipe
    hashes match is kept as is, and a changed agent only rebuilds the thin top layer.
    `agent` overrides the agent file copied into the image (default: the one this package ships).
    """
    agent = (agent or default_agent_path()).resolve()
    agent_sha256(agent)  # fail early and clearly when it is missing
    started = time.monotonic()
    client = docker_client()
    # One build at a time on this machine (two test workers, or CI setup racing a developer).
    lock = FileLock(Path(tempfile.gettempdir()) / "miroenv-sandbox-build.lock")
    try:
        lock.acquire(timeout=3600)
        existing = _get_image(client, tag)
        old_base = _get_image(client, BASE_IMAGE)
        if existing is not None and not force:
            info = _info(tag, existing, agent)
            wanted_offline = offline if offline is not None else _offline_from_env()
            flavor_ok = wanted_offline is None or info.flavor == ("offline" if wanted_offline else "online")
            if info.current and flavor_ok:
                log(f"{tag} is up to date ({info.flavor}, agent {str(info.agent_sha256)[:12]})")
                return info
            log(f"{tag} is stale: {'; '.join(info.stale_reasons) or 'different build flavour requested'}")

        timings: dict[str, float] = {}
        explicit = offline if offline is not None else _offline_from_env()
        use_offline = explicit if explicit is not None else not registry_reachable(client)
        if explicit is None:
            log(
                f"registry {'unreachable: building offline' if use_offline else 'reachable: building online'}"
            )
        if use_offline:
            _build_offline(client, tag=tag, agent=agent, force=force, log=log, timings=timings)
        else:
            try:
                _build_online(client, tag=tag, agent=agent, force=force, log=log, timings=timings)
            except _RegistryUnreachable as exc:
                if explicit is not None:
                    raise
                log(f"{exc}; falling back to the offline build")
                _build_offline(client, tag=tag, agent=agent, force=force, log=log, timings=timings)
        image = _get_image(client, tag)
        if image is None:
            raise ImageError(f"the build finished but Docker has no image {tag}")
        _remove_replaced(client, [existing, old_base], log)
        elapsed = time.monotonic() - started
        info = replace(_info(tag, image, agent), build_seconds=elapsed, timings=dict(timings))
        phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
        log(f"built {tag} ({info.flavor}) in {elapsed:.1f} s ({phases}); {info.size / 1e6:.0f} MB")
        return info
    finally:
        if lock.is_locked:
            lock.release()
        client.close()


def remove_image(tag: str) -> bool:
    """Remove the image `tag` (not its base); False when Docker did not have it."""
    client = docker_client()
    try:
        if _get_image(client, tag) is None:
            return False
        client.images.remove(tag, force=True)
        return True
    finally:
        client.close()
