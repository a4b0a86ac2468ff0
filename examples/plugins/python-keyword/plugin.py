#!/usr/bin/env python3
"""A complete rlif reward plugin in Python: a keyword reward.

A completion scores the fraction of `keywords` its text contains (each counted once).
When the dataset row has a `keywords` field (comma-separated), it replaces the argument
for that group. A completion with no text is "not applicable".

    [[rewards]]
    name   = "keywords"
    plugin = "examples/plugins/python-keyword/plugin.py"
    weight = 0.1
    args   = { keywords = ["therefore", "\\boxed"], case_sensitive = false }

Needs the packages of plugins/sdk/python/requirements.txt (scripts/py-deps.sh installs
them) and the rlif_plugin package: `pip install plugins/sdk/python`, or run it from the
rlif repository as here.
"""
import os
import sys

try:
    import rlif_plugin
except ImportError:  # running from the rlif repository: use its SDK in place
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..",
                                    "plugins", "sdk", "python"))
    import rlif_plugin

from rlif_plugin import Arg, serve


def check(args):
    kw = args["keywords"]
    if not isinstance(kw, list) or not kw or not all(isinstance(k, str) and k for k in kw):
        raise ValueError("keywords must be a non-empty list of non-empty strings")


def score(group, args):
    keywords = args["keywords"]
    if group.fields.get("keywords"):
        keywords = [k.strip() for k in group.fields["keywords"].split(",") if k.strip()]
    fold = (lambda s: s) if args["case_sensitive"] else str.lower
    keywords = [fold(k) for k in keywords]
    scores = []
    for c in group.completions:
        if not c.text:
            scores.append(None)  # not applicable
            continue
        text = fold(c.text)
        scores.append(sum(k in text for k in keywords) / len(keywords))
    return scores


if __name__ == "__main__":
    serve(score, name="python-keyword",
          summary="fraction of the keywords that the completion contains",
          args=[Arg("keywords", "list", default=["therefore", "\\boxed"], description="words to look for"),
                Arg("case_sensitive", "bool", default=False, description="match case")],
          configure=check)
