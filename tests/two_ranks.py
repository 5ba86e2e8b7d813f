"""Run by test_training under `torch.distributed.run` with two CPU processes: train a tiny
model and write each rank's parameter checksum. Usage: two_ranks.py CHECKPOINT_DIR CHECKSUM_DIR"""

import sys
from pathlib import Path

import torch

from minigpt.model import GPT
from minigpt.training import train_loop
from tests.helpers import RUNTIME, TINY, loop_params, random_rows

torch.manual_seed(0)
result = train_loop(
    GPT(TINY),
    random_rows(64),
    random_rows(8),
    loop_params(batch_tokens=128, micro_batch_size=2),
    RUNTIME,
    Path(sys.argv[1]),
    None,
)
checksum = sum(float(tensor.double().sum()) for tensor in result.model.state_dict().values())
(Path(sys.argv[2]) / f"rank-{torch.distributed.get_rank()}.txt").write_text(f"{checksum:.12e}")
