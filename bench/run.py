#!/usr/bin/env python3
"""bench/run.py: the old spelling of bench/run, kept for operators' scripts (deprecated).

It says so on stderr and runs bench/run. The old --users flag (add the user-service scenarios) is
dropped: bench/run always runs them, with references, in one table."""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
args = [a for a in sys.argv[1:] if a != "--users"]
print("bench/run.py is deprecated: use bench/run (it runs every scenario, the user service's "
      "included; see the README's benchmark section)", file=sys.stderr)
os.execv(os.path.join(here, "run"), [os.path.join(here, "run")] + args)
