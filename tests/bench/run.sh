#!/usr/bin/env bash
# tests/bench/run.sh: run every tests/bench/*.sh except this one, in name
# order, each in its own bash process (what `make bench` calls).
#
#   bash tests/bench/run.sh [pattern...]
#
# A pattern (substring of the script name, e.g. `spop`) limits the run.
# Benchmarks print figures and assert nothing; this runner exits non-zero only
# when a script itself failed (could not build its setup, crashed), after
# running all of them.
set -uo pipefail

dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$dir/../.." && pwd)
failed=()
ran=0
for s in "$dir"/*.sh; do
    [ -f "$s" ] || continue
    name=${s##*/}
    [ "$name" = run.sh ] && continue
    if [ $# -gt 0 ]; then
        keep=0
        for pat in "$@"; do
            case $name in *"$pat"*) keep=1 ;; esac
        done
        [ "$keep" = 1 ] || continue
    fi
    echo "==== bench: $name"
    (cd "$root" && bash "$s")
    rc=$?
    ran=$((ran + 1))
    [ "$rc" = 0 ] || failed+=("$name (exit $rc)")
    echo
done
if [ "$ran" = 0 ]; then
    echo "no tests/bench/*.sh scripts${*:+ matching $*}" >&2
    exit 1
fi
if [ ${#failed[@]} -gt 0 ]; then
    printf 'bench scripts that failed: %s\n' "${failed[*]}" >&2
    exit 1
fi
