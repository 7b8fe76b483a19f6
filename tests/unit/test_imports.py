import subprocess
import sys

HEAVY = ("torch", "mlflow", "airflow", "stable_baselines3", "sklearn", "great_expectations",
         "evidently", "shap", "numba")


def test_importing_mia_and_its_cli_stays_cheap():
    code = (
        "import sys, mia, mia.cli, mia.config, mia.clock, mia.errors, mia.types; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_data_store_and_schema_import_no_training_stack():
    code = (
        "import sys, mia.data.store, mia.data.ingest, mia.data.calendar; "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
