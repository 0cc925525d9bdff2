# Stand-in for the official `node:<major>-bookworm-slim`, built only by `cargo xtask compose-up` on a machine with no
# image registry (never pushed): this machine's Node.js and npm (the build context's `node` and `npm/`) in
# /usr/local, as the official image has them.
FROM debian:bookworm-slim
COPY node /usr/local/bin/node
COPY npm/ /usr/local/lib/node_modules/npm/
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && node --version && npm --version
CMD ["node"]
LABEL org.openbank.standin="node"
