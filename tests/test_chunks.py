"""Chunked jobs: planned into chunks of whole segments, spoken by any worker, assembled in order,
the same audio as one-piece synthesis; fair to short jobs; cancel, progress and retention."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import redis
import soundfile as sf

from shared import plan
from shared.chunk_files import ChunkFiles
from shared.config import Settings
from shared.jobs import JobRequest
from shared.options import SynthesisOptions
from shared.storage import Storage
from shared.store import Store
from tests.support import Worker, wait_for, wait_until
from worker.pipeline import Pipeline

LONG = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。今天的天气非常好，我们一起去公园散步吧。" * 6


def test_chunks_are_whole_segments_in_order_and_the_first_is_small(settings):
    segments = plan.segments(LONG, settings)
    chunks = plan.chunks(segments, SynthesisOptions(), settings)
    assert [s for chunk in chunks for s in chunk.segments] == segments  # every segment once, in order
    assert [chunk.first for chunk in chunks] == [sum(len(c.segments) for c in chunks[:i]) for i in range(len(chunks))]
    assert len(chunks) >= 4
    seconds = [sum(plan.expected_seconds(s, 1.0, settings) for s in chunk.segments) for chunk in chunks]
    longest = max(plan.expected_seconds(s, 1.0, settings) for s in segments)
    assert seconds[0] < settings.text.first_chunk_s + longest
    assert all(s < settings.text.chunk_s + longest for s in seconds)
    assert all(s >= settings.text.chunk_s for s in seconds[1:-1])
    # Faster speech: more text per chunk, since chunks are sized by audio, not characters.
    fast = plan.chunks(segments, SynthesisOptions(speed=2.0), settings)
    assert len(fast) < len(chunks)


@pytest.mark.parametrize("fmt,rate", [("wav", None), ("pcm", None), ("wav", 16000)])
def test_chunks_laid_end_to_end_are_the_one_piece_audio(engine, settings, tmp_path, fmt, rate):
    options = SynthesisOptions(format=fmt, sample_rate=rate, marks=True)
    text = LONG[:160]
    segments = plan.segments(text, settings)
    pipeline = Pipeline(engine, settings)
    whole = pipeline.render(segments, options, tmp_path / f"whole.{fmt}", tmp_path / "whole.json")
    chunks = pipeline.chunks(segments, options)
    assert len(chunks) >= 2
    files = ChunkFiles(Storage(tmp_path / "data"), "ab" * 16, fmt)
    for index, chunk in enumerate(chunks):
        pipeline.speak(files, chunk, index, len(chunks), options)
    built = pipeline.assemble(files, len(chunks), options, tmp_path / f"chunked.{fmt}", tmp_path / "chunked.json")
    if fmt == "pcm":
        one, two = (np.frombuffer((tmp_path / f"{n}.pcm").read_bytes(), "<i2") for n in ("whole", "chunked"))
    else:
        one, two = (sf.read(tmp_path / f"{n}.wav", dtype="int16")[0] for n in ("whole", "chunked"))
    if rate is None:
        assert np.array_equal(one, two)  # sample for sample
        assert built.sha256 == whole.sha256
    else:
        # Resampled per chunk: chunks meet in a pause, where the resampler's edges are silent.
        assert abs(len(one) - len(two)) <= len(chunks)
        n = min(len(one), len(two))
        assert np.abs(one[:n].astype(int) - two[:n].astype(int)).max() <= 2
    marks_one = json.loads((tmp_path / "whole.json").read_text())
    marks_two = json.loads((tmp_path / "chunked.json").read_text())
    assert [m["value"] for m in marks_one] == [m["value"] for m in marks_two]
    assert max(abs(a["start_ms"] - b["start_ms"]) for a, b in zip(marks_one, marks_two)) < 1.0


def test_dispatch_is_round_robin_per_tenant_and_bounded(redis_url):
    store = Store(redis.Redis.from_url(redis_url, decode_responses=True), result_ttl_s=600)
    jobs = {}
    for name in ("a1", "a2"):
        record = store.jobs.create(JobRequest(text="好。" * 10), "acme")
        store.jobs.mark_running(record.id)
        store.chunks.save_plan(record.id, "acme", [{"first": i, "segments": []} for i in range(5)], 5, 24000,
                               "interactive", "key", 1000.0)
        jobs[name] = record.id
    # Chunk 0 is spoken by the planning task, and is in flight from the plan on: it fills the window.
    assert store.chunks.in_flight("acme") == 2
    assert [(j, i) for j, i, _ in store.chunks.dispatch("acme", 3, 1000.0, 60)] == [(jobs["a1"], 1)]
    for job_id in jobs.values():
        assert store.chunks.land(job_id, "acme", 0, 1)[0]
    handed = store.chunks.dispatch("acme", window=3, now=1000.5, stale_s=60)
    assert [(j, i) for j, i, _ in handed] == [(jobs["a2"], 1), (jobs["a1"], 2)]  # round robin
    assert store.chunks.dispatch("acme", window=3, now=1001.0, stale_s=60) == []  # window full
    assert store.chunks.land(jobs["a1"], "acme", 1, 1)[0]
    assert [(j, i) for j, i, _ in store.chunks.dispatch("acme", 3, 1002.0, 60)] == [(jobs["a2"], 2)]
    # Another tenant has its own window.
    other = store.jobs.create(JobRequest(text="好。"), "beta")
    store.jobs.mark_running(other.id)
    store.chunks.save_plan(other.id, "beta", [{"first": i, "segments": []} for i in range(3)], 3, 24000,
                           "batch", "key", 1003.0)
    assert [(j, i, q) for j, i, q in store.chunks.dispatch("beta", 3, 1003.0, 60)] == [
        (other.id, 1, "batch"), (other.id, 2, "batch")]
    # A chunk dispatched long ago that never landed goes out again; a canceled job's do not.
    store.jobs.cancel(jobs["a2"])
    again = store.chunks.dispatch("acme", 3, 1003.0 + 61, 60)
    assert (jobs["a1"], 2) in [(j, i) for j, i, _ in again]
    assert all(j != jobs["a2"] for j, _, _ in again)
    # So does a chunk 0 whose planning task was lost after it saved the plan.
    assert (other.id, 0) in [(j, i) for j, i, _ in store.chunks.dispatch("beta", 3, 1003.0 + 61, 60)]


@pytest.mark.slow
def test_one_job_runs_on_every_worker_and_reports_chunk_progress(client, redis_url, data_dir, tmp_path):
    workers = [Worker(redis_url, data_dir, tmp_path / f"w{i}.log", name=f"w{i}") for i in (1, 2)]
    try:
        for worker in workers:
            worker.wait_ready()
        job_id = client.post("/v1/jobs", json={"text": LONG, "format": "mp3"}).get_json()["id"]
        seen = set()
        deadline = time.time() + 180
        while (body := client.get(f"/v1/jobs/{job_id}").get_json())["status"] in ("queued", "running"):
            progress = body["progress"]
            if progress["chunks_total"]:
                assert progress["chunks_done"] <= progress["chunks_total"]
                assert progress["segments_done"] <= progress["segments_total"]
                seen.add(progress["chunks_done"])
            assert time.time() < deadline
            time.sleep(0.05)
        assert body["status"] == "succeeded", body
        progress = body["progress"]
        assert progress["chunks_done"] == progress["chunks_total"] >= 4
        assert progress["segments_done"] == progress["segments_total"]
        assert len(seen) >= 3  # progress moved chunk by chunk
        spoke = [sum(f"job {job_id} spoke chunk" in line for line in (tmp_path / f"w{i}.log").read_text().splitlines())
                 for i in (1, 2)]
        assert all(n >= 1 for n in spoke), spoke  # both workers spoke chunks of the one job
        audio, rate = sf.read(data_dir / "audio" / job_id[:2] / f"{job_id}.mp3")
        assert abs(len(audio) / rate - body["result"]["duration_s"]) < 0.2
        # Only the file and the streamable pieces remain; the PCM pieces went with assembly.
        names = sorted(p.name for p in data_dir.rglob("*") if p.is_file())
        assert names == sorted([f"{job_id}.mp3"] + [f"{job_id}.c{i:05d}.mp3"
                                                    for i in range(progress["chunks_total"])])
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.slow
def test_a_short_job_waits_for_about_one_chunk_not_for_long_jobs(client, redis_url, data_dir, tmp_path):
    worker = Worker(redis_url, data_dir, tmp_path / "w.log")  # one process: the hardest case
    try:
        worker.wait_ready()
        long_ids = [client.post("/v1/jobs", json={"text": LONG * 3 + str(i)}).get_json()["id"] for i in range(2)]
        for job_id in long_ids:  # both long jobs under way
            while client.get(f"/v1/jobs/{job_id}").get_json()["progress"]["chunks_done"] < 1:
                time.sleep(0.05)
        short = client.post("/v1/jobs", json={"text": "你好。"}).get_json()["id"]
        assert wait_for(client, short, timeout=60)["status"] == "succeeded"
        long_jobs = [client.get(f"/v1/jobs/{job_id}").get_json() for job_id in long_ids]
        # The short job ended while both long jobs still had most of their chunks to go.
        progress = [(j["status"], j["progress"]["chunks_done"], j["progress"]["chunks_total"]) for j in long_jobs]
        assert all(status == "running" and done <= total / 2 for status, done, total in progress), progress
    finally:
        worker.stop()


@pytest.mark.slow
def test_cancel_stops_every_chunk(client, redis_url, data_dir, tmp_path):
    workers = [Worker(redis_url, data_dir, tmp_path / f"w{i}.log", name=f"w{i}") for i in (1, 2)]
    try:
        for worker in workers:
            worker.wait_ready()
        job_id = client.post("/v1/jobs", json={"text": LONG}).get_json()["id"]
        while client.get(f"/v1/jobs/{job_id}").get_json()["progress"]["chunks_done"] < 2:
            time.sleep(0.05)
        assert client.delete(f"/v1/jobs/{job_id}").status_code == 202
        store = client.application.extensions["voxq"].store
        # Wait until nothing of the job is queued or running any more, then nothing more lands.
        deadline = time.time() + 60
        while store.queues.depths(["interactive"])["interactive"] or store.chunks.in_flight("anonymous"):
            assert time.time() < deadline
            time.sleep(0.1)
        body = client.get(f"/v1/jobs/{job_id}").get_json()
        assert body["status"] == "canceled"
        assert body["progress"]["chunks_done"] < body["progress"]["chunks_total"]
        # Every chunk dispatched before the cancel has been consumed, none spoke, and no chunk
        # file of the job is left behind.
        assert store.chunks.attempts(job_id).keys() <= set(range(body["progress"]["chunks_done"] + 2))
        assert list(data_dir.rglob(f"{job_id}.c*")) == []
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.slow
def test_a_chunk_whose_dispatcher_died_before_publishing_it_goes_out_again(client, redis_url, data_dir, tmp_path,
                                                                            settings):
    # The state a worker killed between claiming chunks in Redis and publishing them leaves: the
    # job planned, chunks 1.. in flight, no message for them. (Killing a worker inside those few
    # microseconds cannot be done on purpose, so the test writes that state, then runs for real.)
    job_id = client.post("/v1/jobs", json={"text": LONG}).get_json()["id"]
    store = client.application.extensions["voxq"].store
    segments = plan.segments(LONG, settings)
    chunks = plan.chunks(segments, SynthesisOptions(), settings)
    encoded = [chunk.encode() for chunk in chunks]
    assert store.chunks.save_plan(job_id, "anonymous", encoded, len(segments), 24000, "interactive", "", time.time())
    claimed = store.chunks.dispatch("anonymous", window=4, now=time.time(), stale_s=5)
    assert len(claimed) == min(3, len(chunks) - 1) >= 2  # (chunk 0 holds the fourth place) ... never published
    worker = Worker(redis_url, data_dir, tmp_path / "w.log", VOXQ_CHUNK_TIMEOUT_S=5)
    try:
        worker.wait_ready()
        # Chunk 0 runs at once; the claimed chunks only when a redispatch finds them stale, since
        # nothing else of this tenant would ever dispatch again.
        body = wait_for(client, job_id, timeout=90)
        assert body["status"] == "succeeded", body
        assert store.chunks.renders(job_id) == {i: 1 for i in range(len(chunks))}
        assert store.chunks.owners() == set()  # nothing left waiting or in flight
    finally:
        worker.stop()


def test_a_job_whose_first_message_was_lost_is_sent_again_and_succeeds(client, redis_url, data_dir, tmp_path):
    # The state a lost first message leaves: the record queued, and no message for it (published to
    # an old master that lost it in a split brain, or taken by a worker main SIGKILLed before kombu
    # recorded it unacknowledged). Only the redispatch's sweep of queued jobs can run it now.
    store = client.application.extensions["voxq"].store
    record = store.jobs.create(JobRequest(text="今天的天气非常好，我们一起去公园散步吧。"), "anonymous")
    # Recorded as queued with the record (asking moves its due time to now: the wait starts here).
    assert store.jobs.due_queued(0.0) == [record.id]
    accepted = time.monotonic()
    worker = Worker(redis_url, data_dir, tmp_path / "w.log", VOXQ_CHUNK_TIMEOUT_S=5)
    try:
        worker.wait_ready()
        body = wait_for(client, record.id, timeout=60)
        took = time.monotonic() - accepted
        assert body["status"] == "succeeded", body
        # Sent again after the timeout, by the redispatch a few times per timeout (and the
        # worker's start): about 1.25 x 5 s, with room for a slow machine.
        assert took < 5 * 1.25 + 20, took
        assert store.jobs.get(record.id).attempts == 1
        assert store.jobs.due_queued(0.0) == []  # nothing left to re-send
        assert "sent again" in (tmp_path / "w.log").read_text()
    finally:
        worker.stop()


def test_the_queued_set_returns_a_waiting_job_once_per_timeout_and_forgets_started_ones(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client, result_ttl_s=600)
    waiting, started, canceled, deleted = (store.jobs.create(JobRequest(text="好。"), "acme") for _ in range(4))
    store.jobs.mark_running(started.id)
    store.jobs.cancel(canceled.id)
    store.jobs.delete(deleted)
    now = time.time()
    assert store.jobs.due_queued(60, at=now) == []  # none has waited a minute yet
    assert store.jobs.due_queued(60, at=now + 61) == [waiting.id]
    assert store.jobs.due_queued(60, at=now + 62) == []  # sent again: due only a timeout later
    assert store.jobs.due_queued(60, at=now + 122) == [waiting.id]
    store.jobs.mark_running(waiting.id)
    assert store.jobs.due_queued(0, at=now + 999) == []
    assert not client.exists("voxq:queued")  # nothing left behind


def test_a_duplicate_first_task_is_harmless(client, redis_url, data_dir, tmp_path, settings):
    # Two copies of a job's first task (the sweep re-sent a message that was only late): one plans
    # and speaks the job, the other is skipped, whether it comes at the same time, while the job
    # runs or after it ended; every chunk is spoken to success once.
    from shared import tasks

    svc = client.application.extensions["voxq"]
    store = svc.store
    job_id = client.post("/v1/jobs", json={"text": LONG}).get_json()["id"]
    record = store.jobs.get(job_id)
    tasks.send_first_task(svc.celery, store, svc.settings, job_id, record.priority, record.text_chars)
    worker = Worker(redis_url, data_dir, tmp_path / "w.log", concurrency=2)
    try:
        worker.wait_ready()
        wait_until(lambda: store.jobs.status(job_id) == "running", 60, 0.02, "the job running")
        tasks.send_first_task(svc.celery, store, svc.settings, job_id, record.priority, record.text_chars)
        body = wait_for(client, job_id, timeout=120)
        assert body["status"] == "succeeded", body
        tasks.send_first_task(svc.celery, store, svc.settings, job_id, record.priority, record.text_chars)
        log_text = lambda: (tmp_path / "w.log").read_text()  # noqa: E731
        wait_until(lambda: log_text().count("planned and spoke chunk 0: skipped") == 3, 30, 0.1,
                   "the three copies skipped")
        assert log_text().count("a duplicate first task, skipped") >= 1  # one came while the job ran
        assert store.jobs.get(job_id).attempts == 1  # planned once: no copy counted as an attempt
        total = store.jobs.get(job_id).progress.chunks_total
        assert store.chunks.renders(job_id) == {i: 1 for i in range(total)}
        assert client.get(f"/v1/jobs/{job_id}").get_json()["status"] == "succeeded"
    finally:
        worker.stop()


def test_a_long_first_sentence_is_cut_after_its_first_clause_with_its_readings():
    from shared.text.segmenter import Segment

    first = Segment("随着人工智能技术的快速发展，越来越多的企业开始使用。", "sentence", rate=1.2,
                    pinyin=[None] * 26, spans=[[i, i + 1] for i in range(26)],
                    marks=[{"name": "a", "at": 3}, {"name": "b", "at": 14}])
    head, tail, after = plan.quick_start([first, Segment("好。", "sentence")])
    assert head.text == "随着人工智能技术的快速发展，" and head.pause == "clause" and head.rate == 1.2
    assert tail.text == "越来越多的企业开始使用。" and tail.pause == "sentence" and after.text == "好。"
    assert head.spans == [[i, i + 1] for i in range(14)] and tail.spans[0] == [14, 15]
    assert len(head.pinyin) == 14 and len(tail.pinyin) == 12
    assert head.marks == [{"name": "a", "at": 3}] and tail.marks == [{"name": "b", "at": 0}]
    # Short first segments, and long ones without a clause, stay whole.
    assert plan.quick_start([Segment("你好。", "sentence")]) == [Segment("你好。", "sentence")]
    whole = Segment("随着人工智能技术的快速发展越来越多的企业开始使用。", "sentence")
    assert plan.quick_start([whole]) == [whole]


def test_the_preview_shows_the_segments_a_worker_speaks_for_a_long_first_sentence(client, worker):
    # A first sentence long enough to be cut after its first clause: the preview must show the
    # cut, since the worker speaks it that way. The rest is long enough that the plan (which goes
    # when the job ends) can be read while the job runs.
    text = "随着人工智能技术的快速发展，越来越多的企业开始在客户服务中使用智能语音助手。" + "今天天气很好，我们去公园散步。" * 30
    preview = client.post("/v1/text/preview", json={"text": text}).get_json()
    shown = [segment["text"] for segment in preview["segments"]]
    assert shown[0] == "随着人工智能技术的快速发展，"
    job_id = client.post("/v1/jobs", json={"text": text}).get_json()["id"]
    store = client.application.extensions["voxq"].store
    deadline = time.time() + 60
    while (total := store.chunks.layout(job_id)[0]) is None:
        assert time.time() < deadline
        time.sleep(0.02)
    plan_now = [store.chunks.chunk(job_id, i) for i in range(total)]
    spoken = [s.text for chunk in plan_now for s in plan.Chunk.decode(chunk).segments]
    assert spoken == shown
    body = wait_for(client, job_id)
    assert body["status"] == "succeeded", body
    assert body["progress"]["segments_total"] == len(shown)


@pytest.mark.parametrize("text", [
    LONG,
    "价格是3.5元!下一句?好的",
    "“今天的天气非常好。”我们一起去公园散步吧！\n第二段：2024年3月5日，气温-3℃。",
    "只有一句没有句号，但是很长很长很长很长很长很长很长",
    "你好。😀😀",
])
def test_the_first_sentence_planned_first_and_the_rest_after_are_the_whole_text_planned(settings, text):
    from shared.text import frontend

    whole = plan.quick_start(frontend.plan(text, max_segment_chars=settings.text.max_segment_chars,
                                           sentence_pause_s=settings.text.sentence_pause_s,
                                           clause_pause_s=settings.text.clause_pause_s))
    first = plan.head(text, settings)
    assert first.end <= len(text)
    assert first.segments + plan.rest(text, first, settings) == whole == plan.segments(text, settings)
    # The first chunk spoken early is the first chunk of the whole plan.
    early = plan.chunks(first.segments, SynthesisOptions(), settings)[0]
    assert plan.chunks(whole, SynthesisOptions(), settings, len(early.segments))[0] == early
