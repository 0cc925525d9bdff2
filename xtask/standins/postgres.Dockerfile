# Stand-in for the official `postgres:<major>`, built only by `cargo xtask compose-up` on a machine with no image
# registry (never pushed). Debian bookworm's PostgreSQL server (15, not the official image's major) under the
# official image's contract as far as docker-compose.yml relies on it: user `postgres` with uid 999, PGDATA
# /var/lib/postgresql/data, POSTGRES_USER / POSTGRES_PASSWORD(_FILE) / POSTGRES_DB, initdb on the first start only,
# pg_isready on the PATH, `postgres` as the command.
FROM debian:bookworm-slim
RUN groupadd -r postgres --gid=999 \
    && useradd -r -g postgres --uid=999 --home-dir=/var/lib/postgresql --shell=/bin/bash postgres \
    && mkdir -p /var/lib/postgresql && chown postgres:postgres /var/lib/postgresql
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 gosu \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/run/postgresql /docker-entrypoint-initdb.d \
    && chown postgres:postgres /var/run/postgresql && chmod 3777 /var/run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
RUN mkdir -p "$PGDATA" && chown postgres:postgres "$PGDATA" && chmod 1777 "$PGDATA"
VOLUME /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
LABEL org.openbank.standin="postgres"
