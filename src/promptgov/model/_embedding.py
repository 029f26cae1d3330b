"""The embedding model and the tokenizer of ``local/knn``, loaded lazily, once, thread-safely.

* :func:`embed`: the static embedding model shipped inside the ``wordllama`` wheel (mean of token
  vectors, lower-cased, unit length); never downloaded (:func:`load_embedder` raises instead).
* :func:`token_count`: tiktoken's ``cl100k_base``, read from the encoding file that ships in
  litellm's wheel (litellm is not imported, nothing is downloaded); an estimate by words and
  marks when it is unavailable.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from promptgov.errors import ModelError
from promptgov.model._knn_params import MODEL_ID

# the warning below is local/knn's: keep the logger name it has always had
_log = logging.getLogger("promptgov.model._knn")

_load_lock = threading.Lock()
_embedder: Any = None
_encoding: Any = None
_encoding_loaded = False


def load_embedder() -> Any:
    """The WordLlama model inside the ``wordllama`` wheel; never downloads (raises instead)."""
    global _embedder
    if _embedder is None:
        with _load_lock:
            if _embedder is None:
                root = logging.getLogger()
                handlers, level = list(root.handlers), root.level
                try:
                    import wordllama
                    from wordllama import WordLlama
                finally:  # wordllama calls logging.basicConfig(INFO) on import: undo it
                    root.handlers[:] = handlers
                    root.setLevel(level)
                try:
                    _embedder = WordLlama.load(cache_dir=Path(wordllama.__file__).parent,
                                               disable_download=True)
                except FileNotFoundError as e:
                    raise ModelError(f"local/knn: no embedding model inside the wordllama wheel "
                                     f"({e}); reinstall wordllama>=0.4,<0.5, which ships "
                                     f"l2_supercat_256", model=MODEL_ID) from None
    return _embedder


_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
_CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def _tiktoken_dir() -> str | None:
    """litellm's bundled tiktoken cache folder, found without importing litellm."""
    import importlib.util

    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    f = d / hashlib.sha1(_CL100K_URL.encode()).hexdigest()
    try:  # tiktoken deletes and re-downloads a cached file whose hash is wrong: check first
        ok = f.is_file() and hashlib.sha256(f.read_bytes()).hexdigest() == _CL100K_SHA256
    except OSError:
        ok = False
    return str(d) if ok else None


def _get_encoding() -> Any:
    global _encoding, _encoding_loaded
    if not _encoding_loaded:
        with _load_lock:
            if not _encoding_loaded:
                try:
                    import tiktoken

                    d = _tiktoken_dir()
                    if d is None:
                        raise FileNotFoundError("cl100k_base not found in litellm's wheel")
                    old = os.environ.get("TIKTOKEN_CACHE_DIR")
                    os.environ["TIKTOKEN_CACHE_DIR"] = d
                    try:
                        _encoding = tiktoken.get_encoding("cl100k_base")
                    finally:
                        if old is None:
                            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
                        else:
                            os.environ["TIKTOKEN_CACHE_DIR"] = old
                except Exception as e:  # noqa: BLE001 — count approximately, never download
                    _log.warning("local/knn: tiktoken cl100k_base unavailable offline (%s); "
                                 "token counts are estimated", e)
                    _encoding = None
                _encoding_loaded = True
    return _encoding


_WORDISH = re.compile(r"\w+|[^\w\s]")


def token_count(text: str) -> int:
    """cl100k_base tokens of ``text`` (an estimate by words and marks if tiktoken is absent)."""
    enc = _get_encoding()
    if enc is None:
        return len(_WORDISH.findall(text))
    return len(enc.encode(text, disallowed_special=()))


def _norm_text(text: str) -> str:
    return " ".join(text.lower().split())


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length embeddings (float32, one row per text) of lower-cased ``texts``."""
    wl = load_embedder()
    if not texts:
        return np.zeros((0, wl.embedding.shape[1]), np.float32)
    out = np.asarray(wl.embed([_norm_text(t) for t in texts], norm=False), np.float32)
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(n > 0, n, 1.0)


def _embed_one(text: str) -> np.ndarray:
    wl = load_embedder()
    ids = wl.tokenizer.encode(_norm_text(text), add_special_tokens=False).ids
    if not ids:
        return np.zeros(wl.embedding.shape[1], np.float32)
    v: np.ndarray = wl.embedding[ids].sum(axis=0)
    n = float(np.sqrt(v @ v))
    return v / n if n > 0 else v
