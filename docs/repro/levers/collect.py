"""Keep one finished run's scores here, as `rlvis.reproduction` reads them: NAME.json and NAME_search.json.

    python docs/repro/levers/collect.py runs/STEM STEM ["what the run is"]

NAME.json holds the run's step, wall time, encoder, config and final scores (`trained`), plus the foresight scores
of `rescore_foresight.py` (`foresight`) where the workdir has them; NAME_search.json is `rlvis.search --measure`'s
search_results.json where it exists.
"""

import json
import os
import sys


def main(workdir: str, name: str, note: str = "") -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(workdir, "results.json")) as f:
        results = json.load(f)
    run = dict(run=name, steps=results["steps"], wall_seconds=results["wall_seconds"], encoder=results["encoder"],
               trained=results["trained"], note=note, config=results["config"])
    rescored = os.path.join(workdir, "foresight.json")
    if os.path.exists(rescored):
        with open(rescored) as f:
            run["foresight"] = json.load(f)["scores"]
    with open(os.path.join(here, f"{name}.json"), "w") as f:
        json.dump(run, f, indent=1)
    search = os.path.join(workdir, "search_results.json")
    if os.path.exists(search):
        with open(search) as f, open(os.path.join(here, f"{name}_search.json"), "w") as out:
            json.dump(json.load(f), out, indent=1)
    print(f"wrote {os.path.join(here, name)}.json" + (" and its search" if os.path.exists(search) else ""))


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__.strip().splitlines()[2].strip())
    main(*sys.argv[1:])
