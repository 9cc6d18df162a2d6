"""The loggers template users expect beyond TensorBoard and CSV, for real: an MLflow file store
and W&B offline runs written by a 2×2 sweep through the command line, read back with each
tool's own reader, and the sweep's summary beside them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DIGITS_CLI, with_overrides

ROOT = Path(__file__).resolve().parents[3]


def sweep(tmp_path: Path, logger: str) -> Path:
    """A 2 x 2 sweep (learning rate x seed) of one-epoch digits runs with ``logger``; its directory."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_SILENT": "true"}
    args = with_overrides(DIGITS_CLI, f"logger={logger}", f"paths.log_dir={tmp_path / 'logs'}")
    command = [
        sys.executable,
        "-m",
        "transferlab.train",
        "-m",
        *args,
        "method.optimizer.lr=0.01,0.05",
        "seed=0,1",
    ]
    command.append(f"hydra.sweep.dir={tmp_path / 'sweep'}")
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| 0.05 | 2 | 0 |" in (tmp_path / "sweep" / "summary.md").read_text()  # the summary works
    return tmp_path / "sweep"


def jobs(sweep_dir: Path) -> list[Path]:
    return sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name[0].isdigit())


@pytest.mark.slow  # four runs with an MLflow store; CI runs it (.ci/run)
def test_logger_many_writes_tensorboard_csv_and_an_mlflow_store_that_mlflow_reads_back(tmp_path):
    from mlflow.tracking import MlflowClient

    sweep_dir = sweep(tmp_path, "many")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("train")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {run.info.run_name: run for run in runs}
    assert sorted(by_name) == [job.name for job in jobs(sweep_dir)]
    for job in jobs(sweep_dir):
        run = by_name[job.name]
        final = json.loads((job / "metrics.json").read_text())["final"]
        overrides = dict(
            o.split("=", 1) for o in yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        )
        assert float(run.data.params["method/optimizer/lr"]) == float(overrides["method.optimizer.lr"])
        assert run.data.metrics["test/acc"] == pytest.approx(final["test/acc"])
        assert "val/acc_best" in run.data.metrics  # the headline metrics, as in TensorBoard's HParams
        assert run.info.status == "FINISHED"
        assert (job / "tensorboard" / "hparams").is_dir() and (job / "csv" / "metrics.csv").is_file()


def wandb_records(path: Path) -> list:
    """The records of an offline W&B run file (``run-*.wandb``: a LevelDB-style log of 32 KiB
    blocks, each record a CRC, a length, a type — full, first, middle or last — and a protobuf
    ``Record`` of wandb's own schema), what ``wandb sync`` uploads."""
    import struct

    from wandb.proto import wandb_internal_pb2

    data, pos, block, records, pending = path.read_bytes(), 7, 32768, [], b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0:
            break
        pending = payload if kind in (1, 2) else pending + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


@pytest.mark.slow  # four runs with W&B; CI runs it (.ci/run)
def test_logger_wandb_writes_one_offline_run_per_job(tmp_path):
    sweep_dir = sweep(tmp_path, "wandb")
    for job in jobs(sweep_dir):
        (run_dir,) = (job / "wandb").glob("offline-run-*")  # one run each: the last job did not reuse it
        (run_file,) = run_dir.glob("run-*.wandb")
        records = wandb_records(run_file)
        kinds = [r.WhichOneof("record_type") for r in records]
        assert kinds[0] == "header" and "exit" in kinds  # a whole, finished run
        summary = {
            i.key or "/".join(i.nested_key): json.loads(i.value_json)
            for r in records
            if r.HasField("summary")
            for i in r.summary.update
        }
        config = {
            i.key: json.loads(i.value_json) for r in records if r.HasField("config") for i in r.config.update
        }
        final = json.loads((job / "metrics.json").read_text())["final"]
        assert summary["test/acc"] == pytest.approx(final["test/acc"])
        assert summary["val/acc_best"] == pytest.approx(
            json.loads((job / "metrics.json").read_text())["best"]["val/acc"]
        )
        assert config["seed"] == int(job.name.split("seed=")[1])
        assert config["method"]["optimizer"]["lr"] == float(job.name.split("lr=")[1].split(",")[0])
