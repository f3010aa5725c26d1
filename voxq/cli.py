"""The `voxq` command: synth, text, lexicon, up, bench. Errors are one line on stderr and a non-zero exit."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from shared.options import EMOTIONS, FORMATS, SAMPLE_RATES


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _read_text(args) -> str:
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


def _format_for(args) -> str:
    if args.format:
        return args.format
    suffix = Path(args.output).suffix.lstrip(".").lower()
    return suffix if suffix in FORMATS else "wav"


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"invalid {where}: {first['msg']}"


def cmd_synth(args) -> int:
    from shared.config import Settings, SettingsError
    from shared.options import SynthesisOptions

    text = _read_text(args)
    fmt = _format_for(args)
    if fmt not in FORMATS:
        raise CliError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    if args.sample_rate is not None and args.sample_rate not in SAMPLE_RATES:
        raise CliError(
            f"unsupported sample rate {args.sample_rate}; valid: {', '.join(map(str, SAMPLE_RATES))}"
        )
    if args.emotion not in EMOTIONS:
        raise CliError(f"unknown emotion {args.emotion!r}; valid: {', '.join(EMOTIONS)}")
    try:
        options = SynthesisOptions(
            emotion=args.emotion, speed=args.speed, pitch=args.pitch, volume=args.volume,
            format=fmt, sample_rate=args.sample_rate, marks=bool(args.marks),
        )
    except ValidationError as exc:
        raise CliError(_validation_message(exc)) from exc
    try:
        settings = Settings.load()
    except SettingsError as exc:
        raise CliError(f"invalid settings: {exc}") from None

    # Heavy imports only now: `voxq up` and `voxq --help` never load the model stack.
    from worker import synthesizer
    from worker.engines import EngineError, load_engine
    from worker.assets import AssetError

    from voxq.lexicons import read_lexicon_file

    lexicons = [read_lexicon_file(path) for path in args.lexicon or []]
    text_type = "ssml" if args.ssml else "text"
    # Subtitles are made from the marks: keep them beside the subtitles when none were asked for.
    marks_path = args.marks or (str(Path(args.srt).with_suffix(".marks.json")) if args.srt else None)
    try:
        segments = synthesizer.plan(text, settings, text_type, lexicons)
        engine = load_engine(settings)
        synthesizer.check_options(options, engine)
        result = synthesizer.render(engine, segments, options, args.output, settings, marks_path=marks_path)
    except synthesizer.SynthesisError as exc:
        raise CliError(str(exc)) from exc
    except (EngineError, AssetError) as exc:
        raise CliError(str(exc)) from exc
    if args.srt:
        import json

        from shared import subtitles

        marks = json.loads(Path(marks_path).read_text(encoding="utf-8"))
        if not args.marks:
            Path(marks_path).unlink()
        Path(args.srt).write_text(subtitles.render(marks, text, "srt", settings.text.subtitle_max_chars, args.ssml),
                                  encoding="utf-8")
    print(
        f"{args.output}: {result.duration_s:.2f} s, {result.format}, {result.sample_rate} Hz, "
        f"{result.bytes} bytes, {result.segments} segment(s)",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxq", description="Self-hosted Chinese text-to-speech.")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="synthesize text to an audio file")
    synth.add_argument("text", nargs="?", help="the text; '-' or nothing reads stdin")
    synth.add_argument("-o", "--output", required=True, help="output file")
    synth.add_argument("--file", help="read the text from this UTF-8 file")
    synth.add_argument("--emotion", default="neutral", help=f"one of: {', '.join(EMOTIONS)}")
    synth.add_argument("--speed", type=float, default=1.0, help="0.5 to 2.0")
    synth.add_argument("--pitch", type=float, default=1.0, help="0.5 to 2.0")
    synth.add_argument("--volume", type=float, default=1.0, help="0.0 to 2.0")
    synth.add_argument("--format", help=f"one of: {', '.join(FORMATS)} (default: from -o, else wav)")
    synth.add_argument("--sample-rate", type=int, help=f"one of: {', '.join(map(str, SAMPLE_RATES))}")
    synth.add_argument("--marks", help="write per-character timing marks (JSON) to this file")
    synth.add_argument("--ssml", action="store_true", help="the text is SSML (the subset in the README)")
    synth.add_argument("--lexicon", action="append", help="a PLS or JSON lexicon file (repeatable, first wins)")
    synth.add_argument("--srt", help="write sentence subtitles (SRT) to this file")
    synth.set_defaults(func=cmd_synth)

    from voxq import bench, cluster, keys, lexicons  # all light: no model stack at import

    cluster.add_parser(sub)
    bench.add_parser(sub)
    keys.add_parser(sub)
    lexicons.add_parser(sub)
    return parser




def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except CliError as exc:
        print(f"voxq: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
