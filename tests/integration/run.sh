#!/usr/bin/env bash
# tests/integration/run.sh: run every tests/integration/t_*.sh, each in its own
# bash process, and add up their results.
#
#   bash tests/integration/run.sh [pattern...]
#
# A pattern (substring of the script name, e.g. `services`) limits the run.
# Each script sources tests/lib/services.sh and ends with t_summary, whose line
# "N passed, M failed" is the script's result (the last such line of its
# output). A script that prints no such line (crashed, timed out), or exits
# non-zero while reporting no failure, counts one extra failure. The last line
# of this runner is "N passed, M failed" over all scripts; it exits non-zero
# when anything failed.
#
# Environment:
#   GW_AGENT         agent binary for the scripts (default build/asan/gw-agent)
#   GW_ROOT          repository root (computed)
#   GW_TEST_TIMEOUT  seconds per script (default 600); TERM, then KILL 30 s later
#   GW_QUIET=1       show only each script's result, and the output of failing ones
#   GW_KEEP=1        keep each script's temp dir (see tests/lib/services.sh)
set -uo pipefail

GW_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GW_AGENT=${GW_AGENT:-$GW_ROOT/build/asan/gw-agent}
case $GW_AGENT in /*) ;; *) GW_AGENT=$PWD/$GW_AGENT ;; esac
export GW_ROOT GW_AGENT

timeout_s=${GW_TEST_TIMEOUT:-600}
dir=$GW_ROOT/tests/integration

scripts=()
for t in "$dir"/t_*.sh; do
    [ -f "$t" ] || continue
    if [ $# -gt 0 ]; then
        keep=0
        for pat in "$@"; do
            case ${t##*/} in *"$pat"*) keep=1 ;; esac
        done
        [ "$keep" = 1 ] || continue
    fi
    scripts+=("$t")
done
if [ ${#scripts[@]} = 0 ]; then
    echo "no tests/integration/t_*.sh scripts${*:+ matching $*}" >&2
    echo "0 passed, 1 failed"
    exit 1
fi

outdir=$(mktemp -d "${TMPDIR:-/tmp}/gw-integration.XXXXXX") || exit 1
trap 'rm -rf "$outdir"' EXIT

total_pass=0
total_fail=0
results=()
for t in "${scripts[@]}"; do
    name=${t##*/}
    log=$outdir/${name%.sh}.log
    echo "==== $name"
    start=$SECONDS
    if [ "${GW_QUIET:-0}" = 1 ]; then
        (cd "$GW_ROOT" && timeout -k 30 "$timeout_s" bash "$t") >"$log" 2>&1
        rc=$?
    else
        (cd "$GW_ROOT" && timeout -k 30 "$timeout_s" bash "$t") 2>&1 | tee "$log"
        rc=${PIPESTATUS[0]}
    fi
    secs=$((SECONDS - start))
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
    note=
    if [ -z "$line" ]; then
        p=0 f=1
        if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
            note=" (timed out after ${timeout_s}s, no summary line)"
        else
            note=" (exit $rc, no summary line)"
        fi
    else
        p=${line%% passed*}
        f=${line#*, }
        f=${f%% failed}
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
            f=1
            note=" (exit $rc despite no reported failure)"
        fi
    fi
    if [ "$f" = 0 ]; then status=PASS; else status=FAIL; fi
    if [ "$status" = FAIL ] && [ "${GW_QUIET:-0}" = 1 ]; then
        sed 's/^/    /' "$log"
    fi
    results+=("$(printf '%-4s %-32s %s passed, %s failed, %ss%s' "$status" "$name" "$p" "$f" "$secs" "$note")")
    echo "==== $status $name: $p passed, $f failed (${secs}s)$note"
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
done

echo
echo "integration results:"
printf '  %s\n' "${results[@]}"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
