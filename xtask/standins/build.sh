#!/usr/bin/env bash
# Builds the stand-in base images that docker-compose.yml and the Dockerfile name, on a machine with a Docker
# engine but no image registry, from what the machine itself can reach: Debian's mirror (the one apt uses), this
# machine's Rust toolchain, Node.js and CA bundle, and Kafka's jars from Maven Central. Used only by
# `cargo xtask compose-up` (and so by `cargo xtask test`); the images are local, labelled
# org.openbank.standin, and never pushed. An image of one of these names that already exists (a real one pulled
# from a registry, or a stand-in built before) is left alone: `--rebuild` replaces stand-ins (never real images).
#
#   build.sh [--rebuild]      tags: debian:bookworm-slim rust:$RUST_VERSION-slim-bookworm node:20-bookworm-slim
#                                   postgres:17 apache/kafka:$KAFKA_VERSION
# Needs RUST_VERSION and KAFKA_VERSION in the environment (xtask passes the ones the project pins).
set -euo pipefail
: "${RUST_VERSION:?}" "${KAFKA_VERSION:?}"
here="$(cd "$(dirname "$0")" && pwd)"
work="${OPENBANK_CACHE:-$HOME/.cache/open-bank}/standins"
rebuild=false
if [ "${1:-}" = --rebuild ]; then rebuild=true; fi
export DOCKER_BUILDKIT=0
ca=/etc/ssl/certs/ca-certificates.crt

say() { printf '  %-26s %s\n' "$1" "$2"; }

# 0: build it, 1: keep it (exists; a real image is never replaced).
wanted() {
  local tag="$1" label
  label="$(docker image inspect -f '{{index .Config.Labels "org.openbank.standin"}}' "$tag" 2>/dev/null)" || return 0
  if [ -z "$label" ] || [ "$label" = '<no value>' ]; then
    say "$tag" "present (not a stand-in: used as it is)"
    return 1
  fi
  if $rebuild; then return 0; fi
  say "$tag" "present (stand-in built $(docker image inspect -f '{{.Created}}' "$tag" | cut -c1-19))"
  return 1
}

# A build with host networking (the only way out of a container here) and a context of `dir`.
build() {
  local tag="$1" dockerfile="$2" dir="$3"; shift 3
  local start=$SECONDS
  if ! docker build --network host -q -t "$tag" -f "$dockerfile" "$@" "$dir" > "$work/build.log" 2>&1; then
    tail -30 "$work/build.log" >&2
    echo "stand-in $tag: docker build failed (log: $work/build.log)" >&2
    exit 1
  fi
  say "$tag" "built in $((SECONDS - start)) s, $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
}

mkdir -p "$work"

# debian:bookworm-slim: debootstrap minbase from the mirror apt uses, plus this machine's CA bundle (also as a local
# CA, so that installing ca-certificates in an image keeps it).
if wanted debian:bookworm-slim; then
  command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  mirror="$(grep -rhoE '^(URIs: *|deb +)(\[[^]]*\] *)?https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d 2>/dev/null \
            | grep -oE "https?://[^ ]+" | grep -v -- -security | grep -i debian | head -1 || true)"
  [ -n "$mirror" ] || { echo "no Debian mirror found in /etc/apt/sources.list(.d)" >&2; exit 1; }
  start=$SECONDS
  root="$work/debian-rootfs"
  rm -rf "$root"
  say debian:bookworm-slim "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" > "$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  mkdir -p "$root/etc/ssl/certs"
  cp "$ca" "$root/etc/ssl/certs/ca-certificates.crt"
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp "$ca" "$root/usr/local/share/ca-certificates/openbank-machine.crt"
  printf 'APT::Install-Recommends "false";\n' > "$root/etc/apt/apt.conf.d/90openbank-standin"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  tar -C "$root" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' --change 'LABEL org.openbank.standin=debian' - debian:bookworm-slim >/dev/null
  rm -rf "$root"
  say debian:bookworm-slim "imported in $((SECONDS - start)) s, $(docker image inspect -f '{{.Size}}' debian:bookworm-slim | awk '{printf "%.0f MB", $1/1e6}')"
fi

# rust:<version>-slim-bookworm: the toolchain rustup installed here (without its documentation).
tag="rust:${RUST_VERSION}-slim-bookworm"
if wanted "$tag"; then
  toolchain="$(rustup toolchain list -v 2>/dev/null | awk -v v="$RUST_VERSION" '$1 ~ "^"v"-" {print $NF}' | head -1)"
  [ -n "$toolchain" ] && [ -x "$toolchain/bin/rustc" ] || toolchain="$(rustc +"$RUST_VERSION" --print sysroot)"
  ctx="$work/rust"; rm -rf "$ctx"; mkdir -p "$ctx/toolchain"
  toolchain="$(readlink -f "$toolchain")"
  for d in bin lib libexec etc; do [ -e "$toolchain/$d" ] && cp -al "$toolchain/$d" "$ctx/toolchain/" 2>/dev/null || { [ -e "$toolchain/$d" ] && cp -a "$toolchain/$d" "$ctx/toolchain/"; }; done
  cp "$(command -v rustup)" "$ctx/rustup"
  build "$tag" "$here/rust.Dockerfile" "$ctx" --build-arg "RUST_VERSION=$RUST_VERSION"
  rm -rf "$ctx"
fi

# node:20-bookworm-slim: this machine's Node.js 20 and npm.
if wanted node:20-bookworm-slim; then
  node="$(command -v node)"; major="$("$node" --version | sed -E 's/^v([0-9]+).*/\1/')"
  [ "$major" = 20 ] || { echo "node:20 stand-in: this machine's Node.js is $("$node" --version), not 20" >&2; exit 1; }
  npm_dir="$(readlink -f "$(dirname "$(readlink -f "$(command -v npm)")")/..")"
  ctx="$work/node"; rm -rf "$ctx"; mkdir -p "$ctx"
  cp "$(readlink -f "$node")" "$ctx/node"; cp -a "$npm_dir" "$ctx/npm"
  build node:20-bookworm-slim "$here/node.Dockerfile" "$ctx"
  rm -rf "$ctx"
fi

# postgres:17: Debian's PostgreSQL 15 behind the official entrypoint's contract.
if wanted postgres:17; then
  ctx="$work/postgres"; rm -rf "$ctx"; mkdir -p "$ctx"
  cp "$here/postgres-entrypoint.sh" "$ctx/"
  build postgres:17 "$here/postgres.Dockerfile" "$ctx"
  rm -rf "$ctx"
fi

# apache/kafka:<version>: Kafka's jars (broker and tools) from Maven Central on Debian's JRE.
tag="apache/kafka:${KAFKA_VERSION}"
if wanted "$tag"; then
  ctx="$work/kafka"; rm -rf "$ctx"; mkdir -p "$ctx/libs"
  cat > "$ctx/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>open-bank</groupId><artifactId>kafka-standin</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>${KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version></dependency>
  </dependencies>
</project>
POM
  say "$tag" "fetching Kafka ${KAFKA_VERSION} jars from Maven Central"
  mvn -B -q -f "$ctx/pom.xml" dependency:copy-dependencies -DoutputDirectory="$ctx/libs" -DincludeScope=runtime \
    > "$work/mvn.log" 2>&1 || { tail -20 "$work/mvn.log" >&2; exit 1; }
  rm "$ctx/pom.xml"
  cp "$here/kafka-bin.sh" "$here/kafka-run.sh" "$ctx/"
  build "$tag" "$here/kafka.Dockerfile" "$ctx"
  rm -rf "$ctx"
fi
