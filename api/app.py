"""The Flask application factory: defaults, then VOXQ_* environment, then the test's config."""
from __future__ import annotations

from flask import Flask

from shared.config import Settings


def create_app(test_config: dict | None = None) -> Flask:
    """`test_config` may hold Flask settings, and under "VOXQ_SETTINGS" overrides of voxq's
    Settings (a section's as a dict, e.g. {"limits": {"max_chars": 200}})."""
    test_config = dict(test_config or {})
    settings = Settings.load(**test_config.pop("VOXQ_SETTINGS", {}))
    app = Flask(__name__)
    app.config.from_mapping(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.limits.max_request_bytes,
        JSON_SORT_KEYS=False,
    )
    app.config.from_prefixed_env("VOXQ_FLASK")
    app.config.update(test_config)
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    from api import auth, bodies, docs, errors, faces, health, jobs, services, streams, voices, webhooks
    from api import dashscope, lexicons, live, metrics, openai_speech, openapi, preview, seed, subtitles, web
    from shared import logs

    if not app.testing:
        logs.configure(settings.log_level)

    services.init_app(app)
    errors.init_app(app, faces.error_body)
    bodies.init_app(app)
    auth.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(streams.bp)
    app.register_blueprint(subtitles.bp)
    app.register_blueprint(lexicons.bp)
    app.register_blueprint(preview.bp)
    app.register_blueprint(voices.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openai_speech.bp)
    app.register_blueprint(live.bp)
    app.register_blueprint(dashscope.bp)
    app.register_blueprint(seed.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(web.bp)
    docs.init_app(app)
    return app
