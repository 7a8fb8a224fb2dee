"""A CSV logger that keeps a run's earlier rows when the run is resumed.

Lightning's :class:`~lightning.pytorch.loggers.CSVLogger` deletes ``metrics.csv`` when its folder
already exists, so ``resume=auto`` would lose every row logged before the interruption.
:class:`ResumableCSVLogger` appends to the existing file instead (same folder, same header; a new
metric column rewrites the file with the wider header, keeping all rows). Rows logged after the
last checkpoint of the interrupted run stay, so their step numbers appear twice: readers keep the
last row of each step.
"""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class AppendingExperimentWriter(ExperimentWriter):
    """An ``ExperimentWriter`` that continues an existing ``metrics.csv`` instead of deleting it."""

    def _check_log_dir_exists(self) -> None:
        """Adopt the existing file's header so later rows are appended under the same columns."""
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            header = next(csv.reader(file), [])
        self.metrics_keys = [k for k in header if k]


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` whose ``metrics.csv`` survives a resume (see the module docstring).

    Takes :class:`~lightning.pytorch.loggers.CSVLogger`'s arguments; give a fixed ``version``
    (e.g. ``""``) so a resumed run writes into the same folder.
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        """The experiment writer (created on first use)."""
        if self._experiment is not None:
            return self._experiment
        self._fs.makedirs(self.root_dir, exist_ok=True)
        self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
