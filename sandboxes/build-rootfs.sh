#!/usr/bin/env bash
# Make the Debian root filesystem of the offline sandbox image:
#   build-rootfs.sh ROOTFS MIRROR
# A minimal Debian from debootstrap, then Python and the packages of debian-packages.txt, all from the
# Debian archive at MIRROR (miroenv passes $MIROENV_DEBIAN_MIRROR, else the host's own apt source for the
# suite), slimmed (no build-only dependencies, apt lists, caches, documentation, translations or bundled
# test suites) and byte-compiled. Needs root (debootstrap and chroot) and the debootstrap program.
# miroenv runs this from `miroenv sandbox build --offline` and loads the result with `docker import`.
# Environment: MIROENV_DEBIAN_SUITE (default bookworm).
set -euo pipefail

if [ $# -ne 2 ] || [ -z "$2" ]; then
  echo "usage: $0 ROOTFS MIRROR (MIRROR: the URL of a Debian archive, as in a 'deb URL bookworm main' line)" >&2
  exit 2
fi
rootfs=$1
mirror=$2
suite=${MIROENV_DEBIAN_SUITE:-bookworm}
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" != 0 ]; then
  echo "build-rootfs.sh: must run as root (debootstrap and chroot need it)" >&2
  exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "build-rootfs.sh: debootstrap is not installed (Debian/Ubuntu: apt-get install debootstrap)" >&2
  exit 1
fi
if [ -e "$rootfs" ] && [ -n "$(ls -A "$rootfs")" ]; then
  echo "build-rootfs.sh: $rootfs exists and is not empty" >&2
  exit 1
fi

mapfile -t packages < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$here/debian-packages.txt" | grep -v '^$')
export DEBIAN_FRONTEND=noninteractive LC_ALL=C LANG=C
log=$rootfs.log
in_root() { chroot "$rootfs" "$@"; }
logged() { # run a step with its output in $log, shown only when it fails
  "$@" >"$log" 2>&1 || {
    tail -n 30 "$log" >&2
    echo "build-rootfs.sh: failed: $* (full log: $log)" >&2
    exit 1
  }
  rm -f "$log"
}

# 1. A minimal Debian, in two stages so that dpkg can skip its fsync calls in between (force-unsafe-io:
#    a throw-away build tree has nothing to protect from a power cut), which halves the time.
echo "build-rootfs: debootstrap --variant=minbase $suite from $mirror"
logged debootstrap --foreign --variant=minbase "$suite" "$rootfs" "$mirror"
echo force-unsafe-io >"$rootfs/etc/dpkg/dpkg.cfg.d/zz-miroenv-unsafe-io"
logged in_root /debootstrap/debootstrap --second-stage
echo "build-rootfs: minimal system after ${SECONDS} s"

# 2. Before installing packages:
# - documentation (but the copyright files), manual pages and translations are never unpacked, here and
#   in images built FROM this one;
cat >"$rootfs/etc/dpkg/dpkg.cfg.d/01-miroenv-slim" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
DPKG
# - Debian's python3-scipy depends on python3-pythran, a compiler scipy only needs to be *built*, which
#   drags in gcc, g++, boost and the Python headers (~400 MB, minutes to unpack). An empty package that
#   provides python3-pythran keeps dpkg's database consistent: apt still works in derived images;
stub=$rootfs/tmp/miroenv-no-pythran
mkdir -p "$stub/DEBIAN"
cat >"$stub/DEBIAN/control" <<'CONTROL'
Package: miroenv-no-pythran
Version: 1.0
Architecture: all
Maintainer: miroenv <miroenv@localhost>
Priority: optional
Section: misc
Provides: python3-pythran
Description: stands in for python3-pythran in the miroenv sandbox image
 scipy needs pythran only at build time; this empty package satisfies the dependency.
CONTROL
in_root dpkg-deb --build /tmp/miroenv-no-pythran /tmp/miroenv-no-pythran.deb >/dev/null
in_root dpkg -i /tmp/miroenv-no-pythran.deb >/dev/null
rm -rf "$stub" "$rootfs/tmp/miroenv-no-pythran.deb"
# - every package's postinst would byte-compile it, one at a time: compile once, in parallel, in step 4,
#   after the test suites are gone.
in_root dpkg-divert --quiet --local --rename --add /usr/bin/py3compile
printf '#!/bin/sh\nexit 0\n' >"$rootfs/usr/bin/py3compile"
chmod 0755 "$rootfs/usr/bin/py3compile"

# 3. Python and the research stack (Depends only, no Recommends), downloaded with the host's DNS.
cp -L /etc/resolv.conf "$rootfs/etc/resolv.conf"
echo "build-rootfs: apt-get install ${packages[*]}"
logged in_root apt-get install -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "${packages[@]}"
echo "build-rootfs: packages installed after ${SECONDS} s"

# 4. The bundled test suites of the big packages go (~150 MB; `numpy.testing` and the like stay), then
#    everything is byte-compiled: the sandbox's root file system is read-only, Python cannot cache later.
for package in numpy scipy pandas sympy matplotlib; do
  find "$rootfs/usr/lib/python3/dist-packages/$package" -depth -type d -name tests -exec rm -rf {} +
done
rm -f "$rootfs/usr/bin/py3compile"
in_root dpkg-divert --quiet --local --rename --remove /usr/bin/py3compile
in_root python3 -c 'import compileall, sysconfig
for folder in ("/usr/lib/python3/dist-packages", sysconfig.get_path("stdlib")):
    compileall.compile_dir(folder, quiet=2, workers=0)'
echo "build-rootfs: byte-compiled after ${SECONDS} s"

# 5. Check and clean up: apt's view is consistent, the stack imports, no caches, lists or logs remain.
in_root apt-get check -q >/dev/null
in_root env MPLCONFIGDIR=/tmp/mpl python3 -c \
  'import numpy, pandas, scipy.optimize, scipy.stats, sympy, matplotlib.pyplot, requests, bs4, lxml, openpyxl, pypdf'
in_root apt-get clean
rm -f "$rootfs/etc/dpkg/dpkg.cfg.d/zz-miroenv-unsafe-io" "$rootfs/etc/resolv.conf"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/log/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/usr/share/lintian "$rootfs"/tmp/* "$rootfs"/var/tmp/* "$rootfs"/root/.cache
# What minbase unpacked before the exclusions existed.
find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$rootfs/usr/share/doc" -mindepth 1 -depth -type d -empty -delete
find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
echo "build-rootfs: done after ${SECONDS} s ($(du -sh "$rootfs" | cut -f1))"
