"""Run by the two-rank tests under `torch.distributed.run` with two CPU processes: train a tiny
model on random packed rows, or on the windows of the token shards in SHARDS, and write each
rank's parameter checksum and the training rows it read, call by call, to OUT/rank-N.json.
Usage: two_ranks.py CHECKPOINT_DIR OUT [SHARDS]"""

import dataclasses
import json
import sys
from pathlib import Path

import torch

from minigpt.model import GPT
from minigpt.packing import ShardWindows
from minigpt.shards import read_index
from minigpt.training import train_loop
from tests.helpers import RUNTIME, TINY, loop_params, random_rows

checkpoints, out = Path(sys.argv[1]), Path(sys.argv[2])
if len(sys.argv) > 3:
    shards = Path(sys.argv[3])
    index = read_index(shards)
    config = dataclasses.replace(TINY, vocab_size=index["vocab_size"])
    train_rows, val_rows = (
        ShardWindows(shards, index, split, TINY.block_size + 1, "masked") for split in ("train", "validation")
    )
else:
    config, train_rows, val_rows = TINY, random_rows(64), random_rows(8)

read: list[list[int]] = []
batch = train_rows.batch
train_rows.batch = lambda indices, device: read.append(indices.tolist()) or batch(indices, device)
torch.manual_seed(0)
result = train_loop(
    GPT(config), train_rows, val_rows, loop_params(batch_tokens=128, micro_batch_size=2), RUNTIME, checkpoints, None
)
checksum = sum(float(tensor.double().sum()) for tensor in result.model.state_dict().values())
rank = torch.distributed.get_rank()
(out / f"rank-{rank}.json").write_text(json.dumps({"checksum": f"{checksum:.12e}", "rows": read}))
