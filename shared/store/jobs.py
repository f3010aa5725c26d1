"""Job records in Redis: create, read, list, atomic status transitions, and the webhook state
kept in the job's hash. The only writer of a job's keys."""
from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import datetime
from typing import Iterable

from shared.jobs import HOPS, JobError, JobRecord, JobRequest, Progress, WebhookState, now
from shared.store import keyspace

# Move a job to a new status only if it is in one of the allowed ones, and set fields with it,
# in one step: a redelivered task, a cancel and a finish can race, and exactly one must win.
_TRANSITION = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {0, ''} end
local n = tonumber(ARGV[1])
for i = 2, n + 1 do
  if ARGV[i] == current then
    redis.call('HSET', KEYS[1], 'status', ARGV[n + 2])
    for j = n + 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 1]) end
    return {1, current}
  end
end
return {0, current}
"""

# A job not yet ended keeps its record at least this long, whatever the result TTL: retention
# counts from a job's end, and a backlog longer than the TTL must not expire work that was accepted.
UNFINISHED_TTL_S = 7 * 24 * 3600

# KEYS: job hash, text, plan, chunks done, retained, queued. ARGV: TTL, now, job ID, keep the text
# (1/0). A job's end: its retention starts now, its plan goes, its owner-index entry is due to go
# when the record does, and it is no longer waiting for its first task.
_ENDED = """
local record = redis.call('HGET', KEYS[1], 'record')
if not record then return 0 end
local ttl = tonumber(ARGV[1])
redis.call('EXPIRE', KEYS[1], ttl)
if ARGV[4] == '1' then redis.call('EXPIRE', KEYS[2], ttl) else redis.call('DEL', KEYS[2]) end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[6], ARGV[3])
redis.call('ZADD', KEYS[5], tonumber(ARGV[2]) + ttl, ARGV[3] .. cjson.decode(record).owner)
return 1
"""

# KEYS: retained. ARGV: now, how many at most, the owner-index key prefix. Owner-index entries of
# records whose retention ran out go (a member is the 32-character job ID, then the owner).
_FORGET_EXPIRED = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(gone) do
  redis.call('ZREM', ARGV[3] .. string.sub(member, 33), string.sub(member, 1, 32))
  redis.call('ZREM', KEYS[1], member)
end
return #gone
"""

# KEYS: queued. ARGV: now, how old an entry must be, how many at most, the job key prefix. The
# jobs queued for longer than that: each one's score moves to now (so it is due again only after
# another wait), and an entry whose job is no longer queued (running, ended, deleted, expired) goes.
_DUE_QUEUED = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]),
                       'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  if redis.call('HGET', ARGV[4] .. id, 'status') == 'queued' then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]), id)
    table.insert(out, id)
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

# Both run only while the job record exists, so a deleted job never comes back as a stray key.
# Take the job's webhook ID (once; a redelivery keeps the ID and starts a new generation).
_CLAIM_WEBHOOK = """
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then return false end
if redis.call('HSETNX', KEYS[1], 'webhook_id', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'webhook_gen', 0)
  return {ARGV[1], 0, 1}
end
if ARGV[2] == '1' then
  return {redis.call('HGET', KEYS[1], 'webhook_id'), redis.call('HINCRBY', KEYS[1], 'webhook_gen', 1), 0}
end
return false
"""
_SAVE_WEBHOOK = """
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'webhook', ARGV[1])
return 1
"""


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# KEYS: job hash. ARGV: field, value. Only on a record that exists: a hop timed after its job
# expired must not leave a hash behind.
_MARK = """
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2])
"""


