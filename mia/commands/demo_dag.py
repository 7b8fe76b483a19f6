"""``airflow dags test mia_retrain`` as the demo runs it: progress per task, logs per task.

``airflow dags test`` runs every task in its own process, one after the other, and writes their
logs to its output (not to ``$AIRFLOW_HOME/logs``); the DAG run and its task instances go to the
metadata database, so the Airflow UI shows the run afterwards. :class:`DagProgress` reads that
output line by line — Airflow 3's ``[DAG TEST] starting task_id=… map_index=…`` / ``end task``
markers, the state updates (``new_state=…``), the ``Returned value was: …`` of each task (its
XCom: ids and URIs, which name the mapped tasks and give the registered version) and the
exception of a failed task — and :func:`run_dag` writes the whole output to one file and each
task's section to its own, so a failure names the task and the log to read. Each section is also
copied where the api-server reads task logs (``$AIRFLOW_HOME/logs``, Airflow's default file
layout), so the run's log tabs in the Airflow UI are not empty.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from mia.commands._stack import DAG_ID, cwd, tool

_START: Final = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
_END: Final = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")
_STATE: Final = re.compile(r"Task instance state updated .*\bnew_state=(\w+)")
_RETURNED: Final = re.compile(r"Returned value was: (.*?)(?: \[[\w.]+\] loc=\S+)?$")
_FINISHED: Final = re.compile(r"DagRun Finished: dag_id=(\S+?), .*?\brun_id=([^,]+), .*?"
                              r"\bstate=(\w+)")
_CREATED: Final = re.compile(r"creating dag run .*\brun_id=(\S+)")
_TRY: Final = re.compile(r"\btry_number=(\d+)")
_STAMP: Final = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")
_CHAINED: Final = ("The above exception was the direct cause", "During handling of the above")


@dataclass(kw_only=True)
class TaskRun:
    """One task instance of the run, as its log section tells it.

    :param task_id: the task. :param map_index: its map index (-1: not mapped).
    :param state: the last state Airflow recorded (``success``, ``failed``, …).
    :param seconds: wall time from start to end marker.
    :param returned: the task's return value (its XCom), or None when unreadable.
    :param error: the exception that failed it (type, message and detail lines).
    :param log: the file holding its log section.
    :param try_number: the attempt (Airflow counts from 1).
    """

    task_id: str
    map_index: int
    try_number: int = 1
    state: str = "running"
    seconds: float = 0.0
    returned: Any = None
    error: list[str] = field(default_factory=list)
    log: Path | None = None

    @property
    def label(self) -> str:
        """``train ES sac fold 1``: the task and what its XCom says it worked on."""
        r = self.returned if isinstance(self.returned, Mapping) else {}
        parts = [self.task_id]
        if self.map_index >= 0:
            what = [str(r[k]) for k in ("symbol", "agent") if k in r]
            if "fold" in r:
                what.append(f"fold {r['fold']}")
            parts += what or [f"[{self.map_index}]"]
        return " ".join(parts)

    @property
    def note(self) -> str:
        """A few words from the XCom: a Sharpe ratio, ensemble weights, the registered version."""
        r = self.returned
        if not isinstance(r, Mapping):
            return ""
        if "version" in r and "passed" in r:
            return f"mia-{r.get('symbol', '?')} v{r['version']} " + \
                ("PASSED the gate" if r["passed"] else "REJECTED by the gate")
        if isinstance(r.get("weights"), Mapping):
            return "weights " + " ".join(f"{a} {float(w):.2f}" for a, w in r["weights"].items())
        if isinstance(r.get("built"), Mapping):
            return "built " + ", ".join(f"{s} {n}" for s, n in r["built"].items())
        if r.get("sharpe") is not None:
            return f"validation Sharpe {float(r['sharpe']):.2f}"
        return ""


class DagProgress:
    """Folds the output of ``airflow dags test`` into :class:`TaskRun` records (module doc)."""

    def __init__(self) -> None:
        self.tasks: list[TaskRun] = []
        self.run_id: str | None = None
        self.state: str | None = None
        self._current: TaskRun | None = None
        self._started = 0.0
        self._traceback = False
        self._message = False

    @property
    def current(self) -> TaskRun | None:
        """The task whose section is being read, if any."""
        return self._current

    def feed(self, line: str, now: float) -> tuple[str, TaskRun] | None:
        """Read one line.

        :param line: the line, without its newline. :param now: a monotonic time, seconds.
        :return: ``("start", task)`` or ``("end", task)`` at a task marker, else None.
        """
        if m := _START.search(line):
            self._current = TaskRun(task_id=m[1], map_index=int(m[2]))
            self._started, self._traceback = now, False
            self.tasks.append(self._current)
            return "start", self._current
        task = self._current
        if m := _END.search(line):
            if task is not None:
                task.seconds = now - self._started
                self._current = None
                return "end", task
            return None
        if m := _FINISHED.search(line):
            self.run_id, self.state = m[2], m[3]
        elif (m := _CREATED.search(line)) and self.run_id is None:
            self.run_id = m[1]
        if task is not None:
            self._task_line(task, line)
        return None

    def _task_line(self, task: TaskRun, line: str) -> None:
        if self._traceback:
            if _STAMP.match(line):
                self._traceback = False
            else:
                self._exception_line(task, line)
                return
        if (m := _TRY.search(line)) and "RuntimeTaskInstance(" in line:
            task.try_number = int(m[1])
        if m := _STATE.search(line):
            task.state = m[1]
        elif "Task failed with exception" in line:
            self._traceback, self._message = True, False
            task.error = []
        elif m := _RETURNED.search(line):
            try:
                task.returned = ast.literal_eval(m[1])
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                task.returned = None  # not a literal (a custom object): the XCom stays unread

    def _exception_line(self, task: TaskRun, line: str) -> None:
        # a Python traceback: frames are indented; the exception line is not, and its message
        # may go on for several lines (GX lists the failed expectations) until the next log line
        if line.startswith("Traceback (most recent call last)") or line.startswith(_CHAINED):
            self._message = False
            task.error = []
        elif self._message:
            task.error.append(line)
        elif line and not line[0].isspace():
            self._message = True
            task.error = [line]

    def failed(self) -> list[TaskRun]:
        """:return: the tasks whose last state is ``failed``."""
        return [t for t in self.tasks if t.state == "failed"]

    def returned(self, task_id: str) -> list[Any]:
        """:return: the return values of ``task_id``'s instances, in map-index order."""
        found = sorted((t for t in self.tasks if t.task_id == task_id), key=lambda t: t.map_index)
        return [t.returned for t in found]


