# The one place that reads config and builds target lists and paths.
import os
import sys
from pathlib import Path

from snakemake_interface_executor_plugins.settings import DeploymentMethod

from dcgan_repro import sizing
from dcgan_repro.config import CHECK_FILES, DATA_CONFIG_KEY, INGESTED_DATASETS
from dcgan_repro.data import supply
from dcgan_repro.svm import registry

# Rule scripts import the dcgan_repro library from the repository root (local, --use-conda and SLURM jobs).
# (Sets a variable for the jobs; reads none, so no envvars: directive is needed.)
os.environ.update(
    PYTHONPATH=os.pathsep.join(p for p in [workflow.basedir, os.getenv("PYTHONPATH")] if p),
    # Jobs share cores (--cores N, several jobs at once): OpenMP threads that spin while waiting made small torch
    # jobs ~10x slower when they overlapped (measured on 2 cores). A value set by the user wins.
    OMP_WAIT_POLICY=os.getenv("OMP_WAIT_POLICY") or "PASSIVE",
)

DATA = config["data"]["root"]
RUNS = list(config["runs"])
# SVM protocols (Sec. 5.1, 5.2; Tables 1, 2) and what each reads: the registry dcgan_repro.svm.registry.PROTOCOLS;
# those this config runs (features.discriminator: trained, released or both D per dataset).
SVM_PROTOCOLS = {name: registry.PROTOCOLS[name] for name in registry.active_protocols(config)}
# Labelled dataset -> the run whose D describes it (trained: runs.<run>; released: weights.<run>).
FEATURE_RUNS = registry.FEATURE_RUNS
# Table 1's measured baseline: K-means features (rule features_kmeans) in results/features/<this>/.
KMEANS_FEATURES = f"cifar10_{registry.KMEANS}"
MNIST_MODELS = ["mnist_dcgan", "mnist_gan"]
# Table 3 columns computed; a count of 0 leaves that column to the paper's quoted value (e.g. @10M on a CPU).
MNIST_COUNTS = [k for k, n in config["mnist_eval"]["sample_counts"].items() if n]
# Figures 2, 3, 10, 11: sample sheets (run, epoch or None for the final generator).
SAMPLE_SHEETS = {
    "fig02_lsun_epoch1": ("lsun", 1),
    "fig03_lsun_epoch5": ("lsun", config["runs"]["lsun"]["snapshot_epochs"][-1]),
    "fig10_faces": ("faces", None),
    "fig11_imagenet": ("imagenet32", None),
}
FIGURES = [
    *SAMPLE_SHEETS,
    "fig04_interpolation",
    "fig05_guided_backprop",
    "fig06_window_dropout",
    "fig07_vector_arithmetic",
    "fig08_turn_vector",
    "fig09_mnist_samples",
]
# The curation checks (config checks) run when their files are set; their table joins the others.
CHECKS = {name: f"results/{name}/check.json" for name, key in CHECK_FILES if config["checks"][name][key]}
TABLES = ["table1_cifar10", "table2_svhn", "table3_mnist"] + (["curation_checks"] if CHECKS else [])


wildcard_constraints:
    run="|".join(RUNS),
    shard=r"\d+",
    split="train|test",
    protocol="|".join(SVM_PROTOCOLS),
    size="|".join(MNIST_COUNTS),
    sheet="|".join(SAMPLE_SHEETS),


def common_params():
    """Settings every torch-using script needs."""
    return {"preset": config["preset"], "device": config["device"], "precision": config["precision"]}


def dataset_dir(name):
    """Folder of an ingested dataset in the common .npy format."""
    return f"{DATA}/{name}"


def ingest_cfg(dataset):
    """config.yaml data.<name> section of an ingested dataset (lsun_raw -> lsun, faces_raw -> faces)."""
    return config["data"][DATA_CONFIG_KEY[dataset]]


def train_dataset_dir(run):
    """The dataset a training run reads: LSUN after dedup (Sec. 4.1.1) unless dedup is disabled."""
    ds = config["runs"][run]["dataset"]
    if ds == "lsun":
        return dataset_dir("lsun" if config["dedup"]["enabled"] else "lsun_raw")
    return dataset_dir(ds)


def mnist_holdout(run):
    """MNIST runs train on the 50k split; the 10k validation split (Table 3 model selection) stays unseen."""
    if config["runs"][run]["dataset"] != "mnist":
        return None
    ev = config["mnist_eval"]
    return {"validation_size": ev["validation_size"], "split_seed": ev["split_seed"]}


