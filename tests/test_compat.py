"""The private Lightning, Hydra, torch and `datasets` APIs loralab uses still exist in the
pinned versions, and no module but `loralab.compat` touches one.

Each one is reached through `loralab.compat` only; a pinned upgrade that moves one makes
this test fail with the API's name instead of making a feature stop working quietly. The
source is scanned with `ast` for both kinds of use: importing a private name, and reading or
writing a private attribute (`ds._fingerprint`) of an object that is not the module's own.
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

from loralab import compat
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


def test_a_tensors_version_moves_with_every_change_in_place_and_only_then():
    weight = torch.nn.Parameter(torch.ones(3))
    start = compat.tensor_version(weight)
    _ = weight * 2  # read, not changed
    assert compat.tensor_version(weight) == start
    with torch.no_grad():
        weight.add_(1.0)
    assert compat.tensor_version(weight) == start + 1


def test_the_fingerprint_of_a_dataset_follows_its_content():
    from datasets import Dataset

    one, same, other = (Dataset.from_dict({"text": t}) for t in (["a"], ["a"], ["b"]))
    assert compat.dataset_fingerprint(one) == compat.dataset_fingerprint(same)
    assert compat.dataset_fingerprint(one) != compat.dataset_fingerprint(other)


def test_the_tensorboard_file_writer_reopens_a_closed_writer(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path))
    writer.close()
    file_writer = compat.tensorboard_file_writer(writer)
    assert file_writer is writer.file_writer is not None
    writer.close()


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


def private_attribute(name: str) -> bool:
    """`_x`, not a dunder (`__name__`) nor a Hydra config key read as an attribute (`_target_`)."""
    return name.startswith("_") and not name.endswith("_")


def own_names(tree: ast.Module) -> set[str]:
    """Names bound to loralab's own modules and objects (`from loralab import compat`), whose
    private members are the module's own business."""
    names = {"self", "cls"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").startswith("loralab")
        ):
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(
                (alias.asname or alias.name).split(".")[0]
                for alias in node.names
                if alias.name.startswith("loralab")
            )
    return names


def private_names_used(source: str) -> list[str]:
    """Imports of underscore names of lightning/hydra/torch/datasets, and private attributes
    read or written on objects that are not the module's own (`self`, `cls`, `super()`,
    names imported from loralab), as `line: code`."""
    tree = ast.parse(source)
    own = own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in ("lightning", "hydra", "torch", "datasets") and (
                "._" in node.module or any(a.name.startswith("_") for a in node.names)
            ):
                found.append((node.lineno, f"{node.lineno}: from {node.module} import ..."))
        elif isinstance(node, ast.Attribute) and private_attribute(node.attr):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in own:
                continue
            if isinstance(owner, ast.Call) and ast.unparse(owner.func) == "super":
                continue
            found.append((node.lineno, f"{node.lineno}: {ast.unparse(node)}"))
    return [text for _, text in sorted(found)]


def test_no_module_but_compat_uses_a_private_name_of_another_package():
    offenders = {
        str(path.relative_to(SRC)): private_names_used(path.read_text(encoding="utf-8"))
        for path in SRC.rglob("*.py")
        if path.name != "compat.py"
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_scan_finds_private_attributes_and_imports_but_not_a_modules_own():
    source = """
from lightning.pytorch.loops.fit_loop import _FitLoop
from loralab import compat
from loralab.lora.layer import LoRALayer
def f(ds, trainer, node):
    key = ds._fingerprint
    trainer.fit_loop._load_combined_loader_states()
    trainer.strategy._launcher = None
    compat._private_helper()
    LoRALayer._registry
    super()._save_checkpoint(trainer)
    return node._target_, ds.__class__
class A:
    def g(self):
        return self._x, type(self).__name__
"""
    assert private_names_used(source) == [
        "2: from lightning.pytorch.loops.fit_loop import ...",
        "6: ds._fingerprint",
        "7: trainer.fit_loop._load_combined_loader_states",
        "8: trainer.strategy._launcher",
    ]
