"""Importing AttnGAN's released DAMSM (``t2ilib.damsm.convert``, ``convert-damsm``).

The released files are not downloaded: the tests write synthetic state dicts in AttnGAN's
exact key layout (``RNN_ENCODER``: ``encoder.weight``, ``rnn.*_l0[_reverse]``;
``CNN_ENCODER``: torchvision's Inception-v3 block names, ``emb_features``, ``emb_cnn_code``,
no BatchNorm counters, as saved by PyTorch 0.x), with a small vocabulary.
"""

from __future__ import annotations

import pytest
import torch

from t2ilib.apps import cli
from t2ilib.damsm.checkpoint import load_damsm, trained_image_size
from t2ilib.damsm.convert import (
    ATTNGAN_IMAGE_SIZE,
    ATTNGAN_SOURCE,
    check_damsm_vocabulary,
    convert_attngan_damsm,
)
from t2ilib.damsm.image_encoder import InceptionEncoder
from t2ilib.engine.checkpoint import CheckpointMismatch, read_checkpoint, stored_vocabulary
from t2ilib.text.vocab import Vocabulary, write_captions_pickle

from .helpers import assert_one_line_error

WORDS = ["<end>", "this", "bird", "has", "a", "red", "belly", "and", "blue", "wings", "small"]
HIDDEN = 128  # units per direction (AttnGAN: nhidden 256 // 2)
EMBED = 300


def attngan_text_state(n_words: int = len(WORDS), hidden: int = HIDDEN, seed: int = 0
                       ) -> dict[str, torch.Tensor]:
    """An ``RNN_ENCODER`` state dict (bidirectional one-layer LSTM) with random values."""
    gen = torch.Generator().manual_seed(seed)
    state = {"encoder.weight": torch.randn(n_words, EMBED, generator=gen)}
    for suffix in ("", "_reverse"):
        state[f"rnn.weight_ih_l0{suffix}"] = 0.1 * torch.randn(4 * hidden, EMBED, generator=gen)
        state[f"rnn.weight_hh_l0{suffix}"] = 0.1 * torch.randn(4 * hidden, hidden, generator=gen)
        state[f"rnn.bias_ih_l0{suffix}"] = 0.1 * torch.randn(4 * hidden, generator=gen)
        state[f"rnn.bias_hh_l0{suffix}"] = 0.1 * torch.randn(4 * hidden, generator=gen)
    return state


def attngan_image_state() -> dict[str, torch.Tensor]:
    """A ``CNN_ENCODER`` state dict: our Inception trunk's tensors under AttnGAN's names
    (block names at the top level, the projections as ``emb_features`` / ``emb_cnn_code``),
    without BatchNorm's ``num_batches_tracked`` (the release predates it); BN statistics
    randomised so that they are not the defaults."""
    ours = InceptionEncoder(pretrained=False).state_dict()
    gen = torch.Generator().manual_seed(1)
    state = {}
    for key, value in ours.items():
        if key.endswith("num_batches_tracked"):
            continue
        for mine, theirs in (("to_regions.", ""), ("to_global.", ""),
                             ("region_proj.", "emb_features."), ("global_proj.", "emb_cnn_code.")):
            if key.startswith(mine):
                key = theirs + key[len(mine):]
                break
        if key.endswith(("running_mean", "running_var")):
            value = torch.rand(value.shape, generator=gen) + 0.5
        state[key] = value.clone()
    assert "Mixed_7c.branch_pool.conv.weight" in state and "Conv2d_1a_3x3.bn.running_var" in state
    assert state["emb_features.weight"].shape == (256, 768, 1, 1)
    assert state["emb_cnn_code.weight"].shape == (256, 2048)
    return state


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """AttnGAN-layout files: text and image encoders, captions.pickle (the vocabulary)."""
    folder = tmp_path_factory.mktemp("attngan")
    text, image = attngan_text_state(), attngan_image_state()
    # the release predates PyTorch 1.6: its files use the legacy (non-zip) serialization
    torch.save(text, folder / "text_encoder200.pth", _use_new_zipfile_serialization=False)
    torch.save(image, folder / "image_encoder200.pth", _use_new_zipfile_serialization=False)
    vocab = Vocabulary.from_words(WORDS)
    write_captions_pickle(folder / "captions.pickle", [[1, 2, 3, 4, 5, 6], [2, 9, 8]],
                          [[10, 2]], vocab)
    return {"folder": folder, "text": text, "image": image, "vocab": vocab}


