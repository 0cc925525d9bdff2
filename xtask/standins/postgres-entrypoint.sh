#!/usr/bin/env bash
# The stand-in postgres image's entrypoint: the official image's docker-entrypoint.sh (docker-library/postgres)
# reduced to what docker-compose.yml uses. As root it prepares PGDATA and re-runs itself as `postgres`; on an empty
# PGDATA it runs initdb with POSTGRES_USER and POSTGRES_PASSWORD (or the file POSTGRES_PASSWORD_FILE names),
# creates POSTGRES_DB, runs /docker-entrypoint-initdb.d/*.sh|*.sql, and allows password logins from the network
# (scram-sha-256); then it execs the server. A later start finds PG_VERSION and skips all of that.
set -Eeo pipefail

# VAR from VAR or from the file VAR_FILE names (not both), as the official file_env.
file_env() {
	local var="$1" file_var="${1}_FILE" def="${2:-}"
	if [ "${!var:-}" ] && [ "${!file_var:-}" ]; then
		echo >&2 "error: both $var and $file_var are set (but are exclusive)"
		exit 1
	fi
	local val="$def"
	if [ "${!var:-}" ]; then
		val="${!var}"
	elif [ "${!file_var:-}" ]; then
		val="$(< "${!file_var}")"
	fi
	export "$var"="$val"
	unset "$file_var"
}

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" = 'postgres' ]; then
	file_env POSTGRES_PASSWORD
	file_env POSTGRES_USER postgres
	file_env POSTGRES_DB "$POSTGRES_USER"
	if [ "$(id -u)" = '0' ]; then
		mkdir -p "$PGDATA"
		chown -R postgres:postgres "$PGDATA"
		chmod 700 "$PGDATA"
		exec gosu postgres "$BASH_SOURCE" "$@"
	fi
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		if [ -z "$POSTGRES_PASSWORD" ]; then
			echo >&2 "error: database is uninitialized and superuser password is not specified (POSTGRES_PASSWORD)"
			exit 1
		fi
		echo "stand-in postgres image: Debian's PostgreSQL $(postgres --version | awk '{print $3}'), not the official image's"
		initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
			--auth-local=trust --auth-host=scram-sha-256 -D "$PGDATA"
		printf '\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
		printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
		pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
		if [ "$POSTGRES_DB" != 'postgres' ]; then
			psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --dbname postgres \
				--set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db" ;'
		fi
		for f in /docker-entrypoint-initdb.d/*; do
			case "$f" in
				*.sh) echo "running $f"; . "$f" ;;
				*.sql) echo "running $f"; psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$f" ;;
				*) ;;
			esac
		done
		pg_ctl -D "$PGDATA" -m fast -w stop
		echo 'PostgreSQL init process complete; ready for start up.'
	fi
	unset POSTGRES_PASSWORD
fi

exec "$@"
