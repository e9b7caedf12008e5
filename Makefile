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
GO_SOURCES := $(shell find cshim rm module -name '*.go' -o -name '*.c' -o -name '*.h' 2>/dev/null) go.mod go.sum VERSION

# The release, from one place: the VERSION file (MAJOR.MINOR.PATCH). It becomes the
# Go side's version (COMMAND DOCS "since"), MODULE LIST's number (MAJOR*10000 +
# MINOR*100 + PATCH, so 0.1.0 is 100) and the name of make dist's tarballs.
VERSION        := $(shell cat $(CURDIR)/VERSION 2>/dev/null)
MODULE_VERSION := $(shell echo '$(VERSION)' | awk -F. 'NF == 3 && $$1 ~ /^[0-9]+$$/ && $$2 ~ /^[0-9]+$$/ && $$3 ~ /^[0-9]+$$/ && $$2 < 100 && $$3 < 100 {print $$1 * 10000 + $$2 * 100 + $$3}')
# $(call go_build_so,ENV,OUTPUT): the module build, shared by build, dist and the Dockerfile.
go_build_so = @[ -n "$(MODULE_VERSION)" ] || { echo "VERSION must hold MAJOR.MINOR.PATCH (minor and patch below 100), not '$(VERSION)'" >&2; exit 1; }; \
	CGO_ENABLED=1 CGO_CFLAGS="$${CGO_CFLAGS:--O2 -g} -DCHARON_MODULE_VERSION=$(MODULE_VERSION)" $(1) \
	  $(GO) build -trimpath -buildmode=c-shared -ldflags "-X main.version=$(VERSION)" -o $(2) ./module

.PHONY: all build redis run test test-unit test-integration bench lint deps clean
all: build

build: $(MODULE_SO)

# c-shared output is not executable and Redis refuses a module file without +x.
$(MODULE_SO): $(GO_SOURCES)
	@mkdir -p $(BUILD)
	@echo "build: compiling charon.so $(VERSION) (about 30 s on a cold cache)"
	$(call go_build_so,,$@)
	chmod +x $@
	@rm -f $(BUILD)/charon.h

redis: $(REDIS_SERVER)

# Fetch (local file, upstream URL, or Debian source package, in that order), verify
# the SHA-256 against the accepted values, then build. A mismatch stops the build.
# Every long step prints what it does and, when done, how long it took.
$(REDIS_SERVER):
	@mkdir -p $(BUILD)
	@set -euo pipefail; \
	tarball="$(REDIS_TARBALL)"; \
	if [ -z "$$tarball" ]; then \
	  tarball="$(REDIS_TARBALL_CACHE)"; \
	  $(MAKE) --no-print-directory redis-fetch; \
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
	start=$$SECONDS; echo "redis: building $(REDIS_VERSION) (about 2 minutes on 2 cores; log: $(BUILD)/redis-build.log)"; \
	$(MAKE) -C "$$src" -j$$(nproc) BUILD_TLS=no USE_SYSTEMD=no >"$(BUILD)/redis-build.log" 2>&1 || { tail -40 "$(BUILD)/redis-build.log"; exit 1; }; \
	$(MAKE) -C "$$src" install PREFIX="$(REDIS_PREFIX)" >>"$(BUILD)/redis-build.log" 2>&1; \
	echo "redis: built in $$((SECONDS - start))s"; \
	"$(REDIS_SERVER)" --version

# Fetches the tarball into the build folder (upstream, else Debian's source package)
# unless it is there already; `make redis` and the Docker build verify it.
.PHONY: redis-fetch
redis-fetch:
	@mkdir -p $(BUILD)
	@set -euo pipefail; \
	tarball="$(REDIS_TARBALL_CACHE)"; \
	[ ! -s "$$tarball" ] || exit 0; \
	start=$$SECONDS; echo "redis: fetching $(REDIS_URL)"; \
	if ! curl -fsSL --connect-timeout 10 --max-time 120 -o "$$tarball.part" "$(REDIS_URL)" 2>/dev/null; then \
	  echo "redis: upstream unreachable, using Debian's source package of $(REDIS_VERSION)"; \
	  $(MAKE) --no-print-directory -s redis-debian-source DEST="$$tarball.part"; \
	fi; \
	mv "$$tarball.part" "$$tarball"; \
	echo "redis: fetched in $$((SECONDS - start))s"

