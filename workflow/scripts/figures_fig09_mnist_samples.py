"""Rule figures_fig09_mnist_samples: Fig. 9, real MNIST / GAN baseline / DCGAN, 10 classes x 20 samples each."""
from dcgan_repro import runtime
from dcgan_repro.figures import mnist
from dcgan_repro.mnist_eval import protocol

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
mnist.fig09_mnist_samples(
    protocol.selected_model(snakemake.input.dcgan_selection),  # noqa: F821 (the epoch Table 3 reports)
    protocol.selected_model(snakemake.input.gan_selection),  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    figures=snakemake.params.figures,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
