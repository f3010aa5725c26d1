"""A job's chunks: its plan, which chunks have landed, and the per-tenant dispatch that decides
which chunk runs next.

Dispatch chains through Redis, with no scheduler process: the task that plans a job and each
chunk that lands call `dispatch(owner)`, which hands out the tenant's next chunks, round robin
over the tenant's jobs, while fewer than `window` of its chunks are in flight. So each tenant
has at most `window` chunks queued or running, whatever it submits, and chunks of different
tenants interleave in the queue. A dispatched chunk that has not landed after `stale_s` is handed
out again (its message was lost, or its worker died): chunks are idempotent. A worker's heartbeat
also dispatches every tenant now and then (worker/runner.py, `redispatch`), so a chunk whose
dispatcher died before publishing it goes out again even if its tenant sends nothing more.
"""
from __future__ import annotations

import json

from shared.store import keyspace

# KEYS: plan, job hash, tenant ring, tenant in-flight. ARGV: chunk count, segments total, output
# rate, queue, cache key, now, then one JSON per chunk. Only the first planner writes: a
# redelivered planning task reuses the plan, which lives as long as the job's record (and goes
# when the job ends). The job joins its tenant's ring in the same step: a plan saved without it
# (a Redis refusing writes between two commands) would never have its later chunks dispatched.
# Chunk 0, which the planning task speaks itself, is in flight from here like any dispatched
# chunk: if that task's message is lost (kombu's Redis transport loses a message taken by a
# worker killed before it recorded it as unacknowledged), the chunk goes out again after the
# chunk timeout instead of leaving the job running for ever.
_SAVE_PLAN = """
if redis.call('HEXISTS', KEYS[2], 'record') == 0 then return -1 end
if redis.call('HEXISTS', KEYS[2], 'chunks_total') == 1 then return 0 end
local n = tonumber(ARGV[1])
for i = 1, n do redis.call('HSET', KEYS[1], i - 1, ARGV[6 + i]) end
local ttl = redis.call('TTL', KEYS[2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
redis.call('HSET', KEYS[2], 'chunks_total', n, 'chunks_sent', 1, 'chunks_done', 0,
           'segments_total', ARGV[2], 'segments_done', 0, 'out_rate', ARGV[3], 'chunk_queue', ARGV[4],
           'cache_key', ARGV[5])
if n > 1 then redis.call('RPUSH', KEYS[3], ARGV[7 + n]) end
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[7 + n] .. ':0')
return 1
"""

# KEYS: tenant ring, tenant in-flight. ARGV: now, stale seconds, window, job key prefix.
# Returns a flat list: job ID, chunk index, queue, ... for the caller to publish.
# (Job hashes and done sets are reached by name, built from the prefix as keyspace.job and
# keyspace.job_chunks_done build them, not passed as KEYS: voxq runs on one Redis, not a cluster.)
_DISPATCH = """
local ring, flight = KEYS[1], KEYS[2]
local now, stale, window, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local out = {}
local function live(job)
  local status = redis.call('HGET', prefix .. job, 'status')
  return status == 'running' or status == 'queued'
end
-- Chunks dispatched long ago and still not landed go out again; finished jobs' entries go.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', flight, '-inf', now - stale)) do
  local job, index = string.match(member, '^(.*):(%d+)$')
  if live(job) and redis.call('SISMEMBER', prefix .. job .. ':done', index) == 0 then
    redis.call('ZADD', flight, now, member)
    table.insert(out, job); table.insert(out, tonumber(index))
    table.insert(out, redis.call('HGET', prefix .. job, 'chunk_queue') or '')
  else
    redis.call('ZREM', flight, member)
  end
end
local busy = redis.call('ZCARD', flight)
while busy < window and redis.call('LLEN', ring) > 0 do
  local job = redis.call('LMOVE', ring, ring, 'LEFT', 'RIGHT')
  local key = prefix .. job
  local total = tonumber(redis.call('HGET', key, 'chunks_total') or '0')
  local sent = tonumber(redis.call('HGET', key, 'chunks_sent') or '0')
  if (not live(job)) or sent >= total then
    redis.call('LREM', ring, 0, job)
  else
    redis.call('HSET', key, 'chunks_sent', sent + 1)
    redis.call('ZADD', flight, now, job .. ':' .. sent)
    busy = busy + 1
    table.insert(out, job); table.insert(out, sent)
    table.insert(out, redis.call('HGET', key, 'chunk_queue') or '')
    if sent + 1 >= total then redis.call('LREM', ring, 0, job) end
  end
end
if redis.call('LLEN', ring) == 0 and busy == 0 then redis.call('DEL', flight) end
return out
"""

