"""POST /v1/text/preview: what the voice will say for a text, without synthesizing it.

It runs the workers' own text front end (shared/text) in the API process: a preview must answer
in milliseconds even while every worker is busy with long jobs, and the front end is pure Python
with no model stack. jieba, pypinyin and cn2an load on the first preview, never before.
"""
from __future__ import annotations

from flask import Blueprint, jsonify
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api import auth, bodies, lexicons, services, validation
from api.errors import validation_error
from shared import plan
from shared.jobs import LexiconName, SpokenText, TextType
from shared.text import frontend
from shared.text.lexicon import resolve

bp = Blueprint("preview", __name__)


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: SpokenText = Field(..., description="plain text, or SSML when text_type is ssml")
    text_type: TextType = "text"
    lexicons: list[LexiconName] | None = Field(None, max_length=32,
                                               description="the caller's lexicons; absent: the tenant's defaults")


@bp.post("/v1/text/preview")
def preview():
    svc = services.get()
    try:
        body = PreviewRequest.model_validate(bodies.json_body())
    except ValidationError as exc:
        raise validation_error(exc) from None
    limit = min(svc.settings.text.preview_max_chars, svc.settings.limits.max_chars)
    problem = plan.check_text(body.text, limit)
    if problem:
        raise validation.refused(problem)
    owner = auth.owner()
    names = lexicons.for_request(body.lexicons, owner)
    chosen = resolve(names, svc.store.lexicons.get_many(owner, names))
    try:
        # The workers' own plan, first-clause cut included: the preview is what will be spoken.
        segments = plan.segments(body.text, svc.settings, body.text_type, chosen, limit=limit)
    except plan.PlanError as exc:
        # Nothing to say included: a preview of it would show an empty page, not why.
        raise validation.refused(exc.problem) from None
    return jsonify({"text_type": body.text_type, "lexicons": names, **frontend.preview(segments)})
