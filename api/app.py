"""The Flask application factory: defaults, then VOXQ_* environment, then the test's config."""
from __future__ import annotations

from flask import Flask

from shared.config import Settings


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    settings = Settings.from_env(**(test_config or {}).get("VOXQ_SETTINGS", {}))
    app.config.from_mapping(
        SETTINGS=settings,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        JSON_SORT_KEYS=False,
    )
    app.config.from_prefixed_env("VOXQ_FLASK")
    if test_config:
        app.config.update({k: v for k, v in test_config.items() if k != "VOXQ_SETTINGS"})
    app.json.ensure_ascii = False
    app.json.sort_keys = False

    from api import auth, docs, errors, health, jobs, services, voices, webhooks
    from api import metrics, openai_speech, openapi, seed, web
    from shared import logs

    if not app.testing:
        logs.configure(settings.log_level)

    services.init_app(app)
    errors.init_app(app)
    auth.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(voices.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(openai_speech.bp)
    app.register_blueprint(seed.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(web.bp)
    docs.init_app(app)
    return app
