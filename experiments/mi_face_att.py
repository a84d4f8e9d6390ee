"""MI-FACE on the AT&T faces: softmax, MLP and DAE targets, every label, three stopping modes.

A thin driver over :mod:`jaxreform.attacks.mi_face_job` (also ``jaxreform attack mi-face``).

Usage:
    python experiments/mi_face_att.py --data-dir ../shared/data --out runs/mi-face-att
"""

from __future__ import annotations

import argparse

from jaxreform.attacks import mi_face_targets
from jaxreform.attacks.mi_face_job import ExperimentConfig, render_markdown, run_mi_face_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--targets", nargs="+", default=["softmax", "mlp", "dae"],
                        choices=mi_face_targets.TARGET_KINDS)
    parser.add_argument("--max-steps", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    config = ExperimentConfig(data_dir=args.data_dir, targets=tuple(args.targets),
                              max_steps=args.max_steps, seed=args.seed)
    payload = run_mi_face_job(config, args.out, overwrite=args.overwrite)
    print(render_markdown(payload))


if __name__ == "__main__":
    main()
