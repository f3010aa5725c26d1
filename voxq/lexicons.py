"""`voxq lexicon put|get|list|delete` against a running server, and `voxq text`: what the voice
will say for a text (the preview), computed here with the same front end as the workers."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from voxq.errors import CliError
from voxq.settings import load as load_settings
from voxq.text_source import read_text


def read_lexicon_file(path: str, max_entries: int = 100_000):
    """A PLS or JSON file as a Lexicon, named after the file; CliError for a bad one."""
    from shared.text.lexicon import Lexicon, LexiconError, content_hash, parse

    try:
        content = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read lexicon {path}: {exc}") from None
    try:
        return Lexicon.from_entries(Path(path).stem, parse(content, max_entries), content_hash(content))
    except LexiconError as exc:
        raise CliError(f"{path}: {exc}") from None


def _request(args, method: str, path: str, **kwargs):
    import requests

    settings = load_settings().cli
    url, api_key = args.url or settings.url, args.api_key or settings.api_key
    headers = kwargs.pop("headers", {})
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        response = requests.request(method, url.rstrip("/") + path, headers=headers, timeout=30, **kwargs)
    except requests.RequestException as exc:
        raise CliError(f"cannot reach {url}: {exc.__class__.__name__}") from None
    if response.status_code >= 400:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:200]
        raise CliError(f"{response.status_code}: {message}")
    return response


def cmd_put(args) -> int:
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    kind = "application/json" if data.lstrip()[:1] in (b"{", b"[") else "application/pls+xml"
    name = args.name or path.stem
    summary = _request(args, "PUT", f"/v1/lexicons/{name}", data=data, headers={"Content-Type": kind}).json()
    print(f"{summary['name']}: {summary['entries']} entries, sha256 {summary['sha256'][:12]}")
    return 0


def cmd_get(args) -> int:
    sys.stdout.write(_request(args, "GET", f"/v1/lexicons/{args.name}").text)
    return 0


def cmd_list(args) -> int:
    body = _request(args, "GET", "/v1/lexicons").json()
    for item in body["lexicons"]:
        default = " (default)" if item["name"] in body["defaults"] else ""
        print(f"{item['name']}\t{item['format']}\t{item['entries']} entries\t{item['updated_at']}{default}")
    return 0


def cmd_delete(args) -> int:
    _request(args, "DELETE", f"/v1/lexicons/{args.name}")
    print(f"{args.name}: deleted")
    return 0


def cmd_text(args) -> int:
    from shared import plan
    from shared.text import frontend

    settings = load_settings()
    text = read_text(args)
    lexicons = [read_lexicon_file(path) for path in args.lexicon or []]
    # The plan `voxq synth`, the API's preview and the workers make, with their checks and words.
    try:
        segments = plan.segments(text, settings, "ssml" if args.ssml else "text", lexicons)
    except plan.PlanError as exc:
        raise CliError(str(exc)) from None
    preview = frontend.preview(segments)
    if args.json:
        print(json.dumps(preview, ensure_ascii=False, indent=2))
        return 0
    print(preview["normalized"])
    for number, segment in enumerate(preview["segments"], 1):
        print(f"\n[{number}] {segment['text']}  (pause: {segment['pause_s'] or segment['pause']})")
        print("  " + " ".join(f"{c['char']}{c['pinyin']}" + ("" if c["source"] in ("dictionary", "word")
                                                            else f"<{c['source']}>") for c in segment["chars"]))
    return 0


def add_parser(sub) -> None:
    lexicon = sub.add_parser("lexicon", help="store, fetch, list and delete pronunciation lexicons on a server")
    lexicon.add_argument("--url", help="the API (default VOXQ_URL, else http://127.0.0.1:5000)")
    lexicon.add_argument("--api-key", help="default VOXQ_API_KEY")
    which = lexicon.add_subparsers(dest="lexicon", required=True)
    put = which.add_parser("put", help="upload a PLS or JSON lexicon")
    put.add_argument("file")
    put.add_argument("--name", help="default: the file name without its extension")
    put.set_defaults(func=cmd_put)
    get = which.add_parser("get", help="print a lexicon as stored")
    get.add_argument("name")
    get.set_defaults(func=cmd_get)
    which.add_parser("list", help="list the lexicons").set_defaults(func=cmd_list)
    delete = which.add_parser("delete", help="delete a lexicon")
    delete.add_argument("name")
    delete.set_defaults(func=cmd_delete)

    text = sub.add_parser("text", help="show what the voice will say: normalised text, segments, pinyin and sources")
    text.add_argument("text", nargs="?", help="the text; '-' or nothing reads stdin")
    text.add_argument("--file", help="read the text from this UTF-8 file")
    text.add_argument("--ssml", action="store_true", help="the text is SSML")
    text.add_argument("--lexicon", action="append", help="a PLS or JSON lexicon file (repeatable, first wins)")
    text.add_argument("--json", action="store_true", help="print the preview as JSON")
    text.set_defaults(func=cmd_text)
