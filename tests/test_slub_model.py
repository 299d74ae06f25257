"""Property test (hypothesis): kmalloc/kfree/krealloc sequences on two CPUs, including
cache-level bulk and flushes, against a reference model of live objects and contents."""

from __future__ import annotations

import gc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerosync.mm.slab.kmalloc import Kmalloc
from aerosync.mm.slab.slab_common import virt_to_off
from aerosync.mm.slab.slub import Slub
from tests.test_slub import all_ok, make_slab_arena

ops = st.lists(st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 1), st.sampled_from([1, 8, 60, 96, 150, 700, 5000, 9000])),
    st.tuples(st.just("free"), st.integers(0, 1), st.integers(0, 10_000)),
    st.tuples(st.just("realloc"), st.integers(0, 1), st.integers(1, 3000)),
    st.tuples(st.just("flush"), st.integers(0, 1), st.integers(0, 1)),
), min_size=1, max_size=120)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.sampled_from([0, 4, 16]))
def test_model(seq, mag) -> None:
    a = make_slab_arena(nr_pages=2048, slab_mag_size=mag)
    try:
        ks = [Kmalloc(Slub(a, c)) for c in range(2)]
        live: dict[int, tuple[int, bytes]] = {}        # addr -> (size, content tag)
        n = 0
        for op, cpu, arg in seq:
            k = ks[cpu]
            if op == "alloc":
                x = k.kmalloc(arg)
                assert x and x not in live
                assert k.ksize(x) >= arg
                tag = n.to_bytes(4, "little") * 2
                n += 1
                o = virt_to_off(a, x)
                a.u8[o : o + min(8, arg)] = tag[: min(8, arg)]
                live[x] = (arg, tag[: min(8, arg)])
            elif op == "free" and live:
                x = sorted(live)[arg % len(live)]
                _, tag = live.pop(x)
                o = virt_to_off(a, x)
                assert bytes(a.u8[o : o + len(tag)]) == tag
                k.kfree(x)
            elif op == "realloc" and live:
                x = sorted(live)[arg % len(live)]
                _, tag = live.pop(x)
                y = k.krealloc(x, arg)
                assert y and y not in live
                o = virt_to_off(a, y)
                keep = min(len(tag), arg)
                assert bytes(a.u8[o : o + keep]) == tag[:keep]
                live[y] = (arg, tag[:keep])
            elif op == "flush":
                for cid in list(ks[cpu].caches.values()):
                    cid.flush_cpu(arg)
        all_ok(a)
        for x in list(live):
            ks[0].kfree(x)
        all_ok(a)
    finally:
        gc.collect()
        a.close()
        a.unlink()
