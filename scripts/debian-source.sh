#!/usr/bin/env bash
# debian-source.sh PACKAGE VERSION SHA256 DEST [SUITES]
#
# Fetches the orig tarball of Debian's source package PACKAGE at upstream VERSION
# (e.g. `redis 8.0.2`), verifies its SHA-256 and copies it to DEST.
#
# Nothing outside a temporary directory is written: the Debian mirror is read from
# the machine's own apt sources at run time (no host name lives in the repository),
# a private deb-src sources list, package lists and cache are kept in the temporary
# directory and handed to apt through -o options, and the directory is removed on
# exit. SUITES (default: every suite that might carry the package) are the Debian
# suites searched. SHA256 "-" prints the checksum of what was fetched and stops
# with an error, which is how a new pin is found.
#
#   scripts/debian-source.sh redis 8.0.2 <sha256> build/redis-8.0.2.tar.gz
#   scripts/debian-source.sh list valkey        # prints the versions the suites serve
set -euo pipefail

say() { echo "debian-source: $*" >&2; }
die() { say "$*"; exit 1; }

DEFAULT_SUITES="bookworm bookworm-backports trixie sid bullseye"

command -v apt-get >/dev/null || die "no apt-get on this machine; fetch the tarball by hand and pass it as a local file"

# mirror prints the URI of the machine's Debian archive: the first apt source (deb822
# .sources or one-line .list) that is not a security mirror and points at a Debian
# archive (its path ends in /debian). Disabled or commented entries are ignored.
mirror() {
	local f
	{
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -f "$f" ] || continue
			awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
		done
		for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
			[ -f "$f" ] || continue
			awk '$1 == "deb" || $1 == "deb-src" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }' "$f"
		done
	} | grep -v security | grep -E '/debian/?$' | head -n1 || true
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/charon-debsrc.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# setup writes the private sources list and fetches its package lists.
setup() {
	local suites=$1 uri
	uri=$(mirror)
	[ -n "$uri" ] || die "cannot find a Debian archive in the apt sources (/etc/apt/sources.list*)"
	mkdir -p "$tmp/etc/sources.list.d" "$tmp/etc/preferences.d" "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/work"
	printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
		"$uri" "$suites" >"$tmp/etc/sources.list.d/deb-src.sources"
	: >"$tmp/etc/sources.list"
	APT=(-o "Dir::Etc::SourceList=$tmp/etc/sources.list"
		-o "Dir::Etc::SourceParts=$tmp/etc/sources.list.d"
		-o "Dir::Etc::PreferencesParts=$tmp/etc/preferences.d"
		-o "Dir::State::Lists=$tmp/lists"
		-o "Dir::Cache=$tmp/cache"
		-o "Acquire::Languages=none"
		-o "APT::Get::Only-Source=true")
	# apt drops to the _apt user for downloads when run as root; it cannot write a
	# private root-owned directory, so downloads stay with the caller here.
	[ "$(id -u)" != 0 ] || APT+=(-o "APT::Sandbox::User=root")
	say "fetching the source package lists of $suites"
	local start=$SECONDS
	apt-get "${APT[@]}" update -qq >"$tmp/update.log" 2>&1 || { cat "$tmp/update.log" >&2; die "apt-get update failed"; }
	grep -E '^(W|E):' "$tmp/update.log" >&2 || true
	say "package lists fetched in $((SECONDS - start))s"
}

# versions PACKAGE prints the Debian versions of PACKAGE the suites serve.
versions() {
	apt-cache "${APT[@]}" showsrc "$1" 2>/dev/null | awk '/^Version:/ { print $2 }' | sort -u
}

if [ "${1:-}" = list ]; then
	[ $# -ge 2 ] || die "usage: $0 list PACKAGE [SUITES]"
	setup "${3:-$DEFAULT_SUITES}"
	versions "$2"
	exit 0
fi

[ $# -ge 4 ] || die "usage: $0 PACKAGE VERSION SHA256 DEST [SUITES]"
pkg=$1 version=$2 want=$3 dest=$4
setup "${5:-$DEFAULT_SUITES}"

# The Debian version whose upstream part is VERSION (epoch, revision and a Debian
# repack suffix such as +dfsg1 aside); the orig tarball is named by the full upstream.
debver=$(versions "$pkg" | awk -v v="$version" '{ u = $0; sub(/^[0-9]+:/, "", u); sub(/-[^-]*$/, "", u); b = u; sub(/[+~]dfsg[0-9]*$/, "", b); if (u == v || b == v) print $0 }' | tail -n1)
[ -n "$debver" ] || die "$pkg $version is not served by the suites searched; they serve: $(versions "$pkg" | tr '\n' ' ')"

say "downloading $pkg=$debver"
start=$SECONDS
upstream=${debver#*:}
upstream=${upstream%-*}
# Only the orig tarball is used (its checksum is the pin). A mirror that lacks the
# .dsc or Debian diff of a stable update still serves it, so a failure that left the
# orig tarball behind is a warning.
failed=0
(cd "$tmp/work" && apt-get "${APT[@]}" source --download-only -qq "$pkg=$debver" >"$tmp/source.log" 2>&1) || failed=1
orig=$(ls "$tmp/work/${pkg}_${upstream}.orig.tar."* 2>/dev/null | grep -v '\.asc$' | head -n1 || true)
if [ -z "$orig" ]; then
	cat "$tmp/source.log" >&2
	die "apt-get source $pkg=$debver gave no ${pkg}_${upstream}.orig.tar.*"
fi
[ $failed = 0 ] || say "warning: apt-get source $pkg=$debver fetched the orig tarball but not every other file: $(grep -c '^E:' "$tmp/source.log") errors"
say "downloaded $(basename "$orig") in $((SECONDS - start))s"

actual=$(sha256sum "$orig" | cut -d' ' -f1)
if [ "$actual" != "$want" ]; then
	say "checksum mismatch for $(basename "$orig") ($pkg $debver)"
	say "  expected $want"
	say "  actual   $actual"
	exit 1
fi
say "verified $(basename "$orig") sha256 $actual"
mkdir -p "$(dirname "$dest")"
cp "$orig" "$dest.part"
mv "$dest.part" "$dest"
