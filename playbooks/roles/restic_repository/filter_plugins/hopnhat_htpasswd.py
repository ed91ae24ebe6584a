"""``user | hopnhat_htpasswd(password)``: rest-server's htpasswd line for one user (bcrypt),
the same line for the same password so a rewritten file changes nothing.

It is hopnhat's own function (:func:`orchestrator.estate.endpoints.htpasswd_line`, which the
lab uses too), run on the controller where hopnhat is installed.
"""

from __future__ import annotations

from typing import Any

from orchestrator.estate.endpoints import htpasswd_line


def hopnhat_htpasswd(user: str, password: str) -> str:
    return htpasswd_line(user, password)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"hopnhat_htpasswd": hopnhat_htpasswd}
