# dcgan-repro: regenerates every table and figure of Radford, Metz & Chintala (2015).
#   snakemake --cores 8 --use-conda                                  (paper scale, config.yaml)
#   snakemake --cores 2 --configfile presets/demo.yaml               (offline demo on real stand-in images)
# This file only wires: config, validation, includes, the final targets.
import os
import sys

sys.path.insert(0, workflow.basedir)
from dcgan_repro.config import validate_config


configfile: os.path.join(workflow.basedir, "config.yaml")


validate_config(config)


# snakemake --report report.html: every figure and table with a caption (workflow/report/*.rst).
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/dedup.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/svm.smk"
include: "workflow/rules/mnist_eval.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/ablation.smk"


# Every table and figure, less those needing data you must still supply (announced when the workflow is parsed).
rule all:
    input:
        final_targets(),


onsuccess:
    remind_missing()


onerror:
    remind_missing()
