#!/usr/bin/env bash
# Real SLURM test of profiles/slurm: a single-node SLURM cluster with accounting on localhost, the workflow
# submitted through the profile by snakemake-executor-plugin-slurm, every job checked COMPLETED in `sacct`.
#
#   sudo tests/slurm/run_slurm_test.sh            # Debian/Ubuntu, as root (apt-get, daemons); ~10 min on 2 cores
#
# What it does, in order (every daemon it starts is stopped on exit, also on failure or Ctrl-C):
#   1. apt-get installs Debian's slurm-wlm, slurmdbd, munge, mariadb-server when they are missing.
#   2. Puts the SLURM executor plugin into a SEPARATE virtualenv (default: $WORK/venv) that sees the project's
#      .venv through a .pth file. It stays out of requirements.txt on purpose: with a SLURM client installed
#      but no controller running, every snakemake call waits ~10 s on it.
#   3. Starts munged (its own key; the default socket, which sacctmgr insists on), MariaDB (port 3307, data in
#      $WORK/db), slurmdbd (6819), then slurmctld once slurmdbd listens on 6819, then slurmd. State, logs and
#      pid files live in $WORK; slurm.conf, gres.conf and slurmdbd.conf go to /etc/slurm (jobs find the
#      config only there) and are removed again; a slurm.conf there that this script did not write is refused.
#   4. snakemake --workflow-profile profiles/slurm (the README command) on presets/demo.yaml + tests/tiny.yaml
#      (the demo DAG, fewer steps) in $WORK/wd: the workflow writes only there. Then a second run in $WORK/wd_dl
#      builds resources/data/mnist from a real download (data.mnist.source: download): MNIST_DIR, default
#      ../shared/data/mnist when it exists (verified, nothing fetched), else $WORK/mnist (fetched from the internet).
#   5. Checks through `sacct` that every job the runs submitted reached COMPLETED, that exactly the rules
#      declaring gpu=1 got gres/gpu=1, that the training rules' time limits are the declared ones (at most 24 h,
#      the same on every attempt), that the scatter shards ran grouped (16 to a job, their time limits summed) and
#      features_extract as several jobs, and that rule data_download never became a SLURM job (a local rule: it
#      ran on the submit host, and its record lists the verified files); prints the sacct table.
#
# The node: this test machine has no GPU, 2 cores and ~24 GiB. slurmd runs with
# SlurmdParameters=config_overrides so the node can be declared with 4 CPUs, 64 GiB and one count-only
# GRES gpu: the profile's real requests (gpu=1 -> --gpus=1, mem_mb=32000, cpus-per-task=4) are accepted
# and scheduled unchanged instead of being rewritten by a test overlay. Nothing is enforced (no cgroups),
# and the demo preset trains on the CPU (device: cpu), so the fake GPU is only ever a scheduling token.
#
# Environment knobs: WORK (scratch folder, default a fresh mktemp -d), PYTHON (default .venv/bin/python),
# SLURM_PLUGIN_VERSION, KEEP_WORK=1 (keep $WORK after a pass), TARGETS (snakemake targets, default all),
# MNIST_DIR (the data.mnist.path of the download run).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
# 2.7+ require numpy>=2.4.5, which conflicts with the numpy pin in requirements.txt; 2.6.1 resolves with our pins.
SLURM_PLUGIN_VERSION="${SLURM_PLUGIN_VERSION:-2.6.1}"
WORK="${WORK:-$(mktemp -d /tmp/dcgan-slurm-test.XXXXXX)}"
DB_PORT=3307
CLUSTER=dcgantest
HOST="$(hostname -s)"
T0=$(date +%s)

