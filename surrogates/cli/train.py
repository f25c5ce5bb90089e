"""``surrogates train``: fit a surrogate on a dataset file into a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from simulators.errors import UserError

from ..models.registry import FAMILIES

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    families = "; ".join(f"{k}: {v[2]}" for k, v in sorted(FAMILIES.items()))
    p = sub.add_parser(
        "train",
        help="train a surrogate on a dataset file",
        description="Train a conditional surrogate p(x | theta) on F.h5 (streamed; a validation "
        "split is held out). RUN/ receives checkpoints, metrics.csv and the model; --resume "
        f"continues an interrupted run exactly. Families: {families}.",
    )
    p.add_argument("model", choices=sorted(FAMILIES), help="model family")
    p.add_argument("--data", type=Path, required=True, help="training dataset (.h5)")
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
    p.add_argument("--epochs", type=int, default=50, help="maximum epochs (default 50)")
    p.add_argument("--max-steps", type=int, help="maximum optimizer steps")
    p.add_argument("--batch-size", type=int, default=256, help="rows per batch (default 256)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (default 1e-3)")
    p.add_argument("--patience", type=int, default=10, help="early-stopping patience (validations)")
    p.add_argument(
        "--ema",
        type=float,
        help="validate and save a moving average of the weights, decay per step (e.g. 0.99)",
    )
    p.add_argument("--val-every", type=int, help="validate every N steps (default: each epoch)")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps")
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--amp", action="store_true", help="bfloat16 mixed precision (CUDA only)")
    p.add_argument("--seed", type=int, default=0, help="initialization and shuffling seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import simulators

    from ..checkpoint import CONFIG
    from ..models import registry
    from ..training import CHECKPOINT, TrainConfig

    cls = registry.get(args.model)
    arch = cls.Arch.parse(args.arch)  # a wrong key or type fails here, before any work
    out: Path = args.out
    if not args.data.is_file():
        raise UserError(f"--data {args.data} does not exist")
    if not args.resume and (out / CHECKPOINT).exists():
        raise UserError(f"{out} already holds a training run; pass --resume or another --out")
    train = {
        "max_epochs": args.epochs, "max_steps": args.max_steps, "batch_size": args.batch_size,
        "lr": args.lr, "patience": args.patience, "ema": args.ema, "val_every": args.val_every,
        "checkpoint_every": args.checkpoint_every, "num_workers": args.workers, "amp": args.amp,
        "seed": args.seed, "device": args.device, "progress": not args.no_progress, "verbose": True,
    }  # fmt: skip
    try:
        TrainConfig(**train)  # bad settings fail here, before anything is written
        data = simulators.open_dataset(args.data)
        data.close()
        if args.resume and (out / CONFIG).exists():
            model = cls.load(out, device=args.device)
        else:
            model = cls.for_dataset(args.data, seed=args.seed, device=args.device, **arch)
            model.save(out)  # the preprocessing and architecture, so --resume can rebuild it
        model.fit(args.data, run_dir=out, resume=args.resume, **train)
    except ValueError as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(str(exc).splitlines()[0]) from None
    r = model.result
    best = f"{r.best_val_loss:.4f}" if r and r.best_val_loss is not None else "n/a"
    print(f"model saved to {out}/ (best validation loss {best}); sample with: "
          f"surrogates sample {out} --like {args.data} --out SAMPLE.h5")  # fmt: skip
    return 0
