"""Data-parallel training: 2 CPU processes (gloo, started by torchrun as the ``train`` command
is) against one process on the combined batch: the same gradients, the same step-1 loss, the
same LoRA weights after 2 steps, resume from 2 processes to 1 and from 1 to 2, GradCache across
processes; rank 0 alone writes. One torchrun launch serves every scenario (a few seconds of
start-up), with a timeout so a hung collective fails the test instead of the suite.

The 8-bit base multiplies weight-only here (``quant.compute="dequantize"``): LLM.int8 picks its
outlier columns from the whole batch, so a process holding half the batch would round some
activations differently from one process holding all of it (a difference of the method, not of
the distribution). The learning rate is 1e-3 instead of the profile's 3e-3: 8-bit Adam rounds
its moments to 8-bit codes, and on the odd element where a 1e-7 difference of the gradient
(another summation order) crosses a rounding boundary the update moves by one code step, about
0.5% of the learning rate (1.6e-5 on 1 of 70k weights at 3e-3). Adam's update hardly depends on
the gradients' scale, so the gradient comparison, not the weights, is what catches averaging
the processes' gradients where they must be summed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import distributed_worker as worker
import pytest
import torch

from lacos_helpers import training
from lacos_helpers.encoder.losses.mnr import mnr_loss
from lacos_helpers.encoder.losses.triplet_mnr import embed_triplets, triplet_mnr_loss
from lacos_helpers.training import distributed, runs

WORLD = 2
TIMEOUT_S = 240
WORKER = Path(worker.__file__)


def max_rel_diff(a: dict, b: dict) -> float:
    """max |a - b| over every tensor, relative to max |b|."""
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    return diff / max(b[k].abs().max().item() for k in b)


def max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def single_process_run(cfg, triplets, tokenizer_dir, out, stop_after=None):
    encoder = worker.fresh_encoder(cfg, tokenizer_dir)
    stop = [] if stop_after is None else [lambda r: r["kind"] == "train"
                                          and r["step"] == stop_after]
    result = training.Trainer(cfg, encoder, triplets, out, show_progress=False,
                              callbacks=stop).run()
    return {"losses": result.losses, "adapter": worker.adapter(encoder),
            "resumed_from": result.resumed_from, "step": result.step}


def reference_gradients(cfg, triplets, tokenizer_dir) -> dict:
    """Plain MNR on global micro-batch 0 in one process."""
    encoder = worker.fresh_encoder(cfg, tokenizer_dir)
    worker.perturb_lora_b(encoder)
    encoder.train()
    plan = training.BatchPlan(training.usable_triplets(triplets, True), cfg.train.batch_size,
                              cfg.seed)
    loss = training.batch_loss(encoder, plan[0], cfg.train)
    loss.backward()
    return {"loss": loss.item(), "grads": {n: p.grad.clone() for n, p in
                                           encoder.named_parameters() if p.requires_grad}}


def launch(workdir: Path) -> None:
    """torchrun 2 processes of the worker; fail with the output tail on error or timeout."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={WORLD}", str(WORKER), str(workdir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its two workers
        output, _ = proc.communicate()
        pytest.fail(f"2-process run timed out after {TIMEOUT_S} s:\n{output[-4000:]}")
    if proc.returncode:
        pytest.fail(f"2-process run failed ({proc.returncode}):\n{output[-4000:]}")


@pytest.fixture(scope="module")
def job(ci_cfg, ci_triplets, ci_backbone, tmp_path_factory):
    """Single-process references, then one 2-process launch of every scenario."""
    work = tmp_path_factory.mktemp("distributed")
    cfg = ci_cfg.replace(quant={"compute": "dequantize"},
                         train={"batch_size": 8, "steps": 2, "warmup_steps": 1,
                                "learning_rate": 1e-3, "checkpoint_every": 1})
    triplets = [t for t in ci_triplets if t.hard_negative][:200]
    tokenizer_dir = work / "tokenizer"
    ci_backbone[1].save_pretrained(tokenizer_dir)
    refs = {"full": single_process_run(cfg, triplets, tokenizer_dir, work / "ref-full"),
            "grads": reference_gradients(cfg, triplets, tokenizer_dir)}
    # a run one process starts and two processes finish
    refs["first-step"] = single_process_run(cfg, triplets, tokenizer_dir, work / "one-to-two",
                                            stop_after=1)
    scenarios = [{"name": "grads", "kind": "gradients"},
                 {"name": "two", "kind": "run"},
                 {"name": "two-to-one", "kind": "run", "stop_after": 1},
                 {"name": "one-to-two", "kind": "run"},
                 {"name": "cached", "kind": "run", "train": {"cache_chunk": 3}}]
    (work / "job.json").write_text(json.dumps({
        "config": cfg.to_dict(), "tokenizer": str(tokenizer_dir), "timeout_s": TIMEOUT_S / 2,
        "triplets": [list(t) for t in triplets], "scenarios": scenarios}))
    launch(work)
    results = {s["name"]: torch.load(work / s["name"] / "result.pt", weights_only=False)
               for s in scenarios}
    # ... and a run two processes start and one process finishes
    results["two-to-one, resumed"] = single_process_run(cfg, triplets, tokenizer_dir,
                                                        work / "two-to-one")
    return {"cfg": cfg, "work": work, "refs": refs, "results": results}


def adam_tolerance(cfg, steps: int) -> float:
    """How far two runs of the same Adam steps may end apart when their gradients differ only
    in float32 summation order (the gradients themselves agree to 1e-5 relative, above): Adam
    divides each gradient by its own running magnitude, so a gradient that is zero in exact
    arithmetic but float noise (~1e-11) in one summation order moves its weight by about
    lr * noise / eps (eps = 1e-8) -- a fraction of a step, but not a rounding error. Such noise
    never moves a weight by more than 1% of a step (lr) per step; a real difference in the
    loss or its negatives changes updates by a whole step."""
    return 0.01 * cfg.train.learning_rate * steps


# -- two processes = one process on the combined batch ---------------------------------------

def test_gathered_gradients_equal_single_process(job):
    got, ref = job["results"]["grads"], job["refs"]["grads"]
    assert max(g.abs().max().item() for g in ref["grads"].values()) > 0
    assert max_rel_diff(got["grads"], ref["grads"]) <= 1e-5
    assert got["loss"] == pytest.approx(ref["loss"], rel=1e-6)


def test_two_processes_train_like_one(job):
    got, ref = job["results"]["two"], job["refs"]["full"]
    assert got["step"] == 2 and len(got["losses"]) == 2
    assert got["losses"][0] == pytest.approx(ref["losses"][0], rel=1e-6)  # the step-1 loss
    assert got["losses"][1] == pytest.approx(ref["losses"][1], rel=1e-5)
    moved = max_abs_diff(got["adapter"], worker.adapter(
        worker.fresh_encoder(job["cfg"], job["work"] / "tokenizer")))
    assert moved > 1e-4  # training changed the weights: the comparison below means something
    assert max_abs_diff(got["adapter"], ref["adapter"]) <= adam_tolerance(job["cfg"], 2)


def test_gradcache_across_processes_trains_like_one(job):
    got, ref = job["results"]["cached"], job["refs"]["full"]
    assert got["losses"][0] == pytest.approx(ref["losses"][0], rel=1e-6)
    assert max_abs_diff(got["adapter"], ref["adapter"]) <= adam_tolerance(job["cfg"], 2)


def test_resume_with_another_number_of_processes(job):
    ref = job["refs"]["full"]
    for name in ("one-to-two", "two-to-one, resumed"):
        got = job["results"][name]
        assert got["resumed_from"] == 1 and got["step"] == 2, name
        assert max_abs_diff(got["adapter"], ref["adapter"]) <= adam_tolerance(job["cfg"], 2), name


def test_only_rank_zero_writes_the_run(job):
    run = job["work"] / "two"
    record = runs.read_run(run)
    assert record["environment"]["world_size"] == WORLD
    log = runs.read_log(run)
    assert [r["step"] for r in log if r["kind"] == "train"] == [1, 2]  # once, not per process
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert [p.name for p in (run / "checkpoints").glob("step-*")] != []
    stopped = runs.read_log(job["work"] / "two-to-one")
    assert [r["step"] for r in stopped if r["kind"] == "train"] == [1, 2]


# -- the layout of a gathered batch (one process) --------------------------------------------

def test_per_role_gather_keeps_each_hard_negative_in_its_column():
    """Two shards gathered per role give exactly the single-process loss; concatenating each
    shard's positives and negatives first (sentence-transformers' old bug) does not."""
    torch.manual_seed(0)
    emb = torch.randn(3, 8, 16)  # [roles, B, d]: anchors, positives, hard negatives
    shards = [emb[:, :4], emb[:, 4:]]
    gathered = torch.cat(shards, dim=1)
    reference = mnr_loss(emb[0], emb[1], emb[2])
    assert triplet_mnr_loss(gathered, 20.0) == pytest.approx(reference.item(), rel=1e-6)
    anchors = torch.cat([s[0] for s in shards])
    wrong = torch.cat([torch.cat([s[1], s[2]]) for s in shards])  # [p0, n0, p1, n1]
    bad = torch.nn.functional.cross_entropy(
        20 * torch.nn.functional.normalize(anchors, dim=-1)
        @ torch.nn.functional.normalize(wrong, dim=-1).T, torch.arange(8))
    assert abs(bad.item() - reference.item()) > 1e-3


def test_gather_with_one_process_is_the_identity():
    x = torch.randn(3, 4, 8, requires_grad=True)
    full, own = distributed.all_gather_with_grad(x)
    assert full is x and own == slice(0, 4)


def test_embed_triplets_groups_by_role(ci_cfg, ci_backbone, ci_triplets):
    import copy

    backbone, tokenizer = ci_backbone
    encoder = training.build_encoder(ci_cfg, copy.deepcopy(backbone), tokenizer)
    batch = [t for t in ci_triplets if t.hard_negative][:3]
    emb = embed_triplets(encoder, batch, hard_negatives=True)
    assert emb.shape == (3, 3, encoder.embedding_dim)
    flat = encoder.embed([batch[1].positive])
    assert torch.allclose(emb[1, 1], flat[0], atol=1e-5)
    with pytest.raises(ValueError, match="no hard negative"):
        embed_triplets(encoder, [(batch[0].anchor, batch[0].positive, None)], True)


# -- bad input and launch environment --------------------------------------------------------

def test_launch_info_reads_the_launcher_environment():
    assert distributed.launch_info({}) == distributed.ProcessInfo(0, 1, 0)
    info = distributed.launch_info({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (3, 4, 1, False)
    assert distributed.launch_info({"RANK": "0", "WORLD_SIZE": "2"}).is_distributed
    with pytest.raises(ValueError, match="set together"):
        distributed.launch_info({"RANK": "0"})
    with pytest.raises(ValueError, match="not in range"):
        distributed.launch_info({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="not an integer"):
        distributed.launch_info({"RANK": "x", "WORLD_SIZE": "2"})


def test_global_batch_must_split_evenly(ci_cfg, ci_backbone, ci_triplets, tmp_path):
    import copy

    cfg = ci_cfg.replace(train={"batch_size": 6})
    backbone, tokenizer = ci_backbone
    encoder = training.build_encoder(cfg, copy.deepcopy(backbone), tokenizer)
    with pytest.raises(ValueError, match="divisible by the 4 processes"):
        training.Trainer(cfg, encoder, ci_triplets, tmp_path, rank=0, world_size=4)
    with pytest.raises(RuntimeError, match="initialized process group"):
        distributed.DistributedTrainer(cfg, encoder, ci_triplets, tmp_path)
