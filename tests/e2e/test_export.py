"""tools/export_model.py: one teacher of an INCLR checkpoint as a plain FastReID model.

A tiny INCLR model (OSNet x0.25, 64x32, random weights, teachers and BN statistics perturbed so
that T1, T2 and their mean all differ) is saved as the trainer saves it. The exported ``.pth`` +
``config.yaml`` are loaded the stock FastReID way (``build_model`` + ``Checkpointer``) and must give
the INCLR model's inference features to 1e-5; the ONNX graph must match PyTorch to 1e-4 under
onnxruntime for batch sizes 1 and 7.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers.layouts import make_market1501

from tests.helpers.tiny import ROOT, SMALL_NET, TINY, TRAIN_NET

CFG = os.path.join(ROOT, "configs", "INCLR", "duke2market.yml")
EXPORT = os.path.join(ROOT, "tools", "export_model.py")
OPTS = TINY + SMALL_NET + ["MODEL.HEADS.NUM_CLASSES", "10", "INCLR.NUM_SAMPLES", "12"]
LIVE = 4  # pseudo classes of the "last clustering"


def inclr_cfg(*opts):
    from inclr_fastreid.config import setup_cfg

    return setup_cfg(CFG, OPTS + ["OUTPUT_DIR", ""] + list(opts))


def images(n, seed=1):
    return torch.rand(n, 3, 64, 32, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An INCLR checkpoint as INCLRTrainer writes it ({"model": state, ...} via FastReID's Checkpointer)."""
    from fastreid.modeling import build_model
    from fastreid.utils.checkpoint import Checkpointer

    torch.manual_seed(0)
    model = build_model(inclr_cfg())
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():  # teachers unlike their students and each other, BN statistics non-trivial
        for name in ("teacher1", "teacher2"):
            for p in getattr(model, name).parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
            for m in getattr(model, name).modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.running_mean.normal_(0, 0.2, generator=gen)
                    m.running_var.uniform_(0.5, 2.0, generator=gen)
        model.num_live_classes.fill_(LIVE)
    directory = tmp_path_factory.mktemp("inclr_ckpt")
    Checkpointer(model, str(directory)).save("model_final")
    path = directory / "model_final.pth"
    yield str(path)
    path.unlink()


def inclr_features(path, test_model, x, teacher1_state=None):
    """INCLR's own inference (``INCLR.TEST_MODEL``) of the checkpoint at ``path``."""
    from fastreid.modeling import build_model
    from fastreid.utils.checkpoint import Checkpointer

    model = build_model(inclr_cfg("INCLR.TEST_MODEL", test_model))
    Checkpointer(model).load(path)
    if teacher1_state is not None:
        model.teacher1.load_state_dict(teacher1_state)
    model.eval()
    with torch.no_grad():
        return model(x.clone())


def stock_fastreid_model(out_dir):
    """The exported model as FastReID code builds one: config from config.yaml, build_model,
    Checkpointer.load(MODEL.WEIGHTS). ``add_inclr_config`` only adds the keys PartPoolHead reads."""
    from fastreid.config import get_cfg
    from fastreid.modeling import build_model
    from fastreid.utils.checkpoint import Checkpointer

    from inclr_fastreid.config import add_inclr_config

    cfg = add_inclr_config(get_cfg())
    cfg.merge_from_file(os.path.join(out_dir, "config.yaml"))
    model = build_model(cfg)
    Checkpointer(model).load(cfg.MODEL.WEIGHTS)
    return cfg, model.eval()


@pytest.fixture(scope="module")
def reference(checkpoint):
    """INCLR's inference on ``images(5)``: TEST_MODEL t1, t2 and mean (both teachers' features
    averaged), and "avg": teacher 1 replaced by the plain average of both teachers' state dicts."""
    from inclr_fastreid.io import safe_torch_load

    x = images(5)
    ckpt = safe_torch_load(checkpoint)["model"]
    t1 = {k[len("teacher1."):]: v for k, v in ckpt.items() if k.startswith("teacher1.")}
    t2 = {k[len("teacher2."):]: v for k, v in ckpt.items() if k.startswith("teacher2.")}
    avg = {k: (t1[k] + t2[k]) / 2 if t1[k].is_floating_point() else t1[k] for k in t1}
    feats = {t: inclr_features(checkpoint, t, x) for t in ("t1", "t2", "mean")}
    feats["avg"] = inclr_features(checkpoint, "t1", x, teacher1_state=avg)
    return x, feats


