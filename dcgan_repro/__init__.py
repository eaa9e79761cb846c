"""dcgan_repro: the library behind the dcgan-repro Snakemake workflow.

Bottom layer: io (formats, atomic writes, provenance), config (validation), runtime (logging, seeds, devices),
images (decoding), splits (dataset splits). Data: data/ (download, ingest, demo stand-ins). Nets: models,
theano_weights (the authors' released weights), released (their files verified). Stages: dedup, faces, train,
features, kmeans, svm/ (registry, solvers, dual_cd, protocols, supervised_cnn), mnist_eval/ (search, sampler,
protocol). On top: figures/, tables, paper (the paper's reported numbers). Map and rule graph: docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"
