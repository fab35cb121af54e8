"""``python -m lacos_helpers train`` as one process of the ZeRO-3 tests in
``test_zero3_training.py`` (started by ``torchrun``). With ``KILL_AFTER_STEP=N`` every process
dies (``os._exit``, no clean-up, as a killed job) right after the checkpoint of step N is
complete.
Not a test module (no ``test_``).
"""

from __future__ import annotations

import os
import sys

from lacos_helpers import cli
from lacos_helpers.training import distributed, loop


def kill_after(step: int) -> None:
    checkpoint = loop.Trainer.checkpoint

    def checkpoint_then_die(self):
        path = checkpoint(self)
        if self.step == step:
            distributed.barrier()  # rank 0 has finished writing
            os._exit(9)
        return path

    loop.Trainer.checkpoint = checkpoint_then_die


if __name__ == "__main__":
    if os.environ.get("KILL_AFTER_STEP"):
        kill_after(int(os.environ["KILL_AFTER_STEP"]))
    sys.exit(cli.main(sys.argv[1:]))  # a finished ZeRO-3 worker exits in train_command
