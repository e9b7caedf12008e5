# Charon for Redis: the pinned Redis release, built from a tarball verified by
# SHA-256, serving with charon.so loaded.
#
#   make docker                       # builds build/charon.so, then this image
#   make build && docker build -t charon-redis .
#
# charon.so is built outside (make build) and copied in. The Redis version and its
# accepted checksums are build args; their defaults must match the Makefile's pins
# (make docker checks this). Works with the legacy builder and with BuildKit.

# Debian (glibc: Go c-shared libraries misbehave under musl), tag pinned.
ARG BASE_IMAGE=debian:12.15-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc make libc6-dev pkg-config ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
ARG REDIS_VERSION=7.0.15
# Upstream's release tarball and Debian's orig tarball of the same release.
ARG REDIS_SHA256=98066f5363504b26c34dd20fbcc3c957990d764cdf42576c836fc021073f4341
ARG REDIS_SHA256_DEBIAN=4b1dc4ee6d622a09fff9c6777191209750fb5e5a725ef78ea012d6eef4c22982
# Optional local tarball, by its path in the build context; it must sit under
# build/docker/ (the only folder .dockerignore lets through; make docker stages it
# there) and match a checksum above. Empty means download it.
ARG REDIS_TARBALL=
WORKDIR /src
# The glob copies build/docker/'s files when that folder exists, nothing otherwise.
COPY Makefile build/docke[r] /src/
# The same target, fetch rule and checksum check as on the host.
RUN { [ -z "${REDIS_TARBALL}" ] || [ -f "/src/${REDIS_TARBALL##*/}" ] \
      || { echo "REDIS_TARBALL=${REDIS_TARBALL}: put the file under build/docker/ in the build context" >&2; exit 1; }; } \
 && make redis \
      REDIS_VERSION="${REDIS_VERSION}" \
      REDIS_SHA256="${REDIS_SHA256}" \
      REDIS_SHA256_DEBIAN="${REDIS_SHA256_DEBIAN}" \
      REDIS_TARBALL="${REDIS_TARBALL:+/src/${REDIS_TARBALL##*/}}" \
 && strip --strip-debug build/redis/bin/redis-server build/redis/bin/redis-cli

FROM ${BASE_IMAGE} AS runtime
ARG REDIS_VERSION=7.0.15
LABEL org.opencontainers.image.title="charon-redis" \
      org.opencontainers.image.description="Redis ${REDIS_VERSION} with the Charon module loaded"
# Fixed ids so volumes keep working across rebuilds.
RUN groupadd --system --gid 999 redis \
 && useradd --system --uid 999 --gid redis --home-dir /data --no-create-home --shell /usr/sbin/nologin redis \
 && mkdir -p /data /etc/redis /usr/local/lib/redis/modules \
 && chown redis:redis /data
COPY --from=build /src/build/redis/bin/redis-server /src/build/redis/bin/redis-cli /usr/local/bin/
COPY build/charon.so /usr/local/lib/redis/modules/charon.so
COPY redis.conf /etc/redis/redis.conf
# The repository's redis.conf, pointed at the installed module, with its network,
# process and directory settings replaced by the container's (`dir` takes effect
# where it is read, so it is replaced, not overridden). Redis refuses a module file
# without +x.
RUN ln -s redis-server /usr/local/bin/redis-check-rdb \
 && ln -s redis-server /usr/local/bin/redis-check-aof \
 && chmod 0755 /usr/local/lib/redis/modules/charon.so \
 && sed -i -E \
      -e 's#^([[:space:]]*loadmodule[[:space:]]+)[^[:space:]]*charon\.so#\1/usr/local/lib/redis/modules/charon.so#' \
      -e '/^[[:space:]]*(bind|protected-mode|port|daemonize|supervised|pidfile|logfile|dir)[[:space:]]/d' \
      /etc/redis/redis.conf \
 && { grep -qE '^[[:space:]]*loadmodule[[:space:]]+/usr/local/lib/redis/modules/charon\.so' /etc/redis/redis.conf \
      || { echo "redis.conf has no 'loadmodule .../charon.so' line" >&2; exit 1; }; } \
 && printf '%s\n' '' '# Container settings (set by the Dockerfile).' \
      'bind * -::*' 'protected-mode no' 'port 6379' 'daemonize no' 'supervised no' \
      'pidfile ""' 'logfile ""' 'dir /data' >>/etc/redis/redis.conf \
 && redis-server --version

VOLUME /data
WORKDIR /data
USER redis
EXPOSE 6379
# Healthy means serving and with the module loaded.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD redis-cli -p 6379 MODULE LIST | grep -qx charon || exit 1
CMD ["redis-server", "/etc/redis/redis.conf"]
