"""Runs the seed notebook headless (nbclient) and prints every code cell with
what it showed, as Jupyter would; writes the executed notebook next to the
logs. Used by ``scripts/notebook.sh``; needs a live stack with Python
workers serving ``notebook_funcs``."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def shown(output: nbformat.NotebookNode) -> str:
    if output.output_type == "stream":
        return output.text
    if output.output_type in ("execute_result", "display_data"):
        return output.data.get("text/plain", "") + "\n"
    if output.output_type == "error":
        # The traceback as Jupyter prints it, without its colours.
        import re

        text = "\n".join(output.traceback)
        return re.sub(r"\x1b\[[0-9;]*m", "", text) + "\n"
    return ""


def wait_for_python_workers(n: int, within: float = 60) -> None:
    """Until `n` Python workers that accept code have started their pools
    and announced: the notebook's functions, defined in its cells, travel as
    code, which only the `code` queue's workers run."""
    import time

    import warren

    client = warren.Client()
    deadline = time.monotonic() + within
    while True:
        live = [w for w in client.info()["workers"] if "code" in w["queues"]]
        if len(live) >= n:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n} Python workers accepting code did not start within {within}s")
        time.sleep(0.2)


def main(out: str) -> int:
    wait_for_python_workers(2)
    nb = nbformat.read(HERE / "dask-futures-notebook.ipynb", as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}
    ).execute()
    nbformat.write(nb, out)
    n = 0
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        n += 1
        print(f"In [{n}]:\n{c.source}\n")
        text = "".join(shown(o) for o in c.outputs)
        if text:
            print(f"Out[{n}]:\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "executed.ipynb"))
