"""A real MQTT broker and subscriber for the tests: Debian's mosquitto
(`make mqtt-broker`), started on a free loopback port with a generated config
(no persistence, anonymous, or a password file), and paho-mqtt as the
independent client. Used by host_tests/mpy/test_mqtt_client.py and
host_tests/e2e/test_mqtt_ha.py; SKIP says why they cannot run (else None)."""
import getpass
import os
import queue
import shutil
import socket
import subprocess
import threading
import time

from mp import free_port

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)

try:
    import paho.mqtt.client as paho
except ImportError:  # pragma: no cover - `make mqtt-broker` installs it
    paho = None

SKIP = "no mosquitto broker" if not MOSQUITTO else "no paho-mqtt" if paho is None else None


class Broker:
    """mosquitto on 127.0.0.1:port; users = {name: password} turns anonymous access off."""

    def __init__(self, tmp, users=None):
        self.port = free_port()
        self.dir = str(tmp)
        self.users = users
        self.proc = None

    def start(self):
        conf = os.path.join(self.dir, "mosquitto.conf")
        # user: as root, mosquitto would switch to user "mosquitto", who cannot read pytest's tmp dir
        lines = ["persistence false", "listener %d 127.0.0.1" % self.port, "user " + getpass.getuser()]
        if self.users:
            pw = os.path.join(self.dir, "passwd")
            open(pw, "w").close()
            for u, p in self.users.items():
                subprocess.run(["mosquitto_passwd", "-b", pw, u, p], check=True, capture_output=True)
            lines += ["allow_anonymous false", "password_file " + pw]
        else:
            lines.append("allow_anonymous true")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None


class Sub:
    """A paho subscriber: messages as (topic, payload str, retain)."""

    def __init__(self, port, topic, user=None, password=None):
        self.msgs = queue.Queue()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="paho-%d" % time.monotonic_ns())
        if user:
            self.c.username_pw_set(user, password)
        self.c.on_message = lambda c, u, m: self.msgs.put((m.topic, m.payload.decode(), bool(m.retain)))
        self.c.connect("127.0.0.1", port, 30)
        done = threading.Event()
        self.c.on_subscribe = lambda *a: done.set()
        self.c.subscribe(topic, 0)
        self.c.loop_start()
        assert done.wait(5)

    def get(self, timeout=5):
        return self.msgs.get(timeout=timeout)

    def none(self, wait=0.5):
        try:
            m = self.msgs.get(timeout=wait)
        except queue.Empty:
            return True
        raise AssertionError("unexpected message %r" % (m,))

    def publish(self, topic, payload, retain=False):
        self.c.publish(topic, payload, 0, retain).wait_for_publish(5)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()
