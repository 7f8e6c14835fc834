"""Command line: `python -m gradwatch demo | experiment NAME | info`."""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gradwatch",
        description="gradwatch: fast CPU training of deep MLPs, with the gradient flow visible.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser(
        "demo", help="train deep MLPs on the bundled digits and show vanishing gradients",
        description="Train four deep MLPs on the bundled UCI digits (offline) and print per-layer "
                    "gradient norms and accuracy.",
    )
    demo.add_argument("--epochs", type=int, default=40, help="training epochs (default 40)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    commands.add_parser("info", help="print the build information of the compiled core")
    _add_experiment_parser(commands)
    return parser


def _add_experiment_parser(commands) -> None:
    from gradwatch.experiments import EXPERIMENTS
    from gradwatch.experiments.base import DATA_NAMES

    listing = "\n".join(f"  {name:<24} {_headline(function)}"
                        for name, function in EXPERIMENTS.items())
    experiment = commands.add_parser(
        "experiment", help="run one of the textbook experiments and print what it shows",
        description="Run one of the textbook experiments on vanishing gradients, print its "
                    "summary and, with --out, write its plot (needs matplotlib) and its data "
                    "(JSON).",
        epilog=f"experiments:\n{listing}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    experiment.add_argument("name", metavar="NAME", choices=list(EXPERIMENTS),
                            help="the experiment: " + ", ".join(EXPERIMENTS))
    experiment.add_argument("--data", choices=DATA_NAMES,
                            help="dataset of the experiments that train (default mnist; digits "
                                 "is bundled and needs no files)")
    experiment.add_argument("--data-dir", metavar="DIR",
                            help="folder with the MNIST / Fashion-MNIST files, or with their "
                                 "subfolders mnist/ and fashion-mnist/ (default: "
                                 "$GRADWATCH_DATA, else the user cache, where missing files are "
                                 "downloaded)")
    experiment.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    experiment.add_argument("--out", metavar="DIR",
                            help="write NAME.png (with matplotlib) and NAME.json into DIR")
    experiment.add_argument("--no-progress", action="store_true",
                            help="no progress bars (they need tqdm)")
    experiment.set_defaults(subparser=experiment)


def _headline(function) -> str:
    """The first sentence of a docstring, up to its first parenthesis."""
    paragraph = inspect.getdoc(function).split("\n\n")[0]
    return " ".join(paragraph.split()).split(" (")[0].split(". ")[0].rstrip(".")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _run_experiment(args) -> int:
    from gradwatch.datasets import DatasetError
    from gradwatch.experiments import EXPERIMENTS

    parser = args.subparser
    function = EXPERIMENTS[args.name]
    accepted = inspect.signature(function).parameters
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    for option, key in (("--data", "data"), ("--data-dir", "data_dir")):
        if getattr(args, key) is not None and key not in accepted:
            parser.error(f"experiment {args.name} takes no {option} (it uses no dataset)")
    if args.data == "digits" and args.data_dir is not None:
        parser.error("--data-dir is for --data mnist or fashion; digits is bundled")
    options = {"data": args.data, "data_dir": args.data_dir, "seed": args.seed,
               "progress": not args.no_progress}
    kwargs = {key: value for key, value in options.items()
              if key in accepted and value is not None}
    try:
        result = function(**kwargs)
        print(result.summary())
        if args.out is None:
            print("\n(--out DIR writes the plot and the data)")
            return 0
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        data_path = out / f"{args.name}.json"
        data_path.write_text(json.dumps(result.to_dict()))
        print(f"\ndata written to {data_path}")
        try:
            print(f"plot written to {result.plot(out / f'{args.name}.png')}")
        except ImportError as error:
            print(f"no plot: {error}")
    except (OSError, DatasetError) as error:
        # A missing or damaged dataset, no network, an unwritable --out: the user's to fix.
        print(f"{parser.prog}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        if args.epochs < 1:
            parser.error("--epochs must be >= 1")
        from gradwatch.demo import run_demo

        run_demo(epochs=args.epochs, seed=args.seed)
    elif args.command == "info":
        import gradwatch

        for key, value in gradwatch.build_info().items():
            print(f"{key}: {value}")
    elif args.command == "experiment":
        return _run_experiment(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
