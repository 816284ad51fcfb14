"""Benchmarks: the optimizer on a synthetic site (`bench plan`) and the daemon's guard as its own
process against a real Mosquitto (`bench guard`). They may use every room; nothing imports them
but the command line.
"""
