"""The figures stage: Figures 2-11 of Radford, Metz & Chintala (2015), sample sheets and the Sec. 6 visualisations.

Rules in ``workflow/rules/figures.smk`` (each a thin ``workflow/scripts/<rule>.py``), settings in the config
section ``figures``, outputs in ``results/figures/`` (PNG + PDF each). One function per rule, named as the rule
without its stage word (rule ``figures_fig04_interpolation`` -> :func:`.interpolation.fig04_interpolation`), plus the
pieces it is made of, each usable and tested on its own::

    module              paper figure                            function (rule: figures_<function>)
    sample_sheets.py    Figs. 2, 3, 10, 11                      sample_sheet
                        the authors' SVHN samples (no number)   authors_svhn_samples
    interpolation.py    Fig. 4                                  fig04_interpolation
    guided_backprop.py  Fig. 5                                  fig05_guided_backprop
    window_dropout.py   Fig. 6, its box file and stats JSON     fig06_window_dropout
    arithmetic.py       Figs. 7, 8 and their measured effects   fig07_vector_arithmetic, fig08_turn_vector
    measures.py         smile, glasses, pose scores (Figs. 7, 8) - (validated on real faces: validate-measures)
    mnist.py            Fig. 9                                  fig09_mnist_samples
    layout.py           the page layout of every figure         - (grids, panels, title, footer, PNG + PDF)
    runs.py             the model of every figure               - (final or snapshot; G beside a reference batch)
    cli.py              Fig. 6 boxes, Figs. 7, 8 exemplars by   - (python -m dcgan_repro.figures make-box-template
                        hand, the measures on real faces           | exemplar-pool | validate-measures)

Figures are deterministic from ``figures.seed``. What the paper does not specify (docs/REFERENCE.md Sec. 6: no code
exists for Figs. 5-8) is chosen here and documented at each function: guided backpropagation (Springenberg et al.
2014) from the maximal spatial response of each of the first 6 channels of D's last conv layer; the window
classifier's features and negatives; the measures Figs. 7 and 8 check their claims with and the automatic (proxy)
exemplar choice they allow besides exemplars picked by hand.

Layers: this package is on top. It reads result files and models through ``io``, ``models`` and ``runtime``,
uses ``features`` (D's fixed batch-norm statistics, Fig. 5); nothing in the library imports it. The authors' SVHN G
is loaded by ``theano_weights`` in the rule script and handed to :func:`.sample_sheets.authors_svhn_samples`.
"""
