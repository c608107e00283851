"""The trainer's validation loss is computed on domain-mixed batches, so that every term is defined: in file order
a batch held one domain's frames and the SSDG triplet term (live frames of two domains) was 0 in it."""

from __future__ import annotations

import pytest
import torch

from fasd.config import load_registry
from fasd.data.synth import synthesize
from fasd.student_train.run_config import TrainOptions
from fasd.student_train.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_validation_batch_mixes_the_source_domains(tmp_path) -> None:
    # 480 frames a domain: 72 validation frames each, more than one validation batch of 128 over two sources
    config = synthesize(tmp_path / "data", domains=3, frames=480, size=32, seed=0, progress=False)
    options = TrainOptions.for_recipe("vlmkd", protocol="holdout-gamma", sources=["alpha", "beta"], target="gamma",
                                      config=str(config), store=None, no_teacher=True, epochs=1, batch_size=16,
                                      workers=0, seed=0)
    trainer = Trainer(load_registry(config), options, tmp_path / "run", progress=False)
    trainer._build(lambda _message: None)
    seen: list[set[int]] = []
    criterion = trainer.criterion

    def spy(batch):
        seen.append(set(batch.domains.tolist()))
        return criterion(batch)

    trainer.criterion = spy
    terms = trainer._validate()
    assert len(seen) >= 2 and all(domains == {0, 1} for domains in seen)
    assert len(trainer.val_set) > 128 and torch.isfinite(torch.tensor(terms["total"]))
