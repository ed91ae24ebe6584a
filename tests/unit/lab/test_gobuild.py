"""The lab's Go parts: pinned versions read from go.mod, the toolchain chosen, the stamp."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import LabError
from orchestrator.lab import gobuild


def test_each_part_is_a_module_with_its_checksums_committed() -> None:
    for part in gobuild.PARTS:
        assert (part.module_dir / "go.mod").is_file(), part.name
        assert (part.module_dir / "go.sum").stat().st_size > 0, part.name
    assert (gobuild.VCSIM.module_dir / "main.go").is_file()


def test_binaries_are_named_by_the_pinned_release() -> None:
    assert gobuild.RESTIC.binary_name() == "restic-0.18.1"
    assert gobuild.REST_SERVER.binary_name() == "rest-server-0.14.0"
    assert gobuild.VCSIM.binary_name() == "hopnhat-vcsim"
    assert gobuild.pinned_version(gobuild.VCSIM.module_dir / "go.mod",
                                  "github.com/vmware/govmomi") == "0.56.0"
    lab = Path("/lab")
    assert gobuild.restic_binary(lab) == lab / "bin" / "restic-0.18.1"


def test_a_go_mod_without_the_module_is_named(tmp_path: Path) -> None:
    go_mod = tmp_path / "go.mod"
    go_mod.write_text("module x\n\ngo 1.24\n\nrequire github.com/restic/restic-extra v1.0.0\n")
    with pytest.raises(LabError, match=r"go\.mod: does not require github.com/restic/restic$"):
        gobuild.pinned_version(go_mod, "github.com/restic/restic")
    with pytest.raises(LabError, match="cannot read"):
        gobuild.pinned_version(tmp_path / "missing.mod", "github.com/restic/restic")


def test_a_single_line_require_is_read(tmp_path: Path) -> None:
    go_mod = tmp_path / "go.mod"
    go_mod.write_text("module x\n\nrequire github.com/vmware/govmomi v0.56.0 // indirect\n")
    assert gobuild.pinned_version(go_mod, "github.com/vmware/govmomi") == "0.56.0"


def test_the_newest_enough_go_is_chosen_and_an_old_one_named() -> None:
    versions = {"/usr/bin/go": "go1.19.8", str(gobuild.FALLBACK_GO): "go1.26.8"}
    old_first = {**versions}
    go, version = gobuild.find_go((1, 25), lambda path: old_first.get(path))
    assert (go, version) == (str(gobuild.FALLBACK_GO), "go1.26.8")
    with pytest.raises(LabError, match=r"need go1\.27 or newer; found: .*go1\.26\.8"):
        gobuild.find_go((1, 27), lambda path: versions.get(path))


def test_the_stamp_changes_with_the_toolchain_and_the_sources() -> None:
    a = gobuild.source_digest(gobuild.RESTIC, "go1.26.8")
    assert a == gobuild.source_digest(gobuild.RESTIC, "go1.26.8")
    assert a != gobuild.source_digest(gobuild.RESTIC, "go1.26.9")
    assert a != gobuild.source_digest(gobuild.REST_SERVER, "go1.26.8")


def test_builds_never_fetch_a_toolchain_nor_edit_go_mod() -> None:
    env = gobuild.build_env()
    assert env["GOTOOLCHAIN"] == "local"
    assert "-mod=readonly" in env["GOFLAGS"].split()
