"""Data-parallel training (DDP under torchrun) on the CPU with gloo, and sharded batches.

The process tests start ``python -m torch.distributed.run --nproc-per-node 2`` on this file
(its ``__main__`` block is the worker) and compare with one process in the test itself:

* after K steps both ranks hold identical weights, equal (to 1e-6, float64) to one process on
  the same batches with twice the batch size, for a flow (DDP around ``loss``) and for a GAN
  (its own ``train_step``: explicit gradient all-reduce, with the gradient penalty's double
  backward). The GAN draws latents and the penalty's ε from a per-rank generator, so its noise
  on two processes cannot be the slices of one process's draw; the equality test replaces the
  two draws by functions of the row (the same noise for a row on whichever rank holds it) and
  turns off the minibatch standard deviation, which, like batch norm, is a per-rank statistic.
* a 2-process run killed after a checkpoint and resumed ends with the weights of an
  uninterrupted one (real per-rank noise: every rank's generator state is checkpointed);
* only rank 0 writes into the run folder (an audit hook on rank 1 records every file opened
  for writing, created, renamed or removed there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import simulators
from surrogates.training import ArrayBatches, TrainConfig, Trainer
from surrogates.training.distributed import rank_seed

HERE = Path(__file__).resolve()
B, STEPS, N = 16, 12, 256  # per-rank batch; 12 steps = 1.5 epochs of 2 x 16 rows
KILL_AT = 6


# ---------------------------------------------------------------- models (test and worker)
def _arrays() -> tuple[torch.Tensor, torch.Tensor]:
    sim = simulators.get("two_moons")
    rng = np.random.default_rng(0)
    theta = sim.prior.sample(N + 64, rng)
    return torch.as_tensor(theta).double(), torch.as_tensor(sim.simulate(theta, rng)).double()


def _build(kind: str) -> torch.nn.Module:
    from surrogates.models import registry

    theta, x = _arrays()
    arch = (
        {"transforms": 2, "hidden": [16], "bins": 4}
        if kind == "flow"
        else {"hidden": [16, 16], "latent": 4, "n_critic": 2, "minibatch_std": 0}
    )
    model = registry.get(kind).for_dataset((theta.numpy(), x.numpy()), seed=0, device="cpu", **arch)
    return model.net.double()


def _row_noise(net: torch.nn.Module) -> None:
    """Latents and the penalty's ε as functions of the row (see the module notes)."""
    import surrogates.models.gan as gan

    w = torch.linspace(-2, 2, 2 * net.latent, dtype=torch.float64).view(2, net.latent)

    def draw_latent(n, c, generator, truncation=None):
        return torch.sin(3 * c[:, :2] @ w + 0.5)

    def penalty(critic, real, fake, c, *, generator=None):
        eps = torch.sigmoid(4 * real.sum(1, keepdim=True))
        y = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(y, c).sum(), y, create_graph=True)
        return ((grad.norm(dim=1) - 1) ** 2).mean()

    net.draw_latent = draw_latent
    gan.gradient_penalty = penalty


def _train(
    kind: str, batch: int, run: Path | None, *, max_steps=STEPS, resume=False, row_noise=False
):
    net = _build(kind)
    if row_noise:
        _row_noise(net)
    theta, x = _arrays()
    train = ArrayBatches(theta[:N], x[:N], batch_size=batch, seed=3)
    val = ArrayBatches(theta[N:], x[N:], batch_size=10, shuffle=False)
    monitor = "val_loss" if kind == "flow" else "val_energy_distance"
    config = TrainConfig(lr=1e-2, max_steps=max_steps, batch_size=batch, progress=False,
                         device="cpu", checkpoint_every=2, seed=5, monitor=monitor)  # fmt: skip
    trainer = Trainer(net, config)
    result = trainer.fit(train, val, run_dir=run, resume=resume)
    return net, result


# ---------------------------------------------------------------- the worker (torchrun)
def _audit(run: Path) -> list[str]:
    """Records write-opens, creations, renames and removals under ``run`` (rank 1)."""
    seen: list[str] = []
    root = str(run)
    write = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = os.fsdecode(args[0]), args[1], args[2]
            writing = (mode is not None and any(m in mode for m in "wax+")) or (
                mode is None and flags & write
            )
            if writing and path.startswith(root):
                seen.append(f"open {path}")
        elif event in ("os.rename", "os.replace", "os.remove", "os.mkdir", "os.rmdir"):
            if any(
                os.fsdecode(a).startswith(root) for a in args[:2] if isinstance(a, (str, bytes))
            ):
                seen.append(f"{event} {args[0]}")

    sys.addaudithook(hook)
    return seen


