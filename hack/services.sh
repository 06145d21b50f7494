#!/usr/bin/env bash
# hack/services.sh — make sure Redis and Postgres are available for the tests.
#
#   Redis     redis-server on 127.0.0.1:6379 (tests also start throwaway
#             servers of their own from the same binary)
#   Postgres  a server on 127.0.0.1:5432 with database "test", reachable as
#             user "postgres" without a password (trust auth on loopback TCP)
#
# Missing packages are installed with apt-get (redis-server, postgresql);
# stopped servers are started. Idempotent: when everything answers it only
# checks, in well under a second.
#
# Failures are reported loudly on stderr. Under CI=true (or
# LOCKCOORD_REQUIRE_SERVICES=1) any failure is fatal: the script exits
# non-zero. Otherwise it exits 0 after the warning, and the tests that need
# the missing service skip.
#
# Environment: REDIS_PORT (6379), PG_PORT (5432), PG_USER (postgres),
# PG_DATABASE (test).
set -uo pipefail

REDIS_HOST=127.0.0.1
REDIS_PORT=${REDIS_PORT:-6379}
PG_HOST=127.0.0.1
PG_PORT=${PG_PORT:-5432}
PG_USER=${PG_USER:-postgres}
PG_DATABASE=${PG_DATABASE:-test}

strict=0
if [[ "${CI:-}" == "true" || "${LOCKCOORD_REQUIRE_SERVICES:-}" == "1" ]]; then
	strict=1
fi
failed=0

log() { printf 'services: %s\n' "$*"; }
err() {
	printf '\nservices: ERROR: %s\n\n' "$*" >&2
	failed=1
}

# as_root runs a command as root: directly, through sudo, or not at all.
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo -n "$@"
	else
		echo "need root to run: $*" >&2
		return 1
	fi
}

apt_updated=0
apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "apt-get not found: install $* by hand" >&2
		return 1
	fi
	log "installing $* with apt-get (once; may take a minute)"
	if [[ $apt_updated -eq 0 ]]; then
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
		apt_updated=1
	fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# wait_for runs "$@" every 0.2 s until it succeeds, for at most $1 seconds.
