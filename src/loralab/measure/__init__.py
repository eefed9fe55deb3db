"""Measurements that stay the same for every adapter: step time and memory, the train state,
the memory planner's arithmetic, and how much merging changes a model's outputs."""
