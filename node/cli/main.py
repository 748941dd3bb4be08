"""The ``watchnet`` command line: one entry point, one module per command group.

Each group module exposes ``register(subparsers)``; a command handler returns an exit code.
Typed watchnet errors are printed as one line saying what went wrong and what to do next,
with ``--json`` giving the same as an object for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from protocol.errors import WatchnetError

__all__ = ["main"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2


def _groups() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    from node.cli import backup as cli_backup
    from node.cli import camera as cli_camera
    from node.cli import client as cli_client
    from node.cli import face as cli_face
    from node.cli import gov as cli_gov
    from node.cli import node as cli_node
    from node.cli import notice as cli_notice
    from node.cli import report as cli_report
    from node.demo import story as demo

    return [
        cli_node.register,
        cli_node.register_service,
        cli_backup.register,
        cli_client.register,
        cli_face.register,
        cli_gov.register,
        cli_report.register,
        cli_notice.register,
        cli_camera.register,
        demo.register,
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="watchnet",
        description="watchnet: a lawful federated face-recognition watchlist (APPI joint use).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in _groups():
        register(sub)
    return parser


def _refused(args: argparse.Namespace, code: str, message: str, status: int) -> int:
    """One line on stderr (or one JSON object on stdout with ``--json``): what went wrong, what next."""
    if getattr(args, "json", False):
        print(json.dumps({"error": code, "message": message}, ensure_ascii=False))
    else:
        print(f"watchnet: {code}: {message}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except WatchnetError as e:
        return _refused(args, e.code, str(e), EXIT_REFUSED)
    except OSError as e:  # a file named on the command line: missing, a directory, not ours to read
        where = f"{e.filename}: " if e.filename else ""
        return _refused(
            args, "file", f"{where}{e.strerror or e}; check the path and its permissions", EXIT_REFUSED
        )
    except EOFError:
        return _refused(
            args,
            "no_input",
            "this command asks at a terminal and none is attached; in a script pass the value on "
            "standard input with --password-stdin or the command's file option",
            EXIT_USAGE,
        )
    except KeyboardInterrupt:
        print("watchnet: interrupted", file=sys.stderr)
        return 130
    finally:
        from node.storage.engine import dispose_engines

        dispose_engines()


if __name__ == "__main__":
    sys.exit(main())
