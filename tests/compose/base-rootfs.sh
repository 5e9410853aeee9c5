#!/usr/bin/env bash
# tests/compose/base-rootfs.sh: a Debian bookworm root file system as a tar
# file, made with debootstrap from Debian's archive and cached outside the
# checkout, for `docker import` (the stand-in of the debian:bookworm-slim
# image, which cannot be pulled on the test machines).
#
#   bash tests/compose/base-rootfs.sh [CACHE_DIR]     prints the tar file's path
#
# CACHE_DIR (default $GW_COMPOSE_CACHE or /var/cache/gw-compose) keeps
# bookworm-<recipe>.tar; a run finding it prints its path at once. The recipe
# version is in the name: change RECIPE when the steps below change.
# Like the slim image: variant minbase, a policy-rc.d that keeps packages
# from starting services, the host's apt sources (main,
# bookworm-updates, bookworm-security), no documentation, apt lists emptied.
set -euo pipefail
RECIPE=2
cache=${1:-${GW_COMPOSE_CACHE:-/var/cache/gw-compose}}
out=$cache/bookworm-minbase-r$RECIPE.tar
if [ -s "$out" ]; then
    printf '%s\n' "$out"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "base-rootfs.sh: debootstrap not installed" >&2; exit 1; }
mkdir -p "$cache"
mirror=${GW_DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d "$cache/rootfs.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
# Documentation is excluded as in the slim images.
if ! debootstrap --variant=minbase --arch=amd64 bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    echo "base-rootfs.sh: debootstrap failed" >&2
    exit 1
fi
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/*.log "$root"/dev/* 2>/dev/null || true
: >"$root/etc/hostname"
# Packages installed in a build must not try to start their services.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
tar --numeric-owner -C "$root" -cf "$work/rootfs.tar" .
mv -f "$work/rootfs.tar" "$out"
printf '%s\n' "$out"
