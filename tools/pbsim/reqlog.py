"""The request log and the bus statistics.

Every request the bridge takes off the wire is one item in a ring of the last
5000, numbered by `seq` (runs on across `reset`). An item is logged before its
reply is written to the tty. Item:

    {"seq", "t_ms" (ms since start, request fully received), "slave", "fn",
     "addr", "count" (null when not decodable), "values" (fn 6/16 only),
     "fault": null|"timeout"|"crc"|"exception"|"wrong_slave"|"truncated"|"offline",
     "answered": bool (something was sent back),
     "exc": null|n (exception code in the reply),
     "error": null|"crc"|"incomplete"|"unknown_slave"|"no_reply"}
"""
import collections

from pbsim.faults import FAULT_KINDS

LOG_SIZE = 5000


class RequestLog:
    def __init__(self):
        self.items = collections.deque(maxlen=LOG_SIZE)
        self.seq = 0
        self.reset_stats()

    def reset_stats(self):
        self.stats = {}
        self.unknown = self.bad_crc = self.incomplete = 0

    def clear(self):
        """Items and statistics; seq runs on."""
        self.items.clear()
        self.reset_stats()

    def slave_stats(self, sid):
        st = self.stats.get(sid)
        if st is None:
            st = {"requests": 0, "answered": 0, "exceptions": 0,
                  "faults": dict((k, 0) for k in FAULT_KINDS + ("offline",))}
            self.stats[sid] = st
        return st

    def add(self, item):
        item["seq"] = self.seq
        self.seq += 1
        self.items.append(item)

    def query(self, since, slave=None, limit=None):
        """The `requests` reply: items with seq >= since (of slave), at most limit."""
        items = []
        for it in self.items:
            if it["seq"] < since or (slave is not None and it["slave"] != slave):
                continue
            items.append(it)
            if limit is not None and len(items) >= limit:
                break
        if limit is not None and items and len(items) >= limit:
            nxt = items[-1]["seq"] + 1
        else:
            nxt = max(self.seq, since)
        first = self.items[0]["seq"] if self.items else self.seq
        return {"next": nxt, "first": first, "items": items}

    def summary(self):
        """The `stats` reply."""
        return {"slaves": dict((str(k), v) for k, v in sorted(self.stats.items())),
                "unknown_slave": self.unknown, "bad_crc": self.bad_crc,
                "incomplete": self.incomplete}
