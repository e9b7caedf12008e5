# Charon for Redis: the pinned Redis release and charon.so, both built here from
# source with pinned, checksum-verified inputs, so the image is the same from any host.
#
#   make docker          # stages the Go toolchain and modules, passes the pins
#   docker build --build-arg GOPROXY="$(go env GOPROXY)" -t charon-redis .
#
# Build stage layers, slowest-changing first, so a source change rebuilds only the
# module: compilers (apt) -> Redis (make redis: tarball verified by SHA-256) -> Go
# toolchain (from the Go module proxy, verified by SHA-256) -> Go modules (go.mod and
# go.sum, verified by go.sum) -> the standard library warmed for c-shared -> the source
# and `make build`. Works with the legacy builder and with BuildKit.

# Debian (glibc: Go c-shared libraries misbehave under musl), tag pinned.
ARG BASE_IMAGE=debian:12.15-slim

FROM ${BASE_IMAGE} AS build
RUN echo "build: installing gcc, make, curl and unzip from the Debian archive (about 30 s)" \
 && apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends gcc make libc6-dev pkg-config ca-certificates curl unzip >/dev/null \
 && rm -rf /var/lib/apt/lists/*

ARG REDIS_VERSION=7.0.15
# Upstream's release tarball and Debian's orig tarball of the same release.
ARG REDIS_SHA256=98066f5363504b26c34dd20fbcc3c957990d764cdf42576c836fc021073f4341
ARG REDIS_SHA256_DEBIAN=4b1dc4ee6d622a09fff9c6777191209750fb5e5a725ef78ea012d6eef4c22982
# Optional local tarball, by its path in the build context; it must sit under
# build/docker/ (make docker stages it there) and match a checksum above. Empty
# means download it.
ARG REDIS_TARBALL=
WORKDIR /src
# The glob copies build/docker/'s files when that folder exists, nothing otherwise.
COPY Makefile build/docke[r] /src/
# The same target, fetch rule and checksum check as on the host.
RUN { [ -z "${REDIS_TARBALL}" ] || [ -f "/src/${REDIS_TARBALL##*/}" ] \
      || { echo "REDIS_TARBALL=${REDIS_TARBALL}: put the file under build/docker/ in the build context" >&2; exit 1; }; } \
 && echo "redis: building Redis ${REDIS_VERSION} from its verified tarball (about 2 minutes)" \
 && make --no-print-directory redis \
      REDIS_VERSION="${REDIS_VERSION}" \
      REDIS_SHA256="${REDIS_SHA256}" \
      REDIS_SHA256_DEBIAN="${REDIS_SHA256_DEBIAN}" \
      REDIS_TARBALL="${REDIS_TARBALL:+/src/${REDIS_TARBALL##*/}}" \
 && strip --strip-debug build/redis/bin/redis-server build/redis/bin/redis-cli

# The Go toolchain, as the Go module proxy serves it (the module
# golang.org/toolchain@v0.0.1-goVERSION.linux-ARCH), pinned by the SHA-256 of the zip.
# make docker stages the zip under build/docker-go/ (fetched by the host's `go mod
# download`, so the build needs no network trust of its own); without it the zip is
# fetched from GOPROXY, the machine's own proxy list (`go env GOPROXY`, passed as a
# build arg: no host is written here). Either way the checksum below decides.
ARG GO_VERSION=1.26.8
ARG GO_SHA256_amd64=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
ARG GO_SHA256_arm64=02b36b6787b3ac767668f630e2998df45a3b1f9ffee08d1bf3ef6487cd658d99
ARG GOPROXY=
# LICENSE is always there; the glob adds build/docker-go/'s files when staged.
COPY LICENSE build/docker-g[o] /tmp/gostage/
RUN set -eu; \
    arch=$(dpkg --print-architecture); \
    case "$arch" in \
      amd64) sum="${GO_SHA256_amd64}";; arm64) sum="${GO_SHA256_arm64}";; \
      *) echo "go: no pinned toolchain checksum for $arch" >&2; exit 1;; \
    esac; \
    mod="v0.0.1-go${GO_VERSION}.linux-${arch}"; \
    if [ -f "/tmp/gostage/${mod}.zip" ]; then \
      echo "go: using the staged go${GO_VERSION} linux-${arch} toolchain (build/docker-go/${mod}.zip)"; \
      mv "/tmp/gostage/${mod}.zip" /tmp/go.zip; \
    else \
      proxy=$(printf '%s\n' "${GOPROXY}" | tr ',|' '\n\n' | grep -m1 -E '^(https?|file)://' || true); \
      [ -n "$proxy" ] || { echo "go: pass --build-arg GOPROXY=\"\$(go env GOPROXY)\", or stage ${mod}.zip under build/docker-go/ (make docker does)" >&2; exit 1; }; \
      echo "go: fetching the go${GO_VERSION} linux-${arch} toolchain (about 70 MB) from the module proxy"; \
      curl -fsS --retry 3 --connect-timeout 20 -o /tmp/go.zip "${proxy%/}/golang.org/toolchain/@v/${mod}.zip"; \
    fi; \
    echo "$sum  /tmp/go.zip" | sha256sum -c --strict -; \
    echo "go: unpacking into /usr/local/go"; \
    unzip -q /tmp/go.zip -d /tmp/gotc; \
    mv "/tmp/gotc/golang.org/toolchain@${mod}" /usr/local/go; \
    rm -rf /tmp/go.zip /tmp/gotc /tmp/gostage; \
    /usr/local/go/bin/go version
