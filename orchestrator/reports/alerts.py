"""Prometheus alert rules for the series hopnhat writes: the nightly verification
(:mod:`orchestrator.reports.metrics`), each host's backup job (``hostjob.textfile``), the
control side's maintenance pass, each system's quota, and the nightly drills.

The rules are data (:class:`Rule`, :class:`RuleGroup`), rendered as a Prometheus rule file
(:func:`render_rules`). Every rule carries a ``severity`` label — ``critical`` when backups are
damaged, lost or attacked or the RPO is broken, ``warning`` for what can wait for office
hours — and its summary and description in Vietnamese (``summary``, ``description``: the
operators read Vietnamese) and English (``summary_en``, ``description_en``).

Verify's series are rewritten once a night, so a failed check stays failed until the next
run: its alert needs no ``for`` delay. Attack signs never wait.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml

CRITICAL, WARNING = "critical", "warning"

#: how long no verification metric at all may go unnoticed (a node_exporter restart is shorter)
ABSENT_FOR = timedelta(hours=1)


@dataclass(frozen=True)
class Rule:
    """One alerting rule. ``summary`` and ``description`` are Vietnamese, the ``_en`` ones
    English; all four may use Prometheus' template language (``{{ $labels.system }}``).
    ``wait`` is the rule's ``for``: how long the condition must hold before it fires."""

    alert: str
    expr: str
    severity: str
    summary: str
    summary_en: str
    description: str
    description_en: str
    wait: timedelta = timedelta(0)

    def as_dict(self) -> dict[str, Any]:
        """The rule as Prometheus' rule file spells it."""
        rule: dict[str, Any] = {"alert": self.alert, "expr": self.expr}
        if self.wait:
            rule["for"] = prometheus_duration(self.wait)
        rule["labels"] = {"severity": self.severity}
        rule["annotations"] = {"summary": self.summary, "summary_en": self.summary_en,
                               "description": self.description,
                               "description_en": self.description_en}
        return rule


