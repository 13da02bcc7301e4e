"""MLflow models saved by MLflow itself (mlflow-skinny, in a subprocess), shared by the no-code tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

CUSTOM_MODEL = '''
import mlflow.pyfunc


class Scaled(mlflow.pyfunc.PythonModel):
    """Adds the columns a and b, times params["scale"] (default 1)."""

    def predict(self, context, model_input, params=None):
        scale = (params or {}).get("scale", 1.0)
        return ((model_input["a"] + model_input["b"]) * scale).to_numpy()
'''


def save_models(folder: Path) -> tuple[Path, Path]:
    """An MLflow sklearn model (a Ridge on columns x0..x2) and a custom pyfunc (columns a, b; param scale),
    saved in ``folder`` by MLflow itself in a subprocess; returns their folders."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "save_models.py"
    (folder / "custom_model.py").write_text(CUSTOM_MODEL)
    script.write_text(SAVE_MODELS)
    subprocess.run([sys.executable, str(script), str(folder)], check=True, timeout=300, cwd=folder)
    return folder / "sklearn", folder / "custom"


def pyfunc_predict(model: Path, split: dict[str, Any]) -> Any:
    """MLflow's own answer (``mlflow.pyfunc.load_model(model).predict``, in a subprocess) to the data
    frame ``split`` (pandas split orientation: ``columns``, ``data``), as JSON values: the oracle a
    deployed service's predictions are compared with."""
    code = (
        "import json, sys, mlflow.pyfunc, pandas as pd\n"
        "split = json.loads(sys.argv[2])\n"
        "frame = pd.DataFrame(split['data'], columns=split['columns'], dtype='float64')\n"
        "print(json.dumps(mlflow.pyfunc.load_model(sys.argv[1]).predict(frame).tolist()))\n"
    )
    args = [sys.executable, "-c", code, str(model), json.dumps(split)]
    done = subprocess.run(args, check=True, timeout=300, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


SAVE_MODELS = """
import sys
from pathlib import Path

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import Ridge

sys.path.insert(0, str(Path(__file__).parent))
from custom_model import Scaled

out = Path(sys.argv[1])
x = pd.DataFrame({"x0": [1.0, 2.0, 3.0, 4.0], "x1": [0.0, 1.0, 0.0, 1.0], "x2": [5.0, 3.0, 1.0, 0.0]})
model = Ridge(alpha=0.1).fit(x, x["x0"] * 2 + x["x1"] - x["x2"])
mlflow.sklearn.save_model(
    model, out / "sklearn", signature=infer_signature(x, model.predict(x)), input_example=x[:2],
    serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE,
)
frame = pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]})
signature = infer_signature(frame, np.array([4.0, 6.0]), params={"scale": 1.0})
code = [str(out / "custom_model.py")]
mlflow.pyfunc.save_model(out / "custom", python_model=Scaled(), signature=signature, code_paths=code)
"""