say() { echo "slurm-test [$(($(date +%s) - T0)) s]: $*"; }
die() { echo "slurm-test: FAILED: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"
[ -x "$PYTHON" ] || die "no python at $PYTHON (create the project's .venv first, see README)"
# One test cluster per machine: the daemons use fixed ports (6817-6819, 3307) and /etc/slurm.
exec 9>/run/lock/dcgan-repro-slurm-test.lock
flock -n 9 || die "another tests/slurm/run_slurm_test.sh is running"
mkdir -p "$WORK"/{etc,munge,state,spool,log,run,db}
chmod 700 "$WORK/munge"

# --- 1. packages ------------------------------------------------------------------------------------------
need=()
for bin in slurmctld:slurm-wlm slurmd:slurm-wlm slurmdbd:slurmdbd sacct:slurm-client munged:munge \
           mariadbd:mariadb-server; do
    command -v "${bin%%:*}" >/dev/null || need+=("${bin#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    say "apt-get install slurm-wlm slurmdbd munge mariadb-server (missing: ${need[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        slurm-wlm slurmdbd munge mariadb-server >"$WORK/log/apt.log" 2>&1 \
        || { apt-get update -q >>"$WORK/log/apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
             --no-install-recommends slurm-wlm slurmdbd munge mariadb-server >>"$WORK/log/apt.log" 2>&1; } \
        || die "apt-get install failed, see $WORK/log/apt.log"
fi
say "$(slurmctld -V), $(mariadbd --version | cut -d' ' -f1-4)"

# --- 2. the plugin, in its own virtualenv -----------------------------------------------------------------
VENV="$WORK/venv"
if [ ! -x "$VENV/bin/snakemake" ]; then
    say "virtualenv $VENV with snakemake-executor-plugin-slurm==$SLURM_PLUGIN_VERSION"
    base_python="$("$PYTHON" -c 'import sys; print(sys._base_executable)')"
    site="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    "$base_python" -m venv "$VENV"
    vsite="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    echo "$site" >"$vsite/dcgan_repro_main_venv.pth"   # the project's pinned packages, read-only from here
    # -c requirements.txt: the plugin's own dependencies may not move any of the project's pins.
    "$VENV/bin/python" -m pip install -q -c "$REPO/requirements.txt" \
        "snakemake-executor-plugin-slurm==$SLURM_PLUGIN_VERSION" >"$WORK/log/pip.log" 2>&1 \
        || die "pip install of the plugin failed, see $WORK/log/pip.log"
    printf '#!/bin/sh\nexec "%s" -m snakemake "$@"\n' "$VENV/bin/python" >"$VENV/bin/snakemake"
    chmod +x "$VENV/bin/snakemake"
fi

# --- 3. configuration -------------------------------------------------------------------------------------
# The default config folder: the plugin deletes every SLURM_* variable (SLURM_CONF too) before it submits, so
# srun inside a job finds the config only there. A slurm.conf there that this script did not write is refused.
CONF_DIR=/etc/slurm
MARK="# written by dcgan-repro tests/slurm/run_slurm_test.sh (removed when it exits)"
for f in slurm.conf gres.conf slurmdbd.conf; do
    if [ -e "$CONF_DIR/$f" ] && ! grep -qxF "$MARK" "$CONF_DIR/$f"; then
        die "$CONF_DIR/$f exists and was not written by this test: refusing to touch a real SLURM setup"
    fi
done
mkdir -p "$CONF_DIR"
SLURM_CONF="$WORK/etc/slurm.conf"
# The default munge socket: sacctmgr (22.05) ignores AuthInfo=socket= when it talks to slurmdbd.
MUNGE_SOCKET=/run/munge/munge.socket.2
cat >"$SLURM_CONF" <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/run/slurmctld.pid
SlurmdPidFile=$WORK/run/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmdParameters=config_overrides
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
MinJobAge=600
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=4 RealMemory=65536 Gres=gpu:1 State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$WORK/etc/gres.conf" <<EOF
$MARK
NodeName=$HOST Name=gpu Count=1 File=/dev/null
EOF
DB_PASS="$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$WORK/etc/slurmdbd.conf" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$WORK/run/slurmdbd.pid
LogFile=$WORK/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
chmod 600 "$WORK/etc/slurmdbd.conf"

# --- daemons: started in order, each one stopped on exit ----------------------------------------------------
PIDFILES=()
stop_all() {
    local rc=$?
    set +e
    if [ -n "${SNAKEMAKE_PID:-}" ] && kill -0 "$SNAKEMAKE_PID" 2>/dev/null; then
        kill "$SNAKEMAKE_PID"   # it cancels its SLURM jobs; if it has not exited after 20 s (a daemon gone), kill it
        for _ in $(seq 100); do kill -0 "$SNAKEMAKE_PID" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$SNAKEMAKE_PID" 2>/dev/null && kill -9 "$SNAKEMAKE_PID"
    fi
    if command -v scancel >/dev/null && [ -f "$WORK/run/slurmctld.pid" ]; then scancel --cluster="$CLUSTER" -u root -f 2>/dev/null; fi
    for ((i = ${#PIDFILES[@]} - 1; i >= 0; i--)); do
        local f="${PIDFILES[$i]}" pid
        pid="$(cat "$f" 2>/dev/null)" || continue
        if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            echo "slurm-test: stopped $(basename "$f" .pid) (pid $pid)"
        fi
    done
    if [ -n "${CONF_WRITTEN:-}" ]; then
        for f in slurm.conf gres.conf slurmdbd.conf; do
            grep -qxF "$MARK" "$CONF_DIR/$f" 2>/dev/null && rm -f "$CONF_DIR/$f"
        done
    fi
    if [ "$rc" = 0 ] && [ "${KEEP_WORK:-0}" != 1 ]; then rm -rf "$WORK"; else echo "slurm-test: logs kept in $WORK/log"; fi
    exit "$rc"
}
trap stop_all EXIT
trap 'exit 130' INT TERM
CONF_WRITTEN=1
install -m 644 "$WORK/etc/slurm.conf" "$WORK/etc/gres.conf" "$CONF_DIR/"
install -m 600 "$WORK/etc/slurmdbd.conf" "$CONF_DIR/"

wait_for() {  # wait_for <what> <seconds> <command...>
    local what="$1" secs="$2"; shift 2
    for _ in $(seq $((secs * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    die "$what did not come up within ${secs} s (logs: $WORK/log)"
}
listening() { "$PYTHON" -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1)" "$1"; }

if munge --socket="$MUNGE_SOCKET" -n >/dev/null 2>&1; then
    say "munged: using the one already running on $MUNGE_SOCKET (left running)"
else
    say "munged (own key in $WORK/munge)"
    mkdir -p "$(dirname "$MUNGE_SOCKET")"
    mungekey --create --keyfile="$WORK/munge/munge.key" --force
    PIDFILES+=("$WORK/run/munged.pid")
    munged --force --key-file="$WORK/munge/munge.key" --socket="$MUNGE_SOCKET" --pid-file="$WORK/run/munged.pid" \
        --log-file="$WORK/log/munged.log" --seed-file="$WORK/munge/munge.seed" --num-threads=10
    wait_for munged 10 munge --socket="$MUNGE_SOCKET" -n
fi

say "MariaDB on port $DB_PORT"
mariadb-install-db --no-defaults --datadir="$WORK/db" --user=root --auth-root-authentication-method=socket \
    >"$WORK/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed, see $WORK/log/mariadb-install.log"
PIDFILES+=("$WORK/run/mariadb.pid")
mariadbd --no-defaults --user=root --datadir="$WORK/db" --socket="$WORK/run/mysql.sock" --port=$DB_PORT \
    --bind-address=127.0.0.1 --skip-name-resolve --pid-file="$WORK/run/mariadb.pid" \
    --log-error="$WORK/log/mariadb.log" --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 &
wait_for MariaDB 60 listening $DB_PORT
mariadb --no-defaults -S "$WORK/run/mysql.sock" -uroot -e "
    CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"

say "slurmdbd on port 6819"
PIDFILES+=("$WORK/run/slurmdbd.pid")
slurmdbd
wait_for slurmdbd 60 listening 6819

say "slurmctld (slurmdbd is listening), then slurmd"
sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -i add account dcgan Cluster="$CLUSTER" Description=test Organization=test >/dev/null
sacctmgr -i add user root Account=dcgan Cluster="$CLUSTER" >/dev/null
PIDFILES+=("$WORK/run/slurmctld.pid")
slurmctld
wait_for slurmctld 60 scontrol ping
PIDFILES+=("$WORK/run/slurmd.pid")
slurmd -N "$HOST"
node_idle() { sinfo -h -N -o '%T' | grep -qx idle; }
wait_for "slurmd (node idle)" 60 node_idle
say "cluster up: $(sinfo -h -N -o '%N %T cpus=%c mem=%m gres=%G')"
say "sanity job: $(srun -t 1 -n 1 hostname)"

# --- 4. the workflow through the profile --------------------------------------------------------------------
cd "$REPO"
mkdir -p "$WORK/wd"
say "snakemake --workflow-profile profiles/slurm (demo preset + tests/tiny.yaml) in $WORK/wd"
set +e
# The init/status settings only make the first status check come sooner than the profile's 40 s.
"$VENV/bin/snakemake" --workflow-profile profiles/slurm --directory "$WORK/wd" \
    --configfile presets/demo.yaml tests/tiny.yaml --slurm-init-seconds-before-status-checks 5 \
    --slurm-keep-successful-logs ${TARGETS:-} >"$WORK/log/snakemake.log" 2>&1 &
SNAKEMAKE_PID=$!
wait "$SNAKEMAKE_PID"
smk_rc=$?
set -e
SNAKEMAKE_PID=
tail -n 25 "$WORK/log/snakemake.log"
say "snakemake exited with $smk_rc"

say "snakemake --workflow-profile profiles/slurm: MNIST from a download (local rule data_download) in $WORK/wd_dl"
SHARED_MNIST="$REPO/../shared/data/mnist"
MNIST_DIR="${MNIST_DIR:-$( [ -d "$SHARED_MNIST/MNIST/raw" ] && echo "$SHARED_MNIST" || echo "$WORK/mnist" )}"
mkdir -p "$WORK/wd_dl"
printf 'data:\n  mnist: {source: download, path: %s}\n' "$MNIST_DIR" >"$WORK/mnist_download.yaml"
set +e
"$VENV/bin/snakemake" resources/data/mnist --workflow-profile profiles/slurm --directory "$WORK/wd_dl" \
    --configfile presets/demo.yaml tests/tiny.yaml "$WORK/mnist_download.yaml" \
    --slurm-init-seconds-before-status-checks 5 --slurm-keep-successful-logs >"$WORK/log/snakemake_dl.log" 2>&1 &
SNAKEMAKE_PID=$!
wait "$SNAKEMAKE_PID"
dl_rc=$?
set -e
SNAKEMAKE_PID=
tail -n 15 "$WORK/log/snakemake_dl.log"
say "snakemake (download run) exited with $dl_rc"

# --- 5. what SLURM says -----------------------------------------------------------------------------------
FMT=JobID,JobName%40,Comment%40,State,ExitCode,Elapsed,Timelimit,ReqCPUS,ReqMem,AllocTRES%60
sacct -X -a -n -P -o "$FMT" --starttime=now-1day >"$WORK/sacct.txt"
echo "--- sacct (allocations) ---"
sacct -X -a -o "JobID,Comment%32,State,Elapsed,Timelimit,ReqCPUS,ReqMem,AllocTRES%48" --starttime=now-1day
"$PYTHON" - "$WORK/sacct.txt" "$WORK/log/snakemake.log" "$smk_rc" "$REPO" "$WORK/log/snakemake_dl.log" "$dl_rc" \
    "$WORK/wd_dl" <<'EOF'
import json, re, sys
from pathlib import Path
import yaml
rows = [l.split("|") for l in open(sys.argv[1]).read().splitlines() if l.strip()]
log, smk_rc = open(sys.argv[2]).read(), int(sys.argv[3])
dl_log, dl_rc, wd_dl = open(sys.argv[5]).read(), int(sys.argv[6]), Path(sys.argv[7])
profile = yaml.safe_load(Path(sys.argv[4], "profiles", "slurm", "config.yaml").read_text())
group_rule = dict(reversed(g.split("=")) for g in profile.get("groups", []))  # group name -> its rule
# The plugin puts "rule_<name>_wildcards_<...>" into --comment, "rule_<group>_<rule>" for a group job; the
# sanity srun has none.
jobs = [r for r in rows if r[2].startswith("rule_")]


def rule_of(comment):
    name = comment.split("_wildcards")[0][len("rule_"):]
    for group, rule in group_rule.items():
        if name == f"{group}_{rule}":
            return rule
    return name


def is_group(comment):
    return rule_of(comment) in group_rule.values()


bad = [r for r in jobs if r[3] != "COMPLETED"]
submitted = len(re.findall(r"Job \S+ has been submitted with SLURM jobid", log + dl_log))  # a group job's id is a UUID
# The rules that declare a GPU (`gpu=1` under resources:), read from the workflow itself.
gpu_rules = set()
for smk in sorted(Path(sys.argv[4], "workflow", "rules").glob("*.smk")):
    for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
        if re.search(r"\n    resources:(\n        .*)*\n        gpu=1\b", block):
            gpu_rules.add(block.split(":")[0].strip())
errors = []
if smk_rc != 0:
    errors.append(f"snakemake exited with {smk_rc}")
if dl_rc != 0:
    errors.append(f"snakemake (the download run) exited with {dl_rc}")
if not jobs:
    errors.append("sacct lists no workflow jobs")
if bad:
    errors.append("not COMPLETED: " + ", ".join(f"{r[0]} {r[2]} {r[3]}" for r in bad))
if submitted != len(jobs):
    errors.append(f"snakemake submitted {submitted} jobs, sacct knows {len(jobs)}")
def minutes(limit):
    days, _, hms = limit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + s / 60


for r in jobs:
    rule = rule_of(r[2])
    has_gpu = "gres/gpu=1" in r[9]
    if has_gpu != (rule in gpu_rules):
        errors.append(f"{r[0]} {rule}: AllocTRES {r[9]!r} (gpu rules: {sorted(gpu_rules)})")
    # the training rules' limits as the rules declare them, on every attempt (no growth on retries)
    limit = {"train_gan": "1-00:00:00", "dedup_train_autoencoder": "06:00:00",
             "svm_supervised_cnn": "12:00:00"}.get(rule)
    if limit and r[6] != limit:
        errors.append(f"{r[0]} {rule}: time limit {r[6]}, expected {limit}")
    if r[6] not in ("", "UNLIMITED") and minutes(r[6]) > 24 * 60:
        errors.append(f"{r[0]} {rule}: time limit {r[6]} is over 24 h")
per_rule = {}
for r in jobs:
    per_rule[rule_of(r[2])] = per_rule.get(rule_of(r[2]), 0) + 1
if per_rule.get("features_extract", 2) < 2:
    errors.append(f"features_extract: {per_rule['features_extract']} SLURM job(s); expected one per dataset and split")
# scatter shards: grouped, 16 to a job, run one after another (the job's limit is the sum of its shards')
shard_minutes = {"dedup_hash_shard": 15, "faces_detect_shard": 20}
for rule, group in ((r, g) for g, r in group_rule.items()):
    grouped = [r for r in jobs if rule_of(r[2]) == rule]
    if not grouped:
        errors.append(f"{rule}: no group job {group} in sacct")
    for r in grouped:
        if minutes(r[6]) % shard_minutes[rule] or minutes(r[6]) > 16 * shard_minutes[rule]:
            errors.append(f"{r[0]} {rule}: time limit {r[6]} is not a sum of at most 16 shards of "
                          f"{shard_minutes[rule]} min")
# downloads: a local rule, never a SLURM job; it ran on this host and recorded every verified file
if "data_download" in per_rule:
    errors.append(f"data_download ran as {per_rule['data_download']} SLURM job(s): it must be a local rule")
if not re.search(r"^localrule data_download:", dl_log, flags=re.M):
    errors.append("the download run's log shows no `localrule data_download` (it did not run on the submit host)")
record = wd_dl / "resources" / "data" / "checksums" / "download_mnist.json"
if not record.is_file() or len(json.loads(record.read_text())["files"]) != 4:
    errors.append(f"{record}: missing, or not the 4 verified MNIST files")
if not (wd_dl / "resources" / "data" / "mnist" / "meta.json").is_file():
    errors.append("the download run built no resources/data/mnist")
rules = sorted(per_rule)
print("slurm-test: jobs per rule: " + ", ".join(f"{k} {v}" for k, v in sorted(per_rule.items())))
print(f"slurm-test: {len(jobs)} SLURM jobs, {len(jobs) - len(bad)} COMPLETED, {len(rules)} rules: {', '.join(rules)}")
if errors:
    print("slurm-test: FAILED:\n  " + "\n  ".join(errors))
    sys.exit(1)
print("slurm-test: PASSED (every job COMPLETED in sacct; GPU rules got gres/gpu=1 and no other rule did; time limits "
      "as declared, none over 24 h; scatter shards grouped; features spread; data_download ran locally, verified MNIST)")
EOF
say "total wall time $(($(date +%s) - T0)) s"
