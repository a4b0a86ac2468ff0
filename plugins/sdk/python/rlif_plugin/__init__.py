"""Write rlif reward plugins in Python.

A whole plugin::

    #!/usr/bin/env python3
    from rlif_plugin import serve

    def score(group, args):
        # one float (or None: not applicable) per completion of the group
        return [float("\\\\boxed" in c.text) for c in group.completions]

    if __name__ == "__main__":
        serve(score, name="has-boxed")

The rlif host starts the executable (``plugin = "path"`` in a ``[[rewards]]`` table)
through go-plugin's gRPC protocol, with automatic mutual TLS, and calls it once per
training step. Reward plugin protocol version: 1.
"""

from .plugin import (
    PROTOCOL_VERSION,
    MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE,
    Arg,
    Completion,
    Group,
    serve,
)

__all__ = [
    "PROTOCOL_VERSION",
    "MAGIC_COOKIE_KEY",
    "MAGIC_COOKIE_VALUE",
    "Arg",
    "Completion",
    "Group",
    "serve",
]
