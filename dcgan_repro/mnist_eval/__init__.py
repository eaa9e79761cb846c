"""MNIST nearest-neighbour evaluation of class-conditional generators (Sec. 5.3, Table 3): the ``mnist_eval`` stage.

Config section ``mnist_eval``; rules in ``workflow/rules/mnist_eval.smk``. One concern per module:

- ``search.py``: exact streamed 1-NN search (int8 / fp32 / bf16 candidate pass, float64 re-check, search choice
  ``auto``); generic, knows nothing of MNIST or GANs. Used by ``protocol`` and ``benchmarks/bench_nn_eval.py``.
- ``sampler.py``: fast class-conditional sampling of the MNIST DCGAN (``CondDCGANSampler``, ``iter_generate``):
  ``models.CondDCGANGenerator``'s forward rearranged, the same samples up to float rounding. Depends on
  ``models``, never the other way round.
- ``protocol.py``: the Table 3 protocol and the rule entry points: ``select_epoch`` (rule ``mnist_eval_select_epoch``,
  epoch selection on the validation split), ``evaluate_generated`` (rule ``mnist_eval_generated``, 1-NN on generated
  samples @50K / @10M), ``evaluate_real`` (rule ``mnist_eval_real``, the Real Data row), ``selected_model`` (rule
  ``figures_fig09_mnist_samples``).

The validation split itself is a data fact shared with training: ``dcgan_repro.splits``.
"""
