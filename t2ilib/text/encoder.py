r"""The DAMSM text encoder: a bidirectional LSTM over word embeddings (AttnGAN, Xu et al., §3.3).

SSA-GAN (Liao et al., CVPR 2022) reuses AttnGAN's pretrained DAMSM text encoder unchanged.
A caption of :math:`T` token ids :math:`w_1..w_T` becomes

.. math::

    x_t = \mathrm{Dropout}_{0.5}(E[w_t]) \in \mathbb{R}^{300}, \qquad
    \overrightarrow{h}_t = \mathrm{LSTM}_\rightarrow(x_t, \overrightarrow{h}_{t-1}), \quad
    \overleftarrow{h}_t = \mathrm{LSTM}_\leftarrow(x_t, \overleftarrow{h}_{t+1})

* word features :math:`e_t = [\overrightarrow{h}_t; \overleftarrow{h}_t] \in \mathbb{R}^{256}`
  (128 units per direction), returned as ``(B, 256, T)``;
* sentence feature :math:`\bar e = [\overrightarrow{h}_{L}; \overleftarrow{h}_{1}]`, the last
  hidden state of each direction (``L`` = the caption's true length), returned as ``(B, 256)``.

Captions are padded with id 0 (``'<end>'``) up to ``T``. The LSTM runs over *packed*
sequences so that padding never enters a hidden state: the forward direction stops at
word ``L`` and the backward direction starts there. AttnGAN required the batch to be
sorted by length (longest first); here ``enforce_sorted=False`` lets PyTorch sort and
unsort internally, so outputs come back in the input order. (AttnGAN's word features stop
at the longest caption of the batch; ours keep the input's ``T``, zero-padded, so shapes do
not depend on the batch.)

With the CUB vocabulary (5,450 words) the module has exactly 2,075,320 parameters, the
count of AttnGAN's ``RNN_ENCODER``: embedding 5,450 x 300 = 1,635,000 plus, per direction,
4 gates x 128 x (300 + 128) weights + 2 x 4 x 128 biases = 220,160.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = [
    "TextEncoderConfig",
    "TextEncoder",
    "check_text_config",
    "check_captions",
    "check_text_encoder",
    "ATTNGAN_TEXT_KEY_MAP",
    "convert_attngan_text_state_dict",
]


@dataclass(frozen=True)
class TextEncoderConfig:
    """Sizes of the DAMSM text encoder (defaults: AttnGAN / SSA-GAN)."""

    vocab_size: int  # number of token ids, including 0 = '<end>' (padding)
    embed_dim: int = 300  # word-embedding size
    hidden_dim: int = 256  # output feature size; each LSTM direction has hidden_dim // 2 units
    dropout: float = 0.5  # dropout on the word embeddings


def check_text_config(config: TextEncoderConfig) -> None:
    """Refuse sizes :class:`TextEncoder` cannot build (``ValueError``)."""
    if config.vocab_size < 2:
        raise ValueError(f"vocab_size must be >= 2 (0 is padding), got {config.vocab_size}")
    if config.hidden_dim % 2:
        raise ValueError(f"hidden_dim must be even (two directions), got {config.hidden_dim}")


def check_captions(
    captions: torch.Tensor, lengths: torch.Tensor, vocab_size: int | None = None
) -> torch.Tensor:
    """Check a batch for :meth:`TextEncoder.forward`; return the lengths as ``(B,)`` int64 on
    the CPU (where ``pack_padded_sequence`` wants them).

    ``captions (B, T)`` int64, ``lengths (B,)`` (a tensor on any device or a list) with
    ``1 <= lengths[b] <= T``; with ``vocab_size`` every id must lie in ``[0, vocab_size)``.
    ``vocab_size=None`` skips the id check: on a GPU it reads the ids back to the host, a
    stall per call that a training loop whose ids were checked once avoids.
    """
    if captions.dim() != 2 or captions.dtype != torch.long:
        raise ValueError(
            f"captions must be a (B, T) int64 tensor, got {tuple(captions.shape)} "
            f"{captions.dtype}"
        )
    batch, max_len = captions.shape
    lengths = torch.as_tensor(lengths).to("cpu", torch.long)  # (B,)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths must have shape ({batch},), got {tuple(lengths.shape)}")
    if batch and (lengths.min() < 1 or lengths.max() > max_len):
        raise ValueError(f"lengths must lie in [1, {max_len}], got {lengths.tolist()}")
    if vocab_size is not None and batch and (captions.min() < 0 or captions.max() >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}), "
            f"got [{captions.min().item()}, {captions.max().item()}]"
        )
    return lengths


class TextEncoder(nn.Module):
    """Bi-LSTM caption encoder: ``(B, T)`` ids -> words ``(B, 256, T)``, sentence ``(B, 256)``.

    ``forward(captions, lengths, check_ids=True)`` takes

    * ``captions``: ``(B, T)`` int64 token ids, padded with 0 after each caption's end;
    * ``lengths``: ``(B,)`` true lengths, ``1 <= lengths[i] <= T``, in any order;

    and returns ``(words, sentence)``: ``words`` is ``(B, hidden_dim, T)`` with zeros at
    padded positions, ``sentence`` is ``(B, hidden_dim)``, both in the input order. The
    inputs are checked by :func:`check_captions` (``check_ids=False`` skips the id range).
    """

    def __init__(self, config: TextEncoderConfig):
        super().__init__()
        check_text_config(config)
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.drop = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(config.embed_dim, config.hidden_dim // 2, num_layers=1,
                            batch_first=True, bidirectional=True)
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)  # AttnGAN's init; the LSTM keeps PyTorch's

    def forward(
        self, captions: torch.Tensor, lengths: torch.Tensor, check_ids: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T)`` ids and ``(B,)`` lengths -> words ``(B, D, T)``, sentence ``(B, D)``."""
        lengths = check_captions(captions, lengths, self.config.vocab_size if check_ids else None)
        # BEGIN EXERCISE 02:nb02_text_encoder
        x = self.drop(self.embed(captions))  # (B, T, E)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, _) = self.lstm(packed)  # h_n: (2, B, D/2), already in input order
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=captions.shape[1])
        words = out.transpose(1, 2)  # (B, T, D) -> (B, D, T)
        sentence = h_n.transpose(0, 1).flatten(1)  # (B, 2, D/2) -> (B, D): [fwd; bwd]
        return words, sentence
        # END EXERCISE


