"""VGGSounder (Zverev et al., ICCV 2025): VGGSound's test set re-annotated with several labels per clip and a
modality tag (A audible, V visible, AV both) per label, scored by the ``vggsounder`` package's own code.

A classifier's three heads are the package's three predictions: image -> ``v``, audio -> ``a``,
fusion -> ``av``. Their logits are written in the package's prediction-file format (a pickle
``{video_id: {"logits": {"a": [309 scores], "v": [...], "av": [...]}}}``, scores in the order of the
package's ``classes.csv``) and scored by ``vggsounder.benchmark.compute_all_results``, the function behind
the package's ``benchmark()`` table (which shows the same numbers x 100).

Classes are matched by name (:func:`class_key`). A model class the package lacks (e.g. the 310th name of
vggsound.csv) is dropped from the scores: the top-k are taken over the package's classes only. A package
class the model lacks gets :data:`MISSING_SCORE`, a constant below every real score: it is never among the
top k, its ROC-AUC is 0.5 and its AP its prevalence (a constant, not -inf: the package's sklearn calls
reject infinite scores and would drop the class from the AUC means without a word).

The package is an optional dependency: ``pip install 'avfusion[vggsounder]'``.
"""
from __future__ import annotations

import json
import logging
import pickle
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from avfusion.errors import ConfigError, DataError

log = logging.getLogger(__name__)

PACKAGE = "vggsounder"
INSTALL_HINT = "pip install 'avfusion[vggsounder]'  (or: pip install vggsounder; it needs Python >= 3.11)"
MODALITIES = ("a", "v", "av")
METRICS = ("accuracy", "hit_rate", "f1", "auc_pr", "auc_roc", "mu")
"""Reported per modality; ``accuracy``, ``hit_rate`` and ``f1`` are the package's top-1 (``@1``) numbers,
as its ``benchmark()`` table shows them. Every number the package computes goes to ``results.json``."""
MISSING_SCORE = float(np.finfo(np.float32).min)
MODEL_FILE = "avfusion"
CHANCE_FILE = "chance"


def require_package() -> Any:
    """The imported ``vggsounder`` package, or a ConfigError that says how to install it."""
    try:
        import vggsounder
        import vggsounder.benchmark  # noqa: F401  (pandas, scikit-learn)
    except ImportError as exc:
        raise ConfigError(f"the VGGSounder protocol needs the vggsounder package ({exc}): {INSTALL_HINT}") from None
    return vggsounder


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


# ----------------------------------------------------------------------------- class names
def class_key(name: str) -> str:
    """The name both sides are matched by: lower case; every run of spaces, underscores, commas and
    parentheses becomes one '_'; no '_' at either end. The raw vggsound.csv label "police car (siren)", its
    avfusion clip folder "police_car__siren_" and DeepAVFusion's metadata name "police_car_(siren)" all give
    "police_car_siren"."""
    return re.sub(r"[\s_,()]+", "_", str(name).strip().lower()).strip("_")


