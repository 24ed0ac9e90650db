"""Progress display: bars (epochs and steps) on a terminal, one quiet line per epoch in logs.

The epoch line always goes through the logger (so into the job's log file, Hydra's
``<job>.log``), in bar mode as in line mode; in bar mode the logger's console handlers are
redirected through ``tqdm.write`` while the bars are shown (tqdm's own
``logging_redirect_tqdm``), so the line prints above the bars instead of breaking them, and
the file handlers are left as they are.
"""

from __future__ import annotations

import logging
import sys
from contextlib import ExitStack

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger("training")
MODES = ("auto", "bars", "lines", "off")


class Progress:
    def __init__(self, mode: str, epochs: int, steps_per_epoch: int, first_epoch: int = 1) -> None:
        if mode not in MODES:
            raise ValueError(f"trainer.progress={mode!r} is invalid; valid: {list(MODES)}")
        if mode == "auto":
            mode = "bars" if sys.stderr.isatty() else "lines"
        self.mode = mode
        self.steps_per_epoch = steps_per_epoch
        self.epochs = epochs
        self._outer = (tqdm(total=epochs, initial=first_epoch - 1, desc="epochs", position=0)
                       if mode == "bars" else None)
        self._inner: tqdm | None = None
        # bar mode: the console handlers of the root logger (where Hydra attaches its console
        # and file handlers) write through tqdm.write until close(); the file handler is untouched
        self._redirect = ExitStack()
        if self._outer is not None:
            self._redirect.enter_context(logging_redirect_tqdm())

    def start_epoch(self, epoch: int) -> None:
        if self._outer is not None:
            self._inner = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}", position=1,
                               leave=False)

    def step(self, loss: float | None = None) -> None:
        if self._inner is not None:
            self._inner.update(1)
            if loss is not None:
                self._inner.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        if self._inner is not None:
            self._inner.close()
        # val_acc first when there is a validation split: it is what sweeps select on
        val = f"val_acc {metrics['val_acc']:.2f}%  " if "val_acc" in metrics else ""
        line = (f"epoch {epoch}/{self.epochs}  train_loss {metrics['train_loss']:.4f}  {val}"
                f"test_loss {metrics['test_loss']:.4f}  test_acc {metrics['test_acc']:.2f}%  "
                f"{metrics['images_per_s']:.0f} img/s  {metrics['epoch_time_s']:.1f} s")
        if self._outer is not None:
            self._outer.update(1)
            self._outer.set_postfix(test_acc=f"{metrics['test_acc']:.2f}")
        if self.mode != "off":
            log.info(line)

    def close(self) -> None:
        for bar in (self._inner, self._outer):
            if bar is not None:
                bar.close()
        self._redirect.close()
