"""The private Lightning and Hydra APIs loralab uses still exist in the pinned versions.

Each one is reached through `loralab.run.compat` only; a pinned upgrade that moves one makes
this test fail with the API's name instead of making a feature stop working quietly.
"""

from __future__ import annotations

import ast
from pathlib import Path

import lightning as L
import torch
from hydra.core.utils import JobReturn
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader, TensorDataset

from loralab.run import compat
from loralab.run.resolvers import project_root

SRC = Path(project_root()) / "src"


def test_every_private_hook_and_method_loralab_uses_exists():
    assert compat.missing_private_apis() == []


def test_the_private_attributes_loralab_reads_exist_on_instances():
    callback = ModelCheckpoint()
    strategy = DDPStrategy(start_method="popen")
    job = JobReturn()
    for obj, name in [
        (callback, "_last_checkpoint_saved"),
        (strategy, "_start_method"),
        (strategy, "_launcher"),
        (job, "_return_value"),
    ]:
        assert hasattr(obj, name), f"{type(obj).__qualname__}.{name} is gone"
    compat.record_saved_checkpoint(callback, "x.ckpt")
    assert callback._last_checkpoint_saved == "x.ckpt"
    assert compat.uses_popen(strategy)
    compat.set_job_return_value(job, 1.5)
    assert compat.job_return_value(job) == 1.5


class StatefulData(L.LightningDataModule):
    def state_dict(self):
        return {"marker": 7}

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.ones(2, 1)), batch_size=1)


class OneLayer(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_saves_a_datamodules_state_under_its_class_name(tmp_path):
    trainer = L.Trainer(
        max_steps=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        default_root_dir=tmp_path,
    )
    data = StatefulData()
    trainer.fit(OneLayer(), datamodule=data)
    trainer.save_checkpoint(tmp_path / "x.ckpt")
    saved = torch.load(tmp_path / "x.ckpt", weights_only=True)
    assert saved[compat.datamodule_state_key(data)] == {"marker": 7}


def private_names_used(path: Path) -> list[str]:
    """Attribute accesses and imports of underscore names of lightning/hydra in a file."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in ("lightning", "hydra") and (
                "._" in node.module or any(a.name.startswith("_") for a in node.names)
            ):
                found.append(node.module)
    return found


def test_no_module_but_compat_imports_a_private_lightning_or_hydra_name():
    offenders = {
        str(path.relative_to(SRC)): private_names_used(path)
        for path in SRC.rglob("*.py")
        if path.name != "compat.py"
    }
    assert {k: v for k, v in offenders.items() if v} == {}
