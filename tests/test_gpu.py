"""CUDA checks, run by benchmarks/gpu_check.sh on a GPU machine (skipped without one):
bitsandbytes' CUDA kernels against the package, the precision chosen for the real device, and
a few training steps of the ci recipe with autocast (and a gradient scaler where float16)."""

from __future__ import annotations

import copy
import tempfile

import pytest
import torch

from lacos_helpers import config, data, quantization, runtime, training
from lacos_helpers.training import precision

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_int8_linear_matches_linear8bitlt_on_cuda():
    bnb = pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    linear = torch.nn.Linear(1024, 512).half()
    ours = quantization.Int8Linear.from_linear(copy.deepcopy(linear).float()).cuda()
    theirs = quantization.bnb.to_linear8bit(copy.deepcopy(linear), 6.0).cuda()
    assert isinstance(theirs, bnb.nn.Linear8bitLt)
    x = torch.randn(64, 1024, device="cuda", dtype=torch.float16)
    with torch.no_grad():
        a, b = ours(x.float()), theirs(x).float()
    assert ((a - b).norm() / b.norm()).item() < 5e-3


def test_precision_matches_the_device():
    device = torch.device("cuda")
    capability = torch.cuda.get_device_capability(device)
    want = torch.bfloat16 if capability >= (8, 0) else torch.float16
    assert precision.amp_dtype(device) == want
    assert (precision.make_scaler(device) is not None) == (want == torch.float16)


def test_ci_recipe_trains_on_cuda():
    cfg = config.load_profile("ci", model={"device": "cuda"},
                              train={"steps": 4, "warmup_steps": 1})
    triplets = data.load_nli_triplets("en", limit=400, seed=0)
    runtime.seed_everything(0)
    encoder = training.build_encoder(cfg, texts=data.training_texts(triplets))
    assert encoder.device.type == "cuda"
    with tempfile.TemporaryDirectory() as out:
        result = training.train(cfg, encoder, triplets, out_dir=out, show_progress=False)
    assert len(result.losses) == 4 and all(torch.isfinite(torch.tensor(result.losses)))
