"""Where ALS is fitted: auto falls back to the CPU, a forced GPU without CUDA is a clear error,
and the factors (hence the artifact) have one format whatever the device.

The GPU path itself needs a CUDA device and implicit's CUDA build; these machines have neither,
so only its refusal and the CPU fallback run here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from benchmarks.fixtures import small_shop_spec
from engine.artifacts import load_artifact
from engine.matrix import InteractionMatrix
from engine.vocab import Vocabulary
from personalize.cli import main
from training.device import cuda_available, resolve_device
from training.fit import fit_factors
from training.params import FactorParams
from training.synthetic import generate_shop, write_log

no_cuda = pytest.mark.skipif(cuda_available(), reason="a CUDA device is present here")


def _matrix() -> InteractionMatrix:
    rng = np.random.default_rng(3)
    dense = (rng.random((40, 30)) < 0.2).astype(np.float32) * rng.integers(1, 4, (40, 30))
    return InteractionMatrix(
        Vocabulary([f"u{i}" for i in range(40)]),
        Vocabulary([f"i{i}" for i in range(30)]),
        sp.csr_matrix(dense),
    )


def test_cpu_is_always_the_cpu() -> None:
    assert resolve_device("cpu") == "cpu"


@no_cuda
def test_auto_picks_the_cpu_without_cuda() -> None:
    assert resolve_device("auto") == "cpu"


@no_cuda
def test_gpu_without_cuda_is_an_error_not_a_fallback() -> None:
    with pytest.raises(ValueError, match=r"HAS_CUDA is false.*--device auto or cpu"):
        resolve_device("gpu")
    with pytest.raises(ValueError, match="no usable CUDA device"):
        fit_factors(_matrix(), FactorParams(factors=4, iterations=2), threads=1, device="gpu")


def test_factors_have_one_format_whatever_the_requested_device() -> None:
    """auto resolves to a real device and yields the same float32, C-ordered factors as cpu
    (identical here, where auto is the CPU)."""
    params = FactorParams(factors=8, iterations=3)
    cpu = fit_factors(_matrix(), params, seed=5, threads=1, device="cpu")
    auto = fit_factors(_matrix(), params, seed=5, threads=1, device="auto")
    for got in (cpu, auto):
        assert got.user_factors.dtype == np.float32 and got.user_factors.flags.c_contiguous
        assert got.item_factors.dtype == np.float32 and got.item_factors.flags.c_contiguous
        assert got.user_factors.shape == (40, 8) and got.item_factors.shape == (30, 8)
    if resolve_device("auto") == "cpu":
        np.testing.assert_array_equal(cpu.user_factors, auto.user_factors)
        np.testing.assert_array_equal(cpu.item_factors, auto.item_factors)


def test_train_records_the_device_and_refuses_a_missing_gpu(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "shop.parquet"
    write_log(generate_shop(small_shop_spec()), log)
    models = tmp_path / "models"
    common = ["train", "--log", str(log), "--out", str(models), "--no-evaluate", "--quiet"]
    assert main([*common, "--device", "cpu", "--threads", "1"]) == 0
    manifest = load_artifact(models).manifest
    assert manifest["trainer"] == {"name": "implicit", "device": "cpu"}
    if not cuda_available():
        capsys.readouterr()
        assert main([*common, "--device", "gpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "no usable CUDA device" in err
