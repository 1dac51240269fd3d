"""Deterministic simulation of the HA protocol (issue 19, first slice): the real Node code of every
node, on a virtual clock, over a simulated Consul and simulated mysqlds, with faults drawn from one seed.
Nothing in mysqlpilot/ is changed: time, I/O and threads are replaced by monkeypatching (sim/patch.py)."""
