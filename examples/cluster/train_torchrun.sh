#!/usr/bin/env bash
# Data-parallel training on the GPUs (or CPU cores) of one machine with torchrun.
# One process per GPU (cuda:LOCAL_RANK, nccl); on a machine without CUDA, gloo on the CPU.
# --batch-size is per process: the global batch is N x 256 rows.
#
#   bash examples/cluster/train_torchrun.sh DATA.h5 RUN_DIR [N_PROCESSES]
set -euo pipefail
data=${1:?dataset file (.h5)}
run=${2:?run directory}
nproc=${3:-$(python -c "import torch; print(max(1, torch.cuda.device_count()))")}

resume=()
if [[ -f "$run/trainer.ckpt" ]]; then  # an interrupted run: every process resumes from it
    resume=(--resume)
fi
# CPU only: one torch thread per process, or the processes oversubscribe the cores
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
torchrun --standalone --nproc-per-node "$nproc" -m surrogates train flow \
    --data "$data" --out "$run" --batch-size 256 --checkpoint-every 500 "${resume[@]}"
