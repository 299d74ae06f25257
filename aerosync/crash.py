"""The coordinator's side of crash tolerance: arming fault points, what recovery did.

Models: the fault-injection framework's control side (lib/fault-inject.c: which task
fails, how often, at which site) for simulated CPUs that kill themselves at a named
point (mm/intent.py).  Unit: one run.

`FaultDriver` arms CPUs from `[fault]` (scenario.py FaultSpec):
  kill_at      at the start every CPU (or kill_cpu) is armed for the point (after
               kill_skip passes); the first death disarms the others: one kill.
  kill_random  kill_random times: after kill_interval seconds (from the start, then from
               the previous recovery) and once every CPU is running again (a restart
               finished: each kill is a whole kill-recover-restart cycle, so the run
               keeps making progress), one random CPU (or kill_cpu) is armed for
               a random point among those the run has passed so far (the hit counters):
               every other kill picks uniformly among them, so rarely used paths get
               their turn, the others in proportion to how often each was passed, so
               the soak is not dominated by waiting for a rare path; a random skip of
               0..2 passes; a point not reached within REARM_S is swapped for another.
Arm words are per CPU (mm/intent.py arm/disarm); the worker reads them at each pass.

`CrashLog` keeps what each recovery found and did (mm/recovery.py CpuRecovery) and the
time from a death being noticed to the run going again, and renders the result JSON's
"crash" section and the summary lines.
"""

from __future__ import annotations

import random
import statistics
from typing import Any

from aerosync.errors import ScenarioError
from aerosync.mm import intent as I

__all__ = ["FaultDriver", "CrashLog", "check_fault", "check_recovery", "REARM_S"]

REARM_S = 1.0
OUTSIDE = "(killed from outside)"     # died_at of a death at no fault point


def check_fault(scn: Any, nr_cpus: int) -> None:
    """[fault] against the point table and the machine (ScenarioError, nothing created)."""
    f = scn.fault
    if f.kill_at and f.kill_at not in I.POINT_IDS:
        near = [n for n in I.POINT_IDS if n.split(":")[0] == f.kill_at.split(":")[0]]
        raise ScenarioError(scn.blame("fault.kill_at"), "fault.kill_at", f.kill_at,
                            "a fault point (`aerosync doctor --fault-points`)"
                            + (f"; of {f.kill_at.split(':')[0]}: {', '.join(near)}" if near else ""))
    if f.kill_cpu >= nr_cpus:
        raise ScenarioError(scn.blame("fault.kill_cpu", "machine.cpus"), "fault.kill_cpu", f.kill_cpu,
                            f"a simulated CPU id 0..{nr_cpus - 1}, or -1 for any")


def check_recovery(scn: Any, mod: Any, notes: list[str]) -> None:
    """[run] on_cpu_death against the workload: a workload without a `recover` hook keeps
    what it holds in its worker only (a note: a killed CPU's items are lost and reported
    by the checkers)."""
    if scn.run.on_cpu_death == "fail":
        return
    rec = getattr(mod, "recover", None)
    if rec is None:
        notes.append(f"on_cpu_death = {scn.run.on_cpu_death}: workload {scn.run.workload} has no recover hook: "
                     "what a killed CPU held is lost (the checkers and lost counts will say so)")


