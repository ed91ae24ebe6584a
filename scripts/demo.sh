#!/usr/bin/env bash
# The main job against the lab, as an operator would type it. `make demo` runs this after
# installing what it needs. Each step is a plain hopnhat command.
set -euo pipefail
cd "$(dirname "$0")/.."
hopnhat() { .venv/bin/hopnhat "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "validate the estate (inventory/)"
hopnhat estate validate
step "start the lab: a vcsim per vCenter (Đà Nẵng's, Quảng Nam's), the repository host in the secondary DC, the lab hypervisor"
hopnhat lab up
step "the estate: sites → systems → VMs with tiers and targets"
hopnhat estate show
step "discover: what both former provinces' vCenters run that the estate does not describe"
hopnhat discover
drafts=.hopnhat/discovered
mkdir -p "$drafts" && rm -f "$drafts"/*.yml
hopnhat discover --write "$drafts" >/dev/null
echo "drafts written to $drafts (tier, backup paths and probes are left for a person to fill):"
ls "$drafts"
step "plan: what provisioning would change in vCenter — build the new systems, adopt the legacy QLVBs (nothing is touched yet)"
hopnhat plan
step "apply: clone → customize → power on → wait for IP → mark ownership, 8 at a time; adopt = marks only"
hopnhat apply --yes
step "trust the adopted hosts: compare each SSH key with vCenter's record, put hopnhat's key on them with the province team's own key"
for host in qlvbdn-db-01 qlvbqn-db-01; do
  hopnhat hosts trust --host "$host" --yes --login-key .hopnhat/lab/operator/id_ed25519
done
step "plan again: nothing left to do (a second apply would make no vCenter task)"
hopnhat plan --detailed-exitcode
step "the lab's parts: every powered-on VM is now a real SSH host"
hopnhat lab status
step "configure: restic client, repository accounts and backup schedules (Ansible)"
hopnhat configure
step "configure again: changed=0 everywhere (idempotent)"
hopnhat configure
step "back up every system now (the same job the timers run)"
hopnhat backup run
step "backup status: last snapshot per system and host, age against the RPO"
hopnhat backup status
step "maintain: the control host prunes each repository by its retention (clients cannot: their rest-servers are append-only)"
hopnhat maintain
step "vault pull: the control host copies every system's snapshots into the vault (a third location no client reaches)"
hopnhat vault pull
step "verify every repository, as the nightly timer does: check + read-data subset, freshness vs RPO, anomalies, the vault, locks"
hopnhat verify --junit .hopnhat/reports/verify.xml --metrics .hopnhat/textfile/hopnhat_verify.prom
step "restore drill of a tier-1 system: QLVB restored in the secondary DC, probes, RPO/RTO evidence"
hopnhat drill run --system qlvb
step "restore drill of the public-service portal (DVC): its files restored, PostgreSQL started on the scratch VM, its dump restored into it, SQL probes against the dump's manifest"
hopnhat drill run --system dvc
step "restore drill of an adopted system: Quảng Nam's former QLVB, never built by hopnhat"
hopnhat drill run --system qlvbqn
state=$(hopnhat migrate status --system qlvbqn --no-drift --json |
  .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["migrations"][0]["state"])')
if [ "$state" = "cut over" ]; then
  echo "qlvbqn was already cut over in this state folder (a previous demo): nothing to move"
else
  step "migrate plan: Quảng Nam's QLVB moves to the primary DC (Đà Nẵng) by restore — what would be built, from which snapshot"
  hopnhat migrate plan --system qlvbqn --to danang
  step "migrate run: back up the source now, build qlvbqn-db-02 in Đà Nẵng, restore, check every file (manifest), probes, handover record"
  hopnhat migrate run --system qlvbqn --to danang
  step "migrate sync: during the parallel run, a new snapshot restored over the target as a delta"
  hopnhat migrate sync --system qlvbqn --to danang
  step "migrate cutover: stop writes at the source, final sync and checks, the target's backup schedule; the source runs in parallel for a year"
  hopnhat migrate cutover --system qlvbqn --to danang
fi
step "migrate status: every migration, its state, the last manifest, the end of the parallel run, drift at the source"
hopnhat migrate status
if hopnhat retire --system qlvbqn --plan --reason "demo" >/dev/null 2>&1; then
  step "retire: the parallel run ended early (by decision, --reason): final backup, full read-data check, kept snapshots, manifest, catalogue, record — then the adopted source VM destroyed"
  hopnhat retire --system qlvbqn --reason "demo: the parallel run ends today by decision" --yes
else
  echo "qlvbqn's source was already retired in this state folder (a previous demo)"
fi
step "archive find: the retired source's records, from its catalogue in milliseconds (words without diacritics match)"
hopnhat archive find --system qlvbqn "quyet dinh" --limit 5
echo
echo "The lab keeps running; stop it with: .venv/bin/hopnhat lab down"