def model_path(run):
    return f"results/models/{run}/model.pt"


def shard_ids(stage):
    return [f"{i:04d}" for i in range(config[stage]["shards"])]


def all_tables():
    exts = ("csv", "md", "tex", "html")  # tex, html: rule tables_views
    return [f"results/tables/{t}.{ext}" for t in TABLES for ext in exts] + ["results/tables/README.md"]


def svm_features(protocol):
    """The feature folder (results/features/<dataset>_<kind>) an SVM protocol reads."""
    return f"results/features/{SVM_PROTOCOLS[protocol].features_dir}"


def svm_inputs(w):
    """Rule svm_fit's inputs: the feature files, the dataset and (not for K-means) what the features came from."""
    p = SVM_PROTOCOLS[w.protocol]
    feats = svm_features(w.protocol)
    about = {} if p.features == registry.KMEANS else {"about": f"{feats}/train.json"}
    return {"train": f"{feats}/train.npy", "test": f"{feats}/test.npy", "data": dataset_dir(p.dataset), **about}


def svm_feature_model(protocol):
    """Config of the trained run whose D gives the protocol's features (their length is checked); else None."""
    p = SVM_PROTOCOLS[protocol]
    return config["runs"][p.features_run] if p.features == registry.TRAINED else None


def extraction_settings():
    """Config features without the choice of D per dataset (changing that choice must not redo other features)."""
    return {k: v for k, v in config["features"].items() if k not in ("discriminator", "trained_epoch")}


def feature_inputs(w):
    """Rule features_extract's inputs: the dataset, and for a trained D the run's model file."""
    model = {"model": model_path(FEATURE_RUNS[w.dataset])} if w.source == registry.TRAINED else {}
    return {"data": dataset_dir(w.dataset), **model}


def released_d(dataset):
    """The authors' released D behind ``dataset``'s features (config weights.<run>): where, and whether a copy that
    lacks files may be used."""
    run = FEATURE_RUNS[dataset]
    return {
        "path": config["weights"][run],
        "run": run,
        "key": f"weights.{run}",
        "allow_partial": run in config["weights"]["allow_partial"],
    }


def table_svm_results(dataset):
    """A table rule's SVM results: {protocol name: result file} of every protocol config runs on ``dataset``."""
    return {name: f"results/svm/{name}.json" for name, p in SVM_PROTOCOLS.items() if p.dataset == dataset}


def all_figures():
    figs = [f"results/figures/{f}.{ext}" for f in FIGURES for ext in ("png", "pdf")]
    if config["weights"]["svhn"]:  # the authors' released SVHN generator, when its folder is configured
        figs += [f"results/figures/authors_svhn_samples.{ext}" for ext in ("png", "pdf")]
    return figs


def curation_check_results(w):
    """Rule tables_curation_checks' inputs: {check name: result file} of the checks config runs."""
    return CHECKS


# --- downloads, and the data a user must supply -----------------------------------------------------------------
# Datasets rule data_download fetches (config data.<name>.source), and those the user must supply but has not
# (ImageNet, a missing user folder, CelebA without gdown): announced below, their targets left out of rule all.
DOWNLOADS = [name for name, source in supply.FETCHED_SOURCES.items() if config["data"][name]["source"] == source]
CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method  # --use-conda: envs pin gdown
MISSING = {s.dataset: s for s in supply.missing_supplies(config, can_fetch_celeba=CONDA or supply.gdown_installed())}


def download_record(name):
    """Rule data_download's output: what it fetched and verified for config data.<name>."""
    return f"{DATA}/checksums/download_{name}.json"


def ingest_inputs(w):
    """Rule data_ingest's inputs: the download record of a dataset the workflow fetches (ingest then reads only
    local files). A dataset the user must still supply stops the DAG here, naming what to set and place."""
    name = DATA_CONFIG_KEY[w.dataset]
    if name in MISSING:
        raise ValueError(supply.notice([MISSING[name]], {}))
    return {"fetched": download_record(name)} if name in DOWNLOADS else {}


def ingest_threads(w):
    """Rule data_ingest's threads: 8 where it decodes many images (LSUN, ImageNet, a folder of faces), else 1
    (MNIST, CIFAR-10 and SVHN come as arrays, CelebA is linked, the demo stand-ins are small)."""
    cfg = ingest_cfg(w.dataset)
    decodes = w.dataset in ("lsun_raw", "imagenet") or (w.dataset == "faces_raw" and cfg["source"] == "folder")
    return 8 if decodes and cfg["source"] != "demo" else 1


