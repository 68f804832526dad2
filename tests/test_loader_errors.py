"""A CSSError raised in a DataLoader worker reaches the user with its own message, as with
num_workers: 0, not PyTorch's "Caught DataError in DataLoader worker process 0" wrapper
(docs/controller.md#errors-in-loader-workers)."""

import pytest
import torch
from torch.utils.data import Dataset

from css.config.method import MethodConfig
from css.distributed import DistEnv
from css.engine.trainer import Trainer, evaluate
from css.engine.settings import TrainSettings
from css.errors import ConfigError, DataError
from css.methods.objective import Objective
from css.methods.resolve import resolve_method

from test_engine import TinySeg

MESSAGE = "bad file x.png: cannot identify image file; re-download it or remove it from the list"
MULTILINE = "bad file y.png:\n  line two of the message"
ENV = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


class BadAt(Dataset):
    def __init__(self, bad: int, error=DataError, message=MESSAGE):
        self.bad, self.error, self.message = bad, error, message

    def __len__(self):
        return 8

    def __getitem__(self, index):
        if index == self.bad:
            raise self.error(self.message)
        return torch.zeros(3, 4, 4), torch.zeros(4, 4, dtype=torch.long)


@pytest.mark.parametrize("workers", [0, 1])
def test_train_loader_worker_error_keeps_its_message(tmp_path, workers):
    objective = Objective(resolve_method(MethodConfig(name="ft"), dataset="voc"), step=0, num_old=0, num_current=2)
    trainer = Trainer(model=TinySeg(0), old_model=None, objective=objective, dataset=BadAt(bad=3), env=ENV,
                      settings=TrainSettings(epochs=1, lr=0.01, batch_size=2, seed=0, step=0, num_workers=workers),
                      resume_file=tmp_path / "resume.pt")
    with pytest.raises(DataError) as info:
        trainer.fit()
    assert str(info.value) == MESSAGE


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("error,message", [(DataError, MESSAGE), (ConfigError, MULTILINE)])
def test_evaluate_worker_error_keeps_its_message(workers, error, message):
    with pytest.raises(error) as info:
        evaluate(TinySeg(0), BadAt(bad=5, error=error, message=message), num_classes=2, env=ENV, batch_size=2,
                 num_workers=workers)
    assert type(info.value) is error and str(info.value) == message


def test_other_worker_errors_are_left_alone():
    with pytest.raises(ValueError, match="Caught ValueError in DataLoader worker"):
        evaluate(TinySeg(0), BadAt(bad=1, error=ValueError), num_classes=2, env=ENV, batch_size=2, num_workers=1)
