#!/bin/sh
# Boots the Redis host: installs the secrets mounted by compose, starts the redis-server unit
# through the systemd stand-in (as systemd would at boot), then runs sshd in the foreground.
# PID 1 is compose's `init: true` (tini): it reaps the unit's double-forked supervisors.
set -eu

secrets=/run/secrets
state=/var/lib/redis-unit

# sshd's StrictModes wants root- or user-owned keys; bind-mounted secrets keep the owner they
# have on the Docker host, so install root-owned copies.
install -d -m 0755 /etc/ssh/authorized_keys
install -m 0644 -o root -g root "$secrets/autobot_key.pub" /etc/ssh/authorized_keys/autobot
install -m 0600 -o root -g root "$secrets/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key

password=$(cat "$secrets/redis_password")
case $password in
  '' | *[!A-Za-z0-9]*) echo "redis-host: $secrets/redis_password must be letters and digits" >&2; exit 1 ;;
esac
install -m 0640 -o root -g redis /dev/null /etc/redis/auth.conf
printf 'requirepass %s\n' "$password" > /etc/redis/auth.conf

install -d -m 2755 -o redis -g redis /run/redis
install -d -m 0755 /run/sshd
install -d -m 2750 -o redis -g adm /var/log/redis

# The unit as the stand-in models it (docker/redis-host/unit.json, read by every systemctl call,
# so world-readable and without the password: the stand-in's readiness check counts Redis's
# NOAUTH answer as up).
install -d -m 0755 "$state"
install -m 0644 /usr/local/share/redis-host/unit.json "$state/unit.json"
# A (re)boot forgets the unit's runtime state, as systemd does; the journal is kept.
rm -f "$state/state.json" "$state/state.lock" "$state/faults.json"

/usr/local/sbin/unitctl boot-start || echo "redis-host: redis-server failed to start at boot" >&2
exec /usr/sbin/sshd -D -e
