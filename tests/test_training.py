"""The shared trainer: exact resume after an interruption or a SIGKILL, early stopping."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from surrogates.checkpoint import CheckpointError
from surrogates.models import Flow
from surrogates.models.flows import KINDS
from surrogates.training import CHECKPOINT, METRICS, ArrayBatches, TrainConfig, Trainer

REPO = Path(__file__).resolve().parents[1]


def flow_and_data(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    theta = torch.tensor(rng.uniform(-1, 1, (96, 2)), dtype=torch.float32)
    x = torch.cat([theta, theta[:, :1] ** 2], 1) + 0.3 * torch.randn(
        96, 3, generator=torch.Generator().manual_seed(seed)
    )
    model = Flow.for_dataset((theta.numpy(), x.numpy()), kind=kind, transforms=2, hidden=[16],
                             bins=4, device="cpu")  # fmt: skip
    return (
        model,
        ArrayBatches(theta[:80], x[:80], batch_size=16, seed=3),
        ArrayBatches(theta[80:], x[80:], batch_size=16, shuffle=False),
    )


class Interrupt(Exception):
    pass


class StopAfter:
    """Yields the batches of ``inner``; raises after ``n`` of them in total (a simulated kill)."""

    def __init__(self, inner, n):
        self.inner, self.n, self.seen = inner, n, 0

    def set_epoch(self, epoch):
        self.inner.set_epoch(epoch)

    def __len__(self):
        return len(self.inner)

    def __iter__(self):
        for batch in self.inner:
            if self.seen == self.n:
                raise Interrupt
            self.seen += 1
            yield batch


CFG = {"lr": 3e-3, "max_steps": 17, "checkpoint_every": 3, "val_every": 4, "patience": None,
       "progress": False, "device": "cpu", "warmup": 2}  # fmt: skip


def params(module):
    return torch.cat([p.detach().flatten() for p in module.state_dict().values()])


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("kind", KINDS)
def test_resume_after_interruption_matches_uninterrupted_run(kind, tmp_path):
    model, train, val = flow_and_data(kind)
    Trainer(model.net, TrainConfig(**CFG)).fit(train, val, run_dir=tmp_path / "a")
    want = params(model.net)

    model, train, val = flow_and_data(kind)
    with pytest.raises(Interrupt):
        Trainer(model.net, TrainConfig(**CFG)).fit(StopAfter(train, 8), val, run_dir=tmp_path / "b")
    model, train, val = flow_and_data(kind)  # a fresh process would rebuild the model like this
    result = Trainer(model.net, TrainConfig(**CFG)).fit(
        train, val, run_dir=tmp_path / "b", resume=True
    )
    assert result.steps == 17 and result.epochs == 3  # 5 batches per epoch
    assert torch.equal(params(model.net), want)
    # and the tracking is the same as if nothing had happened
    assert read_csv(tmp_path / "a" / METRICS) == read_csv(tmp_path / "b" / METRICS)


def test_resume_with_a_weight_average_matches_uninterrupted_run(tmp_path):
    cfg = {**CFG, "ema": 0.9}
    model, train, val = flow_and_data(KINDS[0])
    a = Trainer(model.net, TrainConfig(**cfg)).fit(train, val, run_dir=tmp_path / "a")
    want = params(model.net)
    model, train, val = flow_and_data(KINDS[0])
    with pytest.raises(Interrupt):
        Trainer(model.net, TrainConfig(**cfg)).fit(StopAfter(train, 10), val, tmp_path / "b")
    model, train, val = flow_and_data(KINDS[0])
    b = Trainer(model.net, TrainConfig(**cfg)).fit(train, val, run_dir=tmp_path / "b", resume=True)
    assert torch.equal(params(model.net), want) and a.history == b.history
    # a checkpoint written without the average cannot continue a run that keeps one
    model, train, val = flow_and_data(KINDS[0])
    with pytest.raises(Interrupt):
        Trainer(model.net, TrainConfig(**CFG)).fit(StopAfter(train, 10), val, tmp_path / "c")
    with pytest.raises(CheckpointError, match="ema"):
        Trainer(model.net, TrainConfig(**cfg)).fit(train, val, run_dir=tmp_path / "c", resume=True)


def test_resume_after_sigkill_of_a_real_process_matches(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r}); sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_training import flow_and_data, CFG
        from surrogates.training import Trainer, TrainConfig

        class Slow:
            def __init__(self, inner): self.inner = inner
            def set_epoch(self, e): self.inner.set_epoch(e)
            def __len__(self): return len(self.inner)
            def __iter__(self):
                for b in self.inner:
                    time.sleep(0.15)
                    yield b

        model, train, val = flow_and_data("coupling")
        cfg = dict(CFG, checkpoint_every=1, max_steps=40)
        Trainer(model.net, TrainConfig(**cfg)).fit(Slow(train), val, run_dir=sys.argv[1])
        """
    )
    run_dir = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script, str(run_dir)], env=env)
    try:
        deadline = time.time() + 120
        while (
            not (run_dir / CHECKPOINT).exists() and time.time() < deadline and proc.poll() is None
        ):
            time.sleep(0.05)
        time.sleep(0.5)  # a few more steps and checkpoints, then a kill at an arbitrary moment
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    cfg = dict(CFG, checkpoint_every=1, max_steps=40)
    model, train, val = flow_and_data("coupling")
    Trainer(model.net, TrainConfig(**cfg)).fit(train, val, run_dir=run_dir, resume=True)
    got = params(model.net)
    model, train, val = flow_and_data("coupling")
    Trainer(model.net, TrainConfig(**cfg)).fit(train, val, run_dir=tmp_path / "clean")
    assert torch.equal(got, params(model.net))