# --- Interop: AttnGAN's released ``text_encoder200.pth`` -------------------------------------
# AttnGAN's RNN_ENCODER names the embedding ``encoder`` and the LSTM ``rnn``; the LSTM's own
# parameter names (weight_ih_l0, ..._reverse) are PyTorch's and match ours.
ATTNGAN_TEXT_KEY_MAP = (("encoder.", "embed."), ("rnn.", "lstm."))  # (theirs, ours) prefixes


def convert_attngan_text_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the keys of AttnGAN's ``RNN_ENCODER`` state dict to :class:`TextEncoder`'s.

    Raises ``ValueError`` on a key that belongs to neither (e.g. a GRU or 2-layer encoder).
    """
    out = {}
    for key, value in state_dict.items():
        match = [(theirs, ours) for theirs, ours in ATTNGAN_TEXT_KEY_MAP if key.startswith(theirs)]
        if not match:
            raise ValueError(
                f"unexpected key {key!r} in an AttnGAN text-encoder state dict "
                f"(expected keys starting with 'encoder.' or 'rnn.')"
            )
        theirs, ours = match[0]
        out[ours + key[len(theirs) :]] = value
    return out


def check_text_encoder(text_encoder: TextEncoder, sentence_dim: int, vocab_size: int,
                       model: str) -> None:
    """Refuse a text encoder whose sentence size or vocabulary size does not fit ``model``."""
    if text_encoder.config.hidden_dim != sentence_dim:
        raise ValueError(f"text encoder gives {text_encoder.config.hidden_dim}-d sentences, "
                         f"{model} expects {sentence_dim}")
    if text_encoder.config.vocab_size != vocab_size:
        raise ValueError(f"text encoder has {text_encoder.config.vocab_size} token ids, the "
                         f"data's vocabulary {vocab_size} words")
