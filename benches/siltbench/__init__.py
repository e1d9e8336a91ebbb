"""silt's benchmark runner (benches/bench.py): silt vs delta-rs on TPC-DS-style data.

Modules: runner (orchestration), scenarios (what runs, silt's side per operation),
measure (child processes, machine), layout (skipping and clustering from Delta stats),
report (ratios, Markdown); child.py and charts.py run as child processes.
"""