@dataclass(frozen=True, kw_only=True)
class DagRun:
    """A finished ``airflow dags test``.

    :param exit_code: its exit code. :param run_id: the DAG run id (None if none was made).
    :param state: the run's final state. :param progress: every task read.
    :param log: the whole output. :param seconds: wall time.
    """

    exit_code: int
    run_id: str | None
    state: str | None
    progress: DagProgress
    log: Path
    seconds: float

    @property
    def ok(self) -> bool:
        """The command succeeded and the run is ``success``."""
        return self.exit_code == 0 and self.state == "success"

    def failure(self) -> str:
        """:return: what failed, why, and which logs to read (for a run that is not :attr:`ok`)."""
        failed = self.progress.failed()
        head = (f"{DAG_ID} run {self.run_id or '(not created)'} ended "
                f"{self.state or 'without a state'}")
        if not failed:
            return (f"{head} (airflow exit {self.exit_code}) before any task failed; the end of "
                    f"its output:\n{_tail(self.log)}\nfull log: {self.log}")
        lines = [f"{head}: {len(failed)} task(s) failed"]
        for t in failed:
            lines.append(f"  {t.label}: " + ("\n    ".join(t.error[:12]) or "no exception logged"))
            lines.append(f"    task log: {t.log}")
        lines.append(f"  whole run: {self.log} ({len(self.progress.tasks)} task(s) ran; those "
                     "downstream of a failure did not); fix the cause and rerun: reruns "
                     "overwrite their outputs")
        return "\n".join(lines)


