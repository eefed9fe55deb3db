"""FSDP2 (`torch.distributed.fsdp.fully_shard`) as a Lightning strategy: sharding that also
runs on CPU processes over gloo (trainer=fsdp_sim).

Lightning's `FSDPStrategy` wraps the model in torch's first FSDP, which refuses CPU devices.
`fully_shard` does not: it turns each transformer block (and then the backbone around them)
into a shard unit whose parameters are DTensors split across the ranks, gathered for the
block's forward and backward only. Frozen base weights and trainable adapters live side by
side in one unit with their own `requires_grad`, so only the adapters get gradients and
optimizer state. Everything else is Lightning's DDP strategy (processes, samplers, reduce):

- checkpoints hold full tensors, gathered on rank 0 (an ordinary file that `loralab.eval`,
  `merge` and `export` read in one process), and are loaded back into the shards;
- when a stage (fit, test) ends, every rank gathers its blocks' full weights, so what rank 0
  writes afterwards (adapter.safetensors, the summary's counts) sees whole tensors; the next
  forward pass shards them again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard

from loralab import compat
from loralab.errors import ConfigError
from loralab.run.distributed import HydraDDPStrategy

BLOCKS_KEY = "trainer.strategy.block_classes"
# gathered whole on rank 0 and kept on CPU: what an ordinary checkpoint file holds
FULL_ON_RANK0 = StateDictOptions(full_state_dict=True, cpu_offload=True)


def block_types(block_classes: Sequence[str]) -> tuple[type[nn.Module], ...]:
    """The classes named by dotted paths; a path that names no class fails naming the key."""
    found = []
    for path in block_classes:
        try:
            found.append(hydra.utils.get_class(path))
        except Exception as error:
            raise ConfigError(
                f"{BLOCKS_KEY}: {path!r} is not an importable class; name the model's block class, "
                "e.g. [transformers.models.llama.modeling_llama.LlamaDecoderLayer]."
            ) from error
    return tuple(found)


def shard_module(module: L.LightningModule, blocks: tuple[type[nn.Module], ...]) -> None:
    """fully_shard every block, then every child of the task that holds parameters (the
    backbone: embeddings, norms and head left outside the blocks go into its root unit)."""
    inner = [m for m in module.modules() if isinstance(m, blocks)]
    if not inner:
        names = ", ".join(t.__name__ for t in blocks)
        raise ConfigError(
            f"{BLOCKS_KEY}: the model has no module of class {names}; name its transformer block "
            "class (a Hugging Face Llama: transformers.models.llama.modeling_llama.LlamaDecoderLayer)."
        )
    for block in inner:
        fully_shard(block)
    for child in module.children():
        if any(True for _ in child.parameters()):
            fully_shard(child)


def fsdp_modules(module: nn.Module) -> list[FSDPModule]:
    return [m for m in module.modules() if isinstance(m, FSDPModule)]


class HydraFSDP2Strategy(HydraDDPStrategy):
    """DDP's processes and data, with the model sharded by `fully_shard` instead of replicated."""

    def __init__(self, block_classes: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.block_classes = list(block_classes)

    def setup(self, trainer: L.Trainer) -> None:
        assert self.accelerator is not None and self.model is not None
        self.accelerator.setup(trainer)
        self.precision_plugin.convert_module(self.model)
        self.model_to_device()
        module = self.lightning_module
        if not fsdp_modules(module):
            compat.sync_module_states(module)  # every rank shards rank 0's weights
            shard_module(module, block_types(self.block_classes))
        for unit in fsdp_modules(module):
            unit.reshard()  # gathered when the previous stage ended
        if trainer.state.fn == TrainerFn.FITTING:
            self.setup_optimizers(trainer)  # over the DTensor parameters
        self.setup_precision_plugin()

    def teardown(self) -> None:
        module = self.lightning_module
        super().teardown()  # moves the module to CPU, which registers the shards again
        if module is not None and torch.distributed.is_initialized():
            for unit in fsdp_modules(module):
                unit.unshard()  # whole tensors on every rank for what runs after the stage

    def lightning_module_state_dict(self) -> dict[str, Any]:
        return get_model_state_dict(self.lightning_module, options=FULL_ON_RANK0)

    def load_model_state_dict(self, checkpoint: Mapping[str, Any], strict: bool = True) -> None:
        # an adapter-only checkpoint was completed with the module's own (sharded) frozen
        # tensors by on_load_checkpoint: those are already in place, load the rest
        from torch.distributed.tensor import DTensor

        state = {k: v for k, v in checkpoint["state_dict"].items() if not isinstance(v, DTensor)}
        options = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(self.lightning_module, state, options=options)

    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer
        return get_optimizer_state_dict(self.lightning_module, optimizer, options=FULL_ON_RANK0)

    def load_optimizer_state_dict(self, checkpoint: Mapping[str, Any]) -> None:
        options = StateDictOptions(full_state_dict=True)
        for optimizer, state in zip(self.optimizers, checkpoint["optimizer_states"], strict=True):
            set_optimizer_state_dict(self.lightning_module, optimizer, state, options=options)


__all__: Sequence[str] = ["HydraFSDP2Strategy", "block_types", "shard_module"]
