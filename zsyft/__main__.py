"""`python -m zsyft ...` is the `zsyft` command (launch, status, stop, bench)."""

from launcher.cli import main

main(prog_name="zsyft")
