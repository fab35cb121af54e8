"""One process of the 2-process tests in ``test_distributed.py`` (started by ``torchrun``, which
sets RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT, as it does for the ``train`` command).

    torchrun --nproc-per-node 2 tests/distributed_worker.py WORKDIR

``WORKDIR/job.json`` says what to run (configuration, tokenizer folder, triplets); rank 0 writes
each scenario's result to ``WORKDIR/<scenario>/result.pt``. Not a test module (no ``test_``).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

import torch

from lacos_helpers import backbones, config, data, lora, training
from lacos_helpers.training import distributed


def fresh_encoder(cfg, tokenizer_dir: Path):
    """The encoder every scenario starts from: the tiny BLOOM of ``cfg`` around the saved
    tokenizer, 8-bit + LoRA, seeded as the single-process reference is."""
    from transformers import AutoTokenizer

    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    backbone, tokenizer = backbones.load_backbone(cfg, tokenizer=tokenizer)
    return training.build_encoder(cfg, backbone, tokenizer)


def perturb_lora_b(encoder, seed: int = 0) -> None:
    """LoRA B starts at 0, which makes every gradient of A exactly 0: give B small seeded
    values so that the gradient comparison covers A too (the same in every process)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def adapter(encoder) -> dict:
    return {k: v.clone() for k, v in lora.lora_state_dict(encoder.backbone).items()}


def synced_gradients(cfg, encoder, triplets, out: Path) -> dict:
    """The gradients of global micro-batch 0 after the all-reduce (no optimizer step), with
    LoRA B perturbed (:func:`perturb_lora_b`)."""
    perturb_lora_b(encoder)
    encoder.train()
    trainer = distributed.DistributedTrainer(cfg, encoder, triplets, out, show_progress=False)
    trainer.engine.zero_grad()
    loss = trainer.objective.loss_and_backward(encoder, trainer.local_batch(0), cfg.train,
                                               trainer.engine.backward)
    trainer.engine.sync_gradients()
    names = [n for n, p in encoder.named_parameters() if p.requires_grad]
    return {"loss": loss, "grads": {n: p.grad.clone() for n, p in
                                    zip(names, trainer.params)}}


def run(cfg, encoder, triplets, out: Path, stop_after: int | None = None) -> dict:
    stop = [] if stop_after is None else [lambda r: r["kind"] == "train"
                                          and r["step"] == stop_after]
    result = distributed.DistributedTrainer(cfg, encoder, triplets, out, show_progress=False,
                                            callbacks=stop).run()
    return {"losses": result.losses, "step": result.step, "adapter": adapter(encoder),
            "resumed_from": result.resumed_from}


def main(workdir: Path) -> None:
    job = json.loads((workdir / "job.json").read_text())
    info = distributed.init_process_group(timeout_s=job["timeout_s"])
    cfg = config.RunConfig.from_dict(job["config"])
    triplets = [data.NLITriplet(*t) for t in job["triplets"]]
    tokenizer_dir = Path(job["tokenizer"])
    for scenario in job["scenarios"]:
        out = workdir / scenario["name"]
        run_cfg = cfg.replace(train=scenario.get("train", {}))
        encoder = fresh_encoder(run_cfg, tokenizer_dir)
        if scenario["kind"] == "gradients":
            result = synced_gradients(run_cfg, encoder, triplets, out)
        else:
            result = run(run_cfg, encoder, triplets, out, scenario.get("stop_after"))
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            torch.save(result, out / "result.pt")
    distributed.shutdown()


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]))
    except BaseException:
        traceback.print_exc()
        sys.exit(1)
