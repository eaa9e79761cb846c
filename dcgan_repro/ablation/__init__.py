"""The ablation study: the paper's architecture guidelines and training settings (Sec. 3, 4) undone one at a time.

The paper credits its guidelines with stable training but shows no run without them. Here every variant of a
chosen run (config ``ablation``) trains for several seeds and is scored; docs/ABLATIONS.md defines the measures.

- :mod:`.plan`: the variant x seed runs a config asks for (names, run settings, what each changes), checked at parse
  time;
- :mod:`.training`: rule ``ablation_train``: ``train.train_gan`` on one variant run; a run that the training health
  checks stop (diverged or collapsed) is an outcome, recorded, not an error;
- :mod:`.stability`: collapse / divergence and the oscillation of D(G(z)) and the losses (from ``stats.jsonl``);
- :mod:`.frechet`: the MNIST classifier the workflow trains, and the Frechet distance in its feature space;
- :mod:`.fid`: FID through torch-fidelity for the 64x64 runs (Inception weights fetched and checksum-verified);
- :mod:`.score`: rule ``ablation_score``: the metrics of one run;
- :mod:`.stats`: mean, std and the difference from the baseline with a Welch t-interval over seeds;
- :mod:`.table`, :mod:`.figure`: ``table4_ablations`` and ``fig_ablations``.

Variant switches themselves live with the nets, in :mod:`dcgan_repro.model_variants`.
"""
