"""Write a small CLIP tokenizer (vocab.json + merges.txt) whose vocabulary the project chooses.

Tests and the demo model cannot download CLIP's 49k-token BPE vocabulary, so we train a BPE
on the words we need (HF `tokenizers`, the same BPE model CLIPTokenizer uses) until every word
is a single token, and save it in the exact files `CLIPTokenizer.from_pretrained` reads.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")
_WORD = re.compile(r"[a-z]+|[0-9]")


def words_of(texts: Iterable[str]) -> list[str]:
    """The distinct lower-case words (CLIP's pre-tokenisation: letter runs and single digits)."""
    found: set[str] = set()
    for text in texts:
        found.update(_WORD.findall(text.lower()))
    return sorted(found)


def learn_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """BPE merges (in rank order) that turn every word into the single token ``word</w>``.

    Classic BPE training on the word list with each word counted once: repeatedly merge the
    most frequent adjacent pair (ties broken lexicographically, so the result is deterministic).
    Applying these merges in rank order reproduces the training segmentation, so each word ends
    as one symbol.
    """
    corpus = {w: tuple(w[:-1]) + (w[-1] + "</w>",) for w in sorted(set(words))}
    merges: list[tuple[str, str]] = []
    while True:
        counts: dict[tuple[str, str], int] = {}
        for symbols in corpus.values():
            for pair in zip(symbols, symbols[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        if not counts:
            return merges
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        for word, symbols in corpus.items():
            out: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    out.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            corpus[word] = tuple(out)


def write_clip_tokenizer(out_dir: str | Path, texts: Iterable[str], model_max_length: int = 77) -> int:
    """Write vocab.json, merges.txt and the configs of a CLIPTokenizer covering ``texts``.

    Returns the vocabulary size (use it as the text encoder's ``vocab_size``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = words_of(texts)
    merges = learn_merges(words)
    chars = sorted({c for w in words for c in w} | set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab_tokens = list(chars) + [c + "</w>" for c in chars]
    vocab_tokens += [a + b for a, b in merges]
    vocab: dict[str, int] = {}
    for tok in vocab_tokens:
        vocab.setdefault(tok, len(vocab))
    for tok in SPECIAL_TOKENS:
        vocab.setdefault(tok, len(vocab))
    (out / "vocab.json").write_text(json.dumps(vocab, indent=0, ensure_ascii=True))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    special = {
        "bos_token": SPECIAL_TOKENS[0],
        "eos_token": SPECIAL_TOKENS[1],
        "unk_token": SPECIAL_TOKENS[1],
        "pad_token": SPECIAL_TOKENS[1],
    }
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {
        **special,
        "model_max_length": model_max_length,
        "tokenizer_class": "CLIPTokenizer",
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return len(vocab)
