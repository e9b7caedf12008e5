#!/usr/bin/env bash
# test-matrix.sh SERVER...
#
# Runs the whole integration suite (go test -tags integration ./tests/...) with the one
# build/charon.so against every server of the version matrix, each built from a
# checksum-verified source by scripts/server-build.sh (cached by checksum, so a second
# run builds nothing). Each SERVER is
#
#   name:version:pinned            the Makefile's pinned Redis (build/redis, `make redis`)
#   name:version:sha256[:package]  Debian's orig tarball of package (default name)
#
# and a leading "refuse=" marks a server older than the module supports: on it only
# the refusal test runs (tests/refusal_test.go, build tag `matrix`), which passes when
# the server refuses the load with the module's log line and does not crash. A
# leading "scripts=" marks a server tested without the module, as on managed Redis:
# the Go clients' script-engine tests run (TestEngine*, every server under test
# started without loadmodule and with TIME refused inside scripts).
#
# Progress lines name every long step with its elapsed seconds; logs are kept under
# build/matrix/. The results are written as a table into README.md (between
# <!-- compat:begin --> and <!-- compat:end -->) and docs/compatibility.md. The last
# line is exactly
#   test-matrix: P of N servers pass (name version: ok|FAIL, ...)
# and the exit status is non-zero when any server fails.
set -uo pipefail

cd "$(dirname "$0")/.."
root=$PWD
here=$root/scripts
GO=${GO:-go}
MAKE=${MAKE:-make}
out=$root/build/matrix
mkdir -p "$out"
module=$root/build/charon.so

say() { echo "test-matrix: $*"; }

[ $# -gt 0 ] || { say "no servers given"; exit 2; }
[ -x "$module" ] || { say "$module is missing; run make build"; exit 2; }

# name|version|sha|kind|result|build_s|suite_s|tests  per server, in order.
results=()
total_start=$SECONDS

for spec in "$@"; do
	kind=suite
	case $spec in
	refuse=*) kind=refuse; spec=${spec#refuse=} ;;
	scripts=*) kind=scripts; spec=${spec#scripts=} ;;
	esac
	IFS=: read -r name version sha pkg <<<"$spec"
	label="$name $version"
	log=$out/$name-$version.log
	[ $kind = scripts ] && { label="$label (no module)"; log=$out/$name-$version-scripts.log; }
	: >"$log"

	# Build (or find in the cache).
	say "$label: building (or taking from the cache)"
	start=$SECONDS
	bin=
	if [ "$sha" = pinned ]; then
		if $MAKE --no-print-directory redis >>"$log" 2>&1; then bin=$root/build/redis/bin; fi
		sha=$(sha256sum "$root/build/redis-verified.tar.gz" 2>/dev/null | cut -d' ' -f1)
	else
		bin=$("$here/server-build.sh" "$name" "$version" "$sha" "${pkg:-}" 2> >(tee -a "$log" >&2)) || bin=
	fi
	build_s=$((SECONDS - start))
	if [ -z "$bin" ] || [ ! -x "$bin/redis-server" ]; then
		say "$label: build FAILED after ${build_s}s (log: $log)"
		results+=("$name|$version|$sha|$kind|FAIL|$build_s|0|build failed")
		continue
	fi
	say "$label: server ready in ${build_s}s ($("$bin/redis-server" --version | awk '{print $3}'))"

	# The suite (or, on a server too old for the module, the refusal test).
	start=$SECONDS
	if [ $kind = refuse ]; then
		say "$label: running the refusal test (the module must refuse to load, cleanly)"
		CHARON_OLD_REDIS_BIN=$bin CHARON_MODULE=$module \
			$GO test -tags 'integration matrix' -count=1 -timeout 10m -run 'TestOldServerRefusesLoad' -v ./tests/ >>"$log" 2>&1
	elif [ $kind = scripts ]; then
		say "$label: running the Go clients' script-engine tests (no module loaded)"
		CHARON_REDIS_BIN=$bin CHARON_MODULE=$module \
			$GO test -tags integration -count=1 -timeout 20m -run 'TestEngine' -v ./tests/ >>"$log" 2>&1
	else
		say "$label: running the whole integration suite"
		CHARON_REDIS_BIN=$bin CHARON_MODULE=$module \
			$GO test -tags integration -count=1 -timeout 30m -v ./tests/... >>"$log" 2>&1
	fi
	rc=$?
	suite_s=$((SECONDS - start))
	passed=$(grep -c '^--- PASS' "$log" || true)
	failed=$(grep -c '^--- FAIL' "$log" || true)
	if [ $rc = 0 ]; then
		result=ok
		say "$label: ok in ${suite_s}s ($passed tests pass)"
	else
		result=FAIL
		say "$label: FAIL in ${suite_s}s ($failed of $((passed + failed)) top-level tests fail; log: $log)"
		grep -E '^--- FAIL' "$log" | head -20 | sed 's/^/test-matrix:   /'
	fi
	results+=("$name|$version|$sha|$kind|$result|$build_s|$suite_s|$passed")
done

# The table (generated; no timings, so an unchanged matrix gives an unchanged file).
table() {
	echo "| Server | Version | Source (SHA-256 of the tarball, first 12) | What is checked | Result |"
	echo "|---|---|---|---|---|"
	local r name version sha kind result what
	for r in "${results[@]}"; do
		IFS='|' read -r name version sha kind result _ _ _ <<<"$r"
		case $name in redis) name=Redis ;; valkey) name=Valkey ;; esac
		if [ $kind = refuse ]; then
			what='refuses to load charon.so with "needs Redis >= 7.0.0", no crash'
		elif [ $kind = scripts ]; then
			what='without the module: the Go clients on their script engine (TIME refused in scripts)'
		else
			what='whole integration suite'
		fi
		[ $result = ok ] && result=pass
		echo "| $name | $version | \`${sha:0:12}\` | $what | $result |"
	done
}

