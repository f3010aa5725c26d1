"""Retention: records expire in Redis after the TTL, and the sweep removes their files."""
from __future__ import annotations

import time

import redis

from shared.jobs import JobRequest
from shared.store import Store
from shared.storage import Storage
from worker.retention import sweep


def test_expired_jobs_lose_record_text_and_files(redis_url, data_dir):
    store = Store(redis.Redis.from_url(redis_url, decode_responses=True), result_ttl_s=1)
    storage = Storage(data_dir)
    old = store.jobs.create(JobRequest(text="旧的。"), "acme")
    for path in (storage.audio_path(old.id, "wav"), storage.marks_path(old.id)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    time.sleep(1.2)
    fresh_store = Store(store.client, result_ttl_s=3600)
    fresh = fresh_store.jobs.create(JobRequest(text="新的。"), "acme")
    fresh_audio = storage.audio_path(fresh.id, "wav")
    fresh_audio.parent.mkdir(parents=True, exist_ok=True)
    fresh_audio.write_bytes(b"y")
    assert store.jobs.get(old.id) is None and store.jobs.text(old.id) is None  # Redis expired them
    assert sweep(fresh_store, storage) == 2
    assert not storage.audio_path(old.id, "wav").exists()
    assert not storage.marks_path(old.id).exists()
    assert fresh_audio.exists() and fresh_store.jobs.get(fresh.id) is not None
