"""Pronunciation lexicons: PUT, GET and DELETE /v1/lexicons/{name}, the list at /v1/lexicons, and
the tenant's defaults at /v1/lexicon-defaults. Each tenant sees only its own: another tenant's
lexicon is a 404, exactly like none at all."""
from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify, request

from api import auth, bodies, services
from api.errors import ApiError
from shared.jobs import now
from shared.text.lexicon import NAME, LexiconError, parse, stored

bp = Blueprint("lexicons", __name__)
log = logging.getLogger(__name__)

CONTENT_TYPES = {"pls": "application/pls+xml", "json": "application/json"}


def _name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise ApiError(404, "not_found", "no such lexicon")
    return name


def _summary(name: str, record: dict) -> dict:
    return {"name": name, "format": record["format"], "entries": len(record["entries"]),
            "sha256": record["sha256"], "updated_at": record["updated_at"],
            "links": {"self": f"/v1/lexicons/{name}"}}


def for_request(names: list[str] | None, owner: str) -> list[str]:
    """The lexicons a request uses: those it names (each must exist), else the tenant's
    defaults; 422 for a name the tenant has not stored."""
    svc = services.get()
    limit = svc.settings.text.lexicons_per_request
    if names is None:
        return svc.store.lexicons.defaults(owner)
    if len(names) > limit:
        raise ApiError(422, "invalid_request", f"lexicons: at most {limit} per request", "lexicons")
    records = svc.store.lexicons.get_many(owner, names)
    missing = [n for n, record in zip(names, records) if record is None]
    if missing:
        raise ApiError(422, "unknown_lexicon", f"no lexicon named {missing[0]!r}; PUT /v1/lexicons/{missing[0]} first",
                       "lexicons")
    return list(dict.fromkeys(names))


@bp.put("/v1/lexicons/<name>")
def put_lexicon(name: str):
    svc = services.get()
    owner = auth.owner()
    if not NAME.fullmatch(name):
        raise ApiError(422, "invalid_request", "a lexicon name is 1-64 letters, digits, _ . or -, starting with a "
                       "letter or digit", "name")
    limits = svc.settings.text
    raw = request.get_data(cache=False)
    if len(raw) > limits.lexicon_max_bytes:
        raise ApiError(413, "lexicon_too_large", f"the lexicon is {len(raw)} bytes; the limit is "
                       f"{limits.lexicon_max_bytes}")
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_lexicon", "the lexicon must be UTF-8") from None
    try:
        entries = parse(content, limits.lexicon_max_entries)
    except LexiconError as exc:
        raise ApiError(422, "invalid_lexicon", str(exc)) from None
    fmt = "json" if content.lstrip().startswith(("{", "[")) else "pls"
    record = stored(content, fmt, entries, now().isoformat())
    created = svc.store.lexicons.put(owner, name, record, limits.lexicons_per_tenant)
    if created is None:
        raise ApiError(409, "too_many_lexicons", f"this tenant already has {limits.lexicons_per_tenant} lexicons; "
                       "delete one first")
    log.info("lexicon %s %s: %d entries", name, "created" if created else "replaced", len(entries))
    response = jsonify(_summary(name, record))
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/v1/lexicons/{name}"
    return response


@bp.get("/v1/lexicons/<name>")
def get_lexicon(name: str):
    record = services.get().store.lexicons.get(auth.owner(), _name(name))
    if record is None:
        raise ApiError(404, "not_found", "no such lexicon")
    response = Response(record["content"], mimetype=CONTENT_TYPES[record["format"]])
    response.headers["ETag"] = f'"{record["sha256"]}"'
    return response


@bp.delete("/v1/lexicons/<name>")
def delete_lexicon(name: str):
    svc = services.get()
    owner = auth.owner()
    if not svc.store.lexicons.delete(owner, _name(name)):
        raise ApiError(404, "not_found", "no such lexicon")
    defaults = svc.store.lexicons.defaults(owner)
    if name in defaults:
        svc.store.lexicons.set_defaults(owner, [n for n in defaults if n != name])
    return "", 204


@bp.get("/v1/lexicons")
def list_lexicons():
    store = services.get().store.lexicons
    owner = auth.owner()
    found = store.all(owner)
    return jsonify({"lexicons": [_summary(name, found[name]) for name in sorted(found)],
                    "defaults": store.defaults(owner)})


@bp.get("/v1/lexicon-defaults")
def get_defaults():
    return jsonify({"lexicons": services.get().store.lexicons.defaults(auth.owner())})


@bp.put("/v1/lexicon-defaults")
def put_defaults():
    body = bodies.parse_json() if request.is_json else None
    names = body.get("lexicons") if isinstance(body, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ApiError(422, "invalid_request", 'the body is {"lexicons": ["name", ...]}', "lexicons")
    owner = auth.owner()
    chosen = for_request(names, owner)
    services.get().store.lexicons.set_defaults(owner, chosen)
    return jsonify({"lexicons": chosen})