class JobStore:
    def __init__(self, client, ttl_s: int):
        self.redis = client
        self.ttl_s = ttl_s
        self.unfinished_ttl_s = max(ttl_s, UNFINISHED_TTL_S)
        # After this, no record created so long ago can still exist (it waited, then was kept).
        self.horizon_s = self.unfinished_ttl_s + ttl_s + 3600
        self._ended = client.register_script(_ENDED)
        self._forget_expired = client.register_script(_FORGET_EXPIRED)
        self._transition = client.register_script(_TRANSITION)
        self._claim_webhook = client.register_script(_CLAIM_WEBHOOK)
        self._save_webhook = client.register_script(_SAVE_WEBHOOK)
        self._mark = client.register_script(_MARK)
        self._due_queued = client.register_script(_DUE_QUEUED)

    job_key = staticmethod(keyspace.job)
    text_key = staticmethod(keyspace.job_text)
    owner_key = staticmethod(keyspace.owner_index)

    # create
    def create(self, request: JobRequest, owner: str, lexicons: list[str] | None = None,
               live_session: str | None = None) -> JobRecord:
        record = JobRecord(
            id=uuid.uuid4().hex,
            owner=owner,
            priority=request.priority,
            options=request.options(),
            text_chars=len(request.text),
            text_sha256=text_sha256(request.text),
            text_type=request.text_type,
            lexicons=lexicons if lexicons is not None else list(request.lexicons or []),
            callback_url=request.callback_url,
            metadata=request.metadata,
            created_at=now(),
            webhook=WebhookState() if request.callback_url else None,
            live_session=live_session,
        )
        fields = {
            "record": record.model_dump_json(
                include={"id", "owner", "priority", "options", "text_chars", "text_sha256", "text_type",
                         "lexicons", "callback_url", "metadata", "created_at", "live_session"}
            ),
            "status": "queued",
            "attempts": 0,
            "t:accepted": time.time(),
        }
        if record.webhook:
            fields["webhook"] = record.webhook.model_dump_json()
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.job_key(record.id), mapping=fields)
        pipe.expire(self.job_key(record.id), self.unfinished_ttl_s)
        pipe.set(self.text_key(record.id), request.text, ex=self.unfinished_ttl_s)
        pipe.zadd(self.owner_key(owner), {record.id: record.created_at.timestamp()})
        # In the same step as the record: a job that exists is a job the sweep can find if its
        # first message never reaches a worker (due_queued).
        pipe.zadd(keyspace.QUEUED, {record.id: fields["t:accepted"]})
        # A tenant who stops submitting leaves no index behind once its last job could be gone.
        pipe.expire(self.owner_key(owner), self.horizon_s)
        self.forget_expired(pipe)
        pipe.execute()
        return record

    def discard(self, record: JobRecord) -> None:
        """Undo a create whose publish failed, so no orphan record is left queued forever."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.job_key(record.id), self.text_key(record.id), keyspace.job_plan(record.id),
                    keyspace.job_chunks_done(record.id))
        pipe.zrem(self.owner_key(record.owner), record.id)
        pipe.zrem(keyspace.RETAINED, record.id + record.owner)
        pipe.zrem(keyspace.QUEUED, record.id)
        pipe.execute()

    # read
    def get(self, job_id: str) -> JobRecord | None:
        return self._parse(self.redis.hgetall(self.job_key(job_id)))

    def get_many(self, job_ids: Iterable[str]) -> list[JobRecord]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.job_key(job_id))
        return [r for r in map(self._parse, pipe.execute()) if r is not None]

    def set_text(self, job_id: str, text: str) -> None:
        """A live session's text, once it has all come: the record's count and digest follow it."""
        fields = self.redis.hget(self.job_key(job_id), "record")
        if fields is None:
            return
        record = json.loads(fields)
        record.update(text_chars=len(text), text_sha256=text_sha256(text))
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.job_key(job_id), "record", json.dumps(record, ensure_ascii=False))
        pipe.set(self.text_key(job_id), text, keepttl=True)
        pipe.execute()

    def text(self, job_id: str) -> str | None:
        return self.redis.get(self.text_key(job_id))

    def status(self, job_id: str) -> str | None:
        return self.redis.hget(self.job_key(job_id), "status")

    def exists(self, job_id: str) -> bool:
        return bool(self.redis.exists(self.job_key(job_id)))

    @staticmethod
    def _parse(fields: dict) -> JobRecord | None:
        if not fields or "record" not in fields:
            return None
        data = json.loads(fields["record"])
        data["status"] = fields.get("status", "queued")
        data["attempts"] = int(fields.get("attempts", 0))
        data["cache_hit"] = fields.get("cache_hit") == "1"
        data["progress"] = Progress(
            segments_done=int(fields.get("segments_done", 0)),
            segments_total=int(fields["segments_total"]) if fields.get("segments_total") else None,
            chunks_done=int(fields.get("chunks_done", 0)),
            chunks_total=int(fields["chunks_total"]) if fields.get("chunks_total") else None,
        )
        for name in ("started_at", "finished_at"):
            if fields.get(name):
                data[name] = fields[name]
        if fields.get("result"):
            data["result"] = json.loads(fields["result"])
        if fields.get("error"):
            data["error"] = json.loads(fields["error"])
        if fields.get("webhook"):
            data["webhook"] = json.loads(fields["webhook"])
        data["timings"] = {hop: float(fields[f"t:{hop}"]) for hop in HOPS if f"t:{hop}" in fields}
        return JobRecord.model_validate(data)

    def list(self, owner: str, status: str | None, limit: int, cursor: str | None):
        """Newest first. The cursor is '<score>:<id>' of the last job already returned."""
        key = self.owner_key(owner)
        max_score, after_id = "+inf", None
        if cursor:
            score, _, after_id = cursor.partition(":")
            max_score = score
        found: list[JobRecord] = []
        offset = 0
        page = max(limit * 2, 50)
        while len(found) < limit:
            entries = self.redis.zrevrangebyscore(key, max_score, "-inf", start=offset, num=page, withscores=True)
            if not entries:
                return found, None
            offset += len(entries)
            if after_id is not None:
                # Skip everything up to and including the cursor's job (ties share a score).
                ids = [e[0] for e in entries]
                if after_id in ids:
                    entries = entries[ids.index(after_id) + 1:]
                after_id = None
            records = {r.id: r for r in self.get_many(e[0] for e in entries)}
            for job_id, score in entries:
                record = records.get(job_id)
                if record is None:
                    continue
                if status and record.status != status:
                    continue
                found.append(record)
                if len(found) == limit:
                    return found, f"{score!r}:{job_id}"
        return found, None

    # transitions
    def transition(self, job_id: str, allowed: Iterable[str], new_status: str, **fields) -> tuple[bool, str]:
        args: list = []
        allowed = list(allowed)
        args.append(len(allowed))
        args.extend(allowed)
        args.append(new_status)
        for name, value in fields.items():
            args.extend([name, _encode(value)])
        ok, previous = self._transition(keys=[self.job_key(job_id)], args=args)
        return bool(ok), previous

    def mark(self, job_id: str, hop: str, at: float | None = None) -> bool:
        """Time a hop of the job's first audio (shared/jobs.py, HOPS); the first time stands, so a
        redelivered task (or a second listener) does not move it. Whether this call set it."""
        return bool(self._mark(keys=[self.job_key(job_id)], args=[f"t:{hop}", time.time() if at is None else at]))

    def start_attempt(self, job_id: str) -> int:
        """Count a delivery of the job to a worker; the count survives worker crashes."""
        return int(self.redis.hincrby(self.job_key(job_id), "attempts", 1))

    def mark_running(self, job_id: str, only_queued: bool = False) -> bool:
        """`only_queued`: take the job only from `queued` (a fresh first task: exactly one copy wins)."""
        ok, _ = self.transition(job_id, ("queued",) if only_queued else ("queued", "running"), "running",
                                started_at=now())
        if ok:
            # A worker has it: no longer the sweep's (which also drops it, should this not run).
            self.redis.zrem(keyspace.QUEUED, job_id)
        return ok

    def due_queued(self, older_than_s: float, at: float | None = None, most: int = 1000) -> list[str]:
        """Jobs still queued `older_than_s` after they were accepted (or last returned here): their
        first task is presumed lost and is due to be sent again. Each is returned at most once per
        `older_than_s`."""
        return list(self._due_queued(keys=[keyspace.QUEUED],
                                     args=[time.time() if at is None else at, older_than_s, most, keyspace.job("")]))

    def set_progress(self, job_id: str, done: int, total: int) -> None:
        self.redis.hset(self.job_key(job_id), mapping={"segments_done": done, "segments_total": total})

    def succeed(self, job_id: str, result: dict | None, cache_hit: bool = False) -> bool:
        """None: a job that ended well with no audio file (a live session that kept none)."""
        fields = {"result": result} if result is not None else {}
        ok, _ = self.transition(job_id, ("running",), "succeeded", finished_at=now(), cache_hit=int(cache_hit),
                                **fields)
        if ok:
            self._end(job_id)
        return ok

    def fail(self, job_id: str, code: str, message: str) -> bool:
        ok, _ = self.transition(
            job_id, ("queued", "running"), "failed", finished_at=now(),
            error=JobError(code=code, message=message),
        )
        if ok:
            self._end(job_id)
        return ok

    def cancel(self, job_id: str) -> tuple[bool, str]:
        """Cancel a queued or running job; (whether this call canceled it, the status before).

        The text goes with a cancel: nobody will speak it, and it is the user's data.
        """
        ok, previous = self.transition(job_id, ("queued", "running"), "canceled", finished_at=now())
        if ok:
            self._end(job_id, keep_text=False)
        return ok, previous

    # webhook state, in the job's hash
    def claim_webhook(self, job_id: str, redeliver: bool) -> tuple[str, int, bool] | None:
        """(webhook ID, generation, first claim) for a delivery about to be queued, or None when
        the job is gone or (without `redeliver`) its webhook was already queued once."""
        claimed = self._claim_webhook(keys=[self.job_key(job_id)],
                                      args=[f"msg_{uuid.uuid4().hex}", "1" if redeliver else "0"])
        if not claimed:
            return None
        return claimed[0], int(claimed[1]), bool(claimed[2])

    def release_webhook(self, job_id: str) -> None:
        """Undo a first claim whose message could not be queued, so a later notify can try again."""
        self.redis.hdel(self.job_key(job_id), "webhook_id")

    def webhook_delivery(self, job_id: str) -> tuple[int | None, str | None]:
        """(generation, webhook ID) of the job's current delivery."""
        generation, webhook_id = self.redis.hmget(self.job_key(job_id), "webhook_gen", "webhook_id")
        return (int(generation) if generation is not None else None), webhook_id

    def save_webhook(self, job_id: str, state: WebhookState) -> bool:
        """Store the webhook's state for GET; a no-op once the job is gone."""
        return bool(self._save_webhook(keys=[self.job_key(job_id)], args=[state.model_dump_json()]))

    def delete(self, record: JobRecord) -> None:
        self.discard(record)

    def _end(self, job_id: str, keep_text: bool = True) -> None:
        # Retention counts from the end of the job, not its submission. The plan is the job's
        # text cut into chunks: it goes now.
        pipe = self.redis.pipeline(transaction=False)
        self._ended(keys=[self.job_key(job_id), self.text_key(job_id), keyspace.job_plan(job_id),
                          keyspace.job_chunks_done(job_id), keyspace.RETAINED, keyspace.QUEUED],
                    args=[self.ttl_s, int(time.time()), job_id, int(keep_text)], client=pipe)
        self.forget_expired(pipe)
        pipe.execute()

    def forget_expired(self, client=None, most: int = 16) -> None:
        """Drop owner-index entries of records that have expired: a few with each job's start and
        end, so the index keeps pace with the records; the retention sweep catches up after a lull."""
        self._forget_expired(keys=[keyspace.RETAINED], args=[time.time(), most, keyspace.owner_index("")],
                             client=client or self.redis)

    # retention
    def prune_index(self, owner_keys_pattern: str = keyspace.OWNER_INDEX_PATTERN) -> int:
        """Drop index entries whose job is gone (its record expired in Redis or was deleted), and
        any older than the TTL."""
        self.forget_expired(most=100_000)
        cutoff = time.time() - self.horizon_s
        removed = 0
        for key in self.redis.scan_iter(owner_keys_pattern, count=100):
            removed += self.redis.zremrangebyscore(key, "-inf", cutoff)
            batch: list[str] = []
            for job_id, _ in self.redis.zscan_iter(key, count=500):
                batch.append(job_id)
                if len(batch) == 500:
                    removed += self._drop_gone(key, batch)
                    batch = []
            removed += self._drop_gone(key, batch)
        return removed

    def _drop_gone(self, index_key: str, job_ids: list[str]) -> int:
        if not job_ids:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(self.job_key(job_id))
        gone = [job_id for job_id, exists in zip(job_ids, pipe.execute()) if not exists]
        return int(self.redis.zrem(index_key, *gone)) if gone else 0


def _encode(value) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "model_dump_json"):
        return value.model_dump_json()
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
