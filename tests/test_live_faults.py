"""Live sessions' bounds and faults on a real cluster: keys, sessions per tenant, an idle client, a
client that stops reading, a worker killed mid-sentence, and an API process killed mid-session."""
from __future__ import annotations

import signal
import socket
from urllib.parse import urlsplit

import psutil
import pytest
import requests

from shared import keys
from tests.live_client import Session
from tests.support import wait_until

ACME, OTHER = keys.new_key(), keys.new_key()
API_KEYS = f"acme:{keys.hash_key(ACME)},other:{keys.hash_key(OTHER)}"
# Short bounds, so each fault shows within a test's time: two sessions a tenant, a 256 KB buffer and
# a 3 s send timeout for a client that stops reading, 3 s idle, 2 s leases. The workers' sweep of
# lapsed leases runs every VOXQ_CHUNK_TIMEOUT_S / 4.
pytestmark = [pytest.mark.slow, pytest.mark.live_cluster(
    worker_concurrency=2,
    api_env={"VOXQ_API_KEYS": API_KEYS, "VOXQ_LIVE_SESSIONS_PER_TENANT": 2, "VOXQ_LIVE_BUFFER_BYTES": 262144,
             "VOXQ_LIVE_SEND_TIMEOUT_S": 3, "VOXQ_LIVE_IDLE_TIMEOUT_S": 3, "VOXQ_LIVE_LEASE_S": 2,
             # Sessions here speak as fast as the workers can, not as a listener hears (test_live.py
             # tests the pacing): a fault's test need not last as long as its speech.
             "VOXQ_LIVE_AHEAD_S": 600},
    worker_env={"VOXQ_API_KEYS": API_KEYS, "VOXQ_CHUNK_TIMEOUT_S": 8, "VOXQ_VISIBILITY_TIMEOUT_S": 4})]

LONG = "随着人工智能技术的快速发展，越来越多的企业开始使用智能语音助手。今天的天气非常好，我们一起去公园散步吧。" * 6


def job(cluster, job_id: str, key: str = ACME) -> dict:
    return requests.get(f"{cluster.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"},
                        timeout=10).json()


def ended(cluster, job_id: str) -> dict | None:
    """The job once it is no longer running; None meanwhile, or while the API restarts."""
    try:
        record = job(cluster, job_id)
    except requests.RequestException:
        return None
    return record if record["status"] != "running" else None


def opened(cluster, **start) -> tuple[Session, dict]:
    """A started session of ACME's: a place a test before this one let go of is free once the
    server has seen that close, a moment later."""
    def attempt():
        client = Session(cluster.url, sock=start.pop("sock", None), max_queue=start.pop("max_queue", 16))
        first = client.start(api_key=ACME, **start)
        if first.get("code") == "too_many_sessions":
            client.close()
            return None
        return client, first

    return wait_until(attempt, 10, 0.1)


@pytest.mark.parametrize("start, headers", [({}, None), ({"api_key": "vq_wrong"}, None),
                                            ({}, {"Authorization": "Bearer vq_wrong"})])
def test_without_a_valid_key_the_session_is_refused(cluster, start, headers):
    client = Session(cluster.url, additional_headers=headers)
    try:
        error = client.start(format="pcm", **start)
        assert error["type"] == "error" and error["code"] == "unauthorized"
        assert client.until_closed() == 4401
    finally:
        client.close()


def test_a_key_in_the_header_or_the_first_message_opens_a_session(cluster):
    for client, start in ((Session(cluster.url, additional_headers={"Authorization": f"Bearer {ACME}"}), {}),
                          (Session(cluster.url), {"api_key": ACME})):
        try:
            started = client.start(format="pcm", **start)
            client.send(type="text", text="好。")
            client.send(type="finish")
            client.until_event("finished")
            assert job(cluster, started["session_id"])["status"] == "succeeded"
            assert job(cluster, started["session_id"], OTHER) == {  # a tenant sees only its own sessions
                "error": {"code": "not_found", "message": "no such job", "field": None}}
        finally:
            client.close()


