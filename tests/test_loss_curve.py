"""Chapter 3's loss curve comes from the run's record: a run trained again (resumed with
nothing left to do) draws the same curve as the first time, not an empty axis."""

import copy

import matplotlib
import pytest

from lacos_helpers import data, runtime, training
from lacos_helpers.course import plotting, widgets

matplotlib.use("Agg")


def _curve_points(fig) -> list:
    return [tuple(map(tuple, line.get_xydata())) for line in fig.axes[0].get_lines()]


def test_a_second_run_draws_the_same_curve(ci_cfg, ci_backbone, tmp_path):
    cfg = ci_cfg.replace(train={"batch_size": 8, "steps": 4, "warmup_steps": 1,
                                "checkpoint_every": 2})
    triplets = data.load_nli_triplets("en", limit=200, seed=cfg.seed)
    figures, live_points = [], []
    for _ in range(2):   # the notebook run twice: the second finds the run finished
        runtime.seed_everything(cfg.seed)
        backbone, tokenizer = ci_backbone
        encoder = training.build_encoder(cfg, copy.deepcopy(backbone), tokenizer)
        live = widgets.LiveLossPlot()
        result = training.train(cfg, encoder, triplets, out_dir=tmp_path, show_progress=False,
                                callbacks=[live])
        live_points.append(len(live.losses))
        figures.append(plotting.plot_training_log(training.read_log(result.out_dir)))
    assert live_points == [4, 0]   # the live callback saw nothing the second time
    first, second = (_curve_points(fig) for fig in figures)
    assert first == second and len(first[0]) == 4   # the log has every step both times


def test_plot_training_log_needs_training_records():
    with pytest.raises(ValueError, match="no training step"):
        plotting.plot_training_log([{"kind": "eval", "step": 1, "spearman": 0.5}])
    fig = plotting.plot_training_log([{"kind": "train", "step": s, "loss": 1.0 / s}
                                      for s in range(1, 13)]
                                     + [{"kind": "eval", "step": 12, "spearman": 0.4}])
    assert len(fig.axes) == 2 and len(fig.axes[0].get_lines()) == 2   # loss and its mean
