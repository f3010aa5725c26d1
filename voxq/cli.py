"""The `voxq` command: synth, text, lexicon, up, status, bench, keys. Errors are one line on stderr and a
non-zero exit."""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from pydantic import ValidationError

from shared.options import EMOTIONS, FORMATS, SAMPLE_RATES

from voxq.errors import CliError
from voxq.text_source import read_text


# The extensions a user may give with -o, and the format each one means.
EXTENSION_FORMATS = {
    "wav": "wav", "wave": "wav", "flac": "flac", "ogg": "ogg", "oga": "ogg", "opus": "opus",
    "mp3": "mp3", "pcm": "pcm", "raw": "pcm", "aac": "aac", "m4a": "m4a",
    "ulaw": "mulaw-raw", "mulaw": "mulaw-raw", "alaw": "alaw-raw",
}
# A .wav file may hold G.711 too: --format mulaw or alaw with it is no contradiction.
WAV_FORMATS = ("wav", "mulaw", "alaw")
STDOUT = "-"


def _format_for(args) -> str:
    """The format from --format and -o's extension; one clear error when they disagree."""
    if args.format and args.format not in FORMATS:
        raise CliError(f"unknown format {args.format!r}; valid: {', '.join(FORMATS)}")
    if args.output == STDOUT:
        return args.format or "wav"
    suffix = Path(args.output).suffix.lstrip(".").lower()
    if not suffix:
        return args.format or "wav"
    implied = EXTENSION_FORMATS.get(suffix)
    if implied is None:
        # An unknown extension (.wma) would hold audio of another format than its name says.
        raise CliError(
            f"cannot write {suffix} audio ({args.output}); use one of the extensions "
            f"{', '.join('.' + e for e in EXTENSION_FORMATS)}, or no extension with --format"
        )
    if args.format and implied == "wav" and args.format in WAV_FORMATS:
        return args.format
    if args.format and args.format != implied:
        raise CliError(f"--format {args.format} contradicts the extension of {args.output} ({implied})")
    return implied


def _loudness(value: str | None) -> float | str | None:
    if value is None or value == "off":
        return value
    try:
        return float(value)
    except ValueError:
        raise CliError(f"invalid --loudness {value!r}: a target in LUFS (e.g. -16) or off") from None


