#!/usr/bin/env bash
# Runs every benchmark one after another (never two torch processes at once: on a small machine
# they oversubscribe the cores) and keeps each one's output in benchmarks/results/NAME.txt, where
# the README's numbers are read from.  Usage: bash benchmarks/run_all.sh [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
mkdir -p benchmarks/results
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(bench_data bench_simulators bench_calorimeter bench_nbody bench_flow npe_vs_sbi)
for name in "${names[@]}"; do
  echo "== $name"
  "$py" "benchmarks/$name.py" 2>&1 | tee "benchmarks/results/$name.txt"
done
