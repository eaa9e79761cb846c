"""The one registry of the L2-SVM protocols (Tables 1 and 2): :data:`PROTOCOLS`, what each protocol reads.

A protocol is a labelled dataset, a kind of features and a label budget. The features of a dataset live in
``results/features/<dataset>_<features>/{train,test}.npy``; the kinds (:data:`FEATURE_SOURCES`):

* ``trained``: the D of the training run that describes the dataset (:data:`FEATURE_RUNS`: the ImageNet run for
  CIFAR-10, Sec. 5.1; the SVHN run for SVHN, Sec. 5.2), trained by this workflow (rule ``features_extract``);
* ``released``: the same run's D as the authors released it (config ``weights.<run>``, rule ``features_extract``);
* ``kmeans``: Table 1's "1 Layer K-means" baseline (rule ``features_kmeans``);
* ``pixels``: the raw pixels, as D sees them (rule ``features_extract``), a floor for every learned feature.

:func:`active_protocols` says which protocols a config runs (``features.discriminator`` picks trained, released
or both per dataset; a dataset cut to at most one label draw runs its all-labels protocol only), and
workflow/rules/common.smk builds the ``svm_fit`` jobs and the tables' inputs from it.
:func:`dcgan_repro.svm.protocols.fit` runs a protocol.

Only the standard library is imported: Snakemake reads this module whenever it parses the workflow, and importing
:mod:`dcgan_repro.svm.protocols` (torch, scikit-learn) took 6-10 s on a 2-core machine, longer than a dry run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TRAINED, RELEASED, KMEANS, PIXELS = "trained", "released", "kmeans", "pixels"
FEATURE_SOURCES = (TRAINED, RELEASED, KMEANS, PIXELS)
D_SOURCES = (TRAINED, RELEASED)  # features of a discriminator (config features.discriminator chooses)
EXTRACTED = (TRAINED, RELEASED, PIXELS)  # the kinds rule features_extract writes (K-means: rule features_kmeans)
# Labelled dataset -> the training run (config runs.<name>, weights.<name>) whose D describes it (Sec. 5.1, 5.2).
FEATURE_RUNS = {"cifar10": "imagenet32", "svhn": "svhn"}
N_CLASSES = {"cifar10": 10, "svhn": 10}
# Run -> the authors' released model of it (dcgan_repro.theano_weights.RELEASED_RUNS, dcgan_repro.released).
RELEASED_MODELS = {"imagenet32": "imagenet32", "svhn": "svhn32"}


@dataclass(frozen=True)
class Protocol:
    """One registered evaluation protocol (its name is the rule wildcard and the result file name)."""

    name: str
    dataset: str  # labelled dataset the features describe (its folder under data.root: labels, splits)
    features: str  # one of FEATURE_SOURCES
    labels_key: str | None  # svm config key with labels per class; None = all training labels
    paper: str  # what it reproduces

    @property
    def features_dir(self) -> str:
        """results/features/<this>/{train,test}.npy."""
        return f"{self.dataset}_{self.features}"

    @property
    def features_run(self) -> str | None:
        """The training run whose D gives the features (trained or released); None for K-means and pixels."""
        return FEATURE_RUNS[self.dataset] if self.features in D_SOURCES else None

    @property
    def discriminator_features(self) -> bool:
        return self.features in D_SOURCES


_WHAT = {TRAINED: "D trained by this workflow", RELEASED: "the authors' released D",
         KMEANS: "1 Layer K-means baseline", PIXELS: "raw pixels"}
_BUDGETS = {  # dataset -> (name suffix, labels key, what) per label budget
    "cifar10": [("all", None, "Table 1: CIFAR-10, all training labels"),
                ("400pc", "cifar10_labels_per_class", "Table 1: CIFAR-10, 400 labels per class")],
    "svhn": [("1000", "svhn_labels_per_class", "Table 2: SVHN, 1000 labels")],
}
_KINDS = {"cifar10": FEATURE_SOURCES, "svhn": D_SOURCES}  # Table 2 has no K-means or pixel row

PROTOCOLS: dict[str, Protocol] = {
    f"svm_{ds}_{kind}_{suffix}": Protocol(f"svm_{ds}_{kind}_{suffix}", ds, kind, key, f"{what} ({_WHAT[kind]})")
    for ds, budgets in _BUDGETS.items() for kind in _KINDS[ds] for suffix, key, what in budgets
}


def check_registry(registry: dict[str, Protocol]) -> None:
    """An error unless ``registry`` is one the workflow can wire: names are keys, kinds and datasets known."""
    errors = [f"{key}: registered under another name ({p.name})" for key, p in registry.items() if key != p.name]
    errors += [f"{p.name}: unknown features {p.features!r} (known: {', '.join(FEATURE_SOURCES)})"
               for p in registry.values() if p.features not in FEATURE_SOURCES]
    errors += [f"{p.name}: no training run describes dataset {p.dataset!r} (known: {', '.join(FEATURE_RUNS)})"
               for p in registry.values() if p.dataset not in FEATURE_RUNS]
    if errors:
        raise ValueError("SVM protocol registry: " + "; ".join(errors))


check_registry(PROTOCOLS)


def single_draw(config: dict[str, Any], dataset: str) -> bool:
    """Whether ``dataset`` is cut (``data.<dataset>.train_images``) to at most n_classes x labels-per-class images:
    then a labels-per-class draw cannot differ from taking every image, and only the all-labels protocol runs
    (Table 1 shows it in the per-class column, as one draw with no spread)."""
    n = (config["data"][dataset] or {}).get("train_images") or 0
    keys = [k for _, k, _ in _BUDGETS[dataset] if k]
    return bool(n) and all(n <= N_CLASSES[dataset] * config["svm"][k] for k in keys)


def active_protocols(config: dict[str, Any]) -> list[str]:
    """The protocols config runs: per dataset the D features ``features.discriminator`` picks (trained, released
    or both), K-means and pixels for CIFAR-10, each label budget unless :func:`single_draw`."""
    choice = config["features"]["discriminator"]
    out = []
    for p in PROTOCOLS.values():
        if p.discriminator_features and choice[p.dataset] not in (p.features, "both"):
            continue
        if p.labels_key and single_draw(config, p.dataset) and any(not k for _, k, _ in _BUDGETS[p.dataset]):
            continue
        out.append(p.name)
    return out


def protocol_for(dataset: str, features: str, labels: str | None) -> str:
    """The name of the protocol on ``dataset``'s ``features`` with labels key ``labels`` (None: all labels)."""
    for p in PROTOCOLS.values():
        if (p.dataset, p.features, p.labels_key) == (dataset, features, labels):
            return p.name
    raise KeyError(f"no SVM protocol on {dataset} {features} features with labels {labels}")
