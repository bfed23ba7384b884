"""The web UI in a real browser: Debian's headless Chromium driven by selenium,
against the firmware under MicroPython and the simulated bus (tools/simrun.Sim).

`make test` installs chromium + chromium-driver (`make browser`, apt-get) and
selenium (requirements-browser.txt); where they cannot be installed these
tests skip and say why. Every test ends with no JavaScript error in the
browser's console.

    PBCTL_SCREENSHOTS=1 .venv/bin/python -m pytest host_tests/browser -k screenshots

writes docs/ui-phone.png and docs/ui-desktop.png after watching a two-EVSE
scenario for PBCTL_SCREENSHOT_SECONDS (default 240) seconds (`make screenshots`).
"""
import json
import os
import shutil
import tempfile
import time

import pytest

from simrun import ADMIN, ROOT, Sim, board_heap

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# what works on this machine: no sandbox as root, no GPU, nothing that calls home
FLAGS = ("--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking "
         "--disable-component-update --disable-sync").split()
JSON = {"Content-Type": "application/json"}
HERE = os.path.dirname(os.path.abspath(__file__))


def browser(width=1280, height=900):
    """A headless Chromium with a fresh profile, or a skip that says what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (make test installs requirements-browser.txt)")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            pytest.skip("%s is missing: `make browser` installs Debian's chromium and chromium-driver "
                        "(needs root and apt-get)" % path)
    profile = tempfile.mkdtemp(prefix="pbctl-chromium-")
    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for f in FLAGS + ["--user-data-dir=" + profile, "--window-size=%d,%d" % (width, height)]:
        o.add_argument(f)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(options=o, service=Service(CHROMEDRIVER))
    d.profile_dir = profile
    return d


def close(driver):
    driver.quit()
    shutil.rmtree(driver.profile_dir, ignore_errors=True)


def fw_log_clean(sim):
    log = "".join(sim.fw_lines)
    assert "MemoryError" not in log, log
    assert "Traceback" not in log.replace("KeyboardInterrupt", ""), log


# The page's tests run at the board's 96 KB as the interpreter holds them
# (simrun.board_heap: 144k on the 64-bit port, whose objects take 1.46-1.51
# times the board's bytes, measured; 96k on a 32-bit build). At 128k (stricter
# than the board) a restore (set_config) after a session of page requests and
# an integration switched on and off found its heap in ~200 B pieces in 2 of 6
# runs (503, asked again by the page, refused again): measured by test_limits,
# test_load and test_smoke96k, not by the page's tests.
HEAP = board_heap()


@pytest.fixture(scope="module")
def ui():
    d = browser()
    s = Sim(heap=HEAP)
    try:
        s.start()
        d.base = "http://127.0.0.1:%d/" % s.http_port
        d.console = []  # every browser log entry so far
        yield s, d
    finally:
        close(d)
        s.stop()
    fw_log_clean(s)


def console(d):
    d.console += d.get_log("browser")
    return d.console


def js_errors(d):
    # errors of the page's scripts; "network" entries are HTTP error statuses
    # (a 401 before the login, a 400 shown next to a field), not script errors
    return [e for e in console(d) if e["source"] in ("javascript", "console-api") and e["level"] == "SEVERE"]


@pytest.fixture
def page(ui):
    sim, d = ui
    yield sim, d
    assert js_errors(d) == []


def wait(d, cond, timeout=10, what=""):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the dashboard re-renders every poll: an element found a moment ago may be
    # gone by the time it is read; that is "not yet", not a failure
    from selenium.common.exceptions import TimeoutException

    try:
        return WebDriverWait(d, timeout, 0.05, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda _: cond(), what)
    except TimeoutException:
        # what the page saw meanwhile (an HTTP error status is a "network" entry)
        raise TimeoutException("%s; the page's last log entries: %s" % (what, console(d)[-8:])) from None


def _centered_click(el):
    # an element is clicked where a user sees it: in the middle of the window.
    # (WebDriver scrolls it to the top edge, under the sticky header, when it
    # is above the view: on a longer settings page the header got the click)
    el.parent.execute_script("arguments[0].scrollIntoView({block: 'center'})", el)
    _click(el)


def css(d, sel, root=None):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webelement import WebElement

    global _click
    if WebElement.click is not _centered_click:
        _click = WebElement.click
        WebElement.click = _centered_click

    return (root or d).find_elements(By.CSS_SELECTOR, sel)


def visible(d, sel):
    e = css(d, sel)
    return e[0] if e and e[0].is_displayed() else None


def open_page(d, hash_="", logged_out=True):
    d.get(d.base + hash_)
    if logged_out:
        d.execute_script("sessionStorage.clear()")
        d.get("about:blank")
        d.get(d.base + hash_)
    wait(d, lambda: css(d, "#tiles [data-dev]"), what="tiles")


def admin(sim, query, body=None):
    st, obj = sim.request(query, ADMIN, None if body is None else json.dumps(body).encode(),
                          headers=JSON if body is not None else None)[:2]
    assert st == 200, (query, st, obj)
    return obj


def jsval(v):
    """A value as the page writes it into data-v (JavaScript's String(v))."""
    return json.dumps(v) if isinstance(v, bool) else str(v)


def totals(info):
    """What the header shows per phase: the answering grid meter's currents,
    else the EVSEs' plus the consumption meters' (app.js totals())."""
    devs = info["devices"]
    for g in devs:
        if not g["is_evse"] and g["role"] == 3 and g["device_enabled"] and not g["com_err"]:
            return [g["current_l%d" % i] for i in (1, 2, 3)]
    return [sum(x["current_l%d" % i] for x in devs if x["is_evse"] or x["role"] == 1) for i in (1, 2, 3)]


def test_dashboard_tiles_show_what_get_dev_info_says(page):
    sim, d = page
    admin(sim, "cmd=set_params", {"cycle_time": 60000})  # readings stand still while we compare
    try:
        time.sleep(1.2)  # the cycle that the change started is over
        open_page(d)
        info = sim.get("cmd=get_dev_info")[1]
        wait(d, lambda: len(css(d, "#tiles [data-dev]")) == len(info["devices"]), what="a tile per device")
        evse_fields = ["state", "current_l1", "current_l2", "current_l3", "cur_charging_power", "total_energy",
                       "charging_cur", "limit_reason", "paused", "user", "phases"]
        meter_fields = ["role", "power_w", "current_l1", "current_l2", "current_l3", "import", "export"]
        for dev in info["devices"]:
            tile = css(d, '#tiles [data-dev="%s"]' % dev["dev_id"])[0]
            shown = {e.get_attribute("data-f"): e for e in css(d, "[data-f]", tile)}
            want = (evse_fields + (["pause_time"] if dev.get("paused") else [])
                    + (["phase_mode"] if dev.get("phase_mode") else [])) if dev["is_evse"] else meter_fields
            assert sorted(shown) == sorted(want), dev["dev_id"]
            for f in want:
                assert shown[f].get_attribute("data-v") == jsval(dev[f]), (dev["dev_id"], f)
            assert dev["name"] in css(d, "h3", tile)[0].text
            # the numbers as people read them: A with one decimal, kW, kWh
            assert shown["current_l1"].text == "%.1f" % (dev["current_l1"] / 1000)
            if dev["is_evse"]:
                assert shown["charging_cur"].text == "%.1f" % (dev["charging_cur"] / 1000)
                assert shown["cur_charging_power"].text == "%.2f" % (dev["cur_charging_power"] / 1000)
                assert shown["state"].text == ["?", "waiting for EV", "EV present", "charging",
                                               "charging, ventilation", "error", "offline"][dev["state"]]
                assert shown["limit_reason"].text == (dev["limit_reason"] or "—")
                assert shown["phases"].text == ("+".join("L%d" % i for i in (1, 2, 3) if dev["phases"] >> i - 1 & 1)
                                                or "—")
                if dev["phase_mode"]:
                    assert shown["phase_mode"].text == "%d-phase mode" % dev["phase_mode"]
            else:
                assert shown["import"].text == "%.2f" % (dev["import"] / 1000)
        # the header: total current per phase against max_total_current
        tot = totals(info)
        for i in (1, 2, 3):
            assert css(d, '#phases [data-f="total_l%d"]' % i)[0].get_attribute("data-v") == str(tot[i - 1])
        maxes = css(d, '#phases [data-f="max_total_current"]')
        assert [e.get_attribute("data-v") for e in maxes] == [str(info["params"]["max_total_current"])] * 3
        assert d.title == info["params"]["title"]
        # the chart: samples taken, a legend naming the phases and the EVSE's limit
        wait(d, lambda: d.execute_script("return hist.length") >= 1, what="a chart sample")
        legend = css(d, "#legend")[0].text
        for name in ("L1", "L2", "L3", "limit Wallbox", "max_total_current"):
            assert name in legend
        painted = d.execute_script(
            "const c = document.getElementById('chart'), g = c.getContext('2d');"
            "const p = g.getImageData(0, 0, c.width, c.height).data; let n = 0;"
            "for (let i = 3; i < p.length; i += 4) if (p[i]) n++; return [c.width, n];")
        assert painted[0] > 0 and painted[1] > 1000, painted
    finally:
        admin(sim, "cmd=set_params", {"cycle_time": 1000})


def test_dashboard_follows_the_controller(page):
    """Polling: a change made through the API shows up without a reload."""
    sim, d = page
    open_page(d)
    admin(sim, "cmd=set_params", {"title": "Garage"})
    try:
        wait(d, lambda: css(d, "#title")[0].text == "Garage", what="new title")
        assert d.title == "Garage"
    finally:
        admin(sim, "cmd=set_params", {"title": "cFos Power Brain"})


def test_401_asks_for_login_in_the_page_then_saves_max_total_current(page):
    sim, d = page
    before = sim.get("cmd=get_params")[1]["max_total_current"]
    open_page(d, "#settings")
    box = wait(d, lambda: visible(d, "#params [name=max_total_current]"), what="params form")
    assert box.get_attribute("value") == "%g" % (before / 1000)
    assert not visible(d, "#login")
    box.clear()
    box.send_keys("25")
    css(d, "#params button[type=submit]")[0].click()
    # the API said 401: the page's own login form, not the browser's dialog
    wait(d, lambda: visible(d, "#login"), what="login prompt")
    assert css(d, "#login-msg")[0].text == "Please log in as admin."
    assert sim.get("cmd=get_params")[1]["max_total_current"] == before  # nothing saved yet
    form = css(d, "#login-form")[0]
    css(d, "[name=password]", form)[0].send_keys("not-the-password")
    css(d, "#login-ok")[0].click()
    # a wrong password: asked again, with the API's message
    wait(d, lambda: css(d, "#login-msg")[0].text == "wrong user or password", what="wrong password message")
    assert visible(d, "#login")
    pw = css(d, "[name=password]", form)[0]
    pw.clear()
    pw.send_keys(ADMIN[1])
    css(d, "#login-ok")[0].click()
    wait(d, lambda: css(d, "#params .msg")[0].text == "saved", what="saved")
    assert not visible(d, "#login")
    assert sim.get("cmd=get_params")[1]["max_total_current"] == 25000
    # the dashboard header follows
    wait(d, lambda: css(d, '#phases [data-f="max_total_current"]')[0].get_attribute("data-v") == "25000")
    # the API's error message next to the field; nothing changed
    box = css(d, "#params [name=max_total_current]")[0]
    box.clear()
    box.send_keys("lots")
    css(d, "#params button[type=submit]")[0].click()
    err = css(d, '#params [data-err="max_total_current"]')[0]
    wait(d, lambda: err.text == "bad value: max_total_current", what="error next to the field")
    assert sim.get("cmd=get_params")[1]["max_total_current"] == 25000
    box.clear()
    box.send_keys("%g" % (before / 1000))
    css(d, "#params button[type=submit]")[0].click()
    wait(d, lambda: css(d, "#params .msg")[0].text == "saved" and not err.text, what="saved again")
    assert sim.get("cmd=get_params")[1]["max_total_current"] == before


def test_mqtt_settings_and_the_link_on_the_dashboard(page, tmp_path):
    from mqttbroker import SKIP, Broker

    if SKIP:
        pytest.skip(SKIP)
    sim, d = page
    b = Broker(tmp_path).start()
    try:
        open_page(d, "#settings")
        login_now(d)
        url = wait(d, lambda: visible(d, "#mqtt [name=mqtt_url]"), what="MQTT form")
        assert url.get_attribute("value") == ""
        assert css(d, "#mqtt [name=mqtt_ha_discovery]")[0].is_selected()
        url.send_keys("mqtt://pb:secret@127.0.0.1:%d" % b.port)
        pre = css(d, "#mqtt [name=mqtt_prefix]")[0]
        pre.send_keys("a b")
        css(d, "#mqtt button[type=submit]")[0].click()
        err = css(d, '#mqtt [data-err="mqtt_prefix"]')[0]
        wait(d, lambda: err.text == "bad value: mqtt_prefix", what="error next to the prefix")
        assert sim.get("cmd=get_params")[1]["mqtt_url"] == ""
        pre.clear()
        pre.send_keys("ui/test")
        css(d, "#mqtt button[type=submit]")[0].click()
        wait(d, lambda: css(d, "#mqtt .msg")[0].text == "saved", what="saved")
        shown = "mqtt://pb:***@127.0.0.1:%d" % b.port
        p = sim.get("cmd=get_params")[1]
        assert (p["mqtt_url"], p["mqtt_prefix"], p["mqtt_ha_discovery"]) == (shown, "ui/test", True)
        d.refresh()  # the form again: the password masked
        url = wait(d, lambda: visible(d, "#mqtt [name=mqtt_url]"), what="MQTT form")
        wait(d, lambda: url.get_attribute("value") == shown, what="masked URL")
        # the dashboard shows the link
        d.get(d.base + "#dash")
        wait(d, lambda: visible(d, '#links [data-link="mqtt"]'), timeout=20, what="MQTT status")

        def connected():  # (found anew each time: the line is made again every 10 s)
            ln = visible(d, '#links [data-link="mqtt"]')
            return ln and "connected" in ln.text and "not" not in ln.text

        wait(d, connected, timeout=25, what="connected")
    finally:
        admin(sim, "cmd=set_params", {"mqtt_url": ""})  # (the tests after this one run without it)
        b.stop()


def login_now(d):
    d.execute_script("setAuth(arguments[0])", "%s:%s" % ADMIN)


def test_add_edit_and_delete_a_device(page):
    from selenium.webdriver.support.ui import Select

    sim, d = page
    open_page(d, "#settings")
    login_now(d)
    wait(d, lambda: css(d, '#devices [data-dev="M2"]'), what="device list")
    ids = [x["dev_id"] for x in sim.get("cmd=get_params")[1]["devices"]]
    Select(css(d, "#dev-type")[0]).select_by_value("meter_http")
    css(d, "#dev-add")[0].click()
    form = wait(d, lambda: visible(d, "#dev-edit"), what="device editor")
    assert not css(d, "[name=address]", form)  # an HTTP input device has no bus address
    css(d, "[name=name]", form)[0].send_keys("Heat pump")
    Select(css(d, "[name=role]", form)[0]).select_by_value("1")
    css(d, "button[type=submit]", form)[0].click()
    wait(d, lambda: css(d, '#devices [data-dev="M3"]'), what="new device listed")
    new = [x for x in sim.get("cmd=get_params")[1]["devices"] if x["dev_id"] not in ids]
    assert [(x["dev_id"], x["dev_type"], x["name"], x["role"]) for x in new] == [("M3", "meter_http", "Heat pump", 1)]
    # a charging rule for the EVSE; an API error shows next to its field
    css(d, '#devices [data-dev="E1"] [data-edit]')[0].click()
    form = wait(d, lambda: visible(d, "#dev-edit"), what="EVSE editor")
    css(d, '[data-add="rules"]', form)[0].click()
    rule = css(d, '[data-list="rules"] .item', form)[0]
    cur = css(d, "[name=current]", rule)[0]
    cur.clear()
    cur.send_keys("100")  # 100 A: more than a rule may say
    Select(css(d, "[name=mode]", rule)[0]).select_by_value("1")
    css(d, "[name=day5]", rule)[0].click()  # no Saturday
    css(d, "button[type=submit]", form)[0].click()
    wait(d, lambda: css(d, '[data-err="current"]', form)[0].text == "bad value: current", what="rule error")
    cur.clear()
    cur.send_keys("8.5")
    css(d, "button[type=submit]", form)[0].click()
    wait(d, lambda: not visible(d, "#dev-edit"), what="editor closed")
    e1 = [x for x in sim.get("cmd=get_params")[1]["devices"] if x["dev_id"] == "E1"][0]
    assert [(r["mode"], r["current"], r["days"], r["enabled"]) for r in e1["charging_rules"]] == [(1, 8500, 127 - 32, True)]
    b = css(d, '#devices [data-dev="E1"] [data-edit]')[0]
    # (scrolled to the middle: the page is long enough since the firmware card that the
    # browser's own scrolling would put it under the sticky header)
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", b)
    b.click()
    form = wait(d, lambda: visible(d, "#dev-edit"), what="EVSE editor")
    css(d, '[data-list="rules"] .item [data-del]', form)[0].click()
    css(d, "button[type=submit]", form)[0].click()
    wait(d, lambda: not visible(d, "#dev-edit"), what="editor closed")
    assert [x for x in sim.get("cmd=get_params")[1]["devices"] if x["dev_id"] == "E1"][0]["charging_rules"] == []
    # delete: the first click asks, the second deletes
    b = css(d, '#devices [data-dev="M3"] [data-delete]')[0]
    b.click()
    assert b.text == "Really delete M3?"
    assert "M3" in [x["dev_id"] for x in sim.get("cmd=get_params")[1]["devices"]]
    b.click()
    wait(d, lambda: not css(d, '#devices [data-dev="M3"]'), what="device gone from the list")
    assert [x["dev_id"] for x in sim.get("cmd=get_params")[1]["devices"]] == ids
    d.get(d.base + "#dash")
    wait(d, lambda: len(css(d, "#tiles [data-dev]")) == len(ids), what="tiles without it")


def test_users_and_rfids(page):
    sim, d = page
    open_page(d, "#settings")
    # logged out: the users are behind a button that asks for the login
    b = wait(d, lambda: visible(d, "#users-login"), what="users login button")
    b.click()
    form = wait(d, lambda: visible(d, "#login-form"), what="login prompt")
    css(d, "[name=password]", form)[0].send_keys(ADMIN[1])
    css(d, "#login-ok")[0].click()
    wait(d, lambda: visible(d, "#user-add"), what="user list")
    css(d, "#user-add")[0].click()
    form = wait(d, lambda: visible(d, "#user-edit"), what="user editor")
    uid = css(d, "h3", form)[0].text.split()[-1]
    css(d, "[name=name]", form)[0].send_keys("Ann")
    css(d, '[name="id-E1"]', form)[0].click()
    css(d, '[data-add="rfids"]', form)[0].click()
    item = css(d, '[data-list="rfids"] .item', form)[0]
    css(d, "[name=id]", item)[0].send_keys("12ab")  # not digits: the API says no
    css(d, "[name=name]", item)[0].send_keys("key fob")
    css(d, "button[type=submit]", form)[0].click()
    wait(d, lambda: css(d, '[data-err="rfids"]', form)[0].text == "bad value: rfids", what="rfid error")
    f = css(d, "[name=id]", item)[0]
    f.clear()
    f.send_keys("4711")
    css(d, "button[type=submit]", form)[0].click()
    wait(d, lambda: css(d, '#users [data-user="%s"]' % uid), what="user listed")
    users = admin(sim, "cmd=get_users")
    u = [x for x in users if x["id"] == uid][0]
    assert (u["name"], u["dev_ids"], u["display"]) == ("Ann", ["E1"], True)
    assert [(r["id"], r["name"], r["ac_auth"], r["ac_ovch"]) for r in u["rfids"]] == [("4711", "key fob", True, False)]
    assert "1 RFID" in css(d, '#users [data-user="%s"]' % uid)[0].text
    # log out: the users are hidden again
    css(d, "#logout")[0].click()
    wait(d, lambda: visible(d, "#users-login"), what="logged out")
    assert not css(d, "#users [data-user]")


def test_switch_modbus_tcp_on_in_the_settings(page):
    """The settings page switches the Modbus TCP gateway on (and says it has no
    authentication); a Modbus TCP client is served on the port it set."""
    from pymodbus.client import ModbusTcpClient
    from selenium.webdriver.support.ui import Select

    from mp import free_base

    sim, d = page
    base = free_base()
    open_page(d, "#settings")
    login_now(d)
    box = wait(d, lambda: visible(d, '#params [data-f="modbus_tcp"]'), what="modbus_tcp field")
    assert "no authentication" in box.text
    sel = Select(css(d, "[name=modbus_tcp]", box)[0])
    assert sel.first_selected_option.text == "off"
    sel.select_by_value("2")
    port = css(d, "#params [name=modbus_tcp_port]")[0]
    assert port.get_attribute("value") == "4701"
    port.clear()
    port.send_keys(str(base))
    css(d, "#params button[type=submit]")[0].click()
    wait(d, lambda: css(d, "#params .msg")[0].text == "saved", what="saved")
    p = sim.get("cmd=get_params")[1]
    assert (p["modbus_tcp"], p["modbus_tcp_port"]) == (2, base)
    try:
        c = ModbusTcpClient("127.0.0.1", port=base, timeout=5, retries=0)
        wait(d, lambda: c.connect(), what="the gateway listening")
        r = c.read_holding_registers(8000, count=2, device_id=1)
        c.close()
        assert r.registers == [0xCF05, 0]
    finally:
        admin(sim, "cmd=set_params", {"modbus_tcp": 0, "modbus_tcp_port": 4701})


def test_time_zone_and_backup_download_and_restore(page, tmp_path):
    """Param tz in the settings, the local time in the header; a backup
    downloaded (its text as get_config gives it) and restored from a file."""
    sim, d = page
    open_page(d, "#settings")
    login_now(d)
    form = wait(d, lambda: visible(d, "#params"), what="settings")
    wait(d, lambda: css(d, "[name=tz]", form), what="tz field")
    tz = css(d, "[name=tz]", form)[0]
    assert tz.get_attribute("value") == sim.get("cmd=get_params")[1]["tz"]
    tz.clear()
    tz.send_keys("CET-1CEST,M3.5.0,M10.5.0/3")
    css(d, "button[type=submit]", form)[0].click()
    wait(d, lambda: sim.get("cmd=get_params")[1]["tz"] == "CET-1CEST,M3.5.0,M10.5.0/3", what="tz saved")
    lt = sim.get("cmd=get_params")[1]["local_time"]
    open_page(d, "", logged_out=False)
    wait(d, lambda: css(d, "#clock")[0].text.startswith("Controller's local time " + lt[:13]) or
         css(d, "#clock")[0].text > "Controller's local time " + lt[:13], what="local time on the dashboard")
    assert css(d, "#clock")[0].text.endswith(" (CET-1CEST,M3.5.0,M10.5.0/3)")
    open_page(d, "#settings", logged_out=False)
    login_now(d)
    # download: the file's text is get_config's
    d.execute_script("window.__blob = null; const o = URL.createObjectURL;"
                     "URL.createObjectURL = b => { window.__blob = b; return o.call(URL, b); };")
    css(d, "#backup-get")[0].click()
    wait(d, lambda: d.execute_script("return window.__blob !== null"), what="backup downloaded: " + css(d, "#backup .msg")[0].text)
    text = d.execute_async_script("const done = arguments[0]; window.__blob.text().then(done);")
    st, _, raw, _ = sim.request("cmd=get_config", ADMIN)
    assert st == 200 and text.encode() == raw
    # restore a changed copy from a file (in 4 KB pieces), then the original again
    path = tmp_path / "backup.json"
    path.write_bytes(raw.replace(b'"title":"', b'"title":"Restored ', 1))
    d.execute_script("window.confirm = () => true;")
    css(d, "#backup-file")[0].send_keys(str(path))
    css(d, "#backup button[type=submit]")[0].click()
    wait(d, lambda: css(d, "#backup .msg")[0].text.startswith("restored"), what="restored")
    assert sim.get("cmd=get_params")[1]["title"].startswith("Restored ")
    path.write_bytes(raw)
    css(d, "#backup-file")[0].send_keys(str(path))
    css(d, "#backup button[type=submit]")[0].click()
    wait(d, lambda: not sim.get("cmd=get_params")[1]["title"].startswith("Restored "), what="restored again")
    # a broken file: the error in the form, nothing changed
    path.write_bytes(raw[:100])
    css(d, "#backup-file")[0].send_keys(str(path))
    css(d, "#backup button[type=submit]")[0].click()
    wait(d, lambda: css(d, "#backup .msg")[0].text == "bad json", what="error shown")
    admin(sim, "cmd=set_params", {"tz": "UTC0"})


def test_phone_width_has_no_horizontal_scrolling(page):
    sim, d = page
    d.set_window_size(390, 844)
    try:
        for h in ("", "#settings"):
            open_page(d, h)
            time.sleep(0.3)
            assert d.execute_script("return document.documentElement.scrollWidth") <= 390, h
    finally:
        d.set_window_size(1280, 900)


# ---- screenshots for the README (not part of the normal run) ----

SHOWCASE = {
    "description": "Two EVSEs behind a grid meter; the house load steps up and down (screenshots of the web UI)",
    "evse_ids": [1, 4], "seed": 3, "ramp_ma_per_s": 3000,
    "house": {"profile": [[0, 4000, 3000, 2000], [70, 11000, 4000, 3000], [150, 6000, 9000, 3000],
                          [200, 4000, 3000, 2000]], "noise_ma": 400},
    "pv": 0,
    "meters": {"2": {"role": "grid"}, "3": {"role": "house"}},
    "evses": {"1": {"grid_phases": [0, 1, 2]}, "4": {"grid_phases": [1, 2, 0]}},
    "events": [[3, {"cmd": "plug", "slave": 1, "car": {"phases": 7, "max_ma": 16000, "need_wh": 40000}}],
               [40, {"cmd": "plug", "slave": 4, "car": {"phases": 1, "max_ma": 20000, "need_wh": 20000}}]],
}


@pytest.mark.skipif(not os.environ.get("PBCTL_SCREENSHOTS"), reason="PBCTL_SCREENSHOTS=1 writes docs/ui-*.png")
def test_screenshots(tmp_path):
    scenario = tmp_path / "showcase.json"
    scenario.write_text(json.dumps(SHOWCASE))
    seconds = float(os.environ.get("PBCTL_SCREENSHOT_SECONDS", "240"))
    desktop = browser(1280, 900)
    phone = None
    sim = Sim(sim_args=["--scenario", str(scenario)])
    try:
        sim.start()
        admin(sim, "cmd=set_params", {"title": "Carport", "max_total_current": 25000, "devices": [
            {"dev_id": "M1", "name": "Grid", "role": 3}]})
        admin(sim, "cmd=set_params", {"devices": [{"dev_id": "M2", "name": "House", "role": 0}]})
        admin(sim, "cmd=set_params", {"devices": [{"dev_id": "E1", "name": "Wallbox left"}]})
        admin(sim, "cmd=set_params", {"devices": [{"dev_type": "evse_powerbrain", "address": "rtu:4",
                                                   "name": "Wallbox right", "max_charging_cur": 20000,
                                                   "phase_rotation": 1}]})  # its L1 is on grid L2
        base = "http://127.0.0.1:%d/" % sim.http_port
        desktop.get(base)
        phone = browser(390, 844)
        phone.get(base)
        time.sleep(seconds)
        out = os.path.join(ROOT, "docs")
        desktop.save_screenshot(os.path.join(out, "ui-desktop.png"))
        # the phone shot: the whole dashboard, as a tall page
        h = phone.execute_script("return document.documentElement.scrollHeight + outerHeight - innerHeight")
        phone.set_window_size(390, min(max(h, 844), 2400))
        time.sleep(1.5)
        phone.save_screenshot(os.path.join(out, "ui-phone.png"))
        for d in (desktop, phone):
            assert [e for e in d.get_log("browser") if e["source"] == "javascript"] == []
    finally:
        close(desktop)
        if phone:
            close(phone)
        sim.stop()
    fw_log_clean(sim)
