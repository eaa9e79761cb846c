"""The numbers Radford, Metz & Chintala (2015, arXiv:1511.06434) report: the one place they live.

Tables and figure captions import them from here and mark every value taken from here as ``quoted``; nothing
else in the project types a paper number. Each value names its source (table, row, column or section) so a
reader can check it against the paper. ``tests/test_tables.py`` parses ``docs/REFERENCE.md`` section 1 and
checks every number below against it when that file is present.

Units: percentages are stored as percent (82.8 means 82.8 %); ``spread`` is the paper's "(± x %)".
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER = "Radford, Metz & Chintala (2015), arXiv:1511.06434"


@dataclass(frozen=True)
class Quoted:
    """One number from the paper.

    ``row``/``column`` are the paper's own labels; ``source`` says where it is printed; ``note`` qualifies it
    where the paper's number is not what its column suggests (e.g. a validation error in a test-error table).
    """

    value: float
    source: str
    row: str
    column: str
    spread: float | None = None
    unit: str = "%"
    note: str = ""


# --- Table 1: CIFAR-10, L2-SVM on features of a DCGAN trained on ImageNet-1k (Sec. 5.1) ----------------
TABLE1_COLUMNS = ("accuracy", "accuracy_400", "max_feature_units")
TABLE1_COLUMN_LABELS = {
    "accuracy": "Accuracy",
    "accuracy_400": "Accuracy (400 per class)",
    "max_feature_units": "max # of features units",
}
TABLE1_ROWS = (
    "1 Layer K-means",
    "3 Layer K-means Learned RF",
    "View Invariant K-means",
    "Exemplar CNN",
    "DCGAN (ours) + L2-SVM",
)
TABLE1_DCGAN = "DCGAN (ours) + L2-SVM"
TABLE1_KMEANS = "1 Layer K-means"  # the baseline row this pipeline also measures (dcgan_repro.kmeans)
_T1 = {  # row: (accuracy, accuracy 400 per class, its ±, max # of feature units)
    "1 Layer K-means": (80.6, 63.7, 0.7, 4800),
    "3 Layer K-means Learned RF": (82.0, 70.7, 0.7, 3200),
    "View Invariant K-means": (81.9, 72.6, 0.7, 6400),
    "Exemplar CNN": (84.3, 77.4, 0.2, 1024),
    "DCGAN (ours) + L2-SVM": (82.8, 73.8, 0.4, 512),
}
TABLE1: dict[tuple[str, str], Quoted] = {}
for _row, (_acc, _acc400, _pm, _units) in _T1.items():
    TABLE1[_row, "accuracy"] = Quoted(_acc, "Table 1", _row, "Accuracy")
    TABLE1[_row, "accuracy_400"] = Quoted(_acc400, "Table 1", _row, "Accuracy (400 per class)", spread=_pm)
    TABLE1[_row, "max_feature_units"] = Quoted(_units, "Table 1", _row, "max # of features units", unit="units")
# Sec. 5.1 text: "flattened and concatenated to form a 28672 dimensional vector".
CIFAR10_FEATURE_DIM = Quoted(28672, "Sec. 5.1 text", TABLE1_DCGAN, "feature dimension", unit="dims")

# --- Table 2: SVHN classification with 1000 labels, test error (Sec. 5.2) ------------------------------
TABLE2_ROWS = (
    "KNN",
    "TSVM",
    "M1+KNN",
    "M1+TSVM",
    "M1+M2",
    "SWWAE without dropout",
    "SWWAE with dropout",
    "DCGAN (ours) + L2-SVM",
    "Supervised CNN with the same architecture",
)
TABLE2_DCGAN = "DCGAN (ours) + L2-SVM"
TABLE2_CNN = "Supervised CNN with the same architecture"
_T2 = {
    "KNN": 77.93,
    "TSVM": 66.55,
    "M1+KNN": 65.63,
    "M1+TSVM": 54.33,
    "M1+M2": 36.02,
    "SWWAE without dropout": 27.83,
    "SWWAE with dropout": 23.56,
    "DCGAN (ours) + L2-SVM": 22.48,
}
TABLE2: dict[str, Quoted] = {row: Quoted(v, "Table 2", row, "error rate") for row, v in _T2.items()}
TABLE2[TABLE2_CNN] = Quoted(
    28.87, "Table 2 and Sec. 5.2", TABLE2_CNN, "error rate",
    note="validation error (not test error), best of 64 random-search hyperparameter trials",
)
SUPERVISED_CNN_TRIALS = 64  # Sec. 5.2: "random search over 64 hyperparameter trials"

# --- Table 3: MNIST, 1-NN test error, classifier fitted on generated samples (Sec. 8.1) -----------------
TABLE3_COLUMNS = ("50K", "10M")
TABLE3_COLUMN_LABELS = {"50K": "Test Error @50K samples", "10M": "Test Error @10M samples"}
TABLE3_ROWS = ("AlignMNIST", "InfiMNIST", "Real Data", "GAN", "DCGAN (ours)")
TABLE3_GAN = "GAN"
TABLE3_DCGAN = "DCGAN (ours)"
TABLE3_REAL = "Real Data"
_T3 = {  # row: (@50K, @10M); None = '-' in the paper
    "AlignMNIST": (None, 1.4),
    "InfiMNIST": (None, 2.6),
    "Real Data": (3.1, None),
    "GAN": (6.28, 5.65),
    "DCGAN (ours)": (2.98, 1.48),
}
TABLE3: dict[tuple[str, str], Quoted] = {}
for _row, _vals in _T3.items():
    for _col, _v in zip(TABLE3_COLUMNS, _vals):
        if _v is not None:
            TABLE3[_row, _col] = Quoted(_v, "Table 3", _row, TABLE3_COLUMN_LABELS[_col])
TABLE3[TABLE3_REAL, "50K"] = Quoted(
    3.1, "Table 3", TABLE3_REAL, TABLE3_COLUMN_LABELS["50K"],
    note="1-NN fitted on real training images; printed in the @50K column without saying how many "
         "(a 1-NN on all 60,000 real training images gives 3.09 %, on 50,000 of them about 3.3 %)",
)

# --- Other numbers in the text and figure captions ------------------------------------------------------
LSUN_IMAGES = Quoted(3_000_000, "Sec. 4.1", "LSUN bedrooms", "images (a little over)", unit="images")
LSUN_DUPLICATES_REMOVED = Quoted(275_000, "Sec. 4.1.1", "LSUN dedup", "near duplicates removed (about)",
                                 unit="images")
LSUN_DEDUP_FALSE_POSITIVE_RATE = Quoted(0.01, "Sec. 4.1.1", "LSUN dedup",
                                        "estimated false-positive rate (under)", unit="fraction")
FACES_IMAGES = Quoted(3_000_000, "Sec. 4.2", "faces", "web images", unit="images")
FACES_PEOPLE = Quoted(10_000, "Sec. 4.2", "faces", "people", unit="people")
FACES_BOXES = Quoted(350_000, "Sec. 4.2", "faces", "face boxes (about)", unit="boxes")
FIG2_EPOCHS = 1  # Fig. 2: "after one training pass through the dataset"
FIG3_EPOCHS = 5  # Fig. 3: "after five epochs of training"
FIG4_POINTS = 9  # Fig. 4: "interpolation between a series of 9 random points in Z"
FIG5_FEATURES = 6  # Fig. 5: "the first 6 learned convolutional features from the last convolution layer"
FIG6_SAMPLES = 150  # Sec. 6.3.1: "On 150 samples, 52 window bounding boxes were drawn manually"
FIG6_BOXES = 52
FIG6_MAPS_DROPPED = 200  # Sec. 6.3.1: "all feature maps with weights greater than zero (200 in total)"
FIG7_EXEMPLARS = 3  # Sec. 6.3.2: "averaging the Z vector for three exemplars"
FIG7_NOISE = 0.25  # Fig. 7: "uniform noise sampled with scale +-0.25 was added to Y"
FIG7_NEIGHBOURS = 8  # Fig. 7: "to produce the 8 other samples"
FIG8_EXEMPLARS = 4  # Fig. 8: "four averaged samples of faces looking left vs looking right"
FIG9_CLASSES = 10  # Fig. 9 shows 10 classes x 20 samples per panel
FIG9_PER_CLASS = 20

# Paper figure numbers and what each shows (used in figure titles).
FIGURE_TITLES = {
    "fig02": "Fig. 2: generated bedrooms after one training pass",
    "fig03": "Fig. 3: generated bedrooms after five epochs",
    "fig04": "Fig. 4: interpolation between random points in Z",
    "fig05": "Fig. 5: guided backpropagation of D's last conv features",
    "fig06": "Fig. 6: samples with and without the 'window' feature maps",
    "fig07": "Fig. 7: vector arithmetic on face samples",
    "fig08": "Fig. 8: a 'turn' vector added to random faces",
    "fig09": "Fig. 9: MNIST real data / GAN baseline / DCGAN",
    "fig10": "Fig. 10: face generations",
    "fig11": "Fig. 11: ImageNet-1k generations",
}


def all_quoted() -> list[Quoted]:
    """Every table value above, in table order (what the docs/REFERENCE.md cross-check iterates)."""
    return [*TABLE1.values(), *TABLE2.values(), *TABLE3.values()]