# KEYS: done set, job hash, tenant in-flight. ARGV: chunk index, its segment count, member.
# Returns {newly landed (1/0, or -1: the job is not running, so nothing lands), chunks done,
# chunks total}. The first attempt to land a chunk counts it; a later one (a redelivery, or a
# paused worker's duplicate) changes no counter, and no counter passes its total. A job that
# ended refuses every landing: its done set went with its end, and must not come back.
_LANDED = """
if redis.call('HEXISTS', KEYS[2], 'record') == 0 then
  redis.call('ZREM', KEYS[3], ARGV[3])
  return {0, 0, 0}
end
local total = tonumber(redis.call('HGET', KEYS[2], 'chunks_total') or '0')
if redis.call('HGET', KEYS[2], 'status') ~= 'running' then
  redis.call('ZREM', KEYS[3], ARGV[3])
  return {-1, tonumber(redis.call('HGET', KEYS[2], 'chunks_done') or '0'), total}
end
local new = redis.call('SADD', KEYS[1], ARGV[1])
-- Each time the chunk's audio was spoken and landed (a redelivery that finds it landed speaks
-- nothing and passes 0): more than one is a chunk run twice, which the chaos suite counts.
if tonumber(ARGV[2]) > 0 then redis.call('HINCRBY', KEYS[2], 'chunk_renders:' .. ARGV[1], 1) end
if new == 1 then
  local done = redis.call('SCARD', KEYS[1])
  redis.call('HSET', KEYS[2], 'chunks_done', math.min(done, total))
  local segments = tonumber(redis.call('HGET', KEYS[2], 'segments_done') or '0') + tonumber(ARGV[2])
  local segments_total = tonumber(redis.call('HGET', KEYS[2], 'segments_total') or segments)
  redis.call('HSET', KEYS[2], 'segments_done', math.min(segments, segments_total))
  local ttl = redis.call('TTL', KEYS[2])
  if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
end
redis.call('ZREM', KEYS[3], ARGV[3])
return {new, tonumber(redis.call('HGET', KEYS[2], 'chunks_done')), total}
"""


