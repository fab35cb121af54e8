"""lacos_helpers.export: a trained run as a sentence-transformers folder. Round trip with
sentence-transformers (same embeddings as our encoder under left and right padding, for every
pooling, merged and adapter), the files and the model card, refusals (pooling, adapter folder
that does not load, non-empty folder), the CLI command, and (slow) the rotary Gemma backbone of
the cpu profile."""

from __future__ import annotations

import argparse
import copy
import json

import pytest
import torch

from lacos_helpers import export, lora, runtime, training
from lacos_helpers.export import st_model

pytest.importorskip("sentence_transformers")

SENTENCES = [
    "A man is playing a guitar.",
    "Two dogs run across a snowy field while their owner watches from the porch.",
    "Der Zug ist spät.",
    "Le chat dort.",
    "Stocks fell sharply on Monday as investors worried about interest rates and inflation "
    "in the United States, Europe and Asia, and oil prices rose for the third day.",
    "ok",
    "A woman slices an onion in the kitchen.",
]
TOL = 1e-4


def train_run(cfg, base, triplets, out, pooling="mean", compute="dequantize"):
    """A short ci run (4 steps: LoRA B is no longer zero) written to ``out``."""
    run_cfg = cfg.replace(encoder={"pooling": pooling}, quant={"compute": compute})
    runtime.seed_everything(run_cfg.seed)
    backbone, tokenizer = base
    encoder = training.build_encoder(run_cfg, copy.deepcopy(backbone), tokenizer)
    training.train(run_cfg, encoder, triplets, out_dir=out, show_progress=False)
    return out


@pytest.fixture(scope="module")
def cfg(ci_cfg):
    return ci_cfg.replace(train={"batch_size": 8, "steps": 4, "warmup_steps": 1},
                          data={"nli_limit": 200})


@pytest.fixture(scope="module")
def triplets(ci_triplets):
    return ci_triplets[:200]


@pytest.fixture(scope="module")
def runs(cfg, ci_backbone, triplets, tmp_path_factory):
    """One trained ci run per pooling (weight-only 8-bit compute: the export is exact)."""
    root = tmp_path_factory.mktemp("runs")
    return {pooling: train_run(cfg, ci_backbone, triplets, root / pooling, pooling)
            for pooling in ("mean", "weightedmean", "lasttoken")}


def our_embeddings(run, padding_side: str) -> torch.Tensor:
    encoder = training.load_encoder(run)
    encoder.tokenizer.padding_side = padding_side
    return encoder.encode(SENTENCES, batch_size=4, show_progress=False)


def st_model_from(folder, padding_side: str | None = None):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(folder), device="cpu")
    if padding_side is not None:
        model.tokenizer.padding_side = padding_side
    return model


@pytest.mark.parametrize("pooling", ["mean", "weightedmean", "lasttoken"])
def test_sentence_transformers_reproduces_our_encoder(runs, pooling, tmp_path):
    result = export.export_run(runs[pooling], tmp_path / "st")
    assert result.max_abs_diff is not None and result.max_abs_diff <= TOL
    assert result.st_pooling == pooling and result.exact_compute
    model = st_model_from(tmp_path / "st")
    assert model.tokenizer.padding_side == "right"
    theirs = model.encode(SENTENCES, batch_size=4, convert_to_tensor=True).float()
    assert torch.allclose(theirs.norm(dim=1), torch.ones(len(SENTENCES)), atol=1e-5)
    for side in ("left", "right"):
        ours = our_embeddings(runs[pooling], side)
        assert (theirs - ours).abs().max().item() <= TOL, side
    # the adapter matters: the untrained encoder is measurably different
    untrained = training.load_encoder(runs[pooling], trained=False)
    before = untrained.encode(SENTENCES, show_progress=False)
    assert (theirs - before).abs().max().item() > 10 * TOL


def weighted_mean_counts_from_first_token(model) -> bool:
    """Whether the installed sentence-transformers' ``Pooling`` counts weighted-mean weights
    from each row's first real token (6.x: padding side does not matter) or from position 0
    of the padded row (5.7, Colab's): the same two tokens, right- and left-padded."""
    pooling = type(model[1])(2, pooling_mode="weightedmean")
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]],
                           [[9.0, 9.0], [1.0, 0.0], [0.0, 1.0]]])
    mask = torch.tensor([[1, 1, 0], [0, 1, 1]])
    out = pooling({"token_embeddings": tokens, "attention_mask": mask})["sentence_embedding"]
    return torch.allclose(out[0], out[1])


