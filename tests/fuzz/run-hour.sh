#!/usr/bin/env bash
# Runs every libFuzzer target of tests/fuzz for a long time (default 3600 s in all) and
# reports, per target: executions, time, coverage, new corpus inputs, crashes (with the
# paths of the saved inputs).
#
#   tests/fuzz/run-hour.sh [SECONDS] [TARGET...]
#
# Targets share the machine's cores: as many run at once as there are cores, in waves, each
# for SECONDS / waves, so the whole run takes about SECONDS. A target that crashes is
# restarted on its corpus until its time is up (each crash is saved, up to 20 per target).
# Builds build-fuzz/ first if it lacks the targets (clang, -Dfuzz=true).
#
# Scratch data lives outside the tree: TWINBOX_FUZZ_DIR (default a new /tmp/twinbox-fuzz.*)
# gets corpus/TARGET (grown from tests/fuzz/corpus/TARGET, which is only read; reuse the
# directory to go on where a run stopped), artifacts/TARGET (crash-*, leak-*, timeout-*,
# oom-* inputs) and logs/TARGET.log. TWINBOX_FUZZ_BUILD names another build directory.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
TOTAL=${1:-3600}
shift $(($# > 0 ? 1 : 0))
BUILD=${TWINBOX_FUZZ_BUILD:-build-fuzz}
case $TOTAL in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

if [ ! -x "$BUILD/tests/fuzz/fuzz_response" ]; then
    . tests/deps.sh
    echo "building $BUILD/ (clang, libFuzzer targets)" >&2
    CC=clang tb_build "$BUILD" -Dfuzz=true -Dwerror=true -Db_sanitize=address,undefined \
        -Db_lundef=false -Ddovecot_plugin=disabled
fi

if [ $# -gt 0 ]; then
    TARGETS="$*"
else
    TARGETS=$(cd "$BUILD/tests/fuzz" && for f in fuzz_*; do
        if [ -f "$f" ] && [ -x "$f" ]; then echo "$f"; fi
    done)
fi
N=$(echo $TARGETS | wc -w)
CORES=$(nproc 2>/dev/null || echo 2)
WAVES=$(((N + CORES - 1) / CORES))
PER=$((TOTAL / WAVES))
[ "$PER" -ge 10 ] || PER=10

DIR=${TWINBOX_FUZZ_DIR:-$(mktemp -d /tmp/twinbox-fuzz.XXXXXX)}
mkdir -p "$DIR/corpus" "$DIR/artifacts" "$DIR/logs" "$DIR/summary"
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS=suppressions=$ROOT/tests/fuzz/lsan.supp:print_suppressions=0

max_len() {
    case $1 in
    fuzz_response) echo 4096 ;;
    fuzz_uidset) echo 256 ;;
    *) echo 2048 ;;
    esac
}

# One target for PER seconds; writes "runs seconds cov corpus_added restarts" to summary/.
run_target() {
    local t=$1 exe=$BUILD/tests/fuzz/$1 runs=0 start end left n cov="?" restarts=0 before
    mkdir -p "$DIR/corpus/$t" "$DIR/artifacts/$t"
    before=$(find "$DIR/corpus/$t" -type f | wc -l)
    : >"$DIR/logs/$t.log"
    start=$(date +%s)
    end=$((start + PER))
    while :; do
        left=$((end - $(date +%s)))
        [ "$left" -ge 3 ] || break
        local seeds=()
        [ -d "tests/fuzz/corpus/$t" ] && seeds=("tests/fuzz/corpus/$t")
        "$exe" -max_total_time="$left" -max_len="$(max_len "$t")" -timeout=20 \
            -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$DIR/artifacts/$t/" \
            "$DIR/corpus/$t" "${seeds[@]}" >>"$DIR/logs/$t.log" 2>&1 || restarts=$((restarts + 1))
        n=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$DIR/logs/$t.log" | tail -1 |
            grep -o '[0-9]*$' || true)
        runs=$((runs + ${n:-0}))
        # Only the last run's figure counts once: mark it used.
        sed -i 's/stat::number_of_executed_units:/stat::counted_units:/' "$DIR/logs/$t.log"
        [ "$restarts" -lt 20 ] || break
    done
    cov=$(grep -o 'cov: [0-9]*' "$DIR/logs/$t.log" | tail -1 | grep -o '[0-9]*$' || echo "?")
    echo "$runs $(($(date +%s) - start)) $cov $(($(find "$DIR/corpus/$t" -type f | wc -l) - before)) $restarts" \
        >"$DIR/summary/$t"
}

echo "fuzzing $N targets for ${TOTAL}s: $WAVES wave(s) of up to $CORES, ${PER}s each; data in $DIR" >&2
set -- $TARGETS
while [ $# -gt 0 ]; do
    pids=""
    for _ in $(seq "$CORES"); do
        [ $# -gt 0 ] || break
        run_target "$1" &
        pids="$pids $!"
        shift
    done
    for p in $pids; do
        wait "$p"
    done
done

printf '%-18s %12s %8s %8s %8s %8s\n' target runs seconds cov new crashes
total_crashes=0
for t in $TARGETS; do
    read -r runs secs cov added _ <"$DIR/summary/$t"
    crashes=$(find "$DIR/artifacts/$t" -type f | wc -l)
    total_crashes=$((total_crashes + crashes))
    printf '%-18s %12s %8s %8s %8s %8s\n' "$t" "$runs" "$secs" "$cov" "$added" "$crashes"
    find "$DIR/artifacts/$t" -type f | sort | sed 's/^/    /'
done
echo "crashes: $total_crashes (inputs under $DIR/artifacts; logs under $DIR/logs)"
[ "$total_crashes" -eq 0 ]