def _worker(mode: str, out: Path) -> None:
    from surrogates.training.distributed import init_from_env

    torch.set_num_threads(1)
    assert init_from_env()
    rank = torch.distributed.get_rank()
    runs = out / "runs"
    seen = _audit(runs) if rank else []
    results: dict[str, object] = {}

    def run(name, kind, **kw):
        net, result = _train(kind, B, runs / name, **kw)
        torch.save(net.state_dict(), out / f"{name}-rank{rank}.pt")
        results[name] = [r.get("val_loss") for r in result.history]

    if mode == "all":
        run("flow", "flow")
        run("gan", "gan")  # before gan_rows replaces the penalty for good
        run("gan_rows", "gan", row_noise=True)
    elif mode == "kill":
        import surrogates.training.distributed as d

        save = d.Seam.save

        def save_then_die(self, make_state, path):
            save(self, make_state, path)
            if json.loads(make_state()["counters"])["step"] >= KILL_AT:
                os._exit(17)  # both ranks, after the checkpoint at step 6: a kill

        d.Seam.save = save_then_die
        run("gan_resumed", "gan")
    else:
        run("gan_resumed", "gan", resume=True)
    (out / f"{mode}-rank{rank}.json").write_text(json.dumps({"history": results, "writes": seen}))
    torch.distributed.destroy_process_group()