class ChunkStore:
    def __init__(self, client):
        self.client = client
        self._save_plan = client.register_script(_SAVE_PLAN)
        self._dispatch = client.register_script(_DISPATCH)
        self._landed = client.register_script(_LANDED)

    def save_plan(self, job_id: str, owner: str, chunks: list[dict], segments_total: int, out_rate: int,
                  queue: str, cache_key: str, now: float) -> bool:
        """Store the plan (once), count chunk 0 in flight and, if chunks remain after the first,
        put the job in its tenant's ring. False when the job already had a plan (a redelivered
        planning task) or is gone."""
        saved = self._save_plan(
            keys=[keyspace.job_plan(job_id), keyspace.job(job_id), keyspace.tenant_ring(owner),
                  keyspace.tenant_in_flight(owner)],
            args=[len(chunks), segments_total, out_rate, queue, cache_key, now,
                  *(json.dumps(c, ensure_ascii=False) for c in chunks), job_id])
        return int(saved) == 1

    def chunk(self, job_id: str, index: int) -> dict | None:
        raw = self.client.hget(keyspace.job_plan(job_id), index)
        return json.loads(raw) if raw else None

    def expected_s(self, job_id: str, index: int) -> float | None:
        """The seconds of audio the plan expects of a chunk (None for a plan saved without it)."""
        spec = self.chunk(job_id, index)
        return spec.get("expected_s") if spec else None

    def layout(self, job_id: str) -> tuple[int | None, int | None, str | None]:
        """(chunks total, output sample rate, cache key) once the job is planned."""
        total, rate, key = self.client.hmget(keyspace.job(job_id), "chunks_total", "out_rate", "cache_key")
        return (int(total) if total else None), (int(rate) if rate else None), key

    def dispatch(self, owner: str, window: int, now: float, stale_s: float) -> list[tuple[str, int, str]]:
        """The tenant's chunks to publish now: (job ID, chunk index, queue)."""
        flat = self._dispatch(keys=[keyspace.tenant_ring(owner), keyspace.tenant_in_flight(owner)],
                              args=[now, stale_s, window, keyspace.job("")])
        return [(flat[i], int(flat[i + 1]), flat[i + 2]) for i in range(0, len(flat), 3)]

    def start(self, job_id: str, index: int, rerun: bool = False) -> tuple[int, int]:
        """Count a run of this chunk, in its job's record (so the counts survive a worker's death):
        (this run's number, which no other run of the chunk has, for its temporaries; the
        deliveries that have run it, which the attempt bound counts). `rerun`: the same delivery's
        step run again after a Redis outage (worker/tasks.py), a live worker going on: it takes a
        number of its own, and is no new delivery."""
        key = keyspace.job(job_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hincrby(key, f"chunk_attempts:{index}", 1)
        if rerun:
            pipe.hincrby(key, f"chunk_reruns:{index}", 1)
        else:
            pipe.hget(key, f"chunk_reruns:{index}")
        number, reruns = pipe.execute()
        return int(number), int(number) - int(reruns or 0)

    def attempts(self, job_id: str) -> dict[int, int]:
        """How many times each chunk has been started."""
        fields = self.client.hgetall(keyspace.job(job_id))
        return {int(k.split(":", 1)[1]): int(v) for k, v in fields.items() if k.startswith("chunk_attempts:")}

    def renders(self, job_id: str) -> dict[int, int]:
        """How many times each chunk was spoken and landed (1 each when nothing ran twice)."""
        fields = self.client.hgetall(keyspace.job(job_id))
        return {int(k.split(":", 1)[1]): int(v) for k, v in fields.items() if k.startswith("chunk_renders:")}

    def has_landed(self, job_id: str, index: int) -> bool:
        return bool(self.client.sismember(keyspace.job_chunks_done(job_id), index))

    def open_to(self, job_id: str, index: int) -> bool:
        """Whether an attempt at this chunk may still publish: its job runs and nobody landed it."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(keyspace.job(job_id), "status")
        pipe.sismember(keyspace.job_chunks_done(job_id), index)
        status, landed = pipe.execute()
        return status == "running" and not landed

    def land(self, job_id: str, owner: str, index: int, segments: int) -> tuple[bool | None, int, int]:
        """Record that a chunk's audio landed: (newly, chunks done, chunks total); newly is None
        when the job is no longer running (it ended meanwhile), and then nothing was counted."""
        new, done, total = self._landed(
            keys=[keyspace.job_chunks_done(job_id), keyspace.job(job_id), keyspace.tenant_in_flight(owner)],
            args=[index, segments, f"{job_id}:{index}"])
        return (None if int(new) < 0 else bool(new)), int(done), int(total)

    def release(self, job_id: str, owner: str, index: int) -> None:
        """Free a chunk's dispatch slot without it landing (its job ended)."""
        self.client.zrem(keyspace.tenant_in_flight(owner), f"{job_id}:{index}")

    def owners(self) -> set[str]:
        """Tenants with chunks waiting in a ring or in flight (both keys go when empty)."""
        return {keyspace.tenant_of(key) for key in self.client.scan_iter(keyspace.TENANT_PATTERN, count=500)}

    def in_flight(self, owner: str) -> int:
        """The tenant's chunks dispatched and not yet landed or released."""
        return int(self.client.zcard(keyspace.tenant_in_flight(owner)))

    def landed(self, job_id: str) -> set[int]:
        return {int(i) for i in self.client.smembers(keyspace.job_chunks_done(job_id))}
