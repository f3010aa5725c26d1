"""GET /v1/jobs/{id}/subtitles?format=srt|vtt: sentence subtitles from a finished job's marks."""
from __future__ import annotations

import json

from flask import Blueprint, Response, request

from api import services
from api.errors import ApiError
from api.ownership import owned_job
from shared import subtitles

bp = Blueprint("subtitles", __name__, url_prefix="/v1/jobs")

MIMETYPES = {"srt": "application/x-subrip", "vtt": "text/vtt"}


@bp.get("/<job_id>/subtitles")
def get_subtitles(job_id: str):
    svc = services.get()
    record = owned_job(job_id)
    fmt = request.args.get("format", "srt")
    if fmt not in subtitles.FORMATS:
        raise ApiError(422, "invalid_request", "format must be srt or vtt", "format")
    try:
        max_chars = int(request.args.get("max_chars", svc.settings.text.subtitle_max_chars))
    except ValueError:
        raise ApiError(422, "invalid_request", "max_chars must be an integer", "max_chars") from None
    if not 4 <= max_chars <= 500:
        raise ApiError(422, "invalid_request", "max_chars must be between 4 and 500", "max_chars")
    if record.status != "succeeded":
        raise ApiError(409, "not_ready", f"the job is {record.status}; subtitles exist only once it succeeded")
    if not (record.result and record.result.marks):
        raise ApiError(404, "not_found", "subtitles are made from timing marks: submit the job with marks: true")
    path = svc.storage.marks_path(record.id)
    if not path.is_file():
        raise ApiError(404, "not_found", "the job's files have expired or were deleted")
    marks = json.loads(path.read_text(encoding="utf-8"))
    body = subtitles.render(marks, svc.store.jobs.text(record.id), fmt, max_chars, record.text_type == "ssml")
    return Response(body, mimetype=MIMETYPES[fmt],
                    headers={"Content-Disposition": f'inline; filename="{record.id}.{fmt}"'})
