"""Train the diabetes Ridge regression (as ../diabetes/train.py does) and convert it to ONNX.

skl2onnx writes the fitted model as an ONNX graph (float32 input "input", shape [N, 10]);
onnxruntime serves it, without scikit-learn in the web service's environment. Writes
diabetes.onnx beside this file.

    pip install skl2onnx     # in mlctl's test extra
    python specs/examples/onnx/train.py
"""

from pathlib import Path

from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge


def main() -> None:
    features, target = load_diabetes(return_X_y=True)
    model = Ridge().fit(features, target)  # the same fit as the pickle of ../diabetes
    onnx_model = to_onnx(model, initial_types=[("input", FloatTensorType([None, features.shape[1]]))])
    out = Path(__file__).with_name("diabetes.onnx")
    out.write_bytes(onnx_model.SerializeToString())
    print(f"saved {out}")


if __name__ == "__main__":
    main()
