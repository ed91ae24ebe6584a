"""The backup job that runs on a host: ``hopnhat-backup-<code>.service`` starts it, and so
does an operator by hand (``python3 -S /usr/local/lib/hopnhat/backup_job.py --config …``), and
``hopnhat backup run`` over SSH.

One run (:mod:`~orchestrator.hostjob.run`), in this order:

1. take an exclusive ``flock`` on the job's lock file (:mod:`~orchestrator.hostjob.lock`) — a
   second run while one is going is refused (result ``refused``, exit 1) and leaves the status
   files alone;
2. run the pre-backup commands (e.g. ``sqlite3 app.db '.backup dump/app.db'``), each as an
   argv (split like a shell would, but never run by one); a failing command stops the run;
3. ``restic backup`` of the system's paths, tagged ``system=<code>``, ``tier=<n>`` and
   ``host=<name>``, with ``--host <name>``;
4. ``restic forget --prune`` by the system's retention, for this host's snapshots;
5. the optional second copy (``restic copy`` of the new snapshot to the copy repository);
6. a JSON status file (:mod:`~orchestrator.hostjob.status`) and a Prometheus textfile
   (:mod:`~orchestrator.hostjob.textfile`), each replaced atomically.

Results (:mod:`~orchestrator.hostjob.contract`, which the control side reads them by too):
``ok`` (exit 0); ``partial`` (exit 3) — a snapshot was made but is not the whole story: restic
exited 3 (unreadable files), or retention or the second copy failed; ``failed`` (exit 1) — no
snapshot. A bad config (:mod:`~orchestrator.hostjob.config`) exits 2.

A repository locked by a live process is waited for (``lock_wait_seconds``), then the stage
fails naming the holder and the lock's age; a lock restic itself calls stale (this host and its
process gone, or older than 30 minutes) is removed when it stands in the way, and the run after
a failed or partial one clears those the last run may have left
(:mod:`~orchestrator.hostjob.restic`). A failed write is reported as "no space" when the
repository's storage, asked for its free space (statvfs over SFTP), has less than
``NO_SPACE_BELOW`` left (:mod:`~orchestrator.hostjob.space`). The password is never read here:
restic gets the *path* of the password file (``RESTIC_PASSWORD_FILE``), so it is in no argv,
status file or log line.

Runs with the host's ``python3`` (3.11+) as ``python3 -S``: standard library plus this
package, hopnhat's restic adapter, :mod:`orchestrator.process`, :mod:`orchestrator.errors` and
:mod:`orchestrator.files`, which the ``backup_schedule`` role copies under
``<library dir>/orchestrator/`` (its ``vars/main.yml`` lists them), with the entry point
:mod:`~orchestrator.hostjob.backup_job` as ``<library dir>/backup_job.py``. This package's
``__init__`` imports nothing, so that the control side can import the contract alone.
"""