def test_a_tenant_has_at_most_its_sessions_and_a_closed_one_frees_its_place(cluster):
    first, second, third, theirs = (Session(cluster.url) for _ in range(4))
    try:
        first.start(api_key=ACME)
        second.start(api_key=ACME)
        refused = third.start(api_key=ACME)
        assert refused["code"] == "too_many_sessions" and third.until_closed() == 4429
        assert theirs.start(api_key=OTHER)["type"] == "started"  # another tenant's places are its own
        first.close()

        def reopened():
            again = Session(cluster.url)
            try:
                return again.start(api_key=ACME)["type"] == "started"
            finally:
                again.close()

        wait_until(reopened, 10)  # once the server has seen the close
    finally:
        for client in (first, second, third, theirs):
            client.close()


def test_an_idle_session_is_closed_and_its_record_says_why(cluster):
    client, started = opened(cluster)
    try:
        assert client.until_closed(20) == 4408
        assert client.events[-1]["code"] == "idle_timeout"
        record = job(cluster, started["session_id"])
        assert record["status"] == "failed" and record["error"]["code"] == "idle_timeout"
    finally:
        client.close()


def test_a_client_that_stops_reading_is_cut_off_and_the_record_says_why(cluster):
    # A receive buffer of 4 KB and a client library that stops reading once one frame waits: the
    # server's writes block, its 256 KB bound fills, and after 3 s without progress it cuts the client off.
    host, port = urlsplit(cluster.url).hostname, urlsplit(cluster.url).port
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, port))
    client, started = opened(cluster, sock=sock, max_queue=1, format="pcm", sample_rate=48000)
    try:
        client.feed(LONG, size=200)
        client.send(type="finish")
        record = wait_until(lambda: ended(cluster, started["session_id"]), 60)
        assert record["status"] == "failed" and record["error"]["code"] == "slow_reader"
        # When it reads at last: the audio that had got through, then the end of the connection.
        assert client.until_closed(30) in (4409, 1006)
        assert 0 < len(client.audio()) < len(LONG) * 0.2 * 96000
    finally:
        client.close()


def _busy_child(worker: psutil.Process) -> psutil.Process:
    """The pool child that is speaking: the one whose CPU time grows."""
    children = worker.children()
    before = {c.pid: sum(c.cpu_times()[:2]) for c in children}

    def grown():
        for child in children:
            if sum(child.cpu_times()[:2]) - before[child.pid] > 0.05:
                return child
        return None

    return wait_until(grown, 10, 0.02)


def test_a_worker_killed_mid_sentence_the_sentence_is_spoken_again_elsewhere_and_nothing_twice(cluster):
    client, _ = opened(cluster, format="pcm", loudness="off")
    try:
        client.feed(LONG[:180], size=30)
        client.send(type="finish")
        client.until(lambda: client.audio())
        worker = psutil.Process(cluster.cluster.supervisor.process("worker").pid)
        _busy_child(worker).send_signal(signal.SIGKILL)
        client.until_event("finished", timeout=120)
        ended = [e for e in client.events if e["type"] == "sentence_ended"]
        assert [e["index"] for e in ended] == list(range(len(ended)))
        # What was sent is each sentence's finished audio, once: a second attempt skipped what went out.
        files = b"".join(requests.get(f"{cluster.url}/v1/jobs/{e['job_id']}/audio",
                                      headers={"Authorization": f"Bearer {ACME}"}, timeout=10).content
                         for e in ended)
        assert client.audio() == files
        assert any(job(cluster, e["job_id"])["progress"] for e in ended)
    finally:
        client.close()


def test_an_api_process_killed_mid_session_the_client_sees_the_close_and_the_record_says_why(cluster):
    client, started = opened(cluster, format="pcm")
    try:
        client.feed(LONG[:60])
        client.until(lambda: client.audio())
        api = psutil.Process(cluster.cluster.supervisor.process("api").pid)
        for child in api.children():  # gunicorn's workers; the master starts new ones
            child.send_signal(signal.SIGKILL)
        assert client.until_closed(30) == 1006
        record = wait_until(lambda: ended(cluster, started["session_id"]), 60)
        assert record["status"] == "failed" and record["error"]["code"] == "session_lost"
    finally:
        client.close()
