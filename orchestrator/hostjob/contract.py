"""What the control host and the backup job on each host agree on, in one place that both
import: where the job and its files are on a host, how it is started, and the names of its
results with their exit codes.

The paths are the ``backup_schedule`` role's defaults (``defaults/main.yml`` and the job's
config template; ``tests/unit/hostjob`` keeps the three in step). Standard library only: the
role copies this module to each host with the job.
"""

from __future__ import annotations

from orchestrator.errors import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL

# --- where the job is and how it is started ---------------------------------------------------

#: the service's ExecStart is "<python> -S <job> --config <config>": -S, no site-packages —
#: the job needs only the standard library and the modules copied beside it, and Python
#: starts in about a quarter of the time
JOB_PYTHON = "/usr/bin/python3"
JOB_PYTHON_FLAGS = ("-S",)
#: the job's folder on a host: the entry point, and the modules it imports under orchestrator/
LIBRARY_DIR = "/usr/local/lib/hopnhat"
JOB_SCRIPT = f"{LIBRARY_DIR}/backup_job.py"
#: the job's config (JSON, rendered by the role), one per system
JOB_CONFIG = "/etc/hopnhat/backup-{code}.json"
#: the systemd service that runs it (``.service``) and its timer (``.timer``), one per system
JOB_UNIT = "hopnhat-backup-{code}"

# --- what it leaves behind ----------------------------------------------------------------------

#: the folder of the status files, the locks and restic's version (:data:`VERSION_CACHE`)
STATE_DIR = "/var/lib/hopnhat"
#: the last run's status document (JSON), which ``backup status`` reads back
JOB_STATUS = f"{STATE_DIR}/backup-{{code}}.json"
#: the last run's Prometheus textfile, for node_exporter's textfile collector
JOB_TEXTFILE = f"{STATE_DIR}/textfile/hopnhat_backup_{{code}}.prom"
#: the manifests of the database dumps (``<name>.json``), which each files snapshot carries
DUMPS_DIR = f"{STATE_DIR}/dumps"
#: restic's version, kept beside the status files (a file name)
VERSION_CACHE = "restic-version.json"

# --- its results --------------------------------------------------------------------------------

OK, PARTIAL, FAILED, REFUSED = "ok", "partial", "failed", "refused"
#: the results a status file can hold, from best to worst (a refused run writes none)
RESULTS = (OK, PARTIAL, FAILED)
EXIT_CODES = {OK: EXIT_OK, PARTIAL: EXIT_PARTIAL, FAILED: EXIT_FAILURE, REFUSED: EXIT_FAILURE}
