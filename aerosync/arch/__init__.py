"""Host facts and primitives: atomics on the arena, CPU pinning, host and simulated topology."""
