"""Training straight from LeRobot datasets: Ray Data decodes and cuts episodes into samples while training runs.

`source` turns a LeRobot root into the planner's dataset (episodes as pseudo-shards) and its cached layout and
statistics; `ray_stream` runs a checkpoint interval's share of a rank through Ray Data and hands samples to the loader.
"""