ENV PATH=/usr/local/go/bin:$PATH \
    GOTOOLCHAIN=local \
    GOFLAGS=-mod=readonly \
    CGO_ENABLED=1

# Go modules: only go.mod and go.sum, so this layer survives source changes. make
# docker stages the module downloads under build/docker-gomod/ (a module proxy
# directory); without it they come from GOPROXY. Every module is checked against go.sum.
COPY go.mod go.sum /src/
COPY LICENSE build/docker-gomo[d] /tmp/gomod/
RUN set -eu; \
    if [ -d /tmp/gomod/cache/download ]; then \
      echo "go: downloading the Go modules in go.sum from the staged copy (build/docker-gomod)"; \
      GOPROXY=file:///tmp/gomod/cache/download GOSUMDB=off go mod download; \
    else \
      echo "go: downloading the Go modules in go.sum from GOPROXY"; \
      go mod download; \
    fi; \
    rm -rf /tmp/gomod; \
    echo "go: warming the build cache with the standard library for -buildmode=c-shared (about a minute)"; \
    mkdir -p /tmp/warm; \
    printf '%s\n' 'package main' '' 'import "C"' '' 'import (' \
      '	_ "bytes"' '	_ "fmt"' '	_ "math/bits"' '	_ "os"' '	_ "runtime/debug"' '	_ "slices"' \
      '	_ "strconv"' '	_ "strings"' '	_ "sync"' '	_ "time"' '	_ "unsafe"' ')' '' 'func main() {}' >/tmp/warm/main.go; \
    (cd /tmp/warm && go mod init warm >/dev/null 2>&1 && go build -trimpath -buildmode=c-shared -o /dev/null .); \
    rm -rf /tmp/warm

# The source, then the module: the same `make build` as on the host (VERSION gives
# MODULE LIST's number and COMMAND DOCS' since).
COPY VERSION /src/
COPY cshim /src/cshim
COPY rm /src/rm
COPY module /src/module
COPY Makefile /src/
RUN make --no-print-directory build && ls -l build/charon.so

FROM ${BASE_IMAGE} AS runtime
ARG REDIS_VERSION=7.0.15
LABEL org.opencontainers.image.title="charon-redis" \
      org.opencontainers.image.description="Redis ${REDIS_VERSION} with the Charon module loaded" \
      org.opencontainers.image.licenses="MIT"
# Fixed ids so volumes keep working across rebuilds.
RUN groupadd --system --gid 999 redis \
 && useradd --system --uid 999 --gid redis --home-dir /data --no-create-home --shell /usr/sbin/nologin redis \
 && mkdir -p /data /etc/redis /usr/local/lib/redis/modules \
 && chown redis:redis /data
COPY redis.conf /etc/redis/redis.conf
COPY --from=build /src/build/redis/bin/redis-server /src/build/redis/bin/redis-cli /usr/local/bin/
# The repository's redis.conf, pointed at the installed module, with its network,
# process and directory settings replaced by the container's (`dir` takes effect
# where it is read, so it is replaced, not overridden).
RUN ln -s redis-server /usr/local/bin/redis-check-rdb \
 && ln -s redis-server /usr/local/bin/redis-check-aof \
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
# Last, so a source change only replaces this layer. Redis refuses a module file
# without +x (make build sets it).
COPY --from=build /src/build/charon.so /usr/local/lib/redis/modules/charon.so
COPY LICENSE /usr/local/share/doc/charon/LICENSE

VOLUME /data
WORKDIR /data
USER redis
EXPOSE 6379
# Healthy means serving and with the module loaded.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
  CMD redis-cli -p 6379 MODULE LIST | grep -qx charon || exit 1
CMD ["redis-server", "/etc/redis/redis.conf"]
