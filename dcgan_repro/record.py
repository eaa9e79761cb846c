"""The reproduction record (``presets/record.yaml``, committed under ``record/``): checks and the README headline.

The record is a Snakemake working folder like any other (``record/results``, ``record/resources``, ...) whose small
files are committed: the tables, the figures as PNG and the result JSONs the tables are built from. This module
reads it back, without Snakemake:

- :func:`rebuild_tables` rebuilds every committed table from the result files named in its ``source`` column, by the
  functions the table rules call (:mod:`dcgan_repro.tables`), so a hand-edited number shows as a difference;
- :func:`provenance_problems` checks that a result names the record preset, a code version and its inputs' checksums;
- :func:`headline` renders the paper-vs-ours table the README shows between :data:`BEGIN` and :data:`END`.

``python -m dcgan_repro.record readme`` rewrites that README block; ``python -m dcgan_repro.record check`` runs
every check (``tests/test_record.py`` runs the same ones).
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import re
import subprocess
import sys
import tempfile
from pathlib import Path
import pandas as pd

from dcgan_repro import io, tables

REPO = Path(__file__).resolve().parents[1]
RECORD_DIR = REPO / "record"
RECORD_PRESET = "record"  # the label presets/record.yaml gives every result (workflow/rules/common.smk)
TABLES_DIR = Path("results/tables")
FIGURES_DIR = Path("results/figures")
# The README block this module owns.
BEGIN = "<!-- record-headline: generated from record/results by `python -m dcgan_repro.record readme` -->"
END = "<!-- /record-headline -->"
# Table -> the dataset folder (under the record's resources/data) whose meta.json the table rule reads.
TABLE_DATA = {"table1_cifar10": "cifar10", "table2_svhn": "svhn", "table3_mnist": "mnist"}
SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")


class RecordError(ValueError):
    """The record is inconsistent: a table without its inputs, a result without provenance, ..."""


# --- reading the record ----------------------------------------------------------------------------------------

def table_names(record: Path = RECORD_DIR) -> list[str]:
    """Tables present in the record (a CSV in results/tables), in the order of :data:`tables.TITLES`."""
    return [name for name in tables.TITLES if (record / TABLES_DIR / f"{name}.csv").is_file()]


def table_sources(record: Path, name: str) -> list[str]:
    """The result files (relative to the record folder) behind the measured rows of one table."""
    df = pd.read_csv(record / TABLES_DIR / f"{name}.csv")
    return sorted(set(df.loc[df["kind"] == "measured", "source"].dropna()))


def _classify(record: Path, sources: list[str]) -> dict[str, list[str]]:
    """Split a table's sources into the roles its build function takes, by what each file holds."""
    roles: dict[str, list[str]] = {}
    for s in sources:
        path = record / s
        if not path.is_file():
            raise RecordError(f"{record / TABLES_DIR} holds a table built from {s}, which is not in the record: "
                              "commit it, or rebuild the table")
        rec = io.read_json(path)
        role = ("real" if "rows" in rec else "cnn" if "trials" in rec and "features" not in rec
                else rec.get("check") or "results")
        roles.setdefault(role, []).append(s)
    return roles


def _one(roles: dict[str, list[str]], role: str, name: str) -> str | None:
    found = roles.get(role, [])
    if len(found) > 1:
        raise RecordError(f"table {name} names {len(found)} '{role}' result files: {found}")
    return found[0] if found else None


