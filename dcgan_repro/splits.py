"""Dataset splits shared by training and evaluation: the authors' seed-42 shuffle.

MNIST (``mnist/load.py mnist_with_valid_set``): the 60k training images are shuffled with ``RandomState(42)`` and
the last 10k are the validation split. Training holds them out (``train.py``); Table 3's model selection scores
them (``mnist_eval.protocol``). A split is a fact about the data, so it lives here, below both.
"""

from __future__ import annotations

import numpy as np


def validation_split(n_train: int, validation_size: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)`` of the authors' split: shuffle with ``split_seed``, the last ``validation_size``
    images are validation (``mnist/load.py mnist_with_valid_set``: ``sklearn.utils.shuffle`` with
    ``RandomState(42)``, ``vaX = trX[50000:]``). Indices are into the original training order."""
    from sklearn.utils import shuffle

    if not 0 < validation_size < n_train:
        raise ValueError(f"config key 'mnist_eval.validation_size' ({validation_size}) must be between 1 and the "
                         f"number of training images minus one ({n_train - 1})")
    perm = shuffle(np.arange(n_train), random_state=split_seed)  # (n_train,) = RandomState(seed).permutation
    return perm[:n_train - validation_size], perm[n_train - validation_size:]
