"""The one registry of the L2-SVM protocols (Tables 1 and 2): :data:`PROTOCOLS`, what each protocol reads.

For every protocol (rule ``svm_fit``'s wildcard, the result file's name): the labelled dataset, the features (which
trained D, or the K-means baseline) and their folder under results/features/, the config key with its labels per
class. workflow/rules/common.smk builds the ``svm_fit`` jobs and their inputs, and rule ``features_extract``'s
datasets, from it (:func:`feature_sets`, :func:`kmeans_features_dir`); :func:`dcgan_repro.svm.protocols.fit` runs
a protocol (``protocols.PROTOCOLS`` is this dict).

Only the standard library is imported: Snakemake reads this module whenever it parses the workflow, and importing
:mod:`dcgan_repro.svm.protocols` (torch, scikit-learn) took 6-10 s on a 2-core machine, longer than a dry run.
"""

from __future__ import annotations

from dataclasses import dataclass

KMEANS = "kmeans"  # Protocol.features_run of Table 1's K-means baseline: features of dcgan_repro.kmeans, no D


@dataclass(frozen=True)
class Protocol:
    """One registered evaluation protocol (its name is the rule wildcard and the result file name).

    :data:`PROTOCOLS` is the one registry of the protocols: workflow/rules/common.smk builds the ``svm_fit`` jobs,
    their inputs and the ``features_extract`` datasets from it (:func:`feature_sets`, :func:`kmeans_features_dir`).
    """

    name: str
    dataset: str  # labelled dataset the features describe (its folder under data.root: labels, splits)
    features_run: str  # the training run (config runs.<name>) whose D gives the features, or KMEANS
    features_dir: str  # results/features/<features_dir>/{train,test}.npy; D features: named after the dataset
    labels_key: str | None  # svm config key with labels per class; None = all training labels
    paper: str  # what it reproduces

    @property
    def discriminator_features(self) -> bool:
        """Whether the features are a trained D's (rule features_extract), not the K-means baseline's."""
        return self.features_run != KMEANS


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol("svm_svhn_1000", "svhn", "svhn", "svhn", "svhn_labels_per_class", "Table 2: SVHN, 1000 labels"),
    Protocol("svm_cifar10_400pc", "cifar10", "imagenet32", "cifar10", "cifar10_labels_per_class",
             "Table 1: CIFAR-10, 400 labels per class"),
    Protocol("svm_cifar10_all", "cifar10", "imagenet32", "cifar10", None, "Table 1: CIFAR-10, all training labels"),
    # Table 1's "1 Layer K-means" row, measured: the same protocols on K-means features (dcgan_repro.kmeans)
    Protocol("svm_cifar10_kmeans_400pc", "cifar10", KMEANS, "cifar10_kmeans", "cifar10_labels_per_class",
             "Table 1: 1 Layer K-means baseline, CIFAR-10, 400 labels per class"),
    Protocol("svm_cifar10_kmeans_all", "cifar10", KMEANS, "cifar10_kmeans", None,
             "Table 1: 1 Layer K-means baseline, CIFAR-10, all training labels"),
]}


def check_registry(registry: dict[str, Protocol]) -> None:
    """An error unless ``registry`` is one the workflow can wire: names are keys; D features are in the folder named
    after their dataset (rule features_extract's wildcard) and one D per dataset; every K-means protocol reads the
    one folder of rule features_kmeans, a folder no D writes."""
    errors = [f"{key}: registered under another name ({p.name})" for key, p in registry.items() if key != p.name]
    runs: dict[str, set[str]] = {}
    for p in registry.values():
        if p.discriminator_features:
            runs.setdefault(p.dataset, set()).add(p.features_run)
            if p.features_dir != p.dataset:
                errors.append(f"{p.name}: D features of {p.dataset} are in results/features/{p.dataset}/, "
                              f"not {p.features_dir}/")
    errors += [f"dataset {d}: features of more than one D ({', '.join(sorted(r))})" for d, r in runs.items()
               if len(r) > 1]
    kmeans_dirs = {p.features_dir for p in registry.values() if not p.discriminator_features}
    if len(kmeans_dirs) > 1 or kmeans_dirs & set(runs):
        errors.append(f"K-means protocols read {sorted(kmeans_dirs)}: rule features_kmeans writes one folder, "
                      "not one of D's")
    if errors:
        raise ValueError("SVM protocol registry: " + "; ".join(errors))


check_registry(PROTOCOLS)


def feature_sets(registry: dict[str, Protocol] = PROTOCOLS) -> dict[str, str]:
    """Rule features_extract's datasets: labelled dataset -> the training run whose D describes it (Sec. 5.1,
    5.2: the ImageNet D on CIFAR-10, the SVHN D on SVHN)."""
    return {p.dataset: p.features_run for p in registry.values() if p.discriminator_features}


def kmeans_features_dir(registry: dict[str, Protocol] = PROTOCOLS) -> str | None:
    """Rule features_kmeans's folder under results/features/ (Table 1's baseline); None when no protocol reads it."""
    return next((p.features_dir for p in registry.values() if not p.discriminator_features), None)
