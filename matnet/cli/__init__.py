"""The ``matnet`` command: train, predict, evaluate, info, gradcheck, explain, serve, datasets.

:mod:`~matnet.cli.parser` holds the argument tables, :mod:`~matnet.cli.commands` the commands and
:mod:`~matnet.cli.common` what they share. A model file is read through the model itself
(:func:`matnet.load`): its input scaling, class labels, column names and target scaling are the
model's own, so ``matnet predict`` and ``matnet.load(path).predict`` give the same answers.

Every user error (a missing file, a bad cell, a wrong option, a model file of another kind, an output
path that cannot be written) prints one line to stderr and exits with status 2, before any output file is
touched: inputs and output paths are checked first, results are computed in memory, and files are
written last with :func:`matnet.io.atomic_write`. Set ``MATNET_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from matnet.cli.common import EXIT_USAGE
from matnet.cli.parser import build_parser
from matnet.errors import MatnetError, UsageError
from matnet.io import excerpt_text

__all__ = ["main", "build_parser"]


def _one_line(exc: BaseException) -> str:
    """The error as one line, with control characters escaped: it may quote a file's labels."""
    text = str(exc) or type(exc).__name__
    return excerpt_text(" ".join(text.split()), limit=None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``matnet`` command with ``argv`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, 1 for a failed gradcheck, 2 for a user error, 130 when interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"matnet: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader of our output went away (`matnet predict ... | head`): not an error worth a line.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (MatnetError, ValueError, TypeError, ImportError, OSError) as exc:
        if os.environ.get("MATNET_DEBUG"):
            raise
        print(f"matnet {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"matnet {args.command}: interrupted; nothing written", file=sys.stderr)
        return 130
