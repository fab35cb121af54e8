"""The MTEB harness: the course's encoder scored by mteb's own STS evaluator on the course's
rows equals the course's Spearman; MTEB's run path (mteb.evaluate) on mteb's mock task; bad
input and a missing mteb named."""
import sys

import pytest
import torch

from lacos_helpers import data, evaluation
from lacos_helpers.encoder import SiameseEncoder

mteb = pytest.importorskip("mteb")
from lacos_helpers.evaluation import mteb_harness  # noqa: E402


@pytest.fixture(scope="module")
def encoder(ci_cfg, ci_backbone):
    backbone, tokenizer = ci_backbone
    return SiameseEncoder(backbone, tokenizer, ci_cfg.encoder.pooling, ci_cfg.encoder.max_length)


def test_mteb_model_encodes_like_the_encoder(encoder):
    model = mteb_harness.mteb_model(encoder, name="lacos/test")
    batches = [{"text": ["A man plays a guitar.", "Ein Hund läuft."]}, {"text": ["猫"]}]
    got = model.encode(batches, task_metadata=None, hf_split="test", hf_subset="en")
    expected = encoder.encode(["A man plays a guitar.", "Ein Hund läuft.", "猫"],
                              show_progress=False)
    assert got.shape == (3, encoder.embedding_dim)
    torch.testing.assert_close(torch.from_numpy(got), expected)
    assert model.mteb_model_meta.similarity_fn_name == "cosine"


@pytest.mark.parametrize("langs", [("en",), ("en", "de")])
def test_mteb_stsb_scores_equal_the_course_spearman(encoder, langs):
    """Same rows, same embeddings: mteb's cosine Spearman = evaluate_sts's (the cosines may
    differ in float32's last bits, which reorders only exact near-ties)."""
    scores = mteb_harness.stsb_scores(encoder, langs, split="dev", limit=120, source=None)
    for lang in langs:
        pairs = data.load_sts(lang, "dev", limit=120)
        ours = evaluation.evaluate_sts(encoder, pairs)["spearman"]
        assert scores[lang] == pytest.approx(100 * ours, abs=1e-3), lang
    assert scores["mean"] == pytest.approx(sum(scores[lang] for lang in langs) / len(langs))


def test_local_task_reads_the_data_folder(encoder, shared_data):
    task = mteb_harness.local_stsb_multilingual(("en", "zh"), split="test", limit=50)
    assert task.data_loaded and task.hf_subsets == ["en", "zh"]
    assert task.metadata.name == mteb_harness.STSB_TASK
    first = data.read_sts("zh", "test", 50, source="local")[0]
    row = task.dataset["zh"]["test"][0]
    assert (row["sentence1"], row["sentence2"], row["score"]) == (
        first.sentence1, first.sentence2, pytest.approx(first.score))


def test_run_mteb_goes_through_mteb_evaluate(encoder, tmp_path):
    from mteb.mocks.mock_tasks.sts import MockSTSTask

    results = mteb_harness.run_mteb(encoder, [MockSTSTask()], name="lacos/test",
                                    output_folder=tmp_path)
    (result,) = results
    assert result.task_name == MockSTSTask.metadata.name
    assert -1 <= result.get_score() <= 1


def test_bad_language_and_missing_mteb_are_named(monkeypatch):
    with pytest.raises(ValueError, match="no language"):
        mteb_harness.local_stsb_multilingual(("xx",))
    monkeypatch.setitem(sys.modules, "mteb", None)
    with pytest.raises(ImportError, match=r"lacos-helpers\[eval\]"):
        mteb_harness.mteb_model(object())


def test_cli_evaluate_mteb_reads_the_data_folder(tmp_path, monkeypatch, shared_data):
    import json

    from lacos_helpers.cli import main as cli_main

    monkeypatch.setenv("LACOS_PROFILE", "ci")
    run = tmp_path / "run"
    assert cli_main(["train", "--out", str(run), "--steps", "2", "--batch-size", "8",
                     "--limit", "100", "--data-source", "local"]) == 0
    args = ["evaluate", "--run", str(run), "--limit", "60", "--langs", "en,de"]
    assert cli_main([*args, "--no-crosslingual"]) == 0
    assert cli_main([*args, "--mteb", mteb_harness.STSB_TASK]) == 0
    scores = json.loads((run / "eval" / "trained_mteb_test_limit60.json").read_text())
    course = json.loads((run / "eval" / "trained_test_limit60.json").read_text())["sts"]
    for lang in ("en", "de"):
        assert scores[mteb_harness.STSB_TASK][lang] == pytest.approx(
            100 * course[lang]["spearman"], abs=1e-3), (lang, course[lang])
