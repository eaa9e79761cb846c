"""``python -m dcgan_repro.figures make-box-template | exemplar-pool`` (see :mod:`dcgan_repro.figures.cli`)."""

from dcgan_repro.figures.cli import main

raise SystemExit(main())
