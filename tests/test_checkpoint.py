"""Checkpoints: safetensors + JSON, atomic, and one clear error for anything wrong."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch

from surrogates.checkpoint import (
    CheckpointError,
    atomic_write,
    load_model,
    load_state,
    save_model,
    save_state,
)


def saved(tmp_path):
    sd = {"a.weight": torch.arange(6.0).reshape(2, 3), "b": torch.ones(3, dtype=torch.float64)}
    digest = save_model(tmp_path, model_type="flow", config={"k": [1, 2]}, state_dict=sd)
    return sd, digest


def test_round_trip_is_exact(tmp_path):
    sd, digest = saved(tmp_path)
    config, back = load_model(tmp_path, model_type="flow")
    assert config == {"k": [1, 2]} and len(digest) == 64
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    assert back["b"].dtype == torch.float64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_other_model_type_is_one_clear_error(tmp_path):
    saved(tmp_path)
    with pytest.raises(CheckpointError, match="holds a 'flow' model, not 'gan'"):
        load_model(tmp_path, model_type="gan")


def test_other_format_version_is_one_clear_error(tmp_path):
    saved(tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="format version 99 is not supported"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["model.safetensors", "model.json"])
def test_truncated_files_are_one_clear_error(tmp_path, name):
    saved(tmp_path)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(tmp_path)


def test_missing_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no saved model here"):
        load_model(tmp_path)
    assert issubclass(CheckpointError, ValueError)


def test_trainer_state_round_trip_and_truncation(tmp_path):
    state = {
        "format_version": 1,
        "model": {"w": torch.randn(3)},
        "optimizers": [{"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]}],
        "generator": torch.Generator().get_state(),
        "counters": "{}",
        "config": "json",
        "nested": [{"x": torch.zeros(2)}],
    }
    save_state(state, tmp_path / "t.ckpt")
    back = load_state(tmp_path / "t.ckpt")
    assert torch.equal(back["model"]["w"], state["model"]["w"]) and back["config"] == "json"
    assert torch.equal(back["nested"][0]["x"], torch.zeros(2))
    raw = (tmp_path / "t.ckpt").read_bytes()
    (tmp_path / "t.ckpt").write_bytes(raw[:100])
    with pytest.raises(CheckpointError, match="not a readable trainer checkpoint"):
        load_state(tmp_path / "t.ckpt")


def test_pickled_objects_are_refused(tmp_path):
    # weights_only loading: an arbitrary Python object is not executed or accepted
    torch.save({"format_version": 1, "obj": Fraction(1, 3)}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError):
        load_state(tmp_path / "evil.ckpt")


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    atomic_write(target, b"old")

    def boom(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, b"new contents")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary left behind
