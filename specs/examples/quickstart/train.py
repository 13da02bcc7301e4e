"""Train an iris classifier and save it with joblib as iris.pkl, beside this file."""

from pathlib import Path

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

features, labels = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=1000).fit(features, labels)
joblib.dump(model, Path(__file__).with_name("iris.pkl"))
