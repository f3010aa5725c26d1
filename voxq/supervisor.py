"""Child processes that live and die with us: each in its own session with a parent-death signal,
started again after a back-off when it dies, and stopped in two stages.

A child that dies is started again, after a back-off, and the log says why; only a crash loop
(CRASH_LOOP_DEATHS deaths in a row of one child, each within MIN_UPTIME_S of its start) ends
`watch`, saying so, unless the supervisor's `excuse` names a cause outside the child (Redis down
or refusing writes): then the child is started again every RESTART_MAX_S until the cause passes,
and nothing else stops (the API keeps answering, with 503 for what needs Redis).
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# A stop gives every child this long (VOXQ_STOP_GRACE_S): a worker finishes the chunk it is
# speaking (seconds: a task is a chunk, not a job) and hands back what it prefetched. After it,
# or at a second Ctrl-C, each child gets its `stop_at_once` signal.
GRACE_S = 30
# After the stop-at-once signal: this long before the process group is killed.
QUICK_GRACE_S = 10
# Restarting a child that died: back-off doubling from RESTART_FIRST_S up to RESTART_MAX_S with
# each quick death in a row (one within MIN_UPTIME_S of its start). CRASH_LOOP_DEATHS quick
# deaths in a row is a crash loop (bad settings, a port taken), which stops the cluster; a child
# that ran longer than MIN_UPTIME_S before dying starts the count afresh.
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 15
MIN_UPTIME_S = 10
CRASH_LOOP_DEATHS = 5


def say(message: str, err: bool = False) -> None:
    # After the terminal is gone (SIGHUP) a print fails: stopping must go on regardless.
    try:
        print(message, file=sys.stderr if err else sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


def _parent_death_signal(sig: int, parent: int):
    """A preexec_fn: the child gets `sig` when its parent dies, even by SIGKILL (Linux prctl)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def arm():
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl: then no signal would ever come.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return arm


@dataclass(frozen=True)
class ChildSpec:
    """How a child was started, to start it again the same way."""

    cmd: Sequence[str]
    env: Mapping[str, str]
    nice: int = 0
    death_signal: int = signal.SIGTERM
    stop_at_once: int = signal.SIGQUIT
    # The least time before it starts again after it dies (a Redis node behind Sentinel).
    restart_after_s: float = 0