def _keys(names: Sequence[str], side: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, name in enumerate(names):
        key = class_key(name)
        if key in out:
            raise DataError(f"{side} classes {names[out[key]]!r} and {name!r} are the same class by name "
                            f"({key!r}); give the classes distinct names")
        out[key] = i
    return out


@dataclass(frozen=True)
class ClassMap:
    """Which model column scores each package class (-1: none), and the classes one side lacks."""

    columns: np.ndarray
    package_classes: tuple[str, ...]
    dropped: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()

    @property
    def matched(self) -> int:
        return int((self.columns >= 0).sum())

    def apply(self, logits: Any) -> np.ndarray:
        """(N, model classes) -> (N, package classes) float64; missing classes get MISSING_SCORE."""
        x = np.asarray(logits, dtype=np.float64)
        if x.ndim != 2 or not np.all(np.isfinite(x)):
            raise DataError(f"logits: expected a finite (items, classes) array, got shape {x.shape}")
        out = np.full((x.shape[0], len(self.columns)), MISSING_SCORE)
        have = self.columns >= 0
        out[:, have] = x[:, self.columns[have]]
        return out


def map_classes(model_names: Sequence[str], package_names: Sequence[str]) -> ClassMap:
    """Match the model's class axis to the package's classes by :func:`class_key`."""
    model_keys, package_keys = _keys(model_names, "model"), _keys(package_names, "VGGSounder")
    columns = np.array([model_keys.get(k, -1) for k in package_keys], dtype=np.int64)
    if not (columns >= 0).any():
        raise DataError(f"none of the model's {len(model_names)} classes (e.g. {list(model_names[:3])}) is a "
                        "VGGSounder class; the protocol needs a VGGSound classifier")
    dropped = tuple(n for n in model_names if class_key(n) not in package_keys)
    missing = tuple(package_names[i] for i, c in enumerate(columns) if c < 0)
    return ClassMap(columns, tuple(package_names), dropped, missing)


# ----------------------------------------------------------------------------- prediction files
def write_predictions(path: str | Path, ids: Sequence[str], logits: Mapping[str, np.ndarray]) -> Path:
    """Write the package's prediction file: ``{id: {"logits": {modality: [scores]}}}`` for every modality of
    ``logits`` ({modality: (N, package classes)}), scores as lists of floats."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = {m: np.asarray(v, dtype=np.float64).tolist() for m, v in logits.items()}
    for m, v in rows.items():
        if len(v) != len(ids):
            raise DataError(f"{len(v)} '{m}' score rows for {len(ids)} ids")
    payload = {vid: {"logits": {m: rows[m][i] for m in rows}} for i, vid in enumerate(ids)}
    with open(path, "wb") as f:
        pickle.dump(payload, f, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def chance_logits(n: int, classes: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded standard-normal scores for every modality: the chance row's 'model'."""
    rng = np.random.default_rng(seed)
    return {m: rng.standard_normal((n, classes)) for m in MODALITIES}


# ----------------------------------------------------------------------------- scoring
@dataclass
class Scores:
    """The package's numbers: {file name: {modality: {metric: value}}}, and N per modality."""

    results: dict[str, dict[str, dict[str, float]]]
    n: dict[str, int]
    package_version: str = field(default_factory=package_version)


def labels() -> Any:
    """The package's labels as its ``benchmark()`` takes them: ``VGGSounder()`` with its defaults (labels
    from its bundled CSV; clips with background music left out)."""
    return require_package().VGGSounder()


def clip_ids(gt: Any) -> set[str]:
    """The ids of every clip the labels hold (under their meta filters, whatever modality filter was left set)."""
    gt.set_modality(None)
    return set(gt.keys())


def score_directory(directory: str | Path, names: Sequence[str], video_ids: Sequence[str],
                    gt: Any | None = None) -> Scores:
    """Score the prediction files ``directory/<name>.pkl`` with the package's metrics, on the package's
    clips among ``video_ids`` (for every modality, those with a label of that modality)."""
    require_package()
    from vggsounder.benchmark import compute_all_results

    gt = gt if gt is not None else labels()
    with warnings.catch_warnings():  # the package's pandas deprecation notices are not the user's to act on
        warnings.filterwarnings("ignore", module="vggsounder")
        out = compute_all_results(str(directory), models_filter=list(names), subset_ids=set(video_ids),
                                  modalities=list(MODALITIES), vggsounder=gt, verbose=False, return_ground_truth=True)
    truth = out.pop("ground_truth")
    results = {name: {m: {k: float(v) for k, v in out[name][m].items()} for m in MODALITIES} for name in names}
    return Scores(results, {m: int(len(truth[m])) for m in MODALITIES})


def evaluate(ids: Sequence[str], logits: Mapping[str, np.ndarray], *, seed: int = 0,
             directory: str | Path | None = None, gt: Any | None = None) -> Scores:
    """Write the model's and the chance prediction files (``avfusion.pkl``, ``chance.pkl``) into ``directory``
    (a temporary one when None), score both, and write ``results.json`` beside them.

    ``logits``: {"a", "v", "av"} -> (N, package classes) scores of the clips ``ids``, already mapped.
    """
    gt = gt if gt is not None else labels()
    known = clip_ids(gt)
    keep = [i for i, vid in enumerate(ids) if vid in known]
    if not keep:
        raise DataError(f"none of the {len(ids)} evaluated items is a VGGSounder clip (ids like "
                        f"{list(ids[:2])}); evaluate VGGSound's test split (data.name=vggsound data.eval_split=test)")
    kept_ids = [ids[i] for i in keep]
    model = {m: np.asarray(logits[m])[keep] for m in MODALITIES}
    chance = chance_logits(len(keep), model["a"].shape[1], seed)
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(directory) if directory is not None else Path(tmp)
        write_predictions(where / f"{MODEL_FILE}.pkl", kept_ids, model)
        write_predictions(where / f"{CHANCE_FILE}.pkl", kept_ids, chance)
        scores = score_directory(where, (MODEL_FILE, CHANCE_FILE), kept_ids, gt)
        if directory is not None:
            (where / "results.json").write_text(json.dumps(
                {"package": PACKAGE, "version": scores.package_version, "seed": seed, "N": scores.n,
                 "results": scores.results}, indent=2) + "\n")
    return scores