def target_datasets():
    """Each target of rule all -> the config data.<name> sections it is built from (tests/test_paper_scale.py checks
    this against the DAG): what a missing supply takes out of rule all."""
    runs = config["runs"]
    run_data = lambda run: {runs[run]["dataset"]}  # noqa: E731 (lsun: dedup reads lsun_raw, also data.lsun)
    mnist = {"mnist"}.union(*map(run_data, MNIST_MODELS))

    def svm(ds):
        trained = [
            run_data(p.features_run)
            for p in SVM_PROTOCOLS.values()
            if p.dataset == ds and p.features == registry.TRAINED
        ]
        return {ds}.union(*trained)

    tables = {"table1_cifar10": svm("cifar10"), "table2_svhn": svm("svhn"), "table3_mnist": mnist}
    tables["curation_checks"] = set()  # reads only the files of config checks, no dataset
    figures = {sheet: run_data(run) for sheet, (run, _) in SAMPLE_SHEETS.items()}
    figures.update(
        fig04_interpolation=run_data(config["figures"]["interp_run"]),
        fig05_guided_backprop=run_data(config["figures"]["guided_run"]),
        fig06_window_dropout=run_data(config["figures"]["window_run"]),
        fig07_vector_arithmetic=run_data("faces"),
        fig08_turn_vector=run_data("faces"),
        fig09_mnist_samples=mnist,
    )
    everything = set().union(*tables.values(), *figures.values())  # a table not listed here: assume the worst
    per_table = {t: tables.get(t, everything) for t in TABLES}
    out = {t: per_table.get(Path(t).stem, set().union(*per_table.values())) for t in all_tables()}  # README: all
    out.update({f: figures.get(Path(f).stem, set()) for f in all_figures()})  # authors_svhn_samples: weights only
    return out


def dropped_targets():
    """Missing dataset -> the targets of rule all that need it."""
    dropped = {}
    for target, datasets in target_datasets().items():
        for name in sorted(datasets & MISSING.keys()):
            dropped.setdefault(name, []).append(target)
    return dropped


def final_targets():
    """Rule all: every table and figure, less those that need data the user must still supply (announced); under
    the record preset, the record's (record_targets)."""
    if IN_RECORD:
        return record_targets()
    return [t for t, datasets in target_datasets().items() if not datasets & MISSING.keys()]


def features_mem_mb(w, input):
    """svm_fit: 6 GB plus the feature matrices it streams from memory maps (16 GB before they exist)."""
    have = sizing.files_mb([input.train, input.test])
    return sizing.request_mb(6000, have) if have is not None else 16000


def crops_mem_mb(w, input):
    """faces_gather: 4 GB plus every crop twice (the shards, and their concatenation)."""
    have = sizing.files_mb(input.crops)
    return sizing.request_mb(4000, 2 * (have if have is not None else sizing.expected_train_mb(config, "faces")))


def remind_missing():
    """One line after a run (onsuccess, onerror): what rule all left out, and why."""
    if MISSING and not IN_RECORD:
        print(
            f"dcgan-repro: {sum(map(len, dropped_targets().values()))} targets were left out of rule all until you "
            f"supply {', '.join(s.key for s in MISSING.values())} (the notice at the start says what to place where; "
            "docs/PAPER_SCALE.md)",
            file=sys.stderr,
        )


# --- the reproduction record (presets/record.yaml), committed under record/ --------------------------------------
# The record holds what the real data of a 2-core CPU machine allows: the targets of rule all that read only the
# datasets below (target_datasets), so later tables and figures join it by themselves. Those needing LSUN, ImageNet,
# SVHN or CelebA are left out (never downloaded) and said so. Only the record preset writes into record/, and it
# writes nowhere else, so the demo, the tests and other presets never touch the committed record.
RECORD_PRESET = "record"
RECORD_DIR = Path(workflow.basedir, "record").resolve()
RECORD_DATASETS = {"mnist", "cifar10", "faces"}  # config data.<name>: MNIST, the CIFAR-10 subset, face crops
IN_RECORD = config["preset"] == RECORD_PRESET


