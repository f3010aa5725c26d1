"""The text a command speaks or previews: its argument, --file, or stdin, read as UTF-8."""
from __future__ import annotations

import sys
from pathlib import Path

from voxq.errors import CliError


def read_text(args) -> str:
    """As the API counts it: the newline a file or a pipe ends with is no part of the text
    (shared/text/frontend.py trim)."""
    from shared.text.frontend import trim

    return trim(_read_raw(args))


def _read_raw(args) -> str:
    if args.file:
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise CliError(f"cannot read {args.file}: {exc.strerror}") from exc
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CliError(f"{args.file} is not valid UTF-8 (byte {exc.start})") from exc
    if args.text is not None and args.text != "-":
        return args.text
    if sys.stdin is None or sys.stdin.isatty():
        raise CliError("no text: give it as an argument, with --file, or on stdin")
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CliError(f"stdin is not valid UTF-8 (byte {exc.start})") from exc
