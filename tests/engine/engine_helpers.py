"""Helpers the engine tests share (imported as `engine_helpers`, like tests/checkpoint's)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    """A TCP port nobody listens on now, for a torchrun rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_torchrun(job: str, config: Path, work_dir: Path, cfg_options: list[str], nproc: int = 2):
    """`torchrun --nproc_per_node=N -m videomae2 JOB CONFIG` with one thread per process;
    asserts that it exits 0 (its output tails in the message otherwise)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
        f"--master_port={free_port()}", "-m", "videomae2", job, str(config),
        "--work-dir", str(work_dir), "--cfg-options", *cfg_options, "train.threads=1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
