"""Bastion's benchmark harness: Bastion measured side by side with a direct connection and
pgbouncer, on the same machine in the same run. Entry points: `bench/run.py` (the whole
benchmark), `bench/micro.py` (per-statement stages), `bench/hotspots.py` (a py-spy profile)."""
