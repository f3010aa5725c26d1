"""The caller's own jobs: found by ID for their owner only, and shown with their links."""
from __future__ import annotations

from flask import url_for

from api import auth, services
from api.errors import ApiError
from shared.jobs import JobRecord, JobView, job_view
from shared.storage import JOB_ID


def owned_job(job_id: str) -> JobRecord:
    """The caller's job, or 404: another tenant's job must look exactly like no job at all."""
    if not JOB_ID.match(job_id):
        raise ApiError(404, "not_found", "no such job")
    record = services.get().store.jobs.get(job_id)
    if record is None or record.owner != auth.owner():
        raise ApiError(404, "not_found", "no such job")
    return record


def links(job_id: str) -> dict[str, str]:
    return {
        "self": url_for("jobs.get_job", job_id=job_id),
        "audio": url_for("jobs.get_audio", job_id=job_id),
    }


def view(record: JobRecord) -> JobView:
    return job_view(record, url_for("jobs.list_jobs"))
