#!/usr/bin/env python3
"""Reference off-policy-evaluation values on the Open Bandit Dataset sample.

Usage: python3 obp_reference.py /work/shared/data/obd

Uses Open Bandit Pipeline (obp 0.5.x) estimator classes and an independent
numpy computation of the same quantities. Floats are printed as repr() and as %.17g.
"""
import csv
import os
import sys

import numpy as np

N_ACTIONS = 80
LEN_LIST = 3
BOOT = dict(alpha=0.05, n_bootstrap_samples=10000, random_state=12345)


def fmt(x):
    """repr() (shortest round-trip) and the same value to 17 significant digits."""
    x = float(x)
    return "%r (%.17g)" % (x, x)


def fmt_ci(d):
    return "{" + ", ".join("%r: %s" % (k, fmt(v)) for k, v in d.items()) + "}"


def load_log(path):
    cols = {"action": [], "position": [], "reward": [], "pscore": []}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for k in cols:
                cols[k].append(row[k])
    return (
        np.asarray(cols["reward"], dtype=float),
        np.asarray(cols["action"], dtype=int),
        np.asarray(cols["position"], dtype=int),
        np.asarray(cols["pscore"], dtype=float),
    )


def load_policy(path):
    pi = np.zeros((N_ACTIONS, LEN_LIST))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            pi[int(row["action"]), int(row["position"])] = float(row["prob"])
    return pi


def main(data_dir):
    import obp
    from obp.ope import (
        DoublyRobust,
        InverseProbabilityWeighting,
        SelfNormalizedInverseProbabilityWeighting,
    )

    reward, action, position, pscore = load_log(os.path.join(data_dir, "obd_all_random.csv"))
    pi = load_policy(os.path.join(data_dir, "obd_all_bts_action_dist.csv"))
    n = reward.shape[0]
    action_dist = np.broadcast_to(pi, (n, N_ACTIONS, LEN_LIST)).copy()
    zeros_q = np.zeros_like(action_dist)

    print("obp", obp.__version__, "numpy", np.__version__, "python", sys.version.split()[0])
    print("n_rounds", n, "clicks", int(reward.sum()))
    print("pi column sums (per position)", repr(pi.sum(axis=0).tolist()))
    print("bootstrap args", BOOT)

    kw = dict(reward=reward, action=action, position=position, pscore=pscore, action_dist=action_dist)
    ipw = InverseProbabilityWeighting()  # lambda_=inf: no clipping
    snipw = SelfNormalizedInverseProbabilityWeighting()
    dr = DoublyRobust()  # lambda_=inf: no clipping

    print("\n== OBP estimators ==")
    v_ipw = ipw.estimate_policy_value(**kw)
    v_snipw = snipw.estimate_policy_value(**kw)
    v_dr = dr.estimate_policy_value(estimated_rewards_by_reg_model=zeros_q, **kw)
    print("IPW.estimate_policy_value", fmt(v_ipw))
    print("IPW.estimate_interval", fmt_ci(ipw.estimate_interval(**kw, **BOOT)))
    print("SNIPW.estimate_policy_value", fmt(v_snipw))
    print("SNIPW.estimate_interval", fmt_ci(snipw.estimate_interval(**kw, **BOOT)))
    print("DR(q_hat=0).estimate_policy_value", fmt(v_dr))
    print(
        "DR(q_hat=0).estimate_interval",
        fmt_ci(dr.estimate_interval(estimated_rewards_by_reg_model=zeros_q, **kw, **BOOT)),
    )
    print("DR(q_hat=0) == IPW exactly:", bool(v_dr == v_ipw), " |diff| =", repr(abs(float(v_dr) - float(v_ipw))))

    print("\n== numpy by hand ==")
    w = pi[action, position] / pscore
    rw = reward * w
    ips = rw.mean()
    snips = rw.sum() / w.sum()
    sd = rw.std(ddof=1)
    half = 1.96 * sd / np.sqrt(n)
    print("IPS mean(r*w)", fmt(ips))
    print("SNIPS sum(r*w)/sum(w)", fmt(snips))
    print("IPS sd(r*w, ddof=1)", fmt(sd))
    print("IPS normal 95% CI lower", fmt(ips - half))
    print("IPS normal 95% CI upper", fmt(ips + half))
    print("sum(w)", fmt(w.sum()), " mean(w)", fmt(w.mean()))
    print("ESS (sum w)^2/sum w^2", fmt(w.sum() ** 2 / (w ** 2).sum()))
    print("max w", fmt(w.max()))
    print("IPS obp==numpy:", bool(float(v_ipw) == float(ips)), " SNIPS obp==numpy:", bool(float(v_snipw) == float(snips)),
          " |diffs| =", repr(abs(float(v_ipw) - float(ips))), repr(abs(float(v_snipw) - float(snips))))

    bts_reward, _, _, _ = load_log(os.path.join(data_dir, "obd_all_bts.csv"))
    print("\n== on-policy ==")
    print("BTS log n", bts_reward.shape[0], "clicks", int(bts_reward.sum()))
    print("BTS on-policy mean click", fmt(bts_reward.mean()))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/data/obd")
