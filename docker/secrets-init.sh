#!/bin/sh
# The compose stack's one-shot `secrets-init` service: copies the generated secrets
# (docker/gen-secrets.sh; mounted by compose at /run/secrets) into one volume per consumer,
# owned by the user that consumer runs as.
#
# Why: compose mounts a secret file with the owner and mode it has on the Docker host (the
# swarm-only uid/gid/mode options do not apply), so a container running as another user could
# not read a mode-600 file; and redis-autoheal refuses an SSH key readable by anyone but its
# owner. This runs as root, reads them all, and hands each service its own private copies.
set -eu
in=${SECRETS_IN:-/run/secrets}
out=${SECRETS_OUT:-/out}

volume() { # volume DIR UID: an emptied directory only UID can enter
  mkdir -p "$1"
  find "$1" -mindepth 1 -delete
  chown "$2:$2" "$1"
  chmod 0700 "$1"
}
put() { # put DIR UID MODE NAME
  cp "$in/$4" "$1/$4"
  chown "$2:$2" "$1/$4"
  chmod "$3" "$1/$4"
}

# redis-autoheal (exporter and remediator), uid 10001 (docker/redis-autoheal/Dockerfile).
autoheal=$out/autoheal
volume "$autoheal" 10001
for name in autobot_key redis_password webhook_token admin_token operator_token; do
  put "$autoheal" 10001 0600 "$name"
done
put "$autoheal" 10001 0644 known_hosts

# Alertmanager (user nobody): the bearer token of the remediator's webhook.
volume "$out/alertmanager" 65534
put "$out/alertmanager" 65534 0600 webhook_token

# Grafana (uid 472): the admin password.
volume "$out/grafana" 472
put "$out/grafana" 472 0600 grafana_admin_password

# The plain Redis (the redis:7 image's redis user, uid 999): its password as a config line.
volume "$out/redis" 999
printf 'requirepass %s\n' "$(cat "$in/redis_password")" > "$out/redis/auth.conf"
chown 999:999 "$out/redis/auth.conf"
chmod 0600 "$out/redis/auth.conf"

echo "secrets-init: installed the secrets for redis-autoheal, Alertmanager, Grafana and Redis"
