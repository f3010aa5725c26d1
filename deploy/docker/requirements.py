"""Write the images' requirement files from pyproject.toml, the one place versions are pinned.

    python requirements.py PYPROJECT OUTDIR

Three files: every runtime dependency (workers), the API's subset (no model stack), and the
`torch` extra (GPU image). A script file, not a RUN heredoc, so that builders without BuildKit's
heredocs (buildah, podman, kaniko, older docker) build the same Dockerfile.
"""
import re
import sys
import tomllib
from pathlib import Path

# The text front end (cn2an, jieba, pypinyin, defusedxml) is pure Python: the API runs it for
# /v1/text/preview and to check SSML. The model stack stays in the workers.
# Live sessions are WebSockets on the API's gevent workers (flask-sock over simple-websocket).
API = {"flask", "gunicorn", "gevent", "pydantic", "pydantic-settings", "redis", "celery", "kombu",
       "prometheus-client", "flower", "requests", "flask-swagger-ui", "cn2an", "jieba", "pypinyin", "defusedxml",
       "flask-sock", "simple-websocket"}


def name(spec: str) -> str:
    return re.split(r"[\[=<>!~;\s]", spec, maxsplit=1)[0].lower()


def main(pyproject: str, outdir: str) -> None:
    project = tomllib.loads(Path(pyproject).read_text())["project"]
    deps = project["dependencies"]
    missing = API - {name(d) for d in deps}
    if missing:
        raise SystemExit(f"pyproject.toml no longer pins {sorted(missing)}")
    lists = {
        "all": deps,
        "api": [d for d in deps if name(d) in API],
        "torch": project["optional-dependencies"]["torch"],
    }
    for which, specs in lists.items():
        Path(outdir, f"requirements-{which}.txt").write_text("\n".join(specs) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
