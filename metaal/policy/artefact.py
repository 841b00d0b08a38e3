"""The policy artefact: a directory with ``metaal-policy.json`` (format, feature schema, K, algorithm,
training summary, sources, versions), the plain-PyTorch scorer weights ``scorer.pt`` and, for d3rlpy's
algorithms, d3rlpy's own pickle ``model.d3``.  This module is the only place that knows those names
and that format: ``write_policy`` writes one, ``read_meta`` reads its metadata, ``load_policy`` loads it.

The policy shipped inside the package (``metaal/policies/default``: the metadata and the scorer weights of one
policy, copied byte for byte from a ``metaal run`` directory by ``scripts/ship_policy.py``) has beside them
``SHIPPED.json``: each file's sha256 and the commands that regenerate them.  ``ship_policy`` writes it,
``check_shipped`` verifies it and ``load_shipped_policy`` loads the policy after that check.

Loading reads only ``metaal-policy.json`` and ``scorer.pt`` (``torch.load(weights_only=True)``,
which refuses arbitrary pickled objects; its sha256 must match the one the metadata records).
Pickle-based files can run code when loaded, so they are read only when the caller says
``trust_pickle=True`` (the CLI's ``--trust-pickle``): a scorer saved as a full pickle, d3rlpy's
``model.d3`` when a policy has no scorer file, and ``Policy.d3rlpy_model()``.  Scoring a policy
written by ``metaal distill`` never needs them.  Metadata fields written by older versions (options
since retired) are accepted and ignored.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from metaal.acquisition import features
from metaal.errors import MetaalError
from metaal.io import atomic_write_text, file_sha256, json_default
from metaal.policy.inference import Policy

POLICY_FILE = "metaal-policy.json"
SCORER_FILE = "scorer.pt"
MODEL_FILE = "model.d3"
POLICY_FORMAT = "metaal-policy"
POLICY_FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "policies" / "default"  # package data (pyproject package-data)
SHIPPED_FILE = "SHIPPED.json"
SHIPPED_FORMAT = "metaal-shipped-policy"
SHIPPED_FORMAT_VERSION = 1

TRUST_PICKLE_HINT = ("unpickling can run arbitrary code: pass --trust-pickle (trust_pickle=True) only for a policy "
                     "from a source you trust")


def is_policy(path: str | Path) -> bool:
    """Whether ``path`` is a policy directory (it holds the metadata file, written last)."""
    return (Path(path) / POLICY_FILE).is_file()


def meta_file(path: str | Path) -> Path:
    return Path(path) / POLICY_FILE


def meta_fingerprint(path: str | Path) -> str | None:
    """A short hash of the metadata (it records the weights' sha256), or None if there is none."""
    f = meta_file(path)
    return hashlib.sha256(f.read_bytes()).hexdigest()[:16] if f.is_file() else None


def read_meta(path: str | Path, strict: bool = True) -> dict:
    """The policy's metadata.  ``strict``: also refuse another format or an unsupported version."""
    f = meta_file(path)
    if not f.is_file():
        raise MetaalError(f"{path}: not a policy directory (no {POLICY_FILE})")
    try:
        meta = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetaalError(f"{f}: cannot read policy metadata ({exc})") from None
    if not isinstance(meta, dict) or (strict and meta.get("format") != POLICY_FORMAT):
        raise MetaalError(f"{f}: not a metaal policy file")
    if strict and meta.get("format_version") not in SUPPORTED_VERSIONS:
        raise MetaalError(f"{f}: policy format version {meta.get('format_version')} is not supported by this metaal")
    return meta


def scorer_file_name(meta: dict) -> str:
    return str((meta.get("scorer") or {}).get("file", SCORER_FILE))


def write_policy(directory: Path, scorer: torch.nn.Module, meta: dict, d3rlpy_algo=None) -> dict:
    """Write an artefact into ``directory`` (a staging directory: the caller renames it into place).

    ``meta["scorer"]`` describes the scorer; its file name and sha256 are filled in here.  The metadata
    is written last: a directory without it (or with weights that do not match it) never loads."""
    directory = Path(directory)
    if d3rlpy_algo is not None:
        d3rlpy_algo.save(str(directory / MODEL_FILE))
    torch.save({k: v.detach().cpu() for k, v in scorer.state_dict().items()}, directory / SCORER_FILE)
    meta["scorer"]["sha256"] = file_sha256(directory / SCORER_FILE)  # load_policy checks the weights it reads
    meta = _clean(meta)
    atomic_write_text(directory / POLICY_FILE, json.dumps(meta, indent=2, default=json_default, allow_nan=False) + "\n")
    return meta


def build_scorer(info: dict, where: str) -> torch.nn.Module:
    """An untrained scorer of the class and sizes ``meta["scorer"]`` records."""
    from metaal.policy.networks import BCQScorer, CandidateScorer, ScorerEnsemble

    try:
        F, G, H = int(info["n_features"]), int(info["n_context"]), int(info["hidden"])
        if info.get("class", "CandidateScorer") == "BCQScorer":
            return BCQScorer(F, G, H, float(info.get("action_flexibility", 0.3)))
        if info.get("class", "CandidateScorer") == "CandidateScorer":
            return CandidateScorer(F, G, H)
        if info.get("class") == "ScorerEnsemble":  # written by the retired `distill --ensemble`: still loads
            return ScorerEnsemble(F, G, H, int(info["members"]))
        raise MetaalError(f"{where}: unknown scorer class {info.get('class')!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise MetaalError(f"{where}: incomplete scorer description ({exc})") from None


def load_policy(path: str | Path, trust_pickle: bool = False, device: str = "cpu", max_candidates: int | None = None,
                prefilter: int | None = None) -> Policy:
    """Load a policy directory written by ``metaal.distill`` (json + scorer.pt only)."""
    path = Path(path)
    meta = read_meta(path)
    where = str(meta_file(path))
    features.check_schema(meta.get("schema") or {}, str(path))
    info = meta.get("scorer") or {}
    scorer = build_scorer(info, where)
    name = scorer_file_name(meta)
    if Path(name).name != name or name in ("", ".", "..") or "\\" in name:
        raise MetaalError(f"{where}: scorer file {name!r} must be a plain file name in the policy directory")
    _load_weights(path, meta, scorer, path / name, trust_pickle)
    return Policy(scorer, meta, path=path, device=device, max_candidates=max_candidates, trust_pickle=trust_pickle,
                  prefilter=prefilter)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _load_weights(path: Path, meta: dict, scorer: torch.nn.Module, weights: Path, trust_pickle: bool) -> None:
    """Fill ``scorer`` from the policy directory without running code from it.

    ``scorer.pt`` is read with ``torch.load(weights_only=True)`` and checked against the sha256 that
    ``metaal-policy.json`` records (the metadata is written last, so a half-written or altered copy is
    refused).  Pickle-based files are read only with ``trust_pickle``: a scorer saved as a full pickle,
    or, when there is no scorer file, d3rlpy's ``model.d3``."""
    import zipfile

    info = meta.get("scorer") or {}
    if not weights.is_file():
        d3 = meta.get("d3rlpy_model")
        if not (d3 and Path(str(d3)).name == str(d3) and (path / str(d3)).is_file()):
            raise MetaalError(f"{path}: scorer weights {weights.name} are missing")
        if not trust_pickle:
            raise MetaalError(f"{path}: scorer weights {weights.name} are missing and the only model is d3rlpy's {d3}, "
                              f"a pickle; refusing to open it ({TRUST_PICKLE_HINT})")
        _weights_from_d3rlpy(path / str(d3), meta, scorer)
        return
    expected = info.get("sha256")
    try:
        if expected is not None and file_sha256(weights) != str(expected):
            raise MetaalError(f"{weights}: cannot load scorer weights (the file does not match the sha256 recorded in "
                              f"{POLICY_FILE}: an incomplete or altered copy of the policy)")
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            if not zipfile.is_zipfile(weights):
                raise MetaalError(f"{weights}: cannot load scorer weights (not a PyTorch weights file: {_first_line(exc)})") from None
            if not trust_pickle:
                raise MetaalError(f"{weights}: cannot load scorer weights: it holds pickled Python objects, not plain "
                                  f"tensors; refusing to unpickle it ({TRUST_PICKLE_HINT})") from None
            state = torch.load(weights, map_location="cpu", weights_only=False)  # explicitly trusted
            if isinstance(state, torch.nn.Module):
                state = state.state_dict()
        scorer.load_state_dict(state)
    except MetaalError:
        raise
    except Exception as exc:  # unreadable file, wrong keys or shapes
        raise MetaalError(f"{weights}: cannot load scorer weights ({_first_line(exc)})") from None


def _weights_from_d3rlpy(model_file: Path, meta: dict, scorer: torch.nn.Module) -> None:
    """The scorer's weights taken out of d3rlpy's pickled learnable (only with trust_pickle)."""
    from metaal.policy.networks import d3rlpy_modules, load_d3rlpy_model

    try:
        mods = d3rlpy_modules(load_d3rlpy_model(model_file, device="cpu"))
        if "q" in mods and "imitator" in mods and hasattr(scorer, "imitator"):
            scorer.q.load_state_dict(mods["q"].state_dict())
            scorer.imitator.load_state_dict(mods["imitator"].state_dict())
        else:
            scorer.load_state_dict(mods["imitator" if meta.get("algorithm") == "bc" else "q"].state_dict())
    except MetaalError:
        raise
    except Exception as exc:
        raise MetaalError(f"{model_file}: cannot load the d3rlpy model ({_first_line(exc)})") from None


def _clean(o):
    """NaN/inf floats -> None, recursively (strict JSON)."""
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_clean(v) for v in o]
    if isinstance(o, float | np.floating):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    return o


# ------------------------------------------------------------------------------------- the shipped policy


def check_shipped(path: str | Path = SHIPPED_DIR) -> dict:
    """The shipped policy's manifest, after checking every file it lists against its sha256 (one-line errors)."""
    path = Path(path)
    f = path / SHIPPED_FILE
    if not f.is_file():
        raise MetaalError(f"no policy ships with this metaal ({f} is missing): train one (metaal run) and pass "
                          "policy:DIR")
    try:
        manifest = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MetaalError(f"{f}: cannot read the shipped policy's manifest ({_first_line(exc)})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if (not isinstance(files, dict) or manifest.get("format") != SHIPPED_FORMAT
            or manifest.get("format_version") != SHIPPED_FORMAT_VERSION or POLICY_FILE not in files):
        raise MetaalError(f"{f}: not a manifest of a shipped metaal policy (format {SHIPPED_FORMAT} "
                          f"version {SHIPPED_FORMAT_VERSION} listing {POLICY_FILE})")
    for name, info in files.items():
        if Path(name).name != name or name in ("", ".", "..") or not isinstance(info, dict):
            raise MetaalError(f"{f}: bad entry {name!r}")
        if not (path / name).is_file():
            raise MetaalError(f"{path / name}: a shipped policy file is missing (reinstall metaal)")
        if file_sha256(path / name) != info.get("sha256"):
            raise MetaalError(f"{path / name}: the shipped policy file does not match the sha256 in {SHIPPED_FILE} "
                              "(an altered or incomplete copy; reinstall metaal)")
    return manifest


def load_shipped_policy(path: str | Path = SHIPPED_DIR, **options) -> Policy:
    """The policy shipped inside metaal (``--strategy policy``), its files checked against ``SHIPPED.json`` first."""
    check_shipped(path)
    return load_policy(path, **options)


def ship_policy(source: str | Path, dest: str | Path, commands: list[str], origin: dict | None = None) -> dict:
    """Copy the policy directory ``source`` into ``dest`` (the package's ``policies/default``) with its manifest.

    Only the files loading needs are copied (the metadata and the scorer weights, byte for byte: never d3rlpy's
    pickle); the policy must load with this code (format, feature schema, weights' sha256).  ``commands``: the
    commands that regenerate the files, in order; ``origin``: what else to record (the run directory, the code's
    commit).  Written into a staging directory beside ``dest`` that then replaces it, so ``dest`` never holds a
    mixture of the old set and the new one.  Returns the manifest."""
    import os
    import shutil
    import tempfile

    source, dest = Path(source), Path(dest)
    meta = read_meta(source)
    load_policy(source)  # loads here: schema, scorer class and sizes, weights against their recorded sha256
    names = [POLICY_FILE, scorer_file_name(meta)]
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.staging-"))
    old = None
    try:
        files = {}
        for name in names:
            data = (source / name).read_bytes()
            (staging / name).write_bytes(data)
            files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        manifest = {"format": SHIPPED_FORMAT, "format_version": SHIPPED_FORMAT_VERSION, "files": files,
                    "commands": [str(c) for c in commands], **(origin or {})}
        (staging / SHIPPED_FILE).write_text(json.dumps(manifest, indent=2, default=json_default) + "\n")
        os.chmod(staging, 0o755)
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
            os.replace(dest, old / dest.name)
        os.replace(staging, dest)
    except BaseException:
        if old is not None and not dest.exists():
            os.replace(old / dest.name, dest)  # put the previous set back
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return manifest