wait_for() {
	local secs=$1
	shift
	local i
	for ((i = 0; i < secs * 5; i++)); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# port_open reports whether something accepts TCP connections on host:port.
port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# ---------------------------------------------------------------- Redis ----

redis_ping() { [[ $(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

redis_version_ok() { # redis_version_ok VERSION — 6.2 or later?
	[[ -z "$1" ]] || printf '6.2\n%s\n' "$1" | sort -V -C
}

ensure_redis() {
	# The quick path: one INFO says it answers and which version it is.
	local version
	version=$(timeout 3 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" info server 2>/dev/null |
		sed -n 's/^redis_version:\([0-9.]*\).*/\1/p')
	if [[ -n "$version" ]]; then
		if ! redis_version_ok "$version"; then
			err "the redis on $REDIS_HOST:$REDIS_PORT is $version: lockcoord needs Redis 6.2 or later"
		fi
		if ! command -v redis-server >/dev/null 2>&1; then
			# Tests start throwaway servers of their own from this binary.
			apt_install redis-server || err "could not install redis-server (apt-get install -y redis-server failed)"
		fi
		log "redis $version: answering on $REDIS_HOST:$REDIS_PORT"
		return
	fi

	if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
		if ! apt_install redis-server; then
			err "could not install redis-server (apt-get install -y redis-server failed)"
			return
		fi
	fi
	version=$(redis-server --version | sed -n 's/.*v=\([0-9][0-9.]*\).*/\1/p')
	if ! redis_version_ok "$version"; then
		err "redis-server $version is too old: lockcoord needs Redis 6.2 or later"
		return
	fi
	if port_open "$REDIS_HOST" "$REDIS_PORT"; then
		err "something listens on $REDIS_HOST:$REDIS_PORT but does not answer redis PING with PONG (password? another program?)"
		return
	fi

	# Redis 7 accepts "-addr" for an optional bind address: bind ::1 only
	# when the machine has IPv6.
	local bind=(127.0.0.1)
	if [[ "${version%%.*}" -ge 7 ]]; then
		bind+=(-::1)
	fi
	local dir=${TMPDIR:-/tmp}/lockcoord-redis-$REDIS_PORT
	mkdir -p "$dir"
	log "starting redis-server $version on $REDIS_HOST:$REDIS_PORT (log: $dir/redis.log)"
	if ! redis-server --daemonize yes --bind "${bind[@]}" --port "$REDIS_PORT" \
		--save "" --appendonly no --protected-mode yes \
		--dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"; then
		err "redis-server failed to start; see $dir/redis.log"
		return
	fi
	if ! wait_for 10 redis_ping; then
		err "redis-server started but does not answer PING on $REDIS_HOST:$REDIS_PORT; last log lines:
$(tail -n 20 "$dir/redis.log" 2>/dev/null)"
		return
	fi
	log "redis $version: started on $REDIS_HOST:$REDIS_PORT"
}

# ------------------------------------------------------------- Postgres ----

pg_bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	if [[ -n "$d" && -x "$d/postgres" ]]; then
		echo "$d"
	elif command -v postgres >/dev/null 2>&1; then
		dirname "$(command -v postgres)"
	fi
}

PSQL=psql
PG_ISREADY=pg_isready
pg_sql() { # pg_sql DB SQL — as $PG_USER over loopback TCP, never prompting for a password
	PGCONNECT_TIMEOUT=3 "$PSQL" -X -w -q -At -v ON_ERROR_STOP=1 \
		-h "$PG_HOST" -p "$PG_PORT" -U "$PG_USER" -d "$1" -c "$2"
}
pg_ready() { PGCONNECT_TIMEOUT=2 "$PG_ISREADY" -q -h "$PG_HOST" -p "$PG_PORT"; }

# pg_start starts (creating it if needed) a cluster listening on $PG_PORT.
pg_start() {
	local bindir=$1
	if command -v pg_ctlcluster >/dev/null 2>&1; then # Debian/Ubuntu
		local version cluster
		version=$(basename "$(dirname "$bindir")")
		cluster=$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p {print $1, $2; exit}')
		if [[ -z "$cluster" ]]; then
			# No cluster on our port: "main" when there is none at all,
			# else one of our own beside the others.
			local name=main
			if [[ -n "$(pg_lsclusters -h 2>/dev/null)" ]]; then
				name=lockcoord
			fi
			log "creating postgres cluster $version/$name on port $PG_PORT"
			# pg_createcluster runs initdb as the postgres user itself.
			as_root pg_createcluster --port "$PG_PORT" "$version" "$name" -- --auth-local=trust --auth-host=trust ||
				return 1
			cluster="$version $name"
		fi
		log "starting postgres cluster $cluster"
		# shellcheck disable=SC2086 # "version name"
		as_root pg_ctlcluster --skip-systemctl-redirect $cluster start || return 1
		return 0
	fi

	# Anything else: a cluster of our own. initdb refuses to run as root, so
	# data, socket and log folders belong to the postgres user.
	local data=/var/lib/postgresql/lockcoord-data sock=/var/run/postgresql
	local logf=/var/log/postgresql/lockcoord.log
	id postgres >/dev/null 2>&1 || as_root useradd --system --home-dir /var/lib/postgresql --create-home postgres || return 1
	as_root mkdir -p "$data" "$sock" "$(dirname "$logf")" || return 1
	as_root chown postgres: "$data" "$sock" "$(dirname "$logf")" || return 1
	if [[ ! -s "$data/PG_VERSION" ]]; then
		log "creating postgres cluster in $data"
		as_root runuser -u postgres -- "$bindir/initdb" -D "$data" -U postgres --auth=trust >/dev/null || return 1
	fi
	log "starting postgres in $data (log: $logf)"
	as_root runuser -u postgres -- "$bindir/pg_ctl" -D "$data" -l "$logf" -w \
		-o "-p $PG_PORT -k $sock -c listen_addresses=127.0.0.1" start
}

# pg_trust makes loopback TCP connections trusted (prepends the rules to
# pg_hba.conf and reloads). Only used when a password-less login failed.
pg_trust() {
	local hba
	hba=$(pg_sql_local "SHOW hba_file") || return 1
	if [[ -z "$hba" ]]; then
		return 1
	fi
	log "adding trust rules for 127.0.0.1 and ::1 to $hba"
	as_root sh -c "cp '$hba' '$hba.lockcoord.bak' &&
		{ printf '%s\n' '# added by lockcoord hack/services.sh: tests connect without a password' \
			'host all all 127.0.0.1/32 trust' 'host all all ::1/128 trust'; cat '$hba.lockcoord.bak'; } > '$hba'" || return 1
	pg_sql_local "SELECT pg_reload_conf()" >/dev/null
}

# pg_sql_local runs SQL as the postgres superuser over the Unix socket
# (peer auth), for when TCP login does not work yet.
pg_sql_local() {
	as_root runuser -u postgres -- "$PSQL" -X -q -At -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres -c "$1"
}

ensure_postgres() {
	local bindir
	bindir=$(pg_bindir)
	if [[ -z "$bindir" ]] || ! command -v psql >/dev/null 2>&1; then
		if ! apt_install postgresql postgresql-client; then
			err "could not install postgresql (apt-get install -y postgresql failed)"
			return
		fi
		bindir=$(pg_bindir)
		if [[ -z "$bindir" ]]; then
			err "postgresql installed but no postgres binary found under /usr/lib/postgresql"
			return
		fi
	fi
	# The versioned client tools directly: Debian's wrappers cost a second each.
	if [[ -x "$bindir/psql" ]]; then
		PSQL=$bindir/psql
		PG_ISREADY=$bindir/pg_isready
	fi

	# The quick path: one query says it all when everything is in place.
	local probe="SELECT split_part(current_setting('server_version'), ' ', 1) || ' ' || count(*) FROM pg_database WHERE datname = '$PG_DATABASE'"
	local state
	if ! state=$(pg_sql postgres "$probe" 2>/dev/null); then
		if ! pg_ready; then
			if port_open "$PG_HOST" "$PG_PORT"; then
				err "something listens on $PG_HOST:$PG_PORT but pg_isready says it is no Postgres server accepting connections"
				return
			fi
			if ! pg_start "$bindir"; then
				err "could not start postgres on $PG_HOST:$PG_PORT (see /var/log/postgresql/)"
				return
			fi
			if ! wait_for 30 pg_ready; then
				err "postgres started but is not accepting connections on $PG_HOST:$PG_PORT (is listen_addresses/port right? see /var/log/postgresql/)"
				return
			fi
		fi
		if ! state=$(pg_sql postgres "$probe" 2>/dev/null); then
			if ! pg_trust || ! wait_for 5 pg_sql postgres "SELECT 1" || ! state=$(pg_sql postgres "$probe" 2>/dev/null); then
				err "cannot log in to postgres at $PG_HOST:$PG_PORT as '$PG_USER' without a password:
$(pg_sql postgres "SELECT 1" 2>&1)
add 'host all all 127.0.0.1/32 trust' to pg_hba.conf and reload"
				return
			fi
		fi
	fi

	local version=${state% *} count=${state##* }
	if [[ "$count" != 1 ]]; then
		log "creating database $PG_DATABASE"
		if ! pg_sql postgres "CREATE DATABASE \"$PG_DATABASE\"" >/dev/null; then
			err "could not create database $PG_DATABASE"
			return
		fi
	fi
	log "postgres $version: answering on $PG_HOST:$PG_PORT, database $PG_DATABASE, user $PG_USER"
}

ensure_redis
ensure_postgres

if [[ $failed -ne 0 ]]; then
	if [[ $strict -eq 1 ]]; then
		echo "services: FAILED: a service the tests need is unavailable (fatal under CI=true / LOCKCOORD_REQUIRE_SERVICES=1)" >&2
		exit 1
	fi
	echo "services: WARNING: continuing without every service; tests that need a missing one will skip" >&2
fi
exit 0