def check_record_folder():
    """Refuse, before any job: the record preset outside record/, or another preset in (or under) record/."""
    here = Path.cwd().resolve()
    command = (
        f"cd {workflow.basedir} && snakemake --cores 2 --directory record --configfile presets/record.yaml "
        "my_paths.yaml"
    )
    if IN_RECORD and here != RECORD_DIR:
        raise ValueError(
            f"preset '{RECORD_PRESET}' writes the committed reproduction record and runs only in {RECORD_DIR}, not "
            f"in {here}: {command}"
        )
    if not IN_RECORD and (here == RECORD_DIR or RECORD_DIR in here.parents):
        raise ValueError(
            f"{RECORD_DIR} holds the committed reproduction record, written only by presets/record.yaml ({command}); "
            f"preset '{config['preset']}' must not write there: run it elsewhere (--directory <another folder>)"
        )


check_record_folder()


def record_targets():
    """The record: the targets of rule all that read only RECORD_DATASETS (or no dataset) and no missing supply."""
    return [t for t, ds in target_datasets().items() if ds <= RECORD_DATASETS and not ds & MISSING.keys()]


def record_left_out():
    """Targets of rule all the record leaves out -> the datasets they need that it does not read."""
    return {t: sorted(ds - RECORD_DATASETS) for t, ds in target_datasets().items() if not ds <= RECORD_DATASETS}


RECORD_LEFT_OUT = record_left_out() if IN_RECORD else {}
if IN_RECORD:  # the tables index and views cover the record's tables only (the index then joins the record)
    TABLES = [t for t in TABLES if not target_datasets()[f"results/tables/{t}.csv"] - RECORD_DATASETS]
    RECORD_LEFT_OUT = {t: ds for t, ds in RECORD_LEFT_OUT.items() if t not in record_targets()}


# Said once, by the snakemake process the user started (not again inside each cluster job), also under -n.
if workflow.is_main_process:
    if IN_RECORD:
        needs = sorted(set().union(*map(set, RECORD_LEFT_OUT.values())))
        print(
            f"dcgan-repro: the record leaves out {len(RECORD_LEFT_OUT)} targets that need {', '.join(needs)} (data "
            "the record's machine does not have; docs/RESULTS.md lists them)",
            file=sys.stderr,
        )
    elif MISSING:
        print(supply.notice(list(MISSING.values()), dropped_targets()), file=sys.stderr)
    # A local run (no cluster jobs) starts every gpu=1 job at once unless told how many GPUs there are.
    if config["device"] != "cpu" and "gpu" not in workflow.global_resources and not workflow.nodes:
        print(
            "dcgan-repro: no GPU limit given: add --resources gpu=N (N = the number of GPUs, nvidia-smi -L | wc -l) "
            "or use --workflow-profile profiles/local, or every GPU job starts at once",
            file=sys.stderr,
        )


# --- ablation study (workflow/rules/ablation.smk, docs/ABLATIONS.md) ---------------------------------------------
# Variant x seed runs of config ablation, checked here so that `snakemake -n` names a bad setting: a baseline that
# changes something, a variant that changes nothing, a switch that does not apply to the base run's model. A
# runs.<name>.variant switch that does not apply to its model is refused likewise.
from dcgan_repro import variant_switches
from dcgan_repro.ablation import plan as ablation_plan

for _name, _run in config["runs"].items():
    variant_switches.check_variant(_run, f"runs.{_name}.variant")
ABLATION = config["ablation"]
ABLATION_BASE = ABLATION["run"]
ABLATION_RUNS = {(r.variant, str(r.seed)): r for r in ablation_plan.check_plan(config)}
ABLATION_KIND = ablation_plan.kind_of(config["runs"][ABLATION_BASE])  # mnist (1-NN, Frechet) | fid


def ablation_run(w):
    """The ablation.AblationRun of a {variant}, {seed} job."""
    return ABLATION_RUNS[w.variant, w.seed]


def ablation_scores():
    return [f"results/ablation/{v}/s{s}/score.json" for v, s in ABLATION_RUNS]


def ablation_score_inputs(w):
    """Rule ablation_score's inputs: the run's outcome, its data, and the MNIST classifier or the FID weights."""
    extra = (
        {"classifier": "results/ablation/classifier/model.pt", "classifier_json": "results/ablation/classifier.json"}
        if ABLATION_KIND == "mnist"
        else {"fid_weights": ABLATION["fid"]["weights"]}
    )
    return {"train": f"results/ablation/{w.variant}/s{w.seed}/train.json", "data": ablation_data(), **extra}


def ablation_data():
    """The dataset the ablation's runs are scored on (MNIST: with its test split, Table 3's protocol)."""
    return dataset_dir("mnist") if ABLATION_KIND == "mnist" else train_dataset_dir(ABLATION_BASE)
