"""Pronunciation lexicons per tenant, and the tenant's default list: the only owner of their keys."""
from __future__ import annotations

import json

from shared.store import keyspace

# Store a lexicon unless the tenant already has `limit` others: one step, so two uploads racing
# past the limit cannot both land.
_PUT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then
  return -1
end
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
"""


class LexiconStore:
    def __init__(self, client):
        self.redis = client
        self._put = client.register_script(_PUT)

    def put(self, owner: str, name: str, record: dict, limit: int) -> bool | None:
        """Store; True if it is new, False if it replaced one, None if the tenant is at `limit`."""
        created = self._put(keys=[keyspace.lexicons(owner)],
                            args=[name, json.dumps(record, ensure_ascii=False), limit])
        return None if created == -1 else bool(created)

    def get(self, owner: str, name: str) -> dict | None:
        raw = self.redis.hget(keyspace.lexicons(owner), name)
        return json.loads(raw) if raw else None

    def get_many(self, owner: str, names: list[str]) -> list[dict | None]:
        if not names:
            return []
        return [json.loads(raw) if raw else None for raw in self.redis.hmget(keyspace.lexicons(owner), names)]

    def names(self, owner: str) -> list[str]:
        return sorted(self.redis.hkeys(keyspace.lexicons(owner)))

    def all(self, owner: str) -> dict[str, dict]:
        return {name: json.loads(raw) for name, raw in self.redis.hgetall(keyspace.lexicons(owner)).items()}

    def delete(self, owner: str, name: str) -> bool:
        return bool(self.redis.hdel(keyspace.lexicons(owner), name))

    def defaults(self, owner: str) -> list[str]:
        raw = self.redis.get(keyspace.lexicon_defaults(owner))
        return json.loads(raw) if raw else []

    def set_defaults(self, owner: str, names: list[str]) -> None:
        self.redis.set(keyspace.lexicon_defaults(owner), json.dumps(names))
