"""POST /v1/text/preview: what the voice will say for a text, without synthesizing it.

It runs the workers' own text front end (shared/text) in the API process: a preview must answer
in milliseconds even while every worker is busy with long jobs, and the front end is pure Python
with no model stack. jieba, pypinyin and cn2an load on the first preview, never before.
"""
from __future__ import annotations

from flask import Blueprint, jsonify
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api import auth, intake, lexicons, services
from api.errors import ApiError, validation_error
from shared.jobs import LexiconName, SpokenText, TextType
from shared.ssml import SsmlError
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
        body = PreviewRequest.model_validate(intake.json_body())
    except ValidationError as exc:
        raise validation_error(exc) from None
    limit = min(svc.settings.text.preview_max_chars, svc.settings.limits.max_chars)
    if not body.text.strip():
        raise ApiError(422, "empty_text", "text is empty", "text")
    if len(body.text) > limit:
        raise ApiError(413, "text_too_long", f"text has {len(body.text)} characters; a preview takes at most {limit}",
                       "text")
    owner = auth.owner()
    names = lexicons.for_request(body.lexicons, owner)
    chosen = resolve(names, svc.store.lexicons.get_many(owner, names))
    try:
        # The rule a job is held to: a preview of nothing would show an empty page, not why.
        if not frontend.speakable(body.text, ssml=body.text_type == "ssml", lexicons=chosen):
            raise ApiError(422, "nothing_to_say", frontend.NOTHING_TO_SAY, "text")
    except SsmlError as exc:
        raise ApiError(422, exc.code, str(exc), "text") from None
    text = svc.settings.text
    try:
        segments = frontend.plan(body.text, ssml=body.text_type == "ssml", lexicons=chosen,
                                 max_segment_chars=text.max_segment_chars, sentence_pause_s=text.sentence_pause_s,
                                 clause_pause_s=text.clause_pause_s)
    except SsmlError as exc:
        raise ApiError(422, exc.code, str(exc), "text") from None
    return jsonify({"text_type": body.text_type, "lexicons": names, **frontend.preview(segments)})