@pytest.mark.parametrize("pooling", ["mean", "weightedmean", "lasttoken"])
def test_bloom_is_padding_side_safe_in_sentence_transformers_too(runs, pooling, tmp_path):
    """BLOOM's ALiBi positions come from the attention mask: a left-padded sentence-transformers
    tokenizer gives our embeddings too, unless the pooling counts positions from the start of
    the padded row (the weighted mean of sentence-transformers 5.7). The export measures which
    (``left_padding_safe``), and where left padding differs the card says to keep the right
    padding (Gemma's rotary positions: see the slow test)."""
    result = export.export_run(runs[pooling], tmp_path / "st")
    model = st_model_from(tmp_path / "st", "left")
    left = model.encode(SENTENCES, batch_size=4, convert_to_tensor=True).float()
    diff = (left - our_embeddings(runs[pooling], "left")).abs().max().item()
    safe = pooling != "weightedmean" or weighted_mean_counts_from_first_token(model)
    card = (tmp_path / "st" / "README.md").read_text()
    assert result.left_padding_safe is safe
    if safe:
        assert diff <= TOL and result.left_padding_diff <= TOL
        assert "left padding gives the same embeddings too" in card
    else:
        assert diff > 10 * TOL and result.left_padding_diff > 10 * TOL
        assert "**Keep the right padding**" in card and result.checked_with in card


def test_left_padding_that_differs_is_reported(tmp_path, lacos_log):
    """Whatever the installed version: a measured left-padding difference becomes a warning,
    a line of the card and a field of the record."""
    result = st_model.ExportResult(
        folder=tmp_path / "st", mode="merged", run="r", pooling="weightedmean",
        st_pooling="weightedmean", normalize=True, max_seq_length=32, padding_side="right",
        exact_compute=True, probe_count=8)
    st_model._record_parity(result, 3e-7, 0.09, "sentence-transformers 5.7.0")
    assert result.left_padding_safe is False and result.left_padding_diff == 0.09
    assert "keep the folder's right padding" in lacos_log.take()
    card = export.model_card(result)
    assert "**Keep the right padding**: with sentence-transformers 5.7.0" in card
    assert "9.0e-02" in card and result.to_dict()["left_padding_safe"] is False
    st_model._record_parity(result, 3e-7, 2e-7, "sentence-transformers 6.3.0")
    assert result.left_padding_safe and "left padding gives the same" in export.model_card(result)


def test_folder_files_and_model_card(runs, tmp_path):
    run = runs["weightedmean"]
    (run / "eval").mkdir(exist_ok=True)
    (run / "eval" / "trained_sts_test.md").write_text("| lang | spearman |\n|---|---|\n"
                                                      "| en | 81.23 |\n")
    out = tmp_path / "st"
    export.export_run(run, out)
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling",
                                                              "Normalize"]
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_weightedmean_tokens"] is True
    assert sum(v is True for v in pooling.values()) == 1
    assert json.loads((out / "sentence_bert_config.json").read_text())["max_seq_length"] == 32
    assert json.loads((out / "tokenizer_config.json").read_text())["padding_side"] == "right"
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "bloom" and "quantization_config" not in config
    card = (out / "README.md").read_text()
    for expected in ("library_name: sentence-transformers", "LoRA: r=8", "MNR", "81.23",
                     "max |difference|", "pads on the **right**", "arXiv:2305.06404"):
        assert expected.replace("MNR", "Multiple Negatives Ranking") in card, expected
    record = json.loads((out / st_model.RECORD_FILE).read_text())
    assert record["mode"] == "merged" and record["max_abs_diff"] <= TOL
    assert record["left_padding_safe"] in (True, False) and record["left_padding_diff"] >= 0
    assert not list(tmp_path.glob(".st.*")), "no temporary folder is left behind"


def test_merged_weights_are_float_and_equal_to_base_plus_update(runs):
    encoder = training.load_encoder(runs["mean"])
    name, layer = next(iter(lora.lora_layers(encoder.backbone).items()))
    expected = layer.base_weight() + layer.delta_weight()
    export.float_backbone(encoder.backbone)
    merged = encoder.backbone.get_submodule(name)
    assert type(merged) is torch.nn.Linear and merged.weight.dtype == torch.float32
    torch.testing.assert_close(merged.weight, expected)
    assert not any(p.dtype == torch.int8 for p in encoder.backbone.parameters())
    assert not hasattr(encoder.backbone, "lacos_lora")


def test_llm_int8_run_exports_with_its_measured_difference(cfg, ci_backbone, triplets,
                                                          tmp_path):
    run = train_run(cfg, ci_backbone, triplets, tmp_path / "run", "mean", compute="int8")
    result = export.export_run(run, tmp_path / "st")
    assert not result.exact_compute
    assert 0 < result.max_abs_diff < 0.1  # activations rounded to int8 vs not: close, not equal
    assert "LLM.int8" in (tmp_path / "st" / "README.md").read_text()
    theirs = st_model_from(tmp_path / "st").encode(SENTENCES, convert_to_tensor=True).float()
    ours = our_embeddings(run, "left")
    cosine = (theirs * ours).sum(dim=1)
    assert cosine.min().item() > 0.99


