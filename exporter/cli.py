"""The `deeprest` command line (contract 2): one module per command, imported on use."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from estimator.errors import BundleError, DataWarning, DeepRestError, InputError

COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("exporter.commands.simulate", "write a simulated dataset of a scenario"),
    "import": ("exporter.commands.importer", "convert traces and metrics into a window dataset"),
    "train": ("exporter.commands.train", "train a model bundle from a window dataset"),
    "predict": ("exporter.commands.predict", "write expected usage and band per window as CSV"),
    "evaluate": ("exporter.commands.evaluate", "accuracy per series, plots and an HTML report"),
    "whatif": ("exporter.commands.whatif", "expected usage for hypothetical traffic"),
    "capacity": (
        "exporter.commands.capacity",
        "the request rate each API serves within a latency objective, from load tests or traces",
    ),
    "serve": ("exporter.commands.serve", "run the Prometheus exporter and OTLP receiver"),
    "demo": ("exporter.commands.demo", "the whole story on a local testbed, in one command"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits with status 2 and a one-line message on bad usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        # "argument --days: invalid float value" as the commands' own errors name a flag
        flag = re.match(r"argument (-[^\s:/]+)(?:/\S+)?: (.*)", message, re.S)
        if flag:
            message = f"field '{flag[1]}': {flag[2]}"
        self.exit(2, f"{self.prog}: error: {message}\n")


class _DataWarnings:
    """Prints each DataWarning of a command as `deeprest CMD: warning: ...` when it happens, each
    message once; at the end, how many more times repeated ones came (e.g. once per file)."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.seen: dict[str, int] = {}

    def __enter__(self) -> _DataWarnings:
        warnings.simplefilter("always", DataWarning)
        shown = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], *rest: Any, **kw: Any) -> None:
            if not issubclass(category, DataWarning):
                shown(message, category, *rest, **kw)
                return
            text = str(message)
            self.seen[text] = self.seen.get(text, 0) + 1
            if self.seen[text] == 1:
                print(f"deeprest {self.command}: warning: {text}", file=sys.stderr, flush=True)

        warnings.showwarning = show
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for text, n in self.seen.items():
            if n > 1:
                print(
                    f"deeprest {self.command}: warning (x{n} in all): {text}",
                    file=sys.stderr,
                )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("deeprest")
    except PackageNotFoundError:
        return "unknown"


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = _Parser(prog="deeprest", description="Expected resource usage from API traffic.")
    parser.add_argument("--version", action="version", version=f"deeprest {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # import only the module of the command being run
            importlib.import_module(module).configure(cmd)
            parser.set_defaults(flags=_flags(cmd))
    return parser


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """A command's flags by the names errors may give them: 'attack_component', 'from' and
    'start' (its dest) are all '--attack-component' or '--from'."""
    out: dict[str, str] = {}
    for action in parser._actions:
        long = [o for o in action.option_strings if o.startswith("--")]
        if not long or long[0] == "--help":
            continue
        for name in (action.dest, *(o.lstrip("-").replace("-", "_") for o in long)):
            out.setdefault(name, long[0])
    return out


def _named_by_flag(exc: InputError, flags: dict[str, str]) -> InputError:
    """The error with its field named as the user typed it, where the field is a flag's (no file
    is named: a field of a file or request keeps its own name)."""
    if exc.source is not None or exc.field is None or exc.field.startswith("--"):
        return exc
    flag = flags.get(exc.field)
    return exc if flag is None else InputError(exc.bare_message, line=exc.line, field=flag)


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    bare = next((a for a in argv if a.startswith("--") and a.endswith("=--")), None)
    if bare is not None:  # argparse hands such a value on as a list, not as the text "--"
        parser.error(f"argument {bare[:-3]}: expected a value, got '--'")
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the command's own parser, whose usage shows the flags it has
        command = _subparsers(parser).choices.get(args.command or "", parser)
        command.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    with warnings.catch_warnings(), _DataWarnings(args.command):
        return _run(module, args)


def _run(module: Any, args: argparse.Namespace) -> int:
    try:
        code: int = module.run(args)
        return code
    except InputError as exc:
        exc = _named_by_flag(exc, getattr(args, "flags", {}))
        print(f"deeprest {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BundleError as exc:  # the bundle the user pointed at: missing, damaged, mismatched
        print(f"deeprest {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except DeepRestError as exc:
        print(f"deeprest {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a path the checks up front could not foresee, a port in use, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"deeprest {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2 if exc.filename else 1
    except UnicodeDecodeError as exc:  # a text input no reader above caught with its name
        print(
            f"deeprest {args.command}: error: an input is not UTF-8 text ({exc.reason} at byte "
            f"{exc.start + 1})",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"deeprest {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
