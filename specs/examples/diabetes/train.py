"""Train the Azure ML diabetes example: scikit-learn Ridge regression on the diabetes data set.

The data set ships with scikit-learn (no download). Writes sklearn_regression_model.pkl beside
this file, the name the Azure ML tutorial uses.

    python specs/examples/diabetes/train.py
"""

from pathlib import Path

import joblib
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge


def main() -> None:
    features, target = load_diabetes(return_X_y=True)
    model = Ridge().fit(features, target)
    out = Path(__file__).with_name("sklearn_regression_model.pkl")
    joblib.dump(model, out)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