def rebuild_table(record: Path, name: str, out: Path) -> list[Path]:
    """Rebuild table ``name`` (csv, md, and tex / html from that CSV) into ``out`` from the record's result files,
    as its rule does; returns the rebuilt files. The build runs inside the record folder, as the rule did, so the
    ``source`` column reads the same."""
    roles = _classify(record, table_sources(record, name))
    data = TABLE_DATA.get(name)
    out = out.resolve()
    csv, md = out / f"{name}.csv", out / f"{name}.md"
    with contextlib.chdir(record):
        data_dir = f"resources/data/{data}" if data and Path(f"resources/data/{data}/meta.json").is_file() else None
        if name == "table1_cifar10":
            tables.build_table1(roles.get("results", []), data_dir, csv, md, preset=RECORD_PRESET)
        elif name == "table2_svhn":
            tables.build_table2(roles.get("results", []), _one(roles, "cnn", name), data_dir, csv, md,
                                preset=RECORD_PRESET)
        elif name == "table3_mnist":
            tables.build_table3(roles.get("results", []), _one(roles, "real", name), data_dir, csv, md,
                                preset=RECORD_PRESET)
        elif name == "curation_checks":
            tables.build_curation_checks(_one(roles, "dedup", name), _one(roles, "faces", name), csv, md,
                                         preset=RECORD_PRESET)
        else:
            raise RecordError(f"no rebuild known for table {name}")
    # the views come from the committed CSV, as rule tables_views builds them
    tex, html = out / f"{name}.tex", out / f"{name}.html"
    tables.write_views(record / TABLES_DIR / f"{name}.csv", tex, html, name=name, preset=RECORD_PRESET)
    return [csv, md, tex, html]


def index_tables(record: Path) -> list[str]:
    """The tables the record's index (results/tables/README.md) covers, in its order."""
    text = (record / TABLES_DIR / "README.md").read_text()
    return re.findall(r"^Files: `(\w+)\.csv`", text, flags=re.M)


def rebuild_tables(record: Path, out: Path) -> list[tuple[Path, Path]]:
    """Every committed table rebuilt into ``out``: (committed file, rebuilt file) pairs that must be identical.
    A file of a table that exists alone (e.g. a .md without its .csv) is an error."""
    present = {p.name.split(".")[0] for p in (record / TABLES_DIR).glob("*.*") if p.name != "README.md"}
    unknown = sorted(present - set(tables.TITLES))
    if unknown:
        raise RecordError(f"{record / TABLES_DIR} holds tables {unknown} that no rebuild is known for: add theirs to "
                          "dcgan_repro.record.rebuild_table (a new table joins the record's check that way)")
    pairs = []
    for name in tables.TITLES:
        present = sorted(p.name for p in (record / TABLES_DIR).glob(f"{name}.*"))
        if not present:
            continue
        if f"{name}.csv" not in present:
            raise RecordError(f"{record / TABLES_DIR} holds {present} but not {name}.csv, the file they come from")
        for rebuilt in rebuild_table(record, name, out):
            committed = record / TABLES_DIR / rebuilt.name
            if committed.exists():
                pairs.append((committed, rebuilt))
    if (record / TABLES_DIR / "README.md").is_file():
        names = index_tables(record)
        missing = [n for n in names if not (record / TABLES_DIR / f"{n}.csv").is_file()]
        if missing:
            raise RecordError(f"the record's tables index covers {missing}, which are not in the record")
        with contextlib.chdir(record):
            tables.write_index([TABLES_DIR / f"{n}.csv" for n in names], out.resolve() / "README.md",
                               preset=RECORD_PRESET)
        pairs.append((record / TABLES_DIR / "README.md", out / "README.md"))
    return pairs


def table_differences(record: Path, out: Path) -> list[str]:
    """The committed tables that differ from their rebuild (empty: the record is consistent)."""
    return [str(c) for c, r in rebuild_tables(record, out) if not filecmp.cmp(c, r, shallow=False)]


def provenance_problems(path: Path, in_history) -> list[str]:
    """What is wrong with one result file's provenance: it must name the record preset, a code version that
    ``in_history(sha)`` finds in the git history (a ``+dirty`` suffix says the work tree had changes), and the
    sha256 of every input it read."""
    rec = io.read_json(path)
    prov = rec.get("provenance") if isinstance(rec, dict) else None
    if not isinstance(prov, dict):
        return [f"{path}: no provenance block"]
    problems = []
    preset = (prov.get("overrides") or {}).get("preset") or tables._find_preset(prov.get("config"))
    if preset != RECORD_PRESET:
        problems.append(f"{path}: preset {preset!r}, not {RECORD_PRESET!r}")
    version = str(prov.get("code_version"))
    sha = version.removesuffix("+dirty")
    if not re.fullmatch(r"[0-9a-f]{7,40}", sha) or not in_history(sha):
        problems.append(f"{path}: code version {version!r} is not a commit in the git history")
    sums = [v for files in (prov.get("inputs") or {}).values() for v in (files or {}).values()]
    if not sums:
        problems.append(f"{path}: provenance lists no input checksums")
    problems += [f"{path}: input checksum {v!r} is not sha256:<hex>" for v in sums if not SHA256.match(str(v))]
    return problems


