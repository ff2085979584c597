"""Parses metrics text from stdin with the Prometheus project's own Python
parser and prints every sample as `name|label=value,...|value` (labels
sorted), one a line, for the metrics integration test to compare exactly.

Usage: parse.py prometheus|openmetrics < text
"""
import sys

from prometheus_client.openmetrics import parser as openmetrics
from prometheus_client import parser as prometheus


def main():
    fmt = sys.argv[1]
    text = sys.stdin.read()
    if fmt == "openmetrics":
        families = openmetrics.text_string_to_metric_families(text)
    elif fmt == "prometheus":
        families = prometheus.text_string_to_metric_families(text)
    else:
        sys.exit(f"unknown format {fmt!r}")
    for family in families:
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            v = sample.value
            value = str(int(v)) if v == int(v) else repr(v)
            print(f"{family.type}|{sample.name}|{labels}|{value}")


if __name__ == "__main__":
    main()
