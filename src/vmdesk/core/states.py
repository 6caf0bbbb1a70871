"""The run states a user sees; derived from the supervisor and the engine, never stored."""

from __future__ import annotations

STATES = ("stopped", "starting", "running", "paused", "stopping", "suspended", "crashed",
          "unresponsive")  # fmt: skip
# unresponsive: its hypervisor runs but does not answer (stopped, or hung); stop and kill
# still end it.
# States in which nothing runs: the VM can be started, edited or deleted.
ENDED = ("stopped", "crashed")
# States in which no process holds the VM (a suspended one waits, saved, in its bundle).
AT_REST = (*ENDED, "suspended")
