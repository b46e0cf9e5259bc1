#!/usr/bin/env bash
# The main job, on loopback only: a local redis-server and the exporter probing it.
# Installs what it needs first (scripts/setup.sh). Ctrl-C stops both and removes the temp files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

port=${REDIS_PORT:-16379}
listen=${LISTEN:-127.0.0.1:9121}
work=$(mktemp -d /tmp/redis-autoheal-run.XXXXXX)
redis-server --bind 127.0.0.1 --port "$port" --save '' --dir "$work" \
  --logfile "$work/redis.log" --daemonize no &
redis_pid=$!
cleanup() { kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

cat > "$work/config.yml" <<YAML
# A target without ssh: the systemd layer reports SSH down; nothing is remediated.
targets:
  - name: redis
    redis: {host: 127.0.0.1, port: $port}
YAML
.venv/bin/redis-autoheal check-config --config "$work/config.yml" --service exporter
echo "redis-server on 127.0.0.1:$port; exporter on http://$listen (Ctrl-C stops both)"
echo "  curl 'http://$listen/probe?target=redis&module=all'"
.venv/bin/redis-autoheal exporter --config "$work/config.yml" --listen "$listen"
