"""`zsyft bench`: zsyft measured next to bare pyzmq doing the same wire work, in one run.

Each row of the benchmark pairs one zsyft measurement with a baseline that moves the very
frames zsyft moves (captured from a real zsyft exchange) between two processes over the same
kind of socket, using nothing but pyzmq. Absolute numbers depend on the machine; the ratio
zsyft/bare is what says how much zsyft itself costs.

- `runner.run(quick, echo)`: the entry point behind `zsyft bench`; returns the rows.
- `base`: what a measured case is (`Case`, `Plan`) and the bare replay loop.
- `cases`: the rows on one worker and the table order (add new ones to `cases.CASES`).
- `chains`: the rows across workers: op latency per pointer-chain hop, `move` of a big tensor.
- `encrypted`: rows on secret-shared tensors (mul, matmul, ReLU, training), no baseline.
- `env`: the processes a run starts (zsyft workers, the bare server), all stopped at the end.
- `bare` / `bare_server`: the pyzmq-only client and the echo-server process.
- `capture`: records the frames a zsyft worker handle sends and receives.
- `report`: rows, medians, ratios and the printed table.

This package imports neither torch nor zsyft's runtime at import time, so that
`python -m zsyft.bench.bare_server` starts as fast as a plain pyzmq program.
"""
