#!/usr/bin/env bash
# Make sure a local PostgreSQL (127.0.0.1:5432, trust auth, user postgres) and
# a Redis (127.0.0.1:6379) are running, for Virel development and CI.
#
# Idempotent: a service that already answers is only reported, never flushed,
# dropped, restarted or reconfigured. Missing packages are installed with
# apt-get (needs root, or passwordless sudo).
set -euo pipefail

PG_HOST=127.0.0.1
PG_PORT=5432
REDIS_HOST=127.0.0.1
REDIS_PORT=6379

export DEBIAN_FRONTEND=noninteractive

APT_UPDATED=0
APT_LOG="$(mktemp -t virel-dev-services.XXXXXX)"
trap 'rm -f "$APT_LOG"' EXIT

die() {
  echo "dev-services: $*" >&2
  exit 1
}

# Run a command as root (directly, or through non-interactive sudo).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n -E "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

# apt-get install, with `apt-get update` at most once per script run.
# Output goes to a log that is shown only when apt-get fails.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install $* by hand"
  if [ "$APT_UPDATED" -eq 0 ]; then
    as_root apt-get update -q >>"$APT_LOG" 2>&1 || { cat "$APT_LOG" >&2; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  as_root apt-get install -y -q "$@" >>"$APT_LOG" 2>&1 \
    || { cat "$APT_LOG" >&2; die "apt-get install $* failed"; }
}

# Join arguments with ", ".
join() {
  local out="$1" part
  shift
  for part in "$@"; do out+=", $part"; done
  printf '%s' "$out"
}

# Is something accepting TCP connections on host:port? (bash /dev/tcp)
tcp_open() {
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

# --- PostgreSQL --------------------------------------------------------------

pg_ready() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
  else
    # No client tools: treat an open port as a running server, so that a
    # PostgreSQL we did not install (e.g. a container) is left alone.
    tcp_open "$PG_HOST" "$PG_PORT"
  fi
}

pg_installed() {
  [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null 2>&1
}

pg_trust_works() {
  env -u PGPASSWORD PGPASSFILE=/nonexistent/.pgpass \
    psql -w -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1
}

ensure_postgres() {
  local fresh=0 version did=()

  if pg_ready; then
    echo "postgres: already running on $PG_HOST:$PG_PORT"
    return
  fi

  if ! pg_installed; then
    apt_install postgresql postgresql-contrib
    fresh=1
    did+=("installed")
  fi
  pg_installed || die "postgres: installation did not provide /etc/postgresql and pg_ctlcluster"

  version="$(ls /etc/postgresql | head -1)"
  [ -n "$version" ] && [ -d "/etc/postgresql/$version/main" ] \
    || die "postgres: no cluster /etc/postgresql/${version:-<none>}/main (create one with pg_createcluster)"

  # The package may already have started the cluster (or it is still starting
  # up); only start it when it is really down.
  if ! pg_ready && ! as_root pg_ctlcluster "$version" main status >/dev/null 2>&1; then
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start \
      || die "postgres: pg_ctlcluster $version main start failed"
    did+=("started $version/main")
  fi

  local i
  for ((i = 0; i < 30; i++)); do
    pg_ready && break
    sleep 1
  done
  pg_ready || die "postgres: $version/main not ready on $PG_HOST:$PG_PORT after 30 s"

  # Only on a cluster this script has just installed: make local access trust.
  if [ "$fresh" -eq 1 ] && ! pg_trust_works; then
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    [ -f "$hba" ] || die "postgres: $hba not found"
    local tmp
    tmp="$(mktemp)"
    {
      echo "# added by virel deploy/dev-services.sh (development only)"
      echo "local   all   all                  trust"
      echo "host    all   all   127.0.0.1/32   trust"
      echo "host    all   all   ::1/128        trust"
      cat "$hba"
    } >"$tmp"
    as_root cp "$tmp" "$hba"
    rm -f "$tmp"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload \
      || die "postgres: reload of $version/main failed"
    sleep 1
    pg_trust_works || die "postgres: trust auth still not working on $PG_HOST:$PG_PORT"
    did+=("set trust auth")
  fi

  if [ "${#did[@]}" -eq 0 ]; then did=("found cluster $version/main running"); fi
  echo "postgres: $(join "${did[@]}"); ready on $PG_HOST:$PG_PORT"
}

# --- Redis -------------------------------------------------------------------

redis_ping() {
  if command -v redis-cli >/dev/null 2>&1; then
    [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]
  else
    # No redis-cli: speak the inline protocol over /dev/tcp.
    local reply
    reply="$(
      exec 2>/dev/null 3<>"/dev/tcp/$REDIS_HOST/$REDIS_PORT" || exit 1
      printf 'PING\r\n' >&3
      IFS= read -r -t 2 line <&3 || exit 1
      printf '%s' "$line"
    )" || return 1
    [ "${reply%$'\r'}" = "+PONG" ]
  fi
}

ensure_redis() {
  local did=()

  if redis_ping; then
    echo "redis: already running on $REDIS_HOST:$REDIS_PORT"
    return
  fi

  if ! command -v redis-server >/dev/null 2>&1; then
    apt_install redis-server
    did+=("installed")
  fi

  # The package's init script may have started it already.
  if ! redis_ping; then
    if tcp_open "$REDIS_HOST" "$REDIS_PORT"; then
      die "redis: port $REDIS_PORT is in use but does not answer PING with PONG"
    fi
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null \
      || die "redis: redis-server failed to start"
    did+=("started redis-server")
  fi

  local i
  for ((i = 0; i < 15; i++)); do
    redis_ping && break
    sleep 1
  done
  redis_ping || die "redis: no PONG from $REDIS_HOST:$REDIS_PORT after 15 s"

  if [ "${#did[@]}" -eq 0 ]; then did=("found it running"); fi
  echo "redis: $(join "${did[@]}"); PONG on $REDIS_HOST:$REDIS_PORT"
}

ensure_postgres
ensure_redis
