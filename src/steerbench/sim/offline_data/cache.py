"""Writing the synthetic data where inspect_evals looks for it, so tasks run offline.

Two kinds of cache are written under one root:

* ``<root>/hf_home/datasets/``: the *prepared Arrow cache* of the ``datasets`` package.
  With ``HF_DATASETS_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``, ``datasets.load_dataset(repo,
  name, data_dir=..., revision=...)`` cannot reach the Hub, falls back to
  ``CachedDatasetModuleFactory`` and the ``cache`` packaged builder, which globs
  ``<ns>___<snake_case(name)>/<config_id>/*/*`` and takes the newest folder. The
  revision is not consulted offline, so the ``<version>/<hash>`` folder names are free;
  we use ``0.0.0/<the revision inspect_evals pins>``, which is what an online download
  of that revision would have produced. ``config_id`` is the config name
  (``"default"`` when the task passes none), plus ``-data_dir=main`` for GSM8K's
  ``data_dir="main"``. Each folder holds ``dataset_info.json`` (features, splits) and
  ``<snake name>-<split>.arrow`` written with ``datasets.arrow_writer.ArrowWriter``.
* ``<root>/inspect_evals_cache/``: ``INSPECT_EVALS_CACHE_DIR`` for the non-HF files:
  ``gpqa/gpqa_diamond.csv`` and
  ``sycophancy/anthropic_sycophancy_are_you_sure_<sha256(url)[:32]>.jsonl``.

Two things cannot be done with files and environment variables alone; see
:func:`apply_offline_patches`.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import uuid
from functools import cache
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import _data

# Bump when the layout written here changes, so existing caches are rebuilt.
LAYOUT_VERSION = 1
STAMP_FILE = ".steerbench-offline-cache.json"

SYCOPHANCY_CACHE_TAG = "anthropic_sycophancy_are_you_sure"
_SYCOPHANCY_URL_TEMPLATE = (
    "https://raw.githubusercontent.com/meg-tong/sycophancy-eval/{revision}/datasets/are_you_sure.jsonl"
)
_SYCOPHANCY_FALLBACK_REVISION = "9a1694221e3639887138f61deae344335eca6752"


# ------------------------------------------------------------------ inspect_evals pins


def _inspect_evals_dir() -> Path | None:
    spec = importlib.util.find_spec("inspect_evals")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@cache
def _module_constants(relative_file: str) -> dict[str, Any]:
    """Module-level constants of an inspect_evals source file, read without importing it
    (importing task modules pulls in all of Inspect and freezes INSPECT_EVALS_CACHE_DIR)."""
    root = _inspect_evals_dir()
    if root is None:
        return {}
    try:
        tree = ast.parse((root / relative_file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return {}
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            value = _evaluate(node.value, values)
            if value is not None:
                values[name] = value
    return values


def _evaluate(node: ast.AST, known: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):  # f-strings over earlier constants
        parts = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                parts.append(str(part.value))
            elif isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name) and part.value.id in known:
                parts.append(str(known[part.value.id]))
            else:
                return None
        return "".join(parts)
    if isinstance(node, ast.Dict):
        out = {}
        for k, v in zip(node.keys, node.values):
            key, value = (_evaluate(k, known) if k is not None else None), _evaluate(v, known)
            if key is None or value is None:
                return None
            out[key] = value
        return out
    return None


def _revision(spec: _data.HFDatasetSpec) -> str:
    file, constant = spec.revision_source
    value = _module_constants(file).get(constant)
    return value if isinstance(value, str) and value else spec.fallback_revision


def sycophancy_url() -> str:
    """The URL inspect_evals downloads are_you_sure.jsonl from (it names the cache file)."""
    constants = _module_constants("sycophancy/utils.py")
    urls = constants.get("URLS")
    if isinstance(urls, dict) and isinstance(urls.get("are_you_sure"), str):
        return urls["are_you_sure"]
    revision = constants.get("SYCOPHANCY_DATASET_REVISION") or _SYCOPHANCY_FALLBACK_REVISION
    return _SYCOPHANCY_URL_TEMPLATE.format(revision=revision)


def sycophancy_cache_name(url: str | None = None) -> str:
    """Same naming as inspect_evals.utils.load_dataset.get_cached_fname(url, tag)."""
    url = url or sycophancy_url()
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]
    return f"{SYCOPHANCY_CACHE_TAG}_{digest}.jsonl"


# ------------------------------------------------------------------ writing


def _config_id(spec: _data.HFDatasetSpec) -> str:
    """The config folder name `datasets` looks for (e.g. 'default-data_dir=main')."""
    import datasets

    kwargs = {"data_dir": spec.data_dir} if spec.data_dir else {}
    return datasets.BuilderConfig(name=spec.config_name or "default").create_config_id(config_kwargs=kwargs)


def hf_dataset_dir(hf_datasets_cache: Path, spec: _data.HFDatasetSpec) -> Path:
    from datasets.naming import camelcase_to_snakecase

    namespace, name = spec.repo.split("/")
    return (
        hf_datasets_cache
        / f"{namespace}___{camelcase_to_snakecase(name)}"
        / _config_id(spec)
        / "0.0.0"
        / _revision(spec)
    )


def _write_hf_dataset(hf_datasets_cache: Path, spec: _data.HFDatasetSpec) -> Path:
    import datasets
    from datasets.arrow_writer import ArrowWriter
    from datasets.naming import camelcase_to_snakecase, filename_prefix_for_split

    folder = hf_dataset_dir(hf_datasets_cache, spec)
    folder.mkdir(parents=True, exist_ok=True)
    dataset_name = camelcase_to_snakecase(spec.repo.split("/")[1])
    split_infos = {}
    features = None
    for split, rows in _data.splits_of(spec).items():
        table = datasets.Dataset.from_list(rows)
        if features is None:
            features = table.features
        path = folder / f"{filename_prefix_for_split(dataset_name, split)}.arrow"
        with ArrowWriter(features=table.features, path=str(path)) as writer:
            writer.write_table(table.data.table)
            num_examples, num_bytes = writer.finalize()
        split_infos[split] = datasets.SplitInfo(
            name=split, num_bytes=num_bytes, num_examples=num_examples, dataset_name=dataset_name
        )
    info = datasets.DatasetInfo(
        description="Synthetic steerbench offline fixture (not real benchmark data).",
        features=features,
        config_name=spec.config_name or "default",
        dataset_name=dataset_name,
        splits=datasets.SplitDict(split_infos, dataset_name=dataset_name),
    )
    info.write_to_directory(str(folder))
    return folder


def _fingerprint() -> str:
    h = hashlib.sha256()
    h.update(f"layout={LAYOUT_VERSION}\n".encode())
    h.update(f"rows={_data.rows_wanted()}\n".encode())  # the demo's variants (_data.more_rows)
    for name in _data.data_file_names():
        h.update(name.encode() + b"\0" + _data.data_bytes(name) + b"\0")
    for spec in _data.HF_DATASETS:
        h.update(f"{spec.repo}|{spec.config_name}|{spec.data_dir}|{_revision(spec)}\n".encode())
    h.update(sycophancy_url().encode())
    return h.hexdigest()


def offline_env(root: Path) -> dict[str, str]:
    """The environment a process needs to run the 12 tasks on the cache at `root`."""
    root = Path(root).absolute()
    hf_home = root / "hf_home"
    return {
        "HF_HOME": str(hf_home),
        # set explicitly: a user's HF_DATASETS_CACHE / HF_HUB_CACHE would win over HF_HOME
        "HF_DATASETS_CACHE": str(hf_home / "datasets"),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",  # cosmetic: no "Saving the dataset" bars
        "INSPECT_EVALS_CACHE_DIR": str(root / "inspect_evals_cache"),
        # Inspect's hf_dataset() save_to_disk()s every load under
        # platformdirs.user_cache_path("inspect_ai"); keep those copies inside root.
        "XDG_CACHE_HOME": str(root / "xdg_cache"),
    }


def _stamp_matches(stamp: Path, fingerprint: str, env: dict[str, str]) -> bool:
    try:
        ok = json.loads(stamp.read_text())["fingerprint"] == fingerprint
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return ok and Path(env["HF_DATASETS_CACHE"]).is_dir() and Path(env["INSPECT_EVALS_CACHE_DIR"]).is_dir()


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    import fcntl

    with open(lock_path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_offline_cache(root: Path) -> dict[str, str]:
    """Write every cache the 12 benchmarks need under `root` and return the environment
    variables a process must set (before importing ``datasets`` / ``inspect_evals``) to
    run them offline. Idempotent and safe to call from several processes: a stamp file
    records what was written, and a second call with unchanged data only reads it.

    Also call :func:`apply_offline_patches` in the process that creates the tasks (GPQA
    checksum, retry back-off).
    """
    root = Path(root).absolute()
    env = offline_env(root)
    fingerprint = _fingerprint()
    stamp = root / STAMP_FILE
    if _stamp_matches(stamp, fingerprint, env):
        return env
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / ".steerbench-offline-cache.lock"):
        if _stamp_matches(stamp, fingerprint, env):  # another process just wrote it
            return env
        stamp.unlink(missing_ok=True)
        build = root / f".build-{uuid.uuid4().hex}"
        try:
            new_hf = build / "datasets"
            for spec in _data.HF_DATASETS:
                _write_hf_dataset(new_hf, spec)
            new_ie = build / "inspect_evals_cache"
            (new_ie / "gpqa").mkdir(parents=True)
            (new_ie / "gpqa" / "gpqa_diamond.csv").write_bytes(_data.gpqa_csv_bytes())
            (new_ie / "sycophancy").mkdir(parents=True)
            (new_ie / "sycophancy" / sycophancy_cache_name()).write_bytes(_data.sycophancy_bytes())
            # swap the new trees in (anything cached there before is dropped)
            for new, final in (
                (new_hf, Path(env["HF_DATASETS_CACHE"])),
                (new_ie, Path(env["INSPECT_EVALS_CACHE_DIR"])),
            ):
                if final.exists():
                    shutil.rmtree(final)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(new, final)
            Path(env["HF_HUB_CACHE"]).mkdir(parents=True, exist_ok=True)
            Path(env["XDG_CACHE_HOME"]).mkdir(parents=True, exist_ok=True)
            stamp.write_text(json.dumps({"fingerprint": fingerprint, "env": env}, indent=2))
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return env


# ------------------------------------------------------------------ runtime patches


def synthetic_gpqa_sha256() -> str:
    return hashlib.sha256(_data.gpqa_csv_bytes()).hexdigest()


def apply_offline_patches(*, disable_retries: bool = True, trust_synthetic_gpqa: bool = True) -> list[str]:
    """Runtime patches for the two things no file or environment variable can fix.

    Call it in the process that creates the tasks, after the offline environment is in
    ``os.environ`` (importing inspect_evals freezes ``INSPECT_EVALS_CACHE_DIR``) and
    before the tasks are created. Returns a description of each patch applied.

    * ``disable_retries``: inspect_evals wraps every Hugging Face call in
      ``backoff`` with ``BACKOFF_CONFIG`` fixed at import (3 tries, 1-5 *minute* waits,
      5 tries if ``CI`` is set; no variable turns it off), and its remote-file loader
      retries 5 times. A missing fixture would then hang for minutes. The retry
      decorators call the module-level predicates ``should_retry`` /
      ``is_transient_error`` at call time, so replacing those with ``lambda e: False``
      makes every failure final at once.
    * ``trust_synthetic_gpqa``: ``gpqa_diamond`` calls ``inspect_ai.util.download(url,
      GPQA_DIAMOND_DATASET_SHA256, path)``, which skips the network only when the cached
      file's SHA-256 equals the pinned hash of the *real* CSV, which synthetic data can
      never match. If (and only if) the file at ``GPQA_DIAMOND_CACHE_PATH`` is byte for
      byte our synthetic CSV, the module's pinned hash is set to its hash, so the
      check passes and a real or corrupted file is still handled as before.
    """
    from ...boundary.offline import disable_dataset_retries, trust_gpqa_csv

    applied: list[str] = []
    if disable_retries:
        applied += disable_dataset_retries()
    if trust_synthetic_gpqa:
        applied += trust_gpqa_csv(synthetic_gpqa_sha256())
    return applied
