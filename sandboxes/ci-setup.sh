#!/usr/bin/env bash
# Make a real Docker engine and the sandbox image available to the test suite (called by .ci/run):
#   sandboxes/ci-setup.sh VENV
# Idempotent: installs Debian's docker.io and debootstrap when missing, starts dockerd in the background
# when no daemon answers (no bridge, no iptables: sandboxes have no network), waits for it, installs the
# docker SDK into VENV if needed, then builds the image offline (a no-op when it is current, the thin top
# layer only when the agent changed). Exits non-zero with a message saying what failed.
# Environment: MIROENV_DOCKERD_LOG (default /tmp/miroenv-dockerd.log), MIROENV_DOCKERD_WAIT (seconds, 60).
# The image's Debian mirror is $MIROENV_DEBIAN_MIRROR, else the host's own apt source for the suite.
set -euo pipefail

fail() {
  echo "ci-setup: $*" >&2
  exit 1
}

[ $# -eq 1 ] || fail "usage: $0 VENV (a virtualenv with miroenv installed)"
venv=$1
python=$venv/bin/python
[ -x "$python" ] || fail "$python not found: create the virtualenv first (make .venv/.installed-test)"
cd "$(dirname "$0")/.."
dockerd_log=${MIROENV_DOCKERD_LOG:-/tmp/miroenv-dockerd.log}
wait_seconds=${MIROENV_DOCKERD_WAIT:-60}
started=$SECONDS

# 1. Docker Engine and debootstrap from Debian's archive.
need_apt=()
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
if [ ${#need_apt[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "need root to install ${need_apt[*]}"
  command -v apt-get >/dev/null 2>&1 || fail "${need_apt[*]} missing and no apt-get to install them"
  echo "ci-setup: installing ${need_apt[*]}"
  apt-get update -qq || fail "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null ||
    fail "apt-get install ${need_apt[*]} failed"
fi

# 2. A running daemon.
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || fail "no Docker daemon answers and starting dockerd needs root"
  echo "ci-setup: starting dockerd (log: $dockerd_log)"
  nohup dockerd --bridge=none --iptables=false >"$dockerd_log" 2>&1 &
  dockerd_pid=$!
  deadline=$((SECONDS + wait_seconds))
  until docker info >/dev/null 2>&1; do
    if ! kill -0 "$dockerd_pid" 2>/dev/null; then
      tail -n 20 "$dockerd_log" >&2 || true
      fail "dockerd exited at start (log: $dockerd_log)"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 20 "$dockerd_log" >&2 || true
      fail "dockerd did not answer within ${wait_seconds} s (log: $dockerd_log)"
    fi
    sleep 1
  done
fi
echo "ci-setup: Docker $(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?') is up"

# 3. The docker SDK in the virtualenv (the `docker` extra).
if ! "$python" -c 'import docker' >/dev/null 2>&1; then
  echo "ci-setup: installing the docker SDK into $venv"
  "$python" -m pip install --quiet 'docker>=7.1' || fail "pip install docker failed"
fi

# 4. The sandbox image, built offline (from the host's Debian mirror) when absent or stale.
"$python" -m miroenv.cli sandbox build --offline || fail "the offline sandbox image build failed"
echo "ci-setup: ready after $((SECONDS - started)) s"
