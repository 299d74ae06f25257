"""The shared-memory arena: one POSIX segment holding the simulated machine."""
