"""Everything that turns a config into a run and back: building and loading runs, the Hydra
entry-point helper and error guard, run names, the run summary, resuming, distributed
launching. (The one module that touches private Lightning and Hydra APIs is the leaf
`loralab.compat`, below every package.)

Entry points (`loralab.train`, `loralab.eval`, ...) share these modules instead of importing
each other. Import the submodules directly: this package imports nothing on its own.
"""
