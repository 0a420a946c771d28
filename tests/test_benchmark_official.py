"""``benchmarks/train_step.py --official-dir``: ours against the official SSA-GAN step.

The official code (wtliao/text2image) is not in the repository and CI has no network, so the
test writes a tiny FAKE checkout: the module and class names, constructor and call signatures
the adapter (``benchmarks/official_step.py``) uses, computing small but real losses, and
logging each call so that the test sees the order of the official loop's calls.
"""

from __future__ import annotations

import importlib
import math
import re
import textwrap
from pathlib import Path

import pytest

from t2ilib.ssagan.recipes import PAPER

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
RES = 32  # the fake NetG's images; the test shrinks the "paper" config to match

FAKE = {
    "miscc/__init__.py": """
        from pathlib import Path

        LOG = Path(__file__).resolve().parent.parent / "calls.log"


        def record(name):
            with LOG.open("a") as f:
                f.write(name + "\\n")
    """,
    "miscc/config.py": """
        from easydict import EasyDict as edict  # not installed here: the adapter stands in

        __C = edict()
        cfg = __C
        __C.CUDA = True
        __C.RNN_TYPE = "LSTM"
        __C.TREE = edict()
        __C.TREE.BASE_SIZE = 64
        __C.TRAIN = edict()
        __C.TRAIN.NF = 32
        __C.TRAIN.BATCH_SIZE = 64
        __C.TRAIN.SMOOTH = edict()
        __C.TRAIN.SMOOTH.GAMMA3 = 10.0
        __C.TEXT = edict()
        __C.TEXT.EMBEDDING_DIM = 256
        __C.TEXT.WORDS_NUM = 18
    """,
    "miscc/losses.py": """
        import torch
        import torch.nn as nn

        from miscc import record
        from miscc.config import cfg


        def sent_loss(cnn_code, rnn_code, labels, class_ids, batch_size, eps=1e-8):
            masks = torch.stack([class_ids == class_ids[i] for i in range(batch_size)])
            masks.fill_diagonal_(False)
            if cfg.CUDA:
                masks = masks.cuda()
            cnn = cnn_code / cnn_code.norm(dim=1, keepdim=True).clamp(min=eps)
            rnn = rnn_code / rnn_code.norm(dim=1, keepdim=True).clamp(min=eps)
            scores = (cnn @ rnn.t() * cfg.TRAIN.SMOOTH.GAMMA3).masked_fill(masks, -float("inf"))
            return nn.CrossEntropyLoss()(scores, labels), nn.CrossEntropyLoss()(scores.t(), labels)


        def DAMSM_loss(image_encoder, fake_imgs, real_labels, words_embs, sent_emb,
                       match_labels, cap_lens, class_ids):
            record("DAMSM_loss")
            class_ids = torch.LongTensor(class_ids)  # a numpy array, as prepare_data gives it
            batch_size = real_labels.size(0)
            region_features, cnn_code = image_encoder(fake_imgs)
            words = torch.stack([words_embs[i, :, :n].mean(1)
                                 for i, n in enumerate(cap_lens.tolist())])
            w0, w1 = sent_loss(region_features.flatten(2).mean(2), words, match_labels,
                               class_ids, batch_size)
            s0, s1 = sent_loss(cnn_code, sent_emb, match_labels, class_ids, batch_size)
            return w0 + w1 + s0 + s1
    """,
    "model.py": f"""
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        from miscc import record


        class NetG(nn.Module):
            def __init__(self, ngf=64, nz=100):
                super().__init__()
                self.fc = nn.Linear(nz + 256, ngf * 4 * 4)
                self.conv = nn.Conv2d(ngf, 3, 3, 1, 1)

            def forward(self, x, c):
                record("NetG")
                out = self.fc(torch.cat([x, c], 1)).view(x.size(0), -1, 4, 4)
                out = torch.tanh(self.conv(F.interpolate(out, size=({RES}, {RES}))))
                return out, [torch.sigmoid(out[:, :1])]


        class D_GET_LOGITS(nn.Module):
            def __init__(self, ndf):
                super().__init__()
                self.joint = nn.Linear(ndf * 4 + 256, 1)

            def forward(self, out, y):
                record("COND_DNET")
                return self.joint(torch.cat([out.flatten(1), y], 1)).view(-1, 1, 1, 1)


        class NetD(nn.Module):
            def __init__(self, ndf):
                super().__init__()
                self.conv = nn.Conv2d(3, ndf, 4, 4)
                self.COND_DNET = D_GET_LOGITS(ndf)

            def forward(self, x):
                record("NetD")
                return F.adaptive_avg_pool2d(F.leaky_relu(self.conv(x), 0.2), 2)
    """,
    "DAMSM.py": """
        import torch
        import torch.nn as nn
        from torchvision import models

        from miscc import record
        from miscc.config import cfg


        class RNN_ENCODER(nn.Module):
            def __init__(self, ntoken, ninput=300, drop_prob=0.5, nhidden=128, nlayers=1,
                         bidirectional=True):
                super().__init__()
                self.n_steps = cfg.TEXT.WORDS_NUM
                self.encoder = nn.Embedding(ntoken, 16)
                self.proj = nn.Linear(16, nhidden)

            def init_hidden(self, bsz):
                return torch.zeros(2, bsz, 8, device=self.proj.weight.device)

            def forward(self, captions, cap_lens, hidden, mask=None):
                record("RNN_ENCODER")
                lengths = cap_lens.data.tolist()
                assert lengths == sorted(lengths, reverse=True), "prepare_data sorts"
                emb = self.proj(self.encoder(captions[:, :max(lengths)]))  # B x T x D
                return emb.transpose(1, 2), emb.mean(1)


        class CNN_ENCODER(nn.Module):
            def __init__(self, nef):
                super().__init__()
                model = models.inception_v3(pretrained=True, transform_input=False)
                record("CNN_ENCODER " + type(model).__name__)
                self.conv = nn.Conv2d(3, nef, 4, 4)
                self.code = nn.Linear(nef, nef)

            def forward(self, x):
                record("CNN_ENCODER.forward")
                features = self.conv(x)
                return features, self.code(features.mean((2, 3)))
    """,
}
# main.py's loop body, one step: text, D (real, mismatched), G, D (fake), MA-GP, G's loss
STEP_CALLS = ["RNN_ENCODER", "NetD", "COND_DNET", "COND_DNET", "NetG", "NetD", "COND_DNET",
              "NetD", "COND_DNET", "NetD", "COND_DNET", "DAMSM_loss", "CNN_ENCODER.forward"]


