"""Train the handwriting example: logistic regression on the 8x8 digits data set.

The data set ships with scikit-learn (no download). Writes digits_model.pkl beside this file.

    python specs/examples/digits/train.py
"""

from pathlib import Path

import joblib
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression


def main() -> None:
    images, labels = load_digits(return_X_y=True)
    model = LogisticRegression(max_iter=5000).fit(images / 16.0, labels)
    out = Path(__file__).with_name("digits_model.pkl")
    joblib.dump(model, out)
    print(f"saved {out} (training accuracy {model.score(images / 16.0, labels):.3f})")


if __name__ == "__main__":
    main()
