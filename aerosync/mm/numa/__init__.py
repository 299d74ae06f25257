"""NUMA placement: memory policies (mempolicy.py) in numactl's words and their numastat
accounting.  Takes no lock of its own; it chooses nodes and calls the page allocator.
"""
