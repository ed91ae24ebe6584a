"""The embedded lab of real parts (vcsim, sshd guests, repository host) — see docs/lab.md."""
