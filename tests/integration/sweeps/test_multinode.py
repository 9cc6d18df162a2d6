"""Multi-node DDP without a cluster: two "nodes" on this machine, each a torchrun agent with one
CPU process, train as one job and end where one node with two processes ends (same world size,
same global batch). Marked slow: three short trainings in subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DIGITS_CLI, with_overrides

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[3]
TINY = with_overrides(DIGITS_CLI, "trainer.max_epochs=2")
# trainer=ddp without GPUs: one process per "node", two nodes
TWO_NODES = [
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.sync_batchnorm=false",
    "trainer.devices=1",
    "trainer.num_nodes=2",
]

# one thread per process everywhere (torchrun sets it only for several processes per node, and
# ddp_spawn divides the cores): the same kernels, so the same sums to the last bit
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_torchrun_nodes_on_one_machine_end_as_one_node_with_two_processes(tmp_path: Path):
    port, run_dir = free_port(), tmp_path / "two_nodes"
    # every node must be given the same run directory (the default one has the launch time in it)
    nodes = [
        subprocess.Popen(
            [
                *(sys.executable, "-m", "torch.distributed.run"),
                *("--nnodes=2", "--nproc-per-node=1", f"--node-rank={rank}"),
                *("--master-addr=127.0.0.1", f"--master-port={port}"),
                *("-m", "transferlab.train", *TINY, *TWO_NODES, f"hydra.run.dir={run_dir}"),
            ],
            cwd=ROOT,
            env=ONE_THREAD,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[1][-3000:] + outputs[0][-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]  # node 1's rank
    one_node = subprocess.run(
        [
            sys.executable,
            "-m",
            "transferlab.train",
            *TINY,
            "trainer=ddp_cpu",
            f"hydra.run.dir={tmp_path / 'one'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=ONE_THREAD,
    )
    assert one_node.returncode == 0, one_node.stderr[-3000:]
    two, one = (json.loads((d / "metrics.json").read_text()) for d in (run_dir, tmp_path / "one"))
    assert two["global_step"] == one["global_step"] > 0  # the global batch split over two ranks
    for key in ("test/acc", "test/loss", "val/acc", "val/loss", "train/loss"):
        assert two["final"][key] == one["final"][key], key
