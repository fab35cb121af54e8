"""GradCache (cached MNR): the same loss and gradients as plain MNR on the same batch, in chunks
that are embedded twice (without, then with their graph); dropout replayed; the trainer picks it
from ``train.cache_chunk``; bad chunk sizes are errors.

Weight-only 8-bit (``quant.compute="dequantize"``) as in ``test_distributed.py``: LLM.int8's
outlier columns depend on which sentences share a forward pass, which chunking changes.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lacos_helpers import config, training
from lacos_helpers.encoder.losses import triplet_mnr
from lacos_helpers.encoder.losses.triplet_mnr import MNRLoss, embed_triplets


@pytest.fixture(scope="module")
def cfg(ci_cfg):
    return ci_cfg.replace(quant={"compute": "dequantize"}, train={"batch_size": 16})


@pytest.fixture(scope="module")
def batch(ci_triplets):
    return [t for t in ci_triplets if t.hard_negative][:16]


def make_encoder(cfg, ci_backbone, seed: int = 0):
    """A trainable encoder whose LoRA B is not zero (at B = 0 every gradient of A is exactly
    0 and would compare equal whatever the method)."""
    backbone, tokenizer = ci_backbone
    torch.manual_seed(seed)
    encoder = training.build_encoder(cfg, copy.deepcopy(backbone), tokenizer)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return encoder.train()


def gradients(encoder, compute) -> tuple[float, dict]:
    encoder.zero_grad(set_to_none=True)
    loss = compute()
    return loss, {n: p.grad.clone() for n, p in encoder.named_parameters() if p.requires_grad}


def plain(encoder, batch, train):
    loss = training.batch_loss(encoder, batch, train)
    loss.backward()
    return loss.item()


def cached(encoder, batch, train, chunk):
    return MNRLoss(mini_batch_size=chunk).loss_and_backward(encoder, batch, train,
                                                       lambda loss: loss.backward())


def rel_diff(a: dict, b: dict) -> float:
    """max |a - b| over every tensor, relative to max |b| (b must not be all zero)."""
    scale = max(g.abs().max().item() for g in b.values())
    assert scale > 0
    return max((a[k] - b[k]).abs().max().item() for k in b) / scale


@pytest.mark.parametrize("chunk", [1, 3, 5, 16, 40])
@pytest.mark.parametrize("variant", [{}, {"hard_negatives": False}, {"symmetric": True}])
def test_gradients_equal_plain_mnr(cfg, ci_backbone, batch, chunk, variant):
    train = cfg.replace(train=variant).train
    encoder = make_encoder(cfg, ci_backbone)
    ref_loss, ref = gradients(encoder, lambda: plain(encoder, batch, train))
    loss, got = gradients(encoder, lambda: cached(encoder, batch, train, chunk))
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert rel_diff(got, ref) <= 1e-5


def test_chunks_are_embedded_without_then_with_their_graph(cfg, ci_backbone, batch):
    """Step 1 embeds every chunk under no_grad, step 3 re-embeds one chunk at a time with its
    graph: no forward pass with a graph ever holds more than one chunk."""
    encoder = make_encoder(cfg, ci_backbone)
    calls = []
    embed = encoder.embed

    def spy(texts):
        calls.append((len(texts), torch.is_grad_enabled()))
        return embed(texts)

    encoder.embed = spy
    cached(encoder, batch, cfg.train, chunk=5)
    assert calls == [(15, False), (15, False), (15, False), (3, False),
                     (15, True), (15, True), (15, True), (3, True)]
    calls.clear()
    cached(encoder, batch, cfg.train, chunk=16)  # fits in one chunk: one forward, with graph
    assert calls == [(48, True)]


def test_dropout_is_replayed(cfg, ci_backbone, batch):
    """With LoRA dropout the re-embedding must draw the same masks as the first pass: the
    cached gradients equal those of embedding the same chunks with their graphs in one go
    (same seed), and differ from one forward over the whole batch (other masks)."""
    dcfg = cfg.replace(lora={"dropout": 0.2})
    encoder = make_encoder(dcfg, ci_backbone)
    chunks = triplet_mnr.chunked(batch, 4)

    def chunkwise_with_graph():
        emb = torch.cat([embed_triplets(encoder, c, True) for c in chunks], dim=1)
        loss = triplet_mnr.triplet_mnr_loss(emb, dcfg.train.scale)
        loss.backward()
        return loss.item()

    torch.manual_seed(7)
    _, ref = gradients(encoder, chunkwise_with_graph)
    after_ref = torch.rand(3)
    torch.manual_seed(7)
    _, got = gradients(encoder, lambda: cached(encoder, batch, dcfg.train, 4))
    after_cached = torch.rand(3)
    assert rel_diff(got, ref) <= 1e-5
    assert torch.equal(after_ref, after_cached)  # the random stream goes on as after one pass
    torch.manual_seed(7)
    _, whole = gradients(encoder, lambda: plain(encoder, batch, dcfg.train))
    assert rel_diff(whole, ref) > 1e-3  # dropout is really on: other masks, other gradients


def test_non_finite_embeddings_give_nan_without_backward(cfg, ci_backbone, batch):
    encoder = make_encoder(cfg, ci_backbone)
    encoder.embed = lambda texts: torch.full((len(texts), 8), float("nan"))
    called = []
    loss = MNRLoss(mini_batch_size=4).loss_and_backward(encoder, batch, cfg.train, called.append)
    assert loss != loss and called == []


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "8"])
def test_bad_chunk_size(bad):
    with pytest.raises(ValueError, match="cache_chunk"):
        MNRLoss(mini_batch_size=bad)


def test_configuration_rejects_bad_cache_chunk():
    with pytest.raises(ValueError, match="train.cache_chunk"):
        config.load_profile("ci", train={"cache_chunk": 0})


def test_trainer_uses_gradcache_and_trains_the_same(cfg, ci_backbone, ci_triplets, tmp_path):
    """``train.cache_chunk`` switches the trainer to GradCache; 2 steps give the adapter of
    plain MNR (lr 1e-3: see test_distributed.py on 8-bit Adam's rounding)."""
    run_cfg = cfg.replace(train={"steps": 2, "warmup_steps": 1, "learning_rate": 1e-3})
    adapters = {}
    for chunk in (None, 3):
        c = run_cfg.replace(train={"cache_chunk": chunk})
        encoder = make_encoder(c, ci_backbone)
        trainer = training.Trainer(c, encoder, ci_triplets, tmp_path / str(chunk),
                                   show_progress=False)
        # one loss class; GradCache is its mini_batch_size option
        assert isinstance(trainer.objective, MNRLoss)
        assert trainer.objective.mini_batch_size == chunk
        trainer.run()
        adapters[chunk] = {n: p.detach().clone() for n, p in encoder.named_parameters()
                           if p.requires_grad}
    start = make_encoder(run_cfg, ci_backbone)
    moved = max((adapters[None][n] - p).abs().max().item()
                for n, p in start.named_parameters() if p.requires_grad)
    assert moved > 1e-4
    assert max((adapters[3][n] - adapters[None][n]).abs().max().item()
               for n in adapters[None]) <= 1e-5


@pytest.mark.parametrize("chunk", [None, 3])
def test_the_trainer_only_calls_backward(cfg, ci_backbone, batch, chunk):
    """One loss, with or without GradCache chunks: ``backward`` of the returned loss (scaled,
    as the trainer scales it for accumulation) gives the scaled gradients of plain MNR."""
    encoder = make_encoder(cfg, ci_backbone)
    _, ref = gradients(encoder, lambda: plain(encoder, batch, cfg.train))

    def scaled_backward():
        loss = MNRLoss(mini_batch_size=chunk)(encoder, batch, cfg.train)
        (loss * 0.25).backward()
        return loss.item()

    _, got = gradients(encoder, scaled_backward)
    assert rel_diff({k: v * 4 for k, v in got.items()}, ref) <= 1e-5
