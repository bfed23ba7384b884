"""Fault injection: what a slave does wrong with the next requests.

Kinds (what the firmware sees):
  timeout      request swallowed: not executed, no answer
  crc          executed, answer sent with both CRC bytes inverted
  exception    NOT executed; the bridge answers [id, fn|0x80, code, crc]
               (code default 4)
  wrong_slave  executed, answer carries id (slave % 247) + 1, CRC recomputed
               (only the id is wrong)
  truncated    executed, answer with its last 3 bytes dropped
and, separately, "offline": the slave does not answer at all until put back.

An explicit fault (control command `fault`) applies to the next N requests to
one slave (N = -1: until cleared). A fault rate (`fault_rate`) draws a random
fault for each request to an existing slave without a pending explicit fault,
from a seeded RNG: deterministic for a given request sequence.
"""
import random

from pbsim import frames

FAULT_KINDS = ("timeout", "crc", "exception", "wrong_slave", "truncated")


class Faults:
    def __init__(self):
        self.explicit = {}  # slave id -> {"kind", "count", "code"}
        self.offline = set()
        self.rate = 0.0
        self.rate_kinds = list(FAULT_KINDS)
        self.rate_code = 4
        self.rate_rng = random.Random(1)

    def clear(self):
        """Explicit faults, the fault rate and the offline flags."""
        self.explicit.clear()
        self.rate = 0.0
        self.offline.clear()

    def set_fault(self, sid, kind, count, code):
        """The next count requests to sid get kind (-1: until cleared, 0: clear)."""
        if count == 0:
            self.explicit.pop(sid, None)
        else:
            self.explicit[sid] = {"kind": kind, "count": count, "code": code}

    def set_rate(self, rate, kinds, code, seed):
        self.rate = float(rate)
        self.rate_kinds = list(kinds)
        self.rate_code = code
        self.rate_rng = random.Random(seed)

    def set_offline(self, sid, on):
        if on:
            self.offline.add(sid)
        else:
            self.offline.discard(sid)

    def pick(self, sid):
        """(kind, exception code) for the next request to sid; (None, None) = no fault."""
        f = self.explicit.get(sid)
        if f is not None:
            if f["count"] > 0:
                f["count"] -= 1
                if f["count"] == 0:
                    del self.explicit[sid]
            return f["kind"], f["code"]
        if self.rate > 0 and self.rate_rng.random() < self.rate:
            return self.rate_rng.choice(self.rate_kinds), self.rate_code
        return None, None


def damage(reply, kind, sid):
    """The reply as a crc, wrong_slave or truncated fault sends it (other kinds: unchanged)."""
    if kind == "crc":
        return reply[:-2] + bytes((reply[-2] ^ 0xFF, reply[-1] ^ 0xFF))
    if kind == "wrong_slave":
        return frames.add_crc(bytes(((sid % 247) + 1,)) + reply[1:-2])
    if kind == "truncated":
        return reply[:-3]
    return reply
