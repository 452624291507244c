"""A character-level tokenizer built in-process (no files, no download) for the tiny model.

Every character of the alphabet is one token (``tokenizers`` WordLevel over a
``Split(Regex("."), "isolated")`` pre-tokenizer, ``decoders.Fuse()`` to join them back), plus
four special tokens ``<pad>`` (id 0), ``<bos>`` (1), ``<eos>`` (2), ``<unk>`` (3). Characters
outside the alphabet map to ``<unk>``. No special tokens are added on encoding; the response
ends with ``<eos>``, which is what stops generation. Padding is on the left (for batched
generation with decoder-only models).
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
#: used when a task does not restrict its characters (printable ASCII without \t\n\r\x0b\x0c)
DEFAULT_ALPHABET = string.printable[:-5]


def char_vocab(alphabet: str | None) -> dict[str, int]:
    """Token ids: the specials first, then the alphabet's distinct characters in sorted order."""
    chars = sorted(set(alphabet if alphabet is not None else DEFAULT_ALPHABET))
    return {tok: i for i, tok in enumerate(list(SPECIALS) + chars)}


def build_char_tokenizer(alphabet: str | None = None) -> PreTrainedTokenizerFast:
    """A left-padding character tokenizer over ``alphabet`` (None: printable ASCII)."""
    vocab = char_vocab(alphabet)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<bos>",
                                  eos_token="<eos>", unk_token="<unk>", padding_side="left")
    out.model_max_length = 4096
    return out
