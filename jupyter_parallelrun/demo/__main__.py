"""``python -m jupyter_parallelrun.demo``: run the digit-identification batch job and report.

Exits with status 1 when the run failed, an image has no output row or more than one, or the
accuracy is below 0.85.
"""

from __future__ import annotations

import argparse
import sys

from .job import format_summary, run_demo


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the demo, print its summary.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        0 when the demo passed, else 1.
    """
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_parallelrun.demo",
        description="Identify handwritten digits in PNG files with a ParallelRunStep, locally.",
    )
    parser.add_argument(
        "--workdir", default="demo_workspace", help="folder for workspace, images, model, output"
    )
    parser.add_argument("--images", type=int, default=3000, help="digit images to score")
    parser.add_argument("--processes", type=int, default=2, help="worker processes")
    parser.add_argument("--mini-batch-size", type=int, default=100, help="images per mini-batch")
    args = parser.parse_args(argv)
    summary = run_demo(
        args.workdir,
        images=args.images,
        processes=args.processes,
        mini_batch_size=args.mini_batch_size,
    )
    print(format_summary(summary))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
