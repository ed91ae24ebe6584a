#!/usr/bin/env bash
# The main job against the lab, as an operator would type it. `make demo` runs this after
# installing what it needs. Each step is a plain hopnhat command.
set -euo pipefail
cd "$(dirname "$0")/.."
hopnhat() { .venv/bin/hopnhat "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "validate the estate (inventory/)"
hopnhat estate validate
step "start the lab: vcsim, the repository host in the secondary DC, the lab hypervisor"
hopnhat lab up
step "the estate: sites → systems → VMs with tiers and targets"
hopnhat estate show
step "the lab's parts"
hopnhat lab status
echo
echo "The lab keeps running; stop it with: .venv/bin/hopnhat lab down"