@pytest.fixture(scope="module")
def converted(release):
    folder = release["folder"]
    return convert_attngan_damsm(folder / "text_encoder200.pth", folder / "image_encoder200.pth",
                                 folder / "captions.pickle", folder / "out" / "checkpoint.pt")


def lstm_reference(state: dict[str, torch.Tensor], ids: list[int]
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """AttnGAN's text encoder written out by hand from its tensors: embedding lookup, then an
    LSTM cell (PyTorch's gate order i, f, g, o) run forward and backward over the caption.
    Returns words ``(256, T)`` and the sentence ``(256,)`` = [last forward; first backward]."""
    x = state["encoder.weight"][ids].double()  # (T, 300)

    def run(suffix: str, order: list[int]) -> dict[int, torch.Tensor]:
        w_ih, w_hh = state[f"rnn.weight_ih_l0{suffix}"].double(), \
            state[f"rnn.weight_hh_l0{suffix}"].double()
        b = (state[f"rnn.bias_ih_l0{suffix}"] + state[f"rnn.bias_hh_l0{suffix}"]).double()
        h, c, out = torch.zeros(HIDDEN, dtype=torch.double), torch.zeros(
            HIDDEN, dtype=torch.double), {}
        for t in order:
            i, f, g, o = (w_ih @ x[t] + w_hh @ h + b).chunk(4)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out[t] = h
        return out

    steps = list(range(len(ids)))
    fwd, bwd = run("", steps), run("_reverse", steps[::-1])
    words = torch.stack([torch.cat([fwd[t], bwd[t]]) for t in steps], dim=1)
    return words, torch.cat([fwd[steps[-1]], bwd[0]])


def test_the_text_encoder_computes_attngans_lstm(release, converted):
    text_encoder, _, _ = load_damsm(converted)
    assert not text_encoder.training
    assert text_encoder.config.vocab_size == len(WORDS) and text_encoder.config.hidden_dim == 256
    captions = [[1, 2, 3, 4, 5, 6], [2, 9, 8]]
    ids = torch.zeros(2, 7, dtype=torch.long)
    for row, caption in enumerate(captions):
        ids[row, :len(caption)] = torch.tensor(caption)
    with torch.no_grad():
        words, sentence = text_encoder(ids, torch.tensor([6, 3]))
    for row, caption in enumerate(captions):
        ref_words, ref_sentence = lstm_reference(release["text"], caption)
        n = len(caption)
        torch.testing.assert_close(words[row, :, :n].double(), ref_words, atol=1e-5, rtol=1e-4)
        assert not words[row, :, n:].any()  # padding stays zero
        torch.testing.assert_close(sentence[row].double(), ref_sentence, atol=1e-5, rtol=1e-4)


def test_every_image_encoder_tensor_arrives(release, converted):
    _, image_encoder, _ = load_damsm(converted)
    assert isinstance(image_encoder, InceptionEncoder)
    ours = image_encoder.state_dict()
    assert torch.equal(ours["region_proj.weight"], release["image"]["emb_features.weight"])
    assert torch.equal(ours["global_proj.weight"], release["image"]["emb_cnn_code.weight"])
    assert torch.equal(ours["global_proj.bias"], release["image"]["emb_cnn_code.bias"])
    mapped = 0
    for key, value in release["image"].items():
        if key.startswith("emb_"):
            continue
        block = key.split(".", 1)[0]
        part = "to_global." if block.startswith("Mixed_7") else "to_regions."
        assert torch.equal(ours[part + key], value), key
        mapped += 1
    assert mapped == len(release["image"]) - 3
    # the trunk stays frozen, only the two projections would train
    assert not any(p.requires_grad for p in image_encoder.to_regions.parameters())


def test_the_file_records_source_vocabulary_and_image_size(release, converted):
    _, _, info = load_damsm(converted)
    fingerprint = info["fingerprint"]
    assert fingerprint["extra.source"] == ATTNGAN_SOURCE
    assert trained_image_size(fingerprint) == ATTNGAN_IMAGE_SIZE == 299
    assert fingerprint["vocab"] == release["vocab"].fingerprint()
    payload = read_checkpoint(converted, "damsm")
    assert payload["rng"] is None and payload["meta"]["history"] == []
    assert stored_vocabulary(payload, converted, len(WORDS)) == release["vocab"]
    files = payload["meta"]["source"]["files"]
    assert files["text"]["name"] == "text_encoder200.pth" and len(files["text"]["sha256"]) == 64
    # the vocabulary check `train ssagan --damsm` applies
    check_damsm_vocabulary(fingerprint, release["vocab"], converted)
    swapped = Vocabulary.from_words([WORDS[0], WORDS[2], WORDS[1], *WORDS[3:]])
    with pytest.raises(CheckpointMismatch, match="another vocabulary"):
        check_damsm_vocabulary(fingerprint, swapped, converted)


def test_the_cli_converts(release, tmp_path, capsys):
    folder, out = release["folder"], tmp_path / "damsm_cub_attngan" / "checkpoint.pt"
    assert cli.main(["convert-damsm", "--text", str(folder / "text_encoder200.pth"),
                     "--captions", str(folder / "captions.pickle"), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out  # --image defaulted to beside --text
    assert load_damsm(out)[2]["fingerprint"]["extra.source"] == ATTNGAN_SOURCE


def _bad_text(release, tmp_path, state) -> list[str]:
    path = tmp_path / "text_encoder200.pth"
    torch.save(state, path)
    folder = release["folder"]
    return ["convert-damsm", "--text", str(path), "--image", str(folder / "image_encoder200.pth"),
            "--captions", str(folder / "captions.pickle"), "--out", str(tmp_path / "out.pt")]


def _drop(state, key):
    return {k: v for k, v in state.items() if k != key}


FIT = "{path}: it does not fit AttnGAN's DAMSM text encoder (RNN_ENCODER): "


@pytest.mark.parametrize("make, expected", [
    (lambda s: _drop(s, "rnn.bias_hh_l0_reverse"), FIT + "key 'rnn.bias_hh_l0_reverse' is missing"),
    (lambda s: {**s, "rnn.weight_ih_l1": s["rnn.weight_ih_l0"]},
     FIT + "key 'rnn.weight_ih_l1' is not expected"),
    (lambda s: {**s, "encoder.weight": torch.zeros(len(WORDS) + 3, EMBED)},
     f"{{path}}: key 'encoder.weight' has shape ({len(WORDS) + 3}, 300), expected "
     f"({len(WORDS)}, 300): the embedding has {len(WORDS) + 3} rows but the vocabulary of "),
    (lambda s: attngan_text_state(hidden=64),
     FIT + "key 'rnn.weight_ih_l0' has shape (256, 300), expected (512, 300)"),
], ids=["missing-key", "extra-key", "vocabulary-size", "128-dim-encoder"])
def test_a_bad_text_encoder_names_file_and_key(release, tmp_path, capsys, make, expected):
    argv = _bad_text(release, tmp_path, make(dict(release["text"])))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert_one_line_error(exit_info, capsys,
                          expected.format(path=tmp_path / "text_encoder200.pth"))
    assert not (tmp_path / "out.pt").exists()  # nothing written


def test_the_128_dim_encoder_is_explained(release, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(_bad_text(release, tmp_path, attngan_text_state(hidden=64)))
    assert_one_line_error(exit_info, capsys, "128 LSTM units per direction (256-d word and "
                                             "sentence features")


def test_the_vocabulary_size_error_names_captions_pickle(release, tmp_path, capsys):
    state = {**release["text"], "encoder.weight": torch.zeros(len(WORDS) + 3, EMBED)}
    with pytest.raises(SystemExit) as exit_info:
        cli.main(_bad_text(release, tmp_path, state))
    assert_one_line_error(exit_info, capsys, f"{release['folder'] / 'captions.pickle'} has "
                                             f"{len(WORDS)} words")


def test_the_image_file_given_as_text_file(release, tmp_path, capsys):
    folder = release["folder"]
    image = str(folder / "image_encoder200.pth")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert-damsm", "--text", image, "--image", image,
                  "--captions", str(folder / "captions.pickle"), "--out", str(tmp_path / "o.pt")])
    assert_one_line_error(exit_info, capsys,
                          f"{image}: it is AttnGAN's image encoder (CNN_ENCODER")
    assert not (tmp_path / "o.pt").exists()


def test_the_text_file_given_as_image_file(release, tmp_path, capsys):
    folder = release["folder"]
    text = str(folder / "text_encoder200.pth")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert-damsm", "--text", text, "--image", text,
                  "--captions", str(folder / "captions.pickle"), "--out", str(tmp_path / "o.pt")])
    assert_one_line_error(exit_info, capsys, f"{text}: it is AttnGAN's text encoder (RNN_ENCODER")


