#!/bin/sh
# Profile edged on one run of the peer workload: py-spy samples (raw stacks for
# bench/profiles/top.py, and a flame graph), and for the idle runs the
# system calls (strace -c) and their sequence over a few seconds.
# Run it under the bench lock from the repository root:
#   flock /tmp/edged-bench.lock sh bench/profiles/pyspy.sh RUN OUTDIR [SECONDS] [RATE]
# RUN is one of peer_workload.py's runs (200, multi, idle, empty); RATE is
# samples/s (raise it for the idle runs, where few samples find edged busy).
set -eu
run=$1 out=$2 seconds=${3:-30} rate=${4:-100}
mkdir -p "$out"
.venv/bin/python bench/peer_workload.py --runs "$run" --warmup 5 --seconds $((seconds * 2 + 30)) > "$out/$run.txt" 2>&1 &
bench=$!
pid=""
for _ in $(seq 300); do
    pid=$(pgrep -P "$bench" -f "edged run" || true)
    [ -n "$pid" ] && break
    sleep 0.2
done
[ -n "$pid" ] || { echo "edged did not start" >&2; exit 1; }
sleep 15  # past start-up and the first polls
.venv/bin/py-spy record --pid "$pid" -d "$seconds" -r "$rate" --format raw -o "$out/$run.raw"
.venv/bin/py-spy record --pid "$pid" -d "$seconds" -r "$rate" --format flamegraph -o "$out/$run.svg"
case $run in idle|empty)
    timeout 20 strace -c -f -p "$pid" -o "$out/$run.strace-c" || true
    timeout 5 strace -f -tt -p "$pid" -o "$out/$run.strace" || true ;;
esac
wait "$bench"
.venv/bin/python bench/profiles/top.py "$out/$run.raw" --ticks $((seconds * rate)) > "$out/$run.top"
