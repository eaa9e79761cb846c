"""The data stage: every dataset of the paper in the common training format (docs/CONTRACTS.md, "Datasets").

Stage word ``data``: rules ``data_download`` and ``data_ingest`` (workflow/rules/data.smk, scripts
workflow/scripts/data_download.py and data_ingest.py), config section ``data``. One module per concern:

- :mod:`dcgan_repro.data.ingest`: the entry point :func:`~dcgan_repro.data.ingest.ingest` (rule ``data_ingest``),
  the dataset names and allowed sources, the build-beside-then-rename of each folder, the real sources (MNIST,
  CIFAR-10, SVHN via torchvision; the LSUN LMDB; an ImageNet folder; CelebA or a folder of web images for the
  face stage) and the streaming decode of image sources into memory-mapped .npy files.
- :mod:`dcgan_repro.data.fetch`: rule ``data_download``: fetch what is missing of a dataset the workflow
  downloads, verify every file, record it; with ``download=False`` the ingest's verification of local files.
- :mod:`dcgan_repro.data.supply`: what the user must supply or fetch by hand (ImageNet, missing folders, CelebA
  without gdown), found when the workflow is parsed, and the notice that says so.
- :mod:`dcgan_repro.data.demo`: the demo stand-ins (``source: demo``), real images shipped with scikit-learn
  and scikit-image, offline and deterministic from the seed.
- :mod:`dcgan_repro.data.download`: resumable HTTP downloads, md5 checks of the files torchvision datasets
  publish checksums for, the first-use sha256 ledger for LSUN, and the errors
  (:class:`~dcgan_repro.data.download.DataError` and its subclasses ``DownloadError``, ``ChecksumError``).

Image decoding and resizing are :mod:`dcgan_repro.images` (shared with the face stage). Nothing is re-exported
here: import the submodule that owns a name (``from dcgan_repro.data import ingest``), so that a test patching a
module attribute (``ingest.LSUN_URL``, ``download.md5_ok``) patches the place where it is looked up.
"""