def test_a_bad_image_encoder_names_file_and_key(release, tmp_path, capsys):
    state = {**release["image"], "emb_cnn_code.weight": torch.zeros(128, 2048)}
    path = tmp_path / "image_encoder200.pth"
    torch.save(state, path)
    folder = release["folder"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert-damsm", "--text", str(folder / "text_encoder200.pth"),
                  "--image", str(path), "--captions", str(folder / "captions.pickle"),
                  "--out", str(tmp_path / "o.pt")])
    assert_one_line_error(exit_info, capsys,
                          f"{path}: it does not fit AttnGAN's DAMSM image encoder (CNN_ENCODER): "
                          "key 'emb_cnn_code.weight' has shape (128, 2048), expected (256, 2048)")
    assert not (tmp_path / "o.pt").exists()


def test_a_file_that_is_not_a_state_dict(release, tmp_path, capsys):
    path = tmp_path / "text_encoder200.pth"
    path.write_bytes(b"not a torch file at all")
    folder = release["folder"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["convert-damsm", "--text", str(path), "--image",
                  str(folder / "image_encoder200.pth"), "--captions",
                  str(folder / "captions.pickle"), "--out", str(tmp_path / "o.pt")])
    assert_one_line_error(exit_info, capsys, f"{path}: not a readable PyTorch file")


