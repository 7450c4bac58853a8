"""CI's script refuses to run without the complete GLUE files beside the checkout, in one clear line."""
import shutil
import subprocess
from pathlib import Path

CI_RUN = Path(__file__).resolve().parents[1] / ".ci" / "run"


def test_ci_fails_loudly_without_the_complete_data_beside_the_checkout(tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy(CI_RUN, checkout / ".ci" / "run")
    result = subprocess.run(["bash", str(checkout / ".ci" / "run")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and str(tmp_path / "shared" / "data" / "glue") in result.stderr
