"""Live sessions' leases: how many a tenant has open, and which ones lost their API process.

An API process holds a lease on each session it serves and renews it while the session is open.
A tenant's count is the leases not yet run out, so a process that dies frees its tenant's places
when its leases run out. A lease that runs out means the process died (or lost Redis for longer
than the lease): the workers' sweep takes it, once, and ends the session's record as failed.
"""
from __future__ import annotations

import time

from shared.store import keyspace

# KEYS: the tenant's sessions, every session. ARGV: session ID, owner, lease end, now, the limit.
# Places are counted and taken in one step, so two sessions opened at once cannot both take the last.
_OPEN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1] .. ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3]) - tonumber(ARGV[4])) + 60)
return 1
"""

# KEYS: every session. ARGV: now, how many at most. The sessions whose lease ran out, each taken
# out of the set as it is returned, so one sweeper ends each.
_LAPSED = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(gone) do redis.call('ZREM', KEYS[1], member) end
return gone
"""

# Session IDs are 32 hex characters (uuid4().hex), so a member splits without a separator.
ID_CHARS = 32


class SessionStore:
    def __init__(self, client):
        self.redis = client
        self._open = client.register_script(_OPEN)
        self._lapsed = client.register_script(_LAPSED)

    def open(self, session_id: str, owner: str, lease_s: float, limit: int) -> bool:
        """Take one of the tenant's `limit` places; False when all are taken."""
        now = time.time()
        return bool(self._open(keys=[keyspace.tenant_live(owner), keyspace.LIVE],
                               args=[session_id, owner, now + lease_s, now, limit]))

    def renew(self, sessions: list[tuple[str, str]], lease_s: float) -> None:
        """Renew the leases of (session ID, owner) pairs this process serves."""
        if not sessions:
            return
        until = time.time() + lease_s
        pipe = self.redis.pipeline(transaction=False)
        for session_id, owner in sessions:
            # XX: a lease the sweep already took is not brought back.
            pipe.zadd(keyspace.tenant_live(owner), {session_id: until}, xx=True)
            pipe.zadd(keyspace.LIVE, {session_id + owner: until}, xx=True)
        pipe.execute()

    def close(self, session_id: str, owner: str) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(keyspace.tenant_live(owner), session_id)
        pipe.zrem(keyspace.LIVE, session_id + owner)
        pipe.execute()

    def open_count(self, owner: str) -> int:
        return int(self.redis.zcount(keyspace.tenant_live(owner), time.time(), "+inf"))

    def lapsed(self, most: int = 100) -> list[tuple[str, str]]:
        """(session ID, owner) of sessions whose lease ran out, each returned once."""
        found = self._lapsed(keys=[keyspace.LIVE], args=[time.time(), most])
        return [(member[:ID_CHARS], member[ID_CHARS:]) for member in found]