def test_train_ssagan_takes_the_converted_damsm_for_its_vocabulary_only(release, tmp_path,
                                                                        capsys):
    """``train ssagan --damsm`` trains with a converted DAMSM made for the data's
    captions.pickle, and refuses one made for the same words in another order."""
    from t2ilib.data.cub import load_captions
    from t2ilib.data.fixtures import make_cub_fixture

    root = make_cub_fixture(tmp_path / "birds").root
    captions = load_captions(root)  # writes birds/captions.pickle
    words = captions.vocab.words
    reordered = tmp_path / "reordered.pickle"
    write_captions_pickle(reordered, captions.train, captions.test,
                          Vocabulary.from_words([words[0], words[2], words[1], *words[3:]]))
    text = tmp_path / "text_encoder200.pth"
    torch.save(attngan_text_state(n_words=len(words)), text)
    image = release["folder"] / "image_encoder200.pth"
    base = ["train", "ssagan", "--dataset", "cub", "--data-dir", str(root), "--recipe", "smoke",
            "--set", "sentence_dim=256", "--batch-size", "2", "--max-steps-per-epoch", "1",
            "--device", "cpu"]
    wrong = convert_attngan_damsm(text, image, reordered, tmp_path / "wrong" / "checkpoint.pt")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*base, "--damsm", str(wrong), "--run-dir", str(tmp_path / "run_wrong")])
    assert_one_line_error(exit_info, capsys, f"{wrong}: its text encoder was made for another "
                                             "vocabulary")
    right = convert_attngan_damsm(text, image, root / "captions.pickle",
                                  tmp_path / "right" / "checkpoint.pt")
    assert cli.main([*base, "--damsm", str(right), "--run-dir", str(tmp_path / "run")]) == 0
    assert '"status": "done"' in capsys.readouterr().out