def _tail(path: Path, n: int = 12) -> str:
    text = path.read_text(errors="replace").splitlines() if path.is_file() else []
    return "\n".join(text[-n:])


def _publish(task: TaskRun, run_id: str | None, base: Path | None) -> None:
    if base is None or run_id is None or task.log is None:
        return
    target = airflow_log(base, run_id, task)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(task.log, target)


def _task_file(folder: Path, task: TaskRun) -> Path:
    suffix = f".{task.map_index}" if task.map_index >= 0 else ""
    return folder / f"{task.task_id}{suffix}.log"


def airflow_log(base: Path, run_id: str, task: TaskRun) -> Path:
    """Where the api-server looks for a task's log: Airflow's default ``log_filename_template``
    under ``base_log_folder`` (``$AIRFLOW_HOME/logs``)."""
    index = f"map_index={task.map_index}/" if task.map_index >= 0 else ""
    return (base / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task.task_id}"
            / f"{index}attempt={task.try_number}.log")


def dags_test_command(conf: Mapping[str, Any]) -> list[str]:
    """:param conf: the run's params (``symbols``, ``timesteps``). :return: the command line."""
    return [tool("airflow"), "dags", "test", DAG_ID, "-c", json.dumps(dict(conf))]


def run_dag(env: Mapping[str, str], conf: Mapping[str, Any], logs: Path, *,
            show: Callable[[str, TaskRun], None], airflow_logs: Path | None = None,
            command: Sequence[str] | None = None) -> DagRun:
    """Run ``airflow dags test mia_retrain`` and follow it.

    :param env: the stack's environment (:func:`mia.commands._stack.stack_env`).
    :param conf: the run's params.
    :param logs: folder for ``dags_test.log`` and ``tasks/<task>[.<map_index>].log``.
    :param show: called with ``("start" | "end", task)`` at each task marker.
    :param airflow_logs: Airflow's ``base_log_folder``: each task's section is copied there
        too, so the UI's log tab shows it (``dags test`` itself writes no log files).
    :param command: the command to run instead (tests); default :func:`dags_test_command`.
    """
    tasks_dir = logs / "tasks"
    tasks_dir.mkdir(parents=True, exist_ok=True)
    for old in tasks_dir.glob("*.log"):
        old.unlink()  # the sections of an earlier run would read as this run's
    whole = logs / "dags_test.log"
    progress = DagProgress()
    began = time.monotonic()
    section: IO[str] | None = None
    with whole.open("w") as out, subprocess.Popen(  # noqa: S603 - our own tool, no shell
            list(command or dags_test_command(conf)), env=dict(env), cwd=cwd(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1) as proc:
        if proc.stdout is None:  # stdout=PIPE always gives a stream
            raise RuntimeError("subprocess without stdout")
        try:
            for raw in proc.stdout:
                out.write(raw)
                event = progress.feed(raw.rstrip("\n"), time.monotonic())
                if event is not None and event[0] == "start":
                    event[1].log = _task_file(tasks_dir, event[1])
                    section = event[1].log.open("w")
                if section is not None:
                    section.write(raw)
                if event is not None:
                    if event[0] == "end" and section is not None:
                        section.close()
                        section = None
                        _publish(event[1], progress.run_id, airflow_logs)
                    show(*event)
        except KeyboardInterrupt:
            proc.terminate()  # the child of this call only
            proc.wait(timeout=30)
            raise
        finally:
            if section is not None:
                section.close()
        code = proc.wait()
    return DagRun(exit_code=code, run_id=progress.run_id, state=progress.state,
                  progress=progress, log=whole, seconds=time.monotonic() - began)