def in_git_history(sha: str, repo: Path = REPO) -> bool:
    """Whether ``sha`` names a commit of the repository's history."""
    res = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{sha}^{{commit}}"], capture_output=True)
    return res.returncode == 0


def committed_results(record: Path = RECORD_DIR) -> list[Path]:
    """The record's result JSONs that git tracks or would commit (what .gitignore leaves in the record)."""
    res = subprocess.run(["git", "-C", str(record), "ls-files", "--cached", "--others", "--exclude-standard", "--",
                          "results"], capture_output=True, text=True, check=True)
    return sorted(record / p for p in res.stdout.split() if p.endswith(".json") and (record / p).is_file())


# --- the README headline ----------------------------------------------------------------------------------------

def headline(record: Path = RECORD_DIR) -> str:
    """The README's paper-vs-ours table: every measured percentage of the record that the paper also reports, from
    the record's table CSVs, and the figures it holds."""
    lines = [BEGIN]
    rows = []
    for name in table_names(record):
        df = tables.read_table(record / TABLES_DIR / f"{name}.csv")
        where = tables.TITLES[name].split(":")[0]
        for r in df[(df["kind"] == "measured") & df["paper"].notna() & (df["unit"] == "%")].itertuples():
            paper_cell, ours = tables._fmt(r.paper, r.paper_spread, r.unit), tables._fmt(r.ours, r.ours_spread, r.unit)
            rows.append(f"| [{where}](record/{TABLES_DIR}/{name}.md) | {r.model} | {r.metric} | {paper_cell} | "
                        f"{ours} | {tables._fmt_diff(r.difference, r.unit)} |")
    if rows:
        lines += ["| | model | metric | paper | ours | ours − paper |", "|---|---|---|---|---|---|", *rows]
    else:
        lines.append("The record holds no tables yet.")
    figs = sorted(p.stem for p in (record / FIGURES_DIR).glob("*.png"))
    lines += ["", f"Figures from real data in `record/{FIGURES_DIR}/`: "
              + (", ".join(f"`{f}`" for f in figs) if figs else "none yet") + ".", END]
    return "\n".join(lines)


def readme_block(text: str) -> str:
    """The generated block of a README (markers included)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise RecordError(f"README has no block between '{BEGIN}' and '{END}'")
    return text[start:end + len(END)]


def with_headline(text: str, record: Path = RECORD_DIR) -> str:
    """The README text with its generated block replaced by :func:`headline`."""
    return text.replace(readme_block(text), headline(record))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dcgan_repro.record", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["readme", "check"],
                    help="readme: rewrite README.md's headline block from the record; check: rebuild every table "
                         "and compare, check each result's provenance and the README block")
    ap.add_argument("--record", type=Path, default=RECORD_DIR, help="the record folder (default: record/)")
    ap.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = ap.parse_args(argv)
    text = args.readme.read_text()
    if args.command == "readme":
        args.readme.write_text(with_headline(text, args.record))
        print(f"rewrote the headline block of {args.readme} from {args.record}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        problems = [f"{p} differs from its rebuild from the result files" for p in
                    table_differences(args.record, Path(tmp))]
    for path in committed_results(args.record):
        problems += provenance_problems(path, in_git_history)
    if readme_block(text) != headline(args.record):
        problems.append(f"{args.readme}'s headline block is stale: python -m dcgan_repro.record readme")
    print("\n".join(problems) or "the record is consistent")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