# Debian's orig tarball of the same release (suite bookworm carries 7.0.15), through
# `apt-get source` with a private sources list, lists and cache in a temporary
# directory (scripts/debian-source.sh): the mirror comes from the machine's own apt
# sources, no host name lives in this repo, and nothing is written under /etc.
.PHONY: redis-debian-source
redis-debian-source:
	@$(CURDIR)/scripts/debian-source.sh redis $(REDIS_VERSION) $(REDIS_SHA256_DEBIAN) "$(DEST)" bookworm

# `make run PORT=6380` serves on another port. Redis itself is built on first use
# (make redis), which takes about 2 minutes.
PORT ?= 6379
run: build
	@set -e; if [ ! -x "$(REDIS_SERVER)" ]; then \
	  echo "run: building the pinned Redis $(REDIS_VERSION) first (about 2 minutes; log: build/redis-build.log)"; \
	  $(MAKE) --no-print-directory redis; \
	fi
	@mkdir -p $(BUILD)/run
	@echo "run: redis-server $(REDIS_VERSION) with charon.so $(VERSION) on 127.0.0.1:$(PORT) (data in build/run; Ctrl-C stops it)"
	@echo "run: try  build/redis/bin/redis-cli -p $(PORT) CHARON.RATE rl:demo LIMITS 10/1s"
	cd $(CURDIR) && exec $(REDIS_SERVER) $(CURDIR)/redis.conf --port $(PORT)

# `make dist`: one tarball per architecture this machine builds, under build/dist/:
# charon-VERSION-linux-ARCH.tar.gz holding charon.so, charon.conf (the redis.conf
# lines), INSTALL, LICENSE, CHANGELOG.md and SHA256SUMS over them. arm64 is built with
# Debian's cross compiler and the target's C library headers (gcc-aarch64-linux-gnu
# and libc6-dev-arm64-cross, installed through apt when missing: runtime/cgo needs
# both).
# The archives are deterministic: sorted names, owner 0, mtime of the last commit.
DIST_DIR    := $(BUILD)/dist
DIST_ARCHES ?= amd64 arm64
DIST_CC_arm64 ?= aarch64-linux-gnu-gcc
DIST_CC_amd64 ?= x86_64-linux-gnu-gcc
DIST_EPOCH  := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: dist dist-check
dist:
	@set -euo pipefail; \
	[ -n "$(MODULE_VERSION)" ] || { echo "dist: VERSION must hold MAJOR.MINOR.PATCH, not '$(VERSION)'" >&2; exit 1; }; \
	host=$$($(GO) env GOARCH); mkdir -p "$(DIST_DIR)"; \
	for arch in $(DIST_ARCHES); do \
	  cc=; if [ "$$arch" != "$$host" ]; then \
	    case $$arch in arm64) cc="$(DIST_CC_arm64)"; pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross";; \
	      amd64) cc="$(DIST_CC_amd64)"; pkgs="gcc-x86-64-linux-gnu libc6-dev-amd64-cross";; \
	      *) echo "dist: no cross compiler known for $$arch" >&2; exit 1;; esac; \
	    missing=; for pkg in $$pkgs; do \
	      dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$pkg"; \
	    done; \
	    if [ -n "$$missing" ]; then \
	      echo "dist: installing$$missing (Debian's cross compiler and C library for $$arch, about a minute)"; \
	      sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	      { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq --no-install-recommends $$missing; } >"$(DIST_DIR)/apt-$$arch.log" 2>&1 || \
	        { tail -20 "$(DIST_DIR)/apt-$$arch.log" >&2; exit 1; }; \
	    fi; \
	    command -v "$$cc" >/dev/null || { echo "dist: $$cc is still missing after installing$$missing" >&2; exit 1; }; \
	  fi; \
	  name=charon-$(VERSION)-linux-$$arch; stage="$(DIST_DIR)/$$name"; \
	  rm -rf "$$stage"; mkdir -p "$$stage"; \
	  echo "dist: compiling charon.so $(VERSION) for linux-$$arch$${cc:+ with $$cc} (about 30 s)"; \
	  CGO_ENABLED=1 CGO_CFLAGS="$${CGO_CFLAGS:--O2 -g} -DCHARON_MODULE_VERSION=$(MODULE_VERSION)" GOOS=linux GOARCH=$$arch CC="$${cc:-$$($(GO) env CC)}" \
	    $(GO) build -trimpath -buildmode=c-shared -ldflags "-X main.version=$(VERSION)" -o "$$stage/charon.so" ./module; \
	  rm -f "$$stage/charon.h"; chmod 0755 "$$stage/charon.so"; \
	  sed 's/@VERSION@/$(VERSION)/g' docs/dist/charon.conf >"$$stage/charon.conf"; \
	  sed -e 's/@VERSION@/$(VERSION)/g' -e "s/@ARCH@/$$arch/g" docs/dist/INSTALL >"$$stage/INSTALL"; \
	  cp LICENSE CHANGELOG.md "$$stage/"; \
	  (cd "$$stage" && sha256sum charon.so charon.conf INSTALL LICENSE CHANGELOG.md >SHA256SUMS); \
	  tar -C "$(DIST_DIR)" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@$(DIST_EPOCH) -cf - "$$name" \
	    | gzip -9n >"$(DIST_DIR)/$$name.tar.gz"; \
	  echo "dist: $(DIST_DIR)/$$name.tar.gz ($$(du -k "$(DIST_DIR)/$$name.tar.gz" | cut -f1) KB; charon.so $$(file -b "$$stage/charon.so" 2>/dev/null | cut -d, -f1-2 || echo $$arch))"; \
	done; \
	(cd "$(DIST_DIR)" && sha256sum charon-$(VERSION)-linux-*.tar.gz >SHA256SUMS); \
	echo "dist: checksums of the tarballs in $(DIST_DIR)/SHA256SUMS"

