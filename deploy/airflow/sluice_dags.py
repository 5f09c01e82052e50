"""sluice's batch duties for Airflow. `sluice stream` runs on its own (a long-running consumer
group member needs no scheduler); what does need one:

- ``sluice_verify`` (hourly): ``sluice verify`` of the lake against Kafka and, when given, a
  producer report; any gap, duplicate or unreadable file fails the task, with verify's account
  in its log.
- ``sluice_compact`` (nightly): ``sluice compact``, small files into large ones in one commit
  that changes no data; safe beside the running stream.
- ``sluice_backfill`` (every 10 minutes): waits for NDJSON drops in a directory, loads them with
  ``sluice load`` (loading a file twice lands nothing twice), then moves them to ``done/``.

Configured by environment variables of the Airflow workers (read when a task runs, never
when the file is parsed):

| variable | what | default |
|---|---|---|
| ``SLUICE_BIN`` | the sluice binary | ``sluice`` on PATH |
| ``SLUICE_PIPELINE`` | the pipeline file | required |
| ``SLUICE_VERIFY_REPORT`` | a producer report for ``verify --report`` | none |
| ``SLUICE_DROP_DIR`` | where NDJSON drops for backfills arrive | none: backfill waits |
| ``SLUICE_BACKFILL_STREAM`` | the stream the drops belong to | the pipeline's first |

Tested with real Airflow (deploy/README.md): the file imports without errors, and
``airflow dags test sluice_verify`` succeeds on a clean lake and fails on a planted gap.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator
from airflow.sensors.python import PythonSensor

START = datetime(2026, 1, 1)
DEFAULTS = {"owner": "sluice", "retries": 1, "retry_delay": timedelta(minutes=5)}


def sluice_dag(dag_id: str, description: str, schedule, **settings) -> DAG:
    """A DAG of sluice's, none of them catching up on missed intervals."""
    return DAG(
        dag_id=dag_id,
        description=description,
        schedule=schedule,
        start_date=START,
        catchup=False,
        default_args=DEFAULTS,
        tags=["sluice"],
        **settings,
    )


def sluice_command(*args: str) -> str:
    """A shell command line running sluice with `args`; the task inherits the worker's
    environment, where the settings are."""
    return " ".join(['"${SLUICE_BIN:-sluice}"', *args])


with sluice_dag(
    "sluice_verify", "The lake against Kafka (and a producer report): fails on any gap", "@hourly"
) as verify_dag:
    BashOperator(
        task_id="verify",
        bash_command=sluice_command(
            "verify", '--pipeline "$SLUICE_PIPELINE"',
            '${SLUICE_VERIFY_REPORT:+--report "$SLUICE_VERIFY_REPORT"}',
        ),
        retries=0,
    )

with sluice_dag(
    "sluice_compact", "Small files into target-size files, one commit per table", "@daily"
) as compact_dag:
    BashOperator(
        task_id="compact",
        bash_command=sluice_command("compact", '--pipeline "$SLUICE_PIPELINE"'),
    )


def drops() -> list[Path]:
    folder = os.environ.get("SLUICE_DROP_DIR")
    return sorted(Path(folder).glob("*.ndjson")) if folder else []


def load_drops() -> None:
    """Loads every drop waiting, then moves it to done/ (a file loaded again lands nothing)."""
    files = drops()
    if not files:
        return
    args = [os.environ.get("SLUICE_BIN", "sluice"), "load", "--pipeline", os.environ["SLUICE_PIPELINE"]]
    if os.environ.get("SLUICE_BACKFILL_STREAM"):
        args += ["--stream", os.environ["SLUICE_BACKFILL_STREAM"]]
    subprocess.run([*args, *map(str, files)], check=True)
    done = files[0].parent / "done"
    done.mkdir(exist_ok=True)
    for file in files:
        shutil.move(str(file), done / file.name)


with sluice_dag(
    "sluice_backfill",
    "NDJSON drops into the lake with sluice load",
    timedelta(minutes=10),
    max_active_runs=1,
) as backfill_dag:
    waiting = PythonSensor(
        task_id="wait_for_drops",
        python_callable=lambda: bool(drops()),
        poke_interval=60,
        timeout=9 * 60,
        mode="reschedule",
        soft_fail=True,
    )
    loading = PythonOperator(task_id="load", python_callable=load_drops)
    waiting >> loading
