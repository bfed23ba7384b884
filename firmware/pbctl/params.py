"""The parameters a field table cannot check alone (config.PARAMS):
ocpp_url, mqtt_url and mqtt_prefix (INTEGRATIONS.md §3, §4), tz (§6).
Loaded on demand by a change that sets one of them (set_params, a restore),
apart from config.py: its globals are one dict, kept small."""
from pbctl.config import ConfigError


def check(new, old, body=None):
    """ConfigError unless the params new (old: those in force; body: what a
    set_params gave, None for all) hold good values for these."""
    u = new["ocpp_url"]
    if u and u != old["ocpp_url"] and (body is None or "ocpp_url" in body):
        ocpp_url(u)
    if body is None or "mqtt_url" in body or "mqtt_prefix" in body:
        mqtt_params(new, old)
    if body is None or "tz" in body:
        tz_param(new["tz"])


def ocpp_url(u):
    import sys

    had = "pblib.ws" in sys.modules
    from pblib.ws import parse_url

    try:
        parse_url(u)
    except ValueError:
        raise ConfigError("bad value: ocpp_url")
    finally:
        if not had:  # (OCPP off or not yet on: the client's module stays out of the heap)
            sys.modules.pop("pblib.ws", None)
            try:
                delattr(sys.modules["pblib"], "ws")  # (the package holds it too)
            except (KeyError, AttributeError):
                pass


def tz_param(s):
    """ConfigError unless s is a POSIX TZ string pblib.tz takes."""
    from pblib import tz

    try:
        tz.Zone(s)
    except ValueError:
        raise ConfigError("bad value: tz")


def mqtt_url(url):
    """(user, password, host, port) of `mqtt://[user[:password]@]host[:port]`
    (user, password None when absent; port default 1883); ValueError if it is
    no such URL. Host: a name or an IPv4 address (letters, digits, `.-`)."""
    if not url.startswith("mqtt://"):
        raise ValueError
    cred, _, hp = url[7:].rpartition("@")
    user = pwd = None
    if _:
        user, c, pwd = cred.partition(":")
        if not c:
            pwd = None
    host, c, port = hp.partition(":")
    port = int(port) if c else 1883  # ValueError when not a number
    if not host or not 0 < port < 65536 or (c and not hp[len(host) + 1 :].isdigit()):
        raise ValueError
    for ch in host:
        if not (ch.isalpha() and ch < "\x80" or ch.isdigit() or ch in ".-"):
            raise ValueError
    return user, pwd, host, port


def mqtt_params(new, old):
    """Check mqtt_url and mqtt_prefix of the params new (ConfigError). get_params
    shows the URL's password as `***` (api/info.py): a URL with the password
    `***` keeps the stored one, but only for the same user, host and port."""
    url = new["mqtt_url"]
    if url:
        try:
            user, pwd, host, port = mqtt_url(url)
            if pwd == "***":
                ou, opwd, oh, op = mqtt_url(old["mqtt_url"])
                if (ou, oh, op) != (user, host, port) or opwd is None:
                    raise ValueError
                new["mqtt_url"] = "mqtt://%s:%s@%s:%d" % (user, opwd, host, port)
        except ValueError:
            raise ConfigError("bad value: mqtt_url")
    pre = new["mqtt_prefix"]
    for ch in pre:
        if not (ch.isalpha() and ch < "\x80" or ch.isdigit() or ch in "_-./"):
            raise ConfigError("bad value: mqtt_prefix")
    if pre[:1] == "/" or pre[-1:] == "/" or "//" in pre:
        raise ConfigError("bad value: mqtt_prefix")