# Installs the amd64 tarball the way INSTALL and the README say, into a scratch
# directory: verifies SHA256SUMS, starts the pinned redis-server by hand with the
# README's loadmodule line (path replaced by the extracted charon.so), and asks
# CHARON.RATE for one hit.
dist-check: redis
	@set -euo pipefail; \
	tarball="$(DIST_DIR)/charon-$(VERSION)-linux-amd64.tar.gz"; \
	[ -s "$$tarball" ] || { echo "dist-check: $$tarball is missing; run make dist" >&2; exit 1; }; \
	tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/charon-dist.XXXXXX"); pid=; \
	trap '[ -z "$$pid" ] || kill $$pid 2>/dev/null || true; rm -rf "$$tmp"' EXIT; \
	tar -C "$$tmp" -xzf "$$tarball"; dir="$$tmp/charon-$(VERSION)-linux-amd64"; \
	(cd "$$dir" && sha256sum --quiet -c SHA256SUMS) || { echo "dist-check: SHA256SUMS does not verify" >&2; exit 1; }; \
	echo "dist-check: SHA256SUMS verified"; \
	line=$$(grep -m1 -E '^loadmodule /[^ ]*charon\.so' README.md || true); \
	[ -n "$$line" ] || { echo "dist-check: README.md has no 'loadmodule /.../charon.so' line" >&2; exit 1; }; \
	args=$$(sed -E 's#^loadmodule [^ ]*charon\.so##' <<<"$$line"); \
	sock="$$tmp/redis.sock"; \
	printf 'port 0\nunixsocket %s\ndir %s\nsave ""\nappendonly no\nloadmodule %s/charon.so%s\n' "$$sock" "$$tmp" "$$dir" "$$args" >"$$tmp/redis.conf"; \
	echo "dist-check: $$(tail -1 "$$tmp/redis.conf")"; \
	$(REDIS_SERVER) "$$tmp/redis.conf" >"$$tmp/server.log" 2>&1 & pid=$$!; \
	cli() { $(REDIS_PREFIX)/bin/redis-cli -s "$$sock" "$$@"; }; \
	for i in $$(seq 1 100); do [ "$$(cli PING 2>/dev/null)" = PONG ] && break; \
	  kill -0 $$pid 2>/dev/null || { cat "$$tmp/server.log" >&2; exit 1; }; sleep 0.1; done; \
	ver=$$(cli MODULE LIST | sed -n '4p'); \
	[ "$$ver" = "$(MODULE_VERSION)" ] || { echo "dist-check: MODULE LIST ver is '$$ver', want $(MODULE_VERSION)" >&2; exit 1; }; \
	got=$$(cli CHARON.RATE rl:dist-check TIER 10 1000 1000 0 | head -1); \
	[ "$$got" = 1 ] || { echo "dist-check: CHARON.RATE granted '$$got', want 1" >&2; cat "$$tmp/server.log" >&2; exit 1; }; \
	echo "dist-check: ok (charon $(VERSION) = MODULE LIST $$ver loaded from the tarball; CHARON.RATE granted 1)"