def _check_writable(path: str, what: str) -> None:
    """Refuse before synthesizing when the file cannot be written, not after minutes of work."""
    folder = Path(path).parent
    if not folder.is_dir():
        raise CliError(f"cannot write {what} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise CliError(f"cannot write {what} {path}: the folder {folder} is not writable")


# Whole lines, as LiteRT writes them ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.").
NATIVE_NOISE = (b"INFO: Created TensorFlow Lite XNNPACK delegate",)


@contextlib.contextmanager
def _quiet_native_stderr():
    """Drop the runtime's informational line that native code writes on fd 2; pass all else on.

    LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." straight to fd 2, out of
    reach of Python's logging. Everything else written there meanwhile (a real error, Python's
    own stderr) is forwarded line by line as it comes, so nothing else is hidden or delayed.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):
        yield  # no usable fd 2 (embedded use): nothing to filter
        return
    read_end, write_end = os.pipe()

    def forward():
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not line.startswith(NATIVE_NOISE):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread reads to its end
        thread.join(5)
        os.close(saved)


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return f"invalid {where}: {first['msg']}"


def cmd_synth(args) -> int:
    from shared.config import Settings, SettingsError
    from shared.options import SynthesisOptions

    text = read_text(args)
    fmt = _format_for(args)
    to_stdout = args.output == STDOUT
    if to_stdout and sys.stdout.isatty():
        raise CliError("refusing to write audio to a terminal: redirect stdout, or give -o FILE")
    if not to_stdout:
        _check_writable(args.output, "audio")
    if args.marks:
        _check_writable(args.marks, "marks")
    if args.sample_rate is not None and args.sample_rate not in SAMPLE_RATES:
        raise CliError(
            f"unsupported sample rate {args.sample_rate}; valid: {', '.join(map(str, SAMPLE_RATES))}"
        )
    if args.emotion not in EMOTIONS:
        raise CliError(f"unknown emotion {args.emotion!r}; valid: {', '.join(EMOTIONS)}")
    try:
        options = SynthesisOptions(
            emotion=args.emotion, speed=args.speed, pitch=args.pitch, volume=args.volume,
            format=fmt, sample_rate=args.sample_rate, marks=bool(args.marks), loudness=_loudness(args.loudness),
        )
    except ValidationError as exc:
        raise CliError(_validation_message(exc)) from exc
    try:
        settings = Settings.load()
    except SettingsError as exc:
        raise CliError(f"invalid settings: {exc}") from None

    # Heavy imports only now: `voxq up` and `voxq --help` never load the model stack.
    from shared import plan
    from worker.engines import EngineError, load_engine, preflight
    from worker.pipeline import Pipeline
    from worker.synthesizer import SynthesisError
    from worker.assets import AssetError

    from voxq.lexicons import read_lexicon_file

    lexicons = [read_lexicon_file(path) for path in args.lexicon or []]
    text_type = "ssml" if args.ssml else "text"
    # Subtitles are made from the marks: keep them beside the subtitles when none were asked for.
    marks_path = args.marks or (str(Path(args.srt).with_suffix(".marks.json")) if args.srt else None)
    with contextlib.ExitStack() as stack:
        out_path = args.output
        if to_stdout:
            # Encoders write a file (a WAV header is finished last): render it, then stream it out.
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="voxq-"))
            out_path = os.path.join(folder, f"out.{fmt}")
        try:
            segments = plan.segments(text, settings, text_type, lexicons)
            # The engine's own checks first: a missing package or model is one line, not a traceback.
            preflight(settings)
            pipeline = Pipeline(load_engine(settings), settings)
            pipeline.check(options)
            result = pipeline.render(segments, options, out_path, marks_path=marks_path)
        except (plan.PlanError, SynthesisError) as exc:
            raise CliError(str(exc)) from exc
        except (EngineError, AssetError) as exc:
            raise CliError(str(exc)) from exc
        except OSError as exc:
            raise CliError(f"cannot write {exc.filename or args.output}: {exc.strerror or exc}") from exc
        if to_stdout:
            with open(out_path, "rb") as audio:
                try:
                    shutil.copyfileobj(audio, sys.stdout.buffer)
                    sys.stdout.buffer.flush()
                except BrokenPipeError:
                    # The reader went away (`| head`): not an error of ours; keep Python quiet at exit.
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    return 1
    if args.srt:
        import json

        from shared import subtitles

        marks = json.loads(Path(marks_path).read_text(encoding="utf-8"))
        if not args.marks:
            Path(marks_path).unlink()
        Path(args.srt).write_text(subtitles.render(marks, text, "srt", settings.text.subtitle_max_chars, args.ssml),
                                  encoding="utf-8")
    shown = "stdout" if to_stdout else args.output
    print(
        f"{shown}: {result.duration_s:.2f} s, {result.format}, {result.sample_rate} Hz, "
        + (f"{result.loudness_lufs:g} LUFS, " if result.loudness_lufs is not None else "") +
        f"{result.bytes} bytes, {len(segments)} segment(s)",
        file=sys.stderr,
    )
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("voxq")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxq", description="Self-hosted Chinese text-to-speech.")
    parser.add_argument("--version", action="version", version=f"voxq {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synth", help="synthesize text to an audio file")
    synth.add_argument("text", nargs="?", help="the text; '-' or nothing reads stdin")
    synth.add_argument("-o", "--output", required=True, help="output file; '-' writes the audio to stdout")
    synth.add_argument("--file", help="read the text from this UTF-8 file")
    synth.add_argument("--emotion", default="neutral", help=f"one of: {', '.join(EMOTIONS)}")
    synth.add_argument("--speed", type=float, default=1.0, help="0.5 to 2.0")
    synth.add_argument("--pitch", type=float, default=1.0, help="0.5 to 2.0")
    synth.add_argument("--volume", type=float, default=1.0, help="0.0 to 2.0")
    synth.add_argument("--format", help=f"one of: {', '.join(FORMATS)} (default: from -o's extension, else wav)")
    synth.add_argument("--sample-rate", type=int, help=f"one of: {', '.join(map(str, SAMPLE_RATES))} "
                       "(mulaw and alaw: 8000 only, their default)")
    synth.add_argument("--loudness", help="integrated loudness target in LUFS (e.g. -16), or off; default: -23 "
                       "for files, -20 for mulaw and alaw (measured over the whole text)")
    synth.add_argument("--marks", help="write per-character timing marks (JSON) to this file")
    synth.add_argument("--ssml", action="store_true", help="the text is SSML (the subset in the README)")
    synth.add_argument("--lexicon", action="append", help="a PLS or JSON lexicon file (repeatable, first wins)")
    synth.add_argument("--srt", help="write sentence subtitles (SRT) to this file")
    # Commands that run an engine in this process filter LiteRT's native stderr line (see main).
    synth.set_defaults(func=cmd_synth, quiet_native=True)

    from voxq import bench, keys, lexicons, status, up  # all light: no model stack at import

    up.add_parser(sub)
    status.add_parser(sub)
    bench.add_parser(sub)
    keys.add_parser(sub)
    lexicons.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # Not for long-running commands (`voxq up`): a filter thread there would outlive its terminal.
        with _quiet_native_stderr() if getattr(args, "quiet_native", False) else contextlib.nullcontext():
            return args.func(args) or 0
    except CliError as exc:
        print(f"voxq: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
