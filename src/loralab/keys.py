"""The names one part of loralab writes and another reads back: checkpoint keys and metric names.

A leaf module (it imports nothing), so train, the callbacks, the runner and the report all take
these names from here instead of from each other.

Checkpoint keys, written by `callbacks.EmbedRunConfig` into every checkpoint:

- `CONFIG_KEY`: the resolved run config; `loralab.eval`, merge and generate rebuild the run
  from it, and a resume compares it with the resuming config;
- `BASE_KEY`: the identity of the base the adapter trains on (a `BaseIdentity` as plain
  values), so an adapter-only checkpoint is refused on another base;
- `WALL_TIME_KEY`: the wall time the run has taken up to this checkpoint, so a resumed run
  reports the time of all its parts.

Metric names, logged by `callbacks.SourceEvaluation` and read by train and the report:
`source/<acc|ppl>` for the source task (`SOURCE_PREFIX`), and `<name>_start` (`START`) for a
metric's value before the first training step. `MERGE_DIFF` is how much folding the adapters
into the weights changed the outputs, logged by `callbacks.MergeCheck` and by `loralab.merge`.
"""

CONFIG_KEY = "loralab_config"
BASE_KEY = "loralab_base"
WALL_TIME_KEY = "loralab_wall_time_s"

SOURCE_PREFIX = "source/"
START = "_start"
MERGE_DIFF = "merge/max_abs_diff"
