"""A request checked before it becomes a job, for every face (jobs, OpenAI speech, the seed's /tts,
the preview): its fields, its text, its options against the live engines (shared/plan.py's one
validator), its SSML. What cannot be spoken is refused here, so none of it reaches a worker."""
from __future__ import annotations

from pydantic import ValidationError

from api import auth, lexicons, services
from api.errors import ApiError, validation_error
from shared import plan
from shared.jobs import JobRequest
from shared.options import EMOTIONS
from shared.text import frontend, ssml
from shared.text.lexicon import UnknownLexicon, resolve


def engine_caps() -> list[dict]:
    return services.get().store.workers.engines()


def known_emotions(engines: list[dict] | None = None) -> tuple[str, ...]:
    """Emotions the live workers registered (the built-in presets before any worker has)."""
    engines = engine_caps() if engines is None else engines
    found = {e for caps in engines for e in caps.get("emotions", [])}
    return tuple(sorted(found)) if found else EMOTIONS


def known_voices(engines: list[dict] | None = None) -> set[str]:
    engines = engine_caps() if engines is None else engines
    return {v["name"] for caps in engines for v in caps.get("voices", [])}


def parse_job_request(body: dict) -> JobRequest:
    svc = services.get()
    try:
        job = JobRequest.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc) from None
    caps = engine_caps()  # one Redis read for both lists
    problem = (plan.check_text(job.text, svc.settings.limits.max_chars)
               or plan.check_options(job, known_emotions(caps), known_voices(caps)))
    if problem:
        raise refused(problem)
    if job.text_type == "ssml":
        check_ssml(job.text)
    # The lexicons the job will use, fixed now: the request's, or the tenant's defaults.
    names = lexicons.for_request(job.lexicons, auth.owner())
    check_speakable(job.text, job.text_type, names)
    return job.model_copy(update={"lexicons": names})


def refused(problem: plan.Problem) -> ApiError:
    """The HTTP answer to a request that cannot be spoken: 413 for a text over the limit, else 422."""
    return ApiError(413 if problem.code == "text_too_long" else 422, *problem)


def check_ssml(text: str) -> None:
    """422 for SSML voxq will not speak, here in the API, so none of it reaches a worker."""
    try:
        ssml.parse(text)
    except ssml.SsmlError as exc:
        raise ApiError(422, exc.code, str(exc), "text") from None


def check_speakable(text: str, text_type: str, names: list[str]) -> None:
    """422 nothing_to_say for text with nothing to say (only emoji, punctuation), before a job
    exists: the rule the worker applies too (shared/text/frontend.py). The lexicons are read only
    when the text alone has nothing, since an alias may give it words."""
    ssml_doc = text_type == "ssml"
    if frontend.speakable(text, ssml=ssml_doc):
        return
    if names:
        owner = auth.owner()
        try:
            chosen = resolve(names, services.get().store.lexicons.get_many(owner, names))
        except UnknownLexicon:
            return  # deleted since for_request looked: the worker fails the job, naming it
        if frontend.speakable(text, ssml=ssml_doc, lexicons=chosen):
            return
    raise refused(plan.NOTHING_TO_SAY)
