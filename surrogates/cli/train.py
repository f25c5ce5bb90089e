"""``surrogates train``: fit a surrogate on a dataset file into a run directory.

Started by ``torchrun --nproc-per-node N -m surrogates train ...`` it trains on N processes
(DDP, see :mod:`surrogates.training.distributed`): every process checks the arguments and
builds the model, rank 0 alone writes and prints.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simulators.errors import UserError

from ..models.registry import FAMILIES

__all__ = ["add_parser", "run"]


#: TrainConfig field -> (argparse dest, flag); every flag defaults to None, so that a flag given
#: (to check against a resumed run's stored value) is told apart from one left out
_TRAIN_FLAGS = {
    "max_epochs": ("epochs", "--epochs"), "max_steps": ("max_steps", "--max-steps"),
    "batch_size": ("batch_size", "--batch-size"), "lr": ("lr", "--lr"),
    "patience": ("patience", "--patience"), "ema": ("ema", "--ema"),
    "val_every": ("val_every", "--val-every"),
    "checkpoint_every": ("checkpoint_every", "--checkpoint-every"),
    "num_workers": ("workers", "--workers"), "amp": ("amp", "--amp"), "seed": ("seed", "--seed"),
    "drop_nonfinite": ("drop_nonfinite", "--drop-nonfinite"),
}  # fmt: skip


def add_parser(sub: argparse._SubParsersAction) -> None:
    families = "; ".join(f"{k}: {v[2]}" for k, v in sorted(FAMILIES.items()))
    p = sub.add_parser(
        "train",
        help="train a surrogate on a dataset file",
        description="Train a conditional surrogate p(x | theta) on F.h5 (streamed; a validation "
        "split is held out). RUN/ receives checkpoints, metrics.csv and the model; --resume "
        "continues an interrupted run exactly, with the settings and dataset it was started "
        f"with (flags left out take the stored values). Families: {families}.",
    )
    p.add_argument("model", choices=sorted(FAMILIES), help="model family")
    p.add_argument("--data", type=Path, help="training dataset (.h5); with --resume: the run's")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--arch",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an architecture setting of the family (repeatable), e.g. --arch kind=coupling "
        "--arch hidden=128,128; see the family's Arch class (e.g. surrogates.FlowArch)",
    )
    p.add_argument("--epochs", type=int, help="maximum epochs (default 50)")
    p.add_argument("--max-steps", type=int, help="maximum optimizer steps")
    p.add_argument("--batch-size", type=int, help="rows per batch (default 256)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 1e-3; gan 1e-4)")
    p.add_argument("--patience", type=int, help="early-stopping patience (validations, default 10)")
    p.add_argument(
        "--ema",
        type=float,
        help="validate and save a moving average of the weights, decay per step (e.g. 0.99)",
    )
    p.add_argument("--val-every", type=int, help="validate every N steps (default: each epoch)")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps")
    p.add_argument("--workers", type=int, help="data-loading worker processes (default 0)")
    p.add_argument("--amp", action="store_true", default=None, help="bfloat16 autocast (CUDA)")
    p.add_argument("--seed", type=int, help="initialization and shuffling seed (default 0)")
    p.add_argument(
        "--drop-nonfinite",
        action="store_true",
        default=None,
        help="skip rows holding NaN/inf (and say how many) instead of refusing the file",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _label(key: str, value: Any) -> str:
    """A setting as the command line spells it: ``--max-steps 80``, ``--amp``."""
    flag = _TRAIN_FLAGS.get(key, (None, None))[1]
    if flag is None:
        return f"{key}={value!r}"
    if isinstance(value, bool):
        return flag if value else f"no {flag}"
    return f"{flag} {value}"


def run(args: argparse.Namespace) -> int:
    import torch.distributed as dist

    from ..training.distributed import init_from_env

    opened = init_from_env() and dist.is_initialized()
    try:
        return _run(args)
    finally:
        if opened:
            dist.destroy_process_group()


def _run(args: argparse.Namespace) -> int:
    from simulators.dataset import check_dataset
    from simulators.outputs import check_output_location

    from ..checkpoint import CONFIG
    from ..models import registry
    from ..training import CHECKPOINT, TrainConfig
    from ..training.distributed import Seam, is_main_process
    from ..training.resume import check_data, merge_settings, read_run

    cls = registry.get(args.model)
    arch = cls.Arch.parse(args.arch)  # a wrong key or type fails here, before any work
    out: Path = args.out
    given = {k: getattr(args, dest) for k, (dest, _) in _TRAIN_FLAGS.items()
             if getattr(args, dest) is not None}  # fmt: skip
    drop = given.pop("drop_nonfinite", None)
    main = is_main_process()
    given.update(device=args.device, progress=not args.no_progress, verbose=main)
    stored = None
    if args.resume:  # the run's stored settings and dataset, before any work
        stored = read_run(out)
        if not (out / CONFIG).is_file():
            raise UserError(f"{out} holds a trainer checkpoint but no {CONFIG}: a run not "
                            "started by `surrogates train` cannot be resumed by it")  # fmt: skip
        fields = TrainConfig.__dataclass_fields__
        train = merge_settings({k: v for k, v in stored.settings.items() if k in fields}, given,
                               source=str(out), label=_label)  # fmt: skip
        record = stored.data or {}
        flag = {} if drop is None else {"drop_nonfinite": drop}
        drop = merge_settings({"drop_nonfinite": bool(record.get("drop_nonfinite"))}, flag,
                              source=str(out), label=_label)["drop_nonfinite"]  # fmt: skip
        data = args.data or (Path(record["path"]) if record.get("path") else None)
        if data is None:
            raise UserError(f"pass --data: the run in {out} records no dataset")
    else:
        if args.data is None:
            raise UserError("--data is required: the training dataset (.h5)")
        if (out / CHECKPOINT).exists():
            raise UserError(f"{out} already holds a training run; pass --resume or another --out")
        train, data, drop = given, args.data, bool(drop)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a run folder")
    check_output_location(out, kind="folder", overwrite=True, parents=True)
    if not data.is_file():
        raise UserError(f"--data {data} does not exist" if not data.exists()
                        else f"--data {data} is not a file")  # fmt: skip
    try:
        TrainConfig(**train)  # bad settings fail here, before anything is written
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    check = check_dataset(data, "drop" if drop else "refuse")  # the input gate
    if stored is not None:
        record = {"path": str(data), **check.fingerprint, "drop_nonfinite": drop}
        check_data(stored.data, record, source=str(out), label=_label)
    try:
        if stored is not None:
            model = cls.load(out, device=args.device)
            _check_arch(model, arch, out)
        else:
            model = cls.for_dataset(data, seed=train.get("seed", 0), device=args.device,
                                    drop_nonfinite=drop, **arch)  # fmt: skip
            if main:  # the preprocessing and architecture, so --resume can rebuild it
                model.save(out)
            Seam(model.device).barrier()
        if check.n_dropped and main:
            print(f"--drop-nonfinite: skipping {check.n_dropped} of {check.n} rows of {data} "
                  "holding NaN/inf", flush=True)  # fmt: skip
        model.fit(data, run_dir=out, resume=args.resume, drop_nonfinite=drop, **train)
    except ValueError as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(str(exc).splitlines()[0]) from None
    except OSError as exc:  # a full disk, a read-only folder: what was checkpointed is kept
        then = "continue with --resume" if (out / CHECKPOINT).is_file() else "run it again"
        raise UserError(f"cannot write to {exc.filename or out}: {exc.strerror or exc}; once "
                        f"fixed, {then}") from None  # fmt: skip
    r = model.result
    if not main:
        return 0
    best = f"{r.best_val_loss:.4f}" if r and r.best_val_loss is not None else "n/a"
    print(f"model saved to {out}/ (best validation loss {best}); sample with: "
          f"surrogates sample {out} --like {data} --out SAMPLE.h5")  # fmt: skip
    return 0


def _check_arch(model: Any, arch: dict[str, Any], out: Path) -> None:
    """Refuses an ``--arch`` setting given again on resume that disagrees with the run's."""
    if not arch:
        return
    wanted = type(model).Arch.for_data(model.data_kind).replace(**arch).to_dict()
    for key in arch:
        if wanted[key] != model.arch.get(key):
            raise UserError(
                f"--arch {key}={wanted[key]} disagrees with the value the run in {out} was "
                f"started with ({key}={model.arch.get(key)}); leave it out to continue the run"
            )