class Mean(nn.Module):
    """loss = mean (x - m)²: the optimum is the mean of the data."""

    def __init__(self):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(1))

    def loss(self, batch, *, generator=None):
        return ((batch[0] - self.m) ** 2).mean()


def test_early_stopping_restores_the_best_weights(tmp_path):
    # training pulls m towards 3, validation prefers 0: the best validation is the first one
    train = ArrayBatches(torch.full((64, 1), 3.0), batch_size=16)
    val = ArrayBatches(torch.zeros(8, 1), batch_size=8, shuffle=False)
    module = Mean()
    cfg = TrainConfig(
        lr=0.05,
        max_epochs=100,
        patience=3,
        val_every=2,
        schedule="none",
        progress=False,
        device="cpu",
    )
    result = Trainer(module, cfg).fit(train, val, run_dir=tmp_path)
    assert result.stopped_early and result.steps == 8 and result.best_step == 2
    assert module.m.detach().item() ** 2 == pytest.approx(result.best_val_loss, rel=1e-6)
    rows = read_csv(tmp_path / METRICS)
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8]
    assert float(rows[0]["val_loss"]) == pytest.approx(result.best_val_loss)


def test_plateau_halves_the_rate_and_stops_at_its_floor():
    # validation never improves after the first check; without patience the rate halves after
    # every bad validation, and the halving below lr / 4 stops the run instead
    train = ArrayBatches(torch.full((64, 1), 3.0), batch_size=16)
    val = ArrayBatches(torch.zeros(8, 1), batch_size=8, shuffle=False)
    cfg = {"lr": 0.05, "max_epochs": 3, "patience": None, "val_every": 1, "schedule": "plateau",
           "progress": False, "device": "cpu"}  # fmt: skip
    free = Trainer(Mean(), TrainConfig(**cfg)).fit(train, val)
    floored = Trainer(Mean(), TrainConfig(**cfg, min_lr_factor=0.25)).fit(train, val)
    assert [r["lr"] for r in free.history[:4]] == pytest.approx([0.05, 0.05, 0.025, 0.0125])
    assert not free.stopped_early and free.steps == 12
    assert floored.stopped_early and floored.steps == 4
    assert [r["lr"] for r in floored.history] == [r["lr"] for r in free.history[:4]]


def test_trainer_converges_without_validation():
    data = ArrayBatches(torch.full((64, 1), 3.0), batch_size=16)
    module = Mean()
    result = Trainer(module, lr=0.1, max_epochs=60, progress=False, device="cpu").fit(data)
    assert module.m.detach().item() == pytest.approx(3.0, abs=1e-2) and result.steps == 240


def test_weight_average_is_what_training_returns():
    # plain gradient descent on (m - 3)²: m_t = 3 (1 - 0.5^t), and the average follows it with
    # the decay min(ema, (1 + t) / (10 + t)) of step t
    class SGDMean(Mean):
        def configure_optimizers(self, config):
            return [torch.optim.SGD([self.m], lr=config.lr)]

    module = SGDMean()
    cfg = {"lr": 0.25, "max_steps": 6, "schedule": "none", "clip_grad": None, "progress": False,
           "device": "cpu"}  # fmt: skip
    Trainer(module, ema=0.2, **cfg).fit(ArrayBatches(torch.full((8, 1), 3.0), batch_size=8))
    avg = 0.0
    for t in range(6):
        d = min(0.2, (1 + t) / (10 + t))
        avg = d * avg + (1 - d) * 3 * (1 - 0.5 ** (t + 1))
    assert module.m.item() == pytest.approx(avg, rel=1e-6)
    assert module.m.item() < 3 * (1 - 0.5**6) - 0.01  # not the last weights


def test_learning_rate_warmup_and_cosine():
    t = Trainer(
        Mean(), lr=1.0, warmup=4, max_steps=100, schedule="cosine", progress=False, device="cpu"
    )
    t._total_steps = 100
    factors = []
    for step in (0, 1, 3, 50, 99):
        t.step = step
        factors.append(t.lr_factor())
    cos = [0.5 * (1 + math.cos(math.pi * t)) for t in (0.0, 0.01, 0.03, 0.5, 0.99)]
    want = [0.25 * cos[0], 0.5 * cos[1], 1.0 * cos[2], cos[3], cos[4]]
    assert factors == pytest.approx(want)


def test_custom_train_step_hook_is_used():
    class Two(Mean):
        def configure_optimizers(self, config):
            return [
                torch.optim.SGD([self.m], lr=config.lr),
                torch.optim.SGD([self.m], lr=config.lr),
            ]

        def train_step(self, batch, ctx):
            for opt in ctx.optimizers:
                loss = self.loss(batch)
                if ctx.backward(loss, opt):
                    ctx.step(opt)
            self.calls = getattr(self, "calls", 0) + 1
            ctx.log("train_loss", loss)

    module = Two()
    Trainer(module, lr=0.1, max_steps=5, progress=False, device="cpu").fit(
        ArrayBatches(torch.ones(32, 1), batch_size=8)
    )
    assert module.calls == 5 and 0 < module.m.detach().item() < 1


@pytest.mark.parametrize(
    "bad",
    [
        {"optimizer": "sgd"},
        {"schedule": "step"},
        {"lr": 0},
        {"max_steps": 0},
        {"num_workers": -1},
        {"min_lr_factor": 0},
        {"ema": 1.0},
        {"ema": 0},
    ],
)
def test_bad_config_is_rejected(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)