def _torchrun(out: Path, mode: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(HERE), mode, str(out)]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ddp(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    done = _torchrun(out, "all")
    assert done.returncode == 0, done.stderr[-3000:]
    killed = _torchrun(out, "kill")
    assert killed.returncode != 0  # the kill
    resumed = _torchrun(out, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return out


def _weights(out: Path, name: str, rank: int) -> dict[str, torch.Tensor]:
    return torch.load(out / f"{name}-rank{rank}.pt", weights_only=True)


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


@pytest.mark.parametrize(("name", "kind", "row_noise"), [("flow", "flow", False),
                                                         ("gan_rows", "gan", True)])  # fmt: skip
def test_two_processes_equal_one_with_the_doubled_batch(ddp, name, kind, row_noise, monkeypatch):
    import surrogates.models.gan as gan

    monkeypatch.setattr(gan, "gradient_penalty", gan.gradient_penalty)  # restored after
    r0, r1 = _weights(ddp, name, 0), _weights(ddp, name, 1)
    assert _max_diff(r0, r1) == 0.0  # identical on both ranks
    net, result = _train(kind, 2 * B, None, row_noise=row_noise)
    assert result.steps == STEPS
    one = {k: v.detach() for k, v in net.state_dict().items()}
    assert _max_diff(r0, one) < 1e-6
    start = {k: v.detach() for k, v in _build(kind).state_dict().items()}
    assert _max_diff(r0, start) > 1e-3  # it trained
    if kind == "flow":  # validation is reduced over ranks: the one-process mean
        hist = json.loads((ddp / "all-rank0.json").read_text())["history"]["flow"]
        np.testing.assert_allclose(hist, [r["val_loss"] for r in result.history], rtol=1e-9)
        assert hist == json.loads((ddp / "all-rank1.json").read_text())["history"]["flow"]


def test_a_killed_run_resumes_to_the_uninterrupted_weights(ddp):
    for rank in (0, 1):
        assert _max_diff(_weights(ddp, "gan_resumed", rank), _weights(ddp, "gan", rank)) == 0.0
    assert _max_diff(_weights(ddp, "gan", 0), _weights(ddp, "gan", 1)) == 0.0


def test_only_rank_0_writes(ddp):
    for mode in ("all", "resume"):
        assert json.loads((ddp / f"{mode}-rank1.json").read_text())["writes"] == []
    files = sorted(p.name for p in (ddp / "runs" / "flow").iterdir())
    # rank 0's TensorBoard folder appears where tensorboard is installed
    assert [f for f in files if f != "tensorboard"] == ["metrics.csv", "trainer.ckpt"]


# ---------------------------------------------------------------- sharding, in one process
@pytest.mark.parametrize("n", [64, 70, 33])
def test_array_batches_shards_are_the_slices_of_the_global_batch(n):
    x = torch.arange(n).view(n, 1)
    one = list(ArrayBatches(x, batch_size=2 * B, seed=1))
    shards = []
    for r in range(2):
        a = ArrayBatches(x, batch_size=B, seed=1)
        a.shard(r, 2, equal=True)
        shards.append(list(a))
        assert len(shards[r]) == len(a)
    assert len(shards[0]) == len(shards[1])
    for g, b0, b1 in zip(one, *shards, strict=False):
        assert len(b0[0]) == len(b1[0])
        assert torch.equal(torch.cat([b0[0], b1[0]]), g[0][: 2 * len(b0[0])])


def _h5(path: Path, n: int, chunk: int) -> Path:
    simulators.generate(simulators.get("two_moons"), n, path, seed=0, chunk_size=chunk)
    return path


@pytest.mark.parametrize("workers", [1, 3])
def test_h5_shards_have_equal_batch_counts_and_disjoint_rows(tmp_path, monkeypatch, workers):
    import surrogates.data as data

    path = _h5(tmp_path / "m.h5", 1000, 70)  # 15 chunks: ranks read 8 and 7
    for epoch in range(3):
        counts, rows = [], []
        for rank in range(2):
            ds = data.H5Batches(path, batch_size=16, seed=2)
            ds.shard(rank, 2, equal=True)
            ds.set_epoch(epoch)
            got = []
            for w in range(workers):
                info = type("Info", (), {"id": w, "num_workers": workers})()
                monkeypatch.setattr(data, "get_worker_info", lambda info=info: info)
                got += list(ds)
            assert all(len(b[0]) == 16 for b in got)
            counts.append(len(got))
            rows.append({tuple(r) for b in got for r in b[0].tolist()})
        assert counts[0] == counts[1] > 0
        assert not rows[0] & rows[1]
        assert counts[0] * 2 * 16 > 0.8 * ds.n_rows  # little is dropped
    monkeypatch.setattr(data, "get_worker_info", lambda: None)
    for rank in range(2):  # validation shards drop nothing
        ds = data.H5Batches(path, split="val", batch_size=16, shuffle=False)
        ds.shard(rank, 2, equal=False)
        rows.append(sum(len(b[0]) for b in ds))
    assert rows[-1] + rows[-2] == ds.n_rows


def test_one_process_h5_batches_unchanged_by_the_sharding_code(tmp_path):
    import surrogates.data as data

    path = _h5(tmp_path / "m.h5", 500, 70)
    ds = data.H5Batches(path, batch_size=32, seed=1)
    ds.set_epoch(1)
    sharded = data.H5Batches(path, batch_size=32, seed=1)
    sharded.shard(0, 1)
    sharded.set_epoch(1)
    for a, b in zip(ds, sharded, strict=True):
        assert torch.equal(a[1], b[1])


def test_rank_seeds_differ_and_rank_0_keeps_the_seed():
    assert rank_seed(7, 0) == 7
    assert len({rank_seed(7, r) for r in range(8)}) == 8


# ---------------------------------------------------------------- sampling campaigns
SAMPLE_N = 50_000  # 5 chunks of 10,000 rows; the 1,000,000-shower run is a documented command


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    from surrogates.models import GAN

    root = tmp_path_factory.mktemp("campaign")
    like = root / "like.h5"
    simulators.generate(simulators.get("two_moons"), SAMPLE_N, like, seed=0)
    model = GAN.for_dataset(like, seed=0, device="cpu", hidden=[16, 16], latent=4)
    model.fit(like, max_steps=3, progress=False, device="cpu", run_dir=root / "run")
    return root


def _sample(root: Path, out: str, *extra: str) -> int:
    from surrogates.cli import main

    args = ["sample", str(root / "run"), "--like", str(root / "like.h5"), "--out",
            str(root / out), "--seed", "4", "--no-progress", *extra]  # fmt: skip
    return main(args)


def _rows(path: Path) -> tuple[bytes, bytes, dict]:
    with simulators.open_dataset(path) as d:
        meta = {k: v for k, v in d.meta.items() if k != "created"}
        return np.asarray(d.theta[:]).tobytes(), np.asarray(d.x[:]).tobytes(), meta


def test_a_killed_sample_campaign_resumes_to_the_same_file(campaign, monkeypatch):
    import simulators.generation as gen

    assert _sample(campaign, "whole.h5") == 0
    run_job, calls = gen._run_job, []

    def killed_after_two(job):
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C, or a kill: the finished parts stay
        calls.append(job.index)
        return run_job(job)

    monkeypatch.setattr(gen, "_run_job", killed_after_two)
    assert _sample(campaign, "resumed.h5") == 130
    assert not (campaign / "resumed.h5").exists()
    assert len(list((campaign / "resumed.h5.parts").glob("chunk-*.h5"))) == 2
    monkeypatch.setattr(gen, "_run_job", run_job)
    assert _sample(campaign, "resumed.h5", "--resume") == 0
    assert _rows(campaign / "resumed.h5") == _rows(campaign / "whole.h5")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _sample(campaign, "two.h5", "--workers", "2") == 0
    assert _rows(campaign / "two.h5") == _rows(campaign / "whole.h5")


def test_a_dask_sample_campaign_writes_the_same_file(campaign):
    distributed = pytest.importorskip("dask.distributed")
    if not (campaign / "whole.h5").exists():
        assert _sample(campaign, "whole.h5") == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster:
        assert _sample(campaign, "dask.h5", "--scheduler", cluster.scheduler_address) == 0
    assert _rows(campaign / "dask.h5") == _rows(campaign / "whole.h5")


if __name__ == "__main__":
    _worker(sys.argv[1], Path(sys.argv[2]))