def test_a_run_trained_with_cpu_bf16_exports_exactly_against_float32(
        cfg, ci_backbone, triplets, tmp_path, monkeypatch):
    from lacos_helpers.encoder import siamese

    monkeypatch.setattr(siamese, "cpu_native_bf16", lambda: True)
    run = train_run(cfg.replace(encoder={"cpu_bf16": True}), ci_backbone, triplets,
                    tmp_path / "run")
    assert training.read_run(run)["environment"]["compute_dtype"] == "torch.bfloat16"
    encoder = training.load_encoder(run)
    assert encoder.compute_dtype == torch.bfloat16
    as_trained = encoder.encode(SENTENCES, show_progress=False)
    result = export.export_run(run, tmp_path / "st")
    assert result.exact_compute and result.max_abs_diff <= TOL  # vs the encoder in float32
    assert "in float32, as exported" in (tmp_path / "st" / "README.md").read_text()
    theirs = st_model_from(tmp_path / "st").encode(SENTENCES, convert_to_tensor=True).float()
    assert (theirs * as_trained).sum(dim=1).min().item() > 0.99  # bf16 rounding only


def test_bitsandbytes_8bit_layers_export_too(cfg, ci_backbone, tmp_path):
    """The colab / paper profiles' bitsandbytes ``Linear8bitLt`` layers are dequantized and
    merged the same way (LLM.int8 compute: close, not equal)."""
    pytest.importorskip("bitsandbytes")
    bnb_cfg = cfg.replace(quant={"backend": "bitsandbytes", "compute": "int8"})
    backbone, tokenizer = ci_backbone
    encoder = training.build_encoder(bnb_cfg, copy.deepcopy(backbone), tokenizer)
    gen = torch.Generator().manual_seed(1)
    for layer in lora.lora_layers(encoder.backbone).values():
        layer.lora_B.weight.data = 0.05 * torch.randn(layer.lora_B.weight.shape, generator=gen)
    ours = encoder.eval().encode(SENTENCES, show_progress=False)
    result = export.export_encoder(encoder, tmp_path / "st", cfg=bnb_cfg)
    assert not result.exact_compute and result.max_abs_diff < 0.05
    assert not any(p.dtype == torch.int8 for p in encoder.backbone.parameters())
    config = json.loads((tmp_path / "st" / "config.json").read_text())
    assert "quantization_config" not in config
    theirs = st_model_from(tmp_path / "st").encode(SENTENCES, convert_to_tensor=True).float()
    assert (theirs * ours).sum(dim=1).min().item() > 0.99


def test_a_pooling_sentence_transformers_lacks_is_refused(runs, tmp_path):
    with pytest.raises(export.UnsupportedPoolingError, match="no equivalent in sentence-transf"):
        export.st_pooling_mode("sgpt-bidirectional")
    encoder = training.load_encoder(runs["mean"])
    encoder.pooling = "maxlast"  # what a future pooling of ours would look like
    with pytest.raises(export.UnsupportedPoolingError, match="'maxlast'.*offers cls, max"):
        export.export_encoder(encoder, tmp_path / "st")
    assert not (tmp_path / "st").exists()


def test_non_empty_target_is_refused(runs, tmp_path):
    out = tmp_path / "st"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(export.ExportError, match="not empty"):
        export.export_run(runs["mean"], out)
    assert (out / "keep.txt").read_text() == "mine"
    export.export_run(runs["mean"], out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "modules.json").is_file()


def test_adapter_export_round_trip(runs, tmp_path):
    """--adapter: float base in out/base + the peft adapter; sentence-transformers loads it
    through transformers' peft integration and reproduces our encoder."""
    out = tmp_path / "st"
    result = export.export_run(runs["lasttoken"], out, mode="adapter")
    assert result.mode == "adapter" and result.max_abs_diff <= TOL
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((out / "base").resolve())
    assert (out / "base" / "config.json").is_file() and not (out / "config.json").exists()
    assert "peft LoRA adapter" in (out / "README.md").read_text()
    theirs = st_model_from(out).encode(SENTENCES, batch_size=4, convert_to_tensor=True).float()
    for side in ("left", "right"):
        assert (theirs - our_embeddings(runs["lasttoken"], side)).abs().max().item() <= TOL


