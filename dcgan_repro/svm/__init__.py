"""The L2-SVM stage (Sec. 5.1, 5.2; Tables 1 and 2): rules/svm.smk, config ``svm``, results/svm/.

One concern per module; import a name from the module that owns it (``from dcgan_repro.svm import solvers``):

* :mod:`~dcgan_repro.svm.solvers`: the one-vs-rest L2-SVM (LinearSVC's objective) and its solvers: Newton-CG in
  torch, LinearSVC itself, and the dual solver below; ``fit_l2svm``, ``resolve_solver``, ``l2svm_objective``,
  ``predict``. Used by the protocols and benchmarks/bench_svm.py.
* :mod:`~dcgan_repro.svm.dual_cd`: the dual coordinate-descent solver (``svm.solver: dual_cd``) that ``fit_l2svm``
  dispatches to: ``GRAM_MAX_BYTES`` (the largest Gram matrix ``auto`` builds), ``gram_matrix``, ``fit_dual_cd``.
* :mod:`~dcgan_repro.svm.registry`: the one registry ``PROTOCOLS`` of the Table 1/2 protocols and what each reads
  (dataset, D run or K-means, feature folder, labels per class); standard library only, since workflow/rules/
  common.smk imports it on every parse to build the ``svm_fit`` and ``features_extract`` inputs.
* :mod:`~dcgan_repro.svm.protocols`: the protocols on feature files (``PROTOCOLS`` re-exported): train/validation
  split, label draws, C grid, streamed scoring (``error_pct``). Rule ``svm_fit`` (workflow/scripts/svm_fit.py)
  calls ``protocols.fit``.
* :mod:`~dcgan_repro.svm.supervised_cnn`: Table 2's supervised CNN baseline on the protocols' split and label
  draw. Rule ``svm_supervised_cnn`` (workflow/scripts/svm_supervised_cnn.py) calls
  ``supervised_cnn.train``.

Imports go one way: protocols and supervised_cnn use solvers (protocols also dual_cd's Gram matrix and the registry,
supervised_cnn the protocols' split); solvers uses dual_cd; dual_cd and registry use none of them.
"""
