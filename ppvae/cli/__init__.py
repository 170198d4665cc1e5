"""``ppvae``: the command line over the Python API, as a table of verbs.

Each verb is one module of this package (``VERBS`` lists them in the order ``ppvae --help`` shows): its ``HELP``
line, the shared flags it takes (``FLAGS``, declared once in ``common.py``), ``add_arguments(parser)`` for its own
flags and ``run(args) -> int``. A new verb is a new module and one name in ``VERBS``.

Nothing heavy is imported at the top of any of them: ``ppvae --help`` and a refused command line answer without
importing torch or Pyro; each verb imports what it uses when it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

from .common import add_flags

VERBS = ("train", "sample", "augment", "reconstruct", "interpolate", "anomaly", "edit", "inpaint", "upscale",
         "disentanglement", "molecules", "optimize", "sweep", "export", "evaluate")


def _verb(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ppvae")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def command_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``ppvae`` command: every verb with its flags (the documentation's CLI reference
    is generated from it)."""
    parser = argparse.ArgumentParser(prog="ppvae", description="Variational autoencoders as Pyro programs.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--traceback", action="store_true",
                        help="let an error raise with its full traceback (an error in your own program is otherwise "
                             "one line naming its file and line)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in VERBS:
        verb = _verb(name)
        p = sub.add_parser(name, help=verb.HELP)
        add_flags(p, verb.FLAGS)
        verb.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = command_parser().parse_args(argv)
    args.argv = argv
    if args.traceback:
        with _traceback_env():
            return _run_command(args)
    try:
        with _one_line_warnings(args.command):
            return _run_command(args)
    except (ValueError, OSError, RuntimeError, ArithmeticError, ImportError) as e:  # NaN losses are FloatingPointErrors
        # Pyro's trace appends the sites' shapes to an error raised inside a traced program
        print(f"ppvae {args.command}: error: {str(e).split(chr(10) + 'Trace Shapes:')[0].rstrip()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run_dir = getattr(args, "started_run", None)
        from ..inference.checkpoint import CHECKPOINT

        if run_dir is not None and (run_dir / CHECKPOINT).is_file():
            message = (f"interrupted; the checkpoint of the last finished epoch is intact: continue with "
                       f"`ppvae train --resume {run_dir}`")
        elif run_dir is not None:
            message = "interrupted before the first epoch finished: nothing was saved"
        else:
            message = "interrupted"
        print(f"\n{message}", file=sys.stderr)
        return 130


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Warnings printed as the errors are, one line each (``ppvae evaluate: warning: ...``), not as Python's
    file, line and source line; ``--traceback`` keeps Python's form."""
    form = warnings.formatwarning

    def one_line(message, category, filename, lineno, line=None):
        kind = "" if category is UserWarning else f" ({category.__name__})"
        return f"ppvae {command}: warning{kind}: {str(message).split(chr(10) + 'Trace Shapes:')[0].rstrip()}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = form


@contextlib.contextmanager
def _traceback_env():
    """``--traceback``: errors in a user's program raise as they are (PPVAE_TRACEBACK=1 for this command)."""
    from ..inference.program import TRACEBACK_ENV

    before = os.environ.get(TRACEBACK_ENV)
    os.environ[TRACEBACK_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TRACEBACK_ENV, None)
        else:
            os.environ[TRACEBACK_ENV] = before


def _run_command(args) -> int:
    from ..inference.distributed import leave

    try:
        status = _verb(args.command).run(args)
    except BaseException:
        leave()
        raise
    leave(together=True)  # under torchrun: all ranks leave the process group together
    return status


if __name__ == "__main__":
    sys.exit(main())
