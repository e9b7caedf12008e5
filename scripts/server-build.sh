#!/usr/bin/env bash
# server-build.sh NAME VERSION SHA256 [PACKAGE]
#
# Builds one server of the version matrix (NAME redis or valkey) from Debian's orig
# tarball of PACKAGE (default NAME) at upstream VERSION, verified against SHA256, and
# prints the directory holding its binaries (redis-server and redis-cli; Valkey's
# valkey-* binaries get redis-* names there too, as the test harness expects).
#
# Outputs are cached outside the work tree, keyed by the checksum:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/charon/servers/NAME-VERSION-<first 12 hex of SHA256>/bin/
# so a second run rebuilds nothing. Progress lines go to stderr; the build log is kept
# next to bin/ (build.log). Builds use -j${JOBS:-2}.
set -euo pipefail

say() { echo "server-build: $*" >&2; }
die() { say "$*"; exit 1; }

[ $# -ge 3 ] || die "usage: $0 NAME VERSION SHA256 [PACKAGE]"
name=$1 version=$2 sha=$3 pkg=${4:-$1}
here=$(cd "$(dirname "$0")" && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/charon/servers
dir=$cache/$name-$version-${sha:0:12}
bin=$dir/bin

# One build of a server at a time: a second caller waits for the first and then finds
# the binaries in the cache.
mkdir -p "$cache"
exec 9>"$dir.lock"
if ! flock -n 9; then
	say "$name $version: another build of it is running; waiting"
	flock 9
fi

if [ -x "$bin/redis-server" ] && [ -x "$bin/redis-cli" ] && [ -f "$dir/sha256" ] && [ "$(cat "$dir/sha256")" = "$sha" ]; then
	say "$name $version: cached in $bin"
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d "$cache/.build-$name-$version.XXXXXX")
trap 'rm -rf "$work"' EXIT

tarball=$dir.orig.tar
if [ -s "$tarball" ] && [ "$(sha256sum "$tarball" | cut -d' ' -f1)" = "$sha" ]; then
	say "$name $version: source tarball cached and verified ($sha)"
else
	say "$name $version: fetching Debian's $pkg $version source"
	"$here/debian-source.sh" "$pkg" "$version" "$sha" "$tarball"
fi

# Checked again after the copy: what is built is what was verified.
actual=$(sha256sum "$tarball" | cut -d' ' -f1)
if [ "$actual" != "$sha" ]; then
	say "$name $version: checksum mismatch for $tarball"
	say "  expected $sha"
	say "  actual   $actual"
	exit 1
fi
tar xf "$tarball" -C "$work" --strip-components=1

# Upstream Makefile, no TLS, no systemd. jemalloc when the tarball bundles it (Debian
# repacks some releases without deps/jemalloc), libc malloc otherwise. Redis 8 bundles
# modules (search, JSON, ...) that are built only with BUILD_WITH_MODULES=yes; they
# stay off.
malloc=libc
[ -d "$work/deps/jemalloc" ] && malloc=jemalloc
# -O2 rather than the default -O3, which adds link-time optimisation: the LTO link
# of one server takes minutes on a busy 2-core machine, and no test measures speed.
flags=(BUILD_TLS=no USE_SYSTEMD=no MALLOC=$malloc BUILD_WITH_MODULES=no OPTIMIZATION=-O2)
say "$name $version: building with ${flags[*]} -j${JOBS:-2} (log: $dir/build.log)"
start=$SECONDS
mkdir -p "$dir"
if ! make -C "$work" -j"${JOBS:-2}" "${flags[@]}" >"$dir/build.log" 2>&1; then
	tail -40 "$dir/build.log" >&2
	die "$name $version: build failed after $((SECONDS - start))s"
fi
say "$name $version: built in $((SECONDS - start))s"

rm -rf "$bin"
mkdir -p "$bin.part"
for prog in server cli; do
	src=$work/src/$name-$prog
	[ -x "$src" ] || src=$work/src/redis-$prog
	[ -x "$src" ] || die "$name $version: no $name-$prog or redis-$prog in src/"
	cp "$src" "$bin.part/redis-$prog"
done
mv "$bin.part" "$bin"
echo "$sha" >"$dir/sha256"
say "$name $version: $("$bin/redis-server" --version)"
echo "$bin"