# Tools the checks need, installed through the Go module proxy (pinned).
STATICCHECK := $(BUILD)/bin/staticcheck
$(STATICCHECK):
	GOBIN=$(BUILD)/bin $(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: $(STATICCHECK)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  [ -z "$$out" ] || { echo "gofmt would change: $$out"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags integration ./tests/... $(INTEGRATION_PKGS)
	$(STATICCHECK) ./...
	$(STATICCHECK) -tags integration ./tests/... $(INTEGRATION_PKGS)
	@# pure packages must not reach cgo (outside the standard library) or rm/cshim
	@for p in $(PURE_PKGS); do \
	  bad=$$($(GO) list -deps -f '{{if and (not .Standard) .CgoFiles}}{{.ImportPath}}{{end}}' $$p; \
	         $(GO) list -deps $$p | grep -E '^github.com/charon-redis/charon/(rm|cshim)$$'); \
	  if [ -n "$$bad" ]; then echo "pure package $$p reaches cgo or rm: $$bad"; exit 1; fi; \
	done

PURE_PKGS ?= $(shell $(GO) list ./module/... 2>/dev/null | grep -v '^github.com/charon-redis/charon/module$$')

test-unit:
	$(GO) test ./...

# Integration tests outside tests/: the script engine's comparisons with the reference
# model need both, and both are internal to module/.
INTEGRATION_PKGS := ./module/internal/script/

test-integration: build redis
	$(GO) test -tags integration -count=1 -timeout 30m ./tests/... $(INTEGRATION_PKGS)

test: lint test-unit test-integration

# Benchmarks print numbers; nothing here asserts a timing. The CHARON.RATE tables
# (server CPU per request side by side in rounds, memory at 1M domains, cachegrind
# instruction counts) and the "through the client" table also go to $(BENCH_OUT) for
# docs/benchmarks.md; BENCH_ROUNDS and BENCH_REQUESTS size them, BENCH_LUA names the Lua
# baseline (charon.lua). The client table builds tests/clientbench, a Go module of its
# own that fetches go-redis/redis_rate through the module proxy; BENCH_CLIENT_DECISIONS
# sizes it and BENCH_BASELINE=<commit> adds rows for that commit's clients.
BENCH_OUT ?= $(BUILD)/benchmarks.md
BENCH_ROUNDS ?= 3
BENCH_REQUESTS ?= 200000
BENCH_CLIENT_DECISIONS ?= 60000
BENCH_BASELINE ?=
BENCH_LUA ?= $(abspath $(CURDIR)/../shared/bench/charon.lua)
bench: build redis
	$(GO) test -run '^$$' -bench . -benchmem ./module/...
	rm -f $(BENCH_OUT)
	CHARON_BENCH_OUT=$(BENCH_OUT) CHARON_BENCH_ROUNDS=$(BENCH_ROUNDS) CHARON_BENCH_REQUESTS=$(BENCH_REQUESTS) \
	CHARON_BENCH_LUA=$(BENCH_LUA) CHARON_BENCH_CLIENT_DECISIONS=$(BENCH_CLIENT_DECISIONS) CHARON_BENCH_BASELINE=$(BENCH_BASELINE) \
	$(GO) test -tags integration -run '^$$' \
		-bench 'ServerCPU|RateCost|RateMemory1M|RateInstructions|ClientPaths' -benchtime 1x -timeout 60m ./tests/
	CHARON_BENCH_OUT=$(BENCH_OUT) CHARON_BENCH_ROUNDS=$(BENCH_ROUNDS) CHARON_BENCH_REQUESTS=$(BENCH_REQUESTS) \
	CHARON_BENCH_LUA=$(BENCH_LUA) $(GO) test -tags integration -run '^$$' \
		-bench 'ScriptEngine' -benchtime 1x -timeout 40m ./module/internal/script/
	$(GO) test -tags integration -run '^$$' -bench 'Unread|Ratelimit' -benchtime 2s ./tests/

clean:
	rm -rf $(BUILD)

# The version matrix (`make test-matrix`). Optional, because the Docker build stage
# copies only this Makefile to run `make redis`.
-include $(CURDIR)/mk/matrix.mk

# ---------------------------------------------------------------------------
# Docker. Keep this section last; it belongs to the Docker work.
#
# `make docker` builds the image from source (inside: `make redis` from a verified
# tarball, a Go toolchain verified by SHA-256, then `make build`; nothing built on the
# host is copied in). With no registry to pull from, a missing
# base image is first built from Debian's archive with debootstrap and tagged as the
# Dockerfile's default base. `make docker-test` checks a running container (health,
# MODULE LIST, a CHARON.RATE key kept across a new container on the same volume),
# then runs the integration suite inside the image against its own binaries.

DOCKER        ?= docker
DOCKER_IMAGE  ?= charon-redis
# The local base gets exactly the Dockerfile's default tag, so FROM resolves.
DOCKER_BASE   ?= $(shell sed -n 's/^ARG BASE_IMAGE=//p' $(CURDIR)/Dockerfile)
DOCKER_SUITE  ?= bookworm
# BuildKit when the buildx plugin exists; the Dockerfile also suits the legacy builder.
DOCKER_BUILDKIT ?= $(shell $(DOCKER) buildx version >/dev/null 2>&1 && echo 1 || echo 0)
# The build stage is tagged too: docker-test takes the image's own verified Redis
# tarball from it for the header test.
DOCKER_BUILD_IMAGE ?= $(DOCKER_IMAGE)-build
DOCKER_STAGE  := $(BUILD)/docker
DOCKER_TESTS  := $(BUILD)/docker-test
# Extra flags for the test binaries, e.g. DOCKER_TEST_FLAGS='-test.run=Cluster -test.v'.
DOCKER_TEST_FLAGS ?=
# Where the image installs things (see the Dockerfile).
DOCKER_REDIS_BIN := /usr/local/bin
DOCKER_MODULE    := /usr/local/lib/redis/modules/charon.so

.PHONY: docker docker-daemon docker-base docker-smoke docker-test

# The engine must answer. Where it is installed but not running (a fresh CI run whose
# machine did not start it), start dockerd in the background and wait for it.
docker-daemon:
	@set -euo pipefail; \
	if $(DOCKER) info >/dev/null 2>&1; then exit 0; fi; \
	command -v dockerd >/dev/null || { echo "docker-daemon: the Docker engine is not reachable and dockerd is not installed" >&2; exit 1; }; \
	[ "$$(id -u)" = 0 ] || { echo "docker-daemon: the Docker engine is not reachable; start it (needs root)" >&2; exit 1; }; \
	mkdir -p "$(BUILD)"; echo "docker-daemon: starting dockerd (log: $(BUILD)/dockerd.log)"; \
	setsid nohup dockerd >"$(BUILD)/dockerd.log" 2>&1 & \
	for i in $$(seq 1 120); do $(DOCKER) info >/dev/null 2>&1 && exit 0; sleep 0.5; done; \
	tail -20 "$(BUILD)/dockerd.log" >&2; echo "docker-daemon: dockerd did not answer within 60 s" >&2; exit 1

# debootstrap needs root; the slim trimming follows Debian's own slim images.
docker-base: docker-daemon
	@set -euo pipefail; \
	base="$(DOCKER_BASE)"; \
	[ -n "$$base" ] || { echo "docker-base: the Dockerfile has no 'ARG BASE_IMAGE=' line" >&2; exit 1; }; \
	if $(DOCKER) image inspect "$$base" >/dev/null 2>&1; then exit 0; fi; \
	echo "docker-base: $$base is not present; building it with debootstrap $(DOCKER_SUITE)"; \
	start=$$(date +%s); sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	export PATH="$$PATH:/usr/sbin:/sbin"; \
	command -v debootstrap >/dev/null || { $$sudo apt-get update -qq && \
	  $$sudo apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; }; \
	uris=$$( (grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources || true) | awk '{for (i = 2; i <= NF; i++) print $$i}'; \
	  (grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list || true) | \
	    awk '{for (i = 2; i <= NF; i++) if ($$i ~ /^[a-z]+:\/\//) {print $$i; break}}'); \
	mirror=$$(grep -v security <<<"$$uris" | head -n1 || true); \
	security=$$(grep security <<<"$$uris" | head -n1 || true); \
	[ -n "$$mirror" ] || { echo "docker-base: no Debian mirror in the apt sources" >&2; exit 1; }; \
	mkdir -p "$(BUILD)"; log="$(BUILD)/docker-base.log"; \
	root=$$(mktemp -d "$${TMPDIR:-/tmp}/charon-rootfs.XXXXXX"); \
	trap '$$sudo rm -rf "$$root"' EXIT; \
	$$sudo debootstrap --variant=minbase $(DOCKER_SUITE) "$$root" "$$mirror" >"$$log" 2>&1 || \
	  { tail -20 "$$log" >&2; exit 1; }; \
	put() { $$sudo mkdir -p "$$(dirname "$$root/$$1")"; $$sudo tee "$$root/$$1" >/dev/null; }; \
	$$sudo rm -f "$$root/etc/apt/sources.list"; \
	{ printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
	    "$$mirror" $(DOCKER_SUITE) $(DOCKER_SUITE); \
	  [ -z "$$security" ] || printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
	    "$$security" $(DOCKER_SUITE); } | put etc/apt/sources.list.d/debian.sources; \
	printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
	  'path-exclude /usr/share/man/*' 'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/info/*' \
	  'path-exclude /usr/share/locale/*' 'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' \
	  | put etc/dpkg/dpkg.cfg.d/docker-slim; \
	printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
	  'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
	  'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' | put etc/apt/apt.conf.d/docker-clean; \
	echo 'Acquire::Languages "none";' | put etc/apt/apt.conf.d/docker-no-languages; \
	{ $$sudo chroot "$$root" apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo chroot "$$root" apt-get upgrade -y -qq; } >>"$$log" 2>&1 || \
	  { tail -20 "$$log" >&2; exit 1; }; \
	$$sudo find "$$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete; \
	$$sudo find "$$root/usr/share/doc" -mindepth 1 -type d -empty -delete; \
	$$sudo rm -rf "$$root"/usr/share/{man,groff,info,locale,lintian,linda}/* "$$root"/var/lib/apt/lists/* \
	  "$$root"/var/cache/apt/*.bin "$$root"/var/cache/apt/archives/*.deb "$$root"/var/log/apt/* "$$root"/var/log/*.log; \
	: | put etc/resolv.conf; : | put etc/hostname; \
	have=$$(cat "$$root/etc/debian_version"); want=$$(grep -oE '[0-9]+\.[0-9]+' <<<"$$base" | head -n1 || true); \
	[ -z "$$want" ] || [ "$$have" = "$$want" ] || echo "docker-base: warning: the archive gives Debian $$have," \
	  "the pinned tag says $$want; tagging it anyway (repin BASE_IMAGE in the Dockerfile)" >&2; \
	$$sudo tar -C "$$root" --numeric-owner -cf - . | $(DOCKER) import \
	  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	  --change 'CMD ["bash"]' --change 'LABEL charon.base=debootstrap-minbase' \
	  -m "debootstrap --variant=minbase $(DOCKER_SUITE) (Debian $$have), slimmed" - "$$base" >/dev/null; \
	echo "docker-base: $$base (Debian $$have) built in $$(( $$(date +%s) - start ))s," \
	  "$$($(DOCKER) image inspect -f '{{.Size}}' "$$base" | awk '{printf "%.1f MB", $$1 / 1e6}')"

# The Dockerfile's ARG defaults must equal the Makefile's pins (checked unless
# overridden on the command line). A local or cached tarball is staged into the
# build context; inside, `make redis` verifies it against the checksums.
docker: docker-base
	@set -euo pipefail; \
	goproxy="$${GOPROXY:-$$($(GO) env GOPROXY 2>/dev/null || true)}"; \
	if [ "$(origin REDIS_VERSION)$(origin REDIS_SHA256)$(origin REDIS_SHA256_DEBIAN)" = filefilefile ]; then \
	  for pin in REDIS_VERSION=$(REDIS_VERSION) REDIS_SHA256=$(REDIS_SHA256) REDIS_SHA256_DEBIAN=$(REDIS_SHA256_DEBIAN); do \
	    lines=$$(grep -E "^ARG $${pin%%=*}=" Dockerfile || true); \
	    if [ -z "$$lines" ] || grep -vqx "ARG $$pin" <<<"$$lines"; then \
	      echo "docker: the Dockerfile's ARG $${pin%%=*} differs from the Makefile's $$pin; change them together" >&2; exit 1; \
	    fi; \
	  done; \
	fi; \
	rm -rf "$(DOCKER_STAGE)"; mkdir -p "$(DOCKER_STAGE)"; \
	govers=$$(sed -n 's/^ARG GO_VERSION=//p' Dockerfile); arch=$$($(GO) env GOARCH); mod=v0.0.1-go$$govers.linux-$$arch; \
	echo "docker: staging the go$$govers linux-$$arch toolchain and the Go modules (go mod download on this machine)"; \
	rm -rf "$(BUILD)/docker-go"; mkdir -p "$(BUILD)/docker-go"; \
	zip=$$($(GO) mod download -json golang.org/toolchain@$$mod | sed -n 's/^[[:space:]]*"Zip": "\(.*\)",*$$/\1/p'); \
	[ -s "$$zip" ] || { echo "docker: go mod download golang.org/toolchain@$$mod gave no zip" >&2; exit 1; }; \
	ln -f "$$zip" "$(BUILD)/docker-go/$$mod.zip" 2>/dev/null || cp "$$zip" "$(BUILD)/docker-go/$$mod.zip"; \
	rm -rf "$(BUILD)/docker-gomod"; modcache=$$(mktemp -d "$${TMPDIR:-/tmp}/charon-gomod.XXXXXX"); \
	GOMODCACHE="$$modcache" GOFLAGS=-modcacherw $(GO) mod download; \
	mkdir -p "$(BUILD)/docker-gomod/cache"; cp -r "$$modcache/cache/download" "$(BUILD)/docker-gomod/cache/"; rm -rf "$$modcache"; \
	tarball="$(REDIS_TARBALL)"; \
	if [ -z "$$tarball" ]; then \
	  $(MAKE) --no-print-directory redis-fetch; tarball="$(REDIS_TARBALL_CACHE)"; \
	fi; \
	tararg=; \
	if [ -n "$$tarball" ]; then ln -f "$$tarball" "$(DOCKER_STAGE)/" 2>/dev/null || cp -p "$$tarball" "$(DOCKER_STAGE)/"; tararg="build/docker/$$(basename "$$tarball")"; fi; \
	start=$$(date +%s); \
	echo "docker: building $(DOCKER_IMAGE) from source: Redis $(REDIS_VERSION) and charon.so $(VERSION) compiled inside" \
	  "(cold: 5 to 15 minutes, mostly Redis; after a source change: the module step only)"; \
	for target in build runtime; do \
	  tag="$(DOCKER_IMAGE)"; [ $$target = runtime ] || tag="$(DOCKER_BUILD_IMAGE)"; \
	  echo "docker: stage $$target -> $$tag"; \
	  DOCKER_BUILDKIT=$(DOCKER_BUILDKIT) $(DOCKER) build $(if $(filter 0,$(DOCKER_BUILDKIT)),--force-rm) --target $$target \
	    --build-arg GOPROXY="$$goproxy" \
	    --build-arg BASE_IMAGE="$(DOCKER_BASE)" \
	    --build-arg REDIS_VERSION="$(REDIS_VERSION)" \
	    --build-arg REDIS_SHA256="$(REDIS_SHA256)" \
	    --build-arg REDIS_SHA256_DEBIAN="$(REDIS_SHA256_DEBIAN)" \
	    --build-arg REDIS_TARBALL="$$tararg" \
	    -t "$$tag" -f "$(CURDIR)/Dockerfile" "$(CURDIR)"; \
	done; \
	echo "docker: $(DOCKER_IMAGE) built in $$(( $$(date +%s) - start ))s," \
	  "$$($(DOCKER) image inspect -f '{{.Size}}' "$(DOCKER_IMAGE)" | awk '{printf "%.1f MB", $$1 / 1e6}')"

# A real container: healthy (which needs the module loaded), MODULE LIST names
# charon, the server is not root, and a CHARON.RATE key written before `docker stop`
# is counted by a new container on the same volume (times passed with AT).
docker-smoke: docker
	@set -euo pipefail; \
	name=charon-smoke-$$$$; vol=$$name; \
	trap '$(DOCKER) rm -f $$name >/dev/null 2>&1 || true; $(DOCKER) volume rm -f $$vol >/dev/null 2>&1 || true' EXIT; \
	fail() { echo "docker-smoke: $$*" >&2; $(DOCKER) logs --tail 30 $$name >&2 || true; exit 1; }; \
	healthy() { local s=; for _ in $$(seq 90); do \
	    s=$$($(DOCKER) inspect -f '{{.State.Health.Status}}' $$name); [ "$$s" != healthy ] || return 0; \
	    [ "$$($(DOCKER) inspect -f '{{.State.Running}}' $$name)" = true ] || break; sleep 1; \
	  done; fail "container is not healthy (health: $$s)"; }; \
	cli() { $(DOCKER) exec $$name redis-cli "$$@"; }; \
	tier="TIER 10 3600000 3600000 0"; now=$$(date +%s%3N); \
	$(DOCKER) volume create $$vol >/dev/null; \
	$(DOCKER) run -d --name $$name -v $$vol:/data "$(DOCKER_IMAGE)" >/dev/null; healthy; \
	cli MODULE LIST | grep -qx charon || fail "MODULE LIST does not name charon"; \
	uid=$$($(DOCKER) exec $$name awk '/^Uid:/ {print $$2}' /proc/1/status); \
	[ "$$uid" != 0 ] || fail "redis-server runs as root"; \
	got=$$(cli CHARON.RATE rl:smoke AT $$now $$tier | sed -n 1p); \
	[ "$$got" = 1 ] || fail "CHARON.RATE granted '$$got', want 1"; \
	$(DOCKER) stop $$name >/dev/null; $(DOCKER) rm $$name >/dev/null; \
	$(DOCKER) run -d --name $$name -v $$vol:/data "$(DOCKER_IMAGE)" >/dev/null; healthy; \
	hits=$$(cli CHARON.RATE rl:smoke AT $$((now + 1)) $$tier | sed -n 4p); \
	[ "$$hits" = 2 ] || fail "tier_hits after a new container is '$$hits', want 2 (the key was not kept)"; \
	echo "docker-smoke: ok (healthy, MODULE LIST has charon, uid $$uid, rl:smoke kept across containers on a volume)"

# The integration tests, compiled here (static, no cgo), run inside the image as its
# non-root user against /usr/local/bin/redis-server and the installed charon.so. The
# harness wants a repository root (go.mod) to keep its run directories under, and the
# header test compares cshim/redismodule.h with the Redis tarball the image was built
# from, so a small tree with those is copied in. Failed runs are copied back out.
docker-test: docker-smoke
	@set -euo pipefail; \
	rm -rf "$(DOCKER_TESTS)"; tree="$(DOCKER_TESTS)/tree"; mkdir -p "$$tree/tests" "$$tree/cshim" "$$tree/build"; \
	CGO_ENABLED=0 $(GO) test -c -tags integration -o "$(DOCKER_TESTS)/" ./tests/...; \
	bins=$$(ls "$(DOCKER_TESTS)"/*.test 2>/dev/null || true); \
	[ -n "$$bins" ] || { echo "docker-test: ./tests/... built no test binaries" >&2; exit 1; }; \
	: >"$$tree/go.mod"; cp cshim/redismodule.h "$$tree/cshim/"; cp Makefile VERSION README.md "$$tree/"; \
	mkdir -p "$$tree/docs"; cp docs/*.md "$$tree/docs/" 2>/dev/null || true; \
	for f in $$(git grep -l '^func Example' -- '*_test.go' 2>/dev/null || grep -rl --include='*_test.go' '^func Example' module tests); do \
	  mkdir -p "$$tree/$$(dirname "$$f")"; cp "$$f" "$$tree/$$f"; done; \
	cid=; trap '[ -z "$$cid" ] || $(DOCKER) rm -f -v "$$cid" >/dev/null 2>&1 || true' EXIT; \
	cid=$$($(DOCKER) create "$(DOCKER_BUILD_IMAGE)"); \
	$(DOCKER) cp "$$cid:/src/build/redis-verified.tar.gz" "$$tree/build/"; $(DOCKER) rm -v "$$cid" >/dev/null; cid=; \
	chmod -R a+rwX "$$tree"; chmod +t "$$tree" "$$tree/build"; \
	rc=0; \
	for bin in $$bins; do \
	  b=$$(basename "$$bin"); start=$$(date +%s); cp "$$bin" "$$tree/tests/"; \
	  cid=$$($(DOCKER) create --no-healthcheck --workdir /tmp/charon/tests \
	    -e CHARON_REDIS_BIN=$(DOCKER_REDIS_BIN) -e CHARON_MODULE=$(DOCKER_MODULE) "$(DOCKER_IMAGE)" \
	    ./$$b -test.count=1 -test.timeout=30m $(DOCKER_TEST_FLAGS)); \
	  $(DOCKER) cp "$$tree/." "$$cid:/tmp/charon/"; rm -f "$$tree/tests/$$b"; \
	  $(DOCKER) start -a "$$cid" || true; \
	  code=$$($(DOCKER) wait "$$cid"); \
	  if [ "$$code" != 0 ]; then \
	    rc=1; $(DOCKER) cp "$$cid:/tmp/charon/build/test-runs" "$(DOCKER_TESTS)/test-runs-$${b%.test}" 2>/dev/null && \
	      echo "docker-test: server directories kept in $(DOCKER_TESTS)/test-runs-$${b%.test}"; \
	  fi; \
	  $(DOCKER) rm -v "$$cid" >/dev/null; cid=; \
	  echo "docker-test: $$b exited $$code in $$(( $$(date +%s) - start ))s"; \
	done; \
	exit $$rc
