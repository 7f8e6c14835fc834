"""Command line: `python -m gradwatch demo | experiment NAME | diagnose | info`."""

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
        "demo", help="see vanishing gradients happen on the bundled digits (offline, seconds)",
        description="Train the weight-initialisation and batch-norm comparisons on the bundled "
                    "UCI digits (offline), print per-layer gradient norms and each network's "
                    "diagnosis, and write the plots (needs matplotlib).",
    )
    demo.add_argument("--out", metavar="DIR", default="gradwatch-demo",
                      help="folder for the plots (default ./gradwatch-demo)")
    demo.add_argument("--iterations", type=int, default=1000,
                      help="training steps per initialisation (default 1000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--no-progress", action="store_true",
                      help="no progress bars (they need tqdm)")
    demo.set_defaults(subparser=demo)
    commands.add_parser("info", help="print the build information of the compiled core")
    _add_experiment_parser(commands)
    _add_diagnose_parser(commands)
    return parser


def _add_diagnose_parser(commands) -> None:
    from gradwatch.activations import KINDS

    diagnose = commands.add_parser(
        "diagnose", help="say why a network's gradients vanish, explode or die",
        description="Build an MLP, probe one forward/backward pass on a batch (random inputs, a "
                    "dataset, or arrays from an .npz file) and print each layer's status, the "
                    "mean-field prediction beside the measured gradient growth, and ranked "
                    "remedies.",
        epilog="example: python -m gradwatch diagnose --sizes 784,100,100,10 "
               "--activation sigmoid --init 0.01",
    )
    diagnose.add_argument("--sizes", required=True, metavar="D,H,...,C",
                          help="layer sizes: inputs, hidden widths..., outputs")
    diagnose.add_argument("--activation", default="relu", choices=KINDS,
                          help="hidden activation (default relu)")
    diagnose.add_argument("--init", default="he_normal", metavar="SCHEME",
                          help="weight init: a gradwatch.init scheme or a number s for "
                               "N(0, s^2) (default he_normal)")
    diagnose.add_argument("--batchnorm", action="store_true", help="batch norm after each "
                          "hidden dense layer")
    diagnose.add_argument("--residual", action="store_true", help="residual connections where "
                          "widths match")
    diagnose.add_argument("--data", default="random", metavar="SOURCE",
                          help="random (standard normal inputs, random labels), mnist, fashion, "
                               "digits, or a .npz file with arrays x (N, D) and y (N,) "
                               "(default random)")
    diagnose.add_argument("--data-dir", metavar="DIR", help="folder with the MNIST files")
    diagnose.add_argument("--batch-size", type=int, default=256,
                          help="samples in the probed batch (default 256)")
    diagnose.add_argument("--steps", type=int, default=0,
                          help="also train a copy this many steps (default 0)")
    diagnose.add_argument("--lr", type=float, default=0.01,
                          help="SGD learning rate of those steps (default 0.01)")
    diagnose.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    diagnose.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    diagnose.set_defaults(subparser=diagnose)


def _parse_sizes(parser, text: str) -> list:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {text!r}")
    if len(sizes) < 2 or min(sizes) < 1:
        parser.error(f"--sizes needs at least 2 sizes, each >= 1, got {text!r}")
    return sizes


def _parse_init(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def _diagnosis_batch(args, parser, sizes: list):
    import numpy as np

    rng = np.random.default_rng(args.seed)
    if args.data == "random":
        if args.data_dir is not None:
            parser.error("--data-dir is for --data mnist or fashion")
        x = rng.standard_normal((args.batch_size, sizes[0])).astype(np.float32)
        return x, rng.integers(0, sizes[-1], args.batch_size)
    if args.data.endswith(".npz"):
        with np.load(args.data, allow_pickle=False) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise ValueError(f"{args.data} must hold arrays named x and y")
            x, y = np.asarray(arrays["x"], np.float32), np.asarray(arrays["y"])
    elif args.data in ("mnist", "fashion", "digits"):
        from gradwatch.experiments.base import load_data

        dataset = load_data(args.data, args.data_dir, progress=False)
        x, y = dataset.x_train, dataset.y_train
    else:
        parser.error(f"--data must be random, mnist, fashion, digits or a .npz file, got "
                     f"{args.data!r}")
    if x.ndim != 2 or x.shape[1] != sizes[0]:
        parser.error(f"the data has inputs of shape {x.shape[1:]}, but --sizes starts with "
                     f"{sizes[0]}")
    rows = rng.choice(len(x), min(args.batch_size, len(x)), replace=False)
    return x[rows], y[rows]


def _run_diagnose(args) -> int:
    import gradwatch
    from gradwatch.datasets import DatasetError

    parser = args.subparser
    sizes = _parse_sizes(parser, args.sizes)
    if args.batch_size < 2:
        parser.error(f"--batch-size must be >= 2, got {args.batch_size}")
    if args.steps < 0:
        parser.error(f"--steps must be >= 0, got {args.steps}")
    if not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    try:
        net = gradwatch.MLP(sizes, activation=args.activation, init=_parse_init(args.init),
                            batchnorm=args.batchnorm, residual=args.residual, seed=args.seed)
        x, y = _diagnosis_batch(args, parser, sizes)
        result = gradwatch.diagnose(net, x, y, steps=args.steps,
                                    optimizer=gradwatch.optim.SGD(lr=args.lr))
    except (TypeError, ValueError, OSError, DatasetError) as error:
        print(f"{parser.prog}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=1) if args.json else result)
    return 0


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
        if args.iterations < 1:
            parser.error(f"--iterations must be >= 1, got {args.iterations}")
        if args.seed < 0:
            parser.error(f"--seed must be >= 0, got {args.seed}")
        from gradwatch.demo import run_demo

        try:
            run_demo(out_dir=args.out, iterations=args.iterations, seed=args.seed,
                     progress=not args.no_progress)
        except OSError as error:
            print(f"{args.subparser.prog}: error: {_one_line(error)}", file=sys.stderr)
            return 2
    elif args.command == "info":
        import gradwatch

        for key, value in gradwatch.build_info().items():
            print(f"{key}: {value}")
    elif args.command == "experiment":
        return _run_experiment(args)
    elif args.command == "diagnose":
        return _run_diagnose(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
