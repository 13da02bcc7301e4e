"""Entry script for bench/reliability.py: answers, raises or sleeps as the request asks."""

import json
import time


def init():
    pass


def run(raw_data):
    data = json.loads(raw_data)  # malformed JSON raises here: a 500, as any error of run()
    if data.get("raise"):
        raise RuntimeError("asked to raise")
    if data.get("sleep"):
        time.sleep(data["sleep"])
    return {"n": data.get("n")}
