"""The limit_reason text of a balancer reason code (pblib.balancer's reason[i]).

Apart from the balancer, which runs every cycle and is resident: the texts are
only needed while get_dev_info is answered (loaded on demand). The codes are the
balancer's: the plain ones index the text list below in their order, the rule
codes are decoded with the balancer's R_RULE and NR (defined there only).
"""
from pblib.balancer import NR, R_RULE


def reason_text(r):
    """The limit_reason text of reason code r (formatted on demand, not kept)."""
    # (the short strings sit in a constant tuple: as separate constants they would
    # each become a permanent qstr)
    t, x, y, a, b, c, d = (
        "|no vehicle|error|offline|offline: share held|disabled|disabled: min current|"
        "disabled: no limit|override: charging disabled|override: mamps|max_charging_cur|"
        "max_total_current L1|max_total_current L2|max_total_current L3|"
        "max_total_evse_current|vehicle draw|failsafe: grid meter lost|"
        "paused: energy shortage|paused: phase imbalance|paused: rotation|"
        "waiting: others ramping down|rules: no rule applies|paused: vehicle idle|"
        "phase switching|max_phase_skew|paused: phase skew",
        "|", "%s %d%s%s", "rule", "user rule", "+", " (solar)")
    if r >= R_RULE:
        r -= R_RULE
        k = r % NR
        r //= NR
        return y % (b if r >> 1 else a, k + 1, c if k == NR - 1 else "", d if r & 1 else "")
    a = 0
    for k in range(r):  # the r-th text
        a = t.find(x, a) + 1
    k = t.find(x, a)
    return t[a:k] if k >= 0 else t[a:]
