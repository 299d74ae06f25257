"""The kvm bench's sanitizer comparison (bench/kvm.py _Churn, _overhead): both machines
do the same operations, segment after segment, so a ratio of their times compares
like with like; and a KFENCE machine's churn really takes guarded objects."""

from __future__ import annotations

from aerosync.bench import kvm as K


def _pair(debug: dict) -> tuple:
    a, b = K._machine(pages=4096), K._machine(debug, pages=4096)
    vms = []
    try:
        vms += [K._with_task(a)]
        vms += [K._with_task(b)]
        return a, b, vms
    except BaseException:
        for m, v in zip((a, b), vms + [None] * (2 - len(vms))):
            K._close(m, v)
        raise


def test_segments_carry_state_and_match_between_machines() -> None:
    a, b, (va, vb) = _pair({})
    try:
        ca, cb = K._Churn(va), K._Churn(vb)
        for n in (10, 100, 37):
            assert ca.run(n) >= 0.0 and cb.run(n) >= 0.0
            assert len(ca.held) == len(cb.held) == min(64, len(ca.held))
            assert ca.held == cb.held                      # same layout, same operations
        assert len(ca.held) == 64                          # the state carried over (147 ops, 64 held)
        ca.drain()
        cb.drain()
        assert ca.held == [] == cb.held
    finally:
        K._close(a, va)
        K._close(b, vb)


def test_kfence_churn_takes_guarded_objects() -> None:
    from aerosync.mm.san.kfence import kfence_live

    a, b, (va, vb) = _pair({"kfence_sample_interval": 10})
    try:
        cb = K._Churn(vb)
        cb.run(300)
        kf = vb.slub.san.kfence
        held = [x for x in cb.held if kf.is_kfence(x)]
        assert held and kfence_live(b) == len(held)        # every live pool object is one the loop holds
        cb.drain()
        assert kfence_live(b) == 0
    finally:
        K._close(a, va)
        K._close(b, vb)



def test_overhead_runs_every_pair_and_leaves_nothing() -> None:
    """_overhead pools the repetitions of several fresh machine pairs; each pair's arenas
    are closed and unlinked when it is done."""
    import os

    from aerosync.arena.cleanup import find_project_objects

    r = K._overhead({"kfence_sample_interval": 10}, seg=20, reps=3, pairs=2)
    assert r > 0.0
    assert len(K._overhead_pair({"kfence_sample_interval": 10}, seg=20, reps=3)) == 3
    assert [n for n, pid in find_project_objects() if pid == os.getpid()] == []
