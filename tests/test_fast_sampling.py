"""The fast sampling path: the fused spline inverse is the packed spline's, and a flow sampled fast
draws what it draws in eager mode (float32) or nearly so (bfloat16 conditioners)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surrogates.models import Flow
from surrogates.models.flows.fast_sampling import rqs_inverse
from surrogates.models.flows.transforms import _PackedRQS


@pytest.mark.parametrize("bins", [2, 5, 8])
def test_spline_inverse_is_the_packed_splines(bins):
    g = torch.Generator().manual_seed(bins)
    phi = 2 * torch.randn(512, 7, 3 * bins - 1, generator=g, dtype=torch.float64)
    y = 3 * torch.randn(512, 7, generator=g, dtype=torch.float64)  # ~10% outside [-5, 5]
    bias = torch.randn(3 * bins - 1, 7, generator=g, dtype=torch.float64)
    phi_t = phi.transpose(1, 2).contiguous()
    ref = _PackedRQS(phi, bins)._inverse(y)
    got = rqs_inverse((phi_t - bias).movedim(1, 0), y, bins, bias[:, None])
    assert torch.allclose(got, ref, rtol=0, atol=1e-10)
    assert torch.equal(got[y.abs() > 5], y[y.abs() > 5])  # the identity outside
    assert torch.allclose(_PackedRQS(phi, bins)(got), y, rtol=0, atol=1e-9)
    # float32: round-off times the inverse slope, which reaches 1/s = 1000
    got32 = rqs_inverse(phi_t.float().movedim(1, 0), y.float(), bins)
    assert torch.allclose(got32.double(), ref, rtol=0, atol=1e-3)


def _model(kind: str) -> tuple[Flow, np.ndarray]:
    rng = np.random.default_rng(0)
    theta = rng.uniform(-1, 1, (300, 2))
    x = np.concatenate([theta, theta[:, :1] ** 2, theta[:, 1:] * theta[:, :1]], 1)
    x = x + 0.3 * rng.standard_normal(x.shape)
    model = Flow.for_dataset((theta, x), kind=kind, transforms=3, hidden=[32, 32], bins=6,
                             embedding=[8], device="cpu")  # fmt: skip
    return model.fit((theta, x), max_epochs=2, batch_size=64, progress=False), theta


def _draw(model: Flow, theta: np.ndarray) -> np.ndarray:
    return model.sample(theta, generator=torch.Generator().manual_seed(7))


# without a compiler the spline runs eagerly, with a warning: the samples are the same
COMPILE_FALLBACK = pytest.mark.filterwarnings("ignore:torch.compile failed:RuntimeWarning")


@COMPILE_FALLBACK
@pytest.mark.parametrize("kind", ["coupling", "two_stage"])
def test_fast_sampling_draws_the_eager_samples(kind):
    model, theta = _model(kind)
    eager = _draw(model, theta)
    f32 = _draw(model.fast_sampling("float32"), theta)  # compiled spline (or eager, with a warning)
    bf16 = _draw(model.fast_sampling("bfloat16"), theta)
    np.testing.assert_allclose(f32, eager, atol=1e-4)
    assert not np.array_equal(bf16, eager)  # the conditioners do run in bfloat16 ...
    assert np.abs(bf16 - eager).max() < 0.05 * eager.std()  # ... a small perturbation
    assert np.array_equal(_draw(model.fast_sampling(None), theta), eager)


@COMPILE_FALLBACK
def test_fast_sampling_follows_weight_changes_and_rejects_bad_precisions():
    model, theta = _model("coupling")
    model.fast_sampling("float32")
    before = _draw(model, theta)
    with torch.no_grad():  # an in-place update, as an optimizer step makes
        for p in model.net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    after = _draw(model, theta)
    assert not np.allclose(after, before, atol=1e-3)
    np.testing.assert_allclose(after, _draw(model.fast_sampling(None), theta), atol=1e-4)
    with pytest.raises(ValueError, match="precision"):
        model.fast_sampling("float16")


def test_flows_without_hidden_layers_are_sampled_eagerly():
    rng = np.random.default_rng(1)
    theta = rng.uniform(-1, 1, (200, 1))
    x = theta + 0.3 * rng.standard_normal((200, 3))
    model = Flow.for_dataset((theta, x), transforms=2, hidden=[], device="cpu")
    eager = _draw(model, theta)
    assert np.array_equal(_draw(model.fast_sampling(), theta), eager)
