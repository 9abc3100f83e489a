#!/usr/bin/env python3
"""Check a DSJSON file with Vowpal Wabbit's own parser.

Usage: python3 vw_parse.py FILE.dsjson

Every non-empty line is parsed by VW (`--cb_explore_adf --dsjson --strict_parse`,
i.e. VW's C++ DSJSON parser, which throws on a malformed line instead of
logging and skipping it). The script exits 1 on the first line that
  * VW rejects (parser error),
  * VW silently drops (e.g. no "a" array: VW skips lines without actions),
  * VW reads with a different label than the line's `_label_Action`,
    `_label_cost`, `_label_probability`, `_labelIndex` say, or
  * breaks the decision-service conventions a logger should keep:
    `_label_Action == _labelIndex + 1`, `a` is a permutation of 1..n with the
    chosen action first, `p` aligned with `a` (p[0] == `_label_probability`),
    len(a) == len(p) == len(c._multi).
Lines with `"_skipLearn": true` are reported as skipped (VW drops them by design).
Exits 0 when every line passes.
"""
import json
import math
import struct
import sys

from vowpalwabbit import LabelType, Workspace

VW_ARGS = "--cb_explore_adf --dsjson --quiet --strict_parse"


def f32(x):
    return struct.unpack("f", struct.pack("f", float(x)))[0]


def read_labels(examples):
    out = []
    for i, ex in enumerate(examples):
        lab = ex.get_label(LabelType.CONTEXTUAL_BANDIT)
        out.append([(c.action, c.cost, c.probability) for c in lab.costs])
    return out


def check_line(ws, lineno, line):
    """Returns None if OK, 'skip' if VW skipped by design, else an error string."""
    try:
        examples = ws.parse(line)
    except Exception as e:  # VW raises RuntimeError with its parser message
        return "VW rejected the line: %s" % (str(e).strip(),)
    try:
        labels = read_labels(examples)
    finally:
        ws.finish_example(examples)
    read = "VW read %d example(s), CB labels [(action, cost, probability)] per example: %r" % (len(labels), labels)

    try:
        obj = json.loads(line)
    except ValueError as e:
        return "VW accepted a line that is not valid JSON (%s); %s" % (e, read)

    if obj.get("_skipLearn") is True:
        return "skip"

    multi = (obj.get("c") or {}).get("_multi")
    if not isinstance(multi, list) or not multi:
        return "no c._multi action list; " + read
    n = len(multi)
    if len(labels) != n + 1:
        return "expected 1 shared + %d action examples, VW produced %d (VW drops lines without \"a\"); %s" % (
            n, len(labels), read)

    shared = labels[0]
    if len(shared) != 1 or shared[0][2] != -1.0:
        return "first example is not VW's shared example (extra label on it: missing _labelIndex?); " + read

    for key in ("_label_Action", "_label_cost", "_label_probability", "_labelIndex"):
        if key not in obj:
            return "missing %s; %s" % (key, read)
    exp_action = obj["_label_Action"]
    exp_cost = f32(obj["_label_cost"])
    exp_prob = f32(obj["_label_probability"])
    exp_index = obj["_labelIndex"]

    labelled = [(i - 1, lab) for i, lab in enumerate(labels[1:], start=1) if lab]
    if len(labelled) != 1 or len(labelled[0][1]) != 1:
        return "expected exactly one labelled action example; " + read
    idx, [(act, cost, prob)] = labelled[0]
    if idx != exp_index:
        return "VW put the label on action index %d, _labelIndex=%r; %s" % (idx, exp_index, read)
    if act != exp_action or cost != exp_cost or prob != exp_prob:
        return "VW read label (action=%r, cost=%r, probability=%r), line says (%r, %r, %r); %s" % (
            act, cost, prob, exp_action, obj["_label_cost"], obj["_label_probability"], read)
    if not (0.0 < prob <= 1.0) or math.isnan(cost):
        return "label probability must be in (0, 1] and cost a number; " + read

    # Decision-service conventions (VW itself does not cross-check these).
    a, p = obj.get("a"), obj.get("p")
    if exp_action != exp_index + 1:
        return "convention: _label_Action (%r) != _labelIndex + 1 (%r)" % (exp_action, exp_index + 1)
    if not isinstance(a, list) or sorted(a) != list(range(1, n + 1)):
        return "convention: \"a\" must be a permutation of 1..%d, got %r" % (n, a)
    if a[0] != exp_action:
        return "convention: a[0] (%r) must be the chosen action _label_Action (%r)" % (a[0], exp_action)
    if not isinstance(p, list) or len(p) != len(a):
        return "convention: \"p\" must be aligned with \"a\" (same length), got %r" % (p,)
    if f32(p[0]) != exp_prob:
        return "convention: p[0] (%r) must equal _label_probability (%r)" % (p[0], obj["_label_probability"])
    if abs(sum(p) - 1.0) > 1e-4:
        return "convention: \"p\" must sum to 1, sums to %r" % (sum(p),)
    return None


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    import vowpalwabbit

    ws = Workspace(VW_ARGS)
    ok = skipped = 0
    with open(argv[1], encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            err = check_line(ws, lineno, line)
            if err == "skip":
                skipped += 1
                print("line %d: skipped (_skipLearn)" % lineno)
                continue
            if err is not None:
                print("line %d: FAIL: %s" % (lineno, err))
                ws.finish()
                return 1
            ok += 1
    ws.finish()
    print("vowpalwabbit %s (%s): %d line(s) OK, %d skipped" % (vowpalwabbit.__version__, VW_ARGS, ok, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
