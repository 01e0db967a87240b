"""The `zoo` command: `fit|validate|test` (LightningCLI), `predict`, `eval`, `models`."""
from __future__ import annotations

import os
import sys

USAGE = """usage: zoo COMMAND [options]

commands:
  fit | validate | test   train / evaluate from a YAML config (LightningCLI): zoo fit --config FILE [--key value]
  predict                 label maps for images or NIfTI volumes: zoo predict (--ckpt FILE | --model NAME) INPUT --output DIR
                          (with --config FILE: LightningCLI's predict over the config's data module)
  eval                    Dice / IoU / HD95 / sensitivity / precision / accuracy (+ ROC AUC with --probs) of a
                          folder of predictions
  models                  list registered models

`zoo COMMAND --help` explains each command."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `zoo` console script."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    cmd, rest = argv[0], argv[1:]
    if cmd in ("fit", "validate", "test") or (cmd == "predict" and any(a.startswith("--config") for a in rest)):
        from zoo.lightning.cli import run_lightning_cli

        run_lightning_cli([cmd, *rest])
    elif cmd == "predict":
        from zoo.predict import predict_main

        raise SystemExit(predict_main(rest))
    elif cmd == "eval":
        from zoo.evaluate import eval_main

        raise SystemExit(eval_main(rest))
    elif cmd == "models":
        from zoo.models.listing import models_main

        raise SystemExit(models_main(rest))
    else:
        raise SystemExit(f"zoo: unknown command {cmd!r}; expected one of fit, validate, test, predict, eval, "
                         f"models\n\n{USAGE}")


if __name__ == "__main__":
    main()
