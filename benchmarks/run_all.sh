#!/usr/bin/env bash
# Runs every benchmark one after another (never two torch processes at once: on a small machine
# they oversubscribe the cores) and keeps each one's output in benchmarks/results/NAME/NAME.txt,
# where the README's numbers are read from (benchmarks/results/INDEX.md says which file holds
# which). Every script prints its provenance first (command, commit, date, machine, versions).
# Usage: bash benchmarks/run_all.sh [NAME ...]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(bench_data bench_simulators bench_calorimeter bench_nbody bench_flow bench_surrogates npe_vs_sbi)
for name in "${names[@]}"; do
  echo "== $name"
  mkdir -p "benchmarks/results/$name"
  "$py" "benchmarks/$name.py" 2>&1 | tee "benchmarks/results/$name/$name.txt"
done
