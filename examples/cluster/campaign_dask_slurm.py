"""A sampling campaign on a SLURM cluster through Dask (dask-jobqueue).

Starts Dask workers as SLURM jobs and runs ``surrogates sample`` with ``--scheduler`` on them:
each chunk of rows is sampled on a worker and written as a part file beside ``--out``
(the run, the reference file and the output folder must be on a file system every node reads).
Chunk ``i`` draws from its own seed, so the file is the same whatever the number of workers,
and a killed campaign continues where it stopped when this script is run again (``--resume``).

    pip install 'simsurrogates[cluster]'     # dask[distributed] and dask-jobqueue
    python examples/cluster/campaign_dask_slurm.py runs/flow --like calo_1m.h5 \\
        --out samples/flow_1m.h5 --jobs 8

Without SLURM, the same campaign on this machine: ``--local 4`` (a Dask LocalCluster), or
``surrogates sample RUN --like F.h5 --out G.h5 --workers 4 --resume``.
"""

from __future__ import annotations

import argparse
import sys


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a trained model directory")
    p.add_argument("--like", required=True, help="reference file whose conditions to sample")
    p.add_argument("--out", required=True, help="output file (.h5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=4, help="SLURM jobs of workers")
    p.add_argument("--cores", type=int, default=16, help="cores (= worker processes) per job")
    p.add_argument("--memory", default="64GB", help="memory per job")
    p.add_argument("--walltime", default="04:00:00")
    p.add_argument("--partition", help="SLURM partition (queue)")
    p.add_argument("--local", type=int, metavar="N", help="a LocalCluster of N workers instead")
    args = p.parse_args()

    from dask.distributed import Client, LocalCluster

    from surrogates.cli import main as surrogates

    if args.local:
        cluster = LocalCluster(n_workers=args.local, threads_per_worker=1)
    else:
        from dask_jobqueue import SLURMCluster

        cluster = SLURMCluster(
            queue=args.partition,
            cores=args.cores,
            processes=args.cores,  # one single-threaded worker process per core
            memory=args.memory,
            walltime=args.walltime,
            job_script_prologue=["export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"],
        )
        cluster.scale(jobs=args.jobs)
    with cluster, Client(cluster) as client:
        client.wait_for_workers(1)  # jobs start as the queue allows; more join while it runs
        return surrogates([
            "sample", args.run, "--like", args.like, "--out", args.out, "--seed", str(args.seed),
            "--scheduler", cluster.scheduler_address, "--resume",
        ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