def test_adapter_load_failure_is_a_clear_refusal(runs, tmp_path, monkeypatch):
    """Where sentence-transformers cannot load the adapter folder (an older transformers whose
    load_adapter checks peft's version), the export refuses, names the versions, keeps
    nothing."""
    versions = {"peft": "0.21.2", "transformers": "5.99.0", "sentence-transformers": "6.3.0"}
    monkeypatch.setattr(st_model, "_version", versions.get)
    monkeypatch.setattr(st_model, "integration_peft_version", lambda: "0.22.0")

    def refuse(folder):
        raise ValueError("The version of PEFT you are using is not compatible, please use a "
                         "version that is greater than 0.22.0")

    monkeypatch.setattr(st_model, "_st_model", refuse)
    with pytest.raises(export.ExportError, match=r"could not load the adapter folder with peft "
                                                 r"0\.21\.2 and transformers 5\.99\.0; .*asks "
                                                 r"for peft >= 0\.22\.0 .*--merged"):
        export.export_run(runs["mean"], tmp_path / "st", mode="adapter")
    assert not (tmp_path / "st").exists() and not list(tmp_path.glob(".st.*"))


def test_adapter_export_without_peft_is_refused_before_any_work(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(st_model, "_version", lambda name: None)
    with pytest.raises(export.ExportError, match="peft is not installed.*--merged"):
        export.export_run(runs["mean"], tmp_path / "st", mode="adapter")
    assert not (tmp_path / "st").exists()


def test_adapter_folder_loads_with_peft_itself(runs, tmp_path):
    """The adapter files are peft's format: peft's own API (no transformers integration) puts
    them on the float base and reproduces the trained encoder."""
    from peft import PeftModel
    from transformers import AutoModel

    from lacos_helpers.encoder import SiameseEncoder

    encoder = training.load_encoder(runs["mean"])
    reference = encoder.encode(SENTENCES, show_progress=False)
    folder = st_model.write_model_folder(encoder, tmp_path / "st", "adapter")
    base = AutoModel.from_pretrained(str(folder / st_model.ADAPTER_BASE_DIR))
    plain = SiameseEncoder(base, encoder.tokenizer, "mean", 32).encode(SENTENCES,
                                                                       show_progress=False)
    assert (plain - reference).abs().max().item() > 10 * TOL  # the base alone is untrained
    peft_model = PeftModel.from_pretrained(base, str(folder)).eval()
    again = SiameseEncoder(peft_model.get_base_model(), encoder.tokenizer, "mean", 32)
    assert (again.encode(SENTENCES, show_progress=False) - reference).abs().max().item() <= TOL


def test_cli_command(runs, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    export.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", "--run", str(runs["mean"]), "--out", str(tmp_path / "a")])
    assert args.mode == "merged"
    assert export.run(args) == 0
    assert "merged sentence-transformers model" in capsys.readouterr().out
    assert (tmp_path / "a" / "modules.json").is_file()
    args = parser.parse_args(["export", "--run", str(runs["mean"]), "--out", str(tmp_path / "a")])
    assert export.run(args) == 1
    assert "not empty" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["export", "--run", "r", "--out", "o", "--merged", "--adapter"])
    args = parser.parse_args(["export", "--run", str(runs["mean"]), "--out",
                              str(tmp_path / "b"), "--adapter"])
    assert args.mode == "adapter" and export.run(args) == 0
    assert "adapter sentence-transformers model" in capsys.readouterr().out


# -- the cpu profile's Gemma-3: rotary positions -----------------------------------------------

@pytest.mark.slow
def test_gemma_export_matches_under_both_padding_sides(tmp_path):
    """Gemma's rotary positions: our encoder passes positions counted from the first real
    token, sentence-transformers passes none (0, 1, ... over the padding too). Rotary
    attention depends only on position *differences*, so shifting a sentence by its left
    padding changes nothing beyond rounding: the export agrees with our encoder whichever
    side either of them pads."""
    from lacos_helpers import load_profile

    cfg = load_profile("cpu", model={"device": "cpu"})
    runtime.seed_everything(cfg.seed)
    encoder = training.build_encoder(cfg)
    gen = torch.Generator().manual_seed(0)
    for layer in lora.lora_layers(encoder.backbone).values():  # a "trained" adapter
        layer.lora_B.weight.data = 0.02 * torch.randn(layer.lora_B.weight.shape, generator=gen)
    encoder.eval()
    ours = {}
    for side in ("left", "right"):
        encoder.tokenizer.padding_side = side
        with encoder.float32():  # the export is float32 (the profile may train in bfloat16)
            ours[side] = encoder.encode(SENTENCES, batch_size=4, show_progress=False)
    encoder.tokenizer.padding_side = "left"
    result = export.export_encoder(encoder, tmp_path / "st", cfg=cfg)
    assert result.max_abs_diff <= TOL and result.exact_compute
    for st_side in ("right", "left"):
        theirs = st_model_from(tmp_path / "st", st_side).encode(
            SENTENCES, batch_size=4, convert_to_tensor=True).float()
        for side, emb in ours.items():
            assert (theirs - emb).abs().max().item() <= TOL, (st_side, side)
