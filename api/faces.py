"""voxq's three faces (its own API, OpenAI's speech endpoint, the seed's /tts), told apart by path,
and the shape of each face's errors: what Flask's handlers (api/errors.py) and gunicorn's own
answers (api/gunicorn_worker.py) both use."""
from __future__ import annotations

from api import errors, openai_speech, seed

# A path, exact or a prefix ending in "/", to its face's error shape; any other path is voxq's.
FACES = {"/tts": seed.error_body, "/v1/audio/speech": openai_speech.error_body}


def error_body(path: str | None, status: int, code: str, message: str, field: str | None = None) -> tuple[int, dict]:
    shape = next((s for prefix, s in FACES.items()
                  if path == prefix or (path and prefix.endswith("/") and path.startswith(prefix))), errors.error_body)
    return shape(status, code, message, field)
