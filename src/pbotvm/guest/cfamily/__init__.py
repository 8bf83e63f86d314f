"""The C family in the guest: compile the host's preprocessed code, run the program, and
report through gdb what the original's guest-gdb reported (``run.run_request``).

``include/`` holds prelude.h and prelude.hpp, the headers its programs are compiled with,
installed as /usr/include/prelude.h and /usr/include/prelude.hpp (``provision.payload``).
"""
