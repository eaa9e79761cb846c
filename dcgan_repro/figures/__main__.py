"""``python -m dcgan_repro.figures make-box-template | exemplar-pool | validate-measures`` (see
:mod:`dcgan_repro.figures.cli`)."""

from dcgan_repro.figures.cli import main

raise SystemExit(main())
