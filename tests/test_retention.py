"""Retention: records expire in Redis after the TTL, and the sweep removes their files."""
from __future__ import annotations

import time

import redis

from shared.chunk_files import ChunkFiles
from shared.jobs import AudioResult, JobRequest
from shared.store import Store, keyspace
from shared.storage import Storage
from worker.retention import sweep


def _result(fmt: str) -> AudioResult:
    return AudioResult(format=fmt, sample_rate=24000, duration_s=1.0, bytes=44, sha256="0" * 64)


def test_expired_jobs_lose_record_text_and_files(redis_url, data_dir):
    store = Store(redis.Redis.from_url(redis_url, decode_responses=True), result_ttl_s=1)
    storage = Storage(data_dir)
    old = store.jobs.create(JobRequest(text="旧的。"), "acme")
    for path in (storage.audio_path(old.id, "wav"), storage.marks_path(old.id)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    store.jobs.mark_running(old.id)
    store.jobs.succeed(old.id, _result("wav"))  # retention counts from here
    deadline = time.time() + 5
    while store.jobs.exists(old.id):
        assert time.time() < deadline
        time.sleep(0.05)
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


def test_a_job_waiting_longer_than_the_result_ttl_keeps_its_record_until_it_ends(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client, result_ttl_s=60)
    waiting = store.jobs.create(JobRequest(text="排队很久。"), "acme")
    # A backlog longer than the result TTL: the record and text outlive it while the job waits.
    assert client.ttl(store.jobs.job_key(waiting.id)) > 3600
    assert client.ttl(store.jobs.text_key(waiting.id)) > 3600
    store.jobs.mark_running(waiting.id)
    store.jobs.succeed(waiting.id, _result("wav"))
    assert 55 <= client.ttl(store.jobs.job_key(waiting.id)) <= 60  # kept 60 s from its end


def test_an_owner_index_entry_goes_when_its_record_does(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client, result_ttl_s=1)
    ended = store.jobs.create(JobRequest(text="很快结束。"), "acme")
    waiting = store.jobs.create(JobRequest(text="还在排队。"), "acme")
    canceled = store.jobs.create(JobRequest(text="取消了。"), "acme")
    store.jobs.mark_running(ended.id)
    store.jobs.succeed(ended.id, _result("wav"))
    store.jobs.cancel(canceled.id)
    deadline = time.time() + 5
    while store.jobs.exists(ended.id) or store.jobs.exists(canceled.id):
        assert time.time() < deadline
        time.sleep(0.05)
    index = store.jobs.owner_key("acme")
    assert client.zcard(index) == 3  # nothing has touched the store since they expired
    # The next job's start drops them, without a sweep; the waiting job's entry stays.
    later = store.jobs.create(JobRequest(text="新的。"), "acme")
    assert set(client.zrange(index, 0, -1)) == {waiting.id, later.id}
    assert client.zcard(keyspace.RETAINED) == 0


def test_chunk_files_go_with_their_job_and_after_a_grace_once_it_ended(redis_url, data_dir):
    from datetime import timedelta

    from worker import retention

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client, result_ttl_s=3600)
    storage = Storage(data_dir)
    running, ended, recent = (store.jobs.create(JobRequest(text="好。"), "acme") for _ in range(3))
    for record in (running, ended, recent):
        store.jobs.mark_running(record.id)
    store.jobs.succeed(ended.id, _result("mp3"))
    store.jobs.succeed(recent.id, _result("mp3"))
    # The job ended longer ago than the grace: as a sweep an hour later would find it.
    long_ago = (retention.now() - timedelta(seconds=retention.CHUNK_GRACE_S + 60)).isoformat()
    client.hset(store.jobs.job_key(ended.id), "finished_at", long_ago)
    files = {}
    for record in (running, ended, recent):
        files[record.id] = [ChunkFiles(storage, record.id).path(i, kind) for i in range(2) for kind in ("mp3", "json")]
        files[record.id].append(storage.audio_path(record.id, "mp3"))
        for path in files[record.id]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"x")
    gone = ChunkFiles(storage, "cd" * 16).path(0, "pcm")  # a job whose record expired
    gone.parent.mkdir(parents=True, exist_ok=True)
    gone.write_bytes(b"x")
    assert sweep(store, storage) == 5
    assert not gone.exists()
    assert [p.exists() for p in files[ended.id]] == [False] * 4 + [True]  # its file stays
    assert all(p.exists() for p in files[running.id] + files[recent.id])