@pytest.mark.parametrize("teacher", ["t1", "t2", "mean"])
def test_exported_baseline_gives_the_inclr_features(checkpoint, reference, tmp_path, teacher):
    from inclr_fastreid.export import export_model

    res = export_model(inclr_cfg(), checkpoint, teacher, str(tmp_path / "out"))
    cfg, model = stock_fastreid_model(res["output_dir"])
    assert type(model).__name__ == "Baseline" and type(model.heads).__name__ == "PartPoolHead"
    assert cfg.MODEL.META_ARCHITECTURE == "Baseline" and cfg.MODEL.HEADS.NUM_CLASSES == LIVE
    assert cfg.MODEL.WEIGHTS == str(tmp_path / "out" / "model_final.pth")
    assert model.heads.weight.shape[0] == LIVE  # classifier cut to the live pseudo classes

    x, feats = reference
    with torch.no_grad():
        got = model(x.clone())
    # t1 / t2: INCLR's own inference with that teacher; mean: INCLR with teacher 1 := the average
    expected = feats["avg" if teacher == "mean" else teacher]
    assert got.shape == (5, res["feature_dim"]) == (5, 128 * 4)
    assert (got - expected).abs().max().item() <= 1e-5

    # The test has teeth: the three exports differ, and the mean is one network, not INCLR's
    # TEST_MODEL mean (the average of both teachers' features).
    for t in ("t1", "t2", "mean"):
        if t != teacher:
            assert (got - feats[t]).abs().max().item() > 1e-3, t


def test_feature_choice_and_eval_only_of_the_exported_config(checkpoint, tmp_path):
    """INCLR.TEST_FEATURE at export time decides the output; tools/train_net.py --eval-only (FastReID's
    DefaultTrainer.test) evaluates the exported config.yaml as a Baseline, no INCLR meta-architecture."""
    from inclr_fastreid.export import export_model

    res = export_model(inclr_cfg("INCLR.TEST_FEATURE", "part2"), checkpoint, "t2", str(tmp_path / "out"))
    _, model = stock_fastreid_model(res["output_dir"])
    x = images(3, seed=2)
    from fastreid.modeling import build_model
    from fastreid.utils.checkpoint import Checkpointer

    ref = build_model(inclr_cfg("INCLR.TEST_MODEL", "t2", "INCLR.TEST_FEATURE", "part2"))
    Checkpointer(ref).load(checkpoint)
    with torch.no_grad():
        got, expected = model(x.clone()), ref.eval()(x.clone())
    assert got.shape == (3, 128) and (got - expected).abs().max().item() <= 1e-5

    data = tmp_path / "data"
    make_market1501(str(data), num_train=2, num_test=3, seed=5)
    env = dict(os.environ, FASTREID_DATASETS=str(data))
    proc = subprocess.run([sys.executable, TRAIN_NET, "--config-file", res["config"], "--eval-only",
                           "OUTPUT_DIR", str(tmp_path / "eval")], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "eval" / "eval_part2.json").read_text())
    assert 0.0 <= result["mAP"] <= 100.0


def test_onnx_matches_pytorch_under_onnxruntime_for_batch_1_and_7(checkpoint, tmp_path):
    import onnx
    import onnxruntime as ort

    from inclr_fastreid.export import export_model

    res = export_model(inclr_cfg(), checkpoint, "mean", str(tmp_path / "out"), onnx=True, repeats=1)
    assert [b["batch"] for b in res["onnx_check"]["batches"]] == [1, 7]
    graph = onnx.load(res["onnx"]).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == [3, 64, 32]

    _, model = stock_fastreid_model(res["output_dir"])  # the .pth, normalising in preprocess_image
    session = ort.InferenceSession(res["onnx"], providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        x = images(batch, seed=10 + batch)
        (got,) = session.run(["features"], {"images": x.numpy()})  # 0-255 in, normalised in the graph
        with torch.no_grad():
            expected = model(x.clone()).numpy()
        assert got.shape == (batch, 512)
        assert np.abs(got - expected).max() <= 1e-4
    (tmp_path / "out" / "model.onnx").unlink()


def test_export_command_prints_what_a_caller_needs(checkpoint, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, EXPORT, "--config-file", CFG, "--weights", checkpoint, "--teacher", "t1",
                           "--output", str(out), "--onnx", "--repeats", "2", *OPTS], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "dimension 512" in text and "N x 3 x 64 x 32 float32, RGB, 0-255" in text
    assert "123.675" in text and "58.395" in text and "inside the ONNX graph" in text
    assert "batch 1: max |onnx - torch|" in text and "batch 7: max |onnx - torch|" in text
    assert {p.name for p in out.iterdir()} >= {"model_final.pth", "config.yaml", "model.onnx", "onnx_check.json"}
    check = json.loads((out / "onnx_check.json").read_text())
    assert all(b["max_abs_diff"] <= 1e-4 and b["onnxruntime_ms_per_image"] > 0 for b in check["batches"])
    (out / "model.onnx").unlink()
