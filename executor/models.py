"""Which bundles the executor runs, and swapping them without stopping (issue 7, item 3).

:class:`ModelWatcher` polls the registry (``production`` and ``canary`` aliases of
``mia-<SYMBOL>``, and the canary's ``canary_share`` tag) every ``executor.poll_seconds`` in a
background thread. On a change it downloads the version's bundle, verifies it
(:func:`mia.registry.bundle.read_bundle`: format, hashes, buildable spec), builds a
:class:`~executor.slot.ModelSlot` and warms it on a copy of the loop's recent input rows; the loop
then feeds it the rows that arrived meanwhile and swaps it in *between* ticks
(:meth:`ModelWatcher.take`). A failed poll or load never stops trading: the running model stays,
an alert goes out, the next poll tries again. MLflow is imported only here, in the watcher thread.

Offline (``models.source: local``) the bundles are directory paths and nothing is polled.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from executor.slot import ModelSlot

log = logging.getLogger("mia.executor.models")


@dataclass(frozen=True, kw_only=True)
class Wanted:
    """What the registry says should run.

    :param production: production's version, or None. :param canary: the canary's, or None.
    :param share: the canary's capital share (0 without a canary).
    """

    production: str | None
    canary: str | None
    share: float


@dataclass(kw_only=True)
class Swap:
    """A slot loaded and warmed in the background, waiting for the loop.

    :param slot_name: ``production`` or ``canary``. :param slot: the new slot, or None to empty
        the canary slot. :param warmed_to: the last row sequence it has seen.
    """

    slot_name: str
    slot: ModelSlot | None
    warmed_to: int


class ModelWatcher:
    """Polls the registry and prepares swaps (module docstring).

    :param cfg: the MIA configuration (MLflow URI from the environment).
    :param symbol: the symbol whose model ``mia-<SYMBOL>`` to follow.
    :param history: returns ``(last_seq, rows)``: a copy of the loop's recent input rows.
    :param alert: called with (level, code, message) on a failed poll or load.
    :param poll_seconds: seconds between polls.
    :param load_slot: builds a slot from a verified bundle directory and its version
        (default :meth:`ModelSlot.load`; the live process's times its stages).
    """

    def __init__(self, cfg: Any, symbol: str, *,
                 history: Callable[[], tuple[int, np.ndarray]],
                 alert: Callable[[str, str, str], None], poll_seconds: float,
                 load_slot: Callable[[Path, str], ModelSlot] = ModelSlot.load) -> None:
        self.cfg, self.symbol = cfg, symbol
        self._history, self._alert = history, alert
        self._load_slot = load_slot
        self._poll = poll_seconds
        self._lock = threading.Lock()
        self._swaps: list[Swap] = []
        self._running: dict[str, str | None] = {"production": None, "canary": None}
        self.share = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._clear: list[str] = []  # reasons to clear the canary alias (automatic rollback)
        self.failures = 0

    # --- loop side -------------------------------------------------------------------------

    def start(self) -> None:
        """Start polling in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="mia-model-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (waits for the current poll)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._poll + 30)

    def take(self) -> list[Swap]:
        """:return: the swaps ready since the last call (the loop applies them between ticks)."""
        with self._lock:
            out, self._swaps = self._swaps, []
        return out

    def attach(self, *, history: Callable[[], tuple[int, np.ndarray]],
               alert: Callable[[str, str, str], None]) -> None:
        """Point the watcher at the loop it serves, before :meth:`start`.

        :param history: the loop's recent input rows (``Executor.history``).
        :param alert: where its alerts go (level, code, message); not the journal: its thread
            is not the journal's writer.
        """
        self._history, self._alert = history, alert

    def running(self, slot_name: str, version: str | None) -> None:
        """Tell the watcher what the loop runs (after a swap or at start)."""
        with self._lock:
            self._running[slot_name] = version

    def clear_canary(self, reason: str) -> None:
        """Ask the watcher to clear the canary alias in the registry (automatic rollback); the
        loop has already set the canary's share to 0 locally."""
        with self._lock:
            self._clear.append(reason)

    # --- watcher thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self._poll)

    def poll_once(self) -> None:
        """One poll: clear requests, the aliases, then a load for each changed slot."""
        try:
            self._do_clears()
            wanted = self.wanted()
        except Exception as exc:  # noqa: BLE001 - MLflow down: trading goes on
            self.failures += 1
            self._alert("warning", "registry_unreachable",
                        f"registry poll failed ({type(exc).__name__}: {exc}); keeping the running "
                        "models, retrying next poll")
            return
        self.share = wanted.share if wanted.canary is not None else 0.0
        for slot_name, version in (("production", wanted.production),
                                   ("canary", wanted.canary)):
            with self._lock:
                current = self._running[slot_name]
            if version == current:
                continue
            if version is None:
                self._queue(Swap(slot_name=slot_name, slot=None, warmed_to=-1))
                continue
            try:
                slot = self.load(version)
                seq, rows = self._history()
                slot.warm(rows)
            except Exception as exc:  # noqa: BLE001 - a bad bundle never replaces a running one
                self.failures += 1
                self._alert("critical", "model_load_failed",
                            f"{slot_name} v{version} of mia-{self.symbol} could not be loaded "
                            f"({type(exc).__name__}: {exc}); keeping v{current}")
                continue
            self._queue(Swap(slot_name=slot_name, slot=slot, warmed_to=seq))

    def _queue(self, swap: Swap) -> None:
        with self._lock:
            self._swaps.append(swap)
            self._running[swap.slot_name] = None if swap.slot is None else swap.slot.version

    def wanted(self) -> Wanted:
        """:return: the registry's aliases and canary share (raises when MLflow is down)."""
        from mia.registry.models import status

        st = status(self.cfg, self.symbol)
        by = {a.alias: a for a in st.aliases}
        canary = by["canary"].version
        share = by["canary"].share if canary is not None else 0.0
        return Wanted(production=by["production"].version, canary=canary,
                      share=float(share) if share is not None and share == share else 0.0)

    def load(self, version: str) -> ModelSlot:
        """Download and verify one version's bundle. :raises: on any failure."""
        import mlflow

        # a service's log is no terminal: no progress bar per artifact in journalctl
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        dst = Path(tempfile.mkdtemp(prefix=f"mia-{self.symbol}-v{version}-"))
        try:  # the slot holds the verified bytes: the download is not needed after the load
            local = Path(mlflow.artifacts.download_artifacts(
                f"models:/mia-{self.symbol}/{version}", dst_path=str(dst)))
            found = sorted(p.parent for p in local.rglob("bundle.json"))
            if not found:
                raise FileNotFoundError(f"mia-{self.symbol} v{version} holds no bundle")
            return self._load_slot(found[0], version)
        finally:
            shutil.rmtree(dst, ignore_errors=True)

    def _do_clears(self) -> None:
        with self._lock:
            reasons, self._clear = self._clear, []
        if not reasons:
            return
        from mia.registry.aliases import clear_canary

        try:
            clear_canary(self.cfg, self.symbol, reason="; ".join(reasons), user="mia-executor")
        except Exception:
            with self._lock:  # try again next poll; the share is already 0 locally
                self._clear = reasons + self._clear
            raise