class FaultDriver:
    """Arms CPUs for the kills [fault] asks for (module docstring)."""

    def __init__(self, arena: Any, fault: dict[str, Any], nr_cpus: int, seed: int) -> None:
        self.arena, self.nr_cpus = arena, nr_cpus
        self.kill_at = fault.get("kill_at", "")
        self.kill_cpu = int(fault.get("kill_cpu", -1))
        self.skip = int(fault.get("kill_skip", 0))
        self.left = int(fault.get("kill_random", 0)) + (1 if self.kill_at else 0)
        self.interval = float(fault.get("kill_interval", 0.05))
        self.rng = random.Random(seed * 7919 + 13)
        self.armed: tuple[int, int] | None = None     # (cpu, point)
        self.armed_at = 0.0
        self.next_at = 0.0
        self.started = False
        self.picks = 0

    @property
    def active(self) -> bool:
        return self.left > 0 or self.armed is not None

    def start(self, now: float) -> None:
        self.started = True
        self.next_at = now + self.interval
        if self.kill_at:
            p = I.point_id(self.kill_at)
            for c in range(self.nr_cpus) if self.kill_cpu < 0 else (self.kill_cpu,):
                I.arm(self.arena, c, p, self.skip)
            self.armed, self.armed_at = (self.kill_cpu, p), now

    def tick(self, now: float, running: list[int]) -> None:
        """Arm the next random kill when it is time (kill_random)."""
        if self.kill_at or not self.started or self.left <= 0:
            return
        if self.armed is not None:
            if now - self.armed_at < REARM_S:
                return
            I.disarm(self.arena, self.armed[0])       # never reached: choose again
            self.armed = None
        if now < self.next_at:
            return
        if len(running) < self.nr_cpus:
            return                                    # a CPU is still coming back
        cpus = [c for c in running if self.kill_cpu < 0 or c == self.kill_cpu]
        hits = {name: n for name, n in I.hits(self.arena).items() if n}
        if not cpus or not hits:
            return
        self.picks += 1
        if self.picks & 1:
            name = self.rng.choice(list(hits))
        else:
            name = self.rng.choices(list(hits), weights=list(hits.values()))[0]
        c, p = self.rng.choice(cpus), I.point_id(name)
        I.arm(self.arena, c, p, self.rng.randrange(3))
        self.armed, self.armed_at = (c, p), now

    def stop(self) -> None:
        """The run is stopping: disarm every CPU, arm nothing more."""
        for c in range(self.nr_cpus):
            I.disarm(self.arena, c)
        self.armed, self.left = None, 0

    def on_death(self, cpu: int, now: float) -> None:
        """A CPU died (of an armed point or not): disarm everything, count the kill."""
        if self.armed is not None:
            for c in range(self.nr_cpus):
                I.disarm(self.arena, c)
            self.armed = None
            self.left -= 1
        if self.kill_at:
            self.left = 0
        self.next_at = now + self.interval


class CrashLog:
    """Every death of the run and its recovery (the result's "crash" section)."""

    def __init__(self, on_cpu_death: str) -> None:
        self.on_cpu_death = on_cpu_death
        self.recoveries: list[dict[str, Any]] = []
        self.restarts = 0
        self.check_s = 0.0

    def add(self, rec: Any, noticed_to_go_ms: float) -> None:
        d = rec.to_dict()
        d["noticed_to_go_ms"] = round(noticed_to_go_ms, 3)
        self.recoveries.append(d)

    def to_dict(self) -> dict[str, Any]:
        ms = [r["noticed_to_go_ms"] for r in self.recoveries]
        return {"on_cpu_death": self.on_cpu_death, "deaths": len(self.recoveries), "restarts": self.restarts,
                "pages_recovered": sum(r["pages"] for r in self.recoveries),
                "objects_recovered": sum(r["objects"] for r in self.recoveries),
                "recovery_ms_median": round(statistics.median(ms), 3) if ms else None,
                "recovery_ms_max": round(max(ms), 3) if ms else None,
                "died_at": _count(r["died_at"] or OUTSIDE for r in self.recoveries),
                "recoveries": self.recoveries}

    @staticmethod
    def summary_lines(d: dict[str, Any]) -> list[str]:
        """The run summary's crash block (cli.py) from the "crash" section."""
        if not d or not d.get("deaths"):
            return []
        lines = [f"  CPU deaths: {d['deaths']} ({d['on_cpu_death']}), {d['restarts']} restarted; returned by "
                 f"recovery: {d['pages_recovered']} pages, {d['objects_recovered']} objects; death noticed -> "
                 f"run going again: median {d['recovery_ms_median']:.1f} ms, max {d['recovery_ms_max']:.1f} ms"]
        top = sorted(d["died_at"].items(), key=lambda kv: -kv[1])[:6]
        lines.append("    died at: " + ", ".join(f"{k} x{v}" for k, v in top)
                     + (f", ... ({len(d['died_at'])} points)" if len(d["died_at"]) > 6 else ""))
        if OUTSIDE in d["died_at"]:
            lines.append("    (a kill from outside lands between fault points: page allocator, SLUB and crash_soak "
                         "are repaired from state; other operations exactly only at their points -- mm/intent.py "
                         "-- and the invariant checks say whether it repaired this one)")
        return lines


def _count(names: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in names:
        out[n] = out.get(n, 0) + 1
    return out