class Supervisor:
    """The children of one cluster: each logs to `logs/<name>.log`; those named in `stop_last`
    stop after all the others (Redis: no one loses its broker mid-job)."""

    def __init__(self, logs: Path, grace_s: float = GRACE_S, stop_last: tuple[str, ...] = (),
                 excuse: Callable[[], str | None] = lambda: None):
        self.logs = logs
        # Why children may be dying through no fault of theirs (None: no such reason now).
        self.excuse = excuse
        self.excused: set[str] = set()
        self.grace_s = grace_s
        self.stop_last = stop_last
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.specs: dict[str, ChildSpec] = {}
        self.started: dict[str, float] = {}
        self.quick_deaths: dict[str, int] = {}

    def spawn(self, name: str, cmd: Sequence[str], env: Mapping[str, str], nice: int = 0,
              death_signal: int = signal.SIGTERM, stop_at_once: int = signal.SIGQUIT,
              restart_after_s: float = 0) -> subprocess.Popen:
        """Start `name`; a stop sends it SIGTERM, and `stop_at_once` when it must hurry (SIGKILL
        goes to its whole process group). When it dies it starts again after the back-off, and
        never sooner than `restart_after_s`."""
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.log(name), "ab")
        die_with_us = _parent_death_signal(death_signal, os.getpid())

        def prepare():
            die_with_us()
            if nice:
                os.nice(nice)

        # Each child in its own session, so a Ctrl-C reaches it only through us, in order; the
        # parent-death signal stops it when we die without getting to say so.
        proc = subprocess.Popen(list(cmd), env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=prepare)
        log.close()
        self.specs[name] = ChildSpec(tuple(cmd), dict(env), nice, death_signal, stop_at_once, restart_after_s)
        self.started[name] = time.monotonic()
        self.children = [(n, p) for n, p in self.children if n != name] + [(name, proc)]
        return proc

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def process(self, name: str) -> subprocess.Popen:
        return dict(self.children)[name]

    def exited(self) -> list[str]:
        """The children that are no longer running."""
        return [name for name, proc in self.children if proc.poll() is not None]

    def watch(self) -> int:
        """Supervise: start again whatever dies, after a back-off; return 1 on a crash loop."""
        restart_at: dict[str, float] = {}
        while True:
            now = time.monotonic()
            for name, proc in list(self.children):
                if name in restart_at or proc.poll() is None:
                    continue
                # What it left behind goes too: a dead worker's pool children must not run on,
                # their chunks return to the queue when their leases run out (worker/leases.py).
                _signal(proc, signal.SIGKILL, group=True)
                quick = now - self.started[name] < MIN_UPTIME_S
                deaths = self.quick_deaths[name] = self.quick_deaths.get(name, 0) + 1 if quick else 1
                log = self.log(name)
                if not quick:
                    self.excused.discard(name)
                delay = max(self.specs[name].restart_after_s, min(RESTART_MAX_S, RESTART_FIRST_S * 2 ** (deaths - 1)))
                if deaths >= CRASH_LOOP_DEATHS:
                    reason = self.excuse()
                    if reason is None:
                        say(f"voxq: {name} died {deaths} times in a row within {MIN_UPTIME_S} s of starting "
                            f"(last: {_how(proc.returncode)}); a crash loop, so stopping the cluster (see {log})",
                            err=True)
                        return 1
                    delay = RESTART_MAX_S
                    if name not in self.excused:
                        self.excused.add(name)
                        say(f"voxq: {name} died {deaths} times in a row within {MIN_UPTIME_S} s of starting "
                            f"while {reason}: not stopping the cluster for that, the API stays up; starting "
                            f"{name} again every {RESTART_MAX_S:g} s until Redis takes writes (see {log})", err=True)
                        restart_at[name] = now + delay
                        continue
                say(f"voxq: {name} {_how(proc.returncode)}; starting it again in {delay:g} s (see {log})",
                    err=True)
                restart_at[name] = now + delay
            for name, when in list(restart_at.items()):
                if now >= when:
                    del restart_at[name]
                    spec = self.specs[name]
                    self.spawn(name, spec.cmd, spec.env, nice=spec.nice, death_signal=spec.death_signal,
                               stop_at_once=spec.stop_at_once, restart_after_s=spec.restart_after_s)
            time.sleep(0.2)

    def stop(self, stopping: Callable[[], str] = lambda: "voxq: stopping",
             at_once: str = "voxq: stopping at once", before_last: Callable[[], None] = lambda: None) -> None:
        """First every child but those in `stop_last`, together; then those.

        Each child gets SIGTERM (a worker finishes the chunk it is speaking: a warm shutdown)
        and the grace period; after it, or at a second Ctrl-C, its `stop_at_once` signal. The
        lines `stopping()` and `at_once` say what happens; `before_last` runs when only the
        `stop_last` children are left (Redis still answers).
        """
        hurry = threading.Event()
        # From here a signal is a request to hurry, never an exception that could cut this short.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: hurry.set())
        rest = [(name, proc) for name, proc in self.children if name not in self.stop_last]
        last = [(name, proc) for name, proc in self.children if name in self.stop_last]
        if any(proc.poll() is None for _, proc in rest):
            say(stopping(), err=True)
            for _, proc in rest:
                _signal(proc, signal.SIGTERM)
            if not self._wait(rest, kill_after=self.grace_s, hurry=hurry, kill=False):
                say(at_once, err=True)
                for name, proc in rest:
                    quick = self.specs[name].stop_at_once if name in self.specs else signal.SIGQUIT
                    _signal(proc, quick, group=quick == signal.SIGKILL)
                self._wait(rest, kill_after=QUICK_GRACE_S)
        try:
            before_last()
        except Exception:  # noqa: BLE001 - it only informs; the stop goes on
            pass
        for _, proc in last:
            _signal(proc, signal.SIGTERM)  # Redis writes its append-only file out before exiting
        self._wait(last, kill_after=GRACE_S)
        self.children.clear()

    @staticmethod
    def _wait(children, kill_after: float, hurry: threading.Event | None = None, kill: bool = True) -> bool:
        """Wait for every child; after kill_after, kill the groups of those still there (or, with
        kill=False, return False). Returns False when `hurry` was set before they were all gone.
        """
        deadline = time.monotonic() + kill_after
        while True:
            running = [(name, proc) for name, proc in children if proc.poll() is None]
            if not running:
                return True
            if hurry is not None and hurry.is_set():
                return False
            if time.monotonic() > deadline:
                if not kill:
                    return False
                for name, proc in running:
                    _signal(proc, signal.SIGKILL, group=True)
                deadline = time.monotonic() + 5
            time.sleep(0.1)


def _how(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with status {returncode}"


def _signal(proc: subprocess.Popen, sig: int, group: bool = False) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(proc.pid, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)
