"""Command line of the figures stage: draw the samples to choose Fig. 6 window boxes and Figs. 7, 8 exemplars on, and
check the Figs. 7, 8 measures on real faces.

``python -m dcgan_repro.figures make-box-template`` runs :func:`.window_dropout.make_box_template`,
``python -m dcgan_repro.figures exemplar-pool`` runs :func:`.arithmetic.exemplar_pool_sheet` and
``python -m dcgan_repro.figures validate-measures`` runs :func:`.measures.validate` (:func:`main`).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

from dcgan_repro import paper, runtime
from dcgan_repro.figures import measures
from dcgan_repro.figures.arithmetic import exemplar_pool_sheet
from dcgan_repro.figures.window_dropout import make_box_template

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcgan_repro.figures make-box-template --model M --out DIR [--n 150] [--z-seed 0]`` (Fig. 6),
    ``python -m dcgan_repro.figures exemplar-pool --model M --out pool.png`` (Figs. 7, 8 exemplar ids) and
    ``python -m dcgan_repro.figures validate-measures --faces DIR`` (the Figs. 7, 8 measures on real faces)."""
    p = argparse.ArgumentParser(prog="python -m dcgan_repro.figures", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("make-box-template", help="Fig. 6: sample sheet with indices + empty box file")
    t.add_argument("--model", required=True, help="results/models/<run>/model.pt (the figures.window_run run)")
    t.add_argument("--out", required=True, help="folder for window_boxes.json, the sheet and samples/")
    t.add_argument("--n", type=int, default=paper.FIG6_SAMPLES, help="samples to draw (paper: 150)")
    t.add_argument("--z-seed", type=int, default=0, help="seed of the samples' z")
    t.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    e = sub.add_parser("exemplar-pool", help="Figs. 7, 8: the exemplar pool with indices, for figures.exemplar_ids "
                                             "and figures.turn_ids")
    e.add_argument("--model", required=True, help="results/models/<run>/model.pt (the faces run)")
    e.add_argument("--out", required=True, help="PNG to write")
    e.add_argument("--seed", type=int, default=0, help="figures.seed (must match the config)")
    e.add_argument("--bn-reference", type=int, default=512, help="figures.bn_reference (must match)")
    e.add_argument("--pool", type=int, default=1000, help="figures.exemplar_pool (must match)")
    e.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    v = sub.add_parser("validate-measures", help="Figs. 7, 8: the smile, glasses and pose measures on labelled real "
                                                 "faces (prints the numbers the measures' docstring quotes)")
    v.add_argument("--faces", required=True, help="folder the labels' image paths are relative to (the LFW crops, "
                                                  "e.g. the extracted lfw_crops90_jpg.tar)")
    v.add_argument("--labels", default=str(measures.LABELS_FILE), help="labels CSV (default: the committed one)")
    a = p.parse_args(argv)
    runtime.setup_logging(None)
    if a.cmd == "exemplar-pool":
        exemplar_pool_sheet(a.model, a.out, device=a.device, figures={
            "seed": a.seed, "bn_reference": a.bn_reference, "exemplar_pool": a.pool})
        log.info("pick 'figures.exemplar_ids: {smile: {A: [...], B: [...], C: [...]}, glasses: {...}}' and "
                 "'figures.turn_ids: {left: [...], right: [...]}' from the indices in %s", a.out)
        return 0
    if a.cmd == "validate-measures":
        log.info("%s", json.dumps(measures.validate(a.faces, a.labels), indent=1))
        return 0
    path = make_box_template(a.model, a.out, n=a.n, z_seed=a.z_seed, device=a.device)
    log.info("draw boxes into %s, then set figures.window_boxes: %s", path, path)
    return 0
