# Charon for Redis. `make run` builds the pinned Redis and the module and serves them;
# `make test` builds what it needs and runs every test. Nothing is assumed installed
# beyond what these targets install themselves (Go, gcc and make come with the machine).

SHELL := /bin/bash
GO    ?= go
BUILD := $(CURDIR)/build

# The pinned Redis release. Two tarballs of 7.0.15 are accepted: upstream's release
# tarball and Debian's orig tarball of the same release (the machines here reach
# Debian's archive but not download.redis.io). Change version and checksums together.
REDIS_VERSION       ?= 7.0.15
REDIS_SHA256        ?= 98066f5363504b26c34dd20fbcc3c957990d764cdf42576c836fc021073f4341
REDIS_SHA256_DEBIAN ?= 4b1dc4ee6d622a09fff9c6777191209750fb5e5a725ef78ea012d6eef4c22982
REDIS_URL           ?= https://download.redis.io/releases/redis-$(REDIS_VERSION).tar.gz
# REDIS_TARBALL=path uses a local tarball (it must still match an accepted checksum).
REDIS_TARBALL       ?=
REDIS_PREFIX        := $(BUILD)/redis
REDIS_SERVER        := $(REDIS_PREFIX)/bin/redis-server
REDIS_TARBALL_CACHE := $(BUILD)/redis-$(REDIS_VERSION).tar.gz

MODULE_SO  := $(BUILD)/charon.so
GO_SOURCES := $(shell find cshim rm module -name '*.go' -o -name '*.c' -o -name '*.h' 2>/dev/null) go.mod go.sum

.PHONY: all build redis run test test-unit test-integration bench lint deps clean
all: build

build: $(MODULE_SO)

# c-shared output is not executable and Redis refuses a module file without +x.
$(MODULE_SO): $(GO_SOURCES)
	@mkdir -p $(BUILD)
	CGO_ENABLED=1 $(GO) build -trimpath -buildmode=c-shared -o $@ ./module
	chmod +x $@
	@rm -f $(BUILD)/charon.h

redis: $(REDIS_SERVER)

# Fetch (local file, upstream URL, or Debian source package, in that order), verify
# the SHA-256 against the accepted values, then build. A mismatch stops the build.
$(REDIS_SERVER):
	@mkdir -p $(BUILD)
	@set -euo pipefail; \
	tarball="$(REDIS_TARBALL)"; \
	if [ -z "$$tarball" ]; then \
	  tarball="$(REDIS_TARBALL_CACHE)"; \
	  if [ ! -s "$$tarball" ]; then \
	    echo "redis: fetching $(REDIS_URL)"; \
	    if ! curl -fsSL --connect-timeout 10 --max-time 120 -o "$$tarball.part" "$(REDIS_URL)" 2>/dev/null; then \
	      echo "redis: upstream unreachable, using Debian's source package of $(REDIS_VERSION)"; \
	      $(MAKE) --no-print-directory -s redis-debian-source DEST="$$tarball.part"; \
	    fi; \
	    mv "$$tarball.part" "$$tarball"; \
	  fi; \
	fi; \
	actual=$$(sha256sum "$$tarball" | cut -d' ' -f1); \
	if [ "$$actual" != "$(REDIS_SHA256)" ] && [ "$$actual" != "$(REDIS_SHA256_DEBIAN)" ]; then \
	  echo "redis: checksum mismatch for $$tarball" >&2; \
	  echo "redis:   expected $(REDIS_SHA256) (upstream) or $(REDIS_SHA256_DEBIAN) (Debian orig)" >&2; \
	  echo "redis:   actual   $$actual" >&2; \
	  exit 1; \
	fi; \
	echo "redis: $$tarball verified ($$actual)"; \
	src="$(BUILD)/redis-src"; rm -rf "$$src"; mkdir -p "$$src"; \
	tar xzf "$$tarball" -C "$$src" --strip-components=1; \
	cp "$$tarball" "$(BUILD)/redis-verified.tar.gz"; \
	$(MAKE) -C "$$src" -j$$(nproc) BUILD_TLS=no USE_SYSTEMD=no >"$(BUILD)/redis-build.log" 2>&1 || { tail -40 "$(BUILD)/redis-build.log"; exit 1; }; \
	$(MAKE) -C "$$src" install PREFIX="$(REDIS_PREFIX)" >>"$(BUILD)/redis-build.log" 2>&1; \
	"$(REDIS_SERVER)" --version

# Debian's orig tarball of the same release, through apt-get source. The deb-src entry
# is derived from the machine's own apt sources (no host name lives in this repo).
.PHONY: redis-debian-source
redis-debian-source:
	@set -euo pipefail; \
	command -v apt-get >/dev/null || { echo "redis: no apt-get; pass REDIS_TARBALL=path" >&2; exit 1; }; \
	srcfile=/etc/apt/sources.list.d/charon-deb-src.sources; \
	if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then \
	  uri=$$( (grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $$2}'; \
	           grep -hsE '^deb ' /etc/apt/sources.list | awk '{for(i=2;i<=NF;i++) if ($$i ~ /^[a-z]+:\/\//) {print $$i; break}}') \
	         | grep -v security | head -n1); \
	  [ -n "$$uri" ] || { echo "redis: cannot find a Debian mirror in the apt sources" >&2; exit 1; }; \
	  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$$uri" >"$$srcfile"; \
	fi; \
	apt-get update -qq; \
	tmp=$$(mktemp -d); \
	(cd "$$tmp" && apt-get source --download-only -qq "redis=$$(apt-cache showsrc redis | awk '/^Version: 5:$(REDIS_VERSION)/{print $$2; exit}')" >/dev/null 2>&1 || \
	               (cd "$$tmp" && apt-get source --download-only -qq redis >/dev/null 2>&1)); \
	cp "$$tmp"/redis_$(REDIS_VERSION).orig.tar.gz "$(DEST)"; rm -rf "$$tmp"

run: build redis
	@mkdir -p $(BUILD)/run
	cd $(CURDIR) && exec $(REDIS_SERVER) $(CURDIR)/redis.conf

# Tools the checks need, installed through the Go module proxy (pinned).
STATICCHECK := $(BUILD)/bin/staticcheck
$(STATICCHECK):
	GOBIN=$(BUILD)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@2025.1.1

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  [ -z "$$out" ] || { echo "gofmt would change: $$out"; exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@# pure packages must not reach cgo or rm
	@for p in $(PURE_PKGS); do \
	  if $(GO) list -deps $$p | grep -qE '^(C|runtime/cgo|github.com/charon-redis/charon/(rm|cshim))$$'; then \
	    echo "$$p reaches cgo or rm"; exit 1; fi; done

PURE_PKGS ?= $(shell $(GO) list ./module/... 2>/dev/null | grep -v '^github.com/charon-redis/charon/module$$')

test-unit:
	$(GO) test ./...

test-integration: build redis
	$(GO) test -tags integration -count=1 -timeout 30m ./tests/...

test: lint test-unit test-integration

bench: build redis

clean:
	rm -rf $(BUILD)
