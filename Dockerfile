# Open Bank: one multi-stage build, one runtime target per binary (`docker build --target graphql-endpoint .`).
# The Rust workspace compiles once (stage `builder`) and every service image copies just its own binary, so a
# service's image holds nothing of the others; the dependency layer is cached with cargo-chef, so editing the
# bank's code rebuilds only the workspace crates. docker-compose.yml builds every target. No `# syntax=` line: it
# would make BuildKit pull a frontend image, and the file builds with the classic builder too.

# Must name the toolchain of rust-toolchain.toml (`cargo xtask test` checks it).
ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm
ARG NODE_MAJOR=20

# ---- toolchain: Rust, a C toolchain for librdkafka (built from source by rdkafka-sys, with OpenSSL for its
# SASL/SCRAM), cargo-chef
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
ARG RUST_VERSION
# The image's toolchain, not the rust-toolchain.toml download (whose rustfmt and clippy the images do not need).
ENV RUSTUP_TOOLCHAIN=${RUST_VERSION} \
    CARGO_TERM_COLOR=never
RUN apt-get update \
    && apt-get install -y --no-install-recommends make g++ pkg-config python3 zlib1g-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /src

# ---- the dependency recipe: changes only when a Cargo.toml or Cargo.lock does
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---- every binary, release, stripped
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# The same packages as the build below: cargo unifies dependency features over the packages it builds, so cooking
# the whole workspace (xtask, e2e, the tests' features) would leave dependencies the build must compile again.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bins \
        -p schema-registry -p synchronizer -p heartbeat -p command-generator -p command-handler \
        -p graphql-endpoint -p load-test -p bank-audit
COPY . .
RUN cargo build --release --locked --bins \
        -p schema-registry -p synchronizer -p heartbeat -p command-generator -p command-handler \
        -p graphql-endpoint -p load-test -p bank-audit \
    && mkdir /out \
    && for b in schema-registry synchronizer heartbeat command-generator command-handler graphql-endpoint load-test \
                bank-audit; do \
           cp "target/release/$b" /out/ && strip "/out/$b"; \
       done

# ---- the web UI (Vite build; its GraphQL types are generated from the gateway's schema)
FROM node:${NODE_MAJOR}-${DEBIAN_RELEASE}-slim AS frontend
WORKDIR /src/frontend
COPY frontend/package.json frontend/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY graphql-endpoint/schema.graphql /src/graphql-endpoint/schema.graphql
COPY frontend/ ./
RUN npm run build

# ---- runtime base: Debian slim (glibc, libz and libgcc, which the binaries link), OpenSSL's libcrypto (librdkafka's
# SCRAM), an unprivileged user
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
RUN useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin openbank \
    && mkdir -p /app /results \
    && chown openbank:openbank /results
WORKDIR /app
USER 10001:10001

# ---- the one-shot that makes the compose stack's secrets in its volume (docker/secrets.sh); root, to hand the files
# to the services' user
FROM runtime AS secrets
USER root
COPY docker/secrets.sh /usr/local/bin/secrets
ENTRYPOINT ["secrets"]

# ---- what the services (not the load tester) share: JSON logs
FROM runtime AS service
ENV LOG_FORMAT=json

FROM service AS schema-registry
COPY --from=builder /out/schema-registry /usr/local/bin/
EXPOSE 8081
ENTRYPOINT ["schema-registry"]

FROM service AS synchronizer
COPY --from=builder /out/synchronizer /usr/local/bin/
ENTRYPOINT ["synchronizer"]

FROM service AS heartbeat
COPY --from=builder /out/heartbeat /usr/local/bin/
EXPOSE 17888
ENTRYPOINT ["heartbeat"]

FROM service AS command-generator
COPY --from=builder /out/command-generator /usr/local/bin/
EXPOSE 9102
ENTRYPOINT ["command-generator"]

FROM service AS command-handler
COPY --from=builder /out/command-handler /usr/local/bin/
EXPOSE 9103
ENTRYPOINT ["command-handler"]

# The gateway serves the web UI itself (FRONTEND_DIR), so UI and API share one origin.
FROM service AS graphql-endpoint
COPY --from=builder /out/graphql-endpoint /usr/local/bin/
COPY --from=frontend /src/frontend/dist /app/frontend
ENV FRONTEND_DIR=/app/frontend \
    RESULTS_DIR=/results
EXPOSE 8888
ENTRYPOINT ["graphql-endpoint"]

# The load tester, and the audit of the bank's invariants (`docker compose --profile load-test run --rm
# --entrypoint bank-audit load-test`).
FROM runtime AS load-test
COPY --from=builder /out/load-test /out/bank-audit /usr/local/bin/
ENV RESULTS_DIR=/results
ENTRYPOINT ["load-test"]
