"""dcgan_repro: the library behind the dcgan-repro Snakemake workflow.

Modules: io (formats, provenance), config (validation), runtime (logging, seeds, devices), data (ingest),
models, train, dedup, faces, features, svm, nn_eval, plots, tables, paper (the paper's reported numbers).
"""

__version__ = "0.1.0"