generated="Generated by \`make test-matrix\` (scripts/test-matrix.sh) from its last run; do not edit by hand."
tbl=$(table)

# README.md: replace what is between the markers; add a small section when absent.
readme=$root/README.md
if [ -f "$readme" ]; then
	if grep -q '<!-- compat:begin -->' "$readme" && grep -q '<!-- compat:end -->' "$readme"; then
		TABLE="$generated"$'\n\n'"$tbl" awk '
			/<!-- compat:begin -->/ { print; print ""; print ENVIRON["TABLE"]; print ""; skip = 1; next }
			/<!-- compat:end -->/ { skip = 0 }
			!skip { print }' "$readme" >"$readme.tmp" && mv "$readme.tmp" "$readme"
	else
		{
			echo
			echo "## Compatibility"
			echo
			echo "The same charon.so, built once, against each server below (\`make test-matrix\`)."
			echo
			echo "<!-- compat:begin -->"
			echo
			echo "$generated"
			echo
			echo "$tbl"
			echo
			echo "<!-- compat:end -->"
		} >>"$readme"
	fi
fi

mkdir -p "$root/docs"
cat >"$root/docs/compatibility.md" <<EOF
# Compatibility

One charon.so, built once against the Redis 7.0 module API, is tested against every
server below by \`make test-matrix\`. Each server is built from a source tarball pinned
by version and SHA-256 (Debian's orig tarball, fetched with \`apt-get source\` through a
private sources list; the pinned Redis 7.0.15 as \`make redis\` builds it), with the
upstream Makefile (no TLS, no systemd), and the whole integration suite runs against it.
A server older than 7.0 must refuse the module with a log line and keep running
normally, without crashing.

On Valkey 9 the module declares that it handles atomic slot migration, so
\`CLUSTER MIGRATESLOTS\` works with charon keys loaded (the suite moves a rate key and
a sorted set that way and compares digests).

<!-- compat:begin -->

$generated

$tbl

<!-- compat:end -->

Built binaries are cached in
\`\${XDG_CACHE_HOME:-\$HOME/.cache}/charon/servers/<name>-<version>-<first 12 hex of sha256>/bin/\`;
the matrix, its pins and the order live in mk/matrix.mk.
EOF

pass=0 n=0 summary=
for r in "${results[@]}"; do
	IFS='|' read -r name version sha kind result build_s suite_s _ <<<"$r"
	n=$((n + 1))
	[ $result = ok ] && pass=$((pass + 1))
	[ $kind = scripts ] && version="$version (no module)"
	say "timing: $name $version: server ${build_s}s, tests ${suite_s}s"
	summary+="${summary:+, }$name $version: $result"
done
say "all servers in $((SECONDS - total_start))s; table written to README.md and docs/compatibility.md"
echo "test-matrix: $pass of $n servers pass ($summary)"
[ $pass = $n ]
