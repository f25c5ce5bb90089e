"""The trainer's step context and protocols: several optimizers and logged quantities, the
monitored validation quantity, the scope of the weight average, clipping and the non-finite
skip in a model's own step."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from torch import nn

from simulators.errors import UserError
from surrogates.training import METRICS, ArrayBatches, TrainConfig, Trainer

CFG = {"progress": False, "device": "cpu", "schedule": "none"}


class TwoPlayers(nn.Module):
    """Two parameters with their own optimizers and losses, a third quantity logged."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1))
        self.b = nn.Parameter(torch.zeros(1))

    def configure_optimizers(self, config):
        return [torch.optim.SGD([self.a], lr=config.lr), torch.optim.SGD([self.b], lr=config.lr)]

    def train_step(self, batch, ctx):
        opt_a, opt_b = ctx.optimizers
        la = ((batch[0] - self.a) ** 2).mean()
        if ctx.backward(la, opt_a):
            ctx.step(opt_a)
        lb = ((batch[0] + self.b) ** 2).mean()
        if ctx.backward(lb, opt_b):
            ctx.step(opt_b)
        ctx.log_dict({"loss_a": la.detach(), "loss_b": lb.detach(), "gap": (self.a - self.b)})

    def validation_metrics(self, batch, *, generator=None):
        return {"dist_a": (batch[0] - self.a).abs().mean()}


def test_two_optimizers_log_three_quantities(tmp_path):
    data = ArrayBatches(torch.full((8, 1), 2.0), batch_size=4)
    val = ArrayBatches(torch.full((4, 1), 2.0), batch_size=4, shuffle=False)
    model = TwoPlayers()
    r = Trainer(model, lr=0.1, max_steps=6, val_every=2, monitor="val_dist_a", **CFG).fit(
        data, val, run_dir=tmp_path
    )
    with open(tmp_path / METRICS) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for col in ("loss_a", "loss_b", "gap", "val_dist_a", "lr"):
        assert col in rows[0]
    # every logged value is the mean over its interval: steps 1-2 of plain gradient descent
    a = [0.0]
    for _ in range(6):
        a.append(a[-1] + 0.1 * 2 * (2 - a[-1]))
    want = ((2 - a[0]) ** 2 + (2 - a[1]) ** 2) / 2
    assert float(rows[0]["loss_a"]) == pytest.approx(want, rel=1e-5)
    assert float(rows[-1]["val_dist_a"]) == pytest.approx(2 - a[6], rel=1e-5)
    assert r.best_step == 6 and r.best_val_loss == pytest.approx(2 - a[6], rel=1e-5)
    assert model.a.item() == pytest.approx(a[6], rel=1e-5)


def test_unknown_monitor_is_one_clear_error():
    data = ArrayBatches(torch.ones(8, 1), batch_size=4)
    with pytest.raises(UserError, match="val_dist_a"):
        Trainer(TwoPlayers(), lr=0.1, max_steps=2, **CFG).fit(data, data)


class Noisy(nn.Module):
    """A loss that rises from the start, so a monitored loss would stop training at once."""

    def __init__(self):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(1))

    def configure_optimizers(self, config):
        return [torch.optim.SGD([self.m], lr=config.lr)]

    def loss(self, batch, *, generator=None):
        return ((batch[0] - self.m) ** 2).mean()


def test_monitor_none_never_stops_early():
    data = ArrayBatches(torch.ones(8, 1), batch_size=8)
    val = ArrayBatches(torch.full((8, 1), -5.0), batch_size=8, shuffle=False)  # always worse
    kw = {**CFG, "lr": 0.1, "max_steps": 30, "val_every": 1, "patience": 2}
    stopped = Trainer(Noisy(), **kw).fit(data, val)
    assert stopped.stopped_early and stopped.steps == 3
    model = Noisy()
    free = Trainer(model, **kw, monitor=None).fit(data, val)
    assert not free.stopped_early and free.steps == 30 and free.best_val_loss is None
    assert model.m.item() == pytest.approx(1 - 0.8**30, rel=1e-5)  # the last weights