def write_fake_checkout(root: Path, layout: str) -> Path:
    code = root / layout
    for name, text in FAKE.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(textwrap.dedent(text).lstrip())
    return code


@pytest.fixture
def train_step(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module("train_step")
    monkeypatch.setitem(module.CONFIGS, "paper", dict(
        encoder="small_cnn", recipe=PAPER.with_(resolution=RES, ngf=8, ndf=8)))
    return module


def run_main(module, monkeypatch, *args: str) -> None:
    monkeypatch.setattr("sys.argv", ["train_step.py", "--device", "cpu", *args])
    module.main()


@pytest.mark.parametrize("layout", ["code", "."])  # code/ or the repository's own top level
def test_official_step_against_ours(train_step, monkeypatch, capsys, tmp_path, layout):
    code = write_fake_checkout(tmp_path, layout)
    run_main(train_step, monkeypatch, "--batch-size", "3", "--warmup", "1", "--steps", "2",
             "--official-dir", str(tmp_path))
    out = capsys.readouterr().out

    calls = (code / "calls.log").read_text().splitlines()
    assert calls[0] == "CNN_ENCODER Inception3"  # built with random weights, no download
    assert calls[1:] == STEP_CALLS * 3  # warm-up + 2 timed steps, in main.py's order

    assert re.search(r"^ratio ours/official \(images/s\): ours \(eager fp32\) \d+\.\d\dx$",
                     out, re.M), out
    assert "easydict is not installed" in out and "inception_v3" in out
    assert f"from {code.resolve()}" in out or f"from {code}" in out
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.startswith(("ours (", "official "))}
    assert set(rows) == {"ours", "official"}, out
    for line in rows.values():  # s/step, images/s and four finite losses
        numbers = [float(x) for x in line.split()[-6:]]
        assert numbers[0] > 0 and numbers[1] > 0
        assert all(math.isfinite(x) for x in numbers)
    assert "device=" not in out  # with --official-dir alone, no table


def test_official_dir_not_a_checkout(train_step, monkeypatch, capsys, tmp_path):
    (tmp_path / "README.md").write_text("not text2image\n")
    with pytest.raises(SystemExit) as exit_info:
        run_main(train_step, monkeypatch, "--official-dir", str(tmp_path))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "not a checkout of wtliao/text2image" in err[0] and "code/model.py" in err[0]
