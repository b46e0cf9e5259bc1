#!/bin/sh
# gen-secrets.sh [DIR]: generates the compose stack's secrets into DIR (default: the secrets/
# directory beside this script), which docker-compose.yml reads. Run it once before
# `docker compose up`. It keeps files that already exist, so running it again changes nothing;
# delete a file (or the directory) to get a new one. Nothing it writes is ever committed
# (secrets/.gitignore). Needs only ssh-keygen and coreutils.
set -eu
dir=${1:-$(dirname "$0")/secrets}
umask 077
mkdir -p "$dir"
chmod 0700 "$dir"

token() { # 32 random bytes as 64 hex digits: safe in any config syntax
  head -c 32 /dev/urandom | od -An -v -tx1 | tr -d ' \n'
}

for name in webhook_token admin_token operator_token redis_password grafana_admin_password; do
  if [ ! -s "$dir/$name" ]; then
    token > "$dir/$name.tmp"
    mv "$dir/$name.tmp" "$dir/$name"
    echo "gen-secrets: $dir/$name"
  fi
done

keypair() { # keypair FILE COMMENT
  if [ ! -s "$1" ]; then
    rm -f "$1" "$1.pub"
    ssh-keygen -q -t ed25519 -N '' -C "$2" -f "$1"
    echo "gen-secrets: $1 (+ .pub)"
  fi
}
# autobot's key, which the remediator and the exporter log in to the Redis host with.
keypair "$dir/autobot_key" "autobot-redis-$(date +%Y%m%d)"
# The Redis host's sshd key, and the known_hosts line the clients check it against: the host
# name is the compose service name, as in docker/config.yml's ssh.host.
keypair "$dir/ssh_host_ed25519_key" "redis-host"
if [ ! -s "$dir/known_hosts" ] || [ "$dir/ssh_host_ed25519_key.pub" -nt "$dir/known_hosts" ]; then
  printf 'redis-host %s\n' "$(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" > "$dir/known_hosts"
  echo "gen-secrets: $dir/known_hosts"
fi
chmod 0600 "$dir"/*
chmod 0644 "$dir"/*.pub "$dir/known_hosts"