class Monitored(Noisy):
    """Its loss keeps falling while its validation metric (distance to 0.5) turns around."""

    def validation_metrics(self, batch, *, generator=None):
        return {"dist": (self.m - 0.5).abs().sum()}


@pytest.mark.parametrize("mode", ["min", "max"])
def test_validation_metrics_drive_early_stopping(mode):
    data = ArrayBatches(torch.ones(8, 1), batch_size=8)
    model = Monitored()
    r = Trainer(model, **CFG, lr=0.1, max_steps=50, val_every=1, patience=3,
                monitor="val_dist", mode=mode).fit(data, data)  # fmt: skip
    m = [1 - 0.8**t for t in range(1, 51)]
    dist = [abs(v - 0.5) for v in m]
    if mode == "min":
        best = min(range(50), key=lambda t: dist[t])  # m closest to 0.5: step 4
        assert r.best_step == best + 1 and r.steps == best + 1 + 3
        assert model.m.item() == pytest.approx(m[best], rel=1e-5)  # best weights restored
        assert r.best_val_loss == pytest.approx(dist[best], rel=1e-5)
    else:  # the distance first falls, so the first validation is the best
        assert r.best_step == 1 and r.steps == 4
    assert "val_loss" in r.history[0] and "val_dist" in r.history[0]


class Pair(nn.Module):
    """Two identical submodules of which only the first is averaged."""

    def __init__(self):
        super().__init__()
        self.g = nn.Linear(1, 1, bias=False)
        self.d = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.g.weight.zero_()
            self.d.weight.zero_()

    def configure_optimizers(self, config):
        return [torch.optim.SGD(self.parameters(), lr=config.lr)]

    def loss(self, batch, *, generator=None):
        return ((batch[0] - self.g.weight) ** 2).mean() + ((batch[0] - self.d.weight) ** 2).mean()

    def ema_modules(self):
        return [self.g]


def test_ema_modules_restrict_the_average():
    data = ArrayBatches(torch.full((8, 1), 3.0), batch_size=8)
    module = Pair()
    cfg = {**CFG, "lr": 0.25, "max_steps": 6, "clip_grad": None}
    Trainer(module, ema=0.2, **cfg).fit(data)
    avg = 0.0
    lives = []
    for t in range(6):
        live_t = 3 * (1 - 0.5 ** (t + 1))
        lives.append(live_t)
        d = min(0.2, (1 + t) / (10 + t))
        avg = d * avg + (1 - d) * live_t
    assert module.g.weight.item() == pytest.approx(avg, rel=1e-6)  # averaged
    assert module.d.weight.item() == pytest.approx(lives[-1], rel=1e-6)  # live


class Spiky(nn.Module):
    """A custom step whose loss is inf on some batches and whose gradient is huge on others."""

    def __init__(self):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(1))

    def configure_optimizers(self, config):
        return [torch.optim.SGD([self.m], lr=config.lr)]

    def train_step(self, batch, ctx):
        (opt,) = ctx.optimizers
        loss = (batch[0] * self.m).sum()  # gradient = sum of the batch
        if ctx.backward(loss, opt):
            self.grads.append(self.m.grad.item())
            ctx.step(opt)
        ctx.log("train_loss", loss)


def test_clipping_and_nonfinite_skip_apply_to_a_custom_step():
    x = torch.tensor([[100.0], [math.inf], [-0.5], [math.nan]])
    module = Spiky()
    module.grads = []
    r = Trainer(module, **CFG, lr=1.0, max_steps=4, clip_grad=2.0).fit(
        ArrayBatches(x, batch_size=1, shuffle=False)
    )
    assert module.grads == pytest.approx([2.0, -0.5])  # 100 clipped to 2; -0.5 under the bound
    assert r.skipped == 2 and r.steps == 4
    assert module.m.item() == pytest.approx(-1.5)
    assert math.isfinite(r.history[-1]["train_loss"])  # the mean leaves non-finite values out


def test_a_module_without_loss_or_step_is_rejected():
    with pytest.raises(TypeError, match="neither loss"):
        Trainer(nn.Linear(1, 1), **CFG)


def test_bad_mode_is_rejected():
    with pytest.raises(UserError):
        TrainConfig(mode="up")
