"""Session-wide test setup.

A shell without job control starts background commands (``make test &``) with SIGINT ignored, and
children inherit an ignored signal: the CLI would then, as a Unix program should, ignore the SIGINT that
the interrupt tests send it. Each test process installs Python's own handler instead, so the children it
starts begin with SIGINT at its default (a handler is reset on exec, an ignored signal is not).
"""

import signal

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
