# Stand-in for the official `node:<major>-bookworm-slim`, built only by `cargo xtask compose-up` on a machine with no
# image registry (never pushed): this machine's Node.js and npm (the build context's `node` and `npm/`) in
# /usr/local, as the official image has them. Node.js trusts only its own CA list: the machine's bundle (which the
# Debian stand-in carries) is added for npm's requests, the one setting the official image does not have.
FROM debian:bookworm-slim
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
COPY node /usr/local/bin/node
COPY npm/ /usr/local/lib/node_modules/npm/
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
    && node --version && npm --version
CMD ["node"]
LABEL org.openbank.standin="node"
