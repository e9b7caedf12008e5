# The version matrix: `make test-matrix` runs the whole integration suite with the one
# build/charon.so against each server below (scripts/test-matrix.sh), each built from a
# source tarball pinned by version and SHA-256. Debian's archive serves them as source
# packages (fetched by scripts/debian-source.sh through a private sources list, no host
# name in the repository); built binaries are cached by checksum under
# ${XDG_CACHE_HOME:-$HOME/.cache}/charon/servers/, so a second run builds nothing.
#
# Entries are name:version:sha256[:debian-package]; "pinned" is the Makefile's Redis
# (build/redis); refuse= marks a server older than the module supports, on which only
# the refusal test runs; scripts= marks a server tested without the module (managed
# Redis, managed Valkey), on which the Go clients' script-engine tests run. A new pin's checksum is printed by
#   scripts/debian-source.sh PACKAGE VERSION - /dev/null
# and `scripts/debian-source.sh list PACKAGE` lists the versions Debian serves.

MATRIX_SERVERS ?= \
	redis:$(REDIS_VERSION):pinned \
	redis:8.0.6:763bf3005bcbf77c1d8145016a9627e45219665f99cf5a736bc73ec70faf0c8e \
	valkey:9.1.2:8e8557da7426a51b4e0fb514a65ef6241dc7c85cb408243af389070abf379cec \
	valkey:8.1.1:d9bbd82eecb82f359e649a0007ad3dc1b47cc15afa626348ca86b73c4ae2c7ee \
	scripts=valkey:8.1.1:d9bbd82eecb82f359e649a0007ad3dc1b47cc15afa626348ca86b73c4ae2c7ee \
	refuse=redis:6.0.16:8bea58a468bb67bedc92d8c2e44c170e42e6ea02527cbc5d233e92e8d78d1b99

.PHONY: test-matrix matrix-servers
test-matrix: build redis
	@GO="$(GO)" MAKE="$(MAKE)" $(CURDIR)/scripts/test-matrix.sh $(MATRIX_SERVERS)

# Builds (or finds in the cache) every server of the matrix without testing; prints
# each one's bin directory.
matrix-servers:
	@set -e; for s in $(MATRIX_SERVERS); do \
	  s=$${s#refuse=}; s=$${s#scripts=}; IFS=: read -r name version sha pkg <<<"$$s"; \
	  [ "$$sha" != pinned ] || continue; \
	  $(CURDIR)/scripts/server-build.sh "$$name" "$$version" "$$sha" "$$pkg"; \
	done
