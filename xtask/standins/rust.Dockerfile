# Stand-in for the official `rust:<version>-slim-bookworm`, built only by `cargo xtask compose-up` on a machine with
# no image registry (never pushed). The official image's layout: the toolchain under RUSTUP_HOME, cargo's and
# rustup's proxies under CARGO_HOME/bin on the PATH, gcc and libc6-dev for linking. The toolchain is the one
# rustup installed on this machine (the build context's `toolchain/`), not a download.
FROM debian:bookworm-slim
ARG RUST_VERSION
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${RUST_VERSION}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY toolchain/ /usr/local/rustup/toolchains/${RUST_VERSION}-x86_64-unknown-linux-gnu/
COPY rustup /usr/local/cargo/bin/rustup
RUN cd /usr/local/cargo/bin \
    && for p in cargo rustc rustdoc rust-gdb rust-lldb; do ln -s rustup "$p"; done \
    && rustup default "${RUST_VERSION}" \
    && rustc --version && cargo --version
LABEL org.openbank.standin="rust"
