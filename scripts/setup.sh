#!/usr/bin/env bash
# Installs what redis-autoheal and its tests need on Debian 12, as root:
# Debian's packages (Redis, OpenSSH, sudo, Prometheus, Alertmanager, redis_exporter, systemd's
# tools) and the Python packages into ./.venv. Safe to run again: it installs only what is
# missing, and leaves the daemons of what it installed disabled.
set -euo pipefail
cd "$(dirname "$0")/.."

debs=(
  python3 python3-venv python3-pip
  redis-server redis-tools
  openssh-server openssh-client sudo
  iproute2 procps util-linux
  systemd  # systemd-analyze and systemd-sysusers, for the tests of packaging/systemd/
  prometheus prometheus-alertmanager prometheus-redis-exporter
  docker-compose
  etcd-server etcd-client  # the remediator replicas' tests (coordination.backend: etcd)
)
# Packages installed for their programs only: their daemons stay off (below).
daemons=(redis-server openssh-server prometheus prometheus-alertmanager prometheus-redis-exporter
  etcd-server)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: need root to install Debian packages: ${missing[*]}" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # The demo and the tests run these packages' programs themselves; their daemons must neither
  # start now nor at the next boot (Prometheus, Alertmanager and redis_exporter would take
  # 9090, 9093 and 9121). policy-rc.d (exit 101) keeps the maintainer scripts from starting them
  # (a policy-rc.d of the host's own is left as it is) ...
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # ... and `systemctl disable` undoes the enabling their postinst did (Debian keeps a unit the
  # admin disabled disabled across upgrades). It works without systemd running, and it moves
  # the SysV links too; with no systemctl at all, update-rc.d does that. Only the daemons of
  # packages installed here: one the host already had is its own business.
  units=() scripts=()
  for p in "${missing[@]}"; do
    case " ${daemons[*]} " in *" $p "*) ;; *) continue ;; esac
    while read -r f; do
      if [[ $f =~ ^(/usr)?/lib/systemd/system/[^@/]+\.(service|socket|timer)$ ]]; then
        units+=("${f##*/}")
      elif [[ $f == /etc/init.d/* ]]; then
        scripts+=("${f##*/}")
      fi
    done < <(dpkg-query -L "$p")
  done
  if command -v systemctl >/dev/null && ((${#units[@]})); then
    echo "setup: not started at boot: ${units[*]}"
    systemctl disable --quiet "${units[@]}"
  elif ((${#scripts[@]})); then
    echo "setup: not started at boot: ${scripts[*]}"
    for s in "${scripts[@]}"; do update-rc.d "$s" disable >/dev/null; done
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -e "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[test]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# The checkout's own tools (python -m testhost, python -m demo) import from any directory:
# the checkout goes last on the venv's path, after every installed package.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
if [ "$(cat "$site/redis-autoheal-checkout.pth" 2>/dev/null)" != "$PWD" ]; then
  echo "$PWD" > "$site/redis-autoheal-checkout.pth"
fi
