"""Command line: `python -m gradwatch demo`."""

from __future__ import annotations

import argparse
import sys


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
    return parser


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
    return 0


if __name__ == "__main__":
    sys.exit(main())
