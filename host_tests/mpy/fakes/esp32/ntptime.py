"""A stand-in for the ESP32's ntptime module: settime() fails state["fail"] times, then works."""
host = "pool.ntp.org"
timeout = 1
state = {"fail": 0, "calls": 0}


def settime():
    state["calls"] += 1
    if state["fail"]:
        state["fail"] -= 1
        raise OSError(110)
