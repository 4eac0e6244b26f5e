"""The exception a run stops with when something it depends on failed for good (a rollout worker past
its retries, a reward that did not answer within its timeout): the trainer saves what the finished
steps learned and says, in the message, what was saved and how to continue. The CLI prints that message
as its error and exits 1, a run that stopped (2 is kept for bad input, 130/143 for signals)."""


class RunStopped(RuntimeError):
    """A run stopped for a cause its message names, with what was saved and how to continue."""
