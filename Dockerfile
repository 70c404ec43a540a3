# wabot container image.
#
#   docker build -t wabot:dev .
#   podman build --format docker -t wabot:dev .     # podman: the OCI format would drop the HEALTHCHECK
#   # this sandbox (no registry; base images from ../shared/tools/local-images):
#   podman build --pull=never --network host --format docker \
#     -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro -t localhost/wabot:dev .
#
# Stages: chef (cargo-chef installed once) -> planner (dependency recipe) -> builder (dependencies
# cooked in their own cached layer, then the crate) -> rootfs (Debian bookworm-slim, trimmed, CA bundle,
# non-root user, binary, config) -> final image (the rootfs flattened into one layer).
# See deploy/README.md for running it (compose, Kubernetes, smoke test, lint).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---------------------------------------------------------------------------------------------------
FROM docker.io/library/rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS chef
# Strip symbols and use the crate's own release profile (thin LTO); set here so the cooked
# dependencies and the final build share the same flags (a mismatch would rebuild everything).
ENV CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_INCREMENTAL=0
RUN cargo install cargo-chef --locked --version 0.1.78 \
    && rm -rf "${CARGO_HOME:-/usr/local/cargo}/registry"
# The build's own target dir (/src/target), never the host's: .dockerignore keeps target/ out.
WORKDIR /src

# ---------------------------------------------------------------------------------------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------------------------------
FROM chef AS builder
# Dependencies only: this layer is rebuilt only when Cargo.toml / Cargo.lock change.
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin wabot --recipe-path recipe.json
# Then the crate itself (src/, bench/ for the manifest's second [[bin]], config/rules.toml is
# compiled in as the built-in rule set).
COPY . .
RUN cargo build --release --locked --bin wabot \
    && install -D -m 0755 target/release/wabot /out/usr/local/bin/wabot \
    && /out/usr/local/bin/wabot --version

# ---------------------------------------------------------------------------------------------------
# Runtime filesystem: Debian bookworm-slim plus the CA bundle (the binary uses rustls, so no OpenSSL
# is needed: the bundle from Debian's ca-certificates is copied in rather than installing the package
# and its openssl dependency). Documentation, man pages and translations are removed here and the
# result is copied into an empty image below, so that what is deleted really leaves the image.
FROM docker.io/library/debian:${DEBIAN_RELEASE}-slim AS rootfs
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN printf '%s\n' \
        'path-exclude /usr/share/doc/*' \
        'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' \
        'path-exclude /usr/share/info/*' \
        'path-exclude /usr/share/locale/*' \
        'path-include /usr/share/locale/locale.alias' \
        'path-exclude /usr/share/lintian/*' \
        > /etc/dpkg/dpkg.cfg.d/90-slim \
    && find /usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete \
    && find /usr/share/doc -mindepth 1 -type d -empty -delete \
    && rm -rf /usr/share/man/* /usr/share/info/* /usr/share/lintian \
        /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/* \
    && find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + \
    && groupadd --system --gid 10001 wabot \
    && useradd --system --uid 10001 --gid wabot --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin wabot \
    && mkdir -p /app/config
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/usr/local/bin/wabot /usr/local/bin/wabot
# Read-only for the service user: owned by root, world-readable.
COPY config/ /app/config/

# ---------------------------------------------------------------------------------------------------
FROM scratch
# One layer holding the trimmed Debian tree: deleting files in a layer above the base would not make
# the image smaller. Deliberate, hence the ignore of "do not copy an entire filesystem".
# hadolint ignore=DL3067
COPY --from=rootfs / /

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="wabot" \
      org.opencontainers.image.description="WhatsApp Cloud API bot worker: signed webhooks, durable Redis hand-off, per-user ordered processing." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"

# MALLOC_MMAP_THRESHOLD_: request bodies above 128 KiB get their own mappings, returned to the
# system when freed; without it glibc keeps a burst of large bodies' memory (measured: 223 MB
# kept after 100 x 2 MiB bodies, ~38 MB with it).
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    APP_CONFIG_DIR=/app/config \
    APP_ENV=production \
    PORT=8000 \
    LOG_FORMAT=json \
    RUST_LOG=info \
    MALLOC_MMAP_THRESHOLD_=131072

# responder.rules_file defaults to config/rules.toml, relative to this directory.
WORKDIR /app
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# `wabot healthcheck` GETs http://127.0.0.1:$PORT/health (no curl in the image).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/wabot", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/wabot"]
CMD ["serve"]