@dataclass(frozen=True)
class RuleGroup:
    """A named group of rules (Prometheus evaluates each group on its own)."""

    name: str
    rules: tuple[Rule, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rules": [rule.as_dict() for rule in self.rules]}


def prometheus_duration(value: timedelta) -> str:
    """The shortest exact Prometheus duration: 26 h → ``"26h"``, 8 days → ``"8d"``."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _spoken(value: timedelta) -> tuple[str, str]:
    """``value`` for people: (Vietnamese, English) — ``("8 ngày", "8 days")``."""
    seconds = int(value.total_seconds())
    for size, vi, en in ((86400, "ngày", "days"), (3600, "giờ", "h"), (60, "phút", "min")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {vi}", f"{seconds // size} {en}"
    return f"{seconds} giây", f"{seconds} s"


def _check_failed(check: str) -> str:
    """The condition "verify's check ``check`` failed or could not run"."""
    return f'hopnhat_verify_check_ok{{check="{check}"}} == 0'


def _count_or_check(count: str, check: str) -> str:
    """A count above zero, or — where verify wrote no count — the check's own verdict: one
    alert per repository either way (the two sides differ only by the ``check`` label)."""
    return f"{count} > 0 or ignoring(check) ({_check_failed(check)})"


# --- the nightly verification ---------------------------------------------------------------

#: checks with an alert of their own, which fires whenever the check failed or could not run
#: (its expression holds ``_check_failed(check)``)
CHECK_ALERTS: dict[str, str] = {
    "structure": "HopnhatVerifyStructureFailed",
    "read_data": "HopnhatVerifyReadDataFailed",
    "freshness": "HopnhatBackupRpoExceeded",
    "anomaly": "HopnhatBackupSizeAnomaly",
    "copy": "HopnhatBackupCopyMissing",
    "locks": "HopnhatRepositoryStaleLocks",
    "final": "HopnhatFinalSnapshotMissing",
}
#: the attack signs: check → (alert, the count verify writes when the check could judge).
#: They fire on the count alone: a check that could not run is no sign of an attack (and
#: raises HopnhatVerifyFailed).
ATTACK_ALERTS: dict[str, tuple[str, str]] = {
    "future": ("HopnhatSnapshotInFuture", "hopnhat_backup_future_snapshots"),
    "foreign": ("HopnhatSnapshotFromForeignHost", "hopnhat_backup_foreign_snapshots"),
    "vanished": ("HopnhatSnapshotVanished", "hopnhat_backup_vanished_snapshots"),
    "deletions": ("HopnhatRepositoryServerDeleted", "hopnhat_backup_server_deleted_files"),
}

_SEE = ("Chi tiết: `hopnhat verify --system {{ $labels.system }}` hoặc "
        "`hopnhat verify history --system {{ $labels.system }}`.")
_SEE_EN = ("Details: `hopnhat verify --system {{ $labels.system }}` or "
           "`hopnhat verify history --system {{ $labels.system }}`.")
_WHERE = "kho {{ $labels.repository }} của hệ thống {{ $labels.system }} (cấp {{ $labels.tier }})"
_WHERE_EN = ("repository {{ $labels.repository }} of system {{ $labels.system }} "
             "(tier {{ $labels.tier }})")


def _verify_rules(verify_max_age: timedelta) -> tuple[Rule, ...]:
    age_vi, age_en = _spoken(verify_max_age)
    # what the alerts below and the attack signs explain: one alert per problem, and a
    # repository that failed verification always raises at least one
    explained = [f'ignoring(check) (hopnhat_verify_check_ok{{check=~"{"|".join(CHECK_ALERTS)}"}} '
                 "== 0)", *(f"({count} > 0)" for _, count in ATTACK_ALERTS.values())]
    return (
        Rule(
            "HopnhatVerifyNotRun",
            "time() - hopnhat_verify_last_run_timestamp_seconds "
            f"> {int(verify_max_age.total_seconds())}",
            WARNING,
            f"Kiểm tra sao lưu hằng đêm không chạy quá {age_vi} (estate {{{{ $labels.estate }}}})",
            f"The nightly backup verification has not run for over {age_en} "
            "(estate {{ $labels.estate }})",
            "Lần chạy gần nhất của `hopnhat verify` cách đây {{ $value | humanizeDuration }}: "
            "không ai kiểm tra các kho sao lưu. Trên máy điều khiển: `systemctl status "
            "hopnhat-verify-{{ $labels.estate }}.timer` và `journalctl -u "
            "hopnhat-verify-{{ $labels.estate }}.service`.",
            "`hopnhat verify` last ran {{ $value | humanizeDuration }} ago: nobody is checking "
            "the backup repositories. On the control host: `systemctl status "
            "hopnhat-verify-{{ $labels.estate }}.timer` and `journalctl -u "
            "hopnhat-verify-{{ $labels.estate }}.service`.",
        ),
        Rule(
            "HopnhatVerifyMetricsAbsent",
            "absent(hopnhat_verify_last_run_timestamp_seconds)",
            WARNING,
            "Prometheus không có số liệu kiểm tra sao lưu nào của hopnhat",
            "Prometheus has no hopnhat verification metrics",
            "Không có chuỗi `hopnhat_verify_last_run_timestamp_seconds` nào: `hopnhat verify` "
            "chưa ghi tệp số liệu, hoặc node_exporter trên máy điều khiển không đọc thư mục "
            "textfile (`--collector.textfile.directory`). Cài lịch chạy bằng `hopnhat schedule "
            "install`; khi chưa sửa, các cảnh báo về kho sao lưu không thể kích hoạt.",
            "No `hopnhat_verify_last_run_timestamp_seconds` series at all: `hopnhat verify` "
            "has written no metrics file, or node_exporter on the control host does not read "
            "its textfile folder (`--collector.textfile.directory`). Install the schedule with "
            "`hopnhat schedule install`; until this is fixed no repository alert can fire.",
            ABSENT_FOR,
        ),
        Rule(
            "HopnhatVerifyCouldNotRun",
            "hopnhat_verify_exit_code > 1",
            WARNING,
            "Kiểm tra sao lưu không chạy được (mã thoát {{ $value }}, "
            "estate {{ $labels.estate }})",
            "The backup verification could not run (exit code {{ $value }}, "
            "estate {{ $labels.estate }})",
            "`hopnhat verify` kết thúc với mã {{ $value }} (2: không chạy được — estate sai, "
            "không mở được vault, tuỳ chọn sai; 130: bị ngắt), nên không kho nào được kiểm tra. "
            "Xem `journalctl -u hopnhat-verify-{{ $labels.estate }}.service` trên máy điều "
            "khiển.",
            "`hopnhat verify` exited with {{ $value }} (2: could not run — bad estate, vault "
            "not opened, bad option; 130: interrupted), so no repository was checked. See "
            "`journalctl -u hopnhat-verify-{{ $labels.estate }}.service` on the control host.",
        ),
        Rule(
            "HopnhatVerifyFailed",
            "hopnhat_verify_ok == 0" + "".join(f"\n  unless {e}" for e in explained),
            WARNING,
            "Kho sao lưu của hệ thống {{ $labels.system }} không đạt kiểm tra",
            "The backup repository of system {{ $labels.system }} failed verification",
            f"`hopnhat verify` đánh giá {_WHERE} là không đạt, vì một kiểm tra không có cảnh "
            f"báo riêng (hoặc một kiểm tra dấu hiệu tấn công không chạy được). {_SEE}",
            f"`hopnhat verify` judged {_WHERE_EN} failed, by a check without an alert of its "
            f"own (or a check for attack signs that could not run). {_SEE_EN}",
        ),
        Rule(
            CHECK_ALERTS["structure"],
            _check_failed("structure"),
            CRITICAL,
            "Kho sao lưu của hệ thống {{ $labels.system }} hỏng cấu trúc hoặc không đọc được",
            "The backup repository of system {{ $labels.system }} is damaged or unreadable",
            f"`restic check` báo lỗi cấu trúc (chỉ mục, cây thư mục, snapshot) trong {_WHERE}, "
            "hoặc không đọc được kho (không kết nối được, bị khoá, sai mật khẩu). Bản sao lưu "
            "có thể không khôi phục được. Đừng chạy `restic prune` hay `restic repair` trước "
            f"khi rõ nguyên nhân. {_SEE}",
            f"`restic check` found structural damage (index, trees, snapshots) in {_WHERE_EN}, "
            "or could not read it (unreachable, locked, wrong password). Its backups may not "
            "restore. Do not run `restic prune` or `restic repair` before the cause is known. "
            f"{_SEE_EN}",
        ),
        Rule(
            CHECK_ALERTS["read_data"],
            _check_failed("read_data"),
            CRITICAL,
            "Dữ liệu trong kho sao lưu của hệ thống {{ $labels.system }} bị hỏng",
            "Data in the backup repository of system {{ $labels.system }} is damaged",
            f"`restic check --read-data-subset` đọc lại dữ liệu của {_WHERE} và thấy gói dữ "
            "liệu hỏng, hoặc không đọc được. Các snapshot dùng những gói này sẽ không khôi phục "
            "đầy đủ. Chạy `hopnhat verify --system {{ $labels.system }} --read-data-subset all`, "
            "rồi diễn tập khôi phục: `hopnhat drill run --system {{ $labels.system }}`.",
            f"`restic check --read-data-subset` read back the data of {_WHERE_EN} and found "
            "damaged packs, or could not read them. Snapshots that use them will not restore "
            "completely. Run `hopnhat verify --system {{ $labels.system }} --read-data-subset "
            "all`, then a restore drill: `hopnhat drill run --system {{ $labels.system }}`.",
        ),
        Rule(
            CHECK_ALERTS["freshness"],
            # per host where verify measured an age; the check's verdict for the rest (an
            # expected host with no snapshot at all)
            "hopnhat_backup_last_snapshot_age_seconds > ignoring(host) group_left() "
            "hopnhat_backup_rpo_seconds or ignoring(host, check) "
            f"({_check_failed('freshness')})",
            CRITICAL,
            "Hệ thống {{ $labels.system }} vượt RPO: không có bản sao lưu đủ mới",
            "System {{ $labels.system }} is past its RPO: no recent enough backup",
            "{{ if $labels.host }}Snapshot mới nhất của máy {{ $labels.host }} đã cũ "
            "{{ $value | humanizeDuration }} khi verify chạy, quá RPO của cấp "
            "{{ $labels.tier }}.{{ else }}Kiểm tra độ mới của verify thất bại: có máy không có "
            "snapshot nào, hoặc snapshot mới nhất cũ hơn RPO của cấp {{ $labels.tier }}."
            "{{ end }} Nếu máy chủ hỏng lúc này, dữ liệu mất sẽ nhiều hơn mức đã cam kết. Xem "
            "tác vụ sao lưu trên máy: `journalctl -u hopnhat-backup-{{ $labels.system }}.service`.",
            "{{ if $labels.host }}The latest snapshot of host {{ $labels.host }} was "
            "{{ $value | humanizeDuration }} old when verify ran, past the RPO of tier "
            "{{ $labels.tier }}.{{ else }}Verify's freshness check failed: a host has no "
            "snapshot at all, or its latest is older than the RPO of tier {{ $labels.tier }}."
            "{{ end }} Were the server lost now, more data would be lost than promised. See "
            "the host's backup job: `journalctl -u hopnhat-backup-{{ $labels.system }}.service`.",
        ),
        Rule(
            CHECK_ALERTS["anomaly"],
            _check_failed("anomaly"),
            WARNING,
            "Bản sao lưu của hệ thống {{ $labels.system }} thay đổi kích thước bất thường",
            "The backups of system {{ $labels.system }} changed size abnormally",
            f"Snapshot mới nhất trong {_WHERE} có dung lượng hoặc số tệp lệch nhiều so với "
            "trung vị các snapshot trước, hoặc thiếu máy, thiếu đường dẫn phải sao lưu. Bản sao "
            "lưu co lại lặng lẽ (thư mục bị xoá, ổ đĩa chưa gắn) hay phình to (dữ liệu bị mã "
            f"hoá) đều cần xem ngay. {_SEE}",
            f"The latest snapshot in {_WHERE_EN} is far from the median of the ones before in "
            "size or file count, or lacks a host or a path it must hold. A backup that quietly "
            "shrank (a folder deleted, a disk not mounted) or swelled (data encrypted) needs a "
            f"look. {_SEE_EN}",
        ),
        Rule(
            CHECK_ALERTS["copy"],
            _check_failed("copy"),
            WARNING,
            "Bản sao thứ hai của hệ thống {{ $labels.system }} thiếu snapshot",
            "The second copy of system {{ $labels.system }} lacks snapshots",
            f"Bản sao thứ hai của {_WHERE} thiếu snapshot đã quá thời gian chờ sao chép (hoặc "
            "không đọc được): nếu mất kho chính, các snapshot này mất theo. Xem "
            f"`hopnhat_backup_copy_lag_seconds`. {_SEE}",
            f"The second copy of {_WHERE_EN} lacks snapshots past their time to be copied (or "
            "could not be read): were the main repository lost, they would be lost with it. "
            f"See `hopnhat_backup_copy_lag_seconds`. {_SEE_EN}",
        ),
        Rule(
            CHECK_ALERTS["locks"],
            _count_or_check("hopnhat_backup_stale_locks", "locks"),
            WARNING,
            "Kho sao lưu của hệ thống {{ $labels.system }} có khoá restic bị bỏ lại",
            "The backup repository of system {{ $labels.system }} has stale restic locks",
            f"Trong {_WHERE} có khoá restic bị bỏ lại (tiến trình giữ khoá đã chết, hoặc khoá "
            "không được làm mới quá 30 phút), hoặc không đọc được danh sách khoá. Khoá độc "
            "quyền bị bỏ lại chặn sao lưu và dọn dẹp. verify không gỡ khoá nào: khi chắc không còn "
            f"restic nào dùng kho, chạy `restic unlock`. {_SEE}",
            f"The {_WHERE_EN} holds stale restic locks (their process died, or they were not "
            "refreshed for 30 minutes), or its locks could not be listed. A stale exclusive "
            "lock blocks backups and maintenance. Verify removes none: once sure no restic "
            f"uses the repository, run `restic unlock`. {_SEE_EN}",
        ),
        Rule(
            CHECK_ALERTS["final"],
            _check_failed("final"),
            CRITICAL,
            "Mất snapshot cuối của hệ thống đã ngừng {{ $labels.system }}",
            "The final snapshot of retired system {{ $labels.system }} is missing",
            "Snapshot cuối (thẻ `final`) ghi lại khi ngừng hệ thống {{ $labels.system }} không "
            "còn trong kho {{ $labels.repository }}, hoặc đã mất thẻ `final`: đây là hồ sơ phải "
            f"lưu giữ nhiều năm. Khôi phục từ bản sao cách ly (vault) nếu có. {_SEE}",
            "The final snapshot (tag `final`) taken when system {{ $labels.system }} was "
            "retired is gone from repository {{ $labels.repository }}, or lost its `final` "
            "tag: these are records kept for years. Restore them from the isolated copy "
            f"(vault) if there is one. {_SEE_EN}",
        ),
    )


def _attack_rules() -> tuple[Rule, ...]:
    """Signs that someone other than hopnhat writes to or deletes from a repository: no
    ``for``, critical, each as soon as verify sees it."""
    return (
        Rule(
            ATTACK_ALERTS["future"][0],
            f"{ATTACK_ALERTS['future'][1]} > 0",
            CRITICAL,
            "Dấu hiệu tấn công: kho của hệ thống {{ $labels.system }} có snapshot ghi ngày "
            "trong tương lai",
            "Attack sign: the repository of system {{ $labels.system }} holds a snapshot "
            "dated in the future",
            f"verify thấy snapshot ghi thời điểm trong tương lai trong {_WHERE}. Máy khách "
            "không tự tạo snapshot như vậy (trừ khi đồng hồ sai nặng): kẻ tấn công có thể gieo "
            "snapshot giả để đẩy snapshot thật ra khỏi chính sách lưu giữ. Không xoá snapshot "
            "bằng tay (`restic forget`); kiểm tra các máy của hệ thống và đồng hồ của chúng. "
            f"{_SEE}",
            f"Verify found a snapshot dated in the future in {_WHERE_EN}. Clients do not make "
            "such snapshots (short of a badly wrong clock): an attacker may plant fake ones to "
            "push real ones out of the retention policy. Do not forget snapshots by hand "
            "(`restic forget`); examine the system's hosts and their clocks. "
            f"{_SEE_EN}",
        ),
        Rule(
            ATTACK_ALERTS["foreign"][0],
            f"{ATTACK_ALERTS['foreign'][1]} > 0",
            CRITICAL,
            "Dấu hiệu tấn công: kho của hệ thống {{ $labels.system }} có snapshot từ máy lạ",
            "Attack sign: the repository of system {{ $labels.system }} holds a snapshot "
            "from a foreign host",
            f"verify thấy trong {_WHERE} snapshot do một máy không thuộc hệ thống tạo ra: "
            "thông tin đăng nhập kho của hệ thống có thể đã lộ và đang được dùng từ nơi khác. "
            f"Xác định máy đó, rồi thu hồi và thay thông tin đăng nhập của hệ thống. {_SEE}",
            f"Verify found in {_WHERE_EN} a snapshot made by a host that does not belong to "
            "the system: the system's repository credentials may have leaked and be used from "
            f"elsewhere. Find that host, then revoke and replace the system's credentials. "
            f"{_SEE_EN}",
        ),
        Rule(
            ATTACK_ALERTS["vanished"][0],
            f"{ATTACK_ALERTS['vanished'][1]} > 0",
            CRITICAL,
            "Dấu hiệu tấn công: snapshot của hệ thống {{ $labels.system }} biến mất ngoài "
            "chính sách lưu giữ",
            "Attack sign: snapshots of system {{ $labels.system }} vanished outside the "
            "retention policy",
            f"Trong {_WHERE}, snapshot mà lần verify trước còn thấy đã biến mất, mà lần dọn dẹp "
            "của máy điều khiển không xoá chúng: có thể ai đó đã xoá bản sao lưu — việc "
            "ransomware làm trước khi mã hoá. Cô lập các máy của hệ thống, kiểm tra kho và bản "
            f"sao cách ly (vault) ngay. {_SEE}",
            f"In {_WHERE_EN}, snapshots that the last verify saw are gone, and the control "
            "side's maintenance did not remove them: someone may have deleted backups — what "
            "ransomware does before it encrypts. Isolate the system's hosts and check the "
            f"repository and the isolated copy (vault) now. {_SEE_EN}",
        ),
        Rule(
            ATTACK_ALERTS["deletions"][0],
            f"{ATTACK_ALERTS['deletions'][1]} > 0",
            CRITICAL,
            "Dấu hiệu tấn công: máy chủ kho riêng của hệ thống {{ $labels.system }} đã xoá "
            "tệp",
            "Attack sign: the own repository server of system {{ $labels.system }} deleted "
            "files",
            f"Theo số liệu của chính rest-server, máy chủ riêng (chỉ-thêm) của {_WHERE} đã "
            "xoá tệp không phải khoá: khi chạy chỉ-thêm thì không thể. Ai đó đã đổi cấu hình "
            "hoặc thay máy chủ trên máy kho. Kiểm tra máy kho và dịch vụ "
            "hopnhat-rest@{{ $labels.system }}, rồi kho và bản sao cách ly (vault). "
            f"{_SEE}",
            f"By rest-server's own metrics, the own (append-only) server of {_WHERE_EN} "
            "deleted files other than locks: it cannot while append-only. Someone changed its "
            "settings or replaced it on the repository host. Examine the repository host and "
            "the hopnhat-rest@{{ $labels.system }} service, then the repository and the "
            f"isolated copy (vault). {_SEE_EN}",
        ),
    )


# --- each host's backup job, maintenance, quota ----------------------------------------------

_JOB = "máy {{ $labels.host }} (hệ thống {{ $labels.system }})"
_JOB_EN = "host {{ $labels.host }} (system {{ $labels.system }})"
_JOURNAL = "`journalctl -u hopnhat-backup-{{ $labels.system }}.service` trên máy"
_JOURNAL_EN = "`journalctl -u hopnhat-backup-{{ $labels.system }}.service` on the host"


def _backup_rules() -> tuple[Rule, ...]:
    return (
        Rule(
            "HopnhatBackupJobFailed",
            'hopnhat_backup_result{result="failed"} == 1',
            WARNING,
            "Sao lưu của hệ thống {{ $labels.system }} trên máy {{ $labels.host }} thất bại",
            "The backup of system {{ $labels.system }} on host {{ $labels.host }} failed",
            f"Lần chạy gần nhất của tác vụ sao lưu trên {_JOB} thất bại, không có snapshot mới. "
            "Nguyên nhân thường gặp: không kết nối được kho, hết dung lượng hoặc hạn mức, lệnh "
            f"chạy trước sao lưu thất bại. Xem {_JOURNAL}.",
            f"The last run of the backup job on {_JOB_EN} failed and made no snapshot. Usual "
            "causes: the repository unreachable, out of space or over quota, a pre-backup "
            f"command failed. See {_JOURNAL_EN}.",
        ),
        Rule(
            "HopnhatBackupJobPartial",
            'hopnhat_backup_result{result="partial"} == 1',
            WARNING,
            "Sao lưu của hệ thống {{ $labels.system }} trên máy {{ $labels.host }} chỉ thành "
            "công một phần",
            "The backup of system {{ $labels.system }} on host {{ $labels.host }} was partial",
            f"Lần chạy gần nhất trên {_JOB} đã tạo snapshot nhưng có tệp không đọc được, hoặc "
            f"một bước sau đó (bản sao thứ hai, dọn dẹp) thất bại. Xem {_JOURNAL}.",
            f"The last run on {_JOB_EN} made a snapshot but could not read some files, or a "
            f"later step (second copy, clean-up) failed. See {_JOURNAL_EN}.",
        ),
        Rule(
            "HopnhatBackupNotSucceededWithinRpo",
            # the host's own textfile is live (verify's is nightly); the RPO comes from
            # verify's series of the same system
            "time() - hopnhat_backup_last_success_timestamp_seconds > on(system) group_left() "
            "max by (system) (hopnhat_backup_rpo_seconds)",
            CRITICAL,
            "Máy {{ $labels.host }} (hệ thống {{ $labels.system }}) không sao lưu thành công "
            "trong RPO",
            "Host {{ $labels.host }} (system {{ $labels.system }}) has not backed up "
            "successfully within its RPO",
            f"Lần sao lưu thành công cuối cùng của {_JOB} cách đây "
            "{{ $value | humanizeDuration }}, quá RPO của hệ thống. Nếu máy hỏng lúc này, dữ "
            f"liệu mất sẽ nhiều hơn mức đã cam kết. Xem {_JOURNAL} và "
            "`systemctl list-timers 'hopnhat-backup-*'`.",
            f"The last successful backup of {_JOB_EN} was {{{{ $value | humanizeDuration }}}} "
            "ago, past the system's RPO. Were the host lost now, more data would be lost than "
            f"promised. See {_JOURNAL_EN} and `systemctl list-timers 'hopnhat-backup-*'`.",
        ),
    )


def _maintain_rules(maintain_max_age: timedelta) -> tuple[Rule, ...]:
    age_vi, age_en = _spoken(maintain_max_age)
    return (
        Rule(
            "HopnhatMaintainNotSucceeded",
            "time() - hopnhat_maintain_last_success_timestamp_seconds "
            f"> {int(maintain_max_age.total_seconds())}",
            WARNING,
            f"Kho của hệ thống {{{{ $labels.system }}}} không được dọn dẹp thành công quá "
            f"{age_vi}",
            f"The repository of system {{{{ $labels.system }}}} has not been maintained "
            f"successfully for over {age_en}",
            "Lần `hopnhat maintain` thành công cuối cùng cho kho {{ $labels.repository }} "
            "(hệ thống {{ $labels.system }}) cách đây {{ $value | humanizeDuration }}. Không "
            "dọn dẹp thì snapshot cũ không được xoá theo chính sách và kho lớn dần tới hạn mức. "
            "Chạy `hopnhat maintain --system {{ $labels.system }}` và xem timer của nó trên máy "
            "điều khiển.",
            "The last successful `hopnhat maintain` of repository {{ $labels.repository }} "
            "(system {{ $labels.system }}) was {{ $value | humanizeDuration }} ago. Without "
            "it old snapshots are not forgotten by the policy and the repository grows towards "
            "its quota. Run `hopnhat maintain --system {{ $labels.system }}` and look at its "
            "timer on the control host.",
        ),
        Rule(
            "HopnhatMaintainFailed",
            "hopnhat_maintain_exit_code != 0",
            WARNING,
            "Lần dọn dẹp kho gần nhất (`hopnhat maintain`) thất bại (mã thoát {{ $value }})",
            "The last maintenance pass (`hopnhat maintain`) failed (exit code {{ $value }})",
            "`hopnhat maintain` kết thúc với mã {{ $value }} (1: một kho thất bại, 2: không "
            "chạy được, 3: một phần). Xem nhật ký của nó trên máy điều khiển và "
            "`hopnhat_maintain_last_success_timestamp_seconds` của từng kho.",
            "`hopnhat maintain` exited with {{ $value }} (1: a repository failed, 2: could not "
            "run, 3: partial). See its journal on the control host and each repository's "
            "`hopnhat_maintain_last_success_timestamp_seconds`.",
        ),
    )


def _quota_rules(quota_percent: float, quota_for: timedelta) -> tuple[Rule, ...]:
    return (
        Rule(
            "HopnhatRepositoryQuotaNearlyFull",
            "hopnhat_repository_used_bytes / (hopnhat_repository_quota_bytes > 0) "
            f"> {quota_percent / 100:g}",
            WARNING,
            "Kho của hệ thống {{ $labels.system }} đã dùng {{ $value | humanizePercentage }} "
            "hạn mức",
            "The repository of system {{ $labels.system }} uses "
            "{{ $value | humanizePercentage }} of its quota",
            f"Kho {{{{ $labels.repository }}}} của hệ thống {{{{ $labels.system }}}} đã dùng quá "
            f"{quota_percent:g} % hạn mức. Khi đầy, sao lưu của hệ thống này thất bại với kết "
            "quả \"quota\" (các hệ thống khác vẫn chạy). Tăng hạn mức của hệ thống trong estate "
            "hoặc xem lại chính sách lưu giữ.",
            f"Repository {{{{ $labels.repository }}}} of system {{{{ $labels.system }}}} uses "
            f"more than {quota_percent:g} % of its quota. When full, this system's backups "
            "fail with \"quota\" (the other systems go on). Raise the system's quota in the "
            "estate or review its retention.",
            quota_for,
        ),
    )


# --- the drills ------------------------------------------------------------------------------

_DRILL = "hệ thống {{ $labels.system }} (cấp {{ $labels.tier }})"  # in a sentence
_DRILL_EN = "system {{ $labels.system }} (tier {{ $labels.tier }})"


def _drill_rules(drill_max_age: timedelta) -> tuple[Rule, ...]:
    """The drills ``hopnhat drill nightly`` writes (:mod:`orchestrator.reports.drill.nightly`):
    a system's last drill failed, a system overdue, the nightly drills not run or not all."""
    age_vi, age_en = _spoken(drill_max_age)
    return (
        Rule(
            "HopnhatDrillFailed",
            "hopnhat_drill_last_exit_code == 1",
            CRITICAL,
            "Diễn tập khôi phục gần nhất của hệ thống {{ $labels.system }} thất bại",
            "The last restore drill of system {{ $labels.system }} failed",
            f"Lần diễn tập gần nhất của {_DRILL} không khôi phục được dịch vụ trong mục tiêu "
            "RPO/RTO (hoặc một bước, một phép thử không đạt): bản sao lưu chưa được chứng minh "
            "là khôi phục được. Xem báo cáo: `hopnhat drill history --system "
            "{{ $labels.system }}`, rồi diễn tập lại: `hopnhat drill run --system "
            "{{ $labels.system }}`.",
            f"The last drill of {_DRILL_EN} did not bring the service back within its RPO/RTO "
            "targets (or a step or a probe failed): its backups are not proven to restore. "
            "See its report: `hopnhat drill history --system {{ $labels.system }}`, then "
            "drill again: `hopnhat drill run --system {{ $labels.system }}`.",
        ),
        Rule(
            "HopnhatDrillOverdue",
            "hopnhat_drill_overdue == 1",
            WARNING,
            "Hệ thống {{ $labels.system }} quá hạn diễn tập khôi phục",
            "System {{ $labels.system }} is overdue for a restore drill",
            "Hệ thống {{ $labels.system }} (cấp {{ $labels.tier }}) không có lần diễn tập đạt "
            "nào trong chu kỳ diễn tập của cấp (drill_interval). Xem `hopnhat drill due`; "
            "diễn tập hằng đêm (`hopnhat drill nightly`) đưa hệ thống quá hạn lên đầu, trừ khi "
            "cửa sổ đêm không đủ dài.",
            "System {{ $labels.system }} (tier {{ $labels.tier }}) has no passed drill within "
            "its tier's drill_interval. See `hopnhat drill due`; the nightly drills "
            "(`hopnhat drill nightly`) take an overdue system first, unless the night's "
            "window is too short for it.",
        ),
        Rule(
            "HopnhatDrillNightlyNotRun",
            "time() - hopnhat_drill_nightly_last_run_timestamp_seconds "
            f"> {int(drill_max_age.total_seconds())}",
            WARNING,
            f"Diễn tập khôi phục hằng đêm không chạy quá {age_vi} "
            "(estate {{ $labels.estate }})",
            f"The nightly restore drills have not run for over {age_en} "
            "(estate {{ $labels.estate }})",
            "Lần chạy gần nhất của `hopnhat drill nightly` cách đây "
            "{{ $value | humanizeDuration }}. Trên máy điều khiển: `systemctl status "
            "hopnhat-drill-{{ $labels.estate }}.timer` và `journalctl -u "
            "hopnhat-drill-{{ $labels.estate }}.service`.",
            "`hopnhat drill nightly` last ran {{ $value | humanizeDuration }} ago. On the "
            "control host: `systemctl status hopnhat-drill-{{ $labels.estate }}.timer` and "
            "`journalctl -u hopnhat-drill-{{ $labels.estate }}.service`.",
        ),
        Rule(
            "HopnhatDrillNightlyIncomplete",
            "hopnhat_drill_nightly_exit_code > 1",
            WARNING,
            "Diễn tập hằng đêm không chạy hết (mã thoát {{ $value }}, "
            "estate {{ $labels.estate }})",
            "The nightly drills did not all run (exit code {{ $value }}, "
            "estate {{ $labels.estate }})",
            "`hopnhat drill nightly` kết thúc với mã {{ $value }} (3: có hệ thống không chạy "
            "hoặc bị dừng vì hết cửa sổ đêm hay vượt số máy ảo tạm; 2: không chạy được; 130: bị "
            "ngắt). Các hệ thống đó vẫn đến hạn: xem `hopnhat drill due` và "
            "`hopnhat_drill_nightly_systems`; cân nhắc nới `nightly_drills` trong estate.yml.",
            "`hopnhat drill nightly` exited with {{ $value }} (3: systems not run or stopped "
            "because the night's window closed or the scratch-VM limit; 2: could not run; 130: "
            "interrupted). Those systems stay due: see `hopnhat drill due` and "
            "`hopnhat_drill_nightly_systems`; consider widening `nightly_drills` in estate.yml.",
        ),
    )


def alert_groups(
    *,
    verify_max_age: timedelta = timedelta(hours=26),
    maintain_max_age: timedelta = timedelta(days=8),
    drill_max_age: timedelta = timedelta(hours=26),
    quota_percent: float = 90.0,
    quota_for: timedelta = timedelta(minutes=30),
) -> list[RuleGroup]:
    """hopnhat's alert rules, in groups.

    ``verify_max_age``: how long since the last verification before it counts as not run
    (it runs nightly: a day and some slack). ``maintain_max_age``: the same for each
    repository's last successful maintenance; ``drill_max_age`` for the nightly drills.
    ``quota_percent``: a repository's use of its
    quota that warns, once it has held for ``quota_for`` (the use swings while a backup
    or a prune runs). Raises ValueError for a duration that is not positive or a percentage outside
    (0, 100]."""
    for name, value in (("verify_max_age", verify_max_age),
                        ("maintain_max_age", maintain_max_age),
                        ("drill_max_age", drill_max_age)):
        if value.total_seconds() < 1:
            raise ValueError(f"{name} must be at least a second, not {prometheus_duration(value)}")
    if quota_for.total_seconds() < 0:
        raise ValueError("quota_for cannot be negative")
    if not 0 < quota_percent <= 100:
        raise ValueError(f"quota_percent must be above 0 and at most 100, not {quota_percent:g}")
    return [
        RuleGroup("hopnhat-verify", _verify_rules(verify_max_age)),
        RuleGroup("hopnhat-attack-signs", _attack_rules()),
        RuleGroup("hopnhat-backup-job", _backup_rules()),
        RuleGroup("hopnhat-maintain", _maintain_rules(maintain_max_age)),
        RuleGroup("hopnhat-quota", _quota_rules(quota_percent, quota_for)),
        RuleGroup("hopnhat-drill", _drill_rules(drill_max_age)),
    ]


def rules_document(groups: list[RuleGroup]) -> dict[str, Any]:
    """The rule file's content as data: ``{"groups": [...]}``."""
    return {"groups": [group.as_dict() for group in groups]}


_HEADER = """\
# hopnhat's Prometheus alert rules (made by `hopnhat alerts`; edit the options, not this file).
# List this file under `rule_files:` in prometheus.yml, check it with
# `promtool check rules FILE`, then reload Prometheus.
"""


class _Dumper(yaml.SafeDumper):
    """Safe YAML, with text of several lines (a long expression) as a literal block."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value,
                                   style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def render_rules(groups: list[RuleGroup]) -> str:
    """The Prometheus rule file (YAML) of ``groups``, Vietnamese written as is."""
    # one line per value: folded lines would split ``{{ $labels.x }}`` templates in two
    body = yaml.dump(rules_document(groups), Dumper=_Dumper, allow_unicode=True,
                     sort_keys=False, width=1 << 20, default_flow_style=False)
    return _HEADER + body
