#!/usr/bin/env bash
# Run rlvis on every worker of a Cloud TPU VM pod (the same command on all of them).
#
#   launch/tpu_pod.sh --tpu NAME --zone ZONE [--project PROJECT] [--repo DIR] [--python PY] [--setup] [--dry-run] \
#       -- --config=configs/cc12m.py:method=ab_clip --config.data.path='gs://BUCKET/cc12m/{00000..02175}.tar' \
#       --workdir=gs://BUCKET/runs/cc12m
#
# Options (a flag wins over its environment variable):
#   --tpu NAME        TPU_NAME      the TPU VM (pod slice) name                                      required
#   --zone ZONE       TPU_ZONE      its zone, e.g. us-central2-b                                     required
#   --project ID      TPU_PROJECT   the GCP project; default: gcloud's configured project           optional
#   --repo DIR        RLVIS_REPO_DIR  the rlvis checkout on every worker, absolute or relative to
#                                   the worker's home (a leading ~/ is kept unquoted); default ~/rlvis
#   --python PY       RLVIS_PYTHON  the interpreter on the workers; default python3
#   --setup           RLVIS_SETUP=1 first run `PY -m pip install -e '.[tpu]'` in DIR on every worker (its own
#                                   gcloud call; training starts only if it succeeded on all workers)
#   --dry-run         DRY_RUN=1     print the gcloud command(s), one per line, and run nothing
#   -h, --help                      print this text
#   -- ARGS...                      the training arguments for `python -m rlvis.main` (required)
#
# Every worker runs `cd DIR && PY -m rlvis.main ARGS...`. No coordinator address is needed: on a TPU pod
# jax.distributed.initialize() without arguments detects the pod from the TPU metadata, so the command is
# identical on every worker. ARGS are quoted with printf %q for the workers' shell, so spaces and quotes survive;
# the dry-run lines are valid shell that runs exactly what the launcher would run.
# Missing or unknown options: one line on stderr, exit 2. Otherwise the exit status is gcloud's.
set -euo pipefail

prog=launch/tpu_pod.sh
usage_line="usage: $prog --tpu NAME --zone ZONE [--project ID] [--repo DIR] [--python PY] [--setup] [--dry-run] -- TRAINING_ARGS..."

die() {  # one line on stderr, exit 2
    printf '%s: %s; %s\n' "$prog" "$1" "$usage_line" >&2
    exit 2
}

truthy() { [[ -n ${1:-} && $1 != 0 && $1 != false && $1 != no ]]; }

tpu=${TPU_NAME:-}
zone=${TPU_ZONE:-}
project=${TPU_PROJECT:-}
repo=${RLVIS_REPO_DIR:-'~/rlvis'}
python=${RLVIS_PYTHON:-python3}
setup=0; truthy "${RLVIS_SETUP:-}" && setup=1
dry_run=0; truthy "${DRY_RUN:-}" && dry_run=1
have_args=0

need_value() { [[ $# -ge 2 && -n $2 ]] || die "option $1 needs a value"; }

while [[ $# -gt 0 ]]; do
    case $1 in
        --tpu|--zone|--project|--repo|--python)
            need_value "$@"; opt=$1; val=$2; shift 2 ;;
        --tpu=*|--zone=*|--project=*|--repo=*|--python=*)
            opt=${1%%=*}; val=${1#*=}; [[ -n $val ]] || die "option $opt needs a value"; shift ;;
        --setup) setup=1; shift; continue ;;
        --dry-run) dry_run=1; shift; continue ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        --) shift; have_args=1; break ;;
        *) die "unknown option '$1' (training arguments go after --)" ;;
    esac
    case $opt in
        --tpu) tpu=$val ;;
        --zone) zone=$val ;;
        --project) project=$val ;;
        --repo) repo=$val ;;
        --python) python=$val ;;
    esac
done

[[ -n $tpu ]] || die "missing --tpu NAME (or TPU_NAME)"
[[ -n $zone ]] || die "missing --zone ZONE (or TPU_ZONE)"
[[ $have_args == 1 && $# -gt 0 ]] || die "missing training arguments after --"

# The repo dir for the workers' shell: %q, except that a leading ~/ stays unquoted so it expands there.
if [[ $repo == "~" ]]; then
    repo_q='~'
elif [[ $repo == "~/"* ]]; then
    repo_q="~/$(printf '%q' "${repo#"~/"}")"
else
    repo_q=$(printf '%q' "$repo")
fi
python_q=$(printf '%q' "$python")

train_cmd="cd $repo_q && $python_q -m rlvis.main$(printf ' %q' "$@")"
setup_cmd="cd $repo_q && $python_q -m pip install -e '.[tpu]'"  # jax with libtpu

gcloud_base=(gcloud compute tpus tpu-vm ssh "$tpu" "--zone=$zone")
[[ -n $project ]] && gcloud_base+=("--project=$project")
gcloud_base+=(--worker=all)

# Print one argument as shell-safe, readable text: bare when it is plain, else in single quotes
# ('\'' for a quote inside); for --flag=VALUE only VALUE is quoted.
shell_word() {
    local s=$1 plain='^[A-Za-z0-9_./:=,+@%^-]+$'
    if [[ $s =~ $plain ]]; then
        printf '%s' "$s"
    elif [[ $s =~ ^(--[A-Za-z0-9_.-]+=)(.*)$ ]]; then
        printf '%s' "${BASH_REMATCH[1]}"; shell_word "${BASH_REMATCH[2]}"
    else
        printf "'%s'" "${s//\'/\'\\\'\'}"
    fi
}

print_command() {
    local sep=""
    for word in "$@"; do printf '%s' "$sep"; shell_word "$word"; sep=" "; done
    printf '\n'
}

commands=()
[[ $setup == 1 ]] && commands+=("$setup_cmd")
commands+=("$train_cmd")

for remote in "${commands[@]}"; do
    if [[ $dry_run == 1 ]]; then
        print_command "${gcloud_base[@]}" "--command=$remote"
    else
        "${gcloud_base[@]}" "--command=$remote"
    fi
done
